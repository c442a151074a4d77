// Package resolv hands the context's nameservers to whoever owns
// /etc/resolv.conf: systemd-resolved (a drop-in), Debian's resolvconf (an
// interface record), NetworkManager (a conf.d drop-in with its global
// DNS), or, when the file is a plain file, the file itself, which the
// agent then writes. A symlink the system relies on is never replaced.
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
	NMDropIn        = "/etc/NetworkManager/conf.d/90-one-context-dns.conf"
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
	// NetworkManager says NetworkManager manages the network (the chosen
	// renderer). It writes a plain resolv.conf over the agent's when a
	// connection comes up, so there the nameservers go to its global DNS
	// as well as into the file.
	NetworkManager bool
}

// Result says what Apply did.
type Result struct {
	Owner   Owner
	Trace   string
	Changes []string
	Notes   []string
	// RestartResolved is set when the resolved drop-in changed.
	RestartResolved bool
	// ReloadNM is set when NetworkManager's drop-in changed: its
	// configuration is to be reloaded (nmcli general reload conf,dns-rc).
	ReloadNM bool
}

// Apply hands cfg to the owner. run is used only for resolvconf, and only
// when live is true (the root is the running system).
//
// NetworkManager gets the nameservers and search domains as its global
// DNS, which overrides the DNS of every connection (DHCP's included):
// resolv.conf then holds the context's servers and domains only, as the
// file one-context writes, and NetworkManager writes it so again after a
// restart or a DHCP renewal. one-context writes resolv.conf itself and
// NetworkManager writes over it at its next DNS update.
//
// With no nameservers resolv.conf itself is left as it is, as one-context
// does (its gen_resolvconf returns before touching the file), but what
// the agent handed to a resolver for an earlier context is taken back:
// its systemd-resolved and NetworkManager drop-ins go and its resolvconf
// record is deleted, or DNS removed from the context would stay forever.
func Apply(ctx context.Context, r *fsroot.Root, run runner.Runner, live bool, cfg Config) (Result, error) {
	owner, trace := Detect(r)
	res := Result{Owner: owner, Trace: trace}
	if len(cfg.Nameservers) == 0 {
		res.Notes = append(res.Notes, "dns: no nameservers in the context; resolv.conf left as it is")
		return res, withdraw(ctx, r, run, live, &res)
	}
	// NetworkManager's drop-in is wanted where NetworkManager writes
	// resolv.conf; anywhere else an earlier one of the agent's goes.
	if owner == NM || (owner == File && cfg.NetworkManager) {
		changed, err := r.WriteFile(NMDropIn, NMGlobalDNS(cfg), fsroot.WriteOptions{Mode: 0o644, UID: -1, GID: -1})
		if err != nil {
			return res, fmt.Errorf("dns: %w", err)
		}
		if changed {
			res.Changes = append(res.Changes, "dns: write "+NMDropIn)
			res.ReloadNM = true
		}
	} else {
		removed, err := takeBack(r, NMDropIn, &res)
		if err != nil {
			return res, fmt.Errorf("dns: %w", err)
		}
		if removed {
			res.Changes = append(res.Changes, "dns: remove "+NMDropIn+" (resolv.conf is not NetworkManager's)")
			res.ReloadNM = true
		}
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
		res.Notes = append(res.Notes, "dns: NetworkManager owns resolv.conf; the nameservers are its global DNS ("+NMDropIn+"), over the connections' own")
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
// systemd-resolved and NetworkManager drop-ins (whoever owns resolv.conf
// now) and its resolvconf record. A file at a drop-in's path that the
// agent did not write is left alone.
func withdraw(ctx context.Context, r *fsroot.Root, run runner.Runner, live bool, res *Result) error {
	for _, d := range []struct {
		path   string
		reload *bool
	}{{ResolvedDropIn, &res.RestartResolved}, {NMDropIn, &res.ReloadNM}} {
		removed, err := takeBack(r, d.path, res)
		if err != nil {
			return fmt.Errorf("dns: no nameservers in the context: %w", err)
		}
		if removed {
			res.Changes = append(res.Changes, "dns: remove "+d.path+" (no nameservers in the context)")
			*d.reload = true
		}
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

// takeBack removes the agent's file at p: one it created, or one that
// starts with its header (the manifest of created files was lost).
// Another file there is left alone, with a note.
func takeBack(r *fsroot.Root, p string, res *Result) (bool, error) {
	data, err := r.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("%s: %w", p, err)
	}
	created, err := r.Created(p)
	if err != nil {
		return false, fmt.Errorf("%s: %w", p, err)
	}
	if !created && !bytes.HasPrefix(data, []byte(header)) {
		res.Notes = append(res.Notes, "dns: "+p+" was not written by the agent; left alone")
		return false, nil
	}
	return r.Remove(p)
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

// NMGlobalDNS is NetworkManager's conf.d drop-in: all the nameservers and
// search domains, in the context's order, as its global DNS. The default
// domain section "*" is what makes NetworkManager take it
// (NetworkManager.conf(5): without it the global DNS is not valid); its
// lists are comma-separated.
func NMGlobalDNS(cfg Config) []byte {
	var b strings.Builder
	b.WriteString(header + "[global-dns]\n")
	if len(cfg.Search) > 0 {
		fmt.Fprintf(&b, "searches=%s\n", strings.Join(cfg.Search, ","))
	}
	ns := make([]string, len(cfg.Nameservers))
	for i, a := range cfg.Nameservers {
		ns[i] = a.String()
	}
	fmt.Fprintf(&b, "\n[global-dns-domain-*]\nservers=%s\n", strings.Join(ns, ","))
	return []byte(b.String())
}
