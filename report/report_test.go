package report

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"one-contextd/context/settings"
	"one-contextd/context/shvars"
	"one-contextd/engine"
	"one-contextd/fsroot"
	"one-contextd/onegate/fakegate"
	"one-contextd/runner"
	"one-contextd/secret"
	"one-contextd/state"
)

const (
	testVMID  = 42
	testToken = "tok-42-Zm9vYmFyc2VjcmV0"
)

var fixedNow = time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)

type harness struct {
	t    *testing.T
	gate *fakegate.Server
	dir  string
	root *fsroot.Root
	rec  *engine.Record
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	g := fakegate.Start(t)
	if err := g.AddVM(testVMID, "vm-42", testToken, "192.0.2.10"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	root, err := fsroot.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	rec := &engine.Record{Agent: "one-contextd", Version: "1.2.3", Stage: "network",
		Started: time.Date(2026, 5, 1, 9, 59, 0, 0, time.UTC)}
	return &harness{t: t, gate: g, dir: dir, root: root, rec: rec}
}

func (h *harness) input() Input {
	u, err := url.Parse(h.gate.URL)
	if err != nil {
		h.t.Fatal(err)
	}
	return Input{
		OneGate: settings.OneGate{Endpoint: u, VMID: "42", Token: secret.New(testToken), ReportReady: true},
		Record:  h.rec, Root: h.root, Run: runner.Exec{},
		Sleep: func(context.Context, time.Duration) error { return nil },
		Clock: func() time.Time { return fixedNow },
	}
}

func (h *harness) attr(key string) (string, bool) { return h.gate.VMAttr(testVMID, key) }

// writeEnv writes the agent's env file as the env-file step does.
func (h *harness) writeEnv(token string) {
	h.t.Helper()
	data := shvars.Format([]shvars.Var{
		{Name: "ONEGATE_ENDPOINT", Value: h.gate.URL}, {Name: "VMID", Value: "42"}, {Name: "TOKENTXT", Value: token},
	})
	if _, err := h.root.WriteFile(EnvFile, data, fsroot.WriteOptions{Mode: 0o400}); err != nil {
		h.t.Fatal(err)
	}
}

func okSteps() []engine.StepRecord {
	return []engine.StepRecord{
		{Name: "medium", Status: engine.OK},
		{Name: "network", Status: engine.OK},
		{Name: "grow", Status: engine.Skipped, Error: "no GROW_FS"}, // nothing to do: fine
		{Name: "metrics-probe", Status: engine.Failed, Error: "boom", Optional: true},
	}
}

func apply(t *testing.T, in Input) (*engine.StepRecord, error) {
	t.Helper()
	r, sr := engine.NewTestRecorder()
	err := Apply(context.Background(), r, in)
	return sr, err
}

func TestReadyWhenEveryRequiredStepSucceeded(t *testing.T) {
	h := newHarness(t)
	h.rec.Steps = okSteps()
	sr, err := apply(t, h.input())
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if v, _ := h.attr("READY"); v != "YES" {
		t.Fatalf("READY = %q, want YES", v)
	}
	if v, _ := h.attr(AttrStatus); v != "ok one-contextd/1.2.3 2026-05-01T10:00:00Z" {
		t.Errorf("%s = %q", AttrStatus, v)
	}
	if v, ok := h.attr(AttrError); ok {
		t.Errorf("%s = %q, want none", AttrError, v)
	}
	if !strings.HasPrefix(h.rec.Report, "sent: READY=YES") {
		t.Errorf("Record.Report = %q", h.rec.Report)
	}
	if h.root.Exists(PendingFile) {
		t.Error("pending file written although the report was sent")
	}
	if len(sr.Notes) == 0 || !strings.Contains(strings.Join(sr.Notes, "\n"), "reported READY=YES") {
		t.Errorf("notes = %q", sr.Notes)
	}
}

func TestFailedStepReportsErrorAndLaterSuccessClearsIt(t *testing.T) {
	h := newHarness(t)
	// An earlier boot said READY=YES; this one fails.
	if err := h.gate.SetVMAttr(testVMID, "READY", "YES"); err != nil {
		t.Fatal(err)
	}
	h.rec.Steps = []engine.StepRecord{
		{Name: "medium", Status: engine.OK},
		{Name: "network", Status: engine.Failed, Error: `eth0: set mtu: invalid argument, see "ip link" [9000]`},
		{Name: "users", Status: engine.Failed, Error: "users: useradd bob: exit status 9"},
		{Name: "scripts", Status: engine.Skipped, Error: "needs network, which did not succeed"},
		{Name: "extra", Status: engine.Failed, Error: "optional failure", Optional: true},
	}
	if _, err := apply(t, h.input()); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	want := "network: eth0: set mtu: invalid argument; see 'ip link' (9000); users: useradd bob: exit status 9; " +
		"scripts: blocked: needs network which did not succeed"
	if v, _ := h.attr(AttrError); v != want {
		t.Errorf("%s =\n %q, want\n %q", AttrError, v, want)
	}
	if v, ok := h.attr("READY"); ok {
		t.Errorf("READY = %q after a failed run, want it erased", v)
	}
	if v, _ := h.attr(AttrStatus); !strings.HasPrefix(v, "failed one-contextd/1.2.3 ") {
		t.Errorf("%s = %q", AttrStatus, v)
	}
	if !strings.HasPrefix(h.rec.Report, "sent: "+AttrError) {
		t.Errorf("Record.Report = %q", h.rec.Report)
	}

	// The next run succeeds: READY set, the failure attribute erased.
	h.rec = &engine.Record{Version: "1.2.3", Steps: okSteps()}
	if sr, err := apply(t, h.input()); err != nil {
		t.Fatalf("second Apply: %v", err)
	} else if !strings.Contains(strings.Join(sr.Notes, "\n"), "erased "+AttrError) {
		t.Errorf("notes = %q", sr.Notes)
	}
	if v, _ := h.attr("READY"); v != "YES" {
		t.Errorf("READY = %q, want YES", v)
	}
	if v, ok := h.attr(AttrError); ok {
		t.Errorf("%s = %q still set after a good run", AttrError, v)
	}
}

func TestReadyScriptPathMissingSendsNothing(t *testing.T) {
	h := newHarness(t)
	h.rec.Steps = okSteps()
	in := h.input()
	in.OneGate.ReadyScriptPath = "/usr/local/bin/app-ready"
	var waits int
	in.Sleep = func(context.Context, time.Duration) error { waits++; return nil }
	sr, err := apply(t, in)
	// Upstream: "does not exist", exit 1, no tries.
	if err == nil || !strings.Contains(err.Error(), "READY not reported") || !strings.Contains(err.Error(), "/usr/local/bin/app-ready does not exist") {
		t.Fatalf("Apply: %v, want the step to fail naming the path", err)
	}
	if n := len(h.gate.Requests()); n != 0 {
		t.Errorf("%d requests sent, want none", n)
	}
	if waits != 0 {
		t.Errorf("%d waits for a missing path, want none", waits)
	}
	if len(sr.Problems) != 1 || !strings.HasPrefix(sr.Problems[0], "READY_SCRIPT_PATH: ") {
		t.Errorf("problems = %q", sr.Problems)
	}
	if !strings.HasPrefix(h.rec.Report, "not sent: readiness check failed") {
		t.Errorf("Record.Report = %q", h.rec.Report)
	}
}

func TestReadyScriptPathExitStatusDecides(t *testing.T) {
	for _, tc := range []struct {
		script string
		ready  bool
	}{
		{"#!/bin/sh\n[ \"$APP\" = up ]\n", true}, // sees Input.Env
		{"#!/bin/sh\nexit 3\n", false},
	} {
		h := newHarness(t)
		h.rec.Steps = okSteps()
		p := filepath.Join(h.dir, "opt/ready.sh")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(tc.script), 0o755); err != nil {
			t.Fatal(err)
		}
		in := h.input()
		in.OneGate.ReadyScriptPath = "/opt/ready.sh"
		in.Env = []string{"APP=up", "PATH=/usr/bin:/bin"}
		if _, err := apply(t, in); (err == nil) != tc.ready {
			t.Fatalf("Apply: %v, want an error only when not ready", err)
		}
		v, _ := h.attr("READY")
		if got := v == "YES"; got != tc.ready {
			t.Errorf("script %q: READY=%q, want ready=%v (report %q)", tc.script, v, tc.ready, h.rec.Report)
		}
		if !tc.ready && !strings.Contains(h.rec.Report, "exit status 3") {
			t.Errorf("Record.Report = %q, want the exit status", h.rec.Report)
		}
	}
}

func TestReadyScript(t *testing.T) {
	for _, tc := range []struct {
		script string
		ready  bool
	}{
		{"false", false},
		{"echo not yet >&2; exit 1", false},
		{"test \"$APP\" = up && true", true},
	} {
		h := newHarness(t)
		h.rec.Steps = okSteps()
		in := h.input()
		in.OneGate.ReadyScript = tc.script
		in.Env = []string{"APP=up"}
		if _, err := apply(t, in); (err == nil) != tc.ready {
			t.Fatalf("Apply: %v, want an error only when not ready", err)
		}
		_, ready := h.attr("READY")
		if ready != tc.ready {
			t.Errorf("READY_SCRIPT %q: READY set = %v, want %v (report %q)", tc.script, ready, tc.ready, h.rec.Report)
		}
		if !tc.ready {
			if n := len(h.gate.Requests()); n != 0 {
				t.Errorf("READY_SCRIPT %q: %d requests, want none", tc.script, n)
			}
			if !strings.HasPrefix(h.rec.Report, "not sent: readiness check failed 3 times (READY_SCRIPT exited with status 1") {
				t.Errorf("Record.Report = %q", h.rec.Report)
			}
		}
	}
}

func TestNotRequested(t *testing.T) {
	h := newHarness(t)
	in := h.input()
	in.OneGate.ReportReady = false
	_, err := apply(t, in)
	if !errors.Is(err, engine.ErrSkip) {
		t.Fatalf("Apply = %v, want a skip", err)
	}
	if n := len(h.gate.Requests()); n != 0 {
		t.Errorf("%d requests, want none", n)
	}
}

func TestOutageQueuesAndRetryDelivers(t *testing.T) {
	h := newHarness(t)
	h.rec.Steps = okSteps()
	h.gate.SetFault(fakegate.Fault{Down: true})
	sr, err := apply(t, h.input())
	if err != nil {
		t.Fatalf("Apply during an outage = %v, want nil (the boot must go on)", err)
	}
	if !strings.HasPrefix(h.rec.Report, "queued (OneGate unreachable: ") {
		t.Errorf("Record.Report = %q", h.rec.Report)
	}
	if !strings.Contains(strings.Join(sr.Notes, "\n"), "queued in "+PendingFile+" for the background retry") {
		t.Errorf("notes = %q", sr.Notes)
	}
	fi, err := os.Stat(filepath.Join(h.dir, PendingFile))
	if err != nil {
		t.Fatalf("pending file: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("pending file mode %v, want 0600", fi.Mode().Perm())
	}
	data, _ := os.ReadFile(filepath.Join(h.dir, PendingFile))
	if bytes.Contains(data, []byte(testToken)) || bytes.Contains(data, []byte(h.gate.URL)) {
		t.Fatalf("pending file holds the token or endpoint:\n%s", data)
	}
	p, _, err := LoadPending(h.root)
	if err != nil || p.Outcome != OutcomeReady || p.VMID != "42" || p.Set[0] != (Attr{"READY", "YES"}) {
		t.Fatalf("pending = %+v, %v", p, err)
	}
	// The agent saves the record after the step.
	if err := state.SaveRecord(h.root, h.rec); err != nil {
		t.Fatal(err)
	}
	h.writeEnv(testToken)

	h.gate.SetFault(fakegate.Fault{})
	var out, errOut bytes.Buffer
	if code := RetryMain([]string{"--retry", "--root", h.dir, "--max-wait", "20s"}, &out, &errOut); code != 0 {
		t.Fatalf("RetryMain = %d\nstdout: %s\nstderr: %s", code, &out, &errOut)
	}
	if v, _ := h.attr("READY"); v != "YES" {
		t.Errorf("READY = %q after the retry", v)
	}
	if h.root.Exists(PendingFile) {
		t.Error("pending file still there after delivery")
	}
	rec, err := state.LoadRecord(h.root)
	if err != nil || !strings.HasPrefix(rec.Report, "sent: READY=YES") {
		t.Errorf("saved record report = %q (%v)", rec.Report, err)
	}
	// Nothing pending now.
	out.Reset()
	if code := RetryMain([]string{"--retry", "--root", h.dir}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "nothing pending") {
		t.Errorf("second RetryMain = %d, %q", code, &out)
	}
}

func TestSlowGateIsQueuedWithinBriefTimeout(t *testing.T) {
	h := newHarness(t)
	h.rec.Steps = okSteps()
	h.gate.SetFault(fakegate.Fault{Delay: 5 * time.Second})
	in := h.input()
	in.BriefTimeout = 200 * time.Millisecond
	start := time.Now()
	if _, err := apply(t, in); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Apply took %s with a 200ms brief timeout", d)
	}
	if !h.root.Exists(PendingFile) || !strings.HasPrefix(h.rec.Report, "queued") {
		t.Errorf("not queued: report %q", h.rec.Report)
	}
}

func TestServerErrorThenSuccess(t *testing.T) {
	h := newHarness(t)
	h.rec.Steps = okSteps()
	h.gate.SetFault(fakegate.Fault{Status5xx: 500, Times: 1})
	if _, err := apply(t, h.input()); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if v, _ := h.attr("READY"); v != "YES" {
		t.Fatalf("READY = %q", v)
	}
	reqs := h.gate.Requests()
	if len(reqs) < 2 || reqs[0].Status != 500 || reqs[1].Method != "PUT" || reqs[1].Status != 200 {
		t.Errorf("requests = %+v, want a 500 then a 200 PUT", reqs)
	}
}

func TestUnauthorizedIsNotRetriedForever(t *testing.T) {
	h := newHarness(t)
	h.rec.Steps = okSteps()
	h.gate.SetFault(fakegate.Fault{Force401: true})
	_, err := apply(t, h.input())
	if err == nil || !strings.Contains(err.Error(), "refused the token") || !strings.Contains(err.Error(), "401") {
		t.Fatalf("Apply = %v, want a clear 401 error", err)
	}
	if strings.Contains(err.Error(), testToken) || strings.Contains(h.rec.Report, testToken) {
		t.Fatal("token in the error or report")
	}
	if n := len(h.gate.Requests()); n != 1 {
		t.Errorf("%d requests for a 401, want 1", n)
	}
	if !h.root.Exists(PendingFile) {
		t.Error("a 401 report is not queued (a reconfigure may renew the token)")
	}

	h.writeEnv(testToken)
	var out, errOut bytes.Buffer
	code := RetryMain([]string{"--retry", "--root", h.dir, "--max-wait", "30s"}, &out, &errOut)
	if code != 1 {
		t.Fatalf("RetryMain on 401 = %d, want 1\n%s", code, &errOut)
	}
	if !strings.Contains(errOut.String(), "stale or wrong") || strings.Contains(errOut.String(), testToken) {
		t.Errorf("stderr = %q", &errOut)
	}
	if n := len(h.gate.Requests()); n != 3 { // Apply's one, then two: the env file is read again once
		t.Errorf("%d requests in all, want 3", n)
	}
	if !h.root.Exists(PendingFile) {
		t.Error("pending report dropped on a 401")
	}
}

func TestForbiddenIsAStepFailureNotQueued(t *testing.T) {
	h := newHarness(t)
	h.rec.Steps = okSteps()
	h.gate.SetPermission("vm", "update", false)
	_, err := apply(t, h.input())
	if err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("Apply = %v, want a 403 error", err)
	}
	if h.root.Exists(PendingFile) {
		t.Error("a refused report was queued")
	}
	if !strings.HasPrefix(h.rec.Report, "not sent: OneGate refused it") {
		t.Errorf("Record.Report = %q", h.rec.Report)
	}
}

func TestRetryGivesUpAtMaxWait(t *testing.T) {
	h := newHarness(t)
	h.rec.Steps = okSteps()
	h.gate.SetFault(fakegate.Fault{Down: true})
	if _, err := apply(t, h.input()); err != nil {
		t.Fatal(err)
	}
	h.writeEnv(testToken)
	var out, errOut bytes.Buffer
	start := time.Now()
	code := RetryMain([]string{"--retry", "--root", h.dir, "--max-wait", "300ms"}, &out, &errOut)
	if code != 1 {
		t.Fatalf("RetryMain = %d, want 1", code)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s with --max-wait 300ms", d)
	}
	if !strings.Contains(errOut.String(), "giving up") || !h.root.Exists(PendingFile) {
		t.Errorf("stderr %q; pending kept: %v", &errOut, h.root.Exists(PendingFile))
	}
}

func TestRetryDropsReportOfAnotherVM(t *testing.T) {
	h := newHarness(t)
	if err := savePending(h.root, &Pending{Version: pendingVersion, VMID: "7", Set: []Attr{{"READY", "YES"}}}); err != nil {
		t.Fatal(err)
	}
	h.writeEnv(testToken)
	var out, errOut bytes.Buffer
	if code := RetryMain([]string{"--retry", "--root", h.dir}, &out, &errOut); code != 0 {
		t.Fatalf("RetryMain = %d: %s", code, &errOut)
	}
	if h.root.Exists(PendingFile) || len(h.gate.Requests()) != 0 {
		t.Error("a report of VM 7 was kept or sent for VM 42")
	}
}

func TestRetryUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := RetryMain(nil, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "usage") {
		t.Errorf("RetryMain() = %d, %q", code, &errOut)
	}
}

func TestFailureText(t *testing.T) {
	long := strings.Repeat("é", 700) // 1400 bytes
	rec := &engine.Record{Steps: []engine.StepRecord{
		{Name: "users", Status: engine.Failed, Error: "chpasswd: token " + testToken + " rejected\nline2\\x"},
		{Name: "big", Status: engine.Failed, Error: long},
	}}
	scrub := func(s string) string { return strings.ReplaceAll(s, testToken, "<redacted>") }
	got := FailureText(rec, scrub)
	if strings.Contains(got, testToken) {
		t.Fatal("token in the failure text")
	}
	if !strings.HasPrefix(got, "users: chpasswd: token <redacted> rejected line2/x; big: éé") {
		t.Errorf("got %q", got[:80])
	}
	if len(got) > MaxErrorLen || !strings.HasSuffix(got, "...") {
		t.Errorf("len %d, suffix %q", len(got), got[len(got)-5:])
	}
	if !strings.HasPrefix(got[len(got)-5:], "é") {
		t.Errorf("cut inside a rune: %q", got[len(got)-6:])
	}
	if FailureText(&engine.Record{Steps: okSteps()}, nil) != "" {
		t.Error("failure text for a good run")
	}
}

// BenchmarkReadyOverLoopback is the time from Apply's start to the fake
// holding READY=YES (a fresh VM each time, so every report is a first one).
func BenchmarkReadyOverLoopback(b *testing.B) {
	g := fakegate.Start(b)
	root, err := fsroot.New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	u, _ := url.Parse(g.URL)
	rec := &engine.Record{Version: "bench", Steps: okSteps()}
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		id := 1000 + i
		if err := g.AddVM(id, "vm", testToken); err != nil {
			b.Fatal(err)
		}
		in := Input{OneGate: settings.OneGate{Endpoint: u, VMID: itoa(id), Token: secret.New(testToken), ReportReady: true},
			Record: rec, Root: root, Run: runner.Exec{}}
		r, _ := engine.NewTestRecorder()
		b.StartTimer()
		if err := Apply(ctx, r, in); err != nil {
			b.Fatal(err)
		}
		if v, _ := g.VMAttr(id, "READY"); v != "YES" {
			b.Fatalf("READY = %q", v)
		}
	}
}

func itoa(n int) string {
	var buf [20]byte
	i := len(buf)
	for {
		i--
		buf[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(buf[i:])
		}
	}
}
