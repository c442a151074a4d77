package kernel_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"one-contextd/internal/netnstest"
	"one-contextd/network/kernel"
	"one-contextd/network/model"
)

// Two NICs with a gateway each and the same (default) metric, for both
// families, and one ETHx_ROUTES destination on both: three runs must
// converge, the third with no change, and no run may take one NIC's route
// away for the other's.
func TestNetnsSameSlotOnTwoNICs(t *testing.T) {
	ns := netnstest.New(t)
	ns.Veth("ens3", "02:00:c0:00:02:0a", "peer0")
	ns.Veth("ens4", "02:00:c6:33:64:14", "peer1")
	ctx := build(t,
		"ETH0_MAC='02:00:c0:00:02:0a'",
		"ETH0_IP='192.0.2.10'",
		"ETH0_GATEWAY='192.0.2.1'",
		"ETH0_IP6='2001:db8:10::a'",
		"ETH0_IP6_GATEWAY='2001:db8:10::1'",
		"ETH0_ROUTES='10.10.0.0/16 via 192.0.2.254'",
		"ETH1_MAC='02:00:c6:33:64:14'",
		"ETH1_IP='203.0.113.20'",
		"ETH1_GATEWAY='203.0.113.1'",
		"ETH1_IP6='2001:db8:20::a'",
		"ETH1_IP6_GATEWAY='2001:db8:20::1'",
		"ETH1_ROUTES='10.10.0.0/16 via 203.0.113.254'",
	)
	proto := model.RouteProtocol
	want0 := []string{
		fmt.Sprintf("0.0.0.0/0 via 192.0.2.1 metric 0 proto %d", proto),
		fmt.Sprintf("10.10.0.0/16 via 192.0.2.254 metric 0 proto %d", proto),
		fmt.Sprintf("::/0 via 2001:db8:10::1 metric 1 proto %d", proto),
	}
	// IPv4 holds a second route to the same destination and metric on
	// another link; IPv6 would merge the two into one multipath route, so
	// the first NIC in context order keeps it and ETH1's is a problem.
	want1 := []string{
		fmt.Sprintf("0.0.0.0/0 via 203.0.113.1 metric 0 proto %d", proto),
		fmt.Sprintf("10.10.0.0/16 via 203.0.113.254 metric 0 proto %d", proto),
	}
	// What the flip-flopping agent left behind: ETH1 holding the IPv6
	// default route, ETH0's taken away.
	if err := ns.Handle.LinkSetUp(ns.Link("ens4")); err != nil {
		t.Fatal(err)
	}
	if err := ns.Handle.RouteAdd(&netlink.Route{LinkIndex: ns.Link("ens4").Attrs().Index, Dst: mustNet("::/0").IPNet, Gw: netip.MustParseAddr("2001:db8:20::1").AsSlice(), Priority: 1, Protocol: model.RouteProtocol, Flags: int(netlink.FLAG_ONLINK)}); err != nil {
		t.Fatal(err)
	}
	owned := kernel.Owned{}
	for run := 1; run <= 3; run++ {
		res, c, m, problems := apply(t, ns, ctx, owned)
		owned = res.Owned
		if len(problems) > 0 {
			t.Fatalf("run %d: plan problems: %v", run, problems)
		}
		var clash []string
		for _, p := range res.Problems {
			if strings.Contains(p.Msg, "did not add") {
				t.Errorf("run %d: false problem about a foreign route: %s", run, p)
			}
			clash = append(clash, p.Var)
		}
		if len(clash) != 1 || clash[0] != "ETH1_IP6_GATEWAY" {
			t.Errorf("run %d: problems %v, want one naming ETH1_IP6_GATEWAY", run, res.Problems)
		}
		t.Logf("run %d: changes %v problems %v", run, res.Changes, res.Problems)
		if run > 1 && (len(res.Changes) != 0 || c.Writes != 0) {
			t.Errorf("run %d: %d changes %v, %d writes; want none", run, len(res.Changes), res.Changes, c.Writes)
		}
		if got := routes(t, ns, "ens3"); !contains(got, want0...) || len(got) != len(want0) {
			t.Errorf("run %d: ens3 routes = %v, want %v", run, got, want0)
		}
		if got := routes(t, ns, "ens4"); !contains(got, want1...) || len(got) != len(want1) {
			t.Errorf("run %d: ens4 routes = %v, want %v", run, got, want1)
		}
		diffs, err := kernel.Verify(ns.Handle, netnstest.Sysctl{NS: ns}, m)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range diffs {
			t.Errorf("run %d: verify: %s", run, d)
		}
	}
}

// onlyNetlink hides the handle's RouteAppend.
type onlyNetlink struct{ kernel.Netlink }

// Without append, the first NIC in context order keeps each place and the
// later NIC's route is one problem naming its variable, run after run.
func TestNetnsSameSlotWithoutAppend(t *testing.T) {
	ns := netnstest.New(t)
	ns.Veth("ens3", "02:00:c0:00:02:0a", "peer0")
	ns.Veth("ens4", "02:00:c6:33:64:14", "peer1")
	ctx := build(t,
		"ETH0_MAC='02:00:c0:00:02:0a'",
		"ETH0_IP='192.0.2.10'",
		"ETH0_GATEWAY='192.0.2.1'",
		"ETH1_MAC='02:00:c6:33:64:14'",
		"ETH1_IP='203.0.113.20'",
		"ETH1_GATEWAY='203.0.113.1'",
	)
	links, err := kernel.Links(ns.Handle)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := model.Plan(ctx.Network, netip.Addr{}, links)
	owned := kernel.Owned{}
	for run := 1; run <= 3; run++ {
		c := &kernel.Counter{NL: onlyNetlink{ns.Handle}}
		res, err := kernel.Apply(c, nil, m, owned)
		if err != nil {
			t.Fatal(err)
		}
		owned = res.Owned
		if len(res.Problems) != 1 || res.Problems[0].Var != "ETH1_GATEWAY" || !strings.Contains(res.Problems[0].Msg, "ETH1_METRIC") {
			t.Errorf("run %d: problems %v, want one naming ETH1_GATEWAY", run, res.Problems)
		}
		if run > 1 && c.Writes != 0 {
			t.Errorf("run %d: %d writes %v; want none", run, c.Writes, res.Changes)
		}
		if got := routes(t, ns, "ens3"); !contains(got, fmt.Sprintf("0.0.0.0/0 via 192.0.2.1 metric 0 proto %d", model.RouteProtocol)) {
			t.Errorf("run %d: ens3 routes = %v", run, got)
		}
		if got := routes(t, ns, "ens4"); len(got) != 0 {
			t.Errorf("run %d: ens4 routes = %v, want none", run, got)
		}
		diffs, err := kernel.Verify(onlyNetlink{ns.Handle}, nil, m)
		if err != nil || len(diffs) != 0 {
			t.Errorf("run %d: verify: %v %v", run, diffs, err)
		}
	}
}
