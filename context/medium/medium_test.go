package medium

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/afero"
)

const rockRidgeLong = longName

// jolietLong is longName as xorriso cuts it to fit Joliet's 64 characters.
const jolietLong = "a-rather-long-file-name-for-checking-rock-ridge-and-joliet-na.txt"

// fullNames are the names of treeFiles on a medium that keeps them whole.
var fullNames = []string{
	"UPPER.TXT",
	rockRidgeLong,
	"context.sh",
	"files/app/config.yaml",
	"files/app/deep/leaf.db",
	"init.sh",
	"token.txt",
}

// plainNames are the ISO 9660 level 1 names (8.3, upper case) both writers
// give treeFiles, in lower case as the medium reports them.
var plainNames = map[string]string{
	"a_rather.txt":           longName,
	"context.sh":             "context.sh",
	"files/app/config.yam":   "files/app/config.yaml",
	"files/app/deep/leaf.db": "files/app/deep/leaf.db",
	"init.sh":                "init.sh",
	"token.txt":              "token.txt",
	"upper.txt":              "UPPER.TXT",
}

func identity(names []string) map[string]string {
	m := map[string]string{}
	for _, n := range names {
		m[n] = n
	}
	return m
}

func TestOpenISOImages(t *testing.T) {
	src := writeTree(t)
	jolietNames := identity(fullNames)
	delete(jolietNames, rockRidgeLong)
	jolietNames[jolietLong] = longName

	// go-diskfs v1.9.4 writes broken Joliet names below the root, so its
	// Joliet-only image is built from the root files alone.
	flat := t.TempDir()
	flatNames := map[string]string{}
	for p, data := range treeFiles() {
		if !strings.Contains(p, "/") {
			if err := os.WriteFile(filepath.Join(flat, p), data, 0o644); err != nil {
				t.Fatal(err)
			}
			flatNames[p] = p
		}
	}

	tests := []struct {
		name      string
		image     string
		names     map[string]string // name on the medium -> treeFiles key
		rockRidge bool              // modes are on the medium
		anyCase   bool              // plain ISO 9660: lookups ignore case
	}{
		{"xorriso -J -R (as oned)", xorrisoISO(t, src, "CONTEXT", "-J", "-R"), identity(fullNames), true, false},
		{"xorriso Joliet only", xorrisoISO(t, src, "CONTEXT", "-J", "--norock"), jolietNames, false, false},
		{"xorriso plain ISO 9660", xorrisoISO(t, src, "CONTEXT", "--norock"), plainNames, false, true},
		{"go-diskfs Rock Ridge + Joliet", diskfsISO(t, src, "CONTEXT", true, true), identity(fullNames), true, false},
		{"go-diskfs Rock Ridge", diskfsISO(t, src, "CONTEXT", true, false), identity(fullNames), true, false},
		{"go-diskfs Joliet only", diskfsISO(t, flat, "CONTEXT", false, true), flatNames, false, false},
		{"go-diskfs plain ISO 9660", diskfsISO(t, src, "CONTEXT", false, false), plainNames, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Open(tc.image)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			t.Cleanup(func() { m.Close() })
			if m.Kind() != KindISOImage || m.Path() != tc.image || m.Label() != "CONTEXT" {
				t.Errorf("Kind, Path, Label = %q, %q, %q; want %q, %q, CONTEXT", m.Kind(), m.Path(), m.Label(), KindISOImage, tc.image)
			}
			var want []string
			for n := range tc.names {
				want = append(want, n)
			}
			slices.Sort(want)
			if got := m.Files(); !slices.Equal(got, want) {
				t.Errorf("Files() =\n %q\nwant\n %q", got, want)
			}
			tree := treeFiles()
			for name, key := range tc.names {
				got, err := m.ReadFile(name, 32<<20)
				if err != nil {
					t.Errorf("ReadFile(%s): %v", name, err)
					continue
				}
				if !bytes.Equal(got, tree[key]) {
					t.Errorf("ReadFile(%s) = %q, want %q", name, got, tree[key])
				}
				if size, err := m.Size(name); err != nil || size != int64(len(tree[key])) {
					t.Errorf("Size(%s) = %d, %v; want %d", name, size, err, len(tree[key]))
				}
				if !m.Has(name) || !m.Has("./"+name) || !m.Has("/"+name) {
					t.Errorf("Has(%s) is false for one of its spellings", name)
				}
			}
			if m.Has("CONTEXT.SH;1") != tc.anyCase || m.Has("Context.Sh") != tc.anyCase {
				t.Errorf("Has(CONTEXT.SH;1), Has(Context.Sh) = %v, %v; want %v", m.Has("CONTEXT.SH;1"), m.Has("Context.Sh"), tc.anyCase)
			}
			if tc.anyCase {
				got, err := m.ReadFile("CONTEXT.SH;1", 0)
				if err != nil || !bytes.Equal(got, contextSh) {
					t.Errorf("ReadFile(CONTEXT.SH;1) = %q, %v", got, err)
				}
			}
			if _, err := m.ReadFile("missing.txt", 0); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "missing.txt") {
				t.Errorf("ReadFile(missing.txt) error = %v, want fs.ErrNotExist naming the file", err)
			}
			if m.Has("files") || m.Has("files/app") {
				t.Error("Has reports a directory as a file")
			}

			dst := afero.NewMemMapFs()
			if err := m.CopyTo(dst, "/run/one-context/medium"); err != nil {
				t.Fatalf("CopyTo: %v", err)
			}
			for name, key := range tc.names {
				target := "/run/one-context/medium/" + name
				got, err := afero.ReadFile(dst, target)
				if err != nil || !bytes.Equal(got, tree[key]) {
					t.Errorf("copy of %s = %q, %v; want %q", name, got, err, tree[key])
				}
				fi, err := dst.Stat(target)
				if err != nil {
					t.Fatal(err)
				}
				wantMode := fs.FileMode(0o644)
				if tc.rockRidge && name == "init.sh" {
					wantMode = 0o755
				}
				if fi.Mode().Perm() != wantMode {
					t.Errorf("copy of %s has mode %v, want %v", name, fi.Mode().Perm(), wantMode)
				}
			}
			if err := m.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
}

// TestCopyToDisk checks the modes on a real file system, where the umask applies.
func TestCopyToDisk(t *testing.T) {
	m, err := Open(xorrisoISO(t, writeTree(t), "CONTEXT", "-J", "-R"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	dir := filepath.Join(t.TempDir(), "copy")
	if err := m.CopyTo(afero.NewOsFs(), dir); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]fs.FileMode{
		"init.sh":                0o755,
		"context.sh":             0o644,
		"files/app/deep/leaf.db": 0o644,
		"files/app/deep":         fs.ModeDir | 0o755,
	} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode() & (fs.ModeDir | fs.ModePerm); got != want {
			t.Errorf("%s: mode %v, want %v", name, got, want)
		}
	}
}

func TestReadFileLimit(t *testing.T) {
	m, err := Open(diskfsISO(t, writeTree(t), "CONTEXT", true, true))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	size := int64(len(contextSh))
	if got, err := m.ReadFile("context.sh", size); err != nil || !bytes.Equal(got, contextSh) {
		t.Errorf("ReadFile at limit = %q, %v", got, err)
	}
	_, err = m.ReadFile("context.sh", size-1)
	if err == nil {
		t.Fatal("ReadFile over the limit succeeded")
	}
	for _, want := range []string{m.Path(), "context.sh", itoa(size), itoa(size - 1)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if got, err := m.ReadFile("files/app/deep/leaf.db", -1); err != nil || len(got) != 5000 {
		t.Errorf("ReadFile without limit = %d bytes, %v", len(got), err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestOpenDirectory(t *testing.T) {
	src := writeTree(t)
	// The /context directory of a container may itself be a symlink.
	link := filepath.Join(t.TempDir(), "context")
	if err := os.Symlink(src, link); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{src, link} {
		m, err := Open(p)
		if err != nil {
			t.Fatalf("Open(%s): %v", p, err)
		}
		if m.Kind() != KindDirectory || m.Label() != "" || m.Path() != p {
			t.Errorf("Kind, Label, Path = %q, %q, %q", m.Kind(), m.Label(), m.Path())
		}
		if got := m.Files(); !slices.Equal(got, fullNames) {
			t.Errorf("Files() = %q, want %q", got, fullNames)
		}
		for name, data := range treeFiles() {
			got, err := m.ReadFile(name, 0)
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("ReadFile(%s) = %q, %v", name, got, err)
			}
		}
		if _, err := m.ReadFile("nope", 0); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("missing file error %v is not fs.ErrNotExist", err)
		}
		if _, err := m.ReadFile("context.sh", 10); err == nil || !strings.Contains(err.Error(), "limit of 10 bytes") {
			t.Errorf("ReadFile over the limit error = %v", err)
		}
		dst := afero.NewMemMapFs()
		if err := m.CopyTo(dst, "/copy"); err != nil {
			t.Fatal(err)
		}
		fi, err := dst.Stat("/copy/init.sh")
		if err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("copied init.sh: %v, %v; want mode 0755", fi, err)
		}
		fi, err = dst.Stat("/copy/token.txt")
		if err != nil || fi.Mode().Perm() != 0o644 {
			t.Errorf("copied token.txt: %v, %v; want mode 0644", fi, err)
		}
		m.Close()
	}
}

func TestOpenDirectoryRejected(t *testing.T) {
	empty := t.TempDir()
	_, err := Open(empty)
	wantErr(t, err, empty, "empty directory")

	noContext := t.TempDir()
	if err := os.WriteFile(filepath.Join(noContext, "token.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Open(noContext)
	wantErr(t, err, noContext, "no context.sh")

	// context.sh must be a regular file, not a directory.
	dirContext := t.TempDir()
	if err := os.Mkdir(filepath.Join(dirContext, "context.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = Open(dirContext)
	wantErr(t, err, dirContext, "no context.sh")
}

// wantErr checks that err is an error naming where and saying what.
func wantErr(t *testing.T, err error, where, what string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want one naming %s and saying %q", where, what)
	}
	if !strings.Contains(err.Error(), "medium "+where+":") || !strings.Contains(err.Error(), what) {
		t.Errorf("error %q; want it to name %q and say %q", err, where, what)
	}
}
