package kernel

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"

	"one-contextd/network/model"
)

// Appender adds a route next to others with the same destination and
// metric (NLM_F_APPEND instead of NLM_F_EXCL). *netlink.Handle and a
// Counter around one implement it; a Netlink without it gets one route per
// destination and metric.
type Appender interface {
	RouteAppend(route *netlink.Route) error
}

var _ Appender = (*netlink.Handle)(nil)

// appenderOf returns nl's Appender, looking through a Counter.
func appenderOf(nl Netlink) (Appender, bool) {
	if c, ok := nl.(*Counter); ok {
		if _, ok := appenderOf(c.NL); !ok {
			return nil, false
		}
		return c, true
	}
	a, ok := nl.(Appender)
	return a, ok
}

// linkWant is a wanted route with the link it goes through.
type linkWant struct {
	wantRoute
	link int
}

// routePlan is which routes every NIC gets.
type routePlan struct {
	byNIC    map[string][]wantRoute // by context name ("ETH0")
	all      []linkWant
	problems []model.Problem
}

type slotKey struct {
	dst    netip.Prefix
	metric int
}

// planRoutes settles, before anything changes, the routes of every NIC
// whose link is there, so that no NIC removes a route another one wants.
// Two NICs may want the same destination and metric (two gateways without
// a metric). The kernel keeps two such IPv4 routes on different links
// when the second is appended: both are kept. Two IPv6 ones it merges
// into one multipath route, or refuses: the first NIC in context order
// keeps its route, as it keeps the default route in model.Model.Default6,
// and the later one is a problem naming its variable.
func planRoutes(m model.Model, snap snapshot, canAppend bool) routePlan {
	p := routePlan{byNIC: map[string][]wantRoute{}}
	type claim struct {
		nic, dev, v string
		link        int
	}
	claims := map[slotKey]claim{}
	for _, n := range m.NICs {
		if _, ok := snap.links[n.DevIdx]; !ok || n.DevIdx == 0 {
			continue
		}
		for _, w := range wantRoutes(n) {
			k := slotKey{w.dst, w.kernelMetric()}
			c, taken := claims[k]
			switch {
			case !taken:
				claims[k] = claim{n.Name, n.Dev, w.Var, n.DevIdx}
			case c.link == n.DevIdx:
				p.problem(w.Var, "%s: route %s: %s already asks for a route to %s with metric %d on this link; left out", n.Dev, w, c.v, w.dst, w.kernelMetric())
				continue
			case w.dst.Addr().Is4() && canAppend:
				// Both kept: the kernel uses the first, the other is there
				// when the first's link goes.
			default:
				why := "the kernel keeps only one"
				if w.dst.Addr().Is6() {
					why = "a second IPv6 one would make the kernel spread traffic over both links (one multipath route)"
				}
				hint := ""
				if w.metricVar != "" {
					hint = fmt.Sprintf("; give %s another value to keep both", w.metricVar)
				}
				p.problem(w.Var, "%s: route %s: %s already has the route to %s with metric %d (on %s) and %s; left out%s", n.Dev, w, c.v, w.dst, w.kernelMetric(), c.dev, why, hint)
				continue
			}
			p.byNIC[n.Name] = append(p.byNIC[n.Name], w)
			p.all = append(p.all, linkWant{w, n.DevIdx})
		}
	}
	return p
}

func (p *routePlan) problem(v, format string, args ...any) {
	p.problems = append(p.problems, model.Problem{Var: v, Msg: fmt.Sprintf(format, args...)})
}
