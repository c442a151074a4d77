// Package cleanup implements `one-contextd clean`: it removes what earlier
// boots left in a root so that an image baked from it boots as a new VM.
//
// It removes the agent's state (/var/lib/one-contextd, except the record of
// files the agent created unless those files go too), its log
// (/var/log/one-context.log and rotations) and its runtime directory
// (/run/one-context). When asked it also removes the files the agent created
// (from fsroot's manifest) and resets /etc/machine-id the way cloud-init's
// `clean --machine-id` does, so systemd makes a new one on the next boot.
package cleanup

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/spf13/afero"

	"one-contextd/fsroot"
)

// Paths the agent leaves behind after a boot.
const (
	StateDir      = "/var/lib/one-contextd"
	LogFile       = "/var/log/one-context.log"
	RuntimeDir    = "/run/one-context"
	MachineIDFile = "/etc/machine-id"
)

// machineIDUninitialized makes systemd generate a new ID and treat the next
// boot as the first one (machine-id(5), ConditionFirstBoot); cloud-init's
// clean writes the same.
const machineIDUninitialized = "uninitialized\n"

// Options say what to remove beyond state, log and runtime files.
type Options struct {
	// MachineID resets /etc/machine-id to "uninitialized".
	MachineID bool
	// CreatedFiles removes every file the agent created (recorded in
	// fsroot's manifest), then the manifest itself.
	CreatedFiles bool
}

// Clean removes what a previous boot left under root and returns the paths
// it removed or reset, sorted. It goes on after an error and returns all of
// them joined.
func Clean(root *fsroot.Root, opts Options) ([]string, error) {
	var done []string
	var errs []error
	note := func(p string, ok bool, err error) {
		if err != nil {
			errs = append(errs, err)
		}
		if ok {
			done = append(done, p)
		}
	}

	if opts.CreatedFiles {
		// Before the state directory goes: the manifest lives in it.
		files, err := root.CreatedFiles()
		if err != nil {
			errs = append(errs, fmt.Errorf("list created files: %w", err))
		}
		for _, p := range files {
			if underAny(p, StateDir, RuntimeDir) || p == LogFile {
				continue // removed below with their directory
			}
			ok, err := root.Remove(p)
			note(p, ok, err)
		}
		// The manifest's last state is saved before its directory goes,
		// so that no later flush writes it back.
		if err := root.Flush(); err != nil {
			errs = append(errs, err)
		}
	}

	keep := ""
	if !opts.CreatedFiles {
		// Without the manifest the next run would take the files it created
		// for the user's own and back them up instead of owning them.
		keep = fsroot.ManifestPath
	}
	removed, err := removeTree(root.Fs(), StateDir, keep)
	done = append(done, removed...)
	if err != nil {
		errs = append(errs, err)
	}

	removed, err = removeTree(root.Fs(), RuntimeDir, "")
	done = append(done, removed...)
	if err != nil {
		errs = append(errs, err)
	}

	logs, err := logFiles(root.Fs())
	if err != nil {
		errs = append(errs, err)
	}
	for _, p := range logs {
		ok, err := root.Remove(p)
		note(p, ok, err)
	}

	if opts.MachineID {
		ok, err := resetMachineID(root.Fs())
		note(MachineIDFile, ok, err)
	}
	if err := root.Flush(); err != nil {
		errs = append(errs, err)
	}
	sort.Strings(done)
	return done, errors.Join(errs...)
}

func underAny(p string, dirs ...string) bool {
	for _, d := range dirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

// removeTree removes dir and everything in it except the file keep (and the
// directories leading to it). It returns the top-level entries it removed.
func removeTree(fsys afero.Fs, dir, keep string) ([]string, error) {
	fi, err := lstat(fsys, dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("clean %s: %w", dir, err)
	}
	if !fi.IsDir() {
		// A symlink or a file where the directory should be: remove the
		// entry itself, never what a link points to.
		if err := fsys.Remove(dir); err != nil {
			return nil, fmt.Errorf("clean %s: %w", dir, err)
		}
		return []string{dir}, nil
	}
	if keep == "" || !underAny(keep, dir) {
		if err := fsys.RemoveAll(dir); err != nil {
			return nil, fmt.Errorf("clean %s: %w", dir, err)
		}
		return []string{dir}, nil
	}
	entries, err := afero.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("clean %s: %w", dir, err)
	}
	var removed []string
	var errs []error
	for _, e := range entries {
		p := path.Join(dir, e.Name())
		switch {
		case p == keep:
			continue
		case underAny(keep, p) && e.IsDir():
			r, err := removeTree(fsys, p, keep)
			removed = append(removed, r...)
			if err != nil {
				errs = append(errs, err)
			}
		default:
			if err := fsys.RemoveAll(p); err != nil {
				errs = append(errs, fmt.Errorf("clean %s: %w", p, err))
				continue
			}
			removed = append(removed, p)
		}
	}
	return removed, errors.Join(errs...)
}

// logFiles lists the agent's log and its rotations (.1, .2.gz, ...).
func logFiles(fsys afero.Fs) ([]string, error) {
	dir, base := path.Split(LogFile)
	entries, err := afero.ReadDir(fsys, dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("clean %s: %w", LogFile, err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		if n := e.Name(); n == base || strings.HasPrefix(n, base+".") {
			out = append(out, path.Join(dir, n))
		}
	}
	return out, nil
}

// resetMachineID writes "uninitialized" to /etc/machine-id (mode 0444) and
// reports whether it changed anything. It writes directly, not through
// fsroot.WriteFile: that would keep a backup of the old ID in the image,
// which is exactly what must not survive.
func resetMachineID(fsys afero.Fs) (bool, error) {
	cur, err := afero.ReadFile(fsys, MachineIDFile)
	switch {
	case err == nil && string(cur) == machineIDUninitialized:
		return false, nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return false, fmt.Errorf("reset %s: %w", MachineIDFile, err)
	}
	if fi, err := lstat(fsys, MachineIDFile); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return false, fmt.Errorf("reset %s: %w", MachineIDFile, fsroot.ErrSymlink)
	}
	tmp := MachineIDFile + ".one-contextd-clean"
	if err := afero.WriteFile(fsys, tmp, []byte(machineIDUninitialized), 0o444); err != nil {
		return false, fmt.Errorf("reset %s: %w", MachineIDFile, err)
	}
	if err := fsys.Chmod(tmp, 0o444); err != nil {
		_ = fsys.Remove(tmp)
		return false, fmt.Errorf("reset %s: %w", MachineIDFile, err)
	}
	if err := fsys.Rename(tmp, MachineIDFile); err != nil {
		_ = fsys.Remove(tmp)
		return false, fmt.Errorf("reset %s: %w", MachineIDFile, err)
	}
	return true, nil
}

func lstat(fsys afero.Fs, p string) (fs.FileInfo, error) {
	if l, ok := fsys.(afero.Lstater); ok {
		fi, _, err := l.LstatIfPossible(p)
		return fi, err
	}
	return fsys.Stat(p)
}
