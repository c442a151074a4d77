package users

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"one-contextd/engine"
	"one-contextd/fsroot"
	"one-contextd/guest/internal/guesttest"
	"one-contextd/runner"
)

// oddTree is a root whose /etc/passwd is as given ("" : no file at all).
func oddTree(t *testing.T, passwd string) (string, *fsroot.Root) {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "etc/sudoers.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if passwd != "" {
		if err := os.WriteFile(filepath.Join(dir, "etc/passwd"), []byte(passwd), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	root, err := fsroot.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, root
}

// noTools fails the test on any tool run.
func noTools(t *testing.T) *runner.Fake {
	return &runner.Fake{Handler: func(c runner.Cmd) (runner.Result, error) {
		t.Errorf("tool run: %s", c.String())
		return runner.Result{}, errors.New("no tool expected")
	}}
}

func TestRootWithNothingToDoSkipsWhateverPasswdHolds(t *testing.T) {
	c := guesttest.Context(t, map[string]string{"SSH_PUBLIC_KEY": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ5ww0NbDh2ZTiDEaJTqgDW3KxThVgCHDx+/dKUK7UPo k"})
	if c.Users.Name != "root" || passwordWork(c.Users) {
		t.Fatalf("settings: %+v", c.Users)
	}
	for name, passwd := range map[string]string{
		"no root":     "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n",
		"bad uid":     "root:x:zero:0:root:/root:/bin/bash\n",
		"short line":  "root:x:0\n",
		"no file":     "",
		"binary junk": "\x00\xff::::\n\n:",
	} {
		t.Run(name, func(t *testing.T) {
			dir, root := oddTree(t, passwd)
			before := guesttest.Snapshot(t, dir)
			r, sr := engine.NewTestRecorder()
			err := Apply(context.Background(), r, Input{Users: c.Users, Root: root, Run: noTools(t)})
			if !errors.Is(err, engine.ErrSkip) || !strings.Contains(err.Error(), "nothing to do for root") {
				t.Errorf("err = %v, want a skip: nothing to do for root", err)
			}
			if len(sr.Changes)+len(sr.Problems) != 0 {
				t.Errorf("changes %v problems %v", sr.Changes, sr.Problems)
			}
			if d := guesttest.Diff(before, guesttest.Snapshot(t, dir)); len(d) != 0 {
				t.Errorf("files changed: %v", d)
			}
		})
	}
}

func TestRootStillLosesALeftoverSudoFile(t *testing.T) {
	dir, root := oddTree(t, "daemon:x:1:1::/:/bin/sh\n")
	p := filepath.Join(dir, SudoersPath)
	if err := os.WriteFile(p, []byte("olduser ALL=(ALL) NOPASSWD:ALL\n"), 0o440); err != nil {
		t.Fatal(err)
	}
	c := guesttest.Context(t, map[string]string{})
	r, sr := engine.NewTestRecorder()
	if err := Apply(context.Background(), r, Input{Users: c.Users, Root: root, Run: noTools(t)}); err != nil {
		t.Fatalf("apply: %v", err)
	}
	if _, err := os.Lstat(p); err == nil || len(sr.Changes) != 1 {
		t.Errorf("drop-in not removed: changes %v", sr.Changes)
	}
	r, _ = engine.NewTestRecorder()
	if err := Apply(context.Background(), r, Input{Users: c.Users, Root: root, Run: noTools(t)}); !errors.Is(err, engine.ErrSkip) {
		t.Errorf("second run: %v, want a skip", err)
	}
}

func TestRootPasswordWithoutRootInPasswdFails(t *testing.T) {
	_, root := oddTree(t, "daemon:x:1:1::/:/bin/sh\n")
	c := guesttest.Context(t, map[string]string{"PASSWORD": "pw-for-root"})
	r, _ := engine.NewTestRecorder()
	err := Apply(context.Background(), r, Input{Users: c.Users, Root: root, Run: noTools(t)})
	if err == nil || errors.Is(err, engine.ErrSkip) || !strings.Contains(err.Error(), "root") {
		t.Errorf("err = %v, want a failure naming root", err)
	}
	if err != nil && strings.Contains(err.Error(), "pw-for-root") {
		t.Errorf("the password reached the error")
	}
}
