package users

import (
	"crypto/sha512"
	"crypto/subtle"
	"strconv"
	"strings"
)

// The SHA-512 crypt scheme ($6$), from Ulrich Drepper's public
// specification "Unix crypt using SHA-256 and SHA-512". The agent needs it
// only to tell whether the shadow hash already matches a clear-text
// password, so that a second run does not call chpasswd (which would
// re-salt the hash and rewrite /etc/shadow on every boot).

const (
	cryptAlphabet   = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	roundsDefault   = 5000
	roundsMin       = 1000
	roundsMax       = 999999999
	saltMax         = 16
	sha512CryptName = "$6$"
)

// sha512CryptMatches reports whether hash is a $6$ hash of password.
// Other schemes report false: the caller then sets the password again.
func sha512CryptMatches(password, hash string) bool {
	rest, ok := strings.CutPrefix(hash, sha512CryptName)
	if !ok {
		return false
	}
	i := strings.LastIndexByte(rest, '$')
	if i < 0 {
		return false
	}
	setting := hash[:len(sha512CryptName)+i]
	got := sha512Crypt(password, setting)
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(hash)) == 1
}

// sha512Crypt computes the full hash for a setting "$6$[rounds=N$]salt".
func sha512Crypt(password, setting string) string {
	rest, ok := strings.CutPrefix(setting, sha512CryptName)
	if !ok {
		return ""
	}
	rounds, explicit := roundsDefault, false
	if r, ok := strings.CutPrefix(rest, "rounds="); ok {
		n, after, found := strings.Cut(r, "$")
		v, err := strconv.Atoi(n)
		if !found || err != nil {
			return ""
		}
		rounds, explicit, rest = min(max(v, roundsMin), roundsMax), true, after
	}
	salt, _, _ := strings.Cut(rest, "$")
	if len(salt) > saltMax {
		salt = salt[:saltMax]
	}
	p, s := []byte(password), []byte(salt)

	b := sha512.New()
	b.Write(p)
	b.Write(s)
	b.Write(p)
	sumB := b.Sum(nil)

	a := sha512.New()
	a.Write(p)
	a.Write(s)
	a.Write(repeatTo(sumB, len(p)))
	for n := len(p); n > 0; n >>= 1 {
		if n&1 != 0 {
			a.Write(sumB)
		} else {
			a.Write(p)
		}
	}
	sumA := a.Sum(nil)

	dp := sha512.New()
	for range len(p) {
		dp.Write(p)
	}
	pBytes := repeatTo(dp.Sum(nil), len(p))

	ds := sha512.New()
	for range 16 + int(sumA[0]) {
		ds.Write(s)
	}
	sBytes := repeatTo(ds.Sum(nil), len(s))

	c := sumA
	for i := range rounds {
		h := sha512.New()
		if i&1 != 0 {
			h.Write(pBytes)
		} else {
			h.Write(c)
		}
		if i%3 != 0 {
			h.Write(sBytes)
		}
		if i%7 != 0 {
			h.Write(pBytes)
		}
		if i&1 != 0 {
			h.Write(c)
		} else {
			h.Write(pBytes)
		}
		c = h.Sum(nil)
	}

	var out strings.Builder
	out.WriteString(sha512CryptName)
	if explicit {
		out.WriteString("rounds=" + strconv.Itoa(rounds) + "$")
	}
	out.WriteString(salt)
	out.WriteByte('$')
	// The spec's byte order for the 64-byte digest: triples (i, i+21, i+42)
	// rotated, then the last byte alone.
	for i := range 21 {
		b2, b1, b0 := order512[i][0], order512[i][1], order512[i][2]
		encode24(&out, c[b2], c[b1], c[b0], 4)
	}
	encode24(&out, 0, 0, c[63], 2)
	return out.String()
}

var order512 = [21][3]int{
	{0, 21, 42}, {22, 43, 1}, {44, 2, 23}, {3, 24, 45}, {25, 46, 4}, {47, 5, 26}, {6, 27, 48},
	{28, 49, 7}, {50, 8, 29}, {9, 30, 51}, {31, 52, 10}, {53, 11, 32}, {12, 33, 54}, {34, 55, 13},
	{56, 14, 35}, {15, 36, 57}, {37, 58, 16}, {59, 17, 38}, {18, 39, 60}, {40, 61, 19}, {62, 20, 41},
}

func encode24(out *strings.Builder, b2, b1, b0 byte, n int) {
	w := uint(b2)<<16 | uint(b1)<<8 | uint(b0)
	for range n {
		out.WriteByte(cryptAlphabet[w&0x3f])
		w >>= 6
	}
}

// repeatTo is sum repeated (and cut) to n bytes.
func repeatTo(sum []byte, n int) []byte {
	out := make([]byte, 0, n)
	for len(out) < n {
		out = append(out, sum[:min(len(sum), n-len(out))]...)
	}
	return out
}
