package medium

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
)

// openDir opens a directory source: a directory holding context.sh, such as
// the /context directory of a system container. Only regular files are
// listed; symlinks and other special files are left out.
func openDir(p string) (*Medium, error) {
	// WalkDir does not descend into a root that is a symlink; resolve it.
	root, err := filepath.EvalSymlinks(p)
	if err != nil {
		return nil, fmt.Errorf("medium %s: %w", p, unwrapPathError(err))
	}
	m := &Medium{path: p, kind: KindDirectory, root: root, entries: map[string]entry{}}
	err = filepath.WalkDir(root, func(full string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if full == root {
			return nil
		}
		rel, err := filepath.Rel(root, full)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			m.dirs = append(m.dirs, rel)
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		if len(m.entries) >= maxEntries {
			return fmt.Errorf("more than %d files", int(maxEntries))
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		m.files = append(m.files, rel)
		m.entries[rel] = entry{size: fi.Size(), exec: fi.Mode().Perm()&0o100 != 0}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("medium %s: %w", p, unwrapPathError(err))
	}
	if len(m.files) == 0 && len(m.dirs) == 0 {
		return nil, fmt.Errorf("medium %s: empty directory, no %s", p, ContextFile)
	}
	if _, ok := m.entries[ContextFile]; !ok {
		return nil, fmt.Errorf("medium %s: no %s", p, ContextFile)
	}
	slices.Sort(m.files)
	slices.Sort(m.dirs)
	return m, nil
}
