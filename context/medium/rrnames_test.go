package medium

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestRockRidgeNamesKept checks names go-diskfs alone would trim: a leading
// dot, a trailing dot, a trailing ";1", and a dot file beside its trimmed twin.
func TestRockRidgeNamesKept(t *testing.T) {
	src := t.TempDir()
	files := map[string]string{
		"context.sh":                 "A='1'\n",
		".bashrc":                    "dot\n",
		"bashrc":                     "plain twin\n",
		"end.":                       "trailing dot\n",
		"ver;1":                      "version-like\n",
		"files/.ssh/authorized_keys": "ssh-ed25519 AAAA\n",
	}
	for p, data := range files {
		full := filepath.Join(src, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	xorrisoImage := xorrisoISO(t, src, "CONTEXT", "-J", "-R")
	// go-diskfs v1.9.4 cannot read back a directory holding a dot directory
	// that it wrote itself, so its image has the root files only.
	if err := os.RemoveAll(filepath.Join(src, "files")); err != nil {
		t.Fatal(err)
	}
	diskfsImage := diskfsISO(t, src, "CONTEXT", true, true)
	diskfsFiles := maps.Clone(files)
	delete(diskfsFiles, "files/.ssh/authorized_keys")

	for name, tc := range map[string]struct {
		image string
		files map[string]string
	}{
		"xorriso -J -R": {xorrisoImage, files},
		"go-diskfs RR":  {diskfsImage, diskfsFiles},
	} {
		image, files := tc.image, tc.files
		want := slices.Sorted(maps.Keys(files))
		t.Run(name, func(t *testing.T) {
			m, err := Open(image)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if got := m.Files(); !slices.Equal(got, want) {
				t.Errorf("Files() = %q, want %q", got, want)
			}
			for p, data := range files {
				got, err := m.ReadFile(p, 0)
				if err != nil || string(got) != data {
					t.Errorf("ReadFile(%s) = %q, %v; want %q", p, got, err, data)
				}
			}
		})
	}
}
