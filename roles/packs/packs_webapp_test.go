package packs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"one-contextd/context/settings"
	"one-contextd/context/shvars"
	"one-contextd/engine"
	"one-contextd/fsroot"
	"one-contextd/roles"
	"one-contextd/runner"
)

// The three-tier lab: one network namespace per VM, each with an eth0
// plugged into a bridge that lives in a namespace of its own. The bridge
// namespace also has an address, 10.99.1.254: the application's client.
const (
	labNet    = "10.99.1."
	clientIP  = labNet + "254"
	dbIP      = labNet + "1"
	frontIP   = labNet + "21"
	outsideIP = labNet + "99"
	webappPW  = `w3b'app-$ecret:pw\x`
)

func backendIP(i int) string   { return labNet + strconv.Itoa(10+i) } // backend 1 is .11
func backendVMID(i int) string { return strconv.Itoa(20 + i) }        // backend 1 is VM 21

type webLab struct {
	tag    string
	base   string // t.TempDir(), readable by postgres
	bridge string // namespace of the bridge and the client
	gate   *labGate
	bin    string // PostgreSQL's bin directory
	pgUID  int
	pgGID  int
}

// webappTools skips unless the test can run the three tiers for real.
func webappTools(t testing.TB) *webLab {
	t.Helper()
	bin := postgresBin(t)
	for _, tool := range []string{"nginx", "python3", "curl", "openssl", "setsid", "bash"} {
		if _, ok := runner.LookPath(tool); !ok {
			t.Skipf("%s not found (apt-get install nginx python3 curl openssl)", tool)
		}
	}
	pg, err := user.Lookup("postgres")
	if err != nil {
		t.Skip("no postgres system user (installed by the postgresql package)")
	}
	l := &webLab{bin: bin}
	l.pgUID, _ = strconv.Atoi(pg.Uid)
	l.pgGID, _ = strconv.Atoi(pg.Gid)
	return l
}

// newWebLab makes the bridge namespace, with a fake OneGate on it.
func newWebLab(t testing.TB, tag string) *webLab {
	t.Helper()
	l := webappTools(t)
	l.tag = tag
	l.base = t.TempDir()
	for d := l.base; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		_ = os.Chmod(d, 0o755) // the postgres user reaches its cluster
	}
	l.bridge = "ocwa-br-" + tag
	must(t, "ip", "netns", "add", l.bridge)
	t.Cleanup(func() { l.deleteNetns(t, l.bridge) })
	must(t, "ip", "-n", l.bridge, "link", "set", "lo", "up")
	// A fixed MAC: a bridge without one takes the lowest MAC of its ports,
	// so plugging in a new VM can change the gate's MAC under the VMs'
	// ARP caches, and their next connection to the gate times out.
	must(t, "ip", "-n", l.bridge, "link", "add", "br0", "address", "02:99:01:00:00:fe", "type", "bridge")
	must(t, "ip", "-n", l.bridge, "addr", "add", clientIP+"/24", "dev", "br0")
	must(t, "ip", "-n", l.bridge, "link", "set", "br0", "up")
	l.gate = startGate(t, l.bridge, clientIP+":5030", l.base)
	return l
}

// addVM makes the VM's namespace with eth0 at ip on the bridge.
func (l *webLab) addVM(t testing.TB, name, ip string) string {
	t.Helper()
	ns := "ocwa-" + name + "-" + l.tag
	must(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { l.deleteNetns(t, ns) })
	must(t, "ip", "-n", ns, "link", "set", "lo", "up")
	must(t, "ip", "-n", l.bridge, "link", "add", "v-"+name, "type", "veth", "peer", "name", "eth0", "netns", ns)
	must(t, "ip", "-n", l.bridge, "link", "set", "v-"+name, "master", "br0", "up")
	must(t, "ip", "-n", ns, "addr", "add", ip+"/24", "dev", "eth0")
	must(t, "ip", "-n", ns, "link", "set", "eth0", "up")
	return ns
}

// deleteNetns removes a namespace after checking that the test left no
// process in it (the tiers' cleanups, registered later, have run).
func (l *webLab) deleteNetns(t testing.TB, ns string) {
	out, _ := exec.Command("ip", "netns", "pids", ns).Output()
	var left []int
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
			left = append(left, pid)
		}
	}
	if len(left) > 0 {
		t.Errorf("processes left in namespace %s: %v", ns, left)
		for _, pid := range left {
			_ = killPid(pid)
		}
	}
	_ = exec.Command("ip", "netns", "delete", ns).Run()
}

func killPid(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}

// vm is one VM of the lab: its namespace, folder and role input.
type vm struct {
	name, ns, ip, dir string
	in                roles.Input
}

// env is what every tier's scripts get besides the context: where the
// pack's files go for this VM, and the fake OneGate.
func (l *webLab) env(dir string) []string {
	return append([]string{
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		"WEBAPP_CONF_DIR=" + filepath.Join(dir, "etc"),
		"WEBAPP_STATE_DIR=" + filepath.Join(dir, "state"),
		"WEBAPP_SERVICE_MANAGER=direct", // never a unit on the test machine
	}, l.gate.env()...)
}

// newVM installs both packs in a fresh root and builds the role input.
func (l *webLab) newVM(t testing.TB, name, ns, ip, contextSh string, env []string, svc *roles.Service) *vm {
	t.Helper()
	dir := filepath.Join(l.base, name)
	rootDir, medium := filepath.Join(dir, "root"), filepath.Join(dir, "medium")
	for _, d := range []string{filepath.Join(rootDir, roles.ImageDir), medium} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	must(t, "cp", "-a", "lib/.", "postgresql/.", "webapp/.", filepath.Join(rootDir, roles.ImageDir)+"/")
	root, err := fsroot.New(rootDir)
	if err != nil {
		t.Fatal(err)
	}
	vars, errs := shvars.Parse("context.sh", []byte(contextSh))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	in := roles.Input{
		Context: settings.Build(vars, settings.Inputs{}), Root: root, Run: nsRunner{ns: ns},
		Service: fixedSource{svc}, MediumDir: medium, BaseEnv: append(l.env(dir), env...),
		Timeout: 2 * time.Minute, WaitTimeout: 10 * time.Second, PollInterval: 100 * time.Millisecond,
	}
	return &vm{name: name, ns: ns, ip: ip, dir: dir, in: in}
}

// threeTier is the running application's parts.
type threeTier struct {
	lab      *webLab
	svc      *roles.Service
	db       *vm
	cluster  *cluster
	backends []*vm
	front    *vm
	common   string // context.sh lines every VM gets
}

// tierOptions shape a lab: the number of backends and context lines for
// every VM and for the frontend alone.
type tierOptions struct {
	backends      int
	common, front string
}

// newThreeTier builds the lab (database, backends, frontend; nothing is
// applied yet).
func newThreeTier(t testing.TB, tag string, o tierOptions) *threeTier {
	t.Helper()
	l := newWebLab(t, tag)
	tt := &threeTier{lab: l}
	tt.svc = &roles.Service{ID: "9", Name: "shop", Roles: []roles.Role{
		{Name: "database", Cardinality: 1, Nodes: []roles.Node{{VMID: "20", IPs: []string{dbIP}, Ready: true}}},
		{Name: "backend", Cardinality: o.backends, Parents: []string{"database"}},
		{Name: "frontend", Cardinality: 1, Parents: []string{"backend"}, Nodes: []roles.Node{{VMID: "30", IPs: []string{frontIP}, Ready: true}}},
	}}
	l.gate.setService(t, tt.svc)
	tt.common = "DB_NAME='shop'\nDB_USER='shop_app'\nDB_PASSWORD=" + shvars.Quote(webappPW) + "\n" + o.common
	nsDB := l.addVM(t, "db", dbIP)
	tt.cluster = newCluster(t, l.bin, filepath.Join(l.base, "db", "pg"), nsDB, 5432, l.pgUID, l.pgGID)
	tt.db = l.newVM(t, "db", nsDB, dbIP, tt.common+"ROLE='database'\nVMID='20'\n", tt.cluster.env(), tt.svc)
	for range o.backends {
		tt.addBackend(t)
	}
	nsF := l.addVM(t, "front", frontIP)
	fdir := filepath.Join(l.base, "front")
	nginxEnv := nginxInstance(t, fdir)
	tt.front = l.newVM(t, "front", nsF, frontIP, tt.common+o.front+"ROLE='frontend'\nVMID='30'\n", nginxEnv, tt.svc)
	t.Cleanup(func() { stopNginx(t, fdir) })
	return tt
}

// addBackend adds the next backend VM to the lab and to the service (as
// OneFlow does on scale up); its role is not applied.
func (tt *threeTier) addBackend(t testing.TB) *vm {
	t.Helper()
	i := len(tt.backends) + 1
	name, ip := "back"+strconv.Itoa(i), backendIP(i)
	ns := tt.lab.addVM(t, name, ip)
	role := tt.svc.Role("backend")
	role.Nodes = append(role.Nodes, roles.Node{VMID: backendVMID(i), IPs: []string{ip}, Ready: true})
	role.Cardinality = max(role.Cardinality, i)
	tt.lab.gate.setService(t, tt.svc)
	b := tt.lab.newVM(t, name, ns, ip, tt.common+"ROLE='backend'\nVMID='"+backendVMID(i)+"'\n", nil, tt.svc)
	t.Cleanup(func() { stopBackend(t, b.dir) })
	tt.backends = append(tt.backends, b)
	return b
}

// nginxInstance writes a main nginx.conf under dir that includes the
// pack's site file, with pid, logs and temporary files under dir too, and
// returns the environment that makes the frontend role use it.
func nginxInstance(t testing.TB, dir string) []string {
	t.Helper()
	ngx := filepath.Join(dir, "nginx")
	for _, d := range []string{filepath.Join(ngx, "conf.d"), filepath.Join(ngx, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	main := fmt.Sprintf(`# nginx of the three-tier test
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 64; }
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/tmp/body;
    proxy_temp_path %[1]s/tmp/proxy;
    fastcgi_temp_path %[1]s/tmp/fastcgi;
    uwsgi_temp_path %[1]s/tmp/uwsgi;
    scgi_temp_path %[1]s/tmp/scgi;
    include %[1]s/conf.d/*.conf;
}
`, ngx)
	if err := os.WriteFile(filepath.Join(ngx, "nginx.conf"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	return []string{
		"NGINX_CONF=" + filepath.Join(ngx, "conf.d", "one-context-webapp.conf"),
		"NGINX_ARGS=-c " + filepath.Join(ngx, "nginx.conf") + " -p " + ngx + "/ -e " + filepath.Join(ngx, "error.log"),
	}
}

// pidFrom reads a pid file; 0 when there is none.
func pidFrom(file string) int {
	data, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return pid
}

func alive(pid int) bool {
	return pid > 0 && exec.Command("kill", "-0", strconv.Itoa(pid)).Run() == nil
}

// stopPid sends SIGTERM, then SIGKILL after two seconds, and waits.
func stopPid(t testing.TB, what string, pid int) {
	if !alive(pid) {
		return
	}
	_ = exec.Command("kill", strconv.Itoa(pid)).Run()
	for i := 0; i < 40 && alive(pid); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if alive(pid) {
		_ = killPid(pid)
		time.Sleep(100 * time.Millisecond)
	}
	if alive(pid) {
		t.Errorf("%s (pid %d) does not stop", what, pid)
	}
}

// stopNginx ends the test's nginx (its master; the workers follow).
func stopNginx(t testing.TB, dir string) {
	stopPid(t, "nginx", pidFrom(filepath.Join(dir, "nginx", "nginx.pid")))
}

func stopBackend(t testing.TB, dir string) {
	stopPid(t, "backend", pidFrom(filepath.Join(dir, "state", "backend.pid")))
}

// run runs the VM's role through the agent's role runner (Apply, or
// Reconfigure), with the scripts' output captured from the step's log;
// it fails the test if the log shows the database password.
func (v *vm) run(t testing.TB, reconfigure bool) (log string, err error) {
	t.Helper()
	var buf bytes.Buffer
	r, rec := engine.NewTestRecorder()
	r.Log = zerolog.New(&buf)
	if reconfigure {
		err = roles.Reconfigure(context.Background(), r, v.in)
	} else {
		err = roles.Apply(context.Background(), r, v.in)
	}
	log = buf.String() + strings.Join(rec.Notes, "\n")
	if strings.Contains(log, "app-$ecret") {
		t.Errorf("%s: the password is in the log:\n%s", v.name, log)
	}
	return log, err
}

// apply runs the VM's role; the test fails if the role fails.
func (v *vm) apply(t testing.TB) {
	t.Helper()
	if log, err := v.run(t, false); err != nil {
		t.Fatalf("%s: %v\n%s", v.name, err, log)
	}
}

// reconfigure runs roles.Reconfigure; it reports whether the role ran.
func (v *vm) reconfigure(t testing.TB) bool {
	t.Helper()
	log, err := v.run(t, true)
	if errors.Is(err, engine.ErrSkip) {
		return false
	}
	if err != nil {
		t.Fatalf("%s reconfigure: %v\n%s", v.name, err, log)
	}
	return true
}

// applyAll brings the application up in the parents' order.
func (tt *threeTier) applyAll(t testing.TB) {
	t.Helper()
	tt.db.apply(t)
	for _, b := range tt.backends {
		b.apply(t)
	}
	tt.front.apply(t)
}

// inNs runs a command in a namespace, returning its combined output.
func inNs(ns string, name string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// get fetches url with curl from the namespace.
func get(ns, url string, extra ...string) (string, error) {
	args := append([]string{"-sS", "--fail", "--max-time", "5"}, extra...)
	return inNs(ns, "curl", append(args, url)...)
}

// tcpConnect opens a TCP connection from ns (bash's /dev/tcp): nil when
// the connection is accepted.
func tcpConnect(ns, ip string, port int) error {
	out, err := inNs(ns, "timeout", "5", "bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/%d", ip, port))
	if err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}

// backendsSeen makes n requests to the frontend from the client and
// counts the answers per backend ("backend 21 (10.99.1.11): message").
func (tt *threeTier) backendsSeen(t testing.TB, url string, n int, extra ...string) (map[string]int, string) {
	t.Helper()
	seen := map[string]int{}
	var last string
	for range n {
		out, err := get(tt.lab.bridge, url, extra...)
		if err != nil {
			t.Fatalf("GET %s from the client: %v: %s\nnginx error log:\n%s", url, err, out, tailFile(filepath.Join(tt.front.dir, "nginx", "error.log"), 10))
		}
		id, msg, ok := strings.Cut(out, ": ")
		if !ok || !strings.HasPrefix(id, "backend ") {
			t.Fatalf("GET %s: unexpected answer %q", url, out)
		}
		seen[strings.TrimPrefix(id, "backend ")]++
		last = msg
	}
	return seen, last
}

func tailFile(path string, n int) string {
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func backendKey(i int) string { return backendVMID(i) + " (" + backendIP(i) + ")" }

// TestWebappThreeTier runs the database, two backends and the frontend of
// the web-application pack through roles.Apply, each in its own network
// namespace, against a three-role service; a request to nginx reaches a
// backend that reads the database; the backend role scales 2 → 3, the
// database and frontend are reconfigured, and nginx balances over three.
func TestWebappThreeTier(t *testing.T) {
	tt := newThreeTier(t, strconv.Itoa(os.Getpid()%100000), tierOptions{backends: 2})
	start := time.Now()
	tt.applyAll(t)
	t.Logf("database, 2 backends and frontend applied in %s", time.Since(start).Round(time.Millisecond))

	seen, msg := tt.backendsSeen(t, "http://"+frontIP+"/", 6)
	if msg != "hello from the database" || seen[backendKey(1)] != 3 || seen[backendKey(2)] != 3 || len(seen) != 2 {
		t.Fatalf("6 requests: backends %v, last message %q", seen, msg)
	}
	// The answer is read from the database on each request.
	tt.cluster.psql(t, "shop", "UPDATE webapp_hello SET message = 'changed in the database';")
	if _, msg := tt.backendsSeen(t, "http://"+frontIP+"/", 2); msg != "changed in the database" {
		t.Errorf("after an UPDATE the application answers %q", msg)
	}

	// The password: only in the backends' 0600 pgpass files.
	checkSecretFiles(t, tt.lab.base, "app-$ecret", "pgpass")
	hba, _ := os.ReadFile(filepath.Join(tt.cluster.conf, "pg_hba.conf"))
	for i := 1; i <= 2; i++ {
		if !strings.Contains(string(hba), "host shop shop_app "+backendIP(i)+"/32 scram-sha-256") {
			t.Errorf("pg_hba.conf lacks backend %d:\n%s", i, hba)
		}
	}

	// A second run of every role changes nothing: same nginx, same
	// backend processes, same files.
	nginxPid := pidFrom(filepath.Join(tt.front.dir, "nginx", "nginx.pid"))
	backendPid := pidFrom(filepath.Join(tt.backends[0].dir, "state", "backend.pid"))
	site := filepath.Join(tt.front.dir, "nginx", "conf.d", "one-context-webapp.conf")
	before, _ := os.Stat(site)
	tt.applyAll(t)
	after, _ := os.Stat(site)
	if p := pidFrom(filepath.Join(tt.backends[0].dir, "state", "backend.pid")); p != backendPid || !alive(p) {
		t.Errorf("second run: backend pid %d → %d", backendPid, p)
	}
	if p := pidFrom(filepath.Join(tt.front.dir, "nginx", "nginx.pid")); p != nginxPid || !alive(p) {
		t.Errorf("second run: nginx pid %d → %d", nginxPid, p)
	}
	if !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("second run rewrote %s", site)
	}
	// Unchanged membership: Reconfigure does not run the role.
	if tt.front.reconfigure(t) {
		t.Errorf("reconfigure ran with an unchanged membership")
	}

	// Scale the backends 2 → 3: OneFlow adds a VM, its role runs, the
	// database and the frontend follow through Reconfigure.
	b3 := tt.addBackend(t)
	b3.apply(t)
	for _, v := range []*vm{tt.db, tt.front} {
		if !v.reconfigure(t) {
			t.Fatalf("%s: reconfigure did not run after the scale", v.name)
		}
	}
	conf, _ := os.ReadFile(site)
	for i := 1; i <= 3; i++ {
		if !strings.Contains(string(conf), "server "+backendIP(i)+":8080;") {
			t.Errorf("upstream lacks backend %d:\n%s", i, conf)
		}
	}
	if p := pidFrom(filepath.Join(tt.front.dir, "nginx", "nginx.pid")); p != nginxPid {
		t.Errorf("nginx was restarted (pid %d → %d), not reloaded", nginxPid, p)
	}
	// The reload is asynchronous: old workers finish first.
	var got map[string]int
	for i := 0; i < 20; i++ {
		got, _ = tt.backendsSeen(t, "http://"+frontIP+"/", 9)
		if len(got) == 3 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i := 1; i <= 3; i++ {
		if got[backendKey(i)] == 0 {
			t.Errorf("after the scale, 9 requests reached %v: not backend %d", got, i)
		}
	}

	// An upstream list nginx rejects (a port out of range) fails the role
	// and leaves the last good list serving.
	good, _ := os.ReadFile(site)
	bad := tt.lab.newVM(t, "front", tt.front.ns, frontIP, tt.common+"BACKEND_PORT='99999'\nROLE='frontend'\nVMID='30'\n", nginxInstance(t, tt.front.dir), tt.svc)
	if log, err := bad.run(t, false); err == nil || !strings.Contains(log, "nginx rejects the new upstream list; the old one is kept") {
		t.Errorf("a rejected upstream list: %v\n%s", err, log)
	}
	if now, _ := os.ReadFile(site); !bytes.Equal(now, good) {
		t.Errorf("the rejected list replaced the good one:\n%s", now)
	}
	if got, _ := tt.backendsSeen(t, "http://"+frontIP+"/", 3); len(got) != 3 {
		t.Errorf("after the rejected list nginx reaches %v", got)
	}

	// Scale down 3 → 2: OneFlow terminates backend 3; the database and
	// the frontend drop it.
	stopBackend(t, b3.dir)
	role := tt.svc.Role("backend")
	role.Nodes, role.Cardinality = role.Nodes[:2], 2
	tt.lab.gate.setService(t, tt.svc)
	for _, v := range []*vm{tt.db, tt.front} {
		if !v.reconfigure(t) {
			t.Fatalf("%s: reconfigure did not run after the scale-down", v.name)
		}
	}
	conf, _ = os.ReadFile(site)
	hba, _ = os.ReadFile(filepath.Join(tt.cluster.conf, "pg_hba.conf"))
	if strings.Contains(string(conf), backendIP(3)) || strings.Contains(string(hba), backendIP(3)) {
		t.Errorf("backend 3 is still in the upstream list or pg_hba.conf:\n%s\n%s", conf, hba)
	}
	if got, _ := tt.backendsSeen(t, "http://"+frontIP+"/", 6); len(got) != 2 || got[backendKey(1)] == 0 || got[backendKey(2)] == 0 {
		t.Errorf("after the scale-down 6 requests reached %v", got)
	}
}

// checkSecretFiles fails when the secret is in any file under dir but the
// ones named keep, which must be 0600.
func checkSecretFiles(t testing.TB, dir, secretText, keep string) {
	t.Helper()
	found := 0
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(data), secretText) {
			return nil
		}
		if filepath.Base(p) != keep {
			t.Errorf("the password is in %s", p)
		} else if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s is %v, want 0600", p, fi.Mode().Perm())
		}
		found++
		return nil
	})
	if found == 0 {
		t.Errorf("the password is in no %s file under %s", keep, dir)
	}
}

// BenchmarkWebappThreeTier measures, from a lab of empty VMs (fresh
// namespaces and an empty PostgreSQL cluster each time, not timed), the
// time from the first role run (the database's) to the first answer of
// the application through nginx with the database's row: database, two
// backends and the frontend applied in the parents' order. "tls" adds
// TLS=YES: certificates generated, published and pinned.
func BenchmarkWebappThreeTier(b *testing.B) {
	for _, c := range []struct{ name, common string }{{"plain", ""}, {"tls", "TLS='YES'\n"}} {
		b.Run(c.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				tag := fmt.Sprintf("b%d%s%d", os.Getpid()%1000, c.name[:1], i)
				tt := newThreeTier(b, tag, tierOptions{backends: 2, common: c.common})
				b.StartTimer()
				tt.applyAll(b)
				for {
					if out, err := get(tt.lab.bridge, "http://"+frontIP+"/"); err == nil && strings.HasSuffix(out, ": hello from the database") {
						break
					}
					time.Sleep(10 * time.Millisecond)
				}
				b.StopTimer()
				// The next iteration runs alone (cleanups recheck at the end).
				stopNginx(b, tt.front.dir)
				for _, v := range tt.backends {
					stopBackend(b, v.dir)
				}
				tt.cluster.stop()
			}
		})
	}
}

// TestWebappSingleMode runs the three tiers without a service (no OneGate):
// each VM learns its peers from context variables alone (ALLOWED_CLIENTS,
// DB_HOST, BACKEND_IPS) and the application answers through nginx.
func TestWebappSingleMode(t *testing.T) {
	tt := newThreeTier(t, "s"+strconv.Itoa(os.Getpid()%100000), tierOptions{backends: 2})
	nic := func(ip string) string {
		host, _ := strconv.Atoi(strings.TrimPrefix(ip, labNet))
		return fmt.Sprintf("ETH0_MAC='02:00:0a:63:01:%02x'\nETH0_IP='%s'\nETH0_MASK='255.255.255.0'\n", host, ip)
	}
	single := func(v *vm, role, extra string, env []string) {
		*v = *tt.lab.newVM(t, v.name, v.ns, v.ip, tt.common+nic(v.ip)+"ROLE='"+role+"'\n"+extra, env, nil)
		v.in.Service = nil
	}
	single(tt.db, "database", "ALLOWED_CLIENTS='"+backendIP(1)+"/32 "+backendIP(2)+"/32'\n", tt.cluster.env())
	for _, b := range tt.backends {
		single(b, "backend", "DB_HOST='"+dbIP+"'\n", nil)
	}
	single(tt.front, "frontend", "BACKEND_IPS='"+backendIP(1)+" "+backendIP(2)+"'\n", nginxInstance(t, tt.front.dir))
	tt.applyAll(t)
	seen, msg := tt.backendsSeen(t, "http://"+frontIP+"/", 4)
	if len(seen) != 2 || msg != "hello from the database" {
		t.Fatalf("single mode: backends %v, message %q", seen, msg)
	}
	// Without a VMID the backends name themselves by address.
	if seen[backendIP(1)] != 2 {
		t.Errorf("answers by backend: %v", seen)
	}
	if tt.front.reconfigure(t) {
		t.Errorf("single mode: reconfigure ran")
	}
}

// fakeSystemctl stands in for systemctl in the backend's systemd mode:
// it records every call in $FAKE_SYSTEMD/calls, and "start"/"restart" of
// a unit run the unit's ExecStart in the background with its
// Environment= lines, %d being a private folder holding copies (0400) of
// its LoadCredential= files, as systemd would pass them.
const fakeSystemctl = `#!/bin/sh
set -eu
d=${FAKE_SYSTEMD:?}
printf '%s\n' "$*" >> "$d/calls"
case $1 in
start | restart)
	unit=$2
	file=${WEBAPP_UNIT_DIR:?}/$unit
	pid=$(cat "$d/$unit.pid" 2>/dev/null || true)
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		[ "$1" = restart ] || exit 0
		kill "$pid"
		while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
	fi
	creds=$d/credentials
	rm -rf "$creds"
	mkdir -m 0700 "$creds"
	sed -n 's/^LoadCredential=//p' "$file" | while IFS=: read -r name src; do
		cp "$src" "$creds/$name"
		chmod 0400 "$creds/$name"
	done
	envs=$(sed -n 's/^Environment=//p' "$file" | sed "s|%d|$creds|g")
	cmd=$(sed -n 's/^ExecStart=//p' "$file")
	# shellcheck disable=SC2086
	env $envs setsid $cmd < /dev/null >> "$d/$unit.log" 2>&1 &
	echo $! > "$d/$unit.pid" ;;
esac
`

// TestWebappBackendSystemd runs the backend role in its systemd mode (the
// mode of a VM booted with systemd) with TLS=YES, against a stand-in
// systemctl: the unit passes systemd-analyze verify, the service started
// from it reads the database with the pgpass credential and serves HTTPS
// with the key credential, and a second run starts without reloading or
// restarting anything.
func TestWebappBackendSystemd(t *testing.T) {
	if _, ok := runner.LookPath("systemd-analyze"); !ok {
		t.Skip("systemd-analyze not found (package systemd)")
	}
	tt := newThreeTier(t, "d"+strconv.Itoa(os.Getpid()%100000), tierOptions{backends: 1, common: "TLS='YES'\n"})
	b := tt.backends[0]
	sd, bin, units := filepath.Join(b.dir, "systemd"), filepath.Join(b.dir, "bin"), filepath.Join(b.dir, "units")
	for _, d := range []string{sd, bin, units} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(bin, "systemctl"), []byte(fakeSystemctl), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopPid(t, "backend unit", pidFrom(filepath.Join(sd, "webapp-backend.service.pid"))) })
	for i, kv := range b.in.BaseEnv {
		switch {
		case strings.HasPrefix(kv, "PATH="):
			b.in.BaseEnv[i] = "PATH=" + bin + ":/usr/sbin:/usr/bin:/sbin:/bin"
		case strings.HasPrefix(kv, "WEBAPP_SERVICE_MANAGER="):
			b.in.BaseEnv[i] = "WEBAPP_SERVICE_MANAGER=systemd"
		}
	}
	b.in.BaseEnv = append(b.in.BaseEnv, "FAKE_SYSTEMD="+sd, "WEBAPP_UNIT_DIR="+units)

	tt.db.apply(t)
	b.apply(t)
	unit := filepath.Join(units, "webapp-backend.service")
	// It exits 0 on unknown keys: any message is a failure here.
	if out, err := exec.Command("systemd-analyze", "verify", unit).CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	if out, err := get(tt.front.ns, "https://"+b.ip+":8080/", "-k"); err != nil || out != "backend 21 ("+b.ip+"): hello from the database" {
		t.Errorf("the unit's service answers %q %v\n%s", out, err, tailFile(filepath.Join(sd, "webapp-backend.service.log"), 5))
	}
	calls := func() string { data, _ := os.ReadFile(filepath.Join(sd, "calls")); return string(data) }
	if got, want := calls(), "daemon-reload\nenable -q webapp-backend.service\nrestart webapp-backend.service\n"; got != want {
		t.Errorf("first run: systemctl calls\n%s\nwant\n%s", got, want)
	}
	pid := pidFrom(filepath.Join(sd, "webapp-backend.service.pid"))
	b.apply(t)
	if got, want := calls(), "daemon-reload\nenable -q webapp-backend.service\nrestart webapp-backend.service\nenable -q webapp-backend.service\nstart webapp-backend.service\n"; got != want {
		t.Errorf("second run: systemctl calls\n%s", got)
	}
	if p := pidFrom(filepath.Join(sd, "webapp-backend.service.pid")); p != pid || !alive(p) {
		t.Errorf("second run: service pid %d → %d", pid, p)
	}
}

// TestWebappBadInput runs roles with broken contexts: each fails with a
// message naming the problem, before starting anything (the namespace
// must be empty at the end) and without the password in its log.
func TestWebappBadInput(t *testing.T) {
	l := newWebLab(t, "x"+strconv.Itoa(os.Getpid()%100000))
	ns := l.addVM(t, "bad", backendIP(1))
	svc := &roles.Service{ID: "9", Roles: []roles.Role{{Name: "backend", Nodes: []roles.Node{{VMID: "21", IPs: []string{backendIP(1)}, Ready: true}}}}}
	l.gate.setService(t, svc)
	pgEnv := []string{"PG_CLUSTER_DATA=/nonexistent", "PG_CLUSTER_BIN=/nonexistent"} // never reached
	base := "VMID='21'\nDB_NAME='shop'\nDB_USER='shop_app'\nDB_PASSWORD=" + shvars.Quote(webappPW) + "\nDB_HOST='" + dbIP + "'\n"
	for _, c := range []struct {
		name, role, context, want string
	}{
		{"no password", "backend", "VMID='21'\nDB_NAME='shop'\nDB_USER='shop_app'\nDB_HOST='" + dbIP + "'\n", "DB_PASSWORD is not set"},
		{"SQL in a name", "database", base + "DB_NAME='shop; DROP TABLE x'\n", "is not a plain identifier"},
		{"shell in an address", "frontend", base + "BACKEND_IPS='10.99.1.11;touch /tmp/x'\n", "is not an IPv4 address"},
		{"bad firewall address", "backend", base + "FIREWALL='YES'\nFIREWALL_ALLOW='10.0.0.0/8 evil'\n", `is not an IPv4 address or CIDR`},
		{"certificate without key", "backend", base + "TLS='YES'\nTLS_CERT_BASE64='" + "bm90IGEgY2VydA==" + "'\n", "TLS_CERT_BASE64 and TLS_KEY_BASE64 go together"},
		{"not base64", "backend", base + "TLS='YES'\nTLS_CERT_BASE64='@@@'\nTLS_KEY_BASE64='@@@'\n", "TLS_CERT_BASE64 is not base64"},
		{"unknown service manager", "backend", base, "auto, systemd or direct"},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := pgEnv
			if c.name == "unknown service manager" {
				env = append(env, "WEBAPP_SERVICE_MANAGER=upstart")
			}
			v := l.newVM(t, "bad-"+strings.ReplaceAll(c.name, " ", "-"), ns, backendIP(1), c.context+"ROLE='"+c.role+"'\n", env, svc)
			v.in.Service = nil
			log, err := v.run(t, false)
			if err == nil || !strings.Contains(log, c.want) {
				t.Errorf("%v; want a failure saying %q:\n%s", err, c.want, log)
			}
		})
	}
}
