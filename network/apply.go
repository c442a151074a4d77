// Package network is the agent's network step: it plans one desired state
// from the context and the kernel's links (package model), persists it for
// the image's network manager (package render), converges the kernel
// through netlink (package kernel), hands DNS to the resolver's owner
// (package resolv), reloads the manager once if a file changed, and reads
// the kernel back to verify.
package network

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/spf13/afero"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"one-contextd/context/settings"
	"one-contextd/engine"
	"one-contextd/fsroot"
	"one-contextd/network/kernel"
	"one-contextd/network/model"
	"one-contextd/network/render"
	"one-contextd/network/resolv"
	"one-contextd/runner"
)

// OwnedPath keeps the addresses the agent added to the kernel, so a later
// run removes only those.
const OwnedPath = "/var/lib/one-contextd/network-owned.json"

// Input is what the network step needs.
type Input struct {
	Settings settings.Network
	OneGate  settings.OneGate
	Root     *fsroot.Root
	Run      runner.Runner
	// Netlink is the kernel; nil opens a handle in the current network namespace.
	Netlink kernel.Netlink
	// Sysctl sets the IPv6 "disable" sysctls now; nil uses /proc/sys when
	// Netlink is nil and Root is the real root, else they are only persisted.
	Sysctl kernel.Sysctl
	// NetcfgType overrides NETCFG_TYPE (the --netcfg flag); "" none.
	NetcfgType string
	// Domain is put on resolv.conf's "domain" line when the agent writes
	// that file (the hostname's domain part); "" none.
	Domain string
	// OSRelease overrides /etc/os-release under the root (tests).
	OSRelease *OSRelease
	// ReloadAnyRoot reloads the manager through Run even when Root is not
	// "/" (tests, with a fake runner). Otherwise only a real root is reloaded.
	ReloadAnyRoot bool
}

// errNoneAsked skips the network steps when NETCFG_TYPE (or --netcfg)
// asks for none and nothing else: one-context then leaves the network
// alone, kernel and resolv.conf included ("Network will not be
// configured"). A guest where no manager is found is not that: its kernel
// is still configured.
var errNoneAsked = engine.Skip("NETCFG_TYPE is none: the network is left as it is, as one-context does")

func noneAsked(in Input) bool {
	types := strings.Fields(in.NetcfgType)
	if len(types) == 0 {
		types = in.Settings.NetcfgTypes
	}
	if len(types) != 1 {
		return false
	}
	t, ok := ParseType(types[0])
	return ok && t == render.None
}

// Apply runs the network step. It does not ask whether the context
// changed: an unchanged context converges to no change, and a NIC that
// came or went since the last run is configured or forgotten all the same.
func Apply(ctx context.Context, r *engine.Recorder, in Input) error {
	if noneAsked(in) {
		return errNoneAsked
	}
	nl, sc, done, err := kernelOf(in)
	if err != nil {
		return err
	}
	defer done()
	links, m, problems, err := plan(nl, in)
	if err != nil {
		return err
	}
	for _, p := range problems {
		r.Problem(p.Var, "%s", p.Msg)
	}
	for _, n := range m.Skipped {
		r.Note("%s (%s): both families are skip; the NIC is left alone", n.Name, n.Dev)
	}
	noteUnmentioned(r, m, links)

	// Which manager persists it.
	osr := in.OSRelease
	if osr == nil {
		o := ReadOSRelease(in.Root)
		osr = &o
	}
	cands, asked := candidates(in, *osr, r)
	sel, err := Select(in.Root, cands, asked, *osr, links)
	r.Note("netcfg: %s", sel.Trace)
	// No manager to persist for still leaves the kernel to configure: the
	// VM gets its network for this boot, and the step fails so the
	// operator learns that it will not survive a restart of the network.
	persistErr := err
	if err != nil {
		sel.Type = render.None
	}

	// What an earlier run disabled, read before the files are rewritten.
	persistedOff := disabled6(in.Root)

	// Files first (they survive a reboot), then the kernel.
	filesChanged, err := writeFiles(r, in, m, sel.Type)
	if err != nil {
		return fmt.Errorf("network: %w", err)
	}

	// ifupdown's "inet static" runs `ip addr add`, which fails on an
	// address that is already there, and networking.service fails with
	// it. Before ifupdown has run (the local stage at boot) the kernel is
	// left to it; once it runs, the agent converges the kernel as usual.
	leaveToIfupdown := sel.Type == render.Interfaces && !ifupdownRan(in.Root)
	if leaveToIfupdown {
		r.Note("ifupdown has not run yet: networking.service brings the NICs up from the written files")
	} else {
		owned, err := loadOwned(in.Root)
		if err != nil {
			r.Problem("", "network: %v; starting with no record of own addresses", err)
		}
		m.Reenable6(persistedOff, owned.IPv6Disabled)
		res, err := kernel.Apply(nl, sc, m, owned)
		if err != nil {
			return fmt.Errorf("network: %w", err)
		}
		for _, c := range res.Changes {
			r.Change("%s", c)
		}
		for _, p := range res.Problems {
			r.Problem(p.Var, "%s", p.Msg)
		}
		if sc == nil && len(m.Sysctls) > 0 {
			r.Note("sysctls for IPv6 disable are only persisted (not the running system's namespace)")
		}
		if err := saveOwned(in.Root, res.Owned); err != nil {
			return fmt.Errorf("network: %w", err)
		}
	}

	dns, err := resolv.Apply(ctx, in.Root, in.Run, in.Root.IsReal(), resolv.Config{Nameservers: m.Nameservers, Search: m.Searches, Domain: in.Domain, NetworkManager: sel.Type == render.NM})
	r.Note("dns: owner=%s %s", dns.Owner, dns.Trace)
	for _, c := range dns.Changes {
		r.Change("%s", c)
	}
	for _, n := range dns.Notes {
		r.Note("%s", n)
	}
	if err != nil {
		r.Problem("DNS", "%v", err)
	}
	live := in.Root.IsReal() || in.ReloadAnyRoot
	if dns.RestartResolved && live {
		if _, err := in.Run.Run(ctx, runner.Cmd{Name: "systemctl", Args: []string{"try-reload-or-restart", "systemd-resolved.service"}}); err != nil {
			r.Problem("DNS", "reload systemd-resolved: %v", err)
		}
	}

	if live {
		// NetworkManager is reloaded once for its keyfiles and its DNS
		// drop-in (which may also go while another manager is chosen).
		conns := filesChanged && sel.Type == render.NM
		if err := reloadNM(ctx, r, in, conns, dns.ReloadNM); err != nil {
			return fmt.Errorf("network: %w", err)
		}
		if filesChanged && !conns {
			if err := reload(ctx, r, in, sel.Type); err != nil {
				return fmt.Errorf("network: %w", err)
			}
		}
	}

	if !leaveToIfupdown {
		if err := recordVerify(r, nl, sc, m); err != nil {
			return err
		}
	}
	if persistErr != nil {
		return fmt.Errorf("network: configured in the kernel only, not persisted: %w", persistErr)
	}
	return nil
}

func candidates(in Input, o OSRelease, r *engine.Recorder) ([]render.Type, bool) {
	if in.NetcfgType != "" {
		var out []render.Type
		for _, f := range strings.Fields(in.NetcfgType) {
			if t, ok := ParseType(f); ok {
				out = append(out, t)
			} else {
				r.Problem("NETCFG_TYPE", "--netcfg %q: unknown type; left out", f)
			}
		}
		if len(out) > 0 {
			return out, true
		}
	}
	if len(in.Settings.NetcfgTypes) > 0 {
		var out []render.Type
		for _, n := range in.Settings.NetcfgTypes {
			if t, ok := ParseType(n); ok {
				out = append(out, t)
			}
		}
		if len(out) > 0 {
			return out, true
		}
	}
	return DefaultTypes(o), false
}

func noteUnmentioned(r *engine.Recorder, m model.Model, links []model.Link) {
	used := map[int]bool{}
	for _, n := range m.NICs {
		used[n.DevIdx] = true
	}
	for _, n := range m.Skipped {
		used[n.DevIdx] = true
	}
	var other []string
	for _, l := range links {
		if !used[l.Index] && len(l.MAC) == 6 && l.Name != "lo" {
			other = append(other, l.Name)
		}
	}
	if len(other) > 0 {
		r.Note("links not in the context, left alone: %s", strings.Join(other, " "))
	}
}

// disabled6 lists the links whose IPv6 the persisted sysctls disable:
// those an earlier run disabled.
func disabled6(root *fsroot.Root) []string {
	data, err := root.ReadFile(render.SysctlPath)
	if err != nil {
		return nil
	}
	var devs []string
	for _, line := range strings.Split(string(data), "\n") {
		key, value, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(value) != "1" {
			continue
		}
		key = strings.TrimSpace(key)
		for _, sep := range []string{".", "/"} {
			rest, ok := strings.CutPrefix(key, "net"+sep+"ipv6"+sep+"conf"+sep)
			if dev, ok2 := strings.CutSuffix(rest, sep+"disable_ipv6"); ok && ok2 {
				devs = append(devs, dev)
			}
		}
	}
	return devs
}

// writeFiles writes the manager's files, removes the agent's stale ones (a
// NIC that is gone, a manager no longer chosen) and persists sysctls.
func writeFiles(r *engine.Recorder, in Input, m model.Model, t render.Type) (bool, error) {
	files, problems, err := render.Render(t, m, render.Options{NetplanRenderer: netplanBackend(in.Settings, in.Root)})
	if err != nil {
		return false, err
	}
	for _, p := range problems {
		r.Problem(p.Var, "%s", p.Msg)
	}
	if s := render.Sysctls(m); s != nil {
		files = append(files, render.File{Path: render.SysctlPath, Data: s, Mode: 0o644})
	}
	wrote := false
	keep := map[string]bool{}
	for _, f := range files {
		keep[f.Path] = true
		changed, err := in.Root.WriteFile(f.Path, f.Data, fsroot.WriteOptions{Mode: f.Mode, ForceMode: true, UID: -1, GID: -1})
		if err != nil {
			return wrote, err
		}
		if changed {
			wrote = true
			r.Change("write %s", f.Path)
		}
	}
	if t == render.Interfaces {
		changed, err := ensureSourced(in.Root)
		if err != nil {
			return wrote, err
		}
		if changed {
			wrote = true
			r.Change("make /etc/network/interfaces source %s", render.InterfacesPath)
		}
		st, err := disableForeignStanzas(in.Root, m)
		for _, p := range st.Problems {
			r.Problem(p.Var, "%s", p.Msg)
		}
		for _, mv := range st.Moved {
			r.Change("move the backup %s to %s (ifupdown reads the first)", mv[0], mv[1])
		}
		if err != nil {
			return wrote, fmt.Errorf("ifupdown: %w", err)
		}
		for _, d := range st.Disabled {
			wrote = true
			if d.Backup != "" {
				r.Change("disable the stanzas of %s in %s (the agent's %s configures them; the file as it was: %s)", strings.Join(d.Devs, " "), d.Path, render.InterfacesPath, d.Backup)
			} else {
				r.Change("disable the stanzas of %s in %s (the agent's %s configures them)", strings.Join(d.Devs, " "), d.Path, render.InterfacesPath)
			}
		}
	}
	for _, dir := range append(render.OwnedDirs(), path.Dir(render.SysctlPath)) {
		ents, err := afero.ReadDir(in.Root.Fs(), dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			p := dir + "/" + e.Name()
			if keep[p] || e.IsDir() || !ownedPath(p) {
				continue
			}
			data, err := in.Root.ReadFile(p)
			if err != nil || !bytes.Contains(data, []byte(render.Header)) {
				continue // not written by the agent: never removed
			}
			if removed, err := in.Root.Remove(p); err != nil {
				return wrote, err
			} else if removed {
				wrote = true
				r.Change("remove %s (no longer wanted)", p)
			}
		}
	}
	return wrote, nil
}

func ownedPath(p string) bool {
	if p == render.SysctlPath {
		return true
	}
	for _, t := range render.Types {
		if render.Owned(t, p) {
			return true
		}
	}
	return false
}

// ensureSourced makes /etc/network/interfaces source the agent's file,
// creating a loopback-only one when the image has none.
func ensureSourced(root *fsroot.Root) (bool, error) {
	const main = "/etc/network/interfaces"
	data, err := root.ReadFile(main)
	if err != nil {
		if !os.IsNotExist(err) {
			return false, err
		}
		return root.WriteFile(main, render.InterfacesMain(), fsroot.WriteOptions{Mode: 0o644, UID: -1, GID: -1})
	}
	if render.InterfacesSourced(data) {
		return false, nil
	}
	if len(data) > 0 && !bytes.HasSuffix(data, []byte("\n")) {
		data = append(data, '\n')
	}
	return root.WriteFile(main, append(data, []byte(render.SourceLine)...), fsroot.WriteOptions{Mode: 0o644, UID: -1, GID: -1})
}

// reload asks the manager to read its files again: once per run.
func reload(ctx context.Context, r *engine.Recorder, in Input, t render.Type) error {
	var cmd runner.Cmd
	switch t {
	case render.Netplan:
		if netplanBackend(in.Settings, in.Root) == "networkd" && !in.Root.Exists("/run/systemd/netif/state") {
			cmd = runner.Cmd{Name: "netplan", Args: []string{"generate"}}
		} else {
			cmd = runner.Cmd{Name: "netplan", Args: []string{"apply"}}
		}
	case render.Networkd:
		if !in.Root.Exists("/run/systemd/netif/state") {
			r.Note("systemd-networkd is not running; it reads the new files when it starts")
			return nil
		}
		cmd = runner.Cmd{Name: "networkctl", Args: []string{"reload"}}
	case render.NM:
		return reloadNM(ctx, r, in, true, false)
	case render.Interfaces:
		if !ifupdownRan(in.Root) {
			r.Note("ifupdown has not brought anything up yet; networking.service reads the new files when it starts")
			return nil
		}
		if hasTool(in.Root, "ifreload") {
			cmd = runner.Cmd{Name: "ifreload", Args: []string{"-a"}}
		} else {
			cmd = runner.Cmd{Name: "ifup", Args: []string{"-a"}}
		}
	default:
		return nil
	}
	if _, err := in.Run.Run(ctx, cmd); err != nil {
		return fmt.Errorf("reload %s: %w", t, err)
	}
	r.Change("reload %s (%s)", t, cmd)
	return nil
}

// reloadNM asks a running NetworkManager, once per run, to read its
// connections again (conns) and its configuration, the agent's global
// DNS drop-in included, rewriting resolv.conf from it (dns). Only the
// connections' reload failing is an error.
func reloadNM(ctx context.Context, r *engine.Recorder, in Input, conns, dns bool) error {
	if !conns && !dns {
		return nil
	}
	// NetworkManager makes /run/NetworkManager when it starts. Before
	// that (the local stage of a boot runs before it) asking nmcli
	// costs a second under emulation and a D-Bus round trip for nothing.
	if !in.Root.Exists("/run/NetworkManager") {
		r.Note("NetworkManager has not started yet; it reads the new files when it starts")
		return nil
	}
	res, err := in.Run.Run(ctx, runner.Cmd{Name: "nmcli", Args: []string{"-t", "-f", "RUNNING", "general"}})
	if err != nil || strings.TrimSpace(string(res.Stdout)) != "running" {
		r.Note("NetworkManager is not running; it reads the new files when it starts")
		return nil
	}
	if conns {
		cmd := runner.Cmd{Name: "nmcli", Args: []string{"connection", "reload"}}
		if _, err := in.Run.Run(ctx, cmd); err != nil {
			return fmt.Errorf("reload %s: %w", render.NM, err)
		}
		r.Change("reload %s (%s)", render.NM, cmd)
	}
	if dns {
		// conf re-reads NetworkManager.conf and conf.d (the global DNS);
		// dns-rc writes resolv.conf anew. NetworkManager 1.22 and later.
		// A failure is the DNS's problem, as a failed restart of
		// systemd-resolved is: NetworkManager still reads the drop-in
		// when it next starts.
		cmd := runner.Cmd{Name: "nmcli", Args: []string{"general", "reload", "conf,dns-rc"}}
		if _, err := in.Run.Run(ctx, cmd); err != nil {
			r.Problem("DNS", "reload NetworkManager's configuration: %v", err)
		} else {
			r.Change("reload NetworkManager's configuration (%s)", cmd)
		}
	}
	return nil
}

func loadOwned(root *fsroot.Root) (kernel.Owned, error) {
	var o kernel.Owned
	data, err := root.ReadFile(OwnedPath)
	if err != nil {
		if os.IsNotExist(err) {
			return o, nil
		}
		return o, err
	}
	if err := json.Unmarshal(data, &o); err != nil {
		return kernel.Owned{}, fmt.Errorf("%s: %w", OwnedPath, err)
	}
	return o, nil
}

func saveOwned(root *fsroot.Root, o kernel.Owned) error {
	if len(o.Addresses) == 0 && len(o.IPv6Disabled) == 0 && !root.Exists(OwnedPath) {
		return nil
	}
	for _, v := range o.Addresses {
		sort.Strings(v)
	}
	data, err := json.MarshalIndent(o, "", "  ")
	if err != nil {
		return err
	}
	_, err = root.WriteFile(OwnedPath, append(data, '\n'), fsroot.WriteOptions{Mode: 0o600, UID: -1, GID: -1})
	return err
}

// procSysctl writes /proc/sys of the agent's own network namespace.
type procSysctl struct{}

func (procSysctl) Get(key string) (string, error) {
	b, err := os.ReadFile("/proc/sys/" + key)
	return strings.TrimSpace(string(b)), err
}

func (procSysctl) Set(key, value string) error {
	return os.WriteFile("/proc/sys/"+key, []byte(value+"\n"), fs.FileMode(0o644))
}

// ifupdownRan reports whether ifupdown has brought anything up in this
// boot (it keeps its state in /run/network).
func ifupdownRan(r *fsroot.Root) bool {
	m, _ := afero.Glob(r.Fs(), "/run/network/ifstate*")
	return len(m) > 0
}

// Verify reads the kernel back and records, per NIC and variable, what
// differs from the model, without changing anything. The network stage
// runs it once the network is online, after the manager has applied the
// files the local stage wrote.
func Verify(_ context.Context, r *engine.Recorder, in Input) error {
	if noneAsked(in) {
		return errNoneAsked
	}
	nl, sc, done, err := kernelOf(in)
	if err != nil {
		return err
	}
	defer done()
	_, m, _, err := plan(nl, in)
	if err != nil {
		return err
	}
	return recordVerify(r, nl, sc, m)
}

// recordVerify reads the kernel back and records each difference from the
// model as a problem naming its variable.
func recordVerify(r *engine.Recorder, nl kernel.Netlink, sc kernel.Sysctl, m model.Model) error {
	diffs, err := kernel.Verify(nl, sc, m)
	if err != nil {
		return fmt.Errorf("network: verify: %w", err)
	}
	for _, d := range diffs {
		r.Problem(d.Var, "verify: %s", d.Msg)
	}
	if len(diffs) == 0 {
		r.Note("verify: the kernel matches the model for %d NICs", len(m.NICs))
	}
	return nil
}

// plan matches the context's NICs to the kernel's links and builds the
// desired state.
func plan(nl kernel.Netlink, in Input) ([]model.Link, model.Model, []model.Problem, error) {
	links, err := kernel.Links(nl)
	if err != nil {
		return nil, model.Model{}, nil, fmt.Errorf("network: %w", err)
	}
	m, problems := model.Plan(in.Settings, onegateAddr(in.OneGate), links)
	return links, m, problems, nil
}

// kernelOf returns the injected netlink handle and sysctls, or opens a
// handle in the current network namespace (and, on the real root, the
// real sysctls); done closes what was opened.
func kernelOf(in Input) (kernel.Netlink, kernel.Sysctl, func(), error) {
	if in.Netlink != nil {
		return in.Netlink, in.Sysctl, func() {}, nil
	}
	// Route sockets only: a handle for every family would also open XFRM
	// and netfilter sockets, which a kernel without those modules loaded
	// (a cloud kernel at boot) refuses.
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("network: netlink: %w", err)
	}
	sc := in.Sysctl
	if sc == nil && in.Root.IsReal() {
		sc = procSysctl{}
	}
	return h, sc, h.Close, nil
}
