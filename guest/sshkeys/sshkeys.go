// Package sshkeys installs SSH_PUBLIC_KEY and EC2_PUBLIC_KEY into the
// user's ~/.ssh/authorized_keys, inside a block between marker lines; the
// user's own lines are kept byte for byte and the file is never deleted.
//
// The user owns their home, so every path under it may be a symlink the
// user planted (~/.ssh -> /etc, authorized_keys -> /etc/shadow) or be
// swapped for one while the agent works. Path-based checks cannot close
// that race, so this package does not write through fsroot.WriteFile:
// it walks from the root directory one component at a time with
// openat(O_NOFOLLOW), keeps the ~/.ssh directory open, and does every
// read, create, chown, chmod and rename relative to that descriptor.
// A symlink on the way is refused, unless only root could have made it
// (see openBeneath): /root -> var/roothome on Fedora CoreOS is followed.
//
// After a write, `restorecon -R ~/.ssh` gives the directory and the file
// the labels of the image's SELinux policy, as one-context does: the
// agent's own domain may create ~/.ssh with its parent's label
// (user_home_t), from which sshd is not allowed to read keys.
package sshkeys

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"golang.org/x/sys/unix"

	"one-contextd/context/settings"
	"one-contextd/engine"
	"one-contextd/fsroot"
	"one-contextd/guest/internal/accounts"
	"one-contextd/guest/internal/selinux"
	"one-contextd/runner"
)

// Block markers in authorized_keys.
const (
	BeginMarker = "# BEGIN one-contextd: keys from the context; this block is rewritten at every boot"
	EndMarker   = "# END one-contextd"
)

// maxFile bounds what is read of an existing authorized_keys.
const maxFile = 4 << 20

// ErrUnsafePath is returned when a path under the home is a symlink, a
// hard link or not what it should be.
var ErrUnsafePath = errors.New("unsafe path")

// Input is what the keys step needs.
type Input struct {
	Users settings.Users // Name (root when empty) and Keys
	Root  *fsroot.Root   // must be a host directory
	Run   runner.Runner
	// RelabelAnyRoot runs restorecon through Run even when Root is not
	// "/" (tests, with a fake runner). Otherwise only a real root is
	// relabelled: restorecon labels a path by the running system's
	// policy and has no option for another root.
	RelabelAnyRoot bool
}

// Apply validates the keys and writes the block.
func Apply(ctx context.Context, r *engine.Recorder, in Input) error {
	if in.Users.NameInvalid {
		return fmt.Errorf("ssh keys: USERNAME %q is not a valid user name: the keys are installed for nobody (not root in its place)", in.Users.Name)
	}
	name := in.Users.Name
	if name == "" {
		name = "root"
	}
	if in.Root.Dir() == "" {
		return fmt.Errorf("ssh keys of %s: the root has no host directory", name)
	}
	acct, ok, err := accounts.Lookup(in.Root, name)
	if err != nil {
		return fmt.Errorf("ssh keys of %s: %w", name, err)
	}
	if !ok {
		// one-context falls back to /root; with a named user that would
		// hand root's account to the context's keys, so refuse.
		return fmt.Errorf("ssh keys of %s: no such user", name)
	}
	if acct.Home == "" || !strings.HasPrefix(acct.Home, "/") {
		return fmt.Errorf("ssh keys of %s: home %q is not an absolute path", name, acct.Home)
	}

	var keys []settings.SSHKey
	for _, k := range in.Users.Keys {
		if err := precheck(k.Line); err != nil {
			r.Problem(k.From, "key %d is not a public key: %v; not installed", k.Position, err)
			continue
		}
		keys = append(keys, k)
	}

	home, err := openBeneath(in.Root.Dir(), acct.Home)
	if err != nil {
		return fmt.Errorf("ssh keys of %s: %s: %w", name, acct.Home, err)
	}
	defer unix.Close(home)

	sshDir, created, err := openSSHDir(home, len(keys) > 0)
	if err != nil {
		return fmt.Errorf("ssh keys of %s: %s/.ssh: %w", name, acct.Home, err)
	}
	if sshDir < 0 {
		return nil // no keys and no ~/.ssh: nothing to do
	}
	defer unix.Close(sshDir)
	dirPath := acct.Home + "/.ssh"
	if created {
		r.Change("ssh keys of %s: created %s", name, dirPath)
	}
	if err := fixOwnerMode(sshDir, acct.UID, acct.GID, 0o700); err != nil {
		return fmt.Errorf("ssh keys of %s: %s: %w", name, dirPath, err)
	}

	old, exists, err := readKeys(sshDir, acct.UID)
	if err != nil {
		return fmt.Errorf("ssh keys of %s: %s/authorized_keys: %w", name, dirPath, err)
	}
	own, block := split(old)
	if !exists && len(keys) == 0 {
		return nil
	}

	// Keys already in the block were checked when they were written, and
	// keys the user has on their own lines need no block entry.
	var lines []string
	seen := map[string]bool{}
	keygenMissing := false
	for _, k := range keys {
		if seen[k.Line] || hasLine(own, k.Line) {
			continue
		}
		seen[k.Line] = true
		if !hasLine(block, k.Line) {
			if !keygenMissing {
				_, err := in.Run.Run(ctx, runner.Cmd{Name: "ssh-keygen", Args: []string{"-l", "-f", "-"}, Stdin: []byte(k.Line + "\n")})
				if errors.Is(err, exec.ErrNotFound) {
					keygenMissing = true
					r.Note("ssh keys of %s: ssh-keygen is not installed; keys checked by the agent's own parser", name)
				} else if err != nil {
					r.Problem(k.From, "key %d is not a public key ssh-keygen accepts: %v; not installed", k.Position, err)
					continue
				}
			}
		}
		lines = append(lines, k.Line)
	}
	data := join(own, lines)

	if exists && bytes.Equal(data, old) {
		fd, err := unix.Openat(sshDir, "authorized_keys", unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("ssh keys of %s: %w", name, err)
		}
		defer unix.Close(fd)
		if err := fixOwnerMode(fd, acct.UID, acct.GID, 0o600); err != nil {
			return fmt.Errorf("ssh keys of %s: %s/authorized_keys: %w", name, dirPath, err)
		}
		return nil
	}
	if err := writeAt(sshDir, "authorized_keys", data, acct.UID, acct.GID); err != nil {
		return fmt.Errorf("ssh keys of %s: %s/authorized_keys: %w", name, dirPath, err)
	}
	r.Change("ssh keys of %s: %s/authorized_keys holds %d context keys", name, dirPath, len(lines))
	selinux.Relabel(ctx, r, in.Run, in.Root, dirPath, in.RelabelAnyRoot, "ssh keys of "+name)
	return nil
}

// openBeneath opens the directory p under rootDir (trusted itself),
// opening one component at a time without following symlinks, except a
// symlink only root could have made and only root can replace: owned by
// root, in a directory owned by root that neither group nor others may
// write. Those are the image's own layout (Fedora CoreOS and RHEL image
// mode link /root to var/roothome and /home to var/home); a link in a
// user's home is the user's and is refused. A followed link stays inside
// rootDir: an absolute target is taken from rootDir, and ".." stops there.
func openBeneath(rootDir, p string) (int, error) {
	parts := splitPath(p)
	for followed := 0; ; followed++ {
		if followed > maxLinks {
			return -1, fmt.Errorf("%w: %s: too many symlinks", ErrUnsafePath, p)
		}
		fd, rest, err := walk(rootDir, parts)
		if rest == nil {
			return fd, err
		}
		parts = rest // a trusted link replaced a component: walk again
	}
}

// maxLinks bounds the trusted symlinks one path may go through, as the
// kernel's MAXSYMLINKS does.
const maxLinks = 40

// splitPath splits p into components, dropping empty ones and ".".
func splitPath(p string) []string {
	var out []string
	for _, part := range strings.Split(p, "/") {
		if part != "" && part != "." {
			out = append(out, part)
		}
	}
	return out
}

// walk opens parts under rootDir. When a component is a trusted symlink
// it returns, instead of a descriptor, the components to walk next: the
// ones before the link, the link's target, and the ones after it.
func walk(rootDir string, parts []string) (fd int, rest []string, err error) {
	fd, err = unix.Open(rootDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, nil, err
	}
	for i, part := range parts {
		if part == ".." {
			unix.Close(fd)
			return -1, nil, fmt.Errorf("%w: %q has '..'", ErrUnsafePath, "/"+strings.Join(parts, "/"))
		}
		next, err := unix.Openat(fd, part, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == nil {
			unix.Close(fd)
			fd = next
			continue
		}
		if !errors.Is(err, unix.ELOOP) && !errors.Is(err, unix.ENOTDIR) {
			unix.Close(fd)
			return -1, nil, describe(part, err)
		}
		target, ok := trustedLink(fd, part)
		unix.Close(fd)
		if !ok {
			return -1, nil, describe(part, err)
		}
		base := parts[:i]
		if strings.HasPrefix(target, "/") {
			base = nil
		}
		return -1, resolve(base, target, parts[i+1:]), nil
	}
	return fd, nil, nil
}

// trustedLink reads the symlink name in dir when only root can have made
// it and only root can replace it.
func trustedLink(dir int, name string) (string, bool) {
	var link, parent unix.Stat_t
	if unix.Fstatat(dir, name, &link, unix.AT_SYMLINK_NOFOLLOW) != nil || link.Mode&unix.S_IFMT != unix.S_IFLNK || link.Uid != 0 {
		return "", false
	}
	if unix.Fstat(dir, &parent) != nil || parent.Uid != 0 || parent.Mode&0o022 != 0 {
		return "", false
	}
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(dir, name, buf)
	if err != nil || n == 0 || n == len(buf) {
		return "", false
	}
	return string(buf[:n]), true
}

// resolve joins base (symlink-free components), a link's target and the
// components after the link; ".." in the target steps back, never above
// the root.
func resolve(base []string, target string, after []string) []string {
	out := append([]string(nil), base...)
	for _, part := range splitPath(target) {
		if part == ".." {
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			continue
		}
		out = append(out, part)
	}
	out = append(out, after...)
	if out == nil {
		out = []string{} // the root itself: not nil, which means "done"
	}
	return out
}

func describe(name string, err error) error {
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		return fmt.Errorf("%w: %s is a symlink or not a directory; refusing to follow it", ErrUnsafePath, name)
	}
	return fmt.Errorf("%s: %w", name, err)
}

// openSSHDir opens ~/.ssh, creating it (0700) when create is set; -1
// when it does not exist and create is not set.
func openSSHDir(home int, create bool) (fd int, created bool, err error) {
	fd, err = unix.Openat(home, ".ssh", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == nil {
		return fd, false, nil
	}
	if !errors.Is(err, unix.ENOENT) {
		return -1, false, describe(".ssh", err)
	}
	if !create {
		return -1, false, nil
	}
	if err := unix.Mkdirat(home, ".ssh", 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, false, err
	}
	fd, err = unix.Openat(home, ".ssh", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, false, describe(".ssh", err)
	}
	return fd, true, nil
}

// fixOwnerMode sets owner and mode on an open descriptor when they differ.
func fixOwnerMode(fd, uid, gid int, mode uint32) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if int(st.Uid) != uid || int(st.Gid) != gid {
		if err := unix.Fchown(fd, uid, gid); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	if st.Mode&0o7777 != mode {
		if err := unix.Fchmod(fd, mode); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	return nil
}

// readKeys reads authorized_keys without following a symlink, and refuses
// a file that is not a regular file, has other hard links (a link to
// /etc/shadow would otherwise be copied into the user's file) or belongs
// to someone other than the user or root.
func readKeys(dir, uid int) ([]byte, bool, error) {
	fd, err := unix.Openat(dir, "authorized_keys", unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil, false, nil
	}
	if errors.Is(err, unix.ELOOP) {
		return nil, false, fmt.Errorf("%w: it is a symlink; refusing to follow it", ErrUnsafePath)
	}
	if err != nil {
		return nil, false, err
	}
	f := os.NewFile(uintptr(fd), "authorized_keys")
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, false, err
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return nil, false, fmt.Errorf("%w: not a regular file", ErrUnsafePath)
	case st.Nlink != 1:
		return nil, false, fmt.Errorf("%w: it has %d hard links; refusing to copy another file's content", ErrUnsafePath, st.Nlink)
	case int(st.Uid) != uid && st.Uid != 0:
		return nil, false, fmt.Errorf("%w: owned by uid %d", ErrUnsafePath, st.Uid)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return nil, false, err
	}
	if len(data) > maxFile {
		return nil, false, fmt.Errorf("larger than %d bytes", maxFile)
	}
	return data, true, nil
}

// writeAt replaces dir/name atomically: a new file created with O_EXCL
// next to it, owned and moded before it gets its name, then renamed over
// the old one (a rename replaces a symlink or hard link, never writes
// through it).
func writeAt(dir int, name string, data []byte, uid, gid int) error {
	var tmp string
	var fd int
	var err error
	for i := 0; ; i++ {
		tmp = fmt.Sprintf(".%s.one-contextd-%d-%d", name, os.Getpid(), i)
		fd, err = unix.Openat(dir, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if !errors.Is(err, unix.EEXIST) || i > 100 {
			break
		}
	}
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), tmp)
	ok := false
	defer func() {
		f.Close()
		if !ok {
			_ = unix.Unlinkat(dir, tmp, 0)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := fixOwnerMode(fd, uid, gid, 0o600); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := unix.Renameat(dir, tmp, dir, name); err != nil {
		return err
	}
	ok = true
	return unix.Fsync(dir)
}

// split separates the user's own lines (with their line ends, as read)
// from the lines of the agent's block. A BEGIN marker with no END after it
// (an edited file) is not a block: the lines after it are the user's, and
// only the marker goes. Taking them for the block would delete the user's
// own keys.
func split(data []byte) (own []string, block []string) {
	var lines []string
	for _, l := range strings.SplitAfter(string(data), "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	text := func(l string) string { return strings.TrimRight(l, "\r\n") }
	closedAfter := func(i int) bool {
		for _, l := range lines[i+1:] {
			if text(l) == EndMarker {
				return true
			}
		}
		return false
	}
	in := false
	for i, l := range lines {
		t := text(l)
		switch {
		case !in && t == BeginMarker:
			in = closedAfter(i)
		case in && t == EndMarker:
			in = false
		case in:
			block = append(block, t)
		default:
			own = append(own, l)
		}
	}
	return own, block
}

func hasLine(lines []string, key string) bool {
	for _, l := range lines {
		if strings.TrimSpace(l) == key {
			return true
		}
	}
	return false
}

// join writes the user's lines, then the block (the agent always keeps it
// at the end). An empty block is dropped.
func join(own, keys []string) []byte {
	var b bytes.Buffer
	for _, l := range own {
		b.WriteString(l)
	}
	if len(keys) == 0 {
		return b.Bytes()
	}
	if b.Len() > 0 && !bytes.HasSuffix(b.Bytes(), []byte("\n")) {
		b.WriteByte('\n')
	}
	b.WriteString(BeginMarker + "\n")
	for _, k := range keys {
		b.WriteString(k + "\n")
	}
	b.WriteString(EndMarker + "\n")
	return b.Bytes()
}

// precheck rejects, without running a tool, a line that has no key type
// followed by base64 whose embedded type matches.
func precheck(line string) error {
	if strings.ContainsAny(line, "\r\n\x00") {
		return errors.New("contains a line break or NUL")
	}
	f := strings.Fields(line)
	for i := 0; i+1 < len(f); i++ {
		if !knownType(f[i]) {
			continue
		}
		blob, err := base64.StdEncoding.DecodeString(f[i+1])
		if err != nil {
			return fmt.Errorf("the %s key data is not base64", f[i])
		}
		if len(blob) < 4 {
			return fmt.Errorf("the %s key data is too short", f[i])
		}
		n := binary.BigEndian.Uint32(blob)
		if uint64(n)+4 > uint64(len(blob)) || string(blob[4:4+n]) != f[i] {
			return fmt.Errorf("the key data does not hold a %s key", f[i])
		}
		// The one type whose size is fixed: an image without ssh-keygen
		// has only this check, so it catches a truncated key.
		if f[i] == "ssh-ed25519" && len(blob) != 4+len(f[i])+4+32 {
			return fmt.Errorf("the ssh-ed25519 key data is %d bytes, not 51", len(blob))
		}
		return nil
	}
	return errors.New("no key type (ssh-ed25519, ssh-rsa, ecdsa-sha2-..., sk-...) followed by key data")
}

func knownType(s string) bool {
	switch {
	case s == "ssh-ed25519", s == "ssh-rsa", s == "ssh-dss",
		strings.HasPrefix(s, "ecdsa-sha2-"),
		strings.HasPrefix(s, "sk-ssh-ed25519@"), strings.HasPrefix(s, "sk-ecdsa-sha2-"),
		strings.HasSuffix(s, "-cert-v01@openssh.com"):
		return true
	}
	return false
}
