package hostkeys

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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

// keygenFake stands in for `ssh-keygen -A -f DIR`: it makes the key
// files under the root; every other tool succeeds, or fails with
// restoreconErr for restorecon.
func keygenFake(t *testing.T, dir string, restoreconErr error) *runner.Fake {
	return &runner.Fake{Handler: func(c runner.Cmd) (runner.Result, error) {
		switch c.Name {
		case "ssh-keygen":
			for _, k := range []string{"rsa", "ecdsa", "ed25519"} {
				p := filepath.Join(dir, "etc/ssh/ssh_host_"+k+"_key")
				if err := os.WriteFile(p, []byte("key\n"), 0o600); err != nil {
					t.Error(err)
				}
			}
		case "restorecon":
			return runner.Result{}, restoreconErr
		}
		return runner.Result{}, nil
	}}
}

// keysTree is a root with an empty /etc/ssh, and restorecon when asked.
func keysTree(t *testing.T, withRestorecon bool) (string, *fsroot.Root) {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "etc/ssh"), 0o755); err != nil {
		t.Fatal(err)
	}
	if withRestorecon {
		if err := os.MkdirAll(filepath.Join(dir, "usr/sbin"), 0o755); err != nil {
			t.Fatal(err)
		}
		// policycoreutils' restorecon is a symlink to setfiles.
		if err := os.Symlink("setfiles", filepath.Join(dir, "usr/sbin/restorecon")); err != nil {
			t.Fatal(err)
		}
	}
	root, err := fsroot.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, root
}

// New keys are followed by `restorecon -R /etc/ssh` once, as one-context
// does, when the image has restorecon; not when it has none, not for a
// root that is not the running system unless asked (restorecon knows no
// other root), and a failing restorecon is a problem, the keys being made.
func TestRestoreconAfterMakingKeys(t *testing.T) {
	for _, tc := range []struct {
		name                string
		restorecon, anyRoot bool
		err                 error
		want                bool // restorecon runs
		problems            int
	}{
		{name: "installed", restorecon: true, anyRoot: true, want: true},
		{name: "absent", anyRoot: true},
		{name: "not the running system", restorecon: true},
		{name: "fails", restorecon: true, anyRoot: true, want: true, problems: 1,
			err: &runner.ExitError{Cmd: "restorecon", Code: 255}},
		{name: "not in PATH", restorecon: true, anyRoot: true, want: true,
			err: fmt.Errorf("restorecon: %w", &exec.Error{Name: "restorecon", Err: exec.ErrNotFound})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, root := keysTree(t, tc.restorecon)
			fake := keygenFake(t, dir, tc.err)
			r, sr := engine.NewTestRecorder()
			if err := Apply(context.Background(), r, Input{Root: root, Run: fake, RelabelAnyRoot: tc.anyRoot}); err != nil {
				t.Fatalf("apply: %v", err)
			}
			want := []string{"ssh-keygen -A -f " + dir}
			if tc.want {
				want = append(want, "restorecon -R "+filepath.Join(dir, "etc/ssh"))
			}
			if got := fake.Commands(); !slices.Equal(got, want) {
				t.Errorf("ran %q, want %q", got, want)
			}
			if len(sr.Problems) != tc.problems || len(sr.Changes) != 1 {
				t.Errorf("problems %q, changes %q", sr.Problems, sr.Changes)
			}
			// The keys are there now: nothing runs again.
			fake = keygenFake(t, dir, nil)
			r, _ = engine.NewTestRecorder()
			if err := Apply(context.Background(), r, Input{Root: root, Run: fake, RelabelAnyRoot: tc.anyRoot}); !errors.Is(err, engine.ErrSkip) || len(fake.Calls) != 0 {
				t.Errorf("second run: %v, ran %q", err, fake.Commands())
			}
		})
	}
}
