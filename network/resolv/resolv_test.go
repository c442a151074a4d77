package resolv

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"one-contextd/fsroot"
	"one-contextd/runner"
)

func tempRoot(t *testing.T) *fsroot.Root {
	t.Helper()
	r, err := fsroot.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func put(t *testing.T, r *fsroot.Root, p, data string) {
	t.Helper()
	h := filepath.Join(r.Dir(), p)
	if err := os.MkdirAll(filepath.Dir(h), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(h, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func link(t *testing.T, r *fsroot.Root, p, target string) {
	t.Helper()
	h := filepath.Join(r.Dir(), p)
	if err := os.MkdirAll(filepath.Dir(h), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, h); err != nil {
		t.Fatal(err)
	}
}

var withDNS = Config{Nameservers: []netip.Addr{netip.MustParseAddr("192.0.2.53")}, Search: []string{"example.org"}}

func apply(t *testing.T, r *fsroot.Root, fake *runner.Fake, live bool, cfg Config) Result {
	t.Helper()
	res, err := Apply(context.Background(), r, fake, live, cfg)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return res
}

// DNS removed from the context leaves systemd-resolved: the agent's
// drop-in goes and resolved is restarted, as when it was written.
func TestNoDNSRemovesTheResolvedDropIn(t *testing.T) {
	r := tempRoot(t)
	link(t, r, ResolvConf, "../run/systemd/resolve/stub-resolv.conf")
	fake := &runner.Fake{}
	if res := apply(t, r, fake, true, withDNS); !res.RestartResolved || !r.Exists(ResolvedDropIn) {
		t.Fatalf("with DNS: %+v", res)
	}
	res := apply(t, r, fake, true, Config{})
	if r.Exists(ResolvedDropIn) {
		t.Error("the agent's drop-in stays after DNS left the context")
	}
	if !res.RestartResolved {
		t.Error("systemd-resolved is not restarted after its drop-in went")
	}
	if len(res.Changes) != 1 || res.Changes[0] != "dns: remove "+ResolvedDropIn+" (no nameservers in the context)" {
		t.Errorf("changes = %v", res.Changes)
	}
	if fi, err := os.Lstat(filepath.Join(r.Dir(), ResolvConf)); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("resolv.conf symlink was touched: %v %v", fi, err)
	}
	// Again: nothing to do.
	if res := apply(t, r, fake, true, Config{}); len(res.Changes) != 0 || res.RestartResolved {
		t.Errorf("second run without DNS: %+v", res)
	}
	if got := fake.Commands(); len(got) != 0 {
		t.Errorf("commands = %v, want none (the caller restarts resolved)", got)
	}

	// A drop-in the agent knows by its header only (the manifest of
	// created files was lost) is its own too.
	r2 := tempRoot(t)
	link(t, r2, ResolvConf, "../run/systemd/resolve/stub-resolv.conf")
	put(t, r2, ResolvedDropIn, string(ResolvedConf(withDNS)))
	if res := apply(t, r2, fake, true, Config{}); r2.Exists(ResolvedDropIn) || !res.RestartResolved {
		t.Errorf("drop-in with the agent's header kept: %+v", res)
	}
}

// A file at the drop-in's path that the agent did not write stays.
func TestNoDNSKeepsAForeignDropIn(t *testing.T) {
	r := tempRoot(t)
	link(t, r, ResolvConf, "../run/systemd/resolve/stub-resolv.conf")
	const mine = "[Resolve]\nDNS=10.0.0.53\n"
	put(t, r, ResolvedDropIn, mine)
	res := apply(t, r, &runner.Fake{}, true, Config{})
	if b, err := os.ReadFile(filepath.Join(r.Dir(), ResolvedDropIn)); err != nil || string(b) != mine {
		t.Errorf("foreign drop-in changed: %q %v", b, err)
	}
	if len(res.Changes) != 0 || res.RestartResolved {
		t.Errorf("result = %+v", res)
	}
}

// With resolvconf, the agent's record is deleted through the runner.
func TestNoDNSDeletesTheResolvconfRecord(t *testing.T) {
	r := tempRoot(t)
	link(t, r, ResolvConf, "../run/resolvconf/resolv.conf")
	fake := &runner.Fake{}
	apply(t, r, fake, true, withDNS)
	if got := fake.Commands(); len(got) != 1 || got[0] != "resolvconf -a "+resolvconfIface {
		t.Fatalf("with DNS: commands = %v", got)
	}
	// resolvconf keeps the record here (the fake does not).
	put(t, r, ResolvconfRecord, string(Plain(withDNS, false)))

	fake = &runner.Fake{}
	res := apply(t, r, fake, true, Config{})
	if got := fake.Commands(); len(got) != 1 || got[0] != "resolvconf -d "+resolvconfIface {
		t.Errorf("without DNS: commands = %v, want resolvconf -d %s", got, resolvconfIface)
	}
	if len(res.Changes) != 1 || res.Changes[0] != "dns: resolvconf -d "+resolvconfIface {
		t.Errorf("changes = %v", res.Changes)
	}

	// Not the running system: nothing is run.
	fake = &runner.Fake{}
	if res := apply(t, r, fake, false, Config{}); len(fake.Calls) != 0 || len(res.Changes) != 0 {
		t.Errorf("offline root: commands %v, changes %v", fake.Commands(), res.Changes)
	}
	// No record: nothing to delete.
	if _, err := r.Remove(ResolvconfRecord); err != nil {
		t.Fatal(err)
	}
	fake = &runner.Fake{}
	if apply(t, r, fake, true, Config{}); len(fake.Calls) != 0 {
		t.Errorf("no record: commands %v", fake.Commands())
	}
}

// A failing resolvconf is an error naming the record.
func TestNoDNSResolvconfFailure(t *testing.T) {
	r := tempRoot(t)
	link(t, r, ResolvConf, "../run/resolvconf/resolv.conf")
	put(t, r, ResolvconfRecord, "nameserver 192.0.2.53\n")
	fake := &runner.Fake{Handler: func(runner.Cmd) (runner.Result, error) { return runner.Result{}, os.ErrPermission }}
	_, err := Apply(context.Background(), r, fake, true, Config{})
	if err == nil || !strings.Contains(err.Error(), "resolvconf -d "+resolvconfIface) {
		t.Errorf("err = %v", err)
	}
}

// A plain resolv.conf the agent wrote stays as it is, as one-context
// leaves resolv.conf alone when the context has no DNS.
func TestNoDNSKeepsAPlainResolvConf(t *testing.T) {
	r := tempRoot(t)
	apply(t, r, &runner.Fake{}, true, withDNS)
	before, err := os.ReadFile(filepath.Join(r.Dir(), ResolvConf))
	if err != nil || !strings.Contains(string(before), "nameserver 192.0.2.53") {
		t.Fatalf("with DNS: %q %v", before, err)
	}
	fake := &runner.Fake{}
	res := apply(t, r, fake, true, Config{})
	after, _ := os.ReadFile(filepath.Join(r.Dir(), ResolvConf))
	if string(after) != string(before) || len(res.Changes) != 0 || len(fake.Calls) != 0 {
		t.Errorf("resolv.conf %q -> %q, changes %v, commands %v", before, after, res.Changes, fake.Commands())
	}
}

var withNMDNS = Config{
	Nameservers: []netip.Addr{netip.MustParseAddr("8.8.8.8"), netip.MustParseAddr("192.0.2.53"), netip.MustParseAddr("2001:db8::53")},
	Search:      []string{"corp.example", "prod.example"},
}

const nmDropIn = header + "[global-dns]\nsearches=corp.example,prod.example\n\n[global-dns-domain-*]\nservers=8.8.8.8,192.0.2.53,2001:db8::53\n"

func read(t *testing.T, r *fsroot.Root, p string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.Dir(), p))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// NetworkManager owns resolv.conf: the nameservers and search domains
// become its global DNS, in the context's order; resolv.conf, which
// NetworkManager writes, is not touched.
func TestNetworkManagerGetsTheGlobalDNS(t *testing.T) {
	for _, rc := range []struct {
		name string
		make func(*testing.T, *fsroot.Root)
	}{
		{"file", func(t *testing.T, r *fsroot.Root) {
			put(t, r, ResolvConf, "# Generated by NetworkManager\nnameserver 10.0.2.3\n")
		}},
		{"symlink", func(t *testing.T, r *fsroot.Root) {
			link(t, r, ResolvConf, "/run/NetworkManager/resolv.conf")
		}},
	} {
		t.Run(rc.name, func(t *testing.T) {
			r := tempRoot(t)
			rc.make(t, r)
			fake := &runner.Fake{}
			res := apply(t, r, fake, true, withNMDNS)
			if res.Owner != NM || !res.ReloadNM || res.RestartResolved {
				t.Fatalf("result = %+v", res)
			}
			if got := read(t, r, NMDropIn); got != nmDropIn {
				t.Errorf("drop-in:\n%s\nwant:\n%s", got, nmDropIn)
			}
			if len(res.Changes) != 1 || res.Changes[0] != "dns: write "+NMDropIn {
				t.Errorf("changes = %v", res.Changes)
			}
			if rc.name == "file" && read(t, r, ResolvConf) != "# Generated by NetworkManager\nnameserver 10.0.2.3\n" {
				t.Error("NetworkManager's resolv.conf was written")
			}
			if len(fake.Calls) != 0 {
				t.Errorf("commands = %v (the caller reloads NetworkManager)", fake.Commands())
			}
			if res := apply(t, r, fake, true, withNMDNS); len(res.Changes) != 0 || res.ReloadNM {
				t.Errorf("second run: %+v", res)
			}
			// No search domain: no searches key, the servers all the same.
			res = apply(t, r, fake, true, Config{Nameservers: withNMDNS.Nameservers})
			if got := read(t, r, NMDropIn); !res.ReloadNM || strings.Contains(got, "searches") || !strings.HasSuffix(got, "[global-dns]\n\n[global-dns-domain-*]\nservers=8.8.8.8,192.0.2.53,2001:db8::53\n") {
				t.Errorf("without search domains: %+v\n%s", res, got)
			}
		})
	}
}

// A plain resolv.conf where NetworkManager manages the network: the agent
// writes the file, and the same servers go to NetworkManager's global
// DNS, since NetworkManager writes the file over when a connection comes
// up. Without NetworkManager only the file is written.
func TestPlainResolvConfUnderNetworkManager(t *testing.T) {
	r := tempRoot(t)
	cfg := withNMDNS
	cfg.NetworkManager = true
	res := apply(t, r, &runner.Fake{}, true, cfg)
	if res.Owner != File || !res.ReloadNM {
		t.Fatalf("result = %+v", res)
	}
	if got := read(t, r, NMDropIn); got != nmDropIn {
		t.Errorf("drop-in:\n%s", got)
	}
	if got := read(t, r, ResolvConf); got != string(Plain(cfg, true)) {
		t.Errorf("resolv.conf:\n%s", got)
	}

	r = tempRoot(t)
	if res := apply(t, r, &runner.Fake{}, true, withNMDNS); res.ReloadNM || r.Exists(NMDropIn) {
		t.Errorf("no NetworkManager: %+v", res)
	}
}

// Where NetworkManager no longer writes resolv.conf (systemd-resolved
// owns it now), the agent's NetworkManager drop-in goes: its global DNS
// would override the connections' DNS that NetworkManager hands to
// resolved. A drop-in the agent did not write stays.
func TestNetworkManagerDropInGoesWhereNMDoesNotOwnResolvConf(t *testing.T) {
	r := tempRoot(t)
	put(t, r, ResolvConf, "# Generated by NetworkManager\n")
	apply(t, r, &runner.Fake{}, true, withNMDNS)
	if err := os.Remove(filepath.Join(r.Dir(), ResolvConf)); err != nil {
		t.Fatal(err)
	}
	link(t, r, ResolvConf, "../run/systemd/resolve/stub-resolv.conf")
	res := apply(t, r, &runner.Fake{}, true, withNMDNS)
	if r.Exists(NMDropIn) || !res.ReloadNM || !res.RestartResolved {
		t.Errorf("result = %+v", res)
	}
	if !slices.Contains(res.Changes, "dns: remove "+NMDropIn+" (resolv.conf is not NetworkManager's)") {
		t.Errorf("changes = %v", res.Changes)
	}

	const mine = "[global-dns-domain-*]\nservers=10.0.0.53\n"
	put(t, r, NMDropIn, mine)
	res = apply(t, r, &runner.Fake{}, true, withNMDNS)
	if read(t, r, NMDropIn) != mine || res.ReloadNM {
		t.Errorf("foreign drop-in: %+v", res)
	}
}

// DNS removed from the context: the agent's NetworkManager drop-in goes
// and NetworkManager is to reload (it falls back to the connections'
// DNS); resolv.conf is left to NetworkManager. A foreign one stays.
func TestNoDNSRemovesTheNetworkManagerDropIn(t *testing.T) {
	r := tempRoot(t)
	put(t, r, ResolvConf, "# Generated by NetworkManager\nnameserver 10.0.2.3\n")
	apply(t, r, &runner.Fake{}, true, withNMDNS)
	fake := &runner.Fake{}
	res := apply(t, r, fake, true, Config{})
	if r.Exists(NMDropIn) || !res.ReloadNM || res.RestartResolved {
		t.Errorf("result = %+v", res)
	}
	if len(res.Changes) != 1 || res.Changes[0] != "dns: remove "+NMDropIn+" (no nameservers in the context)" {
		t.Errorf("changes = %v", res.Changes)
	}
	if res := apply(t, r, fake, true, Config{}); len(res.Changes) != 0 || res.ReloadNM {
		t.Errorf("second run without DNS: %+v", res)
	}
	if len(fake.Calls) != 0 {
		t.Errorf("commands = %v", fake.Commands())
	}

	// Known by its header only (the manifest of created files was lost).
	r2 := tempRoot(t)
	put(t, r2, NMDropIn, string(NMGlobalDNS(withNMDNS)))
	if res := apply(t, r2, fake, true, Config{}); r2.Exists(NMDropIn) || !res.ReloadNM {
		t.Errorf("drop-in with the agent's header kept: %+v", res)
	}
	const mine = "[global-dns-domain-*]\nservers=10.0.0.53\n"
	put(t, r2, NMDropIn, mine)
	if res := apply(t, r2, fake, true, Config{}); read(t, r2, NMDropIn) != mine || res.ReloadNM {
		t.Errorf("foreign drop-in: %+v", res)
	}
}
