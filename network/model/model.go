// Package model turns the typed network settings of a context and the
// kernel's links into one desired state: per NIC, the link it is (matched
// by MAC), its addresses, routes, MTU and DNS. The netlink applier, every
// renderer and the verifier read this model and nothing else, so they
// cannot disagree about what the context asks for.
package model

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"one-contextd/context/settings"
)

// RouteProtocol tags every route the agent adds (rtm_protocol), so it can
// find and remove its own routes and never anyone else's. Not in
// /etc/iproute2/rt_protos; kept away from the numbers routing daemons use.
const RouteProtocol = 79

// Default metrics the model settles when the context has none, so that every
// renderer and the kernel applier agree (one-context's netplan and nm
// renderers use these; the kernel's IPv4 default is the same 0).
const (
	DefaultMetric4 = 0
	DefaultMetric6 = 1
)

// Link is what the model needs to know of a kernel link.
type Link struct {
	Index int
	Name  string
	MAC   net.HardwareAddr
	// Kind is the link's type as netlink names it (Link.Type()): "device"
	// for a NIC with a driver of its own, "veth", "bridge", "vlan",
	// "bond", ... "" when unknown (treated as physical).
	Kind string
	// PermMAC is the NIC's permanent (burnt-in) address when the kernel
	// reports one (IFLA_PERM_ADDRESS); nil otherwise.
	PermMAC net.HardwareAddr
}

// rank orders the links that carry a NIC's MAC: the one whose permanent
// address it is first, then any physical link; a bridge, VLAN or bond
// that took the MAC of its port ranks below the NIC itself, which every
// renderer matches (networkd Type=ether, netplan and NetworkManager by
// the ethernet device's address).
func (l Link) rank() int {
	switch {
	case len(l.PermMAC) > 0 && bytes.Equal(l.PermMAC, l.MAC):
		return 2
	case l.Physical():
		return 1
	}
	return 0
}

// Physical reports a link that is a NIC of its own: a device with a
// driver, or a veth (the NIC of a container or of the tests). Bridges,
// VLANs, bonds, macvlans and the like are not.
func (l Link) Physical() bool {
	switch l.Kind {
	case "", "device", "veth":
		return true
	}
	return false
}

// Problem is a variable the model cannot use.
type Problem struct {
	Var string
	Msg string
}

func (p Problem) String() string { return p.Var + ": " + p.Msg }

// Gateway is a default route through a NIC.
type Gateway struct {
	Via    netip.Addr
	Metric uint32
	// MetricVar names the variable the metric came from ("" for the default).
	MetricVar string
}

// Valid reports whether there is a gateway.
func (g Gateway) Valid() bool { return g.Via.IsValid() }

// Address is one address with the variable it came from.
type Address struct {
	Prefix netip.Prefix
	Var    string // "ETH0_IP", "ETH0_ALIAS1_IP6", ...
}

// NIC is the desired state of one context NIC.
type NIC struct {
	Name string // "ETH0"
	// Dev is the kernel's name of the link, or, without a kernel (offline
	// rendering), the context name in lower case.
	Dev     string
	DevIdx  int // kernel ifindex; 0 when rendered offline
	MAC     net.HardwareAddr
	Method4 settings.Method4
	Method6 settings.Method6

	// Addr4 and Addr6 hold the NIC's own address first, then its ULA (v6),
	// then its aliases' in alias order.
	Addr4    []Address
	Addr6    []Address
	Network4 netip.Addr // ETHx_NETWORK, for the interfaces renderer

	Gateway4 Gateway
	Gateway6 Gateway // on-link
	Routes   []settings.Route
	// OneGate is the link-local OneGate address that gets an on-link /32
	// route through this NIC (only the first static NIC has it).
	OneGate netip.Addr
	MTU     int // 0: leave alone

	// DNS and Search are the NIC's own, for renderers that attach them to
	// the link (static families only).
	DNS    []netip.Addr
	Search []string
}

// Static4 reports whether the NIC has static IPv4 addresses.
func (n NIC) Static4() bool { return n.Method4 == settings.Static4 && len(n.Addr4) > 0 }

// Static6 reports whether the NIC has static IPv6 addresses (of its own;
// alias IPv6 addresses alone do not make the method static).
func (n NIC) Static6() bool {
	return n.Method6 == settings.Static6 && len(n.Addr6) > 0 && n.Addr6[0].Var == n.Name+"_IP6"
}

// ImplicitRA reports a NIC with static IPv4 whose IPv6 the context leaves
// alone (IP6_METHOD static without an address, or skip). one-context
// writes nothing about IPv6 then, and systemd-networkd accepts router
// advertisements by default. Before systemd 253, networkd also holds the
// link in "configuring", and so network-online.target, until its router
// solicitation times out (13 s measured with systemd 252, Debian 12) on a
// network without IPv6 routers. ConfigureWithoutCarrier=yes lifts that
// wait (networkd then leaves NDisc out of the link's readiness, as 253 and
// later do for any link with a static address) and keeps RAs accepted, so
// SLAAC from a router one-context users rely on still works.
func (n NIC) ImplicitRA() bool {
	return n.Static4() && (n.Method6 == settings.Skip6 || n.Method6 == settings.Static6 && !n.Static6())
}

// Skip4 reports whether IPv4 is left alone.
func (n NIC) Skip4() bool { return n.Method4 != settings.DHCP4 && !n.Static4() }

// Skip6 reports whether IPv6 is left alone (or disabled through sysctls only).
func (n NIC) Skip6() bool {
	switch n.Method6 {
	case settings.Auto6, settings.DHCP6:
		return false
	}
	return !n.Static6()
}

// Sysctl is one kernel setting: Key relative to /proc/sys ("net/ipv6/conf/eth1/disable_ipv6").
type Sysctl struct {
	Key, Value string
	Var        string // the variable asking for it
}

// Model is the whole desired network state.
type Model struct {
	NICs []NIC // context order (lexical by variable name)
	// Skipped are the context NICs left completely alone (both families
	// skipped): only Name, Dev, DevIdx and MAC are set.
	Skipped []NIC
	// Nameservers and Searches are the merged lists for resolv.conf:
	// global first, then each NIC's.
	Nameservers []netip.Addr
	Searches    []string
	// Default4 and Default6 name the NIC ("ETH0") whose default route wins
	// (lowest metric, first in context order on a tie); "" when none.
	Default4, Default6 string
	// Sysctls are the kernel settings for IPv6 "disable", persisted in
	// /etc/sysctl.d/50-one-context.conf.
	Sysctls []Sysctl
	// Enable6 are the NICs whose IPv6 an earlier run disabled and the
	// context no longer does (see Reenable6): the kernel gives them the
	// namespace's defaults back; nothing is persisted for them.
	Enable6 []Enable6
	// Offline is true when there was no kernel to match MACs against and
	// device names are guessed from the context names.
	Offline bool
}

// Plan builds the model. links are the kernel's links; nil means offline
// (device names are the context names in lower case). onegate is the
// OneGate link-local address (invalid when none).
func Plan(nw settings.Network, onegate netip.Addr, links []Link) (Model, []Problem) {
	var m Model
	var problems []Problem
	m.Offline = links == nil
	m.Nameservers = nw.Nameservers()
	m.Searches = nw.Searches()
	// When several links carry a MAC, the NIC itself wins over a bridge,
	// VLAN or bond that shares it; among links of the same rank the last
	// one the kernel lists does, as one-context's get_dev (`ip link` |
	// grep MAC | tail -n1), which is also what it does when only such a
	// link has the MAC.
	byMAC := map[string]Link{}
	for _, l := range links {
		if len(l.MAC) != 6 {
			continue
		}
		k := l.MAC.String() // lower case: exact, case-insensitive match
		if cur, ok := byMAC[k]; ok && cur.rank() > l.rank() {
			continue
		}
		byMAC[k] = l
	}
	usedDev := map[string]string{}
	for _, s := range nw.NICs {
		n := NIC{Name: s.Name, MAC: s.MAC, Method4: s.IPv4.Method, Method6: s.IPv6.Method, MTU: s.MTU}
		if m.Offline {
			n.Dev = strings.ToLower(s.Name)
		} else {
			l, ok := byMAC[s.MAC.String()]
			if !ok {
				problems = append(problems, Problem{s.Name + "_MAC", fmt.Sprintf("no link has MAC %s; %s is not configured", s.MAC, s.Name)})
				continue
			}
			if other, dup := usedDev[l.Name]; dup {
				problems = append(problems, Problem{s.Name + "_MAC", fmt.Sprintf("link %s is already %s; %s is not configured", l.Name, other, s.Name)})
				continue
			}
			usedDev[l.Name] = s.Name
			n.Dev, n.DevIdx = l.Name, l.Index
		}
		// As in one-context, a NIC whose families are both left alone gets
		// nothing at all, its aliases included; but a NIC that is static
		// and only lost its own address (a bad ETHx_IP or MASK) keeps its
		// aliases.
		explicit := s.IPv4.Method == settings.Skip4 && s.IPv6.Skipped()
		if s.Skipped() && (explicit || len(s.Aliases) == 0) {
			m.Skipped = append(m.Skipped, n)
			for _, a := range s.Aliases {
				problems = append(problems, Problem{a.Name + "_MAC", fmt.Sprintf("%s leaves both families alone; the alias is not configured", s.Name)})
			}
			if s.IPv6.Method == settings.Disable6 {
				m.Sysctls = append(m.Sysctls, disable6(n.Dev, s.Name)...)
			}
			continue
		}
		if s.IPv4.Method == settings.Static4 && s.IPv4.Address.IsValid() {
			n.Addr4 = append(n.Addr4, Address{s.IPv4.Address, s.Name + "_IP"})
			n.Network4 = s.IPv4.Network
			if s.IPv4.Gateway.IsValid() {
				n.Gateway4 = Gateway{Via: s.IPv4.Gateway, Metric: s.IPv4.Metric.Or(DefaultMetric4)}
				if s.IPv4.Metric.Set {
					n.Gateway4.MetricVar = s.Name + "_METRIC"
				}
			}
			n.Routes = s.Routes
		}
		if s.IPv6.Method == settings.Static6 && s.IPv6.Address.IsValid() {
			n.Addr6 = append(n.Addr6, Address{s.IPv6.Address, s.Name + "_IP6"})
			if s.IPv6.ULA.IsValid() {
				n.Addr6 = append(n.Addr6, Address{s.IPv6.ULA, s.Name + "_IP6_ULA"})
			}
			if s.IPv6.Gateway.IsValid() {
				n.Gateway6 = Gateway{Via: s.IPv6.Gateway, Metric: s.IPv6.Metric.Or(DefaultMetric6)}
				if s.IPv6.Metric.Set {
					n.Gateway6.MetricVar = s.Name + "_IP6_METRIC"
				}
			}
		}
		if s.IPv6.Method == settings.Disable6 {
			m.Sysctls = append(m.Sysctls, disable6(n.Dev, s.Name)...)
		}
		for _, a := range s.Aliases {
			if a.IPv4.IsValid() {
				n.Addr4 = append(n.Addr4, Address{a.IPv4, a.Name + "_IP"})
			}
			if a.IPv6.IsValid() {
				if s.IPv6.Method == settings.Disable6 {
					problems = append(problems, Problem{a.Name + "_IP6", fmt.Sprintf("IPv6 is disabled on %s; left out", s.Name)})
				} else {
					n.Addr6 = append(n.Addr6, Address{a.IPv6, a.Name + "_IP6"})
					if a.ULA.IsValid() {
						n.Addr6 = append(n.Addr6, Address{a.ULA, a.Name + "_IP6_ULA"})
					}
				}
			}
		}
		// A dynamic family's DNS goes to resolv.conf only, as in one-context.
		if n.Static4() || n.Static6() {
			n.DNS, n.Search = s.DNS, s.SearchDomains
		}
		m.NICs = append(m.NICs, n)
	}
	m.placeOneGate(onegate, &problems)
	m.pickDefaults()
	return m, problems
}

// Enable6 is a NIC whose IPv6 is to be enabled again.
type Enable6 struct {
	Dev string
	Var string // the variable that no longer disables it
}

// Disable6Leaves are the per-link settings "disable" sets, in the order
// they are undone: disable_ipv6 first, so that the link can take
// addresses again.
var Disable6Leaves = []string{"disable_ipv6", "autoconf", "accept_ra"}

// Reenable6 fills Enable6 from the links an earlier run disabled, named
// by device (the persisted sysctls) or by MAC (the agent's record): each
// that is a NIC of this model whose IPv6 is not "disable" any more.
// Without it a NIC once disabled would refuse the IPv6 addresses the
// context now gives it until the next reboot, as it does under
// one-context.
func (m *Model) Reenable6(devs, macs []string) {
	m.Enable6 = nil
	for _, n := range m.NICs {
		was := slices.Contains(devs, n.Dev) || len(n.MAC) > 0 && slices.Contains(macs, n.MAC.String())
		if n.Method6 != settings.Disable6 && was {
			m.Enable6 = append(m.Enable6, Enable6{Dev: n.Dev, Var: n.Name + "_IP6_METHOD"})
		}
	}
}

func disable6(dev, name string) []Sysctl {
	v := name + "_IP6_METHOD"
	base := "net/ipv6/conf/" + dev + "/"
	return []Sysctl{{base + "disable_ipv6", "1", v}, {base + "autoconf", "0", v}, {base + "accept_ra", "0", v}}
}

// placeOneGate puts the OneGate host route on the first NIC with a static
// IPv4 address, as one-context does (on the first one only).
func (m *Model) placeOneGate(a netip.Addr, problems *[]Problem) {
	if !a.IsValid() {
		return
	}
	for i := range m.NICs {
		if m.NICs[i].Static4() {
			m.NICs[i].OneGate = a
			return
		}
	}
	if len(m.NICs) > 0 {
		*problems = append(*problems, Problem{"ONEGATE_ENDPOINT", fmt.Sprintf("link-local %s needs a NIC with a static IPv4 address for its route; none has one", a)})
	}
}

func (m *Model) pickDefaults() {
	var best4, best6 *NIC
	for i := range m.NICs {
		n := &m.NICs[i]
		if n.Gateway4.Valid() && (best4 == nil || n.Gateway4.Metric < best4.Gateway4.Metric) {
			best4 = n
		}
		if n.Gateway6.Valid() && (best6 == nil || n.Gateway6.Metric < best6.Gateway6.Metric) {
			best6 = n
		}
	}
	if best4 != nil {
		m.Default4 = best4.Name
	}
	if best6 != nil {
		m.Default6 = best6.Name
	}
}

// NIC finds a NIC of the model by context name.
func (m Model) NIC(name string) (NIC, bool) {
	for _, n := range m.NICs {
		if n.Name == name {
			return n, true
		}
	}
	return NIC{}, false
}
