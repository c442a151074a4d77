package network

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/spf13/afero"

	"one-contextd/fsroot"
	"one-contextd/internal/lazyregexp"
	"one-contextd/network/model"
	"one-contextd/network/render"
)

// interfacesMain is ifupdown's main file; it sources the others.
const interfacesMain = "/etc/network/interfaces"

// DisabledMark starts every line of another file's stanza that the agent
// turned into a comment because its own file configures that interface.
// Removing the mark gives the line back as it was (the whole file is also
// kept, once, as <file>.one-contextd.orig, or under backupDir where
// ifupdown would read that).
const DisabledMark = "#one-contextd-disabled# "

// maxSourceDepth bounds how deep "source" lines are followed.
const maxSourceDepth = 8

// sourceDirName is the run-parts name that source-directory takes
// (interfaces(5)).
var sourceDirName = lazyregexp.New(`^[a-zA-Z0-9_-]+$`)

// stanzaKeyword reports a word that starts a stanza; any other line
// belongs to the iface or mapping stanza above it.
func stanzaKeyword(w string) bool {
	switch w {
	case "iface", "mapping", "auto", "source", "source-directory", "rename", "no-auto-down", "no-scripts":
		return true
	}
	return strings.HasPrefix(w, "allow-")
}

// backupDir keeps the backup of a file whose usual backup
// (<file>.one-contextd.orig, next to it) ifupdown would read: Debian's
// "source /etc/network/interfaces.d/*" takes every file there, and the
// backup's stanzas would come back to life.
const backupDir = "/var/backups/one-contextd"

// stanzaResult is what disableForeignStanzas did.
type stanzaResult struct {
	Disabled []disabledStanzas
	// Moved are backups an earlier run left where ifupdown reads them:
	// from, to.
	Moved [][2]string
	// Problems are the files that could not be changed, per NIC.
	Problems []model.Problem
}

// disabledStanzas is what disableForeignStanzas did to one file.
type disabledStanzas struct {
	Path   string
	Devs   []string // the interfaces whose lines were disabled
	Backup string   // where the file is kept as it was; "" none (the agent created it)
}

// disableForeignStanzas turns into comments, in /etc/network/interfaces
// and every file it sources (the agent's own file excepted), the stanzas
// of the interfaces the agent's file configures: ifup would otherwise run
// both (an image that had one-context keeps its "iface eth0 inet static"
// in /etc/network/interfaces, cloud-init its 50-cloud-init), and the
// second "ip addr add" fails networking.service. one-context itself
// rewrote /etc/network/interfaces whole; the agent keeps everything else
// in those files: the stanzas of other interfaces (the ones the context
// does not mention, or leaves alone), lo, mappings and patterns.
//
// A file is backed up once before it is first changed (fsroot); a backup
// that ifupdown would read is moved to backupDir.
func disableForeignStanzas(root *fsroot.Root, m model.Model) (stanzaResult, error) {
	var res stanzaResult
	devs := map[string]string{} // kernel name -> context NIC
	for _, n := range m.NICs {
		if n.Dev != "" && n.Dev != "lo" {
			devs[n.Dev] = n.Name
		}
	}
	if len(devs) == 0 {
		return res, nil
	}
	files, sources, err := ifupdownFiles(root)
	if err != nil {
		return res, err
	}
	// Backups ifupdown would read go first (an earlier run's, the one of
	// /etc/network/interfaces when it sources its own directory), and
	// again once this run has made new ones.
	moved := map[string]string{}
	if err := moveReadBackups(root, files, sources, moved); err != nil {
		return res, err
	}
	for _, p := range files {
		if safe, ok := moved[p+fsroot.BackupSuffix]; ok {
			res.Moved = append(res.Moved, [2]string{p + fsroot.BackupSuffix, safe})
		}
	}
	for _, p := range files {
		if p == render.InterfacesPath {
			continue
		}
		data, err := root.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue // a backup moved away
		}
		if err != nil {
			return res, fmt.Errorf("read %s: %w", p, err)
		}
		newData, found, _ := disableStanzas(data, path.Dir(p), devs)
		if len(found) == 0 {
			continue
		}
		why := ""
		if fi, err := root.Lstat(p); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			why = "a symlink, not written through"
		} else if strings.HasSuffix(p, fsroot.BackupSuffix) {
			why = "a backup, kept as it is"
		}
		if why != "" {
			for _, d := range found {
				res.Problems = append(res.Problems, model.Problem{Var: devs[d] + "_MAC", Msg: fmt.Sprintf("%s (%s) has stanzas for %s besides the agent's; ifup runs both", p, why, d)})
			}
			continue
		}
		created, err := root.Created(p)
		if err != nil {
			return res, fmt.Errorf("%s: %w", p, err)
		}
		changed, err := root.WriteFile(p, newData, fsroot.WriteOptions{UID: -1, GID: -1})
		if err != nil {
			return res, fmt.Errorf("disable the stanzas of %s: %w", strings.Join(found, " "), err)
		}
		if changed {
			d := disabledStanzas{Path: p, Devs: found}
			if !created {
				d.Backup = p + fsroot.BackupSuffix
			}
			res.Disabled = append(res.Disabled, d)
		}
	}
	if err := moveReadBackups(root, files, sources, moved); err != nil {
		return res, err
	}
	for i, d := range res.Disabled {
		if safe, ok := moved[d.Backup]; ok {
			res.Disabled[i].Backup = safe
		}
	}
	return res, nil
}

// moveReadBackups moves the backup of each file that ifupdown would read
// (sourced by one of the source lines) to backupDir, keeping a copy that
// is already there, and records in moved where each went. The copy is
// written before the backup goes.
func moveReadBackups(root *fsroot.Root, files []string, sources []source, moved map[string]string) error {
	for _, p := range files {
		bak := p + fsroot.BackupSuffix
		if strings.HasSuffix(p, fsroot.BackupSuffix) || !root.Exists(bak) || !sourcedBy(sources, bak) {
			continue
		}
		safe := backupDir + bak
		if !root.Exists(safe) {
			data, err := root.ReadFile(bak)
			if err != nil {
				return fmt.Errorf("move backup %s: %w", bak, err)
			}
			mode := fs.FileMode(0o644)
			if fi, err := root.Lstat(bak); err == nil {
				mode = fi.Mode().Perm()
			}
			if _, err := root.WriteFile(safe, data, fsroot.WriteOptions{Mode: mode, ForceMode: true, UID: -1, GID: -1}); err != nil {
				return fmt.Errorf("move backup %s: %w", bak, err)
			}
		}
		if _, err := root.Remove(bak); err != nil {
			return fmt.Errorf("move backup %s: %w", bak, err)
		}
		moved[bak] = safe
	}
	return nil
}

// ifupdownFiles lists the files ifupdown reads, /etc/network/interfaces
// first, then what it sources, in order, and every source line met.
func ifupdownFiles(root *fsroot.Root) ([]string, []source, error) {
	var files []string
	var sources []source
	seen := map[string]bool{}
	var visit func(p string, depth int) error
	visit = func(p string, depth int) error {
		if seen[p] || depth > maxSourceDepth {
			return nil
		}
		seen[p] = true
		data, err := root.ReadFile(p)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return fmt.Errorf("read %s: %w", p, err)
		}
		files = append(files, p)
		_, _, srcs := disableStanzas(data, path.Dir(p), nil)
		sources = append(sources, srcs...)
		for _, s := range srcs {
			for _, q := range sourced(root, s) {
				if err := visit(q, depth+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return files, sources, visit(interfacesMain, 0)
}

// sourcedBy reports whether ifupdown would read p through one of the
// source lines.
func sourcedBy(sources []source, p string) bool {
	for _, s := range sources {
		if s.dir {
			if ok, _ := path.Match(s.pattern, path.Dir(p)); ok && sourceDirName.MatchString(path.Base(p)) {
				return true
			}
		} else if ok, _ := path.Match(s.pattern, p); ok {
			return true
		}
	}
	return false
}

// source is one "source" or "source-directory" line, its path made
// absolute.
type source struct {
	dir     bool
	pattern string
}

// sourced lists the files a source line includes, in ifupdown's order.
func sourced(root *fsroot.Root, s source) []string {
	matches, err := afero.Glob(root.Fs(), s.pattern)
	if err != nil {
		return nil
	}
	sort.Strings(matches)
	if !s.dir {
		return matches
	}
	var out []string
	for _, d := range matches {
		ents, err := afero.ReadDir(root.Fs(), d)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if !e.IsDir() && sourceDirName.MatchString(e.Name()) {
				out = append(out, path.Join(d, e.Name()))
			}
		}
	}
	return out
}

// disableStanzas comments out, in one ifupdown file, the iface stanzas
// (with their option lines) of the named interfaces and takes them out of
// auto, allow-*, no-auto-down and no-scripts lines (a line naming other
// interfaces too is kept for those). It returns the new content, the
// interfaces it found, and the files the content sources (relative paths
// resolved against dir, as ifupdown does).
func disableStanzas(data []byte, dir string, devs map[string]string) ([]byte, []string, []source) {
	lines := strings.SplitAfter(string(data), "\n")
	var b strings.Builder
	var sources []source
	found := map[string]bool{}
	inDisabled := false // the option lines below belong to a disabled iface
	for i := 0; i < len(lines); {
		// One logical line: a trailing backslash continues it.
		j := i + 1
		for j < len(lines) && strings.HasSuffix(strings.TrimRight(lines[j-1], "\n"), `\`) {
			j++
		}
		phys := lines[i:j]
		i = j
		logical := strings.TrimSpace(strings.ReplaceAll(strings.Join(phys, ""), "\\\n", " "))
		f := strings.Fields(logical)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			b.WriteString(strings.Join(phys, ""))
			continue
		}
		disable := false
		switch {
		case !stanzaKeyword(f[0]):
			disable = inDisabled
		case f[0] == "iface":
			inDisabled = len(f) > 1 && devs[f[1]] != ""
			disable = inDisabled
			if disable {
				found[f[1]] = true
			}
		case f[0] == "source" || f[0] == "source-directory":
			inDisabled = false
			if len(f) == 2 {
				p := f[1]
				if !strings.HasPrefix(p, "/") {
					p = path.Join(dir, p)
				}
				sources = append(sources, source{dir: f[0] == "source-directory", pattern: p})
			}
		case f[0] == "auto" || f[0] == "no-auto-down" || f[0] == "no-scripts" || strings.HasPrefix(f[0], "allow-"):
			inDisabled = false
			var keep []string
			for _, name := range f[1:] {
				if devs[name] != "" {
					found[name] = true
					disable = true
				} else {
					keep = append(keep, name)
				}
			}
			if disable {
				markLines(&b, phys)
				if len(keep) > 0 {
					fmt.Fprintf(&b, "%s %s\n", f[0], strings.Join(keep, " "))
				}
				continue
			}
		default: // mapping, rename
			inDisabled = false
		}
		if disable {
			markLines(&b, phys)
		} else {
			b.WriteString(strings.Join(phys, ""))
		}
	}
	var names []string
	for n := range found {
		names = append(names, n)
	}
	sort.Strings(names)
	return []byte(b.String()), names, sources
}

func markLines(b *strings.Builder, phys []string) {
	for _, l := range phys {
		b.WriteString(DisabledMark + l)
		if !strings.HasSuffix(l, "\n") {
			b.WriteString("\n")
		}
	}
}
