package render

import (
	"fmt"
	"path"
	"strings"

	"one-contextd/context/settings"
	"one-contextd/network/model"
)

// InterfacesPath is the agent's ifupdown file; /etc/network/interfaces
// must source it (see InterfacesSourced).
const InterfacesPath = "/etc/network/interfaces.d/one-context"

// RenderInterfaces renders one ifupdown file for every NIC. ifupdown knows
// interfaces only by name, so these are the model's device names.
func RenderInterfaces(m model.Model) []File {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n", Header)
	for _, n := range m.NICs {
		fmt.Fprintf(&b, "\n# %s (%s)\nauto %s\n", n.Name, n.MAC, n.Dev)
		mtuDone := false
		switch {
		case n.Static4():
			fmt.Fprintf(&b, "iface %s inet static\n", n.Dev)
			fmt.Fprintf(&b, "    address %s\n", n.Addr4[0].Prefix)
			// The network of the NIC's own address; a NIC whose own
			// address was bad (its aliases' remain) has none.
			if n.Network4.IsValid() && n.Addr4[0].Var == n.Name+"_IP" {
				fmt.Fprintf(&b, "    network %s\n", n.Network4)
			}
			if n.Gateway4.Valid() {
				fmt.Fprintf(&b, "    gateway %s\n    metric %d\n", n.Gateway4.Via, n.Gateway4.Metric)
			}
			if n.MTU > 0 {
				fmt.Fprintf(&b, "    mtu %d\n", n.MTU)
				mtuDone = true
			}
			for _, r := range n.Routes {
				fmt.Fprintf(&b, "    up ip route replace %s via %s dev %s\n", r.Dst, r.Via, n.Dev)
			}
			if n.OneGate.IsValid() {
				fmt.Fprintf(&b, "    up ip route replace %s/32 dev %s scope link\n", n.OneGate, n.Dev)
			}
		case n.Method4 == settings.DHCP4:
			fmt.Fprintf(&b, "iface %s inet dhcp\n", n.Dev)
		default:
			fmt.Fprintf(&b, "iface %s inet manual\n", n.Dev)
		}
		if !mtuDone && n.MTU > 0 {
			fmt.Fprintf(&b, "    pre-up ip link set dev %s mtu %d\n", n.Dev, n.MTU)
		}
		// Aliases: one more stanza per address, as ifupdown allows, after
		// the static stanza's own address; a DHCP or manual stanza has
		// none of its own, so every address is an alias added when up.
		if n.Static4() {
			for _, a := range n.Addr4[1:] {
				fmt.Fprintf(&b, "iface %s inet static\n    address %s\n", n.Dev, a.Prefix)
			}
		} else {
			for _, a := range n.Addr4 {
				fmt.Fprintf(&b, "    up ip addr replace %s dev %s\n", a.Prefix, n.Dev)
			}
		}
		switch {
		case n.Static6():
			fmt.Fprintf(&b, "iface %s inet6 static\n    address %s\n", n.Dev, n.Addr6[0].Prefix)
			if n.Gateway6.Valid() {
				fmt.Fprintf(&b, "    gateway %s\n    metric %d\n", n.Gateway6.Via, n.Gateway6.Metric)
			}
			b.WriteString("    autoconf 0\n    accept_ra 0\n")
			for _, a := range n.Addr6[1:] {
				fmt.Fprintf(&b, "iface %s inet6 static\n    address %s\n", n.Dev, a.Prefix)
			}
		case n.Method6 == settings.Auto6 || n.Method6 == settings.DHCP6:
			method := "auto"
			if n.Method6 == settings.DHCP6 {
				method = "dhcp"
			}
			fmt.Fprintf(&b, "iface %s inet6 %s\n    privext 0\n", n.Dev, method)
			fmt.Fprintf(&b, "    pre-up echo 0 > /proc/sys/net/ipv6/conf/%s/use_tempaddr\n", n.Dev)
			for _, a := range n.Addr6 {
				fmt.Fprintf(&b, "    up ip -6 addr replace %s dev %s\n", a.Prefix, n.Dev)
			}
		default:
			for _, a := range n.Addr6 {
				fmt.Fprintf(&b, "    up ip -6 addr replace %s dev %s\n", a.Prefix, n.Dev)
			}
		}
	}
	return []File{{Path: InterfacesPath, Data: []byte(b.String()), Mode: 0o644}}
}

// InterfacesSourced reports whether /etc/network/interfaces (given as
// its content) already sources the agent's file.
func InterfacesSourced(main []byte) bool {
	for _, line := range strings.Split(string(main), "\n") {
		line, _, _ = strings.Cut(line, "#")
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		switch f[0] {
		case "source":
			if ok, _ := globMatch(f[1], InterfacesPath); ok {
				return true
			}
		case "source-directory":
			if strings.TrimSuffix(f[1], "/") == "/etc/network/interfaces.d" || strings.TrimSuffix(f[1], "/") == "interfaces.d" {
				return true
			}
		}
	}
	return false
}

// SourceLine is what the agent appends to /etc/network/interfaces when it
// does not source the agent's file yet.
const SourceLine = "source " + InterfacesPath + "  # added by one-contextd\n"

// InterfacesMain is /etc/network/interfaces when the image has none.
func InterfacesMain() []byte {
	return []byte("# " + Header + "\nauto lo\niface lo inet loopback\n\n" + SourceLine)
}

func globMatch(pattern, p string) (bool, error) {
	if !strings.HasPrefix(pattern, "/") {
		pattern = "/etc/network/" + pattern // relative to the sourcing file's directory
	}
	return path.Match(pattern, p)
}
