// Package selinux gives files the agent made their policy's default
// labels, as one-context does with restorecon after writing SSH keys: on an
// enforcing system sshd may not read keys labelled as plain home or etc
// files.
package selinux

import (
	"context"
	"errors"
	"os/exec"
	"slices"

	"one-contextd/engine"
	"one-contextd/fsroot"
	"one-contextd/runner"
)

// toolPaths are where policycoreutils installs restorecon.
var toolPaths = []string{"/usr/sbin/restorecon", "/sbin/restorecon"}

// Relabel runs `restorecon -R dir` (dir inside root) through run when the
// image has restorecon; it exits at once when SELinux is off. The files
// are in place by then, so a failure is a problem, not the step's
// failure, and a missing tool is nothing at all; what names the files in
// the notes ("ssh keys of bob"). restorecon labels by the running
// system's policy, so a root other than / is left alone unless anyRoot
// (tests with a fake runner). It only sets the policy's default labels:
// a symlink a user swaps in meanwhile gains nothing.
func Relabel(ctx context.Context, r *engine.Recorder, run runner.Runner, root *fsroot.Root, dir string, anyRoot bool, what string) {
	if !root.IsReal() && !anyRoot {
		return
	}
	if !slices.ContainsFunc(toolPaths, root.Exists) {
		return
	}
	p := root.HostPath(dir)
	_, err := run.Run(ctx, runner.Cmd{Name: "restorecon", Args: []string{"-R", p}})
	switch {
	case errors.Is(err, exec.ErrNotFound):
		r.Note("%s: restorecon is not in PATH; SELinux labels of %s not restored", what, dir)
	case err != nil:
		r.Problem("", "%s: restorecon -R %s: %v; sshd may not be allowed to read the keys", what, p, err)
	default:
		r.Note("%s: restored the SELinux labels of %s", what, dir)
	}
}
