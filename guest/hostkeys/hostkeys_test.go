package hostkeys

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"one-contextd/engine"
	"one-contextd/fsroot"
	"one-contextd/guest/internal/debroot"
	"one-contextd/guest/internal/guesttest"
	"one-contextd/runner"
)

var snapshotSkip = []string{"usr", "var/cache", "var/lib/apt", "var/lib/dpkg", "proc", "dev", "sys"}

func debianTree(t *testing.T) (string, *fsroot.Root) {
	t.Helper()
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("ssh-keygen is not installed (openssh-client)")
	}
	dir := debroot.New(t)
	root, err := fsroot.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, root
}

func removeKeys(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		for _, p := range []string{n, n + ".pub"} {
			if err := os.Remove(filepath.Join(dir, "etc/ssh", p)); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func hostKeysDigest(t *testing.T) string {
	var b bytes.Buffer
	files, _ := filepath.Glob("/etc/ssh/ssh_host_*")
	for _, f := range files {
		data, _ := os.ReadFile(f)
		b.WriteString(f + "\x00")
		b.Write(data)
	}
	return b.String()
}

func TestImageWithoutKeysGetsThemOnce(t *testing.T) {
	dir, root := debianTree(t)
	removeKeys(t, dir, "ssh_host_rsa_key", "ssh_host_ecdsa_key", "ssh_host_ed25519_key")
	host := hostKeysDigest(t)
	run := &guesttest.Recording{}

	r, sr := engine.NewTestRecorder()
	if err := Apply(context.Background(), r, Input{Root: root, Run: run}); err != nil {
		t.Fatalf("apply: %v", err)
	}
	if calls := guesttest.Lines(run.Calls()); !slices.Equal(calls, []string{"ssh-keygen -A -f " + dir}) {
		t.Errorf("tools: %v", calls)
	}
	if len(sr.Changes) != 1 || !strings.Contains(sr.Changes[0], "rsa") || !strings.Contains(sr.Changes[0], "ed25519") {
		t.Errorf("changes %v", sr.Changes)
	}
	for _, k := range []string{"rsa", "ecdsa", "ed25519"} {
		priv := filepath.Join(dir, "etc/ssh/ssh_host_"+k+"_key")
		fi, err := os.Stat(priv)
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", priv, fi.Mode().Perm())
		}
		// The private key is a real key and the .pub is its public half.
		derived, err := exec.Command("ssh-keygen", "-y", "-f", priv).Output()
		if err != nil {
			t.Fatalf("ssh-keygen -y %s: %v", priv, err)
		}
		pub, err := os.ReadFile(priv + ".pub")
		if err != nil {
			t.Fatal(err)
		}
		if f := strings.Fields(string(pub)); len(f) < 2 || !strings.HasPrefix(string(derived), f[0]+" "+f[1]) {
			t.Errorf("%s.pub is not the public half of %s", k, priv)
		}
	}
	if hostKeysDigest(t) != host {
		t.Fatalf("this machine's host keys changed")
	}

	// Second run: the key is there, nothing runs, nothing changes.
	before := guesttest.Snapshot(t, dir, snapshotSkip...)
	r, sr = engine.NewTestRecorder()
	if err := Apply(context.Background(), r, Input{Root: root, Run: run}); !errors.Is(err, engine.ErrSkip) {
		t.Errorf("second run: %v, want a skip", err)
	}
	if calls := run.Calls(); len(calls) != 0 || len(sr.Changes) != 0 {
		t.Errorf("second run: tools %v changes %v", guesttest.Lines(calls), sr.Changes)
	}
	if d := guesttest.Diff(before, guesttest.Snapshot(t, dir, snapshotSkip...)); len(d) != 0 {
		t.Errorf("second run changed %v", d)
	}
}

// Only a missing RSA key triggers ssh-keygen; then the keys that are
// there are kept.
func TestOnlyAMissingRSAKeyTriggers(t *testing.T) {
	dir, root := debianTree(t)
	removeKeys(t, dir, "ssh_host_ecdsa_key")
	run := &guesttest.Recording{}
	r, _ := engine.NewTestRecorder()
	if err := Apply(context.Background(), r, Input{Root: root, Run: run}); !errors.Is(err, engine.ErrSkip) {
		t.Errorf("rsa present: %v, want a skip", err)
	}
	if calls := run.Calls(); len(calls) != 0 {
		t.Errorf("rsa present, ran %v", guesttest.Lines(calls))
	}
	if _, err := os.Stat(filepath.Join(dir, "etc/ssh/ssh_host_ecdsa_key")); err == nil {
		t.Errorf("the ecdsa key was made although the rsa key is there")
	}

	ed := filepath.Join(dir, "etc/ssh/ssh_host_ed25519_key")
	kept, err := os.ReadFile(ed)
	if err != nil {
		t.Fatal(err)
	}
	removeKeys(t, dir, "ssh_host_rsa_key")
	r, sr := engine.NewTestRecorder()
	if err := Apply(context.Background(), r, Input{Root: root, Run: run}); err != nil {
		t.Fatalf("apply: %v", err)
	}
	if now, _ := os.ReadFile(ed); !bytes.Equal(now, kept) {
		t.Errorf("the existing ed25519 key was replaced")
	}
	if want := "host keys: generated ecdsa, rsa in /etc/ssh"; !slices.Equal(sr.Changes, []string{want}) {
		t.Errorf("changes %v, want rsa and ecdsa only", sr.Changes)
	}
}

func TestNoSSHDirIsSkipped(t *testing.T) {
	root, err := fsroot.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	fake := &runner.Fake{}
	r, _ := engine.NewTestRecorder()
	if err := Apply(context.Background(), r, Input{Root: root, Run: fake}); !errors.Is(err, engine.ErrSkip) || !strings.Contains(err.Error(), "OpenSSH") {
		t.Errorf("err = %v", err)
	}
	if len(fake.Calls) != 0 {
		t.Errorf("ran %v", fake.Commands())
	}
}

func TestADanglingSymlinkIsNotWrittenThrough(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "etc/ssh"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/nonexistent/key", filepath.Join(dir, "etc/ssh/ssh_host_rsa_key")); err != nil {
		t.Fatal(err)
	}
	root, err := fsroot.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	fake := &runner.Fake{}
	r, _ := engine.NewTestRecorder()
	if err := Apply(context.Background(), r, Input{Root: root, Run: fake}); !errors.Is(err, engine.ErrSkip) {
		t.Errorf("err = %v, want a skip", err)
	}
	if len(fake.Calls) != 0 {
		t.Errorf("ran %v", fake.Commands())
	}
}

func TestToolFailureIsTheStepsError(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "etc/ssh"), 0o755); err != nil {
		t.Fatal(err)
	}
	root, err := fsroot.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	// A tool that "succeeds" but writes nothing is caught too.
	for _, fake := range []*runner.Fake{
		{Handler: func(c runner.Cmd) (runner.Result, error) {
			return runner.Result{ExitCode: 1}, &runner.ExitError{Cmd: c.String(), Code: 1}
		}},
		{},
	} {
		r, sr := engine.NewTestRecorder()
		err := Apply(context.Background(), r, Input{Root: root, Run: fake})
		if err == nil || errors.Is(err, engine.ErrSkip) || !strings.Contains(err.Error(), "host keys") || len(sr.Changes) != 0 {
			t.Errorf("err = %v, changes %v", err, sr.Changes)
		}
	}
}
