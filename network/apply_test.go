package network

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"one-contextd/context/settings"
	"one-contextd/context/shvars"
	"one-contextd/engine"
	"one-contextd/fsroot"
	"one-contextd/internal/netnstest"
	"one-contextd/network/render"
	"one-contextd/runner"

	"github.com/vishvananda/netlink"
)

func buildCtx(t testing.TB, lines ...string) *settings.Context {
	t.Helper()
	vars, errs := shvars.Parse("context.sh", []byte(strings.Join(lines, "\n")+"\n"))
	if len(errs) > 0 {
		t.Fatalf("parse: %v", errs)
	}
	return settings.Build(vars, settings.Inputs{})
}

// imageRoot is a temporary root that looks like a Debian 12 image with the
// named tools installed.
func imageRoot(t testing.TB, tools ...string) *fsroot.Root {
	t.Helper()
	dir := t.TempDir()
	for _, tool := range tools {
		p := filepath.Join(dir, "usr/sbin", tool)
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	_ = os.MkdirAll(filepath.Join(dir, "etc"), 0o755)
	_ = os.WriteFile(filepath.Join(dir, "etc/os-release"), []byte("ID=debian\nVERSION_ID=\"12\"\n"), 0o644)
	r, err := fsroot.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func runApply(t testing.TB, ns *netnstest.NS, root *fsroot.Root, fake *runner.Fake, ctx *settings.Context) *engine.StepRecord {
	t.Helper()
	rec, sr := engine.NewTestRecorder()
	err := Apply(context.Background(), rec, Input{
		Settings: ctx.Network, OneGate: ctx.OneGate, Root: root, Run: fake,
		Netlink: ns.Handle, Sysctl: netnstest.Sysctl{NS: ns}, ReloadAnyRoot: true,
	})
	if err != nil {
		t.Fatalf("Apply: %v (record %+v)", err, sr)
	}
	return sr
}

func TestNetnsApplyEndToEnd(t *testing.T) {
	ns := netnstest.New(t)
	ns.Veth("ens3", "02:00:c0:00:02:46", "p0")
	ns.Veth("ens4", "02:00:c6:33:64:46", "p1")
	root := imageRoot(t, "networkctl")
	// A distribution's own unit for the same link, and a stub symlink as
	// systemd-resolved has it: both must be left as they are.
	host := root.Dir()
	_ = os.MkdirAll(filepath.Join(host, "etc/systemd/network"), 0o755)
	distro := filepath.Join(host, "etc/systemd/network/ens3.network")
	_ = os.WriteFile(distro, []byte("[Match]\nName=ens3\n[Network]\nDHCP=yes\n"), 0o644)
	if err := os.Symlink("../run/systemd/resolve/stub-resolv.conf", filepath.Join(host, "etc/resolv.conf")); err != nil {
		t.Fatal(err)
	}
	_ = os.MkdirAll(filepath.Join(host, "run/systemd/netif"), 0o755)
	_ = os.WriteFile(filepath.Join(host, "run/systemd/netif/state"), nil, 0o644) // networkd runs

	vector, err := os.ReadFile(filepath.Join(repoRoot(t), "..", "shared", "vectors", "contexts", "07-mtu-dns-search.context.sh"))
	if err != nil {
		t.Skipf("shared vector missing: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(vector)), "\n")
	ctx := buildCtx(t, append(lines, "NETCFG_TYPE='networkd'")...)
	fake := &runner.Fake{}
	sr := runApply(t, ns, root, fake, ctx)
	if len(sr.Problems) > 0 {
		t.Fatalf("problems: %v", sr.Problems)
	}
	for _, want := range []string{"write /etc/systemd/network/10-one-context-ens3.network", "write /etc/systemd/network/10-one-context-ens4.network", "ens3: mtu 1450 (was 1500)", "ens4: mtu 9000 (was 1500)", "dns: write " + "/etc/systemd/resolved.conf.d/one-context.conf", "reload networkd (networkctl reload)"} {
		if !hasLine(sr.Changes, want) {
			t.Errorf("change %q missing from %v", want, sr.Changes)
		}
	}
	if got := fake.Commands(); len(got) != 2 || got[1] != "networkctl reload" {
		t.Errorf("commands = %v, want the resolved reload and one networkctl reload", got)
	}
	if b, _ := os.ReadFile(distro); !strings.Contains(string(b), "DHCP=yes") {
		t.Error("the distribution's unit was changed")
	}
	if fi, err := os.Lstat(filepath.Join(host, "etc/resolv.conf")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("resolv.conf symlink was replaced: %v %v", fi, err)
	}
	dropIn, _ := os.ReadFile(filepath.Join(host, "etc/systemd/resolved.conf.d/one-context.conf"))
	if !strings.Contains(string(dropIn), "DNS=203.0.113.53 192.0.2.53 198.51.100.53\nDomains=corp.example.org prod.example.org example.org storage.example.org\n") {
		t.Errorf("resolved drop-in:\n%s", dropIn)
	}
	if !hasPrefix(sr.Notes, "verify: the kernel matches the model for 2 NICs") {
		t.Errorf("no clean verification in notes %v", sr.Notes)
	}

	// The same context again: zero changes, no command run.
	fake2 := &runner.Fake{}
	sr2 := runApply(t, ns, root, fake2, ctx)
	if len(sr2.Changes) != 0 || len(fake2.Calls) != 0 {
		t.Errorf("second run: %d changes %v, commands %v; want 0 changes", len(sr2.Changes), sr2.Changes, fake2.Commands())
	}

	// ETH1 is detached: its unit goes, ETH0's stays, the kernel keeps the
	// NIC the context no longer mentions as it is (apart from what the
	// agent itself added there).
	var eth0Only []string
	for _, l := range lines {
		if !strings.HasPrefix(l, "ETH1_") {
			eth0Only = append(eth0Only, l)
		}
	}
	sr3 := runApply(t, ns, root, &runner.Fake{}, buildCtx(t, append(eth0Only, "NETCFG_TYPE='networkd'")...))
	if !hasLine(sr3.Changes, "remove /etc/systemd/network/10-one-context-ens4.network (no longer wanted)") {
		t.Errorf("stale unit not removed: %v", sr3.Changes)
	}
	if _, err := os.Stat(filepath.Join(host, render.NetworkdPath("ens3"))); err != nil {
		t.Errorf("ETH0's unit is gone: %v", err)
	}
	if !hasLine(sr3.Changes, "ens4: remove address 198.51.100.70/24") {
		t.Errorf("the agent's own address on the detached NIC stays: %v", sr3.Changes)
	}
}

func TestNetnsApplyPlainResolvConfAndInterfaces(t *testing.T) {
	ns := netnstest.New(t)
	ns.Veth("ens3", "02:00:c0:00:02:0a", "p0")
	root := imageRoot(t) // no netplan, networkctl or nmcli: interfaces
	host := root.Dir()
	_ = os.WriteFile(filepath.Join(host, "etc/resolv.conf"), []byte("nameserver 10.0.0.1\n"), 0o644)
	_ = os.MkdirAll(filepath.Join(host, "etc/network"), 0o755)
	_ = os.WriteFile(filepath.Join(host, "etc/network/interfaces"), []byte("auto lo\niface lo inet loopback\n"), 0o644)
	vector, err := os.ReadFile(filepath.Join(repoRoot(t), "..", "shared", "vectors", "contexts", "01-single-static-nic.context.sh"))
	if err != nil {
		t.Skipf("shared vector missing: %v", err)
	}
	ctx := buildCtx(t, strings.Split(strings.TrimSpace(string(vector)), "\n")...)
	fake := &runner.Fake{}
	sr := runApply(t, ns, root, fake, ctx)
	if !hasPrefix(sr.Notes, "netcfg: candidates=netplan,networkd,interfaces,nm from=os-release:debian12 netplan=absent networkd=absent interfaces=present") {
		t.Errorf("selection trace: %v", sr.Notes)
	}
	rc, _ := os.ReadFile(filepath.Join(host, "etc/resolv.conf"))
	if !strings.Contains(string(rc), "nameserver 192.0.2.53\n") || strings.Contains(string(rc), "10.0.0.1") {
		t.Errorf("resolv.conf:\n%s", rc)
	}
	if _, err := os.Stat(filepath.Join(host, "etc/resolv.conf"+fsroot.BackupSuffix)); err != nil {
		t.Errorf("the image's resolv.conf was not backed up: %v", err)
	}
	main, _ := os.ReadFile(filepath.Join(host, "etc/network/interfaces"))
	if !render.InterfacesSourced(main) || !strings.HasPrefix(string(main), "auto lo\n") {
		t.Errorf("/etc/network/interfaces:\n%s", main)
	}
	// ifupdown has brought nothing up yet (the local stage runs before
	// networking.service): it reads the files when it starts, no reload.
	if got := fake.Commands(); len(got) != 0 {
		t.Errorf("commands before ifupdown ran = %v", got)
	}
	// Once it has run, a changed file reloads it.
	_ = os.MkdirAll(filepath.Join(host, "run/network"), 0o755)
	_ = os.WriteFile(filepath.Join(host, "run/network/ifstate.ens3"), []byte("ens3=ens3\n"), 0o644)
	fake = &runner.Fake{}
	runApply(t, ns, root, fake, buildCtx(t, append(strings.Split(strings.TrimSpace(string(vector)), "\n"), "ETH0_MTU='1400'")...))
	if got := fake.Commands(); len(got) != 1 || got[0] != "ifup -a" {
		t.Errorf("commands after ifupdown ran = %v", got)
	}
	runApply(t, ns, root, &runner.Fake{}, ctx) // back to the vector
	sr2 := runApply(t, ns, root, &runner.Fake{}, ctx)
	if len(sr2.Changes) != 0 {
		t.Errorf("second run changed: %v", sr2.Changes)
	}
}

func hasLine(list []string, want string) bool {
	for _, s := range list {
		if s == want {
			return true
		}
	}
	return false
}

func hasPrefix(list []string, want string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, want) {
			return true
		}
	}
	return false
}

// Before NetworkManager has started (the local stage of a boot), the agent
// writes its keyfile and asks no tool: nmcli would cost a second under
// emulation and a D-Bus call. Once NetworkManager runs, it is asked and,
// running, told to reload.
func TestNetnsApplyNetworkManagerReload(t *testing.T) {
	ns := netnstest.New(t)
	ns.Veth("ens3", "02:00:c0:00:02:0a", "p0")
	root := imageRoot(t, "nmcli")
	host := root.Dir()
	lines := []string{"ETH0_MAC='02:00:c0:00:02:0a'", "ETH0_IP='192.0.2.10'", "ETH0_MASK='255.255.255.0'", "NETCFG_TYPE='nm'"}
	fake := &runner.Fake{}
	sr := runApply(t, ns, root, fake, buildCtx(t, lines...))
	if got := fake.Commands(); len(got) != 0 {
		t.Errorf("commands before NetworkManager started = %v", got)
	}
	if !hasPrefix(sr.Notes, "NetworkManager has not started yet") {
		t.Errorf("notes: %v", sr.Notes)
	}
	if _, err := os.Stat(filepath.Join(host, render.NMPath("ens3"))); err != nil {
		t.Errorf("keyfile not written: %v", err)
	}

	_ = os.MkdirAll(filepath.Join(host, "run/NetworkManager"), 0o755)
	fake = &runner.Fake{Handler: func(c runner.Cmd) (runner.Result, error) {
		if c.String() == "nmcli -t -f RUNNING general" {
			return runner.Result{Stdout: []byte("running\n")}, nil
		}
		return runner.Result{}, nil
	}}
	runApply(t, ns, root, fake, buildCtx(t, append(lines, "ETH0_MTU='1400'")...))
	want := []string{"nmcli -t -f RUNNING general", "nmcli connection reload"}
	if got := fake.Commands(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("commands once NetworkManager runs = %v, want %v", got, want)
	}
}

// NETCFG_TYPE=none (or --netcfg none) leaves the network alone, as
// one-context does: no file, no kernel change, no resolv.conf; the step
// never reaches the kernel (no Netlink is given here).
func TestNoneAskedLeavesTheNetworkAlone(t *testing.T) {
	for _, tc := range []struct{ variable, flag string }{{"NETCFG_TYPE='none'", ""}, {"", "none"}, {"NETCFG_TYPE='netplan'", "none"}} {
		root := imageRoot(t, "networkctl", "netplan")
		ctx := buildCtx(t, "ETH0_MAC='02:00:c0:00:02:46'", "ETH0_IP='192.0.2.70'", "ETH0_DNS='192.0.2.53'", tc.variable)
		for _, step := range []func(context.Context, *engine.Recorder, Input) error{Apply, Verify} {
			rec, _ := engine.NewTestRecorder()
			err := step(context.Background(), rec, Input{Settings: ctx.Network, Root: root, Run: &runner.Fake{}, NetcfgType: tc.flag})
			if !errors.Is(err, engine.ErrSkip) || !strings.Contains(err.Error(), "NETCFG_TYPE is none") {
				t.Errorf("%q --netcfg %q: err = %v, want the none skip", tc.variable, tc.flag, err)
			}
		}
		for _, p := range []string{"etc/resolv.conf", "etc/netplan", "etc/systemd/network"} {
			if _, err := os.Lstat(filepath.Join(root.Dir(), p)); err == nil {
				t.Errorf("%q --netcfg %q: %s written", tc.variable, tc.flag, p)
			}
		}
	}
}

// A NIC whose IPv6 the context disabled and now gives a static address:
// the kernel takes the address in the same run (one-context leaves
// disable_ipv6 at 1 until a reboot, and the address is refused), and the
// persisted sysctls no longer name the link.
func TestNetnsIPv6EnabledAgainAfterDisable(t *testing.T) {
	ns := netnstest.New(t)
	ns.Veth("ens3", "02:00:c0:00:02:0b", "p0")
	root := imageRoot(t, "networkctl")
	_ = os.MkdirAll(filepath.Join(root.Dir(), "run/systemd/netif"), 0o755)
	_ = os.WriteFile(filepath.Join(root.Dir(), "run/systemd/netif/state"), nil, 0o644)
	sc := netnstest.Sysctl{NS: ns}
	base := []string{"ETH0_MAC='02:00:c0:00:02:0b'", "ETH0_IP='192.0.2.11'", "ETH0_MASK='255.255.255.0'"}

	runApply(t, ns, root, &runner.Fake{}, buildCtx(t, append(base, "ETH0_IP6_METHOD='disable'")...))
	if v, _ := sc.Get("net/ipv6/conf/ens3/disable_ipv6"); v != "1" {
		t.Fatalf("after disable: disable_ipv6 = %q, want 1", v)
	}
	persisted, _ := root.ReadFile(render.SysctlPath)
	if !strings.Contains(string(persisted), "net.ipv6.conf.ens3.disable_ipv6 = 1") {
		t.Fatalf("persisted sysctls:\n%s", persisted)
	}

	sr := runApply(t, ns, root, &runner.Fake{}, buildCtx(t, append(base, "ETH0_IP6='2001:db8:1::b'", "ETH0_IP6_PREFIX_LENGTH='64'")...))
	if len(sr.Problems) > 0 {
		t.Errorf("problems: %v", sr.Problems)
	}
	for _, leaf := range []string{"disable_ipv6", "autoconf", "accept_ra"} {
		def, _ := sc.Get("net/ipv6/conf/default/" + leaf)
		if v, _ := sc.Get("net/ipv6/conf/ens3/" + leaf); v != def {
			t.Errorf("%s = %q, want the default %q", leaf, v, def)
		}
	}
	if !hasLine(sr.Changes, "sysctl net.ipv6.conf.ens3.disable_ipv6 = 0 (was 1)") {
		t.Errorf("changes: %v", sr.Changes)
	}
	if got := addrs(ns, "ens3"); !slices.Contains(got, "2001:db8:1::b/64") {
		t.Errorf("ens3 addresses = %v, want 2001:db8:1::b/64", got)
	}
	if _, err := root.ReadFile(render.SysctlPath); err == nil {
		t.Errorf("%s still there with no NIC disabled", render.SysctlPath)
	}
	// Converged: the next run changes nothing.
	if sr := runApply(t, ns, root, &runner.Fake{}, buildCtx(t, append(base, "ETH0_IP6='2001:db8:1::b'", "ETH0_IP6_PREFIX_LENGTH='64'")...)); len(sr.Changes) != 0 {
		t.Errorf("third run changed: %v", sr.Changes)
	}
}

func addrs(ns *netnstest.NS, dev string) []string {
	list, _ := ns.Handle.AddrList(ns.Link(dev), netlink.FAMILY_ALL)
	var out []string
	for _, a := range list {
		out = append(out, a.IPNet.String())
	}
	return out
}

func TestDisabled6ReadsBothSpellings(t *testing.T) {
	root := imageRoot(t)
	_ = os.MkdirAll(filepath.Join(root.Dir(), "etc/sysctl.d"), 0o755)
	_ = os.WriteFile(filepath.Join(root.Dir(), render.SysctlPath), []byte("# header\nnet.ipv6.conf.ens3.disable_ipv6 = 1\nnet.ipv6.conf.ens3.autoconf = 0\nnet/ipv6/conf/eth0.100/disable_ipv6 = 1\nnet.ipv6.conf.ens4.disable_ipv6 = 0\n"), 0o644)
	if got := disabled6(root); !slices.Equal(got, []string{"ens3", "eth0.100"}) {
		t.Errorf("disabled6 = %v, want [ens3 eth0.100]", got)
	}
	if got := render.SysctlName("net/ipv6/conf/eth0.100/disable_ipv6"); got != "net/ipv6/conf/eth0.100/disable_ipv6" {
		t.Errorf("SysctlName(dotted link) = %q", got)
	}
	if got := render.SysctlName("net/ipv6/conf/ens3/disable_ipv6"); got != "net.ipv6.conf.ens3.disable_ipv6" {
		t.Errorf("SysctlName = %q", got)
	}
}

// The same after a reboot under ifupdown: systemd-sysctl disabled the link
// again from the old file before the agent ran, the local stage (ifupdown
// not run yet) removed that file and left the kernel alone, and the
// network stage still knows, from the agent's record, to enable it.
func TestNetnsIPv6EnabledAgainAfterRebootUnderIfupdown(t *testing.T) {
	ns := netnstest.New(t)
	ns.Veth("ens3", "02:00:c0:00:02:0c", "p0")
	root := imageRoot(t) // interfaces
	host := root.Dir()
	_ = os.MkdirAll(filepath.Join(host, "etc/network"), 0o755)
	_ = os.WriteFile(filepath.Join(host, "etc/network/interfaces"), []byte("auto lo\niface lo inet loopback\n"), 0o644)
	ran := filepath.Join(host, "run/network/ifstate.ens3")
	_ = os.MkdirAll(filepath.Dir(ran), 0o755)
	_ = os.WriteFile(ran, []byte("ens3=ens3\n"), 0o644)
	sc := netnstest.Sysctl{NS: ns}
	base := []string{"ETH0_MAC='02:00:c0:00:02:0c'", "ETH0_IP='192.0.2.12'", "ETH0_MASK='255.255.255.0'"}
	static6 := append(base, "ETH0_IP6='2001:db8:1::c'", "ETH0_IP6_PREFIX_LENGTH='64'")

	runApply(t, ns, root, &runner.Fake{}, buildCtx(t, append(base, "ETH0_IP6_METHOD='disable'")...))
	// Reboot: /run is empty, systemd-sysctl applies the persisted file.
	_ = os.RemoveAll(filepath.Join(host, "run/network"))
	for _, leaf := range []string{"disable_ipv6", "autoconf", "accept_ra"} {
		v := map[string]string{"disable_ipv6": "1", "autoconf": "0", "accept_ra": "0"}[leaf]
		if err := sc.Set("net/ipv6/conf/ens3/"+leaf, v); err != nil {
			t.Fatal(err)
		}
	}
	runApply(t, ns, root, &runner.Fake{}, buildCtx(t, static6...)) // local stage
	if _, err := root.ReadFile(render.SysctlPath); err == nil {
		t.Fatalf("%s still there after the local stage", render.SysctlPath)
	}
	_ = os.MkdirAll(filepath.Dir(ran), 0o755)
	_ = os.WriteFile(ran, []byte("ens3=ens3\n"), 0o644)                  // networking.service ran
	sr := runApply(t, ns, root, &runner.Fake{}, buildCtx(t, static6...)) // network stage
	if v, _ := sc.Get("net/ipv6/conf/ens3/disable_ipv6"); v != "0" {
		t.Errorf("disable_ipv6 = %q after the network stage, want 0 (changes %v, problems %v)", v, sr.Changes, sr.Problems)
	}
	if got := addrs(ns, "ens3"); !slices.Contains(got, "2001:db8:1::c/64") {
		t.Errorf("ens3 addresses = %v, want 2001:db8:1::c/64", got)
	}
	// The record forgets the link once it is enabled: a later manual
	// disable by the administrator is left alone.
	if err := sc.Set("net/ipv6/conf/ens3/disable_ipv6", "1"); err != nil {
		t.Fatal(err)
	}
	runApply(t, ns, root, &runner.Fake{}, buildCtx(t, static6...))
	if v, _ := sc.Get("net/ipv6/conf/ens3/disable_ipv6"); v != "1" {
		t.Errorf("the administrator's disable_ipv6 = 1 was undone (now %q)", v)
	}
}
