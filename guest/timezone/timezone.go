// Package timezone applies TIMEZONE: /etc/localtime becomes a symlink to
// the zone's file under /usr/share/zoneinfo and /etc/timezone holds its
// name (Debian's two places). An unknown zone changes nothing.
package timezone

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"one-contextd/engine"
	"one-contextd/fsroot"
)

// ZoneDir is where zones live, under the root.
const ZoneDir = "/usr/share/zoneinfo"

// Input is what the timezone step needs.
type Input struct {
	Timezone string // settings.System.Timezone; "" leaves the zone alone
	Root     *fsroot.Root
}

// Apply sets the zone.
func Apply(_ context.Context, r *engine.Recorder, in Input) error {
	tz := in.Timezone
	if tz == "" {
		return engine.Skip("TIMEZONE not set")
	}
	if err := check(in.Root, tz); err != nil {
		r.Problem("TIMEZONE", "%q: %v; the time zone is not changed", tz, err)
		return nil
	}
	target := path.Join(ZoneDir, tz)
	changed, err := symlink(in.Root, "/etc/localtime", target)
	if err != nil {
		return fmt.Errorf("timezone: %w", err)
	}
	if changed {
		r.Change("timezone: /etc/localtime -> %s", target)
	}
	changed, err = in.Root.WriteFile("/etc/timezone", []byte(tz+"\n"), fsroot.WriteOptions{Mode: 0o644})
	if err != nil {
		return fmt.Errorf("timezone: %w", err)
	}
	if changed {
		r.Change("timezone: /etc/timezone is %s", tz)
	}
	return nil
}

// check accepts a zone whose file exists inside the zone directory and is
// a compiled zone (TZif), so that "posixrules/../../etc/passwd" or a
// directory name like "Europe" is refused.
func check(root *fsroot.Root, tz string) error {
	if strings.Contains(tz, "..") || strings.HasPrefix(tz, "/") {
		return fmt.Errorf("not a zone name")
	}
	// Debian's zoneinfo/localtime is a link to /etc/localtime: linking
	// /etc/localtime to it would make a loop. A zone is a file inside the
	// zone directory, or a link that never leaves it.
	real, err := resolveWithin(root, path.Join(ZoneDir, tz), ZoneDir)
	if err != nil {
		return err
	}
	f, err := root.Fs().Open(real)
	if err != nil {
		return fmt.Errorf("no such zone in %s", ZoneDir)
	}
	defer f.Close()
	magic := make([]byte, 4)
	if _, err := io.ReadFull(f, magic); err != nil || !bytes.Equal(magic, []byte("TZif")) {
		return fmt.Errorf("%s/%s is not a compiled time zone", ZoneDir, tz)
	}
	return nil
}

// resolveWithin follows the symlinks of p inside the root (absolute
// targets are taken under the root) and returns the path it leads to, or
// an error when a link leads out of dir.
func resolveWithin(root *fsroot.Root, p, dir string) (string, error) {
	for hops := 0; hops < 40; hops++ {
		if !strings.HasPrefix(p, dir+"/") {
			return "", fmt.Errorf("leads to %s, outside %s", p, dir)
		}
		fi, err := root.Lstat(p)
		if err != nil {
			return "", fmt.Errorf("no such zone in %s", dir)
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			return p, nil
		}
		target, err := os.Readlink(root.HostPath(p))
		if err != nil {
			return "", err
		}
		if !path.IsAbs(target) {
			target = path.Join(path.Dir(p), target)
		}
		p = path.Clean(target)
	}
	return "", fmt.Errorf("%s: too many links", p)
}

// symlink makes p a symlink to target, atomically, unless it already is.
// The link is made on the host path: afero's base-path filesystem would
// rewrite an absolute target into a host path.
func symlink(root *fsroot.Root, p, target string) (bool, error) {
	if root.Dir() == "" {
		return false, fmt.Errorf("%s: the root has no host directory", p)
	}
	host := root.HostPath(p)
	if cur, err := os.Readlink(host); err == nil && cur == target {
		return false, nil
	}
	if fi, err := os.Lstat(host); err == nil && fi.IsDir() {
		return false, fmt.Errorf("%s is a directory", p)
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(filepath.Dir(host), "."+filepath.Base(host)+".one-contextd-"+hex.EncodeToString(rnd[:]))
	if err := os.Symlink(target, tmp); err != nil {
		return false, fmt.Errorf("%s: %w", p, err)
	}
	if err := os.Rename(tmp, host); err != nil {
		_ = os.Remove(tmp)
		return false, fmt.Errorf("%s: %w", p, err)
	}
	return true, nil
}
