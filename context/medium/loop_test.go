package medium

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// attachLoop attaches image read-only to a free loop device and detaches it
// when the test ends. It skips when loop devices cannot be used here.
func attachLoop(t *testing.T, image string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("not root: attaching a loop device needs root (runs in CI)")
	}
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skip("losetup is not installed")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skipf("no loop device support: %v", err)
	}
	out, err := exec.Command("losetup", "-f", "--show", "-r", image).CombinedOutput()
	if err != nil {
		t.Skipf("loop devices are not available here: losetup: %v: %s", err, bytes.TrimSpace(out))
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v: %s", dev, err, out)
		}
	})
	return dev
}

func TestBlockDevice(t *testing.T) {
	// A label no real disk carries, so Find below can only hit our device.
	label := fmt.Sprintf("CTXTEST%d", os.Getpid())
	dev := attachLoop(t, xorrisoISO(t, writeTree(t), label, "-J", "-R"))

	m, err := Open(dev)
	if err != nil {
		t.Fatalf("Open(%s): %v", dev, err)
	}
	if m.Kind() != KindBlockDevice || m.Label() != label || m.Path() != dev {
		t.Errorf("Kind, Label, Path = %q, %q, %q; want %q, %q, %q", m.Kind(), m.Label(), m.Path(), KindBlockDevice, label, dev)
	}
	for name, data := range treeFiles() {
		got, err := m.ReadFile(name, 32<<20)
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("ReadFile(%s) = %q, %v", name, got, err)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	// The kernel may take a moment to publish the new size in sysfs.
	opt := FindOptions{Labels: []string{label}, Dirs: []string{}, IncludeLoop: true, Timeout: 10 * time.Second}
	found, err := Find(context.Background(), opt)
	if err != nil {
		t.Fatalf("Find on the real /sys and /dev: %v", err)
	}
	defer found.Close()
	want, _ := filepath.EvalSymlinks(dev)
	got, _ := filepath.EvalSymlinks(found.Path())
	if got != want || found.Label() != label {
		t.Errorf("Find gave %s (%s) labelled %q, want %s", found.Path(), got, found.Label(), dev)
	}
	if data, err := found.ReadFile(ContextFile, 32<<20); err != nil || !bytes.Equal(data, contextSh) {
		t.Errorf("ReadFile(context.sh) = %q, %v", data, err)
	}

	// Without IncludeLoop the same device is not taken.
	opt.IncludeLoop, opt.Timeout = false, -1
	if m, err := Find(context.Background(), opt); err == nil {
		m.Close()
		t.Errorf("Find took %s although loop devices are skipped", m.Path())
	}
}
