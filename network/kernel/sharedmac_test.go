package kernel_test

import (
	"fmt"
	"net"
	"testing"

	"github.com/vishvananda/netlink"

	"one-contextd/internal/netnstest"
	"one-contextd/network/kernel"
	"one-contextd/network/model"
)

// A bridge that shares the NIC's MAC (one made after the NIC, so the
// kernel lists it last) must not take the NIC's configuration: every
// renderer matches the ethernet NIC, so the kernel must too, or the same
// address ends up on two links once the manager reloads.
func TestNetnsBridgeSharingTheNICsMAC(t *testing.T) {
	ns := netnstest.New(t)
	const mac = "02:00:c0:00:02:0a"
	ns.Veth("ens3", mac, "peer0")
	hw, _ := net.ParseMAC(mac)
	if err := ns.Handle.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0", HardwareAddr: hw}}); err != nil {
		t.Fatal(err)
	}
	if got := ns.Link("br0").Attrs().HardwareAddr.String(); got != mac {
		t.Fatalf("br0 has MAC %s, want %s", got, mac)
	}
	// An address an older run put on the bridge (it chose the bridge then),
	// recorded as the agent's under the NIC's MAC.
	if err := ns.Handle.AddrAdd(ns.Link("br0"), mustAddr("192.0.2.9/24")); err != nil {
		t.Fatal(err)
	}
	old := kernel.Owned{Addresses: map[string][]string{mac: {"192.0.2.9/24"}}}

	lines := []string{
		"ETH0_MAC='" + mac + "'",
		"ETH0_IP='192.0.2.10'",
		"ETH0_MASK='255.255.255.0'",
		"ETH0_GATEWAY='192.0.2.1'",
	}
	res, _, m, problems := apply(t, ns, build(t, lines...), old)
	if len(problems)+len(res.Problems) > 0 {
		t.Fatalf("problems: %v %v", problems, res.Problems)
	}
	if len(m.NICs) != 1 || m.NICs[0].Dev != "ens3" {
		t.Fatalf("ETH0 is %+v, want ens3", m.NICs)
	}
	if got := addrs(t, ns, "ens3"); len(got) != 1 || got[0] != "192.0.2.10/24" {
		t.Errorf("ens3 addresses = %v, want 192.0.2.10/24", got)
	}
	if got := addrs(t, ns, "br0"); len(got) != 0 {
		t.Errorf("br0 addresses = %v, want none", got)
	}
	if got := routes(t, ns, "ens3"); !contains(got, fmt.Sprintf("0.0.0.0/0 via 192.0.2.1 metric 0 proto %d", model.RouteProtocol)) {
		t.Errorf("ens3 routes = %v", got)
	}
	if got := routes(t, ns, "br0"); len(got) != 0 {
		t.Errorf("br0 routes = %v, want none", got)
	}
	if got := res.Owned.Addresses[mac]; len(got) != 1 || got[0] != "192.0.2.10/24" {
		t.Errorf("owned under %s = %v, want the NIC's address (the bridge's sweep must not drop the record)", mac, got)
	}
	mustNoDiff(t, ns, m)

	// The address changes (to another subnet: with promote_secondaries
	// off, the kernel's default, removing a primary address takes the
	// secondaries of its subnet with it): the NIC's old one goes, because
	// it is still known as the agent's.
	res2, _, _, _ := apply(t, ns, build(t, replace(lines, map[string]string{"ETH0_IP": "198.51.100.20", "ETH0_GATEWAY": "198.51.100.1"})...), res.Owned)
	if len(res2.Problems) > 0 {
		t.Fatalf("problems: %v", res2.Problems)
	}
	if got := addrs(t, ns, "ens3"); len(got) != 1 || got[0] != "198.51.100.20/24" {
		t.Errorf("after the change, ens3 addresses = %v, want 198.51.100.20/24 only", got)
	}
	if got := addrs(t, ns, "br0"); len(got) != 0 {
		t.Errorf("after the change, br0 addresses = %v, want none", got)
	}
}
