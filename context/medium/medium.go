// Package medium finds and reads the OpenNebula context medium: the CONTEXT
// ISO 9660 image (as a file or a block device such as /dev/sr0) or a directory
// holding context.sh (the /context directory of system containers).
//
// It knows nothing about context variables; it hands out the medium's files as
// bytes. ISO images are read in place with go-diskfs, never mounted, so scripts
// that need the medium's other files get a copy of the tree (CopyTo).
package medium

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/spf13/afero"
)

// Kind says what sort of source a Medium was opened from.
type Kind string

// The kinds of context source.
const (
	KindISOImage    Kind = "iso-image"
	KindBlockDevice Kind = "block-device"
	KindDirectory   Kind = "directory"
)

// ContextFile is the file every context medium holds.
const ContextFile = "context.sh"

// entry is one regular file of the medium.
type entry struct {
	size int64
	exec bool  // owner-executable on the medium (known only with Rock Ridge or a directory)
	off  int64 // byte offset of the contents in the ISO image
}

// Medium is an opened context source. Its methods are safe for concurrent reads.
type Medium struct {
	path  string
	kind  Kind
	label string

	files    []string          // sorted regular-file paths
	dirs     []string          // sorted directory paths (not the root)
	entries  map[string]entry  // by path
	folded   map[string]string // lower-case path -> path, for plain ISO 9660 names
	image    io.ReaderAt       // ISO image; nil for a directory
	closer   io.Closer
	root     string   // directory source root
	problems []string // problems that did not stop the medium from being read
}

// Open opens path as a context medium: an ISO 9660 image file, a block device
// holding one, or a directory holding context.sh.
func Open(p string) (*Medium, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("medium %s: %w", p, unwrapPathError(err))
	}
	switch {
	case fi.IsDir():
		return openDir(p)
	case fi.Mode().IsRegular():
		return openISO(p, KindISOImage)
	case fi.Mode()&fs.ModeDevice != 0 && fi.Mode()&fs.ModeCharDevice == 0:
		return openISO(p, KindBlockDevice)
	default:
		return nil, fmt.Errorf("medium %s: not a file, block device or directory (mode %s)", p, fi.Mode())
	}
}

// unwrapPathError drops the *fs.PathError wrapper, whose text repeats the path.
func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}

// Kind says whether the medium is an ISO image file, a block device or a directory.
func (m *Medium) Kind() Kind { return m.kind }

// Path is what was opened.
func (m *Medium) Path() string { return m.path }

// Label is the ISO volume label (normally "CONTEXT"); "" for a directory.
func (m *Medium) Label() string { return m.label }

// Files lists every regular file as a slash-separated path relative to the
// medium root, sorted.
func (m *Medium) Files() []string { return slices.Clone(m.files) }

// Problems lists what was wrong with the medium without stopping it from
// being read, such as a name listed twice of which only the first file is
// kept. Each names the medium. The caller should report them.
func (m *Medium) Problems() []string { return slices.Clone(m.problems) }

// maxProblems bounds the problems kept for a (perhaps hostile) medium.
const maxProblems = 32

// problem records a problem that does not stop the medium from being read.
func (m *Medium) problem(format string, args ...any) {
	switch {
	case len(m.problems) < maxProblems:
		m.problems = append(m.problems, fmt.Sprintf("medium %s: ", m.path)+fmt.Sprintf(format, args...))
	case len(m.problems) == maxProblems:
		m.problems = append(m.problems, fmt.Sprintf("medium %s: more problems left unreported", m.path))
	}
}

// addFile lists the regular file p. A second file of the same name is left
// out with a problem, so the rest of the context still applies, unless it is
// context.sh: which of two is the context cannot be told.
func (m *Medium) addFile(p string, e entry) error {
	if _, dup := m.entries[p]; dup {
		if p == ContextFile {
			return fmt.Errorf("%s: listed twice", p)
		}
		m.problem("%s: listed twice; only the first is kept", p)
		return nil
	}
	m.files = append(m.files, p)
	m.entries[p] = e
	return nil
}

// Has reports whether the medium holds the regular file name.
func (m *Medium) Has(name string) bool {
	_, _, ok := m.lookup(name)
	return ok
}

// Size is the size in bytes of the file name.
func (m *Medium) Size(name string) (int64, error) {
	_, e, ok := m.lookup(name)
	if !ok {
		return 0, m.notExist(name)
	}
	return e.size, nil
}

// ReadFile returns the contents of the file name. It fails, without reading,
// if the file is larger than limit bytes (limit <= 0: no limit). A missing
// file gives an error satisfying errors.Is(err, fs.ErrNotExist).
func (m *Medium) ReadFile(name string, limit int64) ([]byte, error) {
	p, e, ok := m.lookup(name)
	if !ok {
		return nil, m.notExist(name)
	}
	if limit > 0 && e.size > limit {
		return nil, fmt.Errorf("medium %s: %s is %d bytes, over the limit of %d bytes", m.path, p, e.size, limit)
	}
	r, closeFn, err := m.open(p, e)
	if err != nil {
		return nil, err
	}
	defer closeFn()
	// Read one byte past the expected size so that a file growing under a
	// directory source cannot slip past the limit.
	buf := make([]byte, e.size+1)
	n, err := io.ReadFull(r, buf)
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		if int64(n) < e.size {
			return nil, fmt.Errorf("medium %s: %s: read %d of %d bytes: medium truncated", m.path, p, n, e.size)
		}
	case err != nil:
		return nil, fmt.Errorf("medium %s: read %s: %w", m.path, p, unwrapPathError(err))
	default: // the file grew since it was listed
		if limit > 0 && int64(n) > limit {
			return nil, fmt.Errorf("medium %s: %s grew over the limit of %d bytes", m.path, p, limit)
		}
		rest, err := io.ReadAll(r)
		if err != nil {
			return nil, fmt.Errorf("medium %s: read %s: %w", m.path, p, unwrapPathError(err))
		}
		buf = append(buf, rest...)
		if limit > 0 && int64(len(buf)) > limit {
			return nil, fmt.Errorf("medium %s: %s grew over the limit of %d bytes", m.path, p, limit)
		}
		return buf, nil
	}
	return buf[:n], nil
}

// open returns a reader of the file p and a function releasing it.
func (m *Medium) open(p string, e entry) (io.Reader, func(), error) {
	if m.image != nil {
		return io.NewSectionReader(m.image, e.off, e.size), func() {}, nil
	}
	f, err := os.Open(m.root + "/" + p)
	if err != nil {
		return nil, nil, fmt.Errorf("medium %s: open %s: %w", m.path, p, unwrapPathError(err))
	}
	return f, func() { f.Close() }, nil
}

// CopyTo copies the whole tree of the medium into dir of dst: directories with
// mode 0755, files with 0755 when executable on the medium and 0644 otherwise.
// Scripts run with this copy as their working directory, since nothing is mounted.
func (m *Medium) CopyTo(dst afero.Fs, dir string) error {
	if err := dst.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("medium %s: copy to %s: %w", m.path, dir, err)
	}
	for _, d := range m.dirs {
		target := path.Join(dir, d)
		if err := dst.MkdirAll(target, 0o755); err != nil {
			return fmt.Errorf("medium %s: copy to %s: %w", m.path, target, err)
		}
	}
	for _, p := range m.files {
		if err := m.copyFile(dst, p, path.Join(dir, p)); err != nil {
			return err
		}
	}
	return nil
}

func (m *Medium) copyFile(dst afero.Fs, p, target string) error {
	e := m.entries[p]
	mode := fs.FileMode(0o644)
	if e.exec {
		mode = 0o755
	}
	r, closeFn, err := m.open(p, e)
	if err != nil {
		return err
	}
	defer closeFn()
	f, err := dst.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("medium %s: copy %s: %w", m.path, p, err)
	}
	n, err := io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("medium %s: copy %s to %s: %w", m.path, p, target, err)
	}
	if m.image != nil && n < e.size {
		return fmt.Errorf("medium %s: copy %s: read %d of %d bytes: medium truncated", m.path, p, n, e.size)
	}
	// The umask may have cut the mode; set it as meant.
	if err := dst.Chmod(target, mode); err != nil {
		return fmt.Errorf("medium %s: copy %s: %w", m.path, p, err)
	}
	return nil
}

// Close releases the device or image file.
func (m *Medium) Close() error {
	if m.closer == nil {
		return nil
	}
	c := m.closer
	m.closer = nil
	if err := c.Close(); err != nil {
		return fmt.Errorf("medium %s: close: %w", m.path, err)
	}
	return nil
}

// cleanName turns a caller's name into the medium's path form ("a/b").
func cleanName(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

// lookup finds the file name, falling back to a case-insensitive match on
// plain ISO 9660 media (no Rock Ridge, no Joliet).
func (m *Medium) lookup(name string) (string, entry, bool) {
	p := cleanName(name)
	if e, ok := m.entries[p]; ok {
		return p, e, true
	}
	if m.folded != nil {
		if real, ok := m.folded[strings.ToLower(strings.TrimSuffix(p, ";1"))]; ok {
			return real, m.entries[real], true
		}
	}
	return p, entry{}, false
}

func (m *Medium) notExist(name string) error {
	return fmt.Errorf("medium %s: %s: %w", m.path, cleanName(name), fs.ErrNotExist)
}
