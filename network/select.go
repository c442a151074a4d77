package network

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/spf13/afero"

	"one-contextd/context/settings"
	"one-contextd/fsroot"
	"one-contextd/network/model"
	"one-contextd/network/render"
)

// OSRelease is what the selection needs of /etc/os-release.
type OSRelease struct {
	ID        string
	VersionID string
	IDLike    []string
}

// ReadOSRelease reads /etc/os-release (else /usr/lib/os-release) under the root.
func ReadOSRelease(r *fsroot.Root) OSRelease {
	var o OSRelease
	data, err := r.ReadFile("/etc/os-release")
	if err != nil {
		if data, err = r.ReadFile("/usr/lib/os-release"); err != nil {
			return o
		}
	}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		if u, err := strconv.Unquote(v); err == nil {
			v = u
		} else {
			v = strings.Trim(v, `'"`)
		}
		switch k {
		case "ID":
			o.ID = strings.ToLower(v)
		case "VERSION_ID":
			o.VersionID = v
		case "ID_LIKE":
			o.IDLike = strings.Fields(strings.ToLower(v))
		}
	}
	return o
}

// DefaultTypes is one-context's default NETCFG_TYPE list per distribution.
func DefaultTypes(o OSRelease) []render.Type {
	if l := defaultsFor(o.ID, o.VersionID); l != nil {
		return l
	}
	for _, like := range o.IDLike {
		if l := defaultsFor(like, o.VersionID); l != nil {
			return l
		}
	}
	return []render.Type{render.None}
}

func defaultsFor(id, version string) []render.Type {
	major, _, _ := strings.Cut(version, ".")
	switch id {
	case "debian":
		if major == "12" {
			return []render.Type{render.Netplan, render.Networkd, render.Interfaces, render.NM}
		}
		return []render.Type{render.Interfaces, render.Netplan, render.NM, render.Networkd}
	case "devuan":
		return []render.Type{render.Interfaces, render.Netplan, render.NM, render.Networkd}
	case "ubuntu":
		return []render.Type{render.Netplan, render.Networkd, render.Interfaces, render.NM}
	case "fedora", "centos", "rhel", "almalinux", "ol", "rocky":
		return []render.Type{render.NM, render.Networkd}
	case "altlinux":
		return []render.Type{render.Networkd, render.NM}
	case "opensuse-leap", "sles", "sled":
		if major == "16" {
			return []render.Type{render.NM, render.Networkd}
		}
		return []render.Type{render.None}
	case "alpine":
		return []render.Type{render.Interfaces}
	}
	return nil
}

// hasTool reports whether the image under the root has the command.
func hasTool(r *fsroot.Root, name string) bool {
	for _, d := range []string{"/usr/sbin/", "/usr/bin/", "/sbin/", "/bin/"} {
		if fi, err := r.Fs().Stat(d + name); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return true
		}
	}
	return false
}

// available is one-context's check that a manager is there at all.
func available(r *fsroot.Root, t render.Type, o OSRelease) bool {
	switch t {
	case render.Netplan:
		return hasTool(r, "netplan")
	case render.Networkd:
		return hasTool(r, "networkctl")
	case render.NM:
		return hasTool(r, "nmcli")
	case render.Interfaces:
		switch o.ID {
		case "debian", "ubuntu", "devuan", "alpine":
			return true
		}
		for _, l := range o.IDLike {
			if l == "debian" || l == "ubuntu" {
				return true
			}
		}
	case render.None:
		return true
	}
	return false
}

// managing returns, per manager, how many of the links it manages now,
// from the state files the managers keep under /run.
func managing(r *fsroot.Root, links []model.Link) map[render.Type]int {
	out := map[render.Type]int{}
	for _, l := range links {
		if st, err := r.ReadFile(fmt.Sprintf("/run/systemd/netif/links/%d", l.Index)); err == nil {
			s := string(st)
			if strings.Contains(s, "NETWORK_FILE=/run/systemd/network/10-netplan") {
				out[render.Netplan]++
			} else if strings.Contains(s, "NETWORK_FILE=") && !strings.Contains(s, "ADMIN_STATE=unmanaged") {
				out[render.Networkd]++
			}
		}
		if st, err := r.ReadFile(fmt.Sprintf("/run/NetworkManager/devices/%d", l.Index)); err == nil && strings.Contains(string(st), "managed=true") {
			out[render.NM]++
		}
		if r.Exists("/run/network/ifstate." + l.Name) {
			out[render.Interfaces]++
		}
	}
	if len(out) > 0 {
		return out
	}
	// Nothing runs yet: the local stage runs before every manager starts.
	// The manager systemd will start is the one whose unit is enabled.
	for unit, t := range map[string]render.Type{
		"networking.service":       render.Interfaces,
		"systemd-networkd.service": render.Networkd,
		"NetworkManager.service":   render.NM,
	} {
		if enabled(r, unit) {
			out[t] = 1
		}
	}
	// netplan hands its files to networkd or NetworkManager; an image
	// that has netplan configured uses it for whichever of them is enabled.
	if (out[render.Networkd] > 0 || out[render.NM] > 0) && hasTool(r, "netplan") && hasOwnNetplanFile(r) {
		out[render.Netplan] = 1
	}
	return out
}

// enabled reports whether a systemd unit is enabled under the root: a link
// in some .wants directory of /etc/systemd/system.
func enabled(r *fsroot.Root, unit string) bool {
	matches, _ := afero.Glob(r.Fs(), "/etc/systemd/system/*.wants/"+unit)
	return len(matches) > 0
}

// hasOwnNetplanFile reports whether the image has a netplan file of its
// own (not the agent's).
func hasOwnNetplanFile(r *fsroot.Root) bool {
	matches, _ := afero.Glob(r.Fs(), "/etc/netplan/*.yaml")
	for _, m := range matches {
		if !strings.HasSuffix(m, "/50-one-context.yaml") {
			return true
		}
	}
	return false
}

// Selection is the chosen manager and how it was chosen.
type Selection struct {
	Type  render.Type
	Trace string // one line: candidates, checks and evidence
}

// Select picks the manager: the first available candidate. When the list is
// the distribution's default (not asked for), a candidate that the state
// under /run shows managing the NICs wins over the earlier ones.
func Select(r *fsroot.Root, cands []render.Type, asked bool, o OSRelease, links []model.Link) (Selection, error) {
	var trace []string
	trace = append(trace, fmt.Sprintf("candidates=%s", joinTypes(cands)))
	if !asked {
		trace = append(trace, "from=os-release:"+o.ID+o.VersionID)
	}
	evidence := managing(r, links)
	var first render.Type
	for _, c := range cands {
		ok := available(r, c, o)
		trace = append(trace, fmt.Sprintf("%s=%s", c, map[bool]string{true: "present", false: "absent"}[ok]))
		if ok && first == "" {
			first = c
		}
	}
	if first == "" {
		return Selection{Trace: strings.Join(trace, " ")}, fmt.Errorf("no network manager of %s is installed", joinTypes(cands))
	}
	chosen := first
	if evidence[first] == 0 {
		for _, c := range cands {
			if available(r, c, o) && evidence[c] > 0 {
				trace = append(trace, fmt.Sprintf("%s-manages=%d", c, evidence[c]))
				if !asked {
					chosen = c
				}
				break
			}
		}
	}
	trace = append(trace, "chosen="+string(chosen))
	return Selection{Type: chosen, Trace: strings.Join(trace, " ")}, nil
}

func joinTypes(ts []render.Type) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = string(t)
	}
	return strings.Join(s, ",")
}

// netplanBackend is NETCFG_NETPLAN_RENDERER, or one-context's default:
// networkd when networkctl exists, else NetworkManager when nmcli does.
func netplanBackend(nw settings.Network, r *fsroot.Root) string {
	if nw.NetplanRenderer != "" {
		return nw.NetplanRenderer
	}
	if r != nil && !hasTool(r, "networkctl") && hasTool(r, "nmcli") {
		return "NetworkManager"
	}
	return "networkd"
}

func onegateAddr(g settings.OneGate) netip.Addr {
	a, _ := g.LinkLocalAddr()
	return a
}
