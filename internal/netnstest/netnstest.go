// Package netnstest gives tests a throw-away network namespace with veth
// pairs of chosen MACs, and a netlink handle inside it. The test's own
// thread never enters the namespace: everything goes through the handle
// (or through `ip netns exec`), so the host's network is never touched.
package netnstest

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// NS is a named network namespace that is deleted when the test ends.
type NS struct {
	Name   string
	Handle *netlink.Handle
	t      testing.TB
}

// New creates the namespace, or skips the test when it cannot (not root,
// no `ip`).
func New(t testing.TB) *NS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("netns test: needs root to create a network namespace (runs in CI as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("netns test: the ip command (iproute2) is not installed")
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "ocd-test-" + hex.EncodeToString(b)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("open netns %s: %v", name, err)
	}
	t.Cleanup(func() { _ = h.Close() })
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", name, err)
	}
	t.Cleanup(nh.Close)
	return &NS{Name: name, Handle: nh, t: t}
}

// Veth creates a veth pair inside the namespace: name with mac (the VM's
// NIC) and peer, which is brought up so the NIC has carrier. The NIC
// itself is left down, as at boot.
func (n *NS) Veth(name, mac, peer string) netlink.Link {
	n.t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		n.t.Fatal(err)
	}
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, HardwareAddr: hw}, PeerName: peer}
	if err := n.Handle.LinkAdd(v); err != nil {
		n.t.Fatalf("add veth %s/%s: %v", name, peer, err)
	}
	p, err := n.Handle.LinkByName(peer)
	if err != nil {
		n.t.Fatal(err)
	}
	if err := n.Handle.LinkSetUp(p); err != nil {
		n.t.Fatal(err)
	}
	l, err := n.Handle.LinkByName(name)
	if err != nil {
		n.t.Fatal(err)
	}
	return l
}

// Link looks a link up by name.
func (n *NS) Link(name string) netlink.Link {
	n.t.Helper()
	l, err := n.Handle.LinkByName(name)
	if err != nil {
		n.t.Fatalf("link %s: %v", name, err)
	}
	return l
}

// Exec runs a command inside the namespace.
func (n *NS) Exec(args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", n.Name}, args...)...).CombinedOutput()
	return string(out), err
}

// Sysctl reads and writes /proc/sys inside the namespace.
type Sysctl struct{ NS *NS }

// Get reads a key relative to /proc/sys.
func (s Sysctl) Get(key string) (string, error) {
	out, err := s.NS.Exec("cat", "/proc/sys/"+key)
	return strings.TrimSpace(out), err
}

// Set writes a key relative to /proc/sys.
func (s Sysctl) Set(key, value string) error {
	_, err := s.NS.Exec("sh", "-c", `echo "$1" > "/proc/sys/$2"`, "sh", value, key)
	return err
}
