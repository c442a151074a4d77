package kernel_test

import (
	"fmt"
	"testing"

	"one-contextd/internal/netnstest"
	"one-contextd/network/kernel"
	"one-contextd/network/model"
)

// The address moves inside its subnet (a reconfigure with a new IP from
// the same network). With promote_secondaries off (the kernel's default,
// which a namespace starts with), removing the old primary address takes
// the new one, a secondary of the same subnet, and the routes through it
// with it: the run must still end with the new address and its routes.
func TestNetnsAddressMovesWithinItsSubnet(t *testing.T) {
	ns := netnstest.New(t)
	const mac = "02:00:c0:00:02:0b"
	ns.Veth("ens3", mac, "peer0")
	lines := []string{
		"ETH0_MAC='" + mac + "'",
		"ETH0_IP='192.0.2.10'",
		"ETH0_MASK='255.255.255.0'",
		"ETH0_GATEWAY='192.0.2.1'",
		"ETH0_ROUTES='198.51.100.0/24 via 192.0.2.254'",
	}
	res, _, _, problems := apply(t, ns, build(t, lines...), kernel.Owned{})
	if len(problems)+len(res.Problems) > 0 {
		t.Fatalf("problems: %v %v", problems, res.Problems)
	}
	res2, _, m, problems := apply(t, ns, build(t, replace(lines, map[string]string{"ETH0_IP": "192.0.2.20"})...), res.Owned)
	if len(problems)+len(res2.Problems) > 0 {
		t.Fatalf("problems: %v %v", problems, res2.Problems)
	}
	if got := addrs(t, ns, "ens3"); len(got) != 1 || got[0] != "192.0.2.20/24" {
		t.Errorf("ens3 addresses = %v, want 192.0.2.20/24 only", got)
	}
	got := routes(t, ns, "ens3")
	for _, want := range []string{
		fmt.Sprintf("0.0.0.0/0 via 192.0.2.1 metric 0 proto %d", model.RouteProtocol),
		fmt.Sprintf("198.51.100.0/24 via 192.0.2.254 metric 0 proto %d", model.RouteProtocol),
	} {
		if !contains(got, want) {
			t.Errorf("ens3 routes = %v, want %s", got, want)
		}
	}
	mustNoDiff(t, ns, m)
	// And a run after it changes nothing.
	res3, _, _, _ := apply(t, ns, build(t, replace(lines, map[string]string{"ETH0_IP": "192.0.2.20"})...), res2.Owned)
	if len(res3.Changes) != 0 {
		t.Errorf("third run changed %v", res3.Changes)
	}
}
