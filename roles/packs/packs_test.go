// Package packs holds the role packs shipped with the agent (folders of
// shell scripts) and their tests, which run the packs through roles.Apply
// against real services.
package packs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"one-contextd/context/settings"
	"one-contextd/context/shvars"
	"one-contextd/engine"
	"one-contextd/fsroot"
	"one-contextd/roles"
	"one-contextd/runner"
)

// nsRunner runs every command inside a network namespace.
type nsRunner struct{ ns string }

func (n nsRunner) Run(ctx context.Context, c runner.Cmd) (runner.Result, error) {
	c.Args = append([]string{"netns", "exec", n.ns, c.Name}, c.Args...)
	c.Name = "ip"
	return runner.Exec{}.Run(ctx, c)
}

type fixedSource struct{ svc *roles.Service }

func (f fixedSource) Service(context.Context) (*roles.Service, error) { return f.svc, nil }

func must(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// netnsPair makes two namespaces joined by a veth pair, 10.99.0.1 and .2.
func netnsPair(t testing.TB) (string, string) {
	t.Helper()
	tag := strconv.Itoa(os.Getpid() % 100000)
	a, b := "ocpg-m-"+tag, "ocpg-r-"+tag
	for _, ns := range []string{a, b} {
		must(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", ns).Run() })
		must(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	must(t, "ip", "-n", a, "link", "add", "veth-m", "type", "veth", "peer", "name", "veth-r", "netns", b)
	for ns, spec := range map[string][2]string{a: {"veth-m", "10.99.0.1/24"}, b: {"veth-r", "10.99.0.2/24"}} {
		must(t, "ip", "-n", ns, "addr", "add", spec[1], "dev", spec[0])
		must(t, "ip", "-n", ns, "link", "set", spec[0], "up")
	}
	return a, b
}

// cluster is an empty PostgreSQL cluster in Debian's layout (configuration
// apart from the data), as the package would have made it.
type cluster struct {
	dir, conf, data, sock, bin string
	port                       int
	ns                         string
}

func (c *cluster) env() []string {
	return []string{
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		"PG_CLUSTER_CONF=" + c.conf, "PG_CLUSTER_DATA=" + c.data, "PG_CLUSTER_BIN=" + c.bin,
		"PG_CLUSTER_PORT=" + strconv.Itoa(c.port), "PG_CLUSTER_SOCKET=" + c.sock,
		"PACK_STATE_DIR=" + filepath.Join(c.dir, "state"), "TLS_DIR=" + filepath.Join(c.dir, "tls"),
	}
}

func (c *cluster) psql(t testing.TB, db, sql string) string {
	t.Helper()
	out, err := c.tryPsql(db, sql)
	if err != nil {
		t.Fatalf("psql %s: %v", sql, err)
	}
	return out
}

func (c *cluster) tryPsql(db, sql string) (string, error) {
	cmd := exec.Command("ip", "netns", "exec", c.ns, "runuser", "-u", "postgres", "--",
		filepath.Join(c.bin, "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", c.sock, "-p", strconv.Itoa(c.port), "-d", db)
	cmd.Stdin = strings.NewReader(sql)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%w: %s", err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

func newCluster(t testing.TB, bin, dir, ns string, port int, pgUID, pgGID int) *cluster {
	t.Helper()
	c := &cluster{dir: dir, conf: filepath.Join(dir, "conf"), data: filepath.Join(dir, "data"), sock: filepath.Join(dir, "sock"), bin: bin, port: port, ns: ns}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{c.conf, c.data, c.sock} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, pgUID, pgGID); err != nil {
			t.Fatal(err)
		}
	}
	must(t, "runuser", "-u", "postgres", "--", filepath.Join(bin, "initdb"), "-D", c.data, "--auth-local=peer", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-instructions")
	for _, f := range []string{"postgresql.conf", "pg_hba.conf", "pg_ident.conf"} {
		if err := os.Rename(filepath.Join(c.data, f), filepath.Join(c.conf, f)); err != nil {
			t.Fatal(err)
		}
	}
	extra := fmt.Sprintf("\ndata_directory = '%s'\nhba_file = '%s/pg_hba.conf'\nident_file = '%s/pg_ident.conf'\nport = %d\nunix_socket_directories = '%s'\nlisten_addresses = 'localhost'\n",
		c.data, c.conf, c.conf, port, c.sock)
	f, err := os.OpenFile(filepath.Join(c.conf, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(extra)
	f.Close()
	t.Cleanup(c.stop)
	return c
}

// stop ends the server, if running. pg_ctl signals the postmaster by pid,
// so it works from outside the namespace, even one already deleted.
func (c *cluster) stop() {
	_ = exec.Command("runuser", "-u", "postgres", "--", filepath.Join(c.bin, "pg_ctl"), "-D", c.conf, "stop", "-m", "immediate").Run()
}

// node is one VM: a root with the pack installed, its context, its cluster.
func node(t testing.TB, dir, contextSh string, c *cluster, svc *roles.Service) roles.Input {
	t.Helper()
	rootDir, medium := filepath.Join(dir, "root"), filepath.Join(dir, "medium")
	for _, d := range []string{filepath.Join(rootDir, roles.ImageDir), medium} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	must(t, "cp", "-a", "lib/.", "postgresql/.", filepath.Join(rootDir, roles.ImageDir)+"/")
	root, err := fsroot.New(rootDir)
	if err != nil {
		t.Fatal(err)
	}
	vars, errs := shvars.Parse("context.sh", []byte(contextSh))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return roles.Input{
		Context: settings.Build(vars, settings.Inputs{}), Root: root, Run: nsRunner{ns: c.ns},
		Service: fixedSource{svc}, MediumDir: medium, BaseEnv: c.env(),
		Timeout: 2 * time.Minute, WaitTimeout: 10 * time.Second, PollInterval: 100 * time.Millisecond,
	}
}

func postgresBin(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces and running PostgreSQL as the postgres user")
	}
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(m) == 0 {
		t.Skip("PostgreSQL is not installed (apt-get install postgresql)")
	}
	for _, tool := range []string{"ip", "runuser"} {
		if _, ok := runner.LookPath(tool); !ok {
			t.Skipf("%s not found", tool)
		}
	}
	return filepath.Dir(m[len(m)-1])
}

// TestPostgreSQLMasterReplica runs the master and replica roles of the
// pack, each in its own network namespace, against a two-role service, then
// writes on the master and reads on the replica.
func TestPostgreSQLMasterReplica(t *testing.T) {
	bin := postgresBin(t)
	pg, err := user.Lookup("postgres")
	if err != nil {
		t.Skip("no postgres system user (installed by the postgresql package)")
	}
	uid, _ := strconv.Atoi(pg.Uid)
	gid, _ := strconv.Atoi(pg.Gid)
	base := t.TempDir()
	// The postgres user must reach the clusters under the test directory.
	for d := base; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		_ = os.Chmod(d, 0o755)
	}
	nsM, nsR := netnsPair(t)
	port := 20000 + os.Getpid()%20000
	master := newCluster(t, bin, filepath.Join(base, "master"), nsM, port, uid, gid)
	replica := newCluster(t, bin, filepath.Join(base, "replica"), nsR, port+1, uid, gid)

	svc := &roles.Service{ID: "7", Name: "pg", Roles: []roles.Role{
		{Name: "master", Cardinality: 1, Nodes: []roles.Node{{VMID: "10", IPs: []string{"10.99.0.1"}, Ready: true}}},
		{Name: "replica", Cardinality: 1, Parents: []string{"master"}, Nodes: []roles.Node{{VMID: "11", IPs: []string{"10.99.0.2"}}}},
	}}
	const pw = `r3pl-'quote'-$ecret:x\y`
	common := "REPLICATION_USER='replicator'\nREPLICATION_PASSWORD=" + shvars.Quote(pw) + "\nDB_NAME='appdb'\n"
	inM := node(t, filepath.Join(base, "vm-master"), common+"ROLE='master'\nVMID='10'\n", master, svc)
	inR := node(t, filepath.Join(base, "vm-replica"), common+"ROLE='replica'\nVMID='11'\nMASTER_PORT='"+strconv.Itoa(port)+"'\n", replica, svc)

	ctx := context.Background()
	start := time.Now()
	r, rec := engine.NewTestRecorder()
	if err := roles.Apply(ctx, r, inM); err != nil {
		t.Fatalf("master: %v\nnotes %q", err, rec.Notes)
	}
	r, rec = engine.NewTestRecorder()
	if err := roles.Apply(ctx, r, inR); err != nil {
		t.Fatalf("replica: %v\nnotes %q", err, rec.Notes)
	}
	t.Logf("master and replica roles applied in %s", time.Since(start).Round(time.Millisecond))

	master.psql(t, "appdb", "CREATE TABLE greeting (v text); INSERT INTO greeting VALUES ('hello from the master');")
	var got string
	for i := 0; i < 100; i++ {
		got, err = replica.tryPsql("appdb", "SELECT v FROM greeting;") // the table may not have arrived yet
		if got == "hello from the master" {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got != "hello from the master" {
		t.Fatalf("replica reads %q (%v)", got, err)
	}
	if st := master.psql(t, "postgres", "SELECT state || ' ' || host(client_addr) FROM pg_stat_replication;"); st != "streaming 10.99.0.2" {
		t.Errorf("pg_stat_replication on the master: %q, want streaming from 10.99.0.2", st)
	}
	if rec := replica.psql(t, "postgres", "SELECT pg_is_in_recovery();"); rec != "t" {
		t.Errorf("replica in recovery: %q", rec)
	}
	// The password is in a 0600 passfile, not in the configuration.
	conf, _ := os.ReadFile(filepath.Join(replica.conf, "one-context.conf"))
	if strings.Contains(string(conf), "r3pl") || !strings.Contains(string(conf), "passfile=") {
		t.Errorf("replica configuration:\n%s", conf)
	}
	fi, err := os.Stat(filepath.Join(replica.dir, ".one-context-replication.pgpass"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("passfile: %v %v", err, fi)
	}
	hba, _ := os.ReadFile(filepath.Join(master.conf, "pg_hba.conf"))
	if !strings.Contains(string(hba), "host replication replicator 10.99.0.2/32 scram-sha-256") {
		t.Errorf("master pg_hba.conf:\n%s", hba)
	}

	// A second run changes nothing and keeps the standby streaming.
	for name, in := range map[string]roles.Input{"master": inM, "replica": inR} {
		r, _ := engine.NewTestRecorder()
		if err := roles.Apply(ctx, r, in); err != nil {
			t.Fatalf("%s again: %v", name, err)
		}
	}
	if st := master.psql(t, "postgres", "SELECT state FROM pg_stat_replication;"); st != "streaming" {
		t.Errorf("after a second run: %q", st)
	}
	if v := replica.psql(t, "appdb", "SELECT v FROM greeting;"); v != "hello from the master" {
		t.Errorf("after a second run the replica reads %q", v)
	}
}

// TestPostgreSQLSingle runs the single role in single mode (no service):
// the application user can then log in over TCP with its password from
// the allowed client, and not with another password.
func TestPostgreSQLSingle(t *testing.T) {
	bin := postgresBin(t)
	pg, err := user.Lookup("postgres")
	if err != nil {
		t.Skip("no postgres system user (installed by the postgresql package)")
	}
	uid, _ := strconv.Atoi(pg.Uid)
	gid, _ := strconv.Atoi(pg.Gid)
	base := t.TempDir()
	for d := base; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		_ = os.Chmod(d, 0o755)
	}
	nsM, nsClient := netnsPair(t)
	port := 20000 + (os.Getpid()+7)%20000
	c := newCluster(t, bin, filepath.Join(base, "db"), nsM, port, uid, gid)
	const pw = `b@ck-end'pw`
	in := node(t, filepath.Join(base, "vm"), "ROLE='single'\nETH0_MAC='02:00:0a:63:00:01'\nETH0_IP='10.99.0.1'\nETH0_MASK='255.255.255.0'\n"+
		"DB_NAME='shop'\nDB_USER='shop_app'\nDB_PASSWORD="+shvars.Quote(pw)+"\nALLOWED_CLIENTS='10.99.0.2/32'\n", c, nil)
	in.Service = nil
	for range 2 { // the second run must converge to the same state
		r, rec := engine.NewTestRecorder()
		if err := roles.Apply(context.Background(), r, in); err != nil {
			t.Fatalf("single: %v\nnotes %q", err, rec.Notes)
		}
	}
	login := func(password string) (string, error) {
		passfile := filepath.Join(base, "pgpass")
		if err := os.WriteFile(passfile, []byte("*:*:*:shop_app:"+password+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		// From the other namespace, the client VM at 10.99.0.2.
		cmd := exec.Command("ip", "netns", "exec", nsClient, filepath.Join(bin, "psql"), "-X", "-A", "-t", "-w",
			"-h", "10.99.0.1", "-p", strconv.Itoa(port), "-U", "shop_app", "-d", "shop", "-c", "SELECT current_user || '@' || current_database();")
		cmd.Env = []string{"PGPASSFILE=" + passfile, "PATH=/usr/bin:/bin"}
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	if got, err := login(pw); err != nil || got != "shop_app@shop" {
		t.Errorf("login over TCP from the allowed client: %q %v", got, err)
	}
	if got, err := login("wrong-password"); err == nil {
		t.Errorf("login with a wrong password succeeded: %q", got)
	}
}

// TestShellcheck checks every script of the packs as POSIX sh.
func TestShellcheck(t *testing.T) {
	if _, ok := runner.LookPath("shellcheck"); !ok {
		t.Skip("shellcheck not installed (apt-get install shellcheck)")
	}
	files, _ := filepath.Glob("*/*.sh")
	scripts, _ := filepath.Glob("*/*/[0-9]*")
	files = append(files, scripts...)
	if len(files) < 4 {
		t.Fatalf("found only %q", files)
	}
	args := append([]string{"-s", "sh", "-x", "-P", "SCRIPTDIR"}, files...)
	if out, err := exec.Command("shellcheck", args...).CombinedOutput(); err != nil {
		t.Errorf("shellcheck: %v\n%s", err, out)
	}
}

// BenchmarkPostgreSQLPair measures, from an empty pair of VMs (fresh
// clusters and namespaces each time), the time until the master and replica
// roles are applied and a row written on the master is read on the replica.
func BenchmarkPostgreSQLPair(b *testing.B) {
	bin := postgresBin(b)
	pg, err := user.Lookup("postgres")
	if err != nil {
		b.Skip("no postgres system user")
	}
	uid, _ := strconv.Atoi(pg.Uid)
	gid, _ := strconv.Atoi(pg.Gid)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		base := b.TempDir()
		for d := base; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
			_ = os.Chmod(d, 0o755)
		}
		nsM, nsR := netnsPair(b)
		port := 20000 + (os.Getpid()+3*i+11)%20000
		master := newCluster(b, bin, filepath.Join(base, "master"), nsM, port, uid, gid)
		replica := newCluster(b, bin, filepath.Join(base, "replica"), nsR, port+1, uid, gid)
		svc := &roles.Service{ID: "7", Roles: []roles.Role{
			{Name: "master", Nodes: []roles.Node{{VMID: "10", IPs: []string{"10.99.0.1"}, Ready: true}}},
			{Name: "replica", Nodes: []roles.Node{{VMID: "11", IPs: []string{"10.99.0.2"}}}},
		}}
		common := "REPLICATION_PASSWORD='bench-pass'\n"
		inM := node(b, filepath.Join(base, "vm-m"), common+"ROLE='master'\nVMID='10'\n", master, svc)
		inR := node(b, filepath.Join(base, "vm-r"), common+"ROLE='replica'\nVMID='11'\nMASTER_PORT='"+strconv.Itoa(port)+"'\n", replica, svc)
		b.StartTimer()
		for _, in := range []roles.Input{inM, inR} {
			r, _ := engine.NewTestRecorder()
			if err := roles.Apply(context.Background(), r, in); err != nil {
				b.Fatal(err)
			}
		}
		master.psql(b, "postgres", "CREATE TABLE IF NOT EXISTS bench (v int); INSERT INTO bench VALUES (1);")
		for {
			if v, err := replica.tryPsql("postgres", "SELECT count(*) FROM bench;"); err == nil && v == "1" {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		b.StopTimer()
		master.stop()
		replica.stop()
		for _, ns := range []string{nsM, nsR} {
			_ = exec.Command("ip", "netns", "delete", ns).Run()
		}
	}
}
