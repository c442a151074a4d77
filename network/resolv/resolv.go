// Package resolv hands the context's nameservers to whoever owns
// /etc/resolv.conf: systemd-resolved (a drop-in), Debian's resolvconf (an
// interface record), or, when the file is a plain file, the file itself,
// which the agent then writes. A symlink the system relies on is never
// replaced.
package resolv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"strings"

	"one-contextd/fsroot"
	"one-contextd/runner"
)

// Owner is who manages /etc/resolv.conf.
type Owner string

// The owners.
const (
	Resolved   Owner = "systemd-resolved"
	Resolvconf Owner = "resolvconf"
	NM         Owner = "NetworkManager"
	File       Owner = "file"    // a plain file (or none): the agent writes it
	Unknown    Owner = "unknown" // a symlink elsewhere: left alone
)

// Paths the package writes.
const (
	ResolvConf      = "/etc/resolv.conf"
	ResolvedDropIn  = "/etc/systemd/resolved.conf.d/one-context.conf"
	resolvconfIface = "one-contextd.inet"
	header          = "# Written by one-contextd from the OpenNebula context; changes are overwritten.\n"
)

// Detect decides the owner from /etc/resolv.conf under the root. A symlink's
// target is strong evidence; a plain file's header names its writer.
func Detect(r *fsroot.Root) (Owner, string) {
	fi, err := r.Lstat(ResolvConf)
	if err != nil {
		return File, "resolv.conf=missing"
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		target := readlink(r, ResolvConf)
		switch {
		case strings.Contains(target, "systemd/resolve"):
			return Resolved, "resolv.conf->" + target
		case strings.Contains(target, "resolvconf"):
			return Resolvconf, "resolv.conf->" + target
		case strings.Contains(target, "NetworkManager"):
			return NM, "resolv.conf->" + target
		}
		return Unknown, "resolv.conf->" + target
	}
	data, _ := r.ReadFile(ResolvConf)
	head := leadingComments(data)
	switch {
	case strings.Contains(head, "one-contextd"):
		return File, "resolv.conf=ours"
	case strings.Contains(head, "systemd-resolved"):
		return Resolved, "resolv.conf=file-by-resolved"
	case strings.Contains(head, "resolvconf"):
		return Resolvconf, "resolv.conf=file-by-resolvconf"
	case strings.Contains(head, "NetworkManager"):
		return NM, "resolv.conf=file-by-NetworkManager"
	}
	return File, "resolv.conf=plain"
}

func readlink(r *fsroot.Root, p string) string {
	type linkReader interface{ ReadlinkIfPossible(string) (string, error) }
	if lr, ok := r.Fs().(linkReader); ok {
		if t, err := lr.ReadlinkIfPossible(p); err == nil {
			return t
		}
	}
	return ""
}

func leadingComments(data []byte) string {
	var b strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") && !strings.HasPrefix(t, ";") {
			break
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

// Config is what goes to the resolver.
type Config struct {
	Nameservers []netip.Addr
	Search      []string
	Domain      string // "domain" line of a plain file; "" none
}

// Result says what Apply did.
type Result struct {
	Owner   Owner
	Trace   string
	Changes []string
	Notes   []string
	// RestartResolved is set when the resolved drop-in changed.
	RestartResolved bool
}

// Apply hands cfg to the owner. run is used only for resolvconf, and only
// when live is true (the root is the running system).
//
// With no nameservers resolv.conf itself is left as it is, as one-context
// does (its gen_resolvconf returns before touching the file), but what
// the agent handed to a resolver for an earlier context is taken back:
// its systemd-resolved drop-in goes and its resolvconf record is deleted,
// or DNS removed from the context would stay forever.
func Apply(ctx context.Context, r *fsroot.Root, run runner.Runner, live bool, cfg Config) (Result, error) {
	owner, trace := Detect(r)
	res := Result{Owner: owner, Trace: trace}
	if len(cfg.Nameservers) == 0 {
		res.Notes = append(res.Notes, "dns: no nameservers in the context; resolv.conf left as it is")
		return res, withdraw(ctx, r, run, live, &res)
	}
	switch owner {
	case Resolved:
		changed, err := r.WriteFile(ResolvedDropIn, ResolvedConf(cfg), fsroot.WriteOptions{Mode: 0o644, UID: -1, GID: -1})
		if err != nil {
			return res, fmt.Errorf("dns: %w", err)
		}
		if changed {
			res.Changes = append(res.Changes, "dns: write "+ResolvedDropIn)
			res.RestartResolved = true
		}
	case Resolvconf:
		body := Plain(cfg, false)
		cur, _ := r.ReadFile(ResolvconfRecord)
		if bytes.Equal(cur, body) {
			return res, nil
		}
		if !live {
			res.Notes = append(res.Notes, "dns: resolvconf owns resolv.conf; not the running system, nothing registered")
			return res, nil
		}
		if _, err := run.Run(ctx, runner.Cmd{Name: "resolvconf", Args: []string{"-a", resolvconfIface}, Stdin: body}); err != nil {
			return res, fmt.Errorf("dns: %w", err)
		}
		res.Changes = append(res.Changes, "dns: resolvconf -a "+resolvconfIface)
	case NM:
		res.Notes = append(res.Notes, "dns: NetworkManager owns resolv.conf; the nameservers are in its connections")
	case Unknown:
		res.Notes = append(res.Notes, "dns: resolv.conf is a symlink ("+trace+") the agent does not know; left alone")
	case File:
		changed, err := r.WriteFile(ResolvConf, Plain(cfg, true), fsroot.WriteOptions{Mode: 0o644, UID: -1, GID: -1})
		if err != nil {
			return res, fmt.Errorf("dns: %w", err)
		}
		if changed {
			res.Changes = append(res.Changes, "dns: write "+ResolvConf)
		}
	}
	return res, nil
}

// ResolvconfRecord is where resolvconf keeps the agent's record.
const ResolvconfRecord = "/run/resolvconf/interface/" + resolvconfIface

// withdraw takes back what the agent gave a resolver: its own
// systemd-resolved drop-in (whoever owns resolv.conf now) and its
// resolvconf record. A file at the drop-in's path that the agent did not
// write is left alone.
func withdraw(ctx context.Context, r *fsroot.Root, run runner.Runner, live bool, res *Result) error {
	if data, err := r.ReadFile(ResolvedDropIn); err == nil {
		created, cerr := r.Created(ResolvedDropIn)
		if cerr != nil {
			return fmt.Errorf("dns: %s: %w", ResolvedDropIn, cerr)
		}
		if !created && !bytes.HasPrefix(data, []byte(header)) {
			res.Notes = append(res.Notes, "dns: "+ResolvedDropIn+" was not written by the agent; left alone")
		} else {
			removed, err := r.Remove(ResolvedDropIn)
			if err != nil {
				return fmt.Errorf("dns: no nameservers in the context: %w", err)
			}
			if removed {
				res.Changes = append(res.Changes, "dns: remove "+ResolvedDropIn+" (no nameservers in the context)")
				res.RestartResolved = true
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("dns: %s: %w", ResolvedDropIn, err)
	}
	if !r.Exists(ResolvconfRecord) {
		return nil
	}
	if !live {
		res.Notes = append(res.Notes, "dns: resolvconf holds the agent's record; not the running system, left registered")
		return nil
	}
	if _, err := run.Run(ctx, runner.Cmd{Name: "resolvconf", Args: []string{"-d", resolvconfIface}}); err != nil {
		return fmt.Errorf("dns: no nameservers in the context: resolvconf -d %s: %w", resolvconfIface, err)
	}
	res.Changes = append(res.Changes, "dns: resolvconf -d "+resolvconfIface)
	return nil
}

// Plain is a resolv.conf; withDomain adds the domain line.
func Plain(cfg Config, withDomain bool) []byte {
	var b strings.Builder
	b.WriteString(header)
	for _, a := range cfg.Nameservers {
		fmt.Fprintf(&b, "nameserver %s\n", a)
	}
	if len(cfg.Search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(cfg.Search, " "))
	}
	if withDomain && cfg.Domain != "" {
		fmt.Fprintf(&b, "domain %s\n", cfg.Domain)
	}
	return []byte(b.String())
}

// ResolvedConf is the systemd-resolved drop-in.
func ResolvedConf(cfg Config) []byte {
	var b strings.Builder
	b.WriteString(header + "[Resolve]\n")
	ns := make([]string, len(cfg.Nameservers))
	for i, a := range cfg.Nameservers {
		ns[i] = a.String()
	}
	fmt.Fprintf(&b, "DNS=%s\n", strings.Join(ns, " "))
	if len(cfg.Search) > 0 {
		fmt.Fprintf(&b, "Domains=%s\n", strings.Join(cfg.Search, " "))
	}
	return []byte(b.String())
}
