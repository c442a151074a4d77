// Package testenv locates what tests read from outside their package: the
// repository root and the team's shared/ folder beside it (vectors,
// OneGate fixtures), which CI lays next to its clone.
package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

// RepoRoot is the directory holding go.mod above the test's directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test's directory")
		}
		dir = parent
	}
}

// Shared is a path under ../shared beside the repository; the test is
// skipped, saying why, when it is not there.
func Shared(t testing.TB, elem ...string) string {
	t.Helper()
	p := filepath.Join(append([]string{RepoRoot(t), "..", "shared"}, elem...)...)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("%s not found (shared/ is expected beside the repository): %v", p, err)
	}
	return p
}
