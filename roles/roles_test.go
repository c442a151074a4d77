package roles

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"one-contextd/context/settings"
	"one-contextd/context/shvars"
	"one-contextd/engine"
	"one-contextd/fsroot"
	"one-contextd/onegate"
	"one-contextd/runner"
)

// fakeSource answers with the service next returns for each call.
type fakeSource struct {
	mu    sync.Mutex
	calls int
	next  func(call int) (*Service, error)
}

func (f *fakeSource) Service(context.Context) (*Service, error) {
	f.mu.Lock()
	f.calls++
	n := f.calls
	f.mu.Unlock()
	return f.next(n)
}

func fixed(s *Service) *fakeSource {
	return &fakeSource{next: func(int) (*Service, error) { return s, nil }}
}

func node(id, ip string, ready bool) Node {
	return Node{VMID: id, Name: "vm-" + id, IPs: []string{ip}, Ready: ready}
}

// pgService is a master/replica service; VM 12 is the second replica.
func pgService(masterReady bool) *Service {
	return &Service{ID: "7", Name: "pg", Roles: []Role{
		{Name: "master", Cardinality: 1, Nodes: []Node{node("10", "10.0.0.1", masterReady)}},
		{Name: "replica", Cardinality: 2, Parents: []string{"master"}, Nodes: []Node{node("11", "10.0.0.2", true), node("12", "10.0.0.3", false)}},
	}}
}

type fixture struct {
	t           *testing.T
	root        *fsroot.Root
	medium, out string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	base := t.TempDir()
	f := &fixture{t: t, medium: filepath.Join(base, "medium"), out: filepath.Join(base, "out")}
	for _, d := range []string{f.medium, f.out, filepath.Join(base, "root")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	if f.root, err = fsroot.New(filepath.Join(base, "root")); err != nil {
		t.Fatal(err)
	}
	return f
}

// image puts a role script into the image's role folder.
func (f *fixture) image(role, name, body string, mode os.FileMode) {
	f.t.Helper()
	dir := f.root.HostPath(filepath.Join(ImageDir, role))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), mode); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) onMedium(role, name, body string) {
	f.t.Helper()
	dir := filepath.Join(f.medium, MediumSubdir, role)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) input(contextSh string, src ServiceSource) Input {
	f.t.Helper()
	vars, errs := shvars.Parse("context.sh", []byte(contextSh+"\nOUT='"+f.out+"'\n"))
	if len(errs) > 0 {
		f.t.Fatal(errs)
	}
	in := Input{
		Context: settings.Build(vars, settings.Inputs{}), Root: f.root, Run: runner.Exec{}, Service: src,
		MediumDir: f.medium, BaseEnv: []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
		Timeout: 20 * time.Second, WaitTimeout: 5 * time.Second, PollInterval: 20 * time.Millisecond,
	}
	if src == nil {
		in.Service = nil // a typed nil would not be single mode
	}
	return in
}

func (f *fixture) read(name string) string {
	f.t.Helper()
	b, err := os.ReadFile(filepath.Join(f.out, name))
	if err != nil {
		f.t.Fatalf("trace %s: %v", name, err)
	}
	return string(b)
}

func (f *fixture) exists(name string) bool {
	_, err := os.Stat(filepath.Join(f.out, name))
	return err == nil
}

func envOf(dump string) map[string]string {
	m := map[string]string{}
	for _, kv := range strings.Split(dump, "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

const dumpEnv = "#!/bin/sh\necho \"$(basename \"$0\") $1\" >> \"$OUT/order\"\nenv -0 > \"$OUT/env\"\n"

func TestServiceModeEnvironmentOrderAndJSON(t *testing.T) {
	f := newFixture(t)
	f.image("replica", "10-first", "#!/bin/sh\necho \"10-first $1\" >> \"$OUT/order\"\n", 0o755)
	f.image("replica", "30-last", dumpEnv, 0o755)
	f.image("replica", "15-not-executable", "#!/bin/sh\necho never >> \"$OUT/order\"\n", 0o644)
	f.image("replica", "README", "docs", 0o755)
	f.onMedium("replica", "20-from-medium", "echo \"20-from-medium $1\" >> \"$OUT/order\"\n")
	in := f.input("ROLE='replica'\nVMID='12'\nREPLICATION_PASSWORD='very-secret-pw'", fixed(pgService(true)))
	r, rec := engine.NewTestRecorder()
	if err := Apply(context.Background(), r, in); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if got := f.read("order"); got != "10-first apply\n20-from-medium apply\n30-last apply\n" {
		t.Errorf("order = %q", got)
	}
	env := envOf(f.read("env"))
	want := map[string]string{
		"ONECONTEXT_MODE": "service", "ONECONTEXT_ROLE": "replica", "ONECONTEXT_SERVICE_ROLE": "replica",
		"ONECONTEXT_VMID": "12", "ONECONTEXT_SELF_IP": "10.0.0.3", "ONECONTEXT_ROLE_INDEX": "1", "ONECONTEXT_ROLE_FIRST": "NO",
		"ONECONTEXT_ROLES": "master replica", "ONECONTEXT_ROLE_MASTER_IPS": "10.0.0.1",
		"ONECONTEXT_ROLE_REPLICA_IPS": "10.0.0.2 10.0.0.3", "ONECONTEXT_ROLE_REPLICA_READY_IPS": "10.0.0.2",
		"ONECONTEXT_MASTER_IP": "10.0.0.1", "ONECONTEXT_PARENTS": "master", "ONECONTEXT_RECONFIGURE": "NO",
		"ONECONTEXT_SERVICE_ID": "7", "ONECONTEXT_SERVICE_NAME": "pg", "ONECONTEXT_SERVICE_JSON": f.root.HostPath(ServiceJSON),
		"REPLICATION_PASSWORD": "very-secret-pw", "MOUNT_DIR": f.medium, "LANG": "C",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}
	fi, err := os.Stat(f.root.HostPath(ServiceJSON))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("service JSON: %v mode %v, want 0600", err, fi.Mode())
	}
	data, _ := os.ReadFile(f.root.HostPath(ServiceJSON))
	var v View
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	if v.Role != "replica" || v.Index != 1 || v.First || v.Service.Role("master").Nodes[0].IP() != "10.0.0.1" {
		t.Errorf("JSON view %+v", v)
	}
	if strings.Contains(string(data), "very-secret-pw") {
		t.Error("the JSON file holds a context secret")
	}
	if len(rec.Changes) != 2 {
		t.Errorf("changes %q, want the JSON file and the membership state", rec.Changes)
	}
	// A second run with the same service writes nothing new.
	r2, rec2 := engine.NewTestRecorder()
	if err := Apply(context.Background(), r2, in); err != nil {
		t.Fatal(err)
	}
	if len(rec2.Changes) != 0 {
		t.Errorf("second run changes: %q", rec2.Changes)
	}
}

func TestSingleMode(t *testing.T) {
	f := newFixture(t)
	f.image("single", "10-setup", dumpEnv, 0o755)
	in := f.input("ROLE='Single'\nETH0_MAC='02:00:c0:00:02:09'\nETH0_IP='192.0.2.9'\nETH0_MASK='255.255.255.0'", nil)
	r, _ := engine.NewTestRecorder()
	if err := Apply(context.Background(), r, in); err != nil {
		t.Fatal(err)
	}
	env := envOf(f.read("env"))
	for k, v := range map[string]string{"ONECONTEXT_MODE": "single", "ONECONTEXT_ROLE": "single", "ONECONTEXT_ROLE_INDEX": "0",
		"ONECONTEXT_ROLE_FIRST": "YES", "ONECONTEXT_SELF_IP": "192.0.2.9", "ONECONTEXT_SERVICE_ROLE": ""} {
		if env[k] != v {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}
	if _, ok := env["ONECONTEXT_MASTER_IP"]; ok {
		t.Error("single mode has a master address")
	}
	if f.root.Exists(MembershipFile) {
		t.Error("single mode saved a service membership")
	}
}

func TestNotInAServiceFallsBackToSingle(t *testing.T) {
	f := newFixture(t)
	f.image("web", "10-setup", dumpEnv, 0o755)
	src := &fakeSource{next: func(int) (*Service, error) { return nil, fmt.Errorf("GET /service: 400: %w", ErrNoService) }}
	r, rec := engine.NewTestRecorder()
	if err := Apply(context.Background(), r, f.input("ROLE='web'\nVMID='3'", src)); err != nil {
		t.Fatal(err)
	}
	if envOf(f.read("env"))["ONECONTEXT_MODE"] != "single" {
		t.Error("not single mode")
	}
	if !strings.Contains(strings.Join(rec.Notes, "\n"), "single mode") {
		t.Errorf("notes %q", rec.Notes)
	}
}

func TestRoleFromServiceWhenNoROLE(t *testing.T) {
	f := newFixture(t)
	f.image("master", "10-setup", dumpEnv, 0o755)
	r, _ := engine.NewTestRecorder()
	if err := Apply(context.Background(), r, f.input("VMID='10'", fixed(pgService(true)))); err != nil {
		t.Fatal(err)
	}
	env := envOf(f.read("env"))
	if env["ONECONTEXT_ROLE"] != "master" || env["ONECONTEXT_ROLE_FIRST"] != "YES" || env["ONECONTEXT_PARENTS"] != "" {
		t.Errorf("role %q first %q parents %q", env["ONECONTEXT_ROLE"], env["ONECONTEXT_ROLE_FIRST"], env["ONECONTEXT_PARENTS"])
	}
}

func TestNoRoleIsSkipped(t *testing.T) {
	f := newFixture(t)
	r, _ := engine.NewTestRecorder()
	if err := Apply(context.Background(), r, f.input("ETH0_IP='192.0.2.1'", nil)); !errors.Is(err, engine.ErrSkip) {
		t.Fatalf("err = %v, want skip", err)
	}
}

func TestMissingRoleFolder(t *testing.T) {
	f := newFixture(t)
	r, rec := engine.NewTestRecorder()
	err := Apply(context.Background(), r, f.input("ROLE='ghost'", nil))
	if err == nil || !strings.Contains(err.Error(), `role "ghost" has no scripts folder`) {
		t.Fatalf("err = %v", err)
	}
	if len(rec.Problems) != 1 || !strings.HasPrefix(rec.Problems[0], "ROLE: ") {
		t.Errorf("problems %q", rec.Problems)
	}
}

func TestBadRoleName(t *testing.T) {
	f := newFixture(t)
	r, rec := engine.NewTestRecorder()
	err := Apply(context.Background(), r, f.input("ROLE='../../bin'", nil))
	if err == nil || len(rec.Problems) != 1 || !strings.HasPrefix(rec.Problems[0], "ROLE: ") {
		t.Fatalf("err = %v problems %q", err, rec.Problems)
	}
}

func TestUnknownServiceRole(t *testing.T) {
	f := newFixture(t)
	f.image("replica", "10-setup", dumpEnv, 0o755)
	r, rec := engine.NewTestRecorder()
	err := Apply(context.Background(), r, f.input("ROLE='replica'\nROLE_NAME='witness'\nVMID='99'", fixed(pgService(true))))
	if err == nil || !strings.Contains(err.Error(), `unknown role "witness": service 7 has roles master, replica`) {
		t.Fatalf("err = %v", err)
	}
	if len(rec.Problems) != 1 || f.exists("order") {
		t.Errorf("problems %q, scripts ran: %v", rec.Problems, f.exists("order"))
	}
	// Not a node of the service at all.
	r, _ = engine.NewTestRecorder()
	err = Apply(context.Background(), r, f.input("ROLE='replica'\nVMID='99'", fixed(pgService(true))))
	if err == nil || !strings.Contains(err.Error(), "VM 99 is a node of no role of service 7") {
		t.Fatalf("err = %v", err)
	}
}

func TestHangingRoleScriptTimesOutAndStopsTheRole(t *testing.T) {
	f := newFixture(t)
	f.image("web", "10-hang", "#!/bin/sh\nsleep 1000\n", 0o755)
	f.image("web", "20-next", dumpEnv, 0o755)
	in := f.input("ROLE='web'", nil)
	in.Timeout = 300 * time.Millisecond
	r, rec := engine.NewTestRecorder()
	start := time.Now()
	err := Apply(context.Background(), r, in)
	if err == nil || !strings.Contains(err.Error(), "web/10-hang (timed out after") || !strings.Contains(err.Error(), "later scripts were not run") {
		t.Fatalf("err = %v", err)
	}
	if f.exists("order") {
		t.Error("a script after the failed one ran")
	}
	if time.Since(start) > 15*time.Second {
		t.Error("the hanging script was not killed at its timeout")
	}
	if !strings.Contains(strings.Join(rec.Notes, "\n"), "web/10-hang: timed out") {
		t.Errorf("notes %q", rec.Notes)
	}
}

func TestParentRoleNeverReady(t *testing.T) {
	f := newFixture(t)
	f.image("replica", "10-setup", dumpEnv, 0o755)
	src := fixed(pgService(false))
	in := f.input("ROLE='replica'\nVMID='12'", src)
	in.WaitTimeout = 300 * time.Millisecond
	r, _ := engine.NewTestRecorder()
	err := Apply(context.Background(), r, in)
	if err == nil || !strings.Contains(err.Error(), "parent roles not READY after 300ms: master: 0 of 1 VMs READY") {
		t.Fatalf("err = %v", err)
	}
	if f.exists("order") {
		t.Error("role scripts ran before the parent was READY")
	}
	if src.calls < 3 {
		t.Errorf("the service was read %d times; the wait did not poll", src.calls)
	}
}

// A parent role scaled to 0 VMs does not hold its children back; one whose
// VMs are not listed yet does.
func TestParentRoleWithNoVMsIsReady(t *testing.T) {
	f := newFixture(t)
	f.image("replica", "10-setup", dumpEnv, 0o755)
	s := pgService(false)
	s.Roles[0].Cardinality, s.Roles[0].Nodes = 0, nil
	in := f.input("ROLE='replica'\nVMID='12'", fixed(s))
	in.WaitTimeout = 300 * time.Millisecond
	r, _ := engine.NewTestRecorder()
	if err := Apply(context.Background(), r, in); err != nil {
		t.Fatal(err)
	}
	if !f.exists("order") {
		t.Error("role scripts did not run")
	}
	if ok, why := (&Role{Name: "master", Cardinality: 2}).ready(); ok {
		t.Errorf("a role of 2 whose VMs are not listed yet is ready (%s)", why)
	}
}

// OneGate leaves "parents" out; ROLE_PARENTS from the context names them.
func TestParentFromContextBecomesReady(t *testing.T) {
	f := newFixture(t)
	f.image("replica", "10-setup", dumpEnv, 0o755)
	src := &fakeSource{next: func(call int) (*Service, error) {
		s := pgService(call >= 3)
		s.Roles[1].Parents = nil
		return s, nil
	}}
	r, rec := engine.NewTestRecorder()
	if err := Apply(context.Background(), r, f.input("ROLE='replica'\nVMID='12'\nROLE_PARENTS='master'", src)); err != nil {
		t.Fatal(err)
	}
	if src.calls != 3 || !f.exists("order") {
		t.Errorf("calls %d, ran %v", src.calls, f.exists("order"))
	}
	if !strings.Contains(strings.Join(rec.Notes, "\n"), "parent roles master are READY") {
		t.Errorf("notes %q", rec.Notes)
	}
}

func TestParentNotInService(t *testing.T) {
	f := newFixture(t)
	f.image("replica", "10-setup", dumpEnv, 0o755)
	r, _ := engine.NewTestRecorder()
	err := Apply(context.Background(), r, f.input("ROLE='replica'\nVMID='12'\nROLE_PARENTS='witness'", fixed(pgService(true))))
	if err == nil || !strings.Contains(err.Error(), `parent role "witness" is not in service 7`) {
		t.Fatalf("err = %v", err)
	}
}

// webService has a frontend (VM 1) and n app VMs.
func webService(n int) *Service {
	s := &Service{ID: "9", Name: "shop", Roles: []Role{{Name: "frontend", Cardinality: 1, Nodes: []Node{node("1", "10.1.0.1", true)}}, {Name: "app", Cardinality: n}}}
	for i := range n {
		s.Roles[1].Nodes = append(s.Roles[1].Nodes, node(fmt.Sprint(10+i), fmt.Sprintf("10.1.0.%d", 10+i), true))
	}
	return s
}

func TestReconfigureOnScale(t *testing.T) {
	f := newFixture(t)
	f.image("frontend", "10-upstreams", "#!/bin/sh\necho \"$1 $ONECONTEXT_RECONFIGURE $ONECONTEXT_ROLE_APP_IPS\" >> \"$OUT/runs\"\n", 0o755)
	f.image("frontend", ReconfigureTag, "", 0o644)
	size := 2
	src := &fakeSource{next: func(int) (*Service, error) { return webService(size), nil }}
	in := f.input("ROLE='frontend'\nVMID='1'", src)
	ctx := context.Background()
	r, _ := engine.NewTestRecorder()
	if err := Apply(ctx, r, in); err != nil {
		t.Fatal(err)
	}
	r, rec := engine.NewTestRecorder()
	if err := Reconfigure(ctx, r, in); !errors.Is(err, engine.ErrSkip) || len(rec.Changes) != 0 {
		t.Fatalf("unchanged membership: err %v changes %q", err, rec.Changes)
	}
	size = 3
	r, rec = engine.NewTestRecorder()
	if err := Reconfigure(ctx, r, in); err != nil {
		t.Fatal(err)
	}
	want := "apply NO 10.1.0.10 10.1.0.11\nreconfigure YES 10.1.0.10 10.1.0.11 10.1.0.12\n"
	if got := f.read("runs"); got != want {
		t.Errorf("runs = %q, want %q", got, want)
	}
	if !strings.Contains(strings.Join(rec.Notes, "\n"), "app 2→3") {
		t.Errorf("notes %q lack the change", rec.Notes)
	}
	st, _ := in.loadMembership()
	if len(st["app"]) != 3 {
		t.Errorf("saved membership %v", st)
	}
	r, _ = engine.NewTestRecorder()
	if err := Reconfigure(ctx, r, in); !errors.Is(err, engine.ErrSkip) {
		t.Errorf("after applying, err = %v, want skip", err)
	}
}

func TestReconfigureFailureIsRetried(t *testing.T) {
	f := newFixture(t)
	f.image("frontend", "10-upstreams", "#!/bin/sh\necho run >> \"$OUT/runs\"\n[ \"$1\" = apply ] || [ -e \"$OUT/fixed\" ]\n", 0o755)
	f.onMedium("frontend", ReconfigureTag, "")
	size := 2
	src := &fakeSource{next: func(int) (*Service, error) { return webService(size), nil }}
	in := f.input("ROLE='frontend'\nVMID='1'", src)
	ctx := context.Background()
	r, _ := engine.NewTestRecorder()
	if err := Apply(ctx, r, in); err != nil {
		t.Fatal(err)
	}
	size = 1
	r, _ = engine.NewTestRecorder()
	if err := Reconfigure(ctx, r, in); err == nil {
		t.Fatal("failing reconfigure succeeded")
	}
	_ = os.WriteFile(filepath.Join(f.out, "fixed"), nil, 0o644)
	r, _ = engine.NewTestRecorder()
	if err := Reconfigure(ctx, r, in); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if got := strings.Count(f.read("runs"), "run"); got != 3 {
		t.Errorf("%d runs, want apply + failed + retried", got)
	}
}

func TestReconfigureWithoutMarkerOnlyRecords(t *testing.T) {
	f := newFixture(t)
	f.image("frontend", "10-upstreams", "#!/bin/sh\necho run >> \"$OUT/runs\"\n", 0o755)
	size := 2
	src := &fakeSource{next: func(int) (*Service, error) { return webService(size), nil }}
	in := f.input("ROLE='frontend'\nVMID='1'", src)
	r, _ := engine.NewTestRecorder()
	if err := Apply(context.Background(), r, in); err != nil {
		t.Fatal(err)
	}
	size = 4
	r, rec := engine.NewTestRecorder()
	if err := Reconfigure(context.Background(), r, in); err != nil {
		t.Fatal(err)
	}
	if f.read("runs") != "run\n" {
		t.Error("scripts re-ran without the reconfigure marker")
	}
	if !strings.Contains(strings.Join(rec.Notes, "\n"), "does not ask for reconfiguration") || len(rec.Changes) != 1 {
		t.Errorf("notes %q changes %q", rec.Notes, rec.Changes)
	}
}

func TestReconfigureSingleModeSkips(t *testing.T) {
	f := newFixture(t)
	r, _ := engine.NewTestRecorder()
	if err := Reconfigure(context.Background(), r, f.input("ROLE='x'", nil)); !errors.Is(err, engine.ErrSkip) {
		t.Fatalf("err = %v", err)
	}
}

// At boot a service OneGate cannot show yet (404 while oneflow-server is
// down; no answer when the context names a role) is asked again; a final
// answer (401) and an outage without a role in the context are not.
func TestBootWaitsForAServiceThatCannotBeReadYet(t *testing.T) {
	notFound := &onegate.APIError{Method: "GET", Path: "/service", Status: 404, Message: "Service 7 not found"}
	denied := &onegate.APIError{Method: "GET", Path: "/service", Status: 401, Message: "Not authorized"}
	down := errors.New("dial tcp 169.254.16.9:5030: connect: connection refused")
	failing := func(err error, times int) *fakeSource {
		return &fakeSource{next: func(call int) (*Service, error) {
			if call <= times {
				return nil, err
			}
			return pgService(true), nil
		}}
	}
	for _, tc := range []struct {
		name      string
		context   string
		src       *fakeSource
		wantCalls int
		wantRan   bool
	}{
		{"404 then the service", "ROLE='replica'\nVMID='12'", failing(notFound, 2), 3, true},
		{"404 without a role in the context", "VMID='12'", failing(notFound, 2), 3, true},
		{"no answer with a role", "ROLE='replica'\nVMID='12'", failing(down, 1), 2, true},
		{"no answer without a role", "VMID='12'", failing(down, 1), 1, false},
		{"401", "ROLE='replica'\nVMID='12'", failing(denied, 1), 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.image("replica", "10-setup", dumpEnv, 0o755)
			in := f.input(tc.context, tc.src)
			in.Sleep = func(context.Context, time.Duration) error { return nil }
			r, _ := engine.NewTestRecorder()
			err := Apply(context.Background(), r, in)
			if tc.src.calls != tc.wantCalls || f.exists("order") != tc.wantRan || (err == nil) != tc.wantRan {
				t.Errorf("calls %d (want %d), scripts ran %v, err %v", tc.src.calls, tc.wantCalls, f.exists("order"), err)
			}
		})
	}
	// The wait is bounded.
	f := newFixture(t)
	f.image("replica", "10-setup", dumpEnv, 0o755)
	src := failing(notFound, 1<<30)
	in := f.input("ROLE='replica'\nVMID='12'", src)
	in.WaitTimeout = 100 * time.Millisecond
	r, _ := engine.NewTestRecorder()
	if err := Apply(context.Background(), r, in); err == nil || !strings.Contains(err.Error(), "still after 100ms") || f.exists("order") {
		t.Errorf("err %v, ran %v", err, f.exists("order"))
	}
	if src.calls < 2 {
		t.Errorf("asked %d times", src.calls)
	}
}

func TestFailedApplyIsRetriedByTheTimer(t *testing.T) {
	f := newFixture(t)
	f.image("web", "10-setup", "#!/bin/sh\necho \"$1\" >> \"$OUT/runs\"\n[ -e \"$OUT/fixed\" ]\n", 0o755)
	in := f.input("ROLE='web'", nil)
	ctx := context.Background()
	r, _ := engine.NewTestRecorder()
	if err := Apply(ctx, r, in); err == nil {
		t.Fatal("the failing apply succeeded")
	}
	r, _ = engine.NewTestRecorder()
	if err := Reconfigure(ctx, r, in); err == nil {
		t.Fatal("the retry of a still failing apply succeeded")
	}
	_ = os.WriteFile(filepath.Join(f.out, "fixed"), nil, 0o644)
	r, rec := engine.NewTestRecorder()
	if err := Reconfigure(ctx, r, in); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if !strings.Contains(strings.Join(rec.Notes, "\n"), "role web failed to apply at boot; applying it again (retry 2 of 5)") {
		t.Errorf("notes %q", rec.Notes)
	}
	if got := f.read("runs"); got != "apply\napply\napply\n" {
		t.Errorf("runs %q, want three applies", got)
	}
	r, _ = engine.NewTestRecorder()
	if err := Reconfigure(ctx, r, in); !errors.Is(err, engine.ErrSkip) {
		t.Errorf("after a successful retry: %v, want the single-mode skip", err)
	}
	if _, err := os.Stat(f.root.HostPath(in.pendingPath())); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the note of the failed apply is still there: %v", err)
	}
}

func TestApplyRetriesAreBounded(t *testing.T) {
	f := newFixture(t)
	f.image("web", "10-setup", "#!/bin/sh\necho run >> \"$OUT/runs\"\nexit 1\n", 0o755)
	in := f.input("ROLE='web'", nil)
	ctx := context.Background()
	r, _ := engine.NewTestRecorder()
	_ = Apply(ctx, r, in)
	for i := 0; i < MaxApplyRetries; i++ {
		r, _ = engine.NewTestRecorder()
		if err := Reconfigure(ctx, r, in); err == nil || errors.Is(err, engine.ErrSkip) {
			t.Fatalf("retry %d: %v, want the script's failure", i+1, err)
		}
	}
	r, _ = engine.NewTestRecorder()
	err := Reconfigure(ctx, r, in)
	if !errors.Is(err, engine.ErrSkip) || !strings.Contains(err.Error(), "failed to apply at boot and in 5 retries") {
		t.Errorf("after %d retries: %v", MaxApplyRetries, err)
	}
	if got := strings.Count(f.read("runs"), "run"); got != 1+MaxApplyRetries {
		t.Errorf("the script ran %d times, want %d", got, 1+MaxApplyRetries)
	}
}

// A replica whose master was not READY within the boot's wait applies
// (not reconfigures) once the master is, and the membership is saved.
func TestParentLateAtBootIsAppliedByTheTimer(t *testing.T) {
	f := newFixture(t)
	f.image("replica", "10-setup", "#!/bin/sh\necho \"$1 $ONECONTEXT_RECONFIGURE\" >> \"$OUT/runs\"\n", 0o755)
	ready := false
	src := &fakeSource{next: func(int) (*Service, error) { return pgService(ready), nil }}
	in := f.input("ROLE='replica'\nVMID='12'", src)
	in.WaitTimeout = 200 * time.Millisecond
	ctx := context.Background()
	r, _ := engine.NewTestRecorder()
	if err := Apply(ctx, r, in); err == nil {
		t.Fatal("applied with the master not READY")
	}
	ready = true
	r, _ = engine.NewTestRecorder()
	if err := Reconfigure(ctx, r, in); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if got := f.read("runs"); got != "apply NO\n" {
		t.Errorf("runs %q, want one apply", got)
	}
	if st, _ := in.loadMembership(); st == nil {
		t.Error("membership not saved after the retried apply")
	}
}
