package settings

import (
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"one-contextd/internal/lazyregexp"
)

// Method4 is how a NIC gets its IPv4 address.
type Method4 string

// Method6 is how a NIC gets its IPv6 addresses.
type Method6 string

// IPv4 methods. An empty ETHx_METHOD means static.
const (
	Static4 Method4 = "static"
	DHCP4   Method4 = "dhcp"
	Skip4   Method4 = "skip"
)

// IPv6 methods. An empty ETHx_IP6_METHOD follows ETHx_METHOD.
const (
	Static6  Method6 = "static"
	Auto6    Method6 = "auto"    // SLAAC only
	DHCP6    Method6 = "dhcp"    // SLAAC plus DHCPv6
	Disable6 Method6 = "disable" // IPv6 turned off on the link
	Skip6    Method6 = "skip"
)

// Metric is an optional route metric: one-context writes none when unset,
// and renderers differ in the default they use.
type Metric struct {
	Value uint32
	Set   bool
}

// Or returns the metric's value, or def when unset.
func (m Metric) Or(def uint32) uint32 {
	if m.Set {
		return m.Value
	}
	return def
}

// Network is the whole network part of the context.
type Network struct {
	NICs []NIC // in one-context's order: lexical by name (ETH0, ETH1, ETH10, ETH2)

	// Global DNS and SEARCH_DOMAIN, before any NIC's.
	DNS           []netip.Addr
	SearchDomains []string

	// NETCFG_TYPE candidates, lower-cased and de-aliased; empty means the
	// distribution's default list.
	NetcfgTypes []string
	// NETCFG_NETPLAN_RENDERER: "", "networkd" or "NetworkManager".
	NetplanRenderer string
}

// Nameservers is one-context's merge: global DNS first, then each NIC's in
// order. Duplicates are dropped (one-context keeps them; resolv.conf
// gains nothing from a repeat).
func (n Network) Nameservers() []netip.Addr {
	lists := [][]netip.Addr{n.DNS}
	for _, nic := range n.NICs {
		lists = append(lists, nic.DNS)
	}
	return mergeUnique(lists)
}

// Searches merges search domains the same way as Nameservers.
func (n Network) Searches() []string {
	lists := [][]string{n.SearchDomains}
	for _, nic := range n.NICs {
		lists = append(lists, nic.SearchDomains)
	}
	return mergeUnique(lists)
}

// mergeUnique concatenates lists in order, keeping the first of repeats.
func mergeUnique[T comparable](lists [][]T) []T {
	var out []T
	seen := map[T]bool{}
	for _, list := range lists {
		for _, v := range list {
			if !seen[v] {
				seen[v] = true
				out = append(out, v)
			}
		}
	}
	return out
}

// NIC is one ETHx of the context.
type NIC struct {
	Name  string // "ETH0"
	Index int    // 0
	MAC   net.HardwareAddr

	IPv4 IPv4
	IPv6 IPv6
	MTU  int // 0: leave the link's MTU alone

	Routes        []Route
	DNS           []netip.Addr
	SearchDomains []string
	Aliases       []Alias
}

// Skipped reports whether both families are left alone, in which case
// one-context writes nothing at all for the NIC.
func (n NIC) Skipped() bool { return n.IPv4.Skipped() && n.IPv6.Skipped() }

// IPv4 settings of a NIC.
type IPv4 struct {
	Method  Method4
	Address netip.Prefix // static only: ETHx_IP with ETHx_MASK's length
	Network netip.Addr   // ETHx_NETWORK, or the address's network
	Gateway netip.Addr   // static only; zero when none
	Metric  Metric
}

// Skipped is one-context's "IPv4 is skipped": skip, or static without an address.
func (v IPv4) Skipped() bool {
	return v.Method == Skip4 || (v.Method == Static4 && !v.Address.IsValid())
}

// IPv6 settings of a NIC.
type IPv6 struct {
	Method  Method6
	Address netip.Prefix // static only
	ULA     netip.Prefix // static only, always /64
	Gateway netip.Addr
	Metric  Metric // ETHx_IP6_METRIC, else ETHx_METRIC
}

// Skipped is one-context's "IPv6 is skipped".
func (v IPv6) Skipped() bool {
	return v.Method == Skip6 || v.Method == Disable6 || (v.Method == Static6 && !v.Address.IsValid())
}

// Route is one item of ETHx_ROUTES.
type Route struct {
	Dst netip.Prefix
	Via netip.Addr
}

// Alias is an ETHx_ALIASy: extra static addresses on the parent's link.
type Alias struct {
	Name string // "ETH0_ALIAS1"
	IPv4 netip.Prefix
	IPv6 netip.Prefix
	ULA  netip.Prefix
}

var (
	nicMACName   = lazyregexp.New(`^(ETH([0-9]+))_MAC$`)
	aliasMACName = lazyregexp.New(`^(ETH[0-9]+_ALIAS[0-9]+)_MAC$`)
	pciMACName   = lazyregexp.New(`^PCI[0-9]+_MAC$`)
)

func (b *builder) network() Network {
	var n Network
	n.DNS = b.addrList("DNS")
	n.SearchDomains = b.domainList("SEARCH_DOMAIN")
	n.NetcfgTypes = b.netcfgTypes()
	n.NetplanRenderer = b.netplanRenderer()
	// one-context sorts the NIC names (ETH0 ETH1 ETH10 ETH2), not the
	// variable names (where ETH10_MAC sorts before ETH1_MAC).
	var ids []string
	for _, name := range b.vars.Names() {
		if m := nicMACName.FindStringSubmatch(name); m != nil {
			ids = append(ids, m[1])
		}
	}
	sort.Strings(ids)
	for _, id := range ids {
		idx, _ := strconv.Atoi(strings.TrimPrefix(id, "ETH"))
		if nic, ok := b.nic(id, idx); ok {
			n.NICs = append(n.NICs, nic)
		}
	}
	b.checkDuplicateMACs(n.NICs)
	for _, name := range b.vars.Names() {
		if pciMACName.MatchString(name) {
			b.problem(name, "PCI passthrough NICs are not configured by one-contextd yet; the NIC is left alone")
		}
	}
	return n
}

func (b *builder) nic(id string, idx int) (NIC, bool) {
	nic := NIC{Name: id, Index: idx}
	macVar := id + "_MAC"
	mac, err := net.ParseMAC(b.trimmed(macVar))
	if err != nil || len(mac) != 6 {
		b.problem(macVar, "%q is not a MAC address; the NIC is not configured", b.trimmed(macVar))
		return nic, false
	}
	nic.MAC = mac

	nic.IPv4 = b.ipv4(id)
	nic.IPv6 = b.ipv6(id, nic.IPv4)
	nic.MTU = b.mtu(id + "_MTU")
	nic.DNS = b.addrList(id + "_DNS")
	nic.SearchDomains = b.domainList(id + "_SEARCH_DOMAIN")
	nic.Aliases = b.aliases(id)
	if nic.IPv4.Method == Static4 && nic.IPv4.Address.IsValid() {
		nic.Routes = b.routes(id + "_ROUTES")
	} else if b.trimmed(id+"_ROUTES") != "" && nic.IPv4.Method == DHCP4 {
		b.problem(id+"_ROUTES", "ignored: routes are written for static IPv4 NICs only")
	}
	b.checkGateway(&nic)
	return nic, true
}

func (b *builder) ipv4(id string) IPv4 {
	var v IPv4
	methodVar := id + "_METHOD"
	switch m := strings.ToLower(b.trimmed(methodVar)); m {
	case "", "static":
		v.Method = Static4
	case "dhcp":
		v.Method = DHCP4
	case "skip":
		v.Method = Skip4
	default:
		b.problem(methodVar, "unknown method %q (static, dhcp or skip); IPv4 is left alone", b.trimmed(methodVar))
		v.Method = Skip4
	}
	v.Metric = b.metric(id + "_METRIC")
	if v.Method == DHCP4 && b.trimmed(id+"_GATEWAY") != "" {
		b.problem(id+"_GATEWAY", "ignored: the gateway of a DHCP NIC comes from DHCP")
	}
	if v.Method != Static4 {
		return v
	}
	ipVar := id + "_IP"
	ipText := b.trimmed(ipVar)
	if ipText == "" {
		return v
	}
	ip, err := netip.ParseAddr(ipText)
	if err != nil || !ip.Is4() {
		b.problem(ipVar, "%q is not an IPv4 address; IPv4 is not configured", ipText)
		return v
	}
	bits, ok := b.mask(id + "_MASK")
	if !ok {
		return v
	}
	v.Address = netip.PrefixFrom(ip, bits)
	v.Network = v.Address.Masked().Addr()
	if t := b.trimmed(id + "_NETWORK"); t != "" {
		if a, err := netip.ParseAddr(t); err == nil && a.Is4() {
			v.Network = a
		} else {
			b.problem(id+"_NETWORK", "%q is not an IPv4 address; using %s", t, v.Network)
		}
	}
	if gw := b.trimmed(id + "_GATEWAY"); gw != "" {
		a, err := netip.ParseAddr(gw)
		if err != nil || !a.Is4() {
			b.problem(id+"_GATEWAY", "%q is not an IPv4 address; no default route", gw)
		} else {
			v.Gateway = a
		}
	}
	return v
}

// mask turns ETHx_MASK (dotted quad, or a prefix length as a superset of
// one-context) into a prefix length. Default 255.255.255.0.
func (b *builder) mask(name string) (int, bool) {
	t := b.trimmed(name)
	if t == "" {
		return 24, true
	}
	if n, err := strconv.Atoi(t); err == nil && n >= 0 && n <= 32 {
		return n, true
	}
	a, err := netip.ParseAddr(t)
	if err != nil || !a.Is4() {
		b.problem(name, "%q is not a netmask; IPv4 is not configured", t)
		return 0, false
	}
	m := net.IPMask(a.AsSlice())
	ones, bits := m.Size()
	if bits == 0 {
		b.problem(name, "%q is not a contiguous netmask; IPv4 is not configured", t)
		return 0, false
	}
	return ones, true
}

func (b *builder) ipv6(id string, v4 IPv4) IPv6 {
	var v IPv6
	methodVar := id + "_IP6_METHOD"
	m := strings.ToLower(b.trimmed(methodVar))
	if m == "" {
		// Follows the IPv4 method, as in one-context (empty: static).
		m = strings.ToLower(b.trimmed(id + "_METHOD"))
		methodVar = id + "_METHOD"
	}
	switch m {
	case "", "static":
		v.Method = Static6
	case "auto":
		v.Method = Auto6
	case "dhcp":
		v.Method = DHCP6
	case "disable":
		v.Method = Disable6
	case "skip":
		v.Method = Skip6
	default:
		if methodVar == id+"_IP6_METHOD" {
			b.problem(methodVar, "unknown IPv6 method %q (static, auto, dhcp, disable or skip); IPv6 is left alone", m)
		}
		v.Method = Skip6
	}
	v.Metric = b.metric(id + "_IP6_METRIC")
	if !v.Metric.Set {
		v.Metric = v4.Metric
	}
	if v.Method != Static6 {
		return v
	}
	addrText, addrVar := b.first(id+"_IP6", id+"_IPV6")
	if addrText == "" {
		return v
	}
	a, err := netip.ParseAddr(addrText)
	if err != nil || !a.Is6() || a.Is4In6() {
		b.problem(addrVar, "%q is not an IPv6 address; IPv6 is not configured", addrText)
		return v
	}
	plen := b.prefixLength(id + "_IP6_PREFIX_LENGTH")
	v.Address = netip.PrefixFrom(a, plen)
	if t := b.trimmed(id + "_IP6_ULA"); t != "" {
		if u, err := netip.ParseAddr(t); err == nil && u.Is6() {
			v.ULA = netip.PrefixFrom(u, 64)
		} else {
			b.problem(id+"_IP6_ULA", "%q is not an IPv6 address", t)
		}
	}
	gwText, gwVar := b.first(id+"_IP6_GATEWAY", id+"_GATEWAY6")
	if gwText != "" {
		g, err := netip.ParseAddr(gwText)
		if err != nil || !g.Is6() {
			b.problem(gwVar, "%q is not an IPv6 address; no IPv6 default route", gwText)
		} else {
			v.Gateway = g
		}
	}
	return v
}

func (b *builder) prefixLength(name string) int {
	t := b.trimmed(name)
	if t == "" {
		return 64
	}
	n, err := strconv.Atoi(t)
	if err != nil || n < 1 || n > 128 {
		b.problem(name, "%q is not a prefix length (1-128); using 64", t)
		return 64
	}
	return n
}

func (b *builder) metric(name string) Metric {
	t := b.trimmed(name)
	if t == "" {
		return Metric{}
	}
	n, err := strconv.ParseUint(t, 10, 32)
	if err != nil {
		b.problem(name, "%q is not a metric (a number 0-4294967295); ignored", t)
		return Metric{}
	}
	return Metric{Value: uint32(n), Set: true}
}

func (b *builder) mtu(name string) int {
	t := b.trimmed(name)
	if t == "" {
		return 0
	}
	n, err := strconv.Atoi(t)
	if err != nil || n < 68 || n > 65535 {
		b.problem(name, "%q is not a usable MTU (68-65535); the MTU is left as it is", t)
		return 0
	}
	return n
}

func (b *builder) addrList(name string) []netip.Addr {
	var out []netip.Addr
	for _, f := range strings.Fields(b.get(name)) {
		a, err := netip.ParseAddr(f)
		if err != nil {
			b.problem(name, "%q is not an IP address; left out", f)
			continue
		}
		out = append(out, a.Unmap())
	}
	return out
}

// validDomain reports whether f is a domain name for resolv.conf's search
// list: labels of 1 to 63 letters, digits, '_' and '-' (not leading), joined
// by dots, an optional final dot, 253 characters at most.
func validDomain(f string) bool {
	if len(f) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(f, "."), ".") {
		if label == "" || len(label) > 63 || !wordChar(label[0]) {
			return false
		}
		for i := 1; i < len(label); i++ {
			if !wordChar(label[i]) && label[i] != '-' {
				return false
			}
		}
	}
	return true
}

func (b *builder) domainList(name string) []string {
	var out []string
	for _, f := range strings.Fields(b.get(name)) {
		if !validDomain(f) {
			b.problem(name, "%q is not a domain name; left out", f)
			continue
		}
		out = append(out, f)
	}
	return out
}

// routes parses ETHx_ROUTES: "DST via GW[, DST via GW ...]".
func (b *builder) routes(name string) []Route {
	var out []Route
	for i, item := range strings.Split(b.get(name), ",") {
		w := strings.Fields(item)
		if len(w) == 0 {
			continue
		}
		if len(w) != 3 || w[1] != "via" {
			b.problem(name, "route %d %q: want \"DESTINATION via GATEWAY\"; left out", i+1, strings.TrimSpace(item))
			continue
		}
		dst, err := parsePrefixOrAddr(w[0])
		if err != nil || !dst.Addr().Is4() {
			b.problem(name, "route %d: %q is not an IPv4 destination; left out", i+1, w[0])
			continue
		}
		via, err := netip.ParseAddr(w[2])
		if err != nil || !via.Is4() {
			b.problem(name, "route %d: %q is not an IPv4 gateway; left out", i+1, w[2])
			continue
		}
		out = append(out, Route{Dst: dst.Masked(), Via: via})
	}
	return out
}

func parsePrefixOrAddr(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func (b *builder) aliases(id string) []Alias {
	var names []string
	for _, name := range b.vars.Names() {
		if m := aliasMACName.FindStringSubmatch(name); m != nil && strings.HasPrefix(m[1], id+"_ALIAS") {
			names = append(names, m[1])
		}
	}
	sort.Strings(names)
	var out []Alias
	for _, a := range names {
		if trueish(b.get(a+"_EXTERNAL")) || b.trimmed(a+"_DETACH") != "" {
			continue
		}
		al := Alias{Name: a}
		if t := b.trimmed(a + "_IP"); t != "" {
			ip, err := netip.ParseAddr(t)
			if err != nil || !ip.Is4() {
				b.problem(a+"_IP", "%q is not an IPv4 address; left out", t)
			} else if bits, ok := b.mask(a + "_MASK"); ok {
				al.IPv4 = netip.PrefixFrom(ip, bits)
			}
		}
		if t, v := b.first(a+"_IP6", a+"_IPV6"); t != "" {
			ip, err := netip.ParseAddr(t)
			if err != nil || !ip.Is6() {
				b.problem(v, "%q is not an IPv6 address; left out", t)
			} else {
				al.IPv6 = netip.PrefixFrom(ip, b.prefixLength(a+"_IP6_PREFIX_LENGTH"))
				if u := b.trimmed(a + "_IP6_ULA"); u != "" {
					if ua, err := netip.ParseAddr(u); err == nil && ua.Is6() {
						al.ULA = netip.PrefixFrom(ua, 64)
					} else {
						b.problem(a+"_IP6_ULA", "%q is not an IPv6 address; left out", u)
					}
				}
			}
		}
		if al.IPv4.IsValid() || al.IPv6.IsValid() {
			out = append(out, al)
		}
	}
	return out
}

// checkGateway drops a gateway that no address of the NIC can reach: the
// kernel would refuse the route, and a renderer would write a broken file.
func (b *builder) checkGateway(nic *NIC) {
	if gw := nic.IPv4.Gateway; gw.IsValid() {
		reach := nic.IPv4.Address.Contains(gw)
		for _, a := range nic.Aliases {
			reach = reach || (a.IPv4.IsValid() && a.IPv4.Masked().Contains(gw))
		}
		if !reach {
			b.problem(nic.Name+"_GATEWAY", "%s is outside every IPv4 subnet of %s; no default route", gw, nic.Name)
			nic.IPv4.Gateway = netip.Addr{}
		}
	}
	for i := 0; i < len(nic.Routes); i++ {
		r := nic.Routes[i]
		reach := nic.IPv4.Address.Masked().Contains(r.Via)
		for _, a := range nic.Aliases {
			reach = reach || (a.IPv4.IsValid() && a.IPv4.Masked().Contains(r.Via))
		}
		if !reach {
			b.problem(nic.Name+"_ROUTES", "route to %s: gateway %s is outside every IPv4 subnet of %s; left out", r.Dst, r.Via, nic.Name)
			nic.Routes = append(nic.Routes[:i], nic.Routes[i+1:]...)
			i--
		}
	}
	// IPv6 gateways are written on-link by one-context, so any address is usable.
}

func (b *builder) checkDuplicateMACs(nics []NIC) {
	seen := map[string]string{}
	for _, n := range nics {
		k := n.MAC.String()
		if other, ok := seen[k]; ok {
			b.problem(n.Name+"_MAC", "same MAC as %s_MAC; both describe one link", other)
		}
		seen[k] = n.Name
	}
}

// netcfgTypes reads NETCFG_TYPE with one-context's aliases.
func (b *builder) netcfgTypes() []string {
	v := strings.ToLower(b.trimmed("NETCFG_TYPE"))
	switch v {
	case "":
		return nil
	case "networkmanager":
		return []string{"nm"}
	case "systemd-networkd", "systemd-network", "systemd":
		return []string{"networkd"}
	case "redhat":
		return []string{"scripts"}
	case "debian":
		return []string{"interfaces"}
	case "freebsd":
		return []string{"bsd"}
	}
	var out []string
	for _, t := range strings.Fields(v) {
		switch t {
		case "netplan", "networkd", "nm", "interfaces", "none":
			out = append(out, t)
		case "scripts", "bsd":
			b.problem("NETCFG_TYPE", "%q is not supported on this system; left out", t)
		default:
			b.problem("NETCFG_TYPE", "unknown network configuration type %q; left out", t)
		}
	}
	return out
}

func (b *builder) netplanRenderer() string {
	switch v := strings.ToLower(b.trimmed("NETCFG_NETPLAN_RENDERER")); v {
	case "":
		return ""
	case "networkd", "systemd-networkd", "systemd-network", "systemd":
		return "networkd"
	case "networkmanager", "nm":
		return "NetworkManager"
	default:
		b.problem("NETCFG_NETPLAN_RENDERER", "unknown netplan renderer %q (networkd or NetworkManager); using the default", v)
		return ""
	}
}
