package shvars

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// addVectorSeeds adds every parse and context vector as a seed, when the
// shared vectors are present.
func addVectorSeeds(f *testing.F) {
	for _, pattern := range []string{"parse/*.context.sh", "contexts/*.context.sh"} {
		files, _ := filepath.Glob(filepath.Join(sharedDir(f), "vectors", pattern))
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
}

// FuzzParse: go test -fuzz=FuzzParse ./context/shvars
func FuzzParse(f *testing.F) {
	addVectorSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		vars, errs := Parse("fuzz", data)
		checkInvariants(t, data, vars, errs)
	})
}

// FuzzQuoteRoundTrip: go test -fuzz=FuzzQuoteRoundTrip ./context/shvars
func FuzzQuoteRoundTrip(f *testing.F) {
	for _, s := range []string{"", "'", `'\''`, "a\nb", "\r\n", "$(id)", "`x`", "é😀", `\`, `"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if !utf8.ValidString(v) || strings.IndexByte(v, 0) >= 0 {
			t.Skip("sh values are NUL-free; Parse wants UTF-8")
		}
		out := Format([]Var{{Name: "X", Value: v}})
		vars, errs := Parse("quoted", out)
		if len(errs) != 0 {
			t.Fatalf("Format(%q) = %q does not parse: %v", v, out, errs)
		}
		if got := vars.Value("X"); got != v || vars.Len() != 1 {
			t.Fatalf("Format(%q) = %q reads back as %q (%d vars)", v, out, got, vars.Len())
		}
		if Quote(v) != string(out[2:len(out)-1]) {
			t.Fatalf("Quote and Format disagree for %q", v)
		}
	})
}
