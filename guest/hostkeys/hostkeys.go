// Package hostkeys makes the SSH host keys of an image that ships without
// them, as one-context's loc-24-ssh_host_key does: `ssh-keygen -A`, and
// only when /etc/ssh/ssh_host_rsa_key is missing. Keys are never
// regenerated per instance; removing them from an image is the image
// build's job.
//
// New keys then get the labels of the image's SELinux policy with
// `restorecon -R /etc/ssh`, as one-context does: sshd is not allowed to
// read a key that ssh-keygen, run from the agent's domain, left with
// another label.
package hostkeys

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/spf13/afero"

	"one-contextd/engine"
	"one-contextd/fsroot"
	"one-contextd/guest/internal/selinux"
	"one-contextd/runner"
)

// SSHDir holds sshd's configuration and host keys.
const SSHDir = "/etc/ssh"

// RSAKey is the key whose absence means "this image has no host keys".
const RSAKey = SSHDir + "/ssh_host_rsa_key"

// Input is what the step needs.
type Input struct {
	Root *fsroot.Root
	Run  runner.Runner
	// RelabelAnyRoot runs restorecon through Run even when Root is not
	// "/" (tests, with a fake runner). Otherwise only a real root is
	// relabelled: restorecon labels a path by the running system's
	// policy and has no option for another root.
	RelabelAnyRoot bool
}

// Apply runs ssh-keygen -A under the root when the RSA host key is missing.
func Apply(ctx context.Context, r *engine.Recorder, in Input) error {
	// Lstat: a symlink at the key path, even a dangling one, is the
	// administrator's; ssh-keygen is not run to write through it.
	if _, err := in.Root.Lstat(RSAKey); err == nil {
		return engine.Skip("host keys present (" + RSAKey + ")")
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("host keys: %w", err)
	}
	if fi, err := in.Root.Lstat(SSHDir); err != nil || !fi.IsDir() {
		return engine.Skip("no " + SSHDir + " directory: OpenSSH is not installed")
	}
	before, err := keys(in.Root)
	if err != nil {
		return err
	}
	args := []string{"-A"}
	if !in.Root.IsReal() {
		// -f with -A is a prefix for the default key paths.
		args = append(args, "-f", in.Root.Dir())
	}
	if _, err := in.Run.Run(ctx, runner.Cmd{Name: "ssh-keygen", Args: args}); err != nil {
		return fmt.Errorf("host keys: %w", err)
	}
	after, err := keys(in.Root)
	if err != nil {
		return err
	}
	if !slices.Contains(after, path.Base(RSAKey)) {
		return fmt.Errorf("host keys: ssh-keygen -A left no %s", RSAKey)
	}
	var made []string
	for _, k := range after {
		if !slices.Contains(before, k) {
			made = append(made, strings.TrimSuffix(strings.TrimPrefix(k, "ssh_host_"), "_key"))
		}
	}
	r.Change("host keys: generated %s in %s", strings.Join(made, ", "), SSHDir)
	selinux.Relabel(ctx, r, in.Run, in.Root, SSHDir, in.RelabelAnyRoot, "host keys")
	return nil
}

// keys lists the private host key files in SSHDir, by name.
func keys(root *fsroot.Root) ([]string, error) {
	names, err := afero.Glob(root.Fs(), SSHDir+"/ssh_host_*_key")
	if err != nil {
		return nil, fmt.Errorf("host keys: %w", err)
	}
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = path.Base(n)
	}
	slices.Sort(out)
	return out, nil
}
