// Package fsroot is the only way the agent writes files. Every path is
// relative to a configurable root (--root, default /), so tests run against
// a temporary tree, and every write follows the same safety rules:
//
//   - compare first: equal content and mode means no write at all;
//   - atomic: temp file in the same directory, fsync, rename, so a crash
//     leaves the old or the new file, never half; the directories renamed
//     into are fsynced once, by Flush, and not after every write (each
//     fsync is a journal commit, and a boot writes a dozen files);
//   - a file being replaced keeps its mode and owner unless told otherwise,
//     and its SELinux label (the security.selinux attribute), which the
//     fresh temp file renamed over it would otherwise not have;
//   - a file the agent did not create is backed up once (<path>.one-contextd.orig)
//     before the agent first replaces it, so nothing the user had is lost;
//   - symlinks are never written through: a symlink at the target is an
//     error unless the caller says to replace the link itself.
package fsroot

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/spf13/afero"
	"golang.org/x/sys/unix"
)

// BackupSuffix is appended to a file the agent did not create when it is
// first replaced.
const BackupSuffix = ".one-contextd.orig"

// ManifestPath records, under the root, which files the agent created, so
// that it knows which ones it owns (no backup, may delete) and which it does not.
const ManifestPath = "/var/lib/one-contextd/created-files.json"

// SELinuxXattr holds a file's SELinux label. It is the one extended
// attribute a replaced file passes on to its replacement: `sed -i` and
// `echo >` keep it, and a file renamed into place from a temp file gets
// the directory's default label instead (/etc/hosts would go from
// net_conf_t to etc_t). security.ima and security.evm are not kept: they
// are a hash and a signature of the old content, wrong for the new one
// (the kernel's IMA recomputes its own), and security.capability
// belongs to binaries, which the agent does not write.
const SELinuxXattr = "security.selinux"

// Root is a filesystem rooted at a directory of the host.
type Root struct {
	fs  afero.Fs
	dir string // host path of the root, "" for an in-memory tree
	// keepXattrs are the extended attributes a replaced file passes on
	// (SELinuxXattr); none for a filesystem that is not the host's.
	keepXattrs []string

	mu      sync.Mutex
	created map[string]bool // manifest, loaded lazily
	loaded  bool
	// dirty: the manifest changed since it was saved; Flush saves it.
	dirty bool
	// pending: directories with a rename or removal not yet fsynced.
	pending map[string]bool
}

// New returns a Root for the host directory dir ("/" for the real system).
func New(dir string) (*Root, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("root %q: %w", dir, err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("root %q: %w", dir, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("root %q: not a directory", dir)
	}
	var f afero.Fs = afero.NewOsFs()
	if abs != "/" {
		f = afero.NewBasePathFs(f, abs)
	}
	return &Root{fs: f, dir: abs, keepXattrs: []string{SELinuxXattr}}, nil
}

// NewFs wraps an existing afero filesystem (an in-memory one in tests).
// hostDir is the host path tools should be given for --root; "" if none.
// The files of f are not taken for the host's, so no extended attribute
// is carried over when one is replaced.
func NewFs(f afero.Fs, hostDir string) *Root { return &Root{fs: f, dir: hostDir} }

// Fs is the underlying filesystem, for reads.
func (r *Root) Fs() afero.Fs { return r.fs }

// Dir is the host path of the root ("/" on a real boot).
func (r *Root) Dir() string { return r.dir }

// HostPath turns a root-relative absolute path into a host path, for tools
// that do not go through afero (useradd --root takes Dir instead).
func (r *Root) HostPath(p string) string {
	if r.dir == "" || r.dir == "/" {
		return clean(p)
	}
	return filepath.Join(r.dir, clean(p))
}

// IsReal reports whether the root is the host's own /.
func (r *Root) IsReal() bool { return r.dir == "/" }

func clean(p string) string { return path.Clean("/" + p) }

// ReadFile reads a file under the root.
func (r *Root) ReadFile(p string) ([]byte, error) { return afero.ReadFile(r.fs, clean(p)) }

// Exists reports whether p exists (without following a final symlink).
func (r *Root) Exists(p string) bool {
	_, err := r.lstat(clean(p))
	return err == nil
}

// Lstat stats p without following a final symlink where the filesystem can.
func (r *Root) Lstat(p string) (fs.FileInfo, error) { return r.lstat(clean(p)) }

func (r *Root) lstat(p string) (fs.FileInfo, error) {
	if l, ok := r.fs.(afero.Lstater); ok {
		fi, _, err := l.LstatIfPossible(p)
		return fi, err
	}
	return r.fs.Stat(p)
}

// WriteOptions say how a file is written.
type WriteOptions struct {
	// Mode of a new file; a replaced file keeps its mode unless ForceMode.
	Mode      fs.FileMode
	ForceMode bool
	// Owner of a new file (and of a replaced one when ForceOwner); -1 keeps
	// the default (root on a real system).
	UID, GID   int
	ForceOwner bool
	// ReplaceSymlink replaces a symlink at the target by a regular file
	// instead of refusing. The link's target is never written.
	ReplaceSymlink bool
	// NoSymlinkDirs refuses when any directory on the way is a symlink
	// (used under users' homes, where a user controls the tree).
	NoSymlinkDirs bool
	// DirMode for directories that have to be created (default 0755).
	DirMode fs.FileMode
}

// ErrSymlink is returned when a write would go through a symlink.
var ErrSymlink = errors.New("refusing to write through a symlink")

// WriteFile writes data to p atomically and reports whether anything changed.
func (r *Root) WriteFile(p string, data []byte, opt WriteOptions) (bool, error) {
	p = clean(p)
	if opt.Mode == 0 {
		opt.Mode = 0o644
	}
	if opt.DirMode == 0 {
		opt.DirMode = 0o755
	}
	if !opt.ForceOwner && opt.UID == 0 && opt.GID == 0 {
		opt.UID, opt.GID = -1, -1
	}
	dir := path.Dir(p)
	if opt.NoSymlinkDirs {
		if err := r.checkNoSymlinkDirs(dir); err != nil {
			return false, fmt.Errorf("write %s: %w", p, err)
		}
	}
	if err := r.mkdirAll(dir, opt.DirMode); err != nil {
		return false, fmt.Errorf("write %s: %w", p, err)
	}

	old, err := r.lstat(p)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("write %s: %w", p, err)
	}
	mode, uid, gid := opt.Mode, opt.UID, opt.GID
	if exists {
		switch {
		case old.Mode()&fs.ModeSymlink != 0:
			if !opt.ReplaceSymlink {
				return false, fmt.Errorf("write %s: %w", p, ErrSymlink)
			}
		case old.IsDir():
			return false, fmt.Errorf("write %s: is a directory", p)
		default:
			if !opt.ForceMode {
				mode = old.Mode().Perm()
			}
			if !opt.ForceOwner {
				uid, gid = owner(old)
			}
			if same, err := r.sameContent(p, data); err != nil {
				return false, fmt.Errorf("write %s: %w", p, err)
			} else if same && old.Mode().Perm() == mode && ownerMatches(old, uid, gid) {
				return false, nil
			}
			if err := r.backupOnce(p, old); err != nil {
				return false, fmt.Errorf("write %s: %w", p, err)
			}
		}
	}
	if err := r.atomicWrite(p, data, mode, uid, gid); err != nil {
		return false, fmt.Errorf("write %s: %w", p, err)
	}
	if !exists {
		if err := r.markCreated(p); err != nil {
			return true, fmt.Errorf("write %s: record created file: %w", p, err)
		}
	}
	return true, nil
}

func (r *Root) sameContent(p string, data []byte) (bool, error) {
	cur, err := afero.ReadFile(r.fs, p)
	if err != nil {
		return false, err
	}
	return bytes.Equal(cur, data), nil
}

// atomicWrite writes p and leaves its directory for Flush to fsync.
func (r *Root) atomicWrite(p string, data []byte, mode fs.FileMode, uid, gid int) error {
	if err := r.replace(p, data, mode, uid, gid); err != nil {
		return err
	}
	r.mu.Lock()
	r.pendingDirLocked(path.Dir(p))
	r.mu.Unlock()
	return nil
}

// replace is the temp file, fsync and rename of atomicWrite.
func (r *Root) replace(p string, data []byte, mode fs.FileMode, uid, gid int) error {
	dir := path.Dir(p)
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := path.Join(dir, "."+path.Base(p)+".one-contextd-"+hex.EncodeToString(rnd[:]))
	f, err := r.fs.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			_ = r.fs.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if uid >= 0 || gid >= 0 {
		if err := r.fs.Chown(tmp, uid, gid); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	// Chmod after chown: chown clears setuid bits, and the umask must not
	// decide the final mode.
	if err := r.fs.Chmod(tmp, mode); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	if err := r.keepAttrs(p, tmp); err != nil {
		return err
	}
	if err := r.fs.Rename(tmp, p); err != nil {
		return err
	}
	ok = true
	return nil
}

// keepAttrs copies the kept extended attributes of p, when it exists,
// onto tmp, which is about to replace it. p is not followed: a symlink
// being replaced by a file passes on its own label, which restorecon
// gives from the same path. An attribute the filesystem does not support
// (ENOTSUP) or p does not have (ENODATA) is skipped: the write goes on
// as it would without it.
//
// Any other error fails the write, and the old file stays as it was,
// label included. The one expected is SELinux policy refusing the agent
// the relabel (EACCES); writing on would leave a file with the wrong
// label in place, which a confined service (NetworkManager for its
// connections, a resolver for resolv.conf) may then be denied, a failure
// that shows far from its cause; a failed step names the file at once.
func (r *Root) keepAttrs(p, tmp string) error {
	if len(r.keepXattrs) == 0 || r.dir == "" {
		return nil
	}
	src, dst := r.HostPath(p), r.HostPath(tmp)
	for _, name := range r.keepXattrs {
		val, err := lgetxattr(src, name)
		switch {
		case errors.Is(err, unix.ENOENT):
			return nil // a new file: it gets the default label
		case xattrAbsent(err):
			continue
		case err != nil:
			return fmt.Errorf("read %s of %s: %w", name, p, err)
		}
		if err := unix.Lsetxattr(dst, name, val, 0); err != nil && !xattrAbsent(err) {
			return fmt.Errorf("keep %s of %s: %w", name, p, err)
		}
	}
	return nil
}

// xattrAbsent: the filesystem has no such attribute, or not this one.
func xattrAbsent(err error) bool {
	return errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENODATA)
}

// lgetxattr reads an attribute of p (not following a final symlink),
// however long it is.
func lgetxattr(p, name string) ([]byte, error) {
	for {
		n, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, n)
		m, err := unix.Lgetxattr(p, name, buf)
		if errors.Is(err, unix.ERANGE) {
			continue // it grew between the two calls
		}
		if err != nil {
			return nil, err
		}
		return buf[:m], nil
	}
}

func (r *Root) pendingDirLocked(dir string) {
	if r.pending == nil {
		r.pending = map[string]bool{}
	}
	r.pending[dir] = true
}

// Flush makes what the writes since the last Flush did durable: it saves
// the manifest of created files if it changed and fsyncs every directory a
// file was renamed into or removed from. The file contents themselves were
// fsynced before their rename. Call it at the end of every command that
// writes, and before telling anybody (OneGate) that the work is done.
func (r *Root) Flush() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	if r.dirty {
		if err := r.saveManifestLocked(); err != nil {
			errs = append(errs, fmt.Errorf("save %s: %w", ManifestPath, err))
		} else {
			r.dirty = false
		}
	}
	dirs := make([]string, 0, len(r.pending))
	for d := range r.pending {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	for _, d := range dirs {
		if err := r.syncDir(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
		delete(r.pending, d)
	}
	return errors.Join(errs...)
}

func (r *Root) syncDir(dir string) error {
	d, err := r.fs.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

func (r *Root) mkdirAll(dir string, mode fs.FileMode) error {
	return r.fs.MkdirAll(dir, mode)
}

func (r *Root) checkNoSymlinkDirs(dir string) error {
	cur := "/"
	for _, part := range strings.Split(strings.Trim(dir, "/"), "/") {
		if part == "" {
			continue
		}
		cur = path.Join(cur, part)
		fi, err := r.lstat(cur)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("%s: %w", cur, ErrSymlink)
		}
	}
	return nil
}

// Remove deletes p if it exists and reports whether it did. It never
// removes a directory.
func (r *Root) Remove(p string) (bool, error) {
	p = clean(p)
	fi, err := r.lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("remove %s: %w", p, err)
	}
	if fi.IsDir() {
		return false, fmt.Errorf("remove %s: is a directory", p)
	}
	if err := r.fs.Remove(p); err != nil {
		return false, fmt.Errorf("remove %s: %w", p, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pendingDirLocked(path.Dir(p))
	if r.loaded && r.created[p] {
		delete(r.created, p)
		r.dirty = true
	}
	return true, nil
}

// Created reports whether the agent created p (so it owns it).
func (r *Root) Created(p string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.loadManifestLocked(); err != nil {
		return false, err
	}
	return r.created[clean(p)], nil
}

// CreatedFiles lists the files the agent created and that still exist.
func (r *Root) CreatedFiles() ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.loadManifestLocked(); err != nil {
		return nil, err
	}
	var out []string
	for p := range r.created {
		if _, err := r.lstat(p); err == nil {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out, nil
}

func (r *Root) backupOnce(p string, old fs.FileInfo) error {
	created, err := r.Created(p)
	if err != nil || created {
		return err
	}
	bak := p + BackupSuffix
	if _, err := r.lstat(bak); err == nil {
		return nil
	}
	src, err := r.fs.Open(p)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer src.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, src); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	uid, gid := owner(old)
	if err := r.atomicWrite(bak, buf.Bytes(), old.Mode().Perm(), uid, gid); err != nil {
		return fmt.Errorf("backup to %s: %w", bak, err)
	}
	return nil
}

func (r *Root) markCreated(p string) error {
	if p == ManifestPath {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.loadManifestLocked(); err != nil {
		return err
	}
	if r.created[p] {
		return nil
	}
	r.created[p] = true
	r.dirty = true
	return nil
}

func (r *Root) loadManifestLocked() error {
	if r.loaded {
		return nil
	}
	r.created = map[string]bool{}
	data, err := afero.ReadFile(r.fs, ManifestPath)
	if errors.Is(err, fs.ErrNotExist) {
		r.loaded = true
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", ManifestPath, err)
	}
	var list []string
	if err := json.Unmarshal(data, &list); err != nil {
		return fmt.Errorf("read %s: %w", ManifestPath, err)
	}
	for _, p := range list {
		r.created[p] = true
	}
	r.loaded = true
	return nil
}

func (r *Root) saveManifestLocked() error {
	list := make([]string, 0, len(r.created))
	for p := range r.created {
		list = append(list, p)
	}
	sort.Strings(list)
	data, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if err := r.mkdirAll(path.Dir(ManifestPath), 0o755); err != nil {
		return err
	}
	if err := r.replace(ManifestPath, data, 0o600, -1, -1); err != nil {
		return err
	}
	r.pendingDirLocked(path.Dir(ManifestPath))
	return nil
}

func owner(fi fs.FileInfo) (int, int) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid), int(st.Gid)
	}
	return -1, -1
}

func ownerMatches(fi fs.FileInfo, uid, gid int) bool {
	ou, og := owner(fi)
	if ou < 0 {
		return true // the filesystem does not tell; nothing to compare
	}
	return (uid < 0 || uid == ou) && (gid < 0 || gid == og)
}
