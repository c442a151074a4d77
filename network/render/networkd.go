package render

import (
	"fmt"
	"strings"

	"one-contextd/context/settings"
	"one-contextd/network/model"
)

// NetworkdDir holds systemd-networkd's administrator units.
const NetworkdDir = "/etc/systemd/network"

// networkdPrefix sorts the agent's units before a distribution's
// <dev>.network, so networkd (first matching file wins) uses the agent's.
const networkdPrefix = "10-one-context-"

// NetworkdPath is the unit of one device.
func NetworkdPath(dev string) string { return NetworkdDir + "/" + networkdPrefix + dev + ".network" }

// RenderNetworkd renders one .network unit per NIC, matched by MAC.
func RenderNetworkd(m model.Model) []File {
	var out []File
	for _, n := range m.NICs {
		var b strings.Builder
		fmt.Fprintf(&b, "# %s\n", Header)
		fmt.Fprintf(&b, "[Match]\nMACAddress=%s\n# Not a VLAN, bond or bridge that shares the MAC.\nType=ether\n", n.MAC)
		if n.MTU > 0 {
			fmt.Fprintf(&b, "\n[Link]\nMTUBytes=%d\n", n.MTU)
		}
		b.WriteString("\n[Network]\n")
		dhcp := "no"
		switch {
		case n.Method4 == settings.DHCP4 && n.Method6 == settings.DHCP6:
			dhcp = "yes"
		case n.Method4 == settings.DHCP4:
			dhcp = "ipv4"
		case n.Method6 == settings.DHCP6:
			dhcp = "ipv6"
		}
		fmt.Fprintf(&b, "DHCP=%s\n", dhcp)
		if n.ImplicitRA() {
			b.WriteString("# Static: configured at once, not after the router solicitation times out.\nConfigureWithoutCarrier=yes\n")
		}
		for _, a := range n.Addr4 {
			fmt.Fprintf(&b, "Address=%s\n", a.Prefix)
		}
		for _, a := range n.Addr6 {
			fmt.Fprintf(&b, "Address=%s\n", a.Prefix)
		}
		switch {
		case n.Method6 == settings.Auto6 || n.Method6 == settings.DHCP6:
			b.WriteString("IPv6AcceptRA=yes\nIPv6PrivacyExtensions=no\n")
		case n.Method6 == settings.Disable6:
			b.WriteString("LinkLocalAddressing=no\nIPv6AcceptRA=no\n")
		case n.Static6():
			b.WriteString("IPv6AcceptRA=no\n")
		}
		if len(n.DNS) > 0 {
			fmt.Fprintf(&b, "DNS=%s\n", strings.Join(addrStrings(n.DNS), " "))
		}
		if len(n.Search) > 0 {
			fmt.Fprintf(&b, "Domains=%s\n", strings.Join(n.Search, " "))
		}
		if n.Gateway4.Valid() {
			fmt.Fprintf(&b, "\n[Route]\nGateway=%s\nMetric=%d\n", n.Gateway4.Via, n.Gateway4.Metric)
		}
		if n.Gateway6.Valid() {
			fmt.Fprintf(&b, "\n[Route]\nGateway=%s\nGatewayOnLink=yes\nMetric=%d\n", n.Gateway6.Via, n.Gateway6.Metric)
		}
		for _, r := range n.Routes {
			fmt.Fprintf(&b, "\n[Route]\nDestination=%s\nGateway=%s\n", r.Dst, r.Via)
		}
		if n.OneGate.IsValid() {
			fmt.Fprintf(&b, "\n[Route]\nDestination=%s/32\nScope=link\n", n.OneGate)
		}
		if n.Method6 == settings.Auto6 {
			b.WriteString("\n[IPv6AcceptRA]\nDHCPv6Client=no\n")
		}
		out = append(out, File{Path: NetworkdPath(n.Dev), Data: []byte(b.String()), Mode: 0o644})
	}
	return sortedFiles(out)
}
