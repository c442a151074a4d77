package packs

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"one-contextd/engine"
	"one-contextd/roles"
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

// tcpConnectFrom opens a TCP connection from ns with the source address
// src (python3's socket): nil when the connection is accepted.
func tcpConnectFrom(ns, src, ip string, port int) error {
	const script = `import socket, sys
s = socket.socket()
s.settimeout(5)
s.bind((sys.argv[1], 0))
s.connect((sys.argv[2], int(sys.argv[3])))`
	out, err := inNs(ns, "python3", "-c", script, src, ip, strconv.Itoa(port))
	if err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}

// pgPair is a master and a replica of the PostgreSQL pack, each in its own
// namespace (10.99.0.1 and .2), not applied yet.
type pgPair struct {
	master, replica *cluster
	inM, inR        roles.Input
	nsM, nsR        string
	port            int
	base            string
	gate            *labGate
}

func newPGPair(t testing.TB, common string) *pgPair {
	t.Helper()
	bin := postgresBin(t)
	pg, err := user.Lookup("postgres")
	if err != nil {
		t.Skip("no postgres system user (installed by the postgresql package)")
	}
	uid, _ := strconv.Atoi(pg.Uid)
	gid, _ := strconv.Atoi(pg.Gid)
	p := &pgPair{base: t.TempDir()}
	for d := p.base; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		_ = os.Chmod(d, 0o755)
	}
	p.nsM, p.nsR = netnsPair(t)
	p.gate = startGate(t, p.nsM, "10.99.0.1:5030", p.base)
	p.port = 20000 + (os.Getpid()+13)%20000
	p.master = newCluster(t, bin, filepath.Join(p.base, "master"), p.nsM, p.port, uid, gid)
	p.replica = newCluster(t, bin, filepath.Join(p.base, "replica"), p.nsR, p.port+1, uid, gid)
	svc := &roles.Service{ID: "7", Name: "pg", Roles: []roles.Role{
		{Name: "master", Cardinality: 1, Nodes: []roles.Node{{VMID: "10", IPs: []string{"10.99.0.1"}, Ready: true}}},
		{Name: "replica", Cardinality: 1, Parents: []string{"master"}, Nodes: []roles.Node{{VMID: "11", IPs: []string{"10.99.0.2"}}}},
	}}
	p.gate.setService(t, svc)
	common = "REPLICATION_PASSWORD='r3pl-pw'\nDB_NAME='appdb'\n" + common
	p.inM = node(t, filepath.Join(p.base, "vm-master"), common+"ROLE='master'\nVMID='10'\n", p.master, svc)
	p.inR = node(t, filepath.Join(p.base, "vm-replica"), common+"ROLE='replica'\nVMID='11'\nMASTER_PORT='"+strconv.Itoa(p.port)+"'\n", p.replica, svc)
	for _, in := range []*roles.Input{&p.inM, &p.inR} {
		in.BaseEnv = append(in.BaseEnv, p.gate.env()...)
	}
	return p
}

// apply runs the master's role, then the replica's, and waits until the
// replica reads a row written on the master.
func (p *pgPair) apply(t testing.TB) {
	t.Helper()
	for _, in := range []roles.Input{p.inM, p.inR} {
		r, rec := engine.NewTestRecorder()
		if err := roles.Apply(context.Background(), r, in); err != nil {
			t.Fatalf("%s: %v\nnotes %q", in.Context.Role.Name, err, rec.Notes)
		}
	}
	p.master.psql(t, "appdb", "CREATE TABLE IF NOT EXISTS greeting (v text); INSERT INTO greeting VALUES ('hello');")
	var got string
	for i := 0; i < 100 && got == ""; i++ {
		got, _ = p.replica.tryPsql("appdb", "SELECT v FROM greeting LIMIT 1;")
		time.Sleep(50 * time.Millisecond)
	}
	if got != "hello" {
		t.Fatalf("the replica does not read the master's row (%q)", got)
	}
}

// TestPostgreSQLFirewall runs the master and replica roles with
// FIREWALL=YES: replication (a member) goes through; another address on
// the same link (not in the service) is refused at both servers' ports.
func TestPostgreSQLFirewall(t *testing.T) {
	if _, ok := runner.LookPath("nft"); !ok {
		t.Skip("nft not found (apt-get install nftables)")
	}
	p := newPGPair(t, "FIREWALL='YES'\n")
	p.apply(t)
	if st := p.master.psql(t, "postgres", "SELECT state || ' ' || host(client_addr) FROM pg_stat_replication;"); st != "streaming 10.99.0.2" {
		t.Errorf("pg_stat_replication: %q", st)
	}
	// Non-members: a second address on each side of the link.
	must(t, "ip", "-n", p.nsR, "addr", "add", "10.99.0.3/24", "dev", "veth-r")
	must(t, "ip", "-n", p.nsM, "addr", "add", "10.99.0.4/24", "dev", "veth-m")
	if err := tcpConnectFrom(p.nsR, "10.99.0.2", "10.99.0.1", p.port); err != nil {
		t.Errorf("replica → master: %v", err)
	}
	if err := tcpConnectFrom(p.nsR, "10.99.0.3", "10.99.0.1", p.port); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("non-member → master: %v; want refused", err)
	}
	if err := tcpConnectFrom(p.nsM, "10.99.0.1", "10.99.0.2", p.port+1); err != nil {
		t.Errorf("master → replica: %v", err)
	}
	if err := tcpConnectFrom(p.nsM, "10.99.0.4", "10.99.0.2", p.port+1); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("non-member → replica: %v; want refused", err)
	}
	for ns, table := range map[string]string{p.nsM: "one_context_master", p.nsR: "one_context_replica"} {
		if rs := nftRuleset(t, ns); !strings.Contains(rs, "table inet "+table+" {") || !strings.Contains(rs, "10.99.0.1") {
			t.Errorf("%s: ruleset\n%s", ns, rs)
		}
	}
}
