// Package securetty applies SECURETTY as one-context's loc-35-securetty
// does: NO comments out the pam_securetty lines of /etc/pam.d/login (so
// root may log in on any terminal, which containers' consoles need), YES
// restores the lines the agent commented out. Unset, it is YES in a VM and
// NO in a container.
//
// The agent's lines are told apart by a marker at their end, so a line the
// administrator commented out is never restored, and the round trip
// NO → YES gives the file back byte for byte.
package securetty

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"one-contextd/engine"
	"one-contextd/fsroot"
)

// PAMFile is the login service's PAM configuration.
const PAMFile = "/etc/pam.d/login"

// Marker ends every line the agent commented out.
const Marker = "# one-contextd"

// module is the PAM module the setting is about.
const module = "pam_securetty.so"

// Input is what the step needs.
type Input struct {
	// Securetty is settings.Users.Securetty: nil when SECURETTY is unset.
	Securetty *bool
	// InContainer is whether the guest is a container (PID 1's
	// environment has container=); it decides when Securetty is nil.
	InContainer bool
	Root        *fsroot.Root
}

// Want is the effective setting: SECURETTY, else NO in a container and
// YES in a VM.
func (in Input) Want() bool {
	if in.Securetty != nil {
		return *in.Securetty
	}
	return !in.InContainer
}

// Apply comments out (NO) or restores (YES) the pam_securetty lines.
func Apply(_ context.Context, r *engine.Recorder, in Input) error {
	want := in.Want()
	cur, err := in.Root.ReadFile(PAMFile)
	if errors.Is(err, fs.ErrNotExist) {
		return engine.Skip("no " + PAMFile)
	}
	if err != nil {
		return fmt.Errorf("securetty: %w", err)
	}
	next, n := Edit(cur, want)
	if n == 0 {
		if !mentionsModule(cur) {
			r.Note("securetty: %s has no %s line; nothing to do", PAMFile, module)
		}
		return nil
	}
	changed, err := in.Root.WriteFile(PAMFile, next, fsroot.WriteOptions{Mode: 0o644})
	if err != nil {
		return fmt.Errorf("securetty: %w", err)
	}
	if changed {
		if want {
			r.Change("securetty: restored %d %s line(s) in %s (SECURETTY=YES)", n, module, PAMFile)
		} else {
			r.Change("securetty: commented out %d %s line(s) in %s (SECURETTY=NO)", n, module, PAMFile)
		}
	}
	return nil
}

// Edit returns the file with its pam_securetty lines enabled (want) or
// commented out, and how many lines it changed. Only lines the agent
// marked are restored; only active lines are commented out.
func Edit(data []byte, want bool) ([]byte, int) {
	lines := bytes.SplitAfter(data, []byte("\n"))
	n := 0
	for i, l := range lines {
		body, eol := cutEOL(string(l))
		switch {
		case want && isMarked(body):
			body = strings.TrimSuffix(strings.TrimPrefix(body, "#"), " "+Marker)
		case !want && isActive(body):
			body = "#" + body + " " + Marker
		default:
			continue
		}
		lines[i] = []byte(body + eol)
		n++
	}
	return bytes.Join(lines, nil), n
}

func cutEOL(l string) (body, eol string) {
	if b, ok := strings.CutSuffix(l, "\n"); ok {
		return b, "\n"
	}
	return l, ""
}

// isActive: a PAM rule (not a comment) whose module is pam_securetty.
func isActive(l string) bool {
	t := strings.TrimSpace(l)
	if t == "" || strings.HasPrefix(t, "#") {
		return false
	}
	return namesModule(t)
}

// isMarked: a line the agent commented out.
func isMarked(l string) bool {
	if !strings.HasPrefix(l, "#") || !strings.HasSuffix(l, " "+Marker) {
		return false
	}
	return isActive(strings.TrimSuffix(strings.TrimPrefix(l, "#"), " "+Marker))
}

// namesModule: the module field (a name or a path) is pam_securetty.
// Control values in brackets hold spaces, so every field is looked at.
func namesModule(l string) bool {
	for _, f := range strings.Fields(l) {
		if path.Base(f) == module {
			return true
		}
	}
	return false
}

func mentionsModule(data []byte) bool {
	return bytes.Contains(data, []byte("pam_securetty"))
}

// ContainerEnviron reports whether a NUL-separated environment block (as
// /proc/<pid>/environ holds it) sets the variable container, as
// systemd-nspawn, LXC, podman and docker's init systems do.
func ContainerEnviron(environ []byte) bool {
	for _, kv := range bytes.Split(environ, []byte{0}) {
		if bytes.HasPrefix(kv, []byte("container=")) {
			return true
		}
	}
	return false
}

// PID1InContainer reads PID 1's environment under procDir (/proc on the
// running system) and reports whether it marks a container.
func PID1InContainer(procDir string) (bool, error) {
	data, err := os.ReadFile(filepath.Join(procDir, "1", "environ"))
	if err != nil {
		return false, fmt.Errorf("securetty: PID 1's environment: %w", err)
	}
	return ContainerEnviron(data), nil
}
