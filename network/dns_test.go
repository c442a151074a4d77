package network

import (
	"os"
	"path/filepath"
	"testing"

	"one-contextd/internal/netnstest"
	"one-contextd/network/resolv"
	"one-contextd/runner"
)

// DNS removed from the context: the step takes its systemd-resolved
// drop-in back and restarts resolved, as it does when it writes one.
func TestNetnsApplyDNSRemoved(t *testing.T) {
	ns := netnstest.New(t)
	ns.Veth("ens3", "02:00:c0:00:02:0a", "p0")
	root := imageRoot(t, "networkctl")
	if err := os.Symlink("../run/systemd/resolve/stub-resolv.conf", filepath.Join(root.Dir(), "etc/resolv.conf")); err != nil {
		t.Fatal(err)
	}
	lines := []string{"ETH0_MAC='02:00:c0:00:02:0a'", "ETH0_IP='192.0.2.10'", "NETCFG_TYPE='networkd'"}
	runApply(t, ns, root, &runner.Fake{}, buildCtx(t, append(lines, "ETH0_DNS='192.0.2.53'")...))
	if !root.Exists(resolv.ResolvedDropIn) {
		t.Fatal("drop-in not written")
	}
	fake := &runner.Fake{}
	sr := runApply(t, ns, root, fake, buildCtx(t, lines...))
	if root.Exists(resolv.ResolvedDropIn) {
		t.Error("the drop-in stays after DNS left the context")
	}
	if !hasLine(sr.Changes, "dns: remove "+resolv.ResolvedDropIn+" (no nameservers in the context)") {
		t.Errorf("changes: %v", sr.Changes)
	}
	if got := fake.Commands(); len(got) != 1 || got[0] != "systemctl try-reload-or-restart systemd-resolved.service" {
		t.Errorf("commands = %v, want the resolved restart only", got)
	}
}
