package agent

import (
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/vishvananda/netlink"

	"one-contextd/context/medium"
)

// findOptions points Find at an empty fake /sys and /dev under dir.
func findOptions(dir string) medium.FindOptions {
	_ = os.MkdirAll(filepath.Join(dir, "sys/class/block"), 0o755)
	_ = os.MkdirAll(filepath.Join(dir, "dev"), 0o755)
	return medium.FindOptions{SysRoot: filepath.Join(dir, "sys"), DevRoot: filepath.Join(dir, "dev"),
		Dirs: []string{filepath.Join(dir, "context")}, Timeout: 300 * time.Millisecond, Poll: 50 * time.Millisecond}
}

// readOnlyNetlink is a kernel with no links, for runs without root: the
// network step then has nothing to match and writes nothing.
type readOnlyNetlink struct{}

func (readOnlyNetlink) LinkList() ([]netlink.Link, error) { return nil, nil }
func (readOnlyNetlink) AddrList(netlink.Link, int) ([]netlink.Addr, error) {
	return nil, nil
}
func (readOnlyNetlink) RouteListFiltered(int, *netlink.Route, uint64) ([]netlink.Route, error) {
	return nil, nil
}
func (readOnlyNetlink) LinkSetUp(netlink.Link) error              { return errReadOnly }
func (readOnlyNetlink) LinkSetMTU(netlink.Link, int) error        { return errReadOnly }
func (readOnlyNetlink) AddrAdd(netlink.Link, *netlink.Addr) error { return errReadOnly }
func (readOnlyNetlink) AddrDel(netlink.Link, *netlink.Addr) error { return errReadOnly }
func (readOnlyNetlink) RouteAdd(*netlink.Route) error             { return errReadOnly }
func (readOnlyNetlink) RouteDel(*netlink.Route) error             { return errReadOnly }

var errReadOnly = errors.New("read-only kernel")
