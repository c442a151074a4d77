package render

import (
	"crypto/sha1"
	"fmt"
	"strings"

	"one-contextd/context/settings"
	"one-contextd/network/model"
)

// NMDir holds NetworkManager's keyfiles.
const NMDir = "/etc/NetworkManager/system-connections"

const nmPrefix = "one-context-"

// NMPath is the keyfile of one device.
func NMPath(dev string) string { return NMDir + "/" + nmPrefix + dev + ".nmconnection" }

// NMID is the connection name of one device.
func NMID(dev string) string { return nmPrefix + dev }

// RenderNM renders one keyfile per NIC, bound to the NIC's MAC. An
// address NetworkManager cannot take with the NIC's method is left out of
// the keyfile, as a problem naming its variable: NetworkManager refuses a
// whole keyfile with one such address, IPv4 included.
func RenderNM(m model.Model) ([]File, []model.Problem) {
	var out []File
	var problems []model.Problem
	for _, n := range m.NICs {
		var b strings.Builder
		fmt.Fprintf(&b, "# %s\n", Header)
		fmt.Fprintf(&b, "[connection]\nid=%s\nuuid=%s\ntype=ethernet\nautoconnect=true\nautoconnect-priority=10\n", NMID(n.Dev), nmUUID(n.MAC.String()))
		fmt.Fprintf(&b, "\n[ethernet]\nmac-address=%s\n", strings.ToUpper(n.MAC.String()))
		if n.MTU > 0 {
			fmt.Fprintf(&b, "mtu=%d\n", n.MTU)
		}

		b.WriteString("\n[ipv4]\n")
		switch {
		case n.Static4():
			b.WriteString("method=manual\n")
			for i, a := range n.Addr4 {
				fmt.Fprintf(&b, "address%d=%s\n", i+1, a.Prefix)
			}
			if n.Gateway4.Valid() {
				fmt.Fprintf(&b, "gateway=%s\nroute-metric=%d\n", n.Gateway4.Via, n.Gateway4.Metric)
			}
			i := 1
			for _, r := range n.Routes {
				fmt.Fprintf(&b, "route%d=%s,%s\n", i, r.Dst, r.Via)
				i++
			}
			if n.OneGate.IsValid() {
				fmt.Fprintf(&b, "route%d=%s/32\n", i, n.OneGate)
			}
			nmDNS(&b, n, 4)
		case n.Method4 == settings.DHCP4:
			b.WriteString("method=auto\n")
			for i, a := range n.Addr4 {
				fmt.Fprintf(&b, "address%d=%s\n", i+1, a.Prefix)
			}
		default:
			// NetworkManager cannot leave a family alone; with no address
			// of its own the family is off.
			if len(n.Addr4) > 0 {
				b.WriteString("method=manual\n")
				for i, a := range n.Addr4 {
					fmt.Fprintf(&b, "address%d=%s\n", i+1, a.Prefix)
				}
			} else {
				b.WriteString("method=disabled\n")
			}
		}

		b.WriteString("\n[ipv6]\naddr-gen-mode=eui64\n")
		switch {
		case n.Static6():
			b.WriteString("method=manual\n")
			for i, a := range n.Addr6 {
				fmt.Fprintf(&b, "address%d=%s\n", i+1, a.Prefix)
			}
			if n.Gateway6.Valid() {
				fmt.Fprintf(&b, "gateway=%s\nroute-metric=%d\n", n.Gateway6.Via, n.Gateway6.Metric)
			}
			nmDNS(&b, n, 6)
		case n.Method6 == settings.DHCP6:
			// NetworkManager's auto (SLAAC, DHCPv6 as the routers say)
			// takes static addresses next to the dynamic ones.
			b.WriteString("method=auto\nip6-privacy=0\n")
			for i, a := range n.Addr6 {
				fmt.Fprintf(&b, "address%d=%s\n", i+1, a.Prefix)
			}
		case n.Method6 == settings.Auto6:
			// SLAAC only: NetworkManager's ignore leaves IPv6 to the
			// kernel (its auto may start DHCPv6), and ignore takes no
			// address ("ipv6.addresses: this property is not allowed for
			// 'method=ignore'"). The aliases' addresses are left out here;
			// the agent still adds them to the link.
			b.WriteString("method=ignore\nip6-privacy=0\n")
			for _, a := range n.Addr6 {
				problems = append(problems, model.Problem{Var: a.Var, Msg: fmt.Sprintf("%s: %s is left out of the NetworkManager keyfile: %s_IP6_METHOD=auto is NetworkManager's ipv6.method ignore, which takes no address; the agent still adds it to the link", n.Dev, a.Prefix, n.Name)})
			}
		case n.Method6 == settings.Disable6:
			b.WriteString("method=disabled\n")
		default:
			if len(n.Addr6) > 0 {
				b.WriteString("method=manual\n")
				for i, a := range n.Addr6 {
					fmt.Fprintf(&b, "address%d=%s\n", i+1, a.Prefix)
				}
			} else {
				b.WriteString("method=ignore\n")
			}
		}
		out = append(out, File{Path: NMPath(n.Dev), Data: []byte(b.String()), Mode: 0o600})
	}
	return sortedFiles(out), problems
}

func nmDNS(b *strings.Builder, n model.NIC, family int) {
	var dns []string
	for _, a := range n.DNS {
		if (family == 4) == a.Is4() {
			dns = append(dns, a.String())
		}
	}
	if len(dns) > 0 {
		fmt.Fprintf(b, "dns=%s;\n", strings.Join(dns, ";"))
	}
	if len(n.Search) > 0 && (family == 4 || !n.Static4()) {
		fmt.Fprintf(b, "dns-search=%s;\n", strings.Join(n.Search, ";"))
	}
}

// nmUUID is a name-based (version 5 layout) UUID from the MAC, so the
// keyfile of a NIC is the same bytes on every run.
func nmUUID(mac string) string {
	h := sha1.Sum([]byte("one-contextd/nm/" + mac))
	h[6] = (h[6] & 0x0f) | 0x50
	h[8] = (h[8] & 0x3f) | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}
