package render

import (
	"fmt"
	"strings"

	"one-contextd/context/settings"
	"one-contextd/network/model"
)

// NetplanPath is the agent's netplan file.
const NetplanPath = "/etc/netplan/50-one-context.yaml"

// RenderNetplan renders one netplan file for every NIC. NICs are matched by
// MAC, so the file holds no guess of the kernel's names.
func RenderNetplan(m model.Model, o Options) []File {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n", Header)
	b.WriteString("network:\n  version: 2\n")
	if o.NetplanRenderer != "" {
		fmt.Fprintf(&b, "  renderer: %s\n", o.NetplanRenderer)
	}
	if len(m.NICs) == 0 {
		b.WriteString("  ethernets: {}\n")
	} else {
		b.WriteString("  ethernets:\n")
	}
	for _, n := range m.NICs {
		fmt.Fprintf(&b, "    %s:\n", n.Dev)
		fmt.Fprintf(&b, "      match:\n        macaddress: %q\n", n.MAC.String())
		addrs := append(prefixes(n.Addr4), prefixes(n.Addr6)...)
		if len(addrs) > 0 {
			b.WriteString("      addresses:\n")
			for _, a := range addrs {
				fmt.Fprintf(&b, "        - %q\n", a.String())
			}
		}
		fmt.Fprintf(&b, "      dhcp4: %t\n", n.Method4 == settings.DHCP4)
		fmt.Fprintf(&b, "      dhcp6: %t\n", n.Method6 == settings.DHCP6)
		if n.ImplicitRA() {
			// networkd's ConfigureWithoutCarrier=yes (see model.NIC.ImplicitRA).
			b.WriteString("      ignore-carrier: true\n")
		}
		switch {
		case n.Method6 == settings.Auto6 || n.Method6 == settings.DHCP6:
			b.WriteString("      accept-ra: true\n      ipv6-privacy: false\n")
		case n.Method6 == settings.Disable6:
			b.WriteString("      accept-ra: false\n      link-local: []\n")
		case n.Static6():
			b.WriteString("      accept-ra: false\n")
		}
		if n.MTU > 0 {
			fmt.Fprintf(&b, "      mtu: %d\n", n.MTU)
		}
		var routes []string
		if n.Gateway4.Valid() {
			routes = append(routes, fmt.Sprintf("        - to: \"0.0.0.0/0\"\n          via: %q\n          metric: %d\n", n.Gateway4.Via.String(), n.Gateway4.Metric))
		}
		if n.Gateway6.Valid() {
			routes = append(routes, fmt.Sprintf("        - to: \"::/0\"\n          via: %q\n          on-link: true\n          metric: %d\n", n.Gateway6.Via.String(), n.Gateway6.Metric))
		}
		for _, r := range n.Routes {
			routes = append(routes, fmt.Sprintf("        - to: %q\n          via: %q\n", r.Dst.String(), r.Via.String()))
		}
		if n.OneGate.IsValid() {
			routes = append(routes, fmt.Sprintf("        - to: \"%s/32\"\n          scope: link\n", n.OneGate))
		}
		if len(routes) > 0 {
			b.WriteString("      routes:\n" + strings.Join(routes, ""))
		}
		if len(n.DNS) > 0 || len(n.Search) > 0 {
			b.WriteString("      nameservers:\n")
			if len(n.DNS) > 0 {
				fmt.Fprintf(&b, "        addresses: [%s]\n", quoteJoin(addrStrings(n.DNS)))
			}
			if len(n.Search) > 0 {
				fmt.Fprintf(&b, "        search: [%s]\n", quoteJoin(n.Search))
			}
		}
	}
	return []File{{Path: NetplanPath, Data: []byte(b.String()), Mode: 0o600}}
}

func quoteJoin(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}
