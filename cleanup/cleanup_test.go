package cleanup

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"one-contextd/fsroot"
)

// bootedRoot makes a temp root that looks like a system after a boot: the
// agent created /etc/netplan/50-one-contextd.yaml and a user's key file
// through fsroot, replaced /etc/hosts (backed up), logged and kept state.
func bootedRoot(t *testing.T) (string, *fsroot.Root) {
	t.Helper()
	dir := t.TempDir()
	mustWrite(t, dir, "/etc/hosts", "127.0.0.1 localhost\n")
	mustWrite(t, dir, "/etc/machine-id", "0123456789abcdef0123456789abcdef\n")
	mustWrite(t, dir, "/var/log/one-context.log", "boot 1\n")
	mustWrite(t, dir, "/var/log/one-context.log.1", "boot 0\n")
	mustWrite(t, dir, "/var/log/syslog", "not ours\n")
	mustWrite(t, dir, "/run/one-context/context.sh.local", "X=1\n")
	mustWrite(t, dir, "/var/lib/one-contextd/state.json", "{}\n")
	mustWrite(t, dir, "/var/lib/one-contextd/report/pending.json", "{}\n")
	root, err := fsroot.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	for p, data := range map[string]string{
		"/etc/netplan/50-one-contextd.yaml":  "network: {}\n",
		"/home/alice/.ssh/authorized_keys":   "ssh-ed25519 AAAA alice\n",
		"/etc/hosts":                         "127.0.0.1 localhost vm\n",
		"/var/lib/one-contextd/created.note": "x\n",
	} {
		if _, err := root.WriteFile(p, []byte(data), fsroot.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return dir, root
}

func mustWrite(t *testing.T, dir, p, data string) {
	t.Helper()
	hp := filepath.Join(dir, p)
	if err := os.MkdirAll(filepath.Dir(hp), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func exists(dir, p string) bool {
	_, err := os.Lstat(filepath.Join(dir, p))
	return err == nil
}

func TestCleanDefaultKeepsCreatedFilesAndManifest(t *testing.T) {
	dir, root := bootedRoot(t)
	got, err := Clean(root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"/run/one-context",
		"/var/lib/one-contextd/created.note",
		"/var/lib/one-contextd/report",
		"/var/lib/one-contextd/state.json",
		"/var/log/one-context.log",
		"/var/log/one-context.log.1",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Clean removed\n%q\nwant\n%q", got, want)
	}
	for _, p := range []string{"/etc/netplan/50-one-contextd.yaml", "/home/alice/.ssh/authorized_keys",
		fsroot.ManifestPath, "/var/log/syslog", "/etc/hosts", "/etc/hosts" + fsroot.BackupSuffix} {
		if !exists(dir, p) {
			t.Errorf("%s was removed, want kept", p)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "/etc/machine-id")); !strings.HasPrefix(string(b), "0123") {
		t.Errorf("machine-id changed without --machine-id: %q", b)
	}
	// The manifest still says the agent owns its files.
	again, _ := fsroot.New(dir)
	if own, err := again.Created("/etc/netplan/50-one-contextd.yaml"); err != nil || !own {
		t.Errorf("after clean, Created(netplan) = %v, %v; want true", own, err)
	}
}

func TestCleanCreatedFilesAndMachineID(t *testing.T) {
	dir, root := bootedRoot(t)
	got, err := Clean(root, Options{CreatedFiles: true, MachineID: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/etc/netplan/50-one-contextd.yaml", "/home/alice/.ssh/authorized_keys", "/var/lib/one-contextd", MachineIDFile} {
		if !contains(got, p) {
			t.Errorf("result %q lacks %s", got, p)
		}
	}
	for _, p := range []string{"/etc/netplan/50-one-contextd.yaml", "/home/alice/.ssh/authorized_keys", "/var/lib/one-contextd", "/run/one-context", "/var/log/one-context.log"} {
		if exists(dir, p) {
			t.Errorf("%s still exists", p)
		}
	}
	// A file the agent did not create stays, even though it rewrote it.
	for _, p := range []string{"/etc/hosts", "/var/log/syslog", "/home/alice/.ssh"} {
		if !exists(dir, p) {
			t.Errorf("%s removed, but the agent did not create it", p)
		}
	}
	fi, err := os.Stat(filepath.Join(dir, MachineIDFile))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, MachineIDFile))
	if string(b) != "uninitialized\n" || fi.Mode().Perm() != 0o444 {
		t.Errorf("machine-id = %q mode %v, want \"uninitialized\\n\" 0444", b, fi.Mode().Perm())
	}
	if exists(dir, MachineIDFile+fsroot.BackupSuffix) {
		t.Error("the old machine-id was backed up into the image")
	}
}

func TestCleanTwiceChangesNothing(t *testing.T) {
	_, root := bootedRoot(t)
	if _, err := Clean(root, Options{CreatedFiles: true, MachineID: true}); err != nil {
		t.Fatal(err)
	}
	got, err := Clean(root, Options{CreatedFiles: true, MachineID: true})
	if err != nil || len(got) != 0 {
		t.Errorf("second Clean = %q, %v; want nothing", got, err)
	}
}

func TestCleanEmptyRoot(t *testing.T) {
	root, err := fsroot.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	got, err := Clean(root, Options{CreatedFiles: true})
	if err != nil || len(got) != 0 {
		t.Errorf("Clean(empty) = %q, %v", got, err)
	}
}

// A symlink where the runtime directory should be is removed as a link; its
// target is left alone.
func TestCleanDoesNotFollowSymlinks(t *testing.T) {
	dir := t.TempDir()
	mustWrite(t, dir, "/srv/precious/file", "keep\n")
	if err := os.MkdirAll(filepath.Join(dir, "/run"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "/srv/precious"), filepath.Join(dir, RuntimeDir)); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, dir, "/srv/id", "abc\n")
	if err := os.MkdirAll(filepath.Join(dir, "/etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/srv/id", filepath.Join(dir, MachineIDFile)); err != nil {
		t.Fatal(err)
	}
	root, _ := fsroot.New(dir)
	got, err := Clean(root, Options{MachineID: true})
	if err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Errorf("want a symlink error for machine-id, got %v", err)
	}
	if !contains(got, RuntimeDir) {
		t.Errorf("runtime link not removed: %q", got)
	}
	if !exists(dir, "/srv/precious/file") {
		t.Error("Clean followed the runtime-dir symlink")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "/srv/id")); string(b) != "abc\n" {
		t.Errorf("machine-id symlink target written: %q", b)
	}
}

func TestMain(t *testing.T) {
	dir, _ := bootedRoot(t)
	var out, errb bytes.Buffer
	if code := Main([]string{"--root", dir, "--machine-id"}, &out, &errb); code != 0 {
		t.Fatalf("Main = %d, stderr %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "removed /var/log/one-context.log\n") || !strings.Contains(out.String(), "reset /etc/machine-id\n") {
		t.Errorf("output:\n%s", out.String())
	}
	if code := Main([]string{"--root", dir, "extra"}, &out, &errb); code != 2 {
		t.Errorf("Main with an extra argument = %d, want 2", code)
	}
	if code := Main([]string{"--root", filepath.Join(dir, "missing")}, &out, &errb); code != 1 {
		t.Errorf("Main with a missing root = %d, want 1", code)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
