package kernel

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

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
	res := Result{Owned: Owned{Addresses: map[string][]string{}}}
	for k, v := range owned.Addresses {
		res.Owned.Addresses[k] = v
	}
	snap, err := take(nl)
	if err != nil {
		return res, err
	}
	mentioned := map[int]bool{}
	for _, n := range m.Skipped {
		mentioned[n.DevIdx] = true // left alone, the agent's own leftovers too
	}
	for _, n := range m.NICs {
		mentioned[n.DevIdx] = true
		link, ok := snap.links[n.DevIdx]
		if !ok || n.DevIdx == 0 {
			res.problem(n.Name+"_MAC", "link %s (%s) is gone", n.Dev, n.MAC)
			continue
		}
		applyNIC(nl, &res, snap, link, n, owned)
	}
	// Links the context no longer mentions: only what the agent added goes.
	for idx, link := range snap.links {
		if !mentioned[idx] {
			sweep(nl, &res, snap, link, owned)
		}
	}
	if sc != nil {
		for _, s := range m.Sysctls {
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
	if len(res.Owned.Addresses) == 0 {
		res.Owned.Addresses = nil
	}
	return res, nil
}

func applyNIC(nl Netlink, res *Result, snap snapshot, link netlink.Link, n model.NIC, owned Owned) {
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
	for _, a := range snap.addrs[attrs.Index] {
		if p, ok := prefixOf(a); ok {
			have[p] = true
		}
	}
	mac := n.MAC.String()
	want := map[netip.Prefix]bool{}
	ownedNow := map[netip.Prefix]bool{}
	for _, a := range append(append([]model.Address{}, n.Addr4...), n.Addr6...) {
		want[a.Prefix] = true
		if have[a.Prefix] {
			if owned.has(mac, a.Prefix) {
				ownedNow[a.Prefix] = true
			}
			continue
		}
		if err := nl.AddrAdd(link, &netlink.Addr{IPNet: ipNet(a.Prefix)}); err != nil {
			res.problem(a.Var, "%s: add address %s: %v", dev, a.Prefix, err)
			continue
		}
		ownedNow[a.Prefix] = true
		res.change("%s: add address %s (%s)", dev, a.Prefix, a.Var)
	}

	// Routes.
	wants := wantRoutes(n)
	deleted := map[int]bool{}
	for _, w := range wants {
		if matched(snap.routes, attrs.Index, w) {
			continue
		}
		// An older route of the agent's in the same place (the gateway
		// moved) is removed first, or the kernel refuses the new one.
		for i, r := range snap.routes {
			if r.Protocol == model.RouteProtocol && !deleted[i] && w.slot(r) && !wantedAnywhere(r, wants, attrs.Index) {
				if err := nl.RouteDel(&snap.routes[i]); err != nil && !errors.Is(err, unix.ESRCH) {
					res.problem(w.Var, "%s: remove old route %s: %v", dev, describeRoute(r), err)
				} else {
					res.change("%s: remove old route %s", linkName(snap, r.LinkIndex), describeRoute(r))
				}
				deleted[i] = true
			}
		}
		if err := nl.RouteAdd(w.route(attrs.Index)); err != nil {
			if errors.Is(err, unix.EEXIST) {
				res.problem(w.Var, "%s: route %s: the kernel has another route to %s with metric %d that the agent did not add; left alone", dev, w, w.dst, w.metric)
			} else {
				res.problem(w.Var, "%s: add route %s: %v", dev, w, err)
			}
			continue
		}
		res.change("%s: add route %s (%s)", dev, w, w.Var)
	}
	sweepRoutes(nl, res, snap, attrs.Index, wants, deleted)
	sweepAddrs(nl, res, link, mac, want, have, owned)
	res.Owned.set(mac, ownedNow)
}

// sweep removes the agent's own addresses and routes from a link the
// context does not mention (any more).
func sweep(nl Netlink, res *Result, snap snapshot, link netlink.Link, owned Owned) {
	attrs := link.Attrs()
	have := map[netip.Prefix]bool{}
	for _, a := range snap.addrs[attrs.Index] {
		if p, ok := prefixOf(a); ok {
			have[p] = true
		}
	}
	sweepRoutes(nl, res, snap, attrs.Index, nil, map[int]bool{})
	mac := attrs.HardwareAddr.String()
	if len(owned.Addresses[mac]) > 0 {
		sweepAddrs(nl, res, link, mac, nil, have, owned)
		res.Owned.set(mac, nil)
	}
}

func sweepRoutes(nl Netlink, res *Result, snap snapshot, idx int, wants []wantRoute, deleted map[int]bool) {
	for i, r := range snap.routes {
		if r.LinkIndex != idx || r.Protocol != model.RouteProtocol || deleted[i] || wantedAnywhere(r, wants, idx) {
			continue
		}
		if err := nl.RouteDel(&snap.routes[i]); err != nil && !errors.Is(err, unix.ESRCH) {
			res.problem("", "%s: remove route %s: %v", linkName(snap, idx), describeRoute(r), err)
			continue
		}
		deleted[i] = true
		res.change("%s: remove route %s", linkName(snap, idx), describeRoute(r))
	}
}

func sweepAddrs(nl Netlink, res *Result, link netlink.Link, mac string, want, have map[netip.Prefix]bool, owned Owned) {
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
	}
}

func matched(routes []netlink.Route, idx int, w wantRoute) bool {
	for _, r := range routes {
		if w.matches(idx, r) {
			return true
		}
	}
	return false
}

func wantedAnywhere(r netlink.Route, wants []wantRoute, idx int) bool {
	for _, w := range wants {
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
