// Package users applies the account part of the context: the user
// (USERNAME, root when unset), its shell on creation, the sudoers drop-in
// and the password, as one-context does, with the distribution's tools run
// against the configured root.
//
// Passwords go to chpasswd on stdin only. The clear text never reaches a
// command line, a log, an error or a file the agent writes.
package users

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"one-contextd/context/settings"
	"one-contextd/engine"
	"one-contextd/fsroot"
	"one-contextd/guest/internal/accounts"
	"one-contextd/runner"
)

// SudoersPath is one-context's drop-in; one file, so one user.
const SudoersPath = "/etc/sudoers.d/one-context"

// CreatedPath records the users the agent created (names only), so that
// nothing ever mistakes a user it did not create for its own.
const CreatedPath = "/var/lib/one-contextd/users-created.json"

// sudoersCheckPath is where the drop-in is checked before it is moved into
// place: sudo ignores files in sudoers.d whose name contains a dot.
const sudoersCheckPath = "/etc/sudoers.d/.one-context.check"

// Input is what the users step needs.
type Input struct {
	Users settings.Users
	Root  *fsroot.Root
	Run   runner.Runner
}

// Apply creates the user if missing, writes or removes the sudoers
// drop-in and sets the password.
func Apply(ctx context.Context, r *engine.Recorder, in Input) error {
	u := in.Users
	if u.NameInvalid {
		// Not root in its place: the context's password and sudo rule
		// were meant for another account.
		return fmt.Errorf("USERNAME %q is not a valid user name: no user is created, no password or sudo rule is set", u.Name)
	}
	if u.Name == "" {
		u.Name = "root"
	}
	if u.Name == "root" && !passwordWork(u) {
		// root is never created and never gets the sudo file, so with no
		// password to set nothing of root's is read: a tree whose
		// /etc/passwd lacks root or is odd (a container, a rescue image)
		// is not this step's failure. A sudo file left for an earlier
		// USERNAME is still removed, as one-context does.
		removed, err := applySudo(ctx, r, in, u)
		if err != nil {
			return err
		}
		if !removed {
			return engine.Skip("nothing to do for root (no password variable, no USERNAME_PASSWORD_RESET)")
		}
		return nil
	}
	if err := ensureUser(ctx, r, in, u); err != nil {
		return err
	}
	var errs []error
	if _, err := applySudo(ctx, r, in, u); err != nil {
		errs = append(errs, err)
	}
	if err := applyPassword(ctx, r, in, u); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// rootArgs puts --root before the tool's other arguments, unless the root
// is the host's own /.
func rootArgs(root *fsroot.Root, args ...string) []string {
	if root.IsReal() {
		return args
	}
	return append([]string{"--root", root.Dir()}, args...)
}

func ensureUser(ctx context.Context, r *engine.Recorder, in Input, u settings.Users) error {
	_, ok, err := accounts.Lookup(in.Root, u.Name)
	if err != nil {
		return fmt.Errorf("user %s: %w", u.Name, err)
	}
	if ok {
		return nil
	}
	if u.Name == "root" {
		return fmt.Errorf("user root: not in /etc/passwd")
	}
	shell := u.Shell
	if shell == "" {
		shell = "/bin/bash"
	}
	if !isExecutable(in.Root, shell) {
		r.Problem("USERNAME_SHELL", "%q does not exist or is not executable in the guest; user %s is created with /bin/bash", shell, u.Name)
		shell = "/bin/bash"
	}
	// -p '*': the password is locked until a password variable sets one.
	args := rootArgs(in.Root, "-m", "-p", "*", "-s", shell, u.Name)
	if _, err := in.Run.Run(ctx, runner.Cmd{Name: "useradd", Args: args}); err != nil {
		return fmt.Errorf("user %s: %w", u.Name, err)
	}
	r.Change("user %s: created with shell %s, password locked", u.Name, shell)
	if err := recordCreated(in.Root, u.Name); err != nil {
		return fmt.Errorf("user %s: %w", u.Name, err)
	}
	return nil
}

func isExecutable(root *fsroot.Root, p string) bool {
	fi, err := root.Fs().Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// Created lists the users the agent created, as recorded under the root.
func Created(root *fsroot.Root) ([]string, error) {
	data, err := root.ReadFile(CreatedPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", CreatedPath, err)
	}
	var names []string
	if err := json.Unmarshal(data, &names); err != nil {
		return nil, fmt.Errorf("read %s: %w", CreatedPath, err)
	}
	return names, nil
}

func recordCreated(root *fsroot.Root, name string) error {
	names, err := Created(root)
	if err != nil {
		return err
	}
	if slices.Contains(names, name) {
		return nil
	}
	names = append(names, name)
	slices.Sort(names)
	data, err := json.MarshalIndent(names, "", "  ")
	if err != nil {
		return err
	}
	_, err = root.WriteFile(CreatedPath, append(data, '\n'), fsroot.WriteOptions{Mode: 0o600})
	return err
}

// isAgentSudoLine reports whether b is the one line the agent (or
// one-context) writes.
func isAgentSudoLine(b []byte) bool {
	name, ok := strings.CutSuffix(strings.TrimSuffix(string(b), "\n"), " ALL=(ALL) NOPASSWD:ALL")
	return ok && settings.ValidUserName(name)
}

func sudoLine(name string) string { return name + " ALL=(ALL) NOPASSWD:ALL\n" }

// applySudo writes or removes the drop-in; removed reports a removal.
func applySudo(ctx context.Context, r *engine.Recorder, in Input, u settings.Users) (removed bool, err error) {
	if !u.Sudo || u.Name == "root" {
		return removeSudo(r, in)
	}
	return false, writeSudo(ctx, r, in, u)
}

// passwordWork reports whether a password variable or
// USERNAME_PASSWORD_RESET asks for something.
func passwordWork(u settings.Users) bool {
	return u.Password.Kind != settings.NoPassword || u.PasswordReset
}

func removeSudo(r *engine.Recorder, in Input) (bool, error) {
	cur, err := in.Root.ReadFile(SudoersPath)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("sudo: %w", err)
	}
	created, err := in.Root.Created(SudoersPath)
	if err != nil {
		return false, fmt.Errorf("sudo: %w", err)
	}
	if !created && !isAgentSudoLine(cur) {
		r.Note("sudo: %s holds more than the agent's line; left in place", SudoersPath)
		return false, nil
	}
	if _, err := in.Root.Remove(SudoersPath); err != nil {
		return false, fmt.Errorf("sudo: %w", err)
	}
	r.Change("sudo: removed %s", SudoersPath)
	return true, nil
}

func writeSudo(ctx context.Context, r *engine.Recorder, in Input, u settings.Users) error {
	cur, err := in.Root.ReadFile(SudoersPath)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("sudo: %w", err)
	}
	want := []byte(sudoLine(u.Name))
	if !exists && !in.Root.Exists("/etc/sudoers") {
		// Without sudo a drop-in grants nothing, and there is no visudo to
		// check it with: say so instead of failing the step.
		r.Problem("USERNAME_SUDO", "YES, but sudo is not installed in the guest (no /etc/sudoers); no drop-in written")
		return nil
	}
	if exists && string(cur) == string(want) {
		if fi, err := in.Root.Lstat(SudoersPath); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm() == 0o440 {
			return nil
		}
	}
	opt := fsroot.WriteOptions{Mode: 0o440, ForceMode: true, UID: 0, GID: 0, ForceOwner: true, DirMode: 0o750}
	// A broken drop-in locks everyone out of sudo. The agent's own line
	// (a name of [a-z0-9_-] and a fixed rule) always parses, which the
	// tests check with the real visudo, so it goes in without a visudo run
	// at boot (about 0.3 s under emulation). Anything else is checked first.
	if !isAgentSudoLine(want) {
		if err := visudoCheck(ctx, in, want, opt); err != nil {
			return fmt.Errorf("sudo: the drop-in for %s does not pass visudo: %w", u.Name, err)
		}
	}
	changed, err := in.Root.WriteFile(SudoersPath, want, opt)
	if err != nil {
		return fmt.Errorf("sudo: %w", err)
	}
	if changed {
		r.Change("sudo: %s grants %s ALL=(ALL) NOPASSWD:ALL", SudoersPath, u.Name)
	}
	return nil
}

// visudoCheck runs visudo on the exact bytes in a file sudo ignores.
func visudoCheck(ctx context.Context, in Input, data []byte, opt fsroot.WriteOptions) error {
	if _, err := in.Root.WriteFile(sudoersCheckPath, data, opt); err != nil {
		return err
	}
	defer func() { _, _ = in.Root.Remove(sudoersCheckPath) }()
	_, err := in.Run.Run(ctx, runner.Cmd{Name: "visudo", Args: []string{"-c", "-q", "-f", in.Root.HostPath(sudoersCheckPath)}})
	return err
}

// locked reports whether a shadow password field allows no password login.
func locked(hash string) bool { return hash == "*" || strings.HasPrefix(hash, "!") }

func applyPassword(ctx context.Context, r *engine.Recorder, in Input, u settings.Users) error {
	pw := u.Password
	if !passwordWork(u) {
		return nil
	}
	cur, ok, err := accounts.ShadowHash(in.Root, u.Name)
	if err != nil {
		return fmt.Errorf("password of %s: %w", u.Name, err)
	}
	if !ok {
		return fmt.Errorf("password of %s: no entry in /etc/shadow", u.Name)
	}
	switch pw.Kind {
	case settings.CryptedPassword:
		if cur == pw.Value.Reveal() {
			return nil
		}
		// chpasswd -e takes the hash on stdin; usermod -p would put it on
		// the command line, where every user can read it in /proc.
		if err := chpasswd(ctx, in, u.Name, pw.Value.Reveal(), "-e"); err != nil {
			return err
		}
		r.Change("user %s: password hash set from %s", u.Name, pw.From)
	case settings.ClearPassword:
		if sha512CryptMatches(pw.Value.Reveal(), cur) {
			return nil
		}
		// An explicit method keeps PAM out of it (PAM would not honour
		// --root) and gives a $6$ hash the next run can verify.
		if err := chpasswd(ctx, in, u.Name, pw.Value.Reveal(), "-c", "SHA512"); err != nil {
			return err
		}
		r.Change("user %s: password set from %s", u.Name, pw.From)
	default: // USERNAME_PASSWORD_RESET
		if locked(cur) {
			return nil
		}
		if _, err := in.Run.Run(ctx, runner.Cmd{Name: "usermod", Args: rootArgs(in.Root, "-p", "*", u.Name)}); err != nil {
			return fmt.Errorf("password of %s: lock: %w", u.Name, err)
		}
		r.Change("user %s: password locked (USERNAME_PASSWORD_RESET)", u.Name)
	}
	return nil
}

func chpasswd(ctx context.Context, in Input, name, value string, flags ...string) error {
	stdin := []byte(name + ":" + value + "\n")
	defer clear(stdin)
	_, err := in.Run.Run(ctx, runner.Cmd{Name: "chpasswd", Args: rootArgs(in.Root, flags...), Stdin: stdin})
	if err != nil {
		// The tool's stderr never echoes the password, but the runner's
		// error carries it: keep only the command and exit code.
		var ee *runner.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("password of %s: chpasswd %s: exit status %d", name, strings.Join(flags, " "), ee.Code)
		}
		return fmt.Errorf("password of %s: chpasswd: %w", name, err)
	}
	return nil
}
