package kernel

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"golang.org/x/sys/unix"

	"one-contextd/network/model"
)

// Diff is one way the kernel differs from the model.
type Diff struct {
	NIC string // "ETH0"
	Var string // the variable whose setting is missing
	Msg string
}

func (d Diff) String() string { return d.Var + ": " + d.Msg }

// Verify reads the kernel back and lists every difference from the model,
// per NIC and variable. Dynamic families (DHCP, SLAAC) are not checked
// beyond the link; their addresses come later from the network.
func Verify(nl Netlink, sc Sysctl, m model.Model) ([]Diff, error) {
	snap, err := take(nl)
	if err != nil {
		return nil, err
	}
	_, canAppend := appenderOf(nl)
	rp := planRoutes(m, snap, canAppend) // its problems are Apply's to report
	var out []Diff
	add := func(n model.NIC, v, format string, args ...any) {
		out = append(out, Diff{NIC: n.Name, Var: v, Msg: n.Dev + ": " + fmt.Sprintf(format, args...)})
	}
	for _, n := range m.NICs {
		link, ok := snap.links[n.DevIdx]
		if !ok {
			add(n, n.Name+"_MAC", "no link with index %d", n.DevIdx)
			continue
		}
		a := link.Attrs()
		if a.HardwareAddr.String() != n.MAC.String() {
			add(n, n.Name+"_MAC", "link has MAC %s, want %s", a.HardwareAddr, n.MAC)
		}
		if a.Flags&net.FlagUp == 0 {
			add(n, n.Name+"_MAC", "link is down")
		}
		if n.MTU > 0 && a.MTU != n.MTU {
			add(n, n.Name+"_MTU", "mtu is %d, want %d", a.MTU, n.MTU)
		}
		have := map[netip.Prefix]int{}
		for _, ka := range snap.addrs[a.Index] {
			if p, ok := prefixOf(ka); ok {
				have[p] = ka.Flags
			}
		}
		for _, want := range append(append([]model.Address{}, n.Addr4...), n.Addr6...) {
			flags, ok := have[want.Prefix]
			switch {
			case !ok:
				add(n, want.Var, "address %s is missing", want.Prefix)
			case flags&unix.IFA_F_DADFAILED != 0:
				add(n, want.Var, "address %s failed duplicate address detection", want.Prefix)
			}
		}
		for _, w := range rp.byNIC[n.Name] {
			if !matched(snap.routes, a.Index, w) {
				add(n, w.Var, "route %s is missing", w)
			}
		}
	}
	if sc != nil {
		for _, s := range m.Sysctls {
			cur, err := sc.Get(s.Key)
			if err != nil {
				out = append(out, Diff{Var: s.Var, Msg: fmt.Sprintf("read %s: %v", s.Key, err)})
			} else if strings.TrimSpace(cur) != s.Value {
				out = append(out, Diff{Var: s.Var, Msg: fmt.Sprintf("%s is %s, want %s", strings.ReplaceAll(s.Key, "/", "."), strings.TrimSpace(cur), s.Value)})
			}
		}
	}
	return out, nil
}
