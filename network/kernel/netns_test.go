package kernel_test

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"one-contextd/context/settings"
	"one-contextd/context/shvars"
	"one-contextd/internal/netnstest"
	"one-contextd/network/kernel"
	"one-contextd/network/model"
)

func build(t testing.TB, lines ...string) *settings.Context {
	t.Helper()
	vars, errs := shvars.Parse("context.sh", []byte(strings.Join(lines, "\n")+"\n"))
	if len(errs) > 0 {
		t.Fatalf("parse: %v", errs)
	}
	return settings.Build(vars, settings.Inputs{})
}

// apply plans and applies a context in the namespace, counting requests.
func apply(t testing.TB, ns *netnstest.NS, ctx *settings.Context, owned kernel.Owned) (kernel.Result, *kernel.Counter, model.Model, []model.Problem) {
	t.Helper()
	c := &kernel.Counter{NL: ns.Handle}
	links, err := kernel.Links(c)
	if err != nil {
		t.Fatal(err)
	}
	og, _ := ctx.OneGate.LinkLocalAddr()
	m, problems := model.Plan(ctx.Network, og, links)
	res, err := kernel.Apply(c, netnstest.Sysctl{NS: ns}, m, owned)
	if err != nil {
		t.Fatal(err)
	}
	return res, c, m, problems
}

func addrs(t testing.TB, ns *netnstest.NS, dev string) []string {
	t.Helper()
	list, err := ns.Handle.AddrList(ns.Link(dev), netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range list {
		if a.IP.IsLinkLocalUnicast() {
			continue
		}
		out = append(out, a.IPNet.String())
	}
	sort.Strings(out)
	return out
}

// routes lists a link's main-table routes as "dst via gw metric M proto P".
func routes(t testing.TB, ns *netnstest.NS, dev string) []string {
	t.Helper()
	l := ns.Link(dev)
	list, err := ns.Handle.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{LinkIndex: l.Attrs().Index, Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range list {
		if r.Protocol == unix.RTPROT_KERNEL || (r.Dst != nil && r.Dst.IP.IsLinkLocalUnicast() && r.Dst.IP.To4() == nil) || r.Type != unix.RTN_UNICAST {
			continue // connected routes, fe80::/64, multicast
		}
		s := r.Dst.String()
		if r.Gw != nil {
			s += " via " + r.Gw.String()
		}
		out = append(out, fmt.Sprintf("%s metric %d proto %d", s, r.Priority, r.Protocol))
	}
	sort.Strings(out)
	return out
}

func contains(list []string, want ...string) bool {
	for _, w := range want {
		found := false
		for _, s := range list {
			if s == w {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func mustNoDiff(t testing.TB, ns *netnstest.NS, m model.Model) {
	t.Helper()
	diffs, err := kernel.Verify(ns.Handle, netnstest.Sysctl{NS: ns}, m)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		t.Errorf("verify: %s", d)
	}
}

var twoNICs = []string{
	"ETH0_MAC='02:00:c0:00:02:0a'",
	"ETH0_IP='192.0.2.10'",
	"ETH0_MASK='255.255.255.0'",
	"ETH0_GATEWAY='192.0.2.1'",
	"ETH0_METRIC='100'",
	"ETH0_MTU='1450'",
	"ETH0_IP6='2001:db8:10::a'",
	"ETH0_IP6_ULA='fd00:db8:10::a'",
	"ETH0_IP6_GATEWAY='2001:db8:10::1'",
	"ETH0_IP6_METRIC='50'",
	"ETH0_ALIAS0_MAC='02:00:c0:00:02:0b'",
	"ETH0_ALIAS0_IP='192.0.2.11'",
	"ETH0_ALIAS1_MAC='02:00:c0:00:02:0c'",
	"ETH0_ALIAS1_IP='198.51.100.12'",
	"ETH0_ALIAS1_MASK='255.255.255.128'",
	"ETH0_ALIAS1_IP6='2001:db8:51::12'",
	"ETH1_MAC='02:00:c6:33:64:14'",
	"ETH1_IP='203.0.113.20'",
	"ETH1_GATEWAY='203.0.113.1'",
	"ETH1_METRIC='200'",
	"ETH1_ROUTES='10.10.0.0/16 via 203.0.113.254, 172.16.0.0/12 via 203.0.113.253'",
	"ETH1_IP6_METHOD='disable'",
	"ONEGATE_ENDPOINT='http://169.254.16.9:5030'",
}

func TestNetnsApplyConvergeAndIdempotent(t *testing.T) {
	ns := netnstest.New(t)
	// Kernel names differ from the context's on purpose.
	ns.Veth("ens3", "02:00:c0:00:02:0a", "peer0")
	ns.Veth("enp0s1", "02:00:c6:33:64:14", "peer1")
	ns.Veth("other0", "02:00:00:00:ff:01", "peer2")
	// A NIC the context does not mention, with an address of its own, and a
	// foreign route on a context NIC: both must survive every run.
	if err := ns.Handle.LinkSetUp(ns.Link("other0")); err != nil {
		t.Fatal(err)
	}
	if err := ns.Handle.AddrAdd(ns.Link("other0"), mustAddr("10.99.0.1/24")); err != nil {
		t.Fatal(err)
	}

	ctx := build(t, twoNICs...)
	res, c, m, problems := apply(t, ns, ctx, kernel.Owned{})
	if len(problems)+len(res.Problems) > 0 {
		t.Fatalf("problems: %v %v", problems, res.Problems)
	}
	if len(res.Changes) == 0 || c.Writes == 0 {
		t.Fatalf("first run changed nothing: %v", res.Changes)
	}
	if m.Default4 != "ETH0" {
		t.Errorf("default route owner = %q, want ETH0 (metric 100 < 200)", m.Default4)
	}

	// Read back through netlink.
	if got := addrs(t, ns, "ens3"); !contains(got, "192.0.2.10/24", "192.0.2.11/24", "198.51.100.12/25", "2001:db8:10::a/64", "fd00:db8:10::a/64", "2001:db8:51::12/64") {
		t.Errorf("ens3 addresses = %v", got)
	}
	if got := addrs(t, ns, "enp0s1"); !contains(got, "203.0.113.20/24") || len(got) != 1 {
		t.Errorf("enp0s1 addresses = %v", got)
	}
	if got := ns.Link("ens3").Attrs().MTU; got != 1450 {
		t.Errorf("ens3 mtu = %d, want 1450", got)
	}
	if ns.Link("ens3").Attrs().Flags&1 == 0 {
		t.Error("ens3 is not up")
	}
	proto := model.RouteProtocol
	if got := routes(t, ns, "ens3"); !contains(got,
		fmt.Sprintf("0.0.0.0/0 via 192.0.2.1 metric 100 proto %d", proto),
		fmt.Sprintf("::/0 via 2001:db8:10::1 metric 50 proto %d", proto),
		fmt.Sprintf("169.254.16.9/32 metric 0 proto %d", proto)) {
		t.Errorf("ens3 routes = %v", got)
	}
	if got := routes(t, ns, "enp0s1"); !contains(got,
		fmt.Sprintf("0.0.0.0/0 via 203.0.113.1 metric 200 proto %d", proto),
		fmt.Sprintf("10.10.0.0/16 via 203.0.113.254 metric 0 proto %d", proto),
		fmt.Sprintf("172.16.0.0/12 via 203.0.113.253 metric 0 proto %d", proto)) {
		t.Errorf("enp0s1 routes = %v", got)
	}
	if v, _ := (netnstest.Sysctl{NS: ns}).Get("net/ipv6/conf/enp0s1/disable_ipv6"); v != "1" {
		t.Errorf("enp0s1 disable_ipv6 = %q, want 1", v)
	}
	mustNoDiff(t, ns, m)

	// A foreign route on a context NIC, added after the first run.
	if err := ns.Handle.RouteAdd(&netlink.Route{LinkIndex: ns.Link("ens3").Attrs().Index, Dst: mustNet("10.200.0.0/16").IPNet, Gw: netip.MustParseAddr("192.0.2.254").AsSlice(), Protocol: unix.RTPROT_STATIC}); err != nil {
		t.Fatal(err)
	}

	// The context changes: alias 0 is dropped, the gateway moves to ETH1
	// (ETH0 has none any more), the MTU changes.
	changed := replace(twoNICs, map[string]string{
		"ETH0_ALIAS0_MAC": "", "ETH0_ALIAS0_IP": "",
		"ETH0_GATEWAY": "", "ETH0_METRIC": "",
		"ETH1_METRIC": "10",
		"ETH0_MTU":    "ETH0_MTU='1400'",
	})
	ctx2 := build(t, changed...)
	res2, _, m2, _ := apply(t, ns, ctx2, res.Owned)
	if len(res2.Problems) > 0 {
		t.Fatalf("problems: %v", res2.Problems)
	}
	t.Logf("second context: %v", res2.Changes)
	got := addrs(t, ns, "ens3")
	if contains(got, "192.0.2.11/24") || !contains(got, "192.0.2.10/24", "198.51.100.12/25") {
		t.Errorf("after dropping alias 0, ens3 addresses = %v", got)
	}
	if got := ns.Link("ens3").Attrs().MTU; got != 1400 {
		t.Errorf("ens3 mtu = %d, want 1400", got)
	}
	r0 := routes(t, ns, "ens3")
	for _, r := range r0 {
		if strings.HasPrefix(r, "0.0.0.0/0") {
			t.Errorf("ens3 still has a default route: %s", r)
		}
	}
	if !contains(r0, "10.200.0.0/16 via 192.0.2.254 metric 0 proto 4") {
		t.Errorf("foreign route on ens3 was removed: %v", r0)
	}
	if r1 := routes(t, ns, "enp0s1"); !contains(r1, fmt.Sprintf("0.0.0.0/0 via 203.0.113.1 metric 10 proto %d", proto)) || contains(r1, fmt.Sprintf("0.0.0.0/0 via 203.0.113.1 metric 200 proto %d", proto)) {
		t.Errorf("enp0s1 routes = %v", r1)
	}
	if m2.Default4 != "ETH1" {
		t.Errorf("default route owner = %q, want ETH1", m2.Default4)
	}
	mustNoDiff(t, ns, m2)

	// Same context again: nothing to do, and not one write request.
	res3, c3, _, _ := apply(t, ns, ctx2, res2.Owned)
	if len(res3.Changes) != 0 || c3.Writes != 0 {
		t.Errorf("third run: %d changes %v, %d writes; want 0 changes", len(res3.Changes), res3.Changes, c3.Writes)
	}
	if got := addrs(t, ns, "other0"); !contains(got, "10.99.0.1/24") {
		t.Errorf("the NIC outside the context lost its address: %v", got)
	}
}

func TestNetnsBadInputRestStillConfigured(t *testing.T) {
	ns := netnstest.New(t)
	ns.Veth("ens3", "02:00:c0:00:02:0a", "peer0")
	ns.Veth("ens4", "02:00:c6:33:64:14", "peer1")
	ns.Veth("ens5", "02:00:cb:00:71:05", "peer2")
	ctx := build(t,
		"ETH0_MAC='02:00:c0:00:02:0a'",
		"ETH0_IP='192.0.2.10'",
		"ETH0_GATEWAY='10.0.0.1'", // outside every subnet
		"ETH0_MTU='10'",
		"ETH0_ROUTES='10.1.0.0/16 via 192.0.2.254, nonsense here, 10.2.0.0/16 via 192.0.2.253'",
		"ETH0_ALIAS0_MAC='02:00:c0:00:02:0b'",
		"ETH0_ALIAS0_IP='192.0.2.11'",
		"ETH1_MAC='02:00:c6:33:64:14'",
		"ETH1_IP='198.51.100.300'",
		"ETH1_IP6='2001:db8:1::5'",
		"ETH2_MAC='02:00:00:00:99:99'", // no such link
		"ETH2_IP='192.0.2.99'",
		"ETH3_MAC='02:00:cb:00:71:05'",
		"ETH3_IP='203.0.113.5'",
		"ETH3_MASK='255.0.255.0'",
		"ETH3_ALIAS0_MAC='02:00:cb:00:71:06'",
		"ETH3_ALIAS0_IP='203.0.113.6'",
	)
	res, _, _, problems := apply(t, ns, ctx, kernel.Owned{})
	named := map[string]bool{}
	for _, p := range ctx.Problems {
		named[p.Var] = true
	}
	for _, p := range append(problems, res.Problems...) {
		named[p.Var] = true
	}
	for _, v := range []string{"ETH0_GATEWAY", "ETH0_MTU", "ETH0_ROUTES", "ETH1_IP", "ETH2_MAC", "ETH3_MASK"} {
		if !named[v] {
			t.Errorf("no problem names %s; problems: %v %v %v", v, ctx.Problems, problems, res.Problems)
		}
	}
	if got := addrs(t, ns, "ens3"); !contains(got, "192.0.2.10/24", "192.0.2.11/24") {
		t.Errorf("ens3 addresses = %v", got)
	}
	if got := ns.Link("ens3").Attrs().MTU; got != 1500 {
		t.Errorf("ens3 mtu = %d, want the 1500 it had", got)
	}
	r := routes(t, ns, "ens3")
	if !contains(r, fmt.Sprintf("10.1.0.0/16 via 192.0.2.254 metric 0 proto %d", model.RouteProtocol), fmt.Sprintf("10.2.0.0/16 via 192.0.2.253 metric 0 proto %d", model.RouteProtocol)) {
		t.Errorf("ens3 routes = %v", r)
	}
	for _, s := range r {
		if strings.HasPrefix(s, "0.0.0.0/0") {
			t.Errorf("a default route through an unreachable gateway was added: %s", s)
		}
	}
	if got := addrs(t, ns, "ens4"); !contains(got, "2001:db8:1::5/64") || contains(got, "198.51.100.300/24") {
		t.Errorf("ens4 addresses = %v", got)
	}
	if got := addrs(t, ns, "ens5"); !contains(got, "203.0.113.6/24") || len(got) != 1 {
		t.Errorf("ens5 addresses = %v", got)
	}
}

// replace edits a context: a key mapped to "" drops the variable, to a
// full assignment replaces it; new keys are appended.
func replace(lines []string, edits map[string]string) []string {
	var out []string
	done := map[string]bool{}
	for _, l := range lines {
		k, _, _ := strings.Cut(l, "=")
		if v, ok := edits[k]; ok {
			done[k] = true
			if v != "" && strings.Contains(v, "=") {
				out = append(out, v)
			} else if v != "" {
				out = append(out, k+"='"+v+"'")
			}
			continue
		}
		out = append(out, l)
	}
	for k, v := range edits {
		if !done[k] && v != "" {
			if strings.Contains(v, "=") {
				out = append(out, v)
			} else {
				out = append(out, k+"='"+v+"'")
			}
		}
	}
	return out
}

func mustNet(s string) *netlink.Addr {
	a, err := netlink.ParseAddr(s)
	if err != nil {
		panic(err)
	}
	return a
}

func mustAddr(s string) *netlink.Addr { return mustNet(s) }

func ctxOneGate(ctx *settings.Context) netip.Addr {
	a, _ := ctx.OneGate.LinkLocalAddr()
	return a
}
