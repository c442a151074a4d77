// Package kernel converges the kernel's links, addresses and routes on the
// network model through netlink, and reads them back to verify. It issues
// only the requests the difference needs: a run on a converged kernel
// makes dump requests and nothing else.
package kernel

import (
	"errors"

	"github.com/vishvananda/netlink"
)

// Netlink is the part of *netlink.Handle the applier uses. Tests and the
// benchmark wrap it in a Counter to count requests.
type Netlink interface {
	LinkList() ([]netlink.Link, error)
	AddrList(link netlink.Link, family int) ([]netlink.Addr, error)
	RouteListFiltered(family int, filter *netlink.Route, filterMask uint64) ([]netlink.Route, error)
	LinkSetUp(link netlink.Link) error
	LinkSetMTU(link netlink.Link, mtu int) error
	AddrAdd(link netlink.Link, addr *netlink.Addr) error
	AddrDel(link netlink.Link, addr *netlink.Addr) error
	RouteAdd(route *netlink.Route) error
	RouteDel(route *netlink.Route) error
}

var _ Netlink = (*netlink.Handle)(nil)

// Counter counts the requests that pass through it.
type Counter struct {
	NL     Netlink
	Reads  int // dump requests
	Writes int // requests that change the kernel
}

// LinkList implements Netlink.
func (c *Counter) LinkList() ([]netlink.Link, error) { c.Reads++; return c.NL.LinkList() }

// AddrList implements Netlink.
func (c *Counter) AddrList(l netlink.Link, family int) ([]netlink.Addr, error) {
	c.Reads++
	return c.NL.AddrList(l, family)
}

// RouteListFiltered implements Netlink.
func (c *Counter) RouteListFiltered(family int, f *netlink.Route, mask uint64) ([]netlink.Route, error) {
	c.Reads++
	return c.NL.RouteListFiltered(family, f, mask)
}

// LinkSetUp implements Netlink.
func (c *Counter) LinkSetUp(l netlink.Link) error { c.Writes++; return c.NL.LinkSetUp(l) }

// LinkSetMTU implements Netlink.
func (c *Counter) LinkSetMTU(l netlink.Link, mtu int) error {
	c.Writes++
	return c.NL.LinkSetMTU(l, mtu)
}

// AddrAdd implements Netlink.
func (c *Counter) AddrAdd(l netlink.Link, a *netlink.Addr) error {
	c.Writes++
	return c.NL.AddrAdd(l, a)
}

// AddrDel implements Netlink.
func (c *Counter) AddrDel(l netlink.Link, a *netlink.Addr) error {
	c.Writes++
	return c.NL.AddrDel(l, a)
}

// RouteAdd implements Netlink.
func (c *Counter) RouteAdd(r *netlink.Route) error { c.Writes++; return c.NL.RouteAdd(r) }

// RouteAppend implements Appender when the wrapped Netlink does.
func (c *Counter) RouteAppend(r *netlink.Route) error {
	a, ok := c.NL.(Appender)
	if !ok {
		return errors.New("route append: not supported by this netlink handle")
	}
	c.Writes++
	return a.RouteAppend(r)
}

// RouteDel implements Netlink.
func (c *Counter) RouteDel(r *netlink.Route) error { c.Writes++; return c.NL.RouteDel(r) }

// dumpRetries bounds retries of a dump the kernel interrupted because the
// table changed under it.
const dumpRetries = 5

func retry[T any](f func() ([]T, error)) ([]T, error) {
	var out []T
	var err error
	for i := 0; i < dumpRetries; i++ {
		out, err = f()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return out, err
		}
	}
	return out, err
}
