package packs

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"one-contextd/runner"
)

// nftRuleset is the namespace's whole nftables ruleset.
func nftRuleset(t testing.TB, ns string) string {
	t.Helper()
	out, err := inNs(ns, "nft", "list", "ruleset")
	if err != nil {
		t.Fatalf("nft list ruleset in %s: %v: %s", ns, err, out)
	}
	return out
}

// refused asserts that a connection from ns to ip:port is refused (the
// pack's rules answer a TCP reset).
func refused(t testing.TB, from, ns, ip string, port int) {
	t.Helper()
	err := tcpConnect(ns, ip, port)
	if err == nil {
		t.Errorf("%s (%s) reaches %s:%d; want refused", from, ns, ip, port)
	} else if !strings.Contains(err.Error(), "refused") {
		t.Errorf("%s → %s:%d: %v; want connection refused", from, ip, port, err)
	}
}

func allowed(t testing.TB, from, ns, ip string, port int) {
	t.Helper()
	if err := tcpConnect(ns, ip, port); err != nil {
		t.Errorf("%s → %s:%d: %v; want accepted", from, ip, port, err)
	}
}

// TestWebappFirewall runs the three tiers with FIREWALL=YES: each VM's
// service port accepts the service's own VMs (and, for the frontend, the
// client in FIREWALL_ALLOW) and refuses a VM outside the service; the
// rules follow a scale-up through Reconfigure, a second run leaves them
// as they are, and FIREWALL=NO removes them.
func TestWebappFirewall(t *testing.T) {
	if _, ok := runner.LookPath("nft"); !ok {
		t.Skip("nft not found (apt-get install nftables)")
	}
	tt := newThreeTier(t, "f"+strconv.Itoa(os.Getpid()%100000), tierOptions{
		backends: 2, common: "FIREWALL='YES'\n", front: "FIREWALL_ALLOW='" + clientIP + "/32'\n"})
	outside := tt.lab.addVM(t, "outside", outsideIP)
	tt.applyAll(t)

	// The application works through every tier's firewall.
	seen, msg := tt.backendsSeen(t, "http://"+frontIP+"/", 4)
	if len(seen) != 2 || msg != "hello from the database" {
		t.Fatalf("through the firewalls: %v %q", seen, msg)
	}
	for _, c := range []struct {
		ns, table string
	}{{tt.db.ns, "one_context_database"}, {tt.backends[0].ns, "one_context_backend"}, {tt.front.ns, "one_context_frontend"}} {
		if rs := nftRuleset(t, c.ns); !strings.Contains(rs, "table inet "+c.table+" {") {
			t.Errorf("%s: no table inet %s:\n%s", c.ns, c.table, rs)
		}
	}
	b1 := tt.backends[0]
	// A VM outside the service is refused on every tier's port.
	refused(t, "outsider", outside, dbIP, 5432)
	refused(t, "outsider", outside, b1.ip, 8080)
	refused(t, "outsider", outside, frontIP, 80)
	// The client is allowed at the frontend only.
	allowed(t, "client", tt.lab.bridge, frontIP, 80)
	refused(t, "client", tt.lab.bridge, b1.ip, 8080)
	refused(t, "client", tt.lab.bridge, dbIP, 5432)
	// Members are allowed.
	allowed(t, "backend 1", b1.ns, dbIP, 5432)
	allowed(t, "frontend", tt.front.ns, b1.ip, 8080)
	allowed(t, "frontend", tt.front.ns, dbIP, 5432)
	// Other ports are not the pack's business.
	if err := tcpConnect(outside, dbIP, 5433); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("outsider → %s:5433 (nothing listens): %v", dbIP, err)
	}

	// A second run replaces nothing.
	before := map[string]string{}
	for _, v := range []*vm{tt.db, b1, tt.front} {
		before[v.ns] = nftRuleset(t, v.ns)
	}
	tt.applyAll(t)
	for _, v := range []*vm{tt.db, b1, tt.front} {
		if after := nftRuleset(t, v.ns); after != before[v.ns] {
			t.Errorf("%s: a second run changed the ruleset:\n%s\n→\n%s", v.name, before[v.ns], after)
		}
	}

	// Scale up: the new backend is refused by the database until the
	// database role is reconfigured with the new membership.
	b3 := tt.addBackend(t)
	b3.apply(t)
	refused(t, "backend 3 before the database's reconfigure", b3.ns, dbIP, 5432)
	for _, v := range []*vm{tt.db, tt.front} {
		if !v.reconfigure(t) {
			t.Fatalf("%s: reconfigure did not run", v.name)
		}
	}
	allowed(t, "backend 3", b3.ns, dbIP, 5432)
	if got, _ := tt.backendsSeen(t, "http://"+frontIP+"/", 6); len(got) != 3 {
		t.Errorf("after the scale the frontend reaches %v", got)
	}

	// FIREWALL=NO removes the table.
	off := tt.lab.newVM(t, "db", tt.db.ns, dbIP, tt.common+"FIREWALL='NO'\nROLE='database'\nVMID='20'\n", tt.cluster.env(), tt.svc)
	off.apply(t)
	if rs := nftRuleset(t, tt.db.ns); strings.Contains(rs, "one_context_database") {
		t.Errorf("FIREWALL=NO left the table:\n%s", rs)
	}
	allowed(t, "outsider without the firewall", outside, dbIP, 5432)
}
