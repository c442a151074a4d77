package medium

import (
	"bytes"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestOpenBadInput(t *testing.T) {
	good, err := os.ReadFile(xorrisoISO(t, writeTree(t), "CONTEXT", "-J", "-R"))
	if err != nil {
		t.Fatal(err)
	}
	noContextTree := t.TempDir()
	if err := os.WriteFile(filepath.Join(noContextTree, "token.txt"), []byte("t\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	garbage := make([]byte, 1<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range garbage {
		garbage[i] = byte(rng.Uint32())
	}
	// A primary volume descriptor that looks right, followed by garbage.
	fakePVD := bytes.Clone(garbage)
	copy(fakePVD[16*sectorSize:], good[16*sectorSize:17*sectorSize])

	// The root directory record of the primary descriptor claims 4 GiB.
	hugeRoot := bytes.Clone(good)
	copy(hugeRoot[16*sectorSize+156+10:], []byte{0xf0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xf0})

	missing := filepath.Join(t.TempDir(), "missing.iso")
	tests := []struct {
		name string
		path string
		what string
	}{
		{"missing path", missing, "no such file or directory"},
		{"text file", writeFile(t, "context.sh", contextSh), "not an ISO 9660 volume"},
		{"zeros", writeFile(t, "zeros.img", make([]byte, 64<<10)), "not an ISO 9660 volume"},
		{"empty file", writeFile(t, "empty.img", nil), "not an ISO 9660 volume"},
		{"binary garbage", writeFile(t, "garbage.img", garbage), "not an ISO 9660 volume"},
		{"garbage after a good descriptor", writeFile(t, "fake.img", fakePVD), ""},
		{"no context.sh", xorrisoISO(t, noContextTree, "CONTEXT", "-J", "-R"), "no context.sh"},
		{"cut in the descriptors", writeFile(t, "cut1.iso", good[:16*sectorSize+100]), "truncated"},
		{"cut in half", writeFile(t, "cut2.iso", good[:len(good)/2]), "truncated"},
		{"huge root directory", writeFile(t, "huge.iso", hugeRoot), "root directory"},
		{"last block cut", writeFile(t, "cut3.iso", good[:len(good)-sectorSize]), "truncated"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Open(tc.path)
			if err == nil {
				m.Close()
			}
			wantErr(t, err, tc.path, tc.what)
		})
	}
	if _, err := Open(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing path error %v is not fs.ErrNotExist", err)
	}
}

func TestOpenSpecialFile(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	_, err := Open(fifo)
	wantErr(t, err, fifo, "not a file, block device or directory")
}

func TestOpenUnreadable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("running as root: file permissions do not stop reads")
	}
	p := writeFile(t, "context.iso", []byte("x"))
	if err := os.Chmod(p, 0); err != nil {
		t.Fatal(err)
	}
	_, err := Open(p)
	wantErr(t, err, p, "permission denied")
}

// TestOpenCorruptISO damages a real image at random places in its volume
// descriptors and directories. Open must give an error naming the image or a
// medium whose files all read; it must never panic.
func TestOpenCorruptISO(t *testing.T) {
	for _, variant := range []struct {
		name  string
		extra []string
	}{{"rock ridge", []string{"-J", "-R"}}, {"joliet", []string{"-J", "--norock"}}, {"plain", []string{"--norock"}}} {
		t.Run(variant.name, func(t *testing.T) {
			good, err := os.ReadFile(xorrisoISO(t, writeTree(t), "CONTEXT", variant.extra...))
			if err != nil {
				t.Fatal(err)
			}
			// Metadata lies between the descriptors and the first file.
			m, err := Open(writeFile(t, "good.iso", good))
			if err != nil {
				t.Fatal(err)
			}
			metaEnd := int64(len(good))
			for _, f := range m.Files() {
				metaEnd = min(metaEnd, m.entries[f].off)
			}
			m.Close()

			rng := rand.New(rand.NewPCG(7, uint64(len(variant.name))))
			dir := t.TempDir()
			p := filepath.Join(dir, "corrupt.iso")
			var failed, opened int
			for i := range 400 {
				img := bytes.Clone(good)
				for range 1 + rng.IntN(8) {
					at := 16*sectorSize + rng.Int64N(metaEnd-16*sectorSize)
					img[at] = byte(rng.Uint32())
				}
				if i%4 == 0 { // large values hit the size and location fields
					at := 16*sectorSize + rng.Int64N(metaEnd-16*sectorSize-4)
					copy(img[at:], []byte{0xff, 0xff, 0xff, 0x7f})
				}
				if err := openDamaged(t, p, img); err != nil {
					failed++
					if testing.Verbose() && failed <= 12 {
						t.Log(strings.TrimPrefix(err.Error(), "medium "+p+": "))
					}
					continue
				}
				opened++
			}
			t.Logf("%d corrupt images rejected, %d opened", failed, opened)
			if failed == 0 {
				t.Error("no corrupt image was rejected; the damage did not reach the metadata")
			}
		})
	}
}

// openDamaged writes img to p and opens it: a damaged image is rejected
// with an error naming it, or opens, and then every file reads or fails
// with an error naming it. It returns Open's error.
func openDamaged(t *testing.T, p string, img []byte) error {
	t.Helper()
	if err := os.WriteFile(p, img, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := Open(p)
	if err != nil {
		if !strings.HasPrefix(err.Error(), "medium "+p+": ") {
			t.Fatalf("error %q does not name the image", err)
		}
		return err
	}
	defer m.Close()
	for _, f := range m.Files() {
		if _, err := m.ReadFile(f, 32<<20); err != nil && !strings.Contains(err.Error(), p) {
			t.Fatalf("ReadFile(%s): error %q does not name the image", f, err)
		}
	}
	return nil
}
