package fakegate

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// MintToken makes the token oned writes to token.txt for a VM: base64 of
// AES-256-CBC("<vmid>:<stime>") with the first 32 characters of the owner's
// TOKEN_PASSWORD as key, a zero IV and PKCS#7 padding.
func MintToken(tokenPassword string, vmid int, stime int64) (string, error) {
	block, err := tokenCipher(tokenPassword)
	if err != nil {
		return "", err
	}
	plain := []byte(fmt.Sprintf("%d:%d", vmid, stime))
	pad := aes.BlockSize - len(plain)%aes.BlockSize
	plain = append(plain, bytes.Repeat([]byte{byte(pad)}, pad)...)
	out := make([]byte, len(plain))
	cipher.NewCBCEncrypter(block, make([]byte, aes.BlockSize)).CryptBlocks(out, plain)
	return base64.StdEncoding.EncodeToString(out), nil
}

// openToken is the server's check (OneGateCloudAuth#decrypt): it returns
// the plaintext "<vmid>:<stime>" or an error.
func openToken(tokenPassword, token string) (string, error) {
	block, err := tokenCipher(tokenPassword)
	if err != nil {
		return "", err
	}
	data, err := decodeBase64Lenient(token)
	if err != nil {
		return "", err
	}
	if len(data) == 0 || len(data)%aes.BlockSize != 0 {
		return "", errors.New("token length is not a multiple of the block size")
	}
	plain := make([]byte, len(data))
	cipher.NewCBCDecrypter(block, make([]byte, aes.BlockSize)).CryptBlocks(plain, data)
	pad := int(plain[len(plain)-1])
	if pad == 0 || pad > aes.BlockSize || subtle.ConstantTimeCompare(plain[len(plain)-pad:], bytes.Repeat([]byte{byte(pad)}, pad)) != 1 {
		return "", errors.New("bad decrypt")
	}
	return string(plain[:len(plain)-pad]), nil
}

func tokenCipher(tokenPassword string) (cipher.Block, error) {
	if len(tokenPassword) < 32 {
		return nil, errors.New("TOKEN_PASSWORD shorter than 32 characters")
	}
	return aes.NewCipher([]byte(tokenPassword[:32]))
}

// decodeBase64Lenient mimics Ruby's Base64.decode64, which skips characters
// outside the alphabet and does not insist on padding.
func decodeBase64Lenient(s string) ([]byte, error) {
	var b strings.Builder
	for _, r := range s {
		if r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '+' || r == '/' {
			b.WriteRune(r)
		}
	}
	clean := b.String()
	if len(clean)%4 == 1 { // a lone trailing sextet carries no byte
		clean = clean[:len(clean)-1]
	}
	return base64.RawStdEncoding.DecodeString(clean)
}
