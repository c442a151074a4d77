package model

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"one-contextd/context/settings"
	"one-contextd/context/shvars"
)

func plan(t *testing.T, links []Link, lines ...string) (Model, []Problem) {
	t.Helper()
	vars, errs := shvars.Parse("context.sh", []byte(strings.Join(lines, "\n")+"\n"))
	if len(errs) > 0 {
		t.Fatalf("parse: %v", errs)
	}
	return Plan(settings.Build(vars, settings.Inputs{}).Network, netip.Addr{}, links)
}

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// Which link is the NIC when several carry its MAC: the NIC itself (by
// permanent address, then by kind) over a bridge, VLAN or bond; among
// equals, the last one the kernel lists, as one-context's get_dev
// (`ip link` | grep MAC | tail -n1).
func TestPlanLinkSharingTheMAC(t *testing.T) {
	const m = "02:00:c0:00:02:0a"
	ctx := []string{"ETH0_MAC='" + m + "'", "ETH0_IP='192.0.2.10'"}
	for _, tc := range []struct {
		name  string
		links []Link
		want  string
	}{
		{"bridge after the NIC", []Link{{Index: 2, Name: "eth0", MAC: mac(m), Kind: "device"}, {Index: 3, Name: "br0", MAC: mac(m), Kind: "bridge"}}, "eth0"},
		{"bridge before the NIC", []Link{{Index: 2, Name: "br0", MAC: mac(m), Kind: "bridge"}, {Index: 3, Name: "eth0", MAC: mac(m), Kind: "device"}}, "eth0"},
		{"vlan and bond after a veth", []Link{{Index: 2, Name: "ens3", MAC: mac(m), Kind: "veth"}, {Index: 3, Name: "ens3.10", MAC: mac(m), Kind: "vlan"}, {Index: 4, Name: "bond0", MAC: mac(m), Kind: "bond"}}, "ens3"},
		{"permanent address wins", []Link{{Index: 2, Name: "eth0", MAC: mac(m), Kind: "device", PermMAC: mac(m)}, {Index: 3, Name: "eth1", MAC: mac(m), Kind: "device", PermMAC: mac("02:00:00:00:00:01")}}, "eth0"},
		{"only a bridge has it", []Link{{Index: 2, Name: "eth0", MAC: mac("02:00:00:00:00:01"), Kind: "device"}, {Index: 3, Name: "br0", MAC: mac(m), Kind: "bridge"}}, "br0"},
		{"two bridges: the last", []Link{{Index: 3, Name: "br0", MAC: mac(m), Kind: "bridge"}, {Index: 4, Name: "br1", MAC: mac(m), Kind: "bridge"}}, "br1"},
		{"two NICs: the last", []Link{{Index: 2, Name: "eth0", MAC: mac(m), Kind: "device"}, {Index: 3, Name: "eth1", MAC: mac(m), Kind: "device"}}, "eth1"},
	} {
		md, problems := plan(t, tc.links, ctx...)
		if len(problems) > 0 || len(md.NICs) != 1 {
			t.Errorf("%s: problems %v, NICs %+v", tc.name, problems, md.NICs)
			continue
		}
		if got := md.NICs[0].Dev; got != tc.want {
			t.Errorf("%s: ETH0 is %s, want %s", tc.name, got, tc.want)
		}
	}
}
