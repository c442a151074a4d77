package medium

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// FindOptions says where and how long Find looks for the context medium.
// The zero value looks where one-context looks.
type FindOptions struct {
	SysRoot string        // default "/sys": block devices are listed from SysRoot/class/block
	DevRoot string        // default "/dev": device nodes DevRoot/<name>, and DevRoot/disk/by-label/<label>
	Labels  []string      // default {"CONTEXT"}: accepted volume labels, most preferred first
	Dirs    []string      // default {"/context"}: directory sources tried when no device is found
	Timeout time.Duration // bounded wait for the device to appear; default 30s; < 0: look once
	Poll    time.Duration // pause between looks; default 250ms

	// IncludeLoop also considers loop devices, which one-context ignores
	// (a loop-mounted image is no context CD-ROM).
	IncludeLoop bool
}

func (o FindOptions) withDefaults() FindOptions {
	if o.SysRoot == "" {
		o.SysRoot = "/sys"
	}
	if o.DevRoot == "" {
		o.DevRoot = "/dev"
	}
	if len(o.Labels) == 0 {
		o.Labels = []string{"CONTEXT"}
	}
	if o.Dirs == nil {
		o.Dirs = []string{"/context"}
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	if o.Poll <= 0 {
		o.Poll = 250 * time.Millisecond
	}
	return o
}

// Find looks for the context medium until it appears, the timeout passes or
// ctx ends. It takes the first block device whose ISO 9660 volume label is one
// of opt.Labels (a label earlier in the list wins, then /dev/disk/by-label
// links, then sr* devices, then the other devices by name). Only when no such
// device is present does it try the directory sources. Each device costs one
// 2 KiB read of its primary volume descriptor.
func Find(ctx context.Context, opt FindOptions) (*Medium, error) {
	opt = opt.withDefaults()
	start := time.Now()
	deadline := start.Add(opt.Timeout)
	for {
		m, report := scanOnce(opt)
		if m != nil {
			return m, nil
		}
		if opt.Timeout < 0 || !time.Now().Before(deadline) {
			return nil, fmt.Errorf("no context medium labelled %s found in %s: %s",
				strings.Join(opt.Labels, " or "), time.Since(start).Round(time.Millisecond), report)
		}
		wait := min(opt.Poll, time.Until(deadline))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("find context medium: stopped after %s: %w; %s",
				time.Since(start).Round(time.Millisecond), ctx.Err(), report)
		case <-t.C:
		}
	}
}

// candidate is one device path Find looked at.
type candidate struct {
	name  string // as shown in reports: "sr0", "disk/by-label/CONTEXT"
	path  string
	label string
	err   error
}

// scanOnce looks once at every device and directory source. Without a medium
// it returns a report of what it saw, for the final error.
func scanOnce(opt FindOptions) (*Medium, string) {
	cands := deviceCandidates(opt)
	seen := map[string]bool{}
	var looked []candidate
	for _, c := range cands {
		// by-label links and sysfs names often lead to the same node.
		key := c.path
		if real, err := filepath.EvalSymlinks(c.path); err == nil {
			key = real
		}
		if seen[key] {
			continue
		}
		seen[key] = true
		c.label, c.err = readLabel(c.path)
		looked = append(looked, c)
	}
	var rejected []string
	for _, want := range opt.Labels {
		for _, c := range looked {
			if c.err != nil || c.label != want {
				continue
			}
			m, err := Open(c.path)
			if err == nil {
				return m, ""
			}
			rejected = append(rejected, err.Error())
		}
	}
	for _, d := range opt.Dirs {
		fi, err := os.Stat(d)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err == nil && !fi.IsDir() {
			rejected = append(rejected, fmt.Sprintf("%s: not a directory", d))
			continue
		}
		m, err := Open(d)
		if err == nil {
			return m, ""
		}
		rejected = append(rejected, err.Error())
	}
	return nil, report(opt, looked, rejected)
}

// deviceCandidates lists the device paths to look at, in order of preference.
func deviceCandidates(opt FindOptions) []candidate {
	var out []candidate
	for _, l := range opt.Labels {
		if l == "" || strings.ContainsAny(l, "/\x00") || l == "." || l == ".." {
			continue
		}
		link := filepath.Join("disk", "by-label", l)
		p := filepath.Join(opt.DevRoot, link)
		if _, err := os.Stat(p); err == nil {
			out = append(out, candidate{name: link, path: p})
		}
	}
	blockDir := filepath.Join(opt.SysRoot, "class", "block")
	des, err := os.ReadDir(blockDir)
	if err != nil {
		return out
	}
	var names []string
	for _, de := range des {
		n := de.Name()
		if !opt.IncludeLoop && strings.HasPrefix(n, "loop") {
			continue
		}
		if strings.HasPrefix(n, "ram") || strings.HasPrefix(n, "zram") || strings.HasPrefix(n, "fd") {
			// Memory disks never carry the context, and reading an empty
			// floppy drive stalls for seconds.
			continue
		}
		if emptyDevice(filepath.Join(blockDir, n)) {
			continue // an empty CD-ROM drive or a detached loop device
		}
		names = append(names, n)
	}
	// CD-ROMs (sr*) first: that is where oned attaches the context.
	slices.SortFunc(names, func(a, b string) int {
		ca, cb := strings.HasPrefix(a, "sr"), strings.HasPrefix(b, "sr")
		switch {
		case ca && !cb:
			return -1
		case cb && !ca:
			return 1
		}
		return strings.Compare(a, b)
	})
	for _, n := range names {
		// sysfs writes "/" in device names as "!" (cciss!c0d0 is /dev/cciss/c0d0).
		out = append(out, candidate{name: n, path: filepath.Join(opt.DevRoot, strings.ReplaceAll(n, "!", "/"))})
	}
	return out
}

// emptyDevice reports whether sysfs says the device has 0 sectors. A missing
// or unreadable size file says nothing, so the device is looked at.
func emptyDevice(sysDir string) bool {
	b, err := os.ReadFile(filepath.Join(sysDir, "size"))
	if err != nil {
		return false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return err == nil && n == 0
}

func report(opt FindOptions, looked []candidate, rejected []string) string {
	var seen []string
	for _, c := range looked {
		switch {
		case c.err != nil:
			seen = append(seen, fmt.Sprintf("%s (%v)", c.name, c.err))
		default:
			seen = append(seen, fmt.Sprintf("%s (label %q)", c.name, c.label))
		}
	}
	if len(seen) == 0 {
		seen = []string{"none"}
	}
	r := fmt.Sprintf("block devices from %s and %s: %s",
		filepath.Join(opt.SysRoot, "class", "block"), filepath.Join(opt.DevRoot, "disk", "by-label"), strings.Join(seen, ", "))
	if len(opt.Dirs) > 0 {
		r += "; directories: " + strings.Join(opt.Dirs, ", ")
	}
	if len(rejected) > 0 {
		r += "; rejected: " + strings.Join(rejected, "; ")
	}
	return r
}
