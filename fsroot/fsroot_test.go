package fsroot

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/spf13/afero"
	"golang.org/x/sys/unix"
)

func newRoot(t *testing.T) (*Root, string) {
	t.Helper()
	dir := t.TempDir()
	r, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return r, dir
}

func TestWriteCreatesAtomicallyAndComparesFirst(t *testing.T) {
	r, dir := newRoot(t)
	changed, err := r.WriteFile("/etc/app/conf", []byte("a=1\n"), WriteOptions{Mode: 0o640})
	if err != nil || !changed {
		t.Fatalf("first write: changed=%v err=%v", changed, err)
	}
	fi, err := os.Stat(filepath.Join(dir, "etc/app/conf"))
	if err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v, err %v", fi.Mode(), err)
	}
	before := fi.ModTime()
	changed, err = r.WriteFile("/etc/app/conf", []byte("a=1\n"), WriteOptions{Mode: 0o640})
	if err != nil || changed {
		t.Fatalf("equal write: changed=%v err=%v", changed, err)
	}
	if fi2, _ := os.Stat(filepath.Join(dir, "etc/app/conf")); !fi2.ModTime().Equal(before) {
		t.Error("an equal write touched the file")
	}
	if created, _ := r.Created("/etc/app/conf"); !created {
		t.Error("a file the agent created is not recorded as created")
	}
	// No temp files left behind.
	entries, _ := os.ReadDir(filepath.Join(dir, "etc/app"))
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only conf", len(entries))
	}
	// Nothing outside the root.
	if _, err := os.Stat("/etc/app/conf"); err == nil {
		t.Fatal("the write escaped the root")
	}
}

func TestReplacingAFileTheAgentDidNotCreate(t *testing.T) {
	r, dir := newRoot(t)
	p := filepath.Join(dir, "etc/hosts")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("user's own\n"), 0o604); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, 1234, 5678); err != nil {
		t.Skipf("chown needs root: %v", err)
	}
	if _, err := r.WriteFile("/etc/hosts", []byte("v2\n"), WriteOptions{Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(p)
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o604 || st.Uid != 1234 || st.Gid != 5678 {
		t.Errorf("replaced file lost mode/owner: %v %d:%d", fi.Mode(), st.Uid, st.Gid)
	}
	bak, err := os.ReadFile(p + BackupSuffix)
	if err != nil || string(bak) != "user's own\n" {
		t.Fatalf("backup = %q, %v", bak, err)
	}
	// The backup is taken once: a later write keeps the original.
	if _, err := r.WriteFile("/etc/hosts", []byte("v3\n"), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if bak, _ := os.ReadFile(p + BackupSuffix); string(bak) != "user's own\n" {
		t.Errorf("backup overwritten: %q", bak)
	}
	if created, _ := r.Created("/etc/hosts"); created {
		t.Error("a user's file must not be recorded as created by the agent")
	}
	// ForceMode and ForceOwner do change them.
	if _, err := r.WriteFile("/etc/hosts", []byte("v3\n"), WriteOptions{Mode: 0o600, ForceMode: true, UID: 0, GID: 0, ForceOwner: true}); err != nil {
		t.Fatal(err)
	}
	fi, _ = os.Stat(p)
	st = fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o600 || st.Uid != 0 {
		t.Errorf("forced mode/owner not applied: %v uid %d", fi.Mode(), st.Uid)
	}
}

func TestNeverWritesThroughSymlinks(t *testing.T) {
	r, dir := newRoot(t)
	secretFile := filepath.Join(dir, "etc/shadow")
	_ = os.MkdirAll(filepath.Dir(secretFile), 0o755)
	_ = os.WriteFile(secretFile, []byte("root:hash\n"), 0o600)
	home := filepath.Join(dir, "home/u")
	_ = os.MkdirAll(filepath.Join(home, ".ssh"), 0o700)
	// A symlink at the target.
	if err := os.Symlink("/etc/shadow", filepath.Join(home, ".ssh/authorized_keys")); err != nil {
		t.Fatal(err)
	}
	_, err := r.WriteFile("/home/u/.ssh/authorized_keys", []byte("key\n"), WriteOptions{})
	if !errors.Is(err, ErrSymlink) {
		t.Fatalf("write through a symlink: err = %v, want ErrSymlink", err)
	}
	// A symlinked directory on the way.
	_ = os.Symlink(filepath.Join(dir, "etc"), filepath.Join(home, "evil"))
	_, err = r.WriteFile("/home/u/evil/shadow", []byte("x\n"), WriteOptions{NoSymlinkDirs: true})
	if !errors.Is(err, ErrSymlink) {
		t.Fatalf("write under a symlinked dir: err = %v, want ErrSymlink", err)
	}
	if data, _ := os.ReadFile(secretFile); string(data) != "root:hash\n" {
		t.Fatalf("the symlink target changed: %q", data)
	}
	// ReplaceSymlink replaces the link itself, never its target.
	if _, err := r.WriteFile("/home/u/.ssh/authorized_keys", []byte("key\n"), WriteOptions{ReplaceSymlink: true}); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Lstat(filepath.Join(home, ".ssh/authorized_keys"))
	if !fi.Mode().IsRegular() {
		t.Error("the link was not replaced by a file")
	}
	if data, _ := os.ReadFile(secretFile); string(data) != "root:hash\n" {
		t.Fatalf("the symlink target changed: %q", data)
	}
}

func TestRemove(t *testing.T) {
	r, _ := newRoot(t)
	if _, err := r.WriteFile("/etc/a", []byte("x"), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	removed, err := r.Remove("/etc/a")
	if err != nil || !removed {
		t.Fatalf("Remove = %v, %v", removed, err)
	}
	if removed, err := r.Remove("/etc/a"); err != nil || removed {
		t.Fatalf("second Remove = %v, %v", removed, err)
	}
	if _, err := r.Remove("/etc"); err == nil {
		t.Fatal("Remove of a directory must fail")
	}
	if files, _ := r.CreatedFiles(); len(files) != 0 {
		t.Errorf("removed file still in the manifest: %v", files)
	}
}

func TestHostPath(t *testing.T) {
	r, dir := newRoot(t)
	if got := r.HostPath("/etc/../etc/x"); got != filepath.Join(dir, "etc/x") {
		t.Errorf("HostPath = %q", got)
	}
	if got := r.HostPath("../../x"); got != filepath.Join(dir, "x") {
		t.Errorf("HostPath escapes the root: %q", got)
	}
}

// The manifest of created files is saved once, by Flush, not after every
// created file; a root opened after the Flush sees what the first created
// and removed. Flush forgets what it synced, so a second one writes nothing.
func TestFlushSavesTheManifestOnce(t *testing.T) {
	r, dir := newRoot(t)
	for _, p := range []string{"/etc/a", "/etc/b", "/var/lib/x/c"} {
		if _, err := r.WriteFile(p, []byte("x"), WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Remove("/etc/b"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dir, ManifestPath)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("manifest written before Flush: %v", err)
	}
	if len(r.pending) != 2 {
		t.Errorf("directories waiting for fsync = %v, want /etc and /var/lib/x", r.pending)
	}
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	if len(r.pending) != 0 || r.dirty {
		t.Errorf("after Flush: pending %v, dirty %v", r.pending, r.dirty)
	}
	fi, err := os.Stat(filepath.Join(dir, ManifestPath))
	if err != nil {
		t.Fatalf("manifest not saved by Flush: %v", err)
	}
	again, _ := New(dir)
	files, err := again.CreatedFiles()
	if err != nil || len(files) != 2 || files[0] != "/etc/a" || files[1] != "/var/lib/x/c" {
		t.Errorf("created files seen by a new root = %v, %v; want /etc/a and /var/lib/x/c", files, err)
	}
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	if fi2, _ := os.Stat(filepath.Join(dir, ManifestPath)); !os.SameFile(fi, fi2) {
		t.Errorf("a Flush with nothing new rewrote the manifest")
	}
}

// testXattr stands in for security.selinux, which this machine cannot
// set: the code path is the same, only the attribute's name differs.
const testXattr = "user.one-contextd-test"

// A replaced file keeps its label: the temp file renamed over it gets
// the old file's attribute first. An attribute the filesystem does not
// know, or the old file does not have, is skipped and the write goes on.
func TestReplacedFileKeepsItsLabel(t *testing.T) {
	r, dir := newRoot(t)
	if !slices.Equal(r.keepXattrs, []string{SELinuxXattr}) {
		t.Errorf("a host root keeps %v, want only %s", r.keepXattrs, SELinuxXattr)
	}
	if m := NewFs(afero.NewMemMapFs(), dir); len(m.keepXattrs) != 0 {
		t.Errorf("an afero root keeps %v; its files are not the host's", m.keepXattrs)
	}
	// "bogus." is no namespace the kernel knows (EOPNOTSUPP): skipped.
	r.keepXattrs = []string{"bogus.one-contextd-test", testXattr}

	p := filepath.Join(dir, "etc/hosts")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("127.0.0.1 localhost\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	label := []byte("system_u:object_r:net_conf_t:s0")
	if err := unix.Setxattr(p, testXattr, label, 0); err != nil {
		if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
			t.Skipf("the filesystem of %s has no user extended attributes: %v", dir, err)
		}
		t.Fatal(err)
	}
	var before unix.Stat_t
	if err := unix.Stat(p, &before); err != nil {
		t.Fatal(err)
	}

	changed, err := r.WriteFile("/etc/hosts", []byte("192.0.2.10 web\n"), WriteOptions{})
	if err != nil || !changed {
		t.Fatalf("write: changed=%v err=%v", changed, err)
	}
	var after unix.Stat_t
	if err := unix.Stat(p, &after); err != nil {
		t.Fatal(err)
	}
	if after.Ino == before.Ino {
		t.Fatal("the file was written in place, not replaced: the test proves nothing")
	}
	if got, err := lgetxattr(p, testXattr); err != nil || string(got) != string(label) {
		t.Errorf("%s after the replace = %q, %v; want %q", testXattr, got, err, label)
	}

	// A file without the attribute, and a new file, are written as before
	// and get none.
	for _, f := range []string{"/etc/hosts" + BackupSuffix, "/etc/new"} {
		if _, err := r.WriteFile(f, []byte("x\n"), WriteOptions{}); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if got, err := lgetxattr(r.HostPath(f), testXattr); !errors.Is(err, unix.ENODATA) {
			t.Errorf("%s: %s = %q, %v; want none", f, testXattr, got, err)
		}
	}
}
