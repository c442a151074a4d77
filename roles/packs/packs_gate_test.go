package packs

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"

	"github.com/vishvananda/netns"

	"one-contextd/onegate/cli"
	"one-contextd/onegate/fakegate"
	"one-contextd/roles"
)

// TestMain makes the test binary also the onegate command: invoked
// through a symlink named onegate it is the agent's `onegate` (the same
// cli.Main that `one-contextd onegate` runs), so the packs' publish and
// look-up steps talk to a fake OneGate with the real client.
func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == "onegate" {
		os.Exit(cli.Main(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// gateToken is every lab VM's OneGate token.
const gateToken = "lab-onegate-token"

// labGate is a fake OneGate serving inside a namespace, with the onegate
// command the VMs' scripts use.
type labGate struct {
	srv *fakegate.Server
	cmd string // the onegate symlink
}

// startGate serves a fake OneGate at addr (ip:port) inside the namespace
// ns, so the VMs' namespaces reach it over their links, and makes the
// onegate command in dir.
func startGate(t testing.TB, ns, addr, dir string) *labGate {
	t.Helper()
	type result struct {
		srv *fakegate.Server
		err error
	}
	ch := make(chan result)
	go func() {
		// The thread enters ns only to create the listening socket (which
		// then serves from any thread) and goes back. Were the way back to
		// fail, the thread stays locked and ends with this goroutine.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer orig.Close()
		h, err := netns.GetFromName(ns)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			ch <- result{err: err}
			return
		}
		s, err := fakegate.Listen(addr, nil)
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		ch <- result{s, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("fake OneGate in %s: %v", ns, r.err)
	}
	t.Cleanup(func() { _ = r.srv.Close() })
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	g := &labGate{srv: r.srv, cmd: filepath.Join(dir, "bin", "onegate")}
	if err := os.MkdirAll(filepath.Dir(g.cmd), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(self, g.cmd); err != nil {
		t.Fatal(err)
	}
	return g
}

// env is what a VM's scripts need to reach the gate (VMID is in the
// context).
func (g *labGate) env() []string {
	return []string{"ONEGATE_CMD=" + g.cmd, "ONEGATE_ENDPOINT=" + g.srv.URL, "ONEGATE_TOKEN=" + gateToken}
}

// setService makes the gate's VMs and OneFlow service match svc: a VM for
// each node not known yet, the roles with their VMs.
func (g *labGate) setService(t testing.TB, svc *roles.Service) {
	t.Helper()
	id, _ := strconv.Atoi(svc.ID)
	spec := fakegate.ServiceSpec{ID: id, Name: svc.Name}
	for _, r := range svc.Roles {
		rs := fakegate.RoleSpec{Name: r.Name, Parents: r.Parents}
		for _, n := range r.Nodes {
			vmid, _ := strconv.Atoi(n.VMID)
			if _, _, known := g.srv.Gate.VMState(vmid); !known {
				if err := g.srv.Gate.AddVM(vmid, r.Name+"_"+n.VMID, gateToken, n.IPs...); err != nil {
					t.Fatal(err)
				}
			}
			rs.VMs = append(rs.VMs, vmid)
		}
		spec.Roles = append(spec.Roles, rs)
	}
	if err := g.srv.Gate.SetService(spec); err != nil {
		t.Fatal(err)
	}
}

// published is the VM's TLS_FINGERPRINT attribute at the gate.
func (g *labGate) published(vmid string) string {
	id, _ := strconv.Atoi(vmid)
	v, _ := g.srv.Gate.VMAttr(id, "TLS_FINGERPRINT")
	return v
}

// publish sets the attribute, as if the VM had published fp.
func (g *labGate) publish(t testing.TB, vmid, fp string) {
	t.Helper()
	id, _ := strconv.Atoi(vmid)
	if err := g.srv.Gate.SetVMAttr(id, "TLS_FINGERPRINT", fp); err != nil {
		t.Fatal(err)
	}
}
