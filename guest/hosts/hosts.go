// Package hosts keeps the agent's entry for the hostname in /etc/hosts,
// between begin and end marker lines. Every other line is kept byte for
// byte; the block is replaced where it is, or put first (where
// one-context puts its line, so it wins the first-match lookup).
package hosts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"strings"

	"one-contextd/engine"
	"one-contextd/fsroot"
)

// Path is the file, under the root.
const Path = "/etc/hosts"

// Markers around the agent's block.
const (
	BeginMarker = "# BEGIN one-contextd"
	EndMarker   = "# END one-contextd"
)

// Input is what the hosts step needs: the name the hostname step chose
// (hostname.Decision's Name and HostsIP).
type Input struct {
	Root *fsroot.Root
	Name string     // "" leaves the file alone
	IP   netip.Addr // zero: 127.0.0.1
}

// Apply writes the block.
func Apply(_ context.Context, r *engine.Recorder, in Input) error {
	if in.Name == "" {
		return engine.Skip("no hostname chosen")
	}
	if strings.ContainsAny(in.Name, " \t\r\n#") {
		return fmt.Errorf("hosts: %q is not a host name", in.Name)
	}
	ip := in.IP
	if !ip.IsValid() {
		ip = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	old, err := in.Root.ReadFile(Path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("hosts: %w", err)
	}
	data := Render(old, Entry(ip, in.Name))
	changed, err := in.Root.WriteFile(Path, data, fsroot.WriteOptions{Mode: 0o644})
	if err != nil {
		return fmt.Errorf("hosts: %w", err)
	}
	if changed {
		r.Change("hosts: %s maps %s to %s", Path, in.Name, ip)
	}
	return nil
}

// Entry is the line for a name: "<ip> <fqdn> <short>", or "<ip> <name>".
func Entry(ip netip.Addr, name string) string {
	name = strings.TrimSuffix(name, ".")
	if short, _, ok := strings.Cut(name, "."); ok && short != "" {
		return ip.String() + " " + name + " " + short
	}
	return ip.String() + " " + name
}

// Render returns old with the block holding entry: replaced in place when
// old has one (extra blocks from a damaged file are dropped), first otherwise.
// A BEGIN marker with no END after it (an edited file) is not a block: that
// marker line goes, and every line after it is kept as the file's own.
func Render(old []byte, entry string) []byte {
	block := BeginMarker + "\n" + entry + "\n" + EndMarker + "\n"
	var lines [][]byte
	for _, l := range bytes.SplitAfter(old, []byte("\n")) {
		if len(l) > 0 {
			lines = append(lines, l)
		}
	}
	text := func(l []byte) string { return strings.TrimRight(string(l), "\r\n") }
	closedAfter := func(i int) bool {
		for _, l := range lines[i+1:] {
			if text(l) == EndMarker {
				return true
			}
		}
		return false
	}
	var out bytes.Buffer
	in, placed := false, false
	for i, l := range lines {
		t := text(l)
		switch {
		case !in && t == BeginMarker:
			in = closedAfter(i)
			if !placed {
				out.WriteString(block)
				placed = true
			}
		case in && t == EndMarker:
			in = false
		case in:
		default:
			out.Write(l)
		}
	}
	if !placed {
		return append([]byte(block), old...)
	}
	return out.Bytes()
}
