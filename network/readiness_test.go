package network

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"one-contextd/network/render"
)

// networkdScript runs systemd-networkd in the private namespaces of the
// test over the units in $1, with a veth whose MAC is $2 (its peer up, so
// it has carrier), and prints the link's state file once networkd calls it
// configured, or after $3 tenths of a second.
const networkdScript = `set -e
mount -t tmpfs tmpfs /run
# A read-only /sys tells networkd that no udev will initialise the links.
mount -t sysfs -o ro sysfs /sys
mount --bind "$1" /etc/systemd/network
mkdir -p /run/systemd/netif/links /run/systemd/netif/leases /run/systemd/netif/lldp
chown -R systemd-network: /run/systemd/netif 2>/dev/null || true
ip link add ctx0 address "$2" type veth peer name peer0
ip link set peer0 up
ip link set lo up
/lib/systemd/systemd-networkd 2>/dev/null &
idx=$(cat /sys/class/net/ctx0/ifindex)
i=0
while [ "$i" -lt "$3" ] && ! grep -q '^ADMIN_STATE=configured' "/run/systemd/netif/links/$idx" 2>/dev/null; do
	sleep 0.1
	i=$((i + 1))
done
cat "/run/systemd/netif/links/$idx" 2>/dev/null || true
kill $!
`

// networkdState starts networkd over the units in dir and returns the
// link's state file as networkd wrote it.
func networkdState(t *testing.T, dir, mac string) string {
	t.Helper()
	// 8 s: well under the 13 s of networkd 252's router solicitation
	// time-out that the units must not wait for, well over the 0.1-2 s a
	// static link takes.
	out, stderr, err := run("timeout", "30", "unshare", "--mount", "--net", "--propagation", "private",
		"sh", "-c", networkdScript, "sh", dir, mac, "80")
	if err != nil {
		t.Fatalf("networkd in a namespace: %v: %s", err, stderr)
	}
	return out
}

var macLine = regexp.MustCompile(`(?m)^MACAddress=(\S+)$`)

// needNetworkd skips unless systemd-networkd can run in a private mount
// and network namespace with units bind-mounted over /etc/systemd/network.
func needNetworkd(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("runs systemd-networkd in private mount and network namespaces: needs root")
	}
	if _, err := os.Stat("/lib/systemd/systemd-networkd"); err != nil {
		t.Skip("systemd-networkd is not installed")
	}
	need(t, "unshare")
	if fi, err := os.Stat("/etc/systemd/network"); err != nil || !fi.IsDir() {
		t.Skip("/etc/systemd/network is missing, nothing to mount over")
	}
}

// TestNetworkdConfiguresStaticNICsAtOnce runs the real systemd-networkd over
// the units of a static IPv4 NIC whose context says nothing of IPv6 (the
// usual OpenNebula IPv4 network), written by the networkd renderer and by
// netplan generate from the netplan renderer. networkd must call the link
// configured without waiting for router advertisements that never come:
// network-online.target, and READY with it, waits for that state.
func TestNetworkdConfiguresStaticNICsAtOnce(t *testing.T) {
	needNetworkd(t)
	need(t, "ip")
	var c goldenCase
	for _, g := range goldenCases(t) {
		if g.name == "01-single-static-nic" {
			c = g
		}
	}
	if c.name == "" {
		t.Skip("shared vector 01-single-static-nic not found")
	}
	got, _ := renderCase(t, c)
	m := macLine.FindSubmatch(got[render.Networkd][0].Data)
	if m == nil {
		t.Fatalf("no MACAddress= in the networkd unit:\n%s", got[render.Networkd][0].Data)
	}
	mac := string(m[1])

	units := map[string]string{}
	dir := writeTree(t, got[render.Networkd])
	units["networkd"] = filepath.Join(dir, "etc/systemd/network")
	if _, err := os.Stat("/usr/sbin/netplan"); err == nil {
		root := writeTree(t, got[render.Netplan])
		if _, stderr, err := run("netplan", "generate", "--root-dir", root); err != nil {
			t.Fatalf("netplan generate: %v: %s", err, stderr)
		}
		// netplan matches PermanentMACAddress=; a veth has no permanent
		// address (a virtio NIC does), so the test matches the current one.
		gen := filepath.Join(root, "run/systemd/network")
		entries, _ := os.ReadDir(gen)
		for _, e := range entries {
			p := filepath.Join(gen, e.Name())
			data, _ := os.ReadFile(p)
			if err := os.WriteFile(p, []byte(strings.ReplaceAll(string(data), "PermanentMACAddress=", "MACAddress=")), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		units["netplan"] = gen
	}
	for name, dir := range units {
		t.Run(name, func(t *testing.T) {
			state := networkdState(t, dir, mac)
			if !strings.Contains(state, "ADMIN_STATE=configured") {
				t.Fatalf("networkd did not call the static link configured within 8 s (waiting for router advertisements?):\n%s", state)
			}
			if !strings.Contains(state, "IPV4_ADDRESS_STATE=routable") {
				t.Errorf("the link is configured but has no routable IPv4 address:\n%s", state)
			}
		})
	}
}
