package kernel

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"one-contextd/context/settings"
	"one-contextd/network/model"
)

// Sysctl reads and writes kernel settings by key relative to /proc/sys
// ("net/ipv6/conf/eth1/disable_ipv6"), in the applier's network namespace.
type Sysctl interface {
	Get(key string) (string, error)
	Set(key, value string) error
}

// Result is what one Apply did.
type Result struct {
	Changes  []string
	Problems []model.Problem
	Owned    Owned // to persist for the next run
}

func (r *Result) change(format string, args ...any) {
	r.Changes = append(r.Changes, fmt.Sprintf(format, args...))
}

func (r *Result) problem(v, format string, args ...any) {
	r.Problems = append(r.Problems, model.Problem{Var: v, Msg: fmt.Sprintf(format, args...)})
}

// Apply converges the kernel on the model. owned is what earlier runs
// added. It fails only when the kernel cannot be read; a request the kernel
// refuses becomes a problem naming the variable, and the rest goes on.
// sc may be nil: sysctls are then left to the persisted file.
func Apply(nl Netlink, sc Sysctl, m model.Model, owned Owned) (Result, error) {
	// Sysctls first: a link whose IPv6 is enabled again takes its IPv6
	// addresses only once disable_ipv6 is 0.
	var res Result
	if sc != nil {
		applySysctls(sc, m, &res)
	}
	conv, removed, err := converge(nl, m, owned)
	conv.Changes = append(res.Changes, conv.Changes...)
	conv.Problems = append(res.Problems, conv.Problems...)
	res = conv
	if err != nil {
		return res, err
	}
	if removed {
		// Removing an address can take others with it: with
		// promote_secondaries off (the kernel's default; systemd turns it
		// on) the secondaries of its subnet and the routes through them go
		// when a primary goes, and the new address of a NIC that moved
		// inside its subnet was one of them. A second look puts back what
		// went.
		again, _, err := converge(nl, m, res.Owned)
		if err != nil {
			return res, err
		}
		res.Changes = append(res.Changes, again.Changes...)
		for _, p := range again.Problems {
			if !slices.Contains(res.Problems, p) {
				res.Problems = append(res.Problems, p)
			}
		}
		res.Owned = again.Owned
	}
	if len(res.Owned.Addresses) == 0 {
		res.Owned.Addresses = nil
	}
	res.Owned.IPv6Disabled = disabledMACs(m)
	return res, nil
}

// disabledMACs lists the MACs of the model's links with IPv6 disabled.
func disabledMACs(m model.Model) []string {
	var out []string
	for _, n := range slices.Concat(m.NICs, m.Skipped) {
		if n.Method6 == settings.Disable6 && len(n.MAC) > 0 {
			out = append(out, n.MAC.String())
		}
	}
	slices.Sort(out)
	return out
}

// applySysctls sets the model's sysctls, and gives each link in Enable6
// the namespace's defaults (net/ipv6/conf/default) for what "disable" set.
func applySysctls(sc Sysctl, m model.Model, res *Result) {
	want := slices.Clone(m.Sysctls)
	for _, e := range m.Enable6 {
		for _, leaf := range model.Disable6Leaves {
			def, err := sc.Get("net/ipv6/conf/default/" + leaf)
			if err != nil {
				res.problem(e.Var, "read the default %s: %v", leaf, err)
				continue
			}
			want = append(want, model.Sysctl{Key: "net/ipv6/conf/" + e.Dev + "/" + leaf, Value: strings.TrimSpace(def), Var: e.Var})
		}
	}
	for _, s := range want {
		cur, err := sc.Get(s.Key)
		if err != nil {
			res.problem(s.Var, "read %s: %v", s.Key, err)
			continue
		}
		if strings.TrimSpace(cur) == s.Value {
			continue
		}
		if err := sc.Set(s.Key, s.Value); err != nil {
			res.problem(s.Var, "set %s: %v", s.Key, err)
			continue
		}
		res.change("sysctl %s = %s (was %s)", strings.ReplaceAll(s.Key, "/", "."), s.Value, strings.TrimSpace(cur))
	}
}

// converge is one pass over the kernel's links: removed reports whether
// it removed an address.
func converge(nl Netlink, m model.Model, owned Owned) (res Result, removed bool, err error) {
	res = Result{Owned: Owned{Addresses: map[string][]string{}}}
	for k, v := range owned.Addresses {
		res.Owned.Addresses[k] = v
	}
	snap, err := take(nl)
	if err != nil {
		return res, false, err
	}
	app, canAppend := appenderOf(nl)
	rp := planRoutes(m, snap, canAppend)
	res.Problems = append(res.Problems, rp.problems...)
	a := &applier{nl: nl, app: app, res: &res, snap: &snap, owned: owned, all: rp.all, deleted: map[int]bool{}, nicMACs: map[string]bool{}}
	mentioned := map[int]bool{}
	for _, n := range m.Skipped {
		mentioned[n.DevIdx] = true // left alone, the agent's own leftovers too
		a.nicMACs[n.MAC.String()] = true
	}
	for _, n := range m.NICs {
		mentioned[n.DevIdx] = true
		a.nicMACs[n.MAC.String()] = true
		link, ok := snap.links[n.DevIdx]
		if !ok || n.DevIdx == 0 {
			res.problem(n.Name+"_MAC", "link %s (%s) is gone", n.Dev, n.MAC)
			continue
		}
		a.applyNIC(link, n, rp.byNIC[n.Name])
	}
	// Links the context no longer mentions: only what the agent added goes.
	for idx, link := range snap.links {
		if !mentioned[idx] {
			a.sweep(link)
		}
	}
	return res, a.removedAddr, nil
}

// applier is one Apply's state. snap.routes grows with the routes this run
// adds, so a later NIC sees them; deleted marks, by index in snap.routes,
// the routes this run removed.
type applier struct {
	nl      Netlink
	app     Appender // nil: the kernel handle cannot append
	res     *Result
	snap    *snapshot
	owned   Owned
	all     []linkWant // every route the context wants, on every NIC
	deleted map[int]bool
	// nicMACs are the MACs of the context's NICs: a bridge or VLAN that
	// shares one is swept, but the record of owned addresses under that
	// MAC is the NIC's.
	nicMACs map[string]bool
	// removedAddr: this pass removed an address.
	removedAddr bool
}

func (a *applier) applyNIC(link netlink.Link, n model.NIC, wants []wantRoute) {
	nl, res, snap, owned := a.nl, a.res, a.snap, a.owned
	attrs := link.Attrs()
	dev := attrs.Name
	if n.MTU > 0 && attrs.MTU != n.MTU {
		if err := nl.LinkSetMTU(link, n.MTU); err != nil {
			res.problem(n.Name+"_MTU", "%s: set mtu %d: %v", dev, n.MTU, err)
		} else {
			res.change("%s: mtu %d (was %d)", dev, n.MTU, attrs.MTU)
		}
	}
	if attrs.Flags&net.FlagUp == 0 {
		if err := nl.LinkSetUp(link); err != nil {
			res.problem(n.Name+"_MAC", "%s: set link up: %v", dev, err)
		} else {
			res.change("%s: link up", dev)
		}
	}

	// Addresses: add what is missing now; stale ones go last, so the link
	// never loses its addresses (and their routes) in between.
	have := map[netip.Prefix]bool{}
	for _, ka := range snap.addrs[attrs.Index] {
		if p, ok := prefixOf(ka); ok {
			have[p] = true
		}
	}
	mac := n.MAC.String()
	want := map[netip.Prefix]bool{}
	ownedNow := map[netip.Prefix]bool{}
	for _, ad := range append(append([]model.Address{}, n.Addr4...), n.Addr6...) {
		want[ad.Prefix] = true
		if have[ad.Prefix] {
			if owned.has(mac, ad.Prefix) {
				ownedNow[ad.Prefix] = true
			}
			continue
		}
		if err := nl.AddrAdd(link, &netlink.Addr{IPNet: ipNet(ad.Prefix)}); err != nil {
			res.problem(ad.Var, "%s: add address %s: %v", dev, ad.Prefix, err)
			continue
		}
		ownedNow[ad.Prefix] = true
		res.change("%s: add address %s (%s)", dev, ad.Prefix, ad.Var)
	}

	// Routes.
	for _, w := range wants {
		if matched(snap.routes, attrs.Index, w) {
			continue
		}
		// An older route of the agent's in the same place (the gateway
		// moved) is removed first, or the kernel refuses the new one. A
		// route another NIC of the context wants stays: an IPv4 route then
		// goes next to it (planRoutes let only IPv4 share a place).
		shared, foreign := false, false
		for i, r := range snap.routes {
			if a.deleted[i] || !w.slot(r) {
				continue
			}
			switch {
			case r.Protocol != model.RouteProtocol:
				foreign = true
			case a.wanted(r):
				shared = true
			default:
				if err := nl.RouteDel(&snap.routes[i]); err != nil && !errors.Is(err, unix.ESRCH) {
					res.problem(w.Var, "%s: remove old route %s: %v", dev, describeRoute(r), err)
				} else {
					res.change("%s: remove old route %s", linkName(*snap, r.LinkIndex), describeRoute(r))
				}
				a.deleted[i] = true
			}
		}
		route := w.route(attrs.Index)
		var err error
		if shared && !foreign && a.app != nil {
			err = a.app.RouteAppend(route)
		} else {
			err = nl.RouteAdd(route)
		}
		if err != nil {
			if errors.Is(err, unix.EEXIST) {
				res.problem(w.Var, "%s: route %s: the kernel has another route to %s with metric %d that the agent did not add; left alone", dev, w, w.dst, w.metric)
			} else {
				res.problem(w.Var, "%s: add route %s: %v", dev, w, err)
			}
			continue
		}
		added := *route
		added.Priority = w.kernelMetric()
		snap.routes = append(snap.routes, added)
		res.change("%s: add route %s (%s)", dev, w, w.Var)
	}
	a.sweepRoutes(attrs.Index)
	if sweepAddrs(nl, res, link, mac, want, have, owned) {
		a.removedAddr = true
	}
	res.Owned.set(mac, ownedNow)
}

// sweep removes the agent's own addresses and routes from a link the
// context does not mention (any more).
func (a *applier) sweep(link netlink.Link) {
	attrs := link.Attrs()
	have := map[netip.Prefix]bool{}
	for _, ka := range a.snap.addrs[attrs.Index] {
		if p, ok := prefixOf(ka); ok {
			have[p] = true
		}
	}
	a.sweepRoutes(attrs.Index)
	mac := attrs.HardwareAddr.String()
	if len(a.owned.Addresses[mac]) > 0 {
		// An address the agent put on a link sharing a NIC's MAC (an
		// older run chose the bridge over the NIC) goes from there too.
		if sweepAddrs(a.nl, a.res, link, mac, nil, have, a.owned) {
			a.removedAddr = true
		}
		if !a.nicMACs[mac] {
			a.res.Owned.set(mac, nil)
		}
	}
}

// sweepRoutes removes the agent's routes on a link that no NIC wants.
func (a *applier) sweepRoutes(idx int) {
	for i, r := range a.snap.routes {
		if r.LinkIndex != idx || r.Protocol != model.RouteProtocol || a.deleted[i] || a.wanted(r) {
			continue
		}
		if err := a.nl.RouteDel(&a.snap.routes[i]); err != nil && !errors.Is(err, unix.ESRCH) {
			a.res.problem("", "%s: remove route %s: %v", linkName(*a.snap, idx), describeRoute(r), err)
			continue
		}
		a.deleted[i] = true
		a.res.change("%s: remove route %s", linkName(*a.snap, idx), describeRoute(r))
	}
}

// wanted reports whether some NIC of the context wants this kernel route.
func (a *applier) wanted(r netlink.Route) bool {
	for _, w := range a.all {
		if w.matches(w.link, r) {
			return true
		}
	}
	return false
}

func sweepAddrs(nl Netlink, res *Result, link netlink.Link, mac string, want, have map[netip.Prefix]bool, owned Owned) (removed bool) {
	for _, s := range owned.Addresses[mac] {
		p, err := netip.ParsePrefix(s)
		if err != nil || want[p] || !have[p] {
			continue
		}
		if err := nl.AddrDel(link, &netlink.Addr{IPNet: ipNet(p)}); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			res.problem("", "%s: remove address %s: %v", link.Attrs().Name, p, err)
			continue
		}
		res.change("%s: remove address %s", link.Attrs().Name, p)
		removed = true
	}
	return removed
}

func matched(routes []netlink.Route, idx int, w wantRoute) bool {
	for _, r := range routes {
		if w.matches(idx, r) {
			return true
		}
	}
	return false
}

func linkName(s snapshot, idx int) string {
	if l, ok := s.links[idx]; ok {
		return l.Attrs().Name
	}
	return fmt.Sprintf("link %d", idx)
}
