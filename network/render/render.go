// Package render turns the network model into the files of a network
// manager: netplan, NetworkManager keyfiles, systemd-networkd units and
// ifupdown's interfaces. Each renderer is a pure function of the model;
// the same model always gives the same bytes.
package render

import (
	"fmt"
	"io/fs"
	"net/netip"
	"sort"
	"strings"

	"one-contextd/network/model"
)

// Header starts every file the agent writes; it marks the file as the
// agent's own.
const Header = "Written by one-contextd from the OpenNebula context; changes are overwritten."

// File is one rendered file.
type File struct {
	Path string // absolute, inside the root
	Data []byte
	Mode fs.FileMode
}

// Type is a renderer name, as in NETCFG_TYPE.
type Type string

// The renderers.
const (
	Netplan    Type = "netplan"
	NM         Type = "nm"
	Networkd   Type = "networkd"
	Interfaces Type = "interfaces"
	None       Type = "none"
)

// Types lists the renderers that write files.
var Types = []Type{Netplan, NM, Networkd, Interfaces}

// Options are the renderer settings outside the model.
type Options struct {
	// NetplanRenderer is netplan's backend: "networkd" or "NetworkManager".
	NetplanRenderer string
}

// Render renders the model for type t. The problems name the variables
// this renderer had to leave out of its files (the model's own problems
// are Plan's).
func Render(t Type, m model.Model, o Options) ([]File, []model.Problem, error) {
	switch t {
	case Netplan:
		return RenderNetplan(m, o), nil, nil
	case NM:
		files, problems := RenderNM(m)
		return files, problems, nil
	case Networkd:
		return RenderNetworkd(m), nil, nil
	case Interfaces:
		return RenderInterfaces(m), nil, nil
	case None:
		return nil, nil, nil
	}
	return nil, nil, fmt.Errorf("unknown network configuration type %q", t)
}

// Owned reports whether p is a path only the renderer of type t writes,
// so a stale one (for a NIC that is gone) may be removed.
func Owned(t Type, p string) bool {
	switch t {
	case Netplan:
		return p == NetplanPath
	case NM:
		return strings.HasPrefix(p, NMDir+"/"+nmPrefix) && strings.HasSuffix(p, ".nmconnection")
	case Networkd:
		return strings.HasPrefix(p, NetworkdDir+"/"+networkdPrefix) && strings.HasSuffix(p, ".network")
	case Interfaces:
		return p == InterfacesPath
	}
	return false
}

// OwnedDirs are the directories where the renderers' own files live.
func OwnedDirs() []string {
	return []string{"/etc/netplan", NMDir, NetworkdDir, "/etc/network/interfaces.d"}
}

// Sysctls renders the IPv6 "disable" settings for /etc/sysctl.d; nil
// when there are none.
func Sysctls(m model.Model) []byte {
	if len(m.Sysctls) == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n", Header)
	for _, s := range m.Sysctls {
		fmt.Fprintf(&b, "%s = %s\n", SysctlName(s.Key), s.Value)
	}
	return []byte(b.String())
}

// SysctlName is how /etc/sysctl.d spells key: dotted, unless a part
// holds a dot itself (a link named eth0.100), then with slashes, which
// both systemd-sysctl and procps read as a path when the name starts so.
func SysctlName(key string) string {
	if strings.Contains(key, ".") {
		return key
	}
	return strings.ReplaceAll(key, "/", ".")
}

// SysctlPath is where the IPv6 "disable" sysctls are persisted.
const SysctlPath = "/etc/sysctl.d/50-one-context.conf"

func prefixes(as []model.Address) []netip.Prefix {
	out := make([]netip.Prefix, len(as))
	for i, a := range as {
		out[i] = a.Prefix
	}
	return out
}

func addrStrings(as []netip.Addr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}

func sortedFiles(fs []File) []File {
	sort.Slice(fs, func(i, j int) bool { return fs[i].Path < fs[j].Path })
	return fs
}
