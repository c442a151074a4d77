package kernel

import (
	"fmt"
	"net"
	"net/netip"
	"sort"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"one-contextd/network/model"
)

// Owned is what the agent added to the kernel and may remove again:
// addresses per link MAC (the kernel has no owner tag for addresses; routes
// carry model.RouteProtocol instead), and the links whose IPv6 it disabled.
type Owned struct {
	Addresses map[string][]string `json:"addresses,omitempty"` // MAC -> prefixes
	// IPv6Disabled are the MACs of the links the context disabled IPv6
	// on: at boot systemd-sysctl disables them again from the persisted
	// file before the agent runs, so this record, not that file, tells
	// which links the agent may enable again once the context stops
	// disabling them.
	IPv6Disabled []string `json:"ipv6_disabled,omitempty"`
}

func (o Owned) has(mac string, p netip.Prefix) bool {
	for _, s := range o.Addresses[mac] {
		if s == p.String() {
			return true
		}
	}
	return false
}

func (o *Owned) set(mac string, ps map[netip.Prefix]bool) {
	if len(ps) == 0 {
		delete(o.Addresses, mac)
		return
	}
	if o.Addresses == nil {
		o.Addresses = map[string][]string{}
	}
	var list []string
	for p := range ps {
		list = append(list, p.String())
	}
	sort.Strings(list)
	o.Addresses[mac] = list
}

// snapshot is the kernel's state, from three dumps.
type snapshot struct {
	links  map[int]netlink.Link
	addrs  map[int][]netlink.Addr
	routes []netlink.Route
}

func take(nl Netlink) (snapshot, error) {
	s := snapshot{links: map[int]netlink.Link{}, addrs: map[int][]netlink.Addr{}}
	links, err := retry(nl.LinkList)
	if err != nil {
		return s, fmt.Errorf("list links: %w", err)
	}
	for _, l := range links {
		s.links[l.Attrs().Index] = l
	}
	addrs, err := retry(func() ([]netlink.Addr, error) { return nl.AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return s, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		s.addrs[a.LinkIndex] = append(s.addrs[a.LinkIndex], a)
	}
	s.routes, err = retry(func() ([]netlink.Route, error) {
		return nl.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return s, fmt.Errorf("list routes: %w", err)
	}
	return s, nil
}

// Links lists the kernel's links for the model.
func Links(nl Netlink) ([]model.Link, error) {
	links, err := retry(nl.LinkList)
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	out := make([]model.Link, 0, len(links))
	for _, l := range links {
		a := l.Attrs()
		out = append(out, model.Link{Index: a.Index, Name: a.Name, MAC: a.HardwareAddr, Kind: l.Type(), PermMAC: a.PermHWAddr})
	}
	return out, nil
}

// prefixOf turns a kernel address into a prefix (with its host bits).
func prefixOf(a netlink.Addr) (netip.Prefix, bool) {
	if a.IPNet == nil {
		return netip.Prefix{}, false
	}
	ip, ok := netip.AddrFromSlice(a.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := a.Mask.Size()
	return netip.PrefixFrom(ip.Unmap(), ones), true
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// wantRoute is one route of the model, with the variable it comes from.
type wantRoute struct {
	dst    netip.Prefix
	via    netip.Addr // invalid: on-link (scope link)
	metric uint32
	onlink bool
	Var    string
	// metricVar is the variable that sets the metric ("ETH0_METRIC"), for
	// gateways; "" for routes without one.
	metricVar string
}

func (w wantRoute) String() string {
	s := w.dst.String()
	if w.via.IsValid() {
		s += " via " + w.via.String()
	} else {
		s += " scope link"
	}
	return fmt.Sprintf("%s metric %d", s, w.metric)
}

// kernelMetric is the metric the kernel stores: it turns IPv6 0 into 1024.
func (w wantRoute) kernelMetric() int {
	if w.dst.Addr().Is6() && w.metric == 0 {
		return 1024
	}
	return int(w.metric)
}

func (w wantRoute) route(link int) *netlink.Route {
	r := &netlink.Route{
		LinkIndex: link,
		Dst:       ipNet(w.dst),
		Priority:  int(w.metric),
		Protocol:  netlink.RouteProtocol(model.RouteProtocol),
		Table:     unix.RT_TABLE_MAIN,
	}
	if w.via.IsValid() {
		r.Gw = w.via.AsSlice()
		r.Scope = netlink.SCOPE_UNIVERSE
	} else {
		r.Scope = netlink.SCOPE_LINK
	}
	if w.onlink {
		r.Flags = int(netlink.FLAG_ONLINK)
	}
	return r
}

// matches reports whether a kernel route is this one, whoever added it.
func (w wantRoute) matches(link int, r netlink.Route) bool {
	if r.LinkIndex != link || r.Dst == nil || r.Priority != w.kernelMetric() {
		return false
	}
	dst, ok := prefixOf(netlink.Addr{IPNet: r.Dst})
	if !ok || dst != w.dst {
		return false
	}
	if !w.via.IsValid() {
		return len(r.Gw) == 0
	}
	gw, ok := netip.AddrFromSlice(r.Gw)
	return ok && gw.Unmap() == w.via
}

// slot reports whether a kernel route takes the place this one needs (same
// destination and metric): the kernel refuses a second one.
func (w wantRoute) slot(r netlink.Route) bool {
	if r.Dst == nil || r.Priority != w.kernelMetric() {
		return false
	}
	dst, ok := prefixOf(netlink.Addr{IPNet: r.Dst})
	return ok && dst == w.dst
}

func wantRoutes(n model.NIC) []wantRoute {
	var out []wantRoute
	if n.Gateway4.Valid() {
		out = append(out, wantRoute{dst: netip.MustParsePrefix("0.0.0.0/0"), via: n.Gateway4.Via, metric: n.Gateway4.Metric, Var: n.Name + "_GATEWAY", metricVar: n.Name + "_METRIC"})
	}
	if n.Gateway6.Valid() {
		out = append(out, wantRoute{dst: netip.MustParsePrefix("::/0"), via: n.Gateway6.Via, metric: n.Gateway6.Metric, onlink: true, Var: n.Name + "_IP6_GATEWAY", metricVar: n.Name + "_IP6_METRIC"})
	}
	for _, r := range n.Routes {
		out = append(out, wantRoute{dst: r.Dst, via: r.Via, Var: n.Name + "_ROUTES"})
	}
	if n.OneGate.IsValid() {
		out = append(out, wantRoute{dst: netip.PrefixFrom(n.OneGate, 32), Var: "ONEGATE_ENDPOINT"})
	}
	return out
}

func describeRoute(r netlink.Route) string {
	s := "?"
	if r.Dst != nil {
		s = r.Dst.String()
	}
	if len(r.Gw) > 0 {
		s += " via " + r.Gw.String()
	}
	return fmt.Sprintf("%s metric %d", s, r.Priority)
}
