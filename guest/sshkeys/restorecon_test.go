package sshkeys

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"one-contextd/engine"
	"one-contextd/fsroot"
	"one-contextd/guest/internal/guesttest"
	"one-contextd/runner"
)

// selinuxRoot is a bare root whose root account is this test's own user
// (so no chown needs privileges), with restorecon installed when asked.
func selinuxRoot(t *testing.T, withRestorecon bool) (string, *fsroot.Root) {
	t.Helper()
	dir := t.TempDir()
	passwd := fmt.Sprintf("root:x:%d:%d:root:/root:/bin/sh\n", os.Getuid(), os.Getgid())
	must(t, os.MkdirAll(filepath.Join(dir, "etc"), 0o755))
	must(t, os.MkdirAll(filepath.Join(dir, "root"), 0o700))
	must(t, os.WriteFile(filepath.Join(dir, "etc/passwd"), []byte(passwd), 0o644))
	if withRestorecon {
		must(t, os.MkdirAll(filepath.Join(dir, "usr/sbin"), 0o755))
		// policycoreutils' restorecon is a symlink to setfiles.
		must(t, os.Symlink("setfiles", filepath.Join(dir, "usr/sbin/restorecon")))
	}
	root, err := fsroot.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, root
}

func restoreconCalls(fake *runner.Fake) []string {
	var out []string
	for _, c := range fake.Commands() {
		if strings.HasPrefix(c, "restorecon ") {
			out = append(out, c)
		}
	}
	return out
}

// Writing the keys is followed by `restorecon -R ~/.ssh` once, as
// one-context does, when the image has restorecon; not when it has none,
// not when nothing was written, and not for a root that is not the
// running system unless asked (restorecon knows no other root).
func TestRestoreconAfterWritingKeys(t *testing.T) {
	c := guesttest.Context(t, map[string]string{"SSH_PUBLIC_KEY": keyAlice})
	apply := func(t *testing.T, root *fsroot.Root, anyRoot bool) (*runner.Fake, *engine.StepRecord) {
		t.Helper()
		fake := &runner.Fake{}
		r, rec := engine.NewTestRecorder()
		if err := Apply(context.Background(), r, Input{Users: c.Users, Root: root, Run: fake, RelabelAnyRoot: anyRoot}); err != nil {
			t.Fatalf("apply: %v", err)
		}
		return fake, rec
	}

	t.Run("installed", func(t *testing.T) {
		dir, root := selinuxRoot(t, true)
		fake, rec := apply(t, root, true)
		want := []string{"restorecon -R " + filepath.Join(dir, "root/.ssh")}
		if got := restoreconCalls(fake); !slices.Equal(got, want) {
			t.Errorf("restorecon calls %q, want %q (all: %q)", got, want, fake.Commands())
		}
		if len(rec.Problems) != 0 {
			t.Errorf("problems %q", rec.Problems)
		}
		// Nothing to write the second time: nothing to relabel.
		if fake, _ := apply(t, root, true); len(fake.Calls) != 0 {
			t.Errorf("second run ran %q", fake.Commands())
		}
	})
	t.Run("absent", func(t *testing.T) {
		_, root := selinuxRoot(t, false)
		if fake, _ := apply(t, root, true); len(restoreconCalls(fake)) != 0 {
			t.Errorf("ran %q in an image without restorecon", fake.Commands())
		}
	})
	t.Run("not the running system", func(t *testing.T) {
		_, root := selinuxRoot(t, true)
		if fake, _ := apply(t, root, false); len(restoreconCalls(fake)) != 0 {
			t.Errorf("ran %q for a root other than /", fake.Commands())
		}
	})
	t.Run("failure is a problem, missing from PATH a note", func(t *testing.T) {
		for _, tc := range []struct {
			err             error
			problems, notes int
		}{
			{&runner.ExitError{Cmd: "restorecon", Code: 255}, 1, 0},
			{fmt.Errorf("restorecon: %w", &exec.Error{Name: "restorecon", Err: exec.ErrNotFound}), 0, 1},
		} {
			_, root := selinuxRoot(t, true)
			fake := &runner.Fake{Handler: func(cmd runner.Cmd) (runner.Result, error) {
				if cmd.Name == "restorecon" {
					return runner.Result{}, tc.err
				}
				return runner.Result{}, nil
			}}
			r, rec := engine.NewTestRecorder()
			if err := Apply(context.Background(), r, Input{Users: c.Users, Root: root, Run: fake, RelabelAnyRoot: true}); err != nil {
				t.Fatalf("%v: apply: %v", tc.err, err)
			}
			if len(rec.Problems) != tc.problems || len(rec.Notes) != tc.notes {
				t.Errorf("%v: problems %q notes %q", tc.err, rec.Problems, rec.Notes)
			}
		}
	})
}
