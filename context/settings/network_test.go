package settings

import (
	"net/netip"
	"strings"
	"testing"

	"one-contextd/context/shvars"
)

func buildNet(t *testing.T, lines ...string) *Context {
	t.Helper()
	vars, errs := shvars.Parse("context.sh", []byte(strings.Join(lines, "\n")+"\n"))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return Build(vars, Inputs{})
}

func problemVars(c *Context) map[string]bool {
	out := map[string]bool{}
	for _, p := range c.Problems {
		out[p.Var] = true
	}
	return out
}

func TestNetworkDefaultsAndLegacyNames(t *testing.T) {
	c := buildNet(t,
		"ETH0_MAC='02:00:C0:00:02:0A'", // upper case still matches
		"ETH0_IP='192.0.2.10'",         // MASK default 255.255.255.0
		"ETH0_IPV6='2001:db8::10'",     // legacy spelling of IP6
		"ETH0_GATEWAY6='2001:db8::1'",  // legacy spelling of IP6_GATEWAY
		"ETH0_METRIC='7'",              // IP6_METRIC falls back to METRIC
		"ETH1_MAC='02:00:c0:00:02:0b'",
		"ETH1_METHOD='dhcp'", // IP6_METHOD follows METHOD
		"ETH10_MAC='02:00:c0:00:02:0c'",
		"ETH2_MAC='02:00:c0:00:02:0d'",
	)
	if len(c.Problems) > 0 {
		t.Fatalf("problems: %v", c.Problems)
	}
	n := c.Network.NICs
	if len(n) != 4 || n[0].Name != "ETH0" || n[1].Name != "ETH1" || n[2].Name != "ETH10" || n[3].Name != "ETH2" {
		t.Fatalf("NIC order = %v, want lexical ETH0 ETH1 ETH10 ETH2", n)
	}
	e0 := n[0]
	if e0.IPv4.Address != netip.MustParsePrefix("192.0.2.10/24") || e0.IPv4.Method != Static4 {
		t.Errorf("ETH0 IPv4 = %+v", e0.IPv4)
	}
	if e0.IPv6.Address != netip.MustParsePrefix("2001:db8::10/64") || e0.IPv6.Gateway != netip.MustParseAddr("2001:db8::1") {
		t.Errorf("ETH0 IPv6 = %+v (IPV6, prefix 64 and GATEWAY6 expected)", e0.IPv6)
	}
	if e0.IPv6.Metric != (Metric{7, true}) {
		t.Errorf("ETH0 IPv6 metric = %+v, want ETH0_METRIC's 7", e0.IPv6.Metric)
	}
	if n[1].IPv4.Method != DHCP4 || n[1].IPv6.Method != DHCP6 {
		t.Errorf("ETH1 methods = %s/%s, want dhcp/dhcp", n[1].IPv4.Method, n[1].IPv6.Method)
	}
	if !n[3].Skipped() {
		t.Error("ETH2 with no IP and static methods is not skipped")
	}
}

func TestNetworkBadValuesNameTheirVariable(t *testing.T) {
	c := buildNet(t,
		"ETH0_MAC='02:00:c0:00:02:0a'",
		"ETH0_IP='192.0.2.10'",
		"ETH0_GATEWAY='10.0.0.1'",
		"ETH0_MTU='10'",
		"ETH0_ROUTES='10.1.0.0/16 via 192.0.2.254, 10.2.0.0/16 192.0.2.254'",
		"ETH1_MAC='02:00:c0:00:02:0b'",
		"ETH1_IP='192.0.2.300'",
		"ETH2_MAC='02:00:c0:00:02:0c'",
		"ETH2_IP='192.0.2.12'",
		"ETH2_MASK='255.0.255.0'",
		"ETH3_MAC='02:00:c0:00:02:0d'",
		"ETH3_METHOD='dhcp'",
		"ETH3_GATEWAY='192.0.2.1'",
		"PCI0_MAC='02:00:c0:00:02:0e'",
		"PCI0_ADDRESS='0000:00:05.0'",
	)
	got := problemVars(c)
	for _, v := range []string{"ETH0_GATEWAY", "ETH0_MTU", "ETH0_ROUTES", "ETH1_IP", "ETH2_MASK", "ETH3_GATEWAY", "PCI0_MAC"} {
		if !got[v] {
			t.Errorf("no problem names %s: %v", v, c.Problems)
		}
	}
	e0 := c.Network.NICs[0]
	if e0.IPv4.Gateway.IsValid() || e0.MTU != 0 || len(e0.Routes) != 1 || e0.IPv4.Address != netip.MustParsePrefix("192.0.2.10/24") {
		t.Errorf("ETH0 = %+v: want the address and one route kept, the gateway and MTU dropped", e0)
	}
}
