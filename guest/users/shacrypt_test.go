package users

import (
	"encoding/base64"
	"os/exec"
	"strings"
	"testing"
)

func TestSHA512CryptSpecVectors(t *testing.T) {
	// From the examples of the public SHA-crypt specification.
	for _, c := range []struct{ pw, setting, want string }{
		{"Hello world!", "$6$saltstring", "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"},
		{"Hello world!", "$6$rounds=10000$saltstringsaltstring", "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v."},
	} {
		if got := sha512Crypt(c.pw, c.setting); got != c.want {
			t.Errorf("sha512Crypt(%q, %q) = %q, want %q", c.pw, c.setting, got, c.want)
		}
		if !sha512CryptMatches(c.pw, c.want) {
			t.Errorf("sha512CryptMatches(%q) = false", c.want)
		}
		if sha512CryptMatches(c.pw+"x", c.want) {
			t.Errorf("a wrong password matches %q", c.want)
		}
	}
}

func TestSHA512CryptVectorContext08(t *testing.T) {
	// 08-user-sudo-keys-crypted: the hash of S3cure-Passw0rd! with salt OneCtxVecSalt01.
	enc := "JDYkT25lQ3R4VmVjU2FsdDAxJEI5cG1vaWlSZTFqQVUyc3p1RWNDdUQ0QkJTSC9wWHdmMTNhWUlWZ21BSy5ZLkVYVUJMbUEub1k4ckdzQ1lselF3Q1JjRk0zekZOVnJnRVVCYXBwOUsu"
	hash, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		t.Fatal(err)
	}
	if !sha512CryptMatches("S3cure-Passw0rd!", string(hash)) {
		t.Errorf("the vector's hash does not verify: computed %q", sha512Crypt("S3cure-Passw0rd!", string(hash)))
	}
}

func TestSHA512CryptAgainstOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	for _, pw := range []string{"a", "pässwörd with spaces", strings.Repeat("long", 40)} {
		cmd := exec.Command("openssl", "passwd", "-6", "-salt", "abcdefgh12345678", "-stdin")
		cmd.Stdin = strings.NewReader(pw + "\n")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("openssl: %v", err)
		}
		want := strings.TrimSpace(string(out))
		if got := sha512Crypt(pw, "$6$abcdefgh12345678"); got != want {
			t.Errorf("password %q: got %q, openssl %q", pw, got, want)
		}
	}
}
