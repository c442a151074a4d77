package settings

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

// The validators were regular expressions; these are those expressions, to
// check that the written-out forms accept exactly the same names.
var (
	oldUserName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,30}\$?$`)
	oldDomain   = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})?(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})?)*\.?$`)
)

func oldValidUserName(n string) bool {
	return oldUserName.MatchString(n) && strings.Trim(n, "0123456789$") != ""
}

func oldValidDomain(f string) bool { return len(f) <= 253 && oldDomain.MatchString(f) }

func TestNameValidatorsMatchTheirRegularExpressions(t *testing.T) {
	cases := []string{"", "a", "$", "a$", "a$$", "1", "12$", "1a", "_", ".a", "-a", "a.", "a-", "x!y", "ab cd",
		strings.Repeat("a", 31), strings.Repeat("a", 31) + "$", strings.Repeat("a", 32),
		"example.com", "example.com.", ".example.com", "a..b", "a.-b", "_srv.x", "a.b.c.d",
		strings.Repeat("a", 63) + ".b", strings.Repeat("a", 64) + ".b", strings.Repeat("a.", 126) + "b", strings.Repeat("a.", 127) + "b",
		"é.com", "a\x00b"}
	// And random strings over the characters that matter.
	r := rand.New(rand.NewPCG(1, 2))
	const alphabet = "aZ09_.-$ !é"
	for range 20000 {
		n := r.IntN(70)
		var b strings.Builder
		for range n {
			b.WriteByte(alphabet[r.IntN(len(alphabet))])
		}
		cases = append(cases, b.String())
	}
	for _, c := range cases {
		if got, want := ValidUserName(c), oldValidUserName(c); got != want {
			t.Errorf("ValidUserName(%q) = %v, the expression says %v", c, got, want)
		}
		if got, want := validDomain(c), oldValidDomain(c); got != want {
			t.Errorf("validDomain(%q) = %v, the expression says %v", c, got, want)
		}
	}
}
