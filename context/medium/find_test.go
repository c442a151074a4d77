package medium

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeHost is a sysfs and /dev tree under a temporary directory. Device nodes
// are regular files holding the image; they are read the same way.
type fakeHost struct {
	sys, dev string
}

func newFakeHost(t *testing.T, devices ...string) fakeHost {
	t.Helper()
	root := t.TempDir()
	h := fakeHost{sys: filepath.Join(root, "sys"), dev: filepath.Join(root, "dev")}
	for _, d := range devices {
		if err := os.MkdirAll(filepath.Join(h.sys, "class", "block", d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(h.dev, 0o755); err != nil {
		t.Fatal(err)
	}
	return h
}

// put writes the contents of the image file src as device node name,
// atomically, as a device appears.
func (h fakeHost) put(t *testing.T, name, src string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Error(err)
		return
	}
	tmp := filepath.Join(h.dev, "."+name+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Error(err)
		return
	}
	if err := os.Rename(tmp, filepath.Join(h.dev, name)); err != nil {
		t.Error(err)
	}
}

func (h fakeHost) zeros(t *testing.T, name string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(h.dev, name), make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (h fakeHost) opts(timeout time.Duration) FindOptions {
	return FindOptions{SysRoot: h.sys, DevRoot: h.dev, Dirs: []string{}, Timeout: timeout, Poll: 20 * time.Millisecond}
}

// testImages builds the images the Find tests share.
type testImages struct{ context, other string }

func buildImages(t *testing.T) testImages {
	src := writeTree(t)
	return testImages{
		context: diskfsISO(t, src, "CONTEXT", true, true),
		other:   diskfsISO(t, src, "OTHER", true, true),
	}
}

func TestFindCDROM(t *testing.T) {
	img := buildImages(t)
	h := newFakeHost(t, "sda", "sr0", "loop0")
	h.zeros(t, "sda")
	h.put(t, "sr0", img.context)
	h.put(t, "loop0", img.context)

	m, err := Find(context.Background(), h.opts(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Path() != filepath.Join(h.dev, "sr0") || m.Label() != "CONTEXT" {
		t.Errorf("found %s labelled %q, want %s/sr0 labelled CONTEXT", m.Path(), m.Label(), h.dev)
	}
	if got, err := m.ReadFile(ContextFile, 32<<20); err != nil || string(got) != string(contextSh) {
		t.Errorf("ReadFile(context.sh) = %q, %v", got, err)
	}
}

func TestFindPrefersCDROMAndSkipsLoop(t *testing.T) {
	img := buildImages(t)
	h := newFakeHost(t, "loop0", "sda", "vdb", "sr1")
	h.put(t, "loop0", img.context)
	h.zeros(t, "sda")
	h.put(t, "vdb", img.context)
	h.put(t, "sr1", img.context)
	m, err := Find(context.Background(), h.opts(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if m.Path() != filepath.Join(h.dev, "sr1") {
		t.Errorf("found %s, want the CD-ROM sr1", m.Path())
	}

	// Only the loop device holds the context: it counts only when asked for.
	h = newFakeHost(t, "loop0", "sda")
	h.put(t, "loop0", img.context)
	h.zeros(t, "sda")
	if m, err := Find(context.Background(), h.opts(100*time.Millisecond)); err == nil {
		m.Close()
		t.Fatalf("found %s although loop devices are skipped", m.Path())
	}
	opt := h.opts(100 * time.Millisecond)
	opt.IncludeLoop = true
	m, err = Find(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if m.Path() != filepath.Join(h.dev, "loop0") {
		t.Errorf("found %s, want loop0", m.Path())
	}
}

func TestFindOtherLabel(t *testing.T) {
	img := buildImages(t)
	h := newFakeHost(t, "sda", "sr0")
	h.zeros(t, "sda")
	h.put(t, "sr0", img.other)

	_, err := Find(context.Background(), h.opts(150*time.Millisecond))
	if err == nil {
		t.Fatal("a volume labelled OTHER was taken")
	}
	for _, want := range []string{"no context medium labelled CONTEXT", filepath.Join(h.sys, "class", "block"), `sr0 (label "OTHER")`, "sda (not an ISO 9660 volume)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}

	// The accepted labels are configurable, in order of preference.
	opt := h.opts(time.Second)
	opt.Labels = []string{"CDROM", "OTHER"}
	m, err := Find(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if m.Label() != "OTHER" {
		t.Errorf("label %q, want OTHER", m.Label())
	}
}

func TestFindByLabelLink(t *testing.T) {
	img := buildImages(t)
	h := newFakeHost(t) // nothing in sysfs: only the udev link tells
	h.put(t, "vdc", img.context)
	if err := os.MkdirAll(filepath.Join(h.dev, "disk", "by-label"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../vdc", filepath.Join(h.dev, "disk", "by-label", "CONTEXT")); err != nil {
		t.Fatal(err)
	}
	m, err := Find(context.Background(), h.opts(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if m.Path() != filepath.Join(h.dev, "disk", "by-label", "CONTEXT") || m.Label() != "CONTEXT" {
		t.Errorf("found %s labelled %q", m.Path(), m.Label())
	}
}

func TestFindWaitsForDevice(t *testing.T) {
	img := buildImages(t)
	h := newFakeHost(t, "sda", "sr0")
	h.zeros(t, "sda")
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(500 * time.Millisecond)
		h.put(t, "sr0", img.context)
	}()
	t.Cleanup(func() { <-done })
	m, err := Find(context.Background(), h.opts(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if m.Path() != filepath.Join(h.dev, "sr0") {
		t.Errorf("found %s", m.Path())
	}
	if waited := time.Since(start); waited < 500*time.Millisecond {
		t.Errorf("found the device after %s, before it appeared", waited)
	}
}

func TestFindTimeout(t *testing.T) {
	h := newFakeHost(t, "sda", "sr0")
	h.zeros(t, "sda")
	start := time.Now()
	_, err := Find(context.Background(), h.opts(300*time.Millisecond))
	waited := time.Since(start)
	if err == nil {
		t.Fatal("found a medium on an empty host")
	}
	if waited < 300*time.Millisecond {
		t.Errorf("gave up after %s, before the 300ms timeout", waited)
	}
	for _, want := range []string{"no context medium labelled CONTEXT found in 3", filepath.Join(h.sys, "class", "block"), "sr0 (open: no such file or directory)", "sda"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestFindCancel(t *testing.T) {
	h := newFakeHost(t, "sr0")
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	_, err := Find(ctx, h.opts(time.Minute))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v is not context.Canceled", err)
	}
	if waited := time.Since(start); waited > 10*time.Second {
		t.Errorf("cancel took %s to stop the wait", waited)
	}
}

func TestFindDirectory(t *testing.T) {
	img := buildImages(t)
	h := newFakeHost(t, "sda")
	h.zeros(t, "sda")
	empty := t.TempDir()
	dir := writeTree(t)
	opt := h.opts(100 * time.Millisecond)
	opt.Dirs = []string{filepath.Join(t.TempDir(), "absent"), empty, dir}
	m, err := Find(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if m.Kind() != KindDirectory || m.Path() != dir {
		t.Errorf("found %s %s, want directory %s", m.Kind(), m.Path(), dir)
	}

	// An empty directory is no medium, and the error says so.
	opt.Dirs = []string{empty}
	_, err = Find(context.Background(), opt)
	if err == nil || !strings.Contains(err.Error(), "medium "+empty+": empty directory") {
		t.Errorf("error %v; want it to reject the empty %s", err, empty)
	}

	// A device wins over a directory.
	h.put(t, "sr0", img.context)
	if err := os.MkdirAll(filepath.Join(h.sys, "class", "block", "sr0"), 0o755); err != nil {
		t.Fatal(err)
	}
	opt.Dirs = []string{dir}
	m, err = Find(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if m.Path() != filepath.Join(h.dev, "sr0") {
		t.Errorf("found %s, want the device sr0", m.Path())
	}
}

func TestFindSkipsEmptyDrive(t *testing.T) {
	img := buildImages(t)
	h := newFakeHost(t, "sr0", "sr1")
	h.put(t, "sr0", img.context)
	h.put(t, "sr1", img.context)
	// sysfs says sr0 holds 0 sectors: an empty drive, not looked at.
	if err := os.WriteFile(filepath.Join(h.sys, "class", "block", "sr0", "size"), []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := Find(context.Background(), h.opts(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if m.Path() != filepath.Join(h.dev, "sr1") {
		t.Errorf("found %s, want sr1", m.Path())
	}
}
