package report

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"one-contextd/context/settings"
	"one-contextd/context/shvars"
)

// waits records the pauses asked for instead of sleeping.
type waits struct {
	got []time.Duration
	err error // returned by every wait
}

func (w *waits) sleep(_ context.Context, d time.Duration) error {
	w.got = append(w.got, d)
	return w.err
}

// gateFrom builds the OneGate settings from context.sh lines, as the agent
// does, with the harness's gate, VM and token.
func (h *harness) gateFrom(lines ...string) settings.OneGate {
	h.t.Helper()
	vars := []shvars.Var{{Name: "ONEGATE_ENDPOINT", Value: h.gate.URL}, {Name: "VMID", Value: "42"},
		{Name: "ONEGATE_TOKEN", Value: testToken}, {Name: "REPORT_READY", Value: "YES"}}
	for _, l := range lines {
		name, value, _ := strings.Cut(l, "=")
		vars = append(vars, shvars.Var{Name: name, Value: value})
	}
	parsed, errs := shvars.Parse("context.sh", shvars.Format(vars))
	if len(errs) > 0 {
		h.t.Fatal(errs)
	}
	c := settings.Build(parsed, settings.Inputs{})
	if len(c.Problems) > 0 {
		h.t.Fatalf("problems: %v", c.Problems)
	}
	return c.OneGate
}

// counterScript counts its runs in file and succeeds from run okFrom on
// (never when okFrom is 0).
func counterScript(file string, okFrom int) string {
	return `n=$(cat '` + file + `' 2>/dev/null || echo 0); n=$((n+1)); echo $n > '` + file + `'; ` +
		`[ ` + itoa(okFrom) + ` -gt 0 ] && [ $n -ge ` + itoa(okFrom) + ` ]`
}

func runs(t *testing.T, file string) int {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// A check that fails once and then passes gets READY delivered on the
// second try, RETRY_WAIT_PERIOD after the first (net-99-report-ready's
// loop), without sleeping for real.
func TestReadyCheckRetriedUntilItPasses(t *testing.T) {
	for _, kind := range []string{"READY_SCRIPT", "READY_SCRIPT_PATH"} {
		t.Run(kind, func(t *testing.T) {
			h := newHarness(t)
			h.rec.Steps = okSteps()
			counter := filepath.Join(h.dir, "runs")
			script := counterScript(counter, 2)
			in := h.input()
			if kind == "READY_SCRIPT" {
				in.OneGate = h.gateFrom("READY_SCRIPT=" + script) // defaults: 3 tries, 10 s apart
			} else {
				p := filepath.Join(h.dir, "opt/ready.sh")
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
					t.Fatal(err)
				}
				in.OneGate = h.gateFrom("READY_SCRIPT_PATH=/opt/ready.sh")
			}
			w := &waits{}
			in.Sleep = w.sleep
			start := time.Now()
			sr, err := apply(t, in)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if v, _ := h.attr(AttrReady); v != "YES" {
				t.Fatalf("READY = %q, want YES (report %q)", v, h.rec.Report)
			}
			if n := runs(t, counter); n != 2 {
				t.Errorf("check ran %d times, want 2", n)
			}
			if len(w.got) != 1 || w.got[0] != settings.DefaultReadyRetryWait {
				t.Errorf("waits %v, want one of %v", w.got, settings.DefaultReadyRetryWait)
			}
			if time.Since(start) > 5*time.Second {
				t.Errorf("took %v: slept for real", time.Since(start))
			}
			if !strings.HasPrefix(h.rec.Report, "sent: READY=YES") {
				t.Errorf("Record.Report = %q", h.rec.Report)
			}
			if notes := strings.Join(sr.Notes, "\n"); !strings.Contains(notes, "try 1 of 3") || !strings.Contains(notes, "passed on try 2 of 3") {
				t.Errorf("notes = %q", sr.Notes)
			}
		})
	}
}

// A check that never passes runs RETRY_COUNT times, RETRY_WAIT_PERIOD
// apart; then the step fails (upstream: "Failed to report READY", exit 1)
// and says why in the run record, and nothing is sent or queued.
func TestReadyCheckAlwaysFailingIsBoundedAndFails(t *testing.T) {
	h := newHarness(t)
	h.rec.Steps = okSteps()
	counter := filepath.Join(h.dir, "runs")
	in := h.input()
	in.OneGate = h.gateFrom("READY_SCRIPT="+counterScript(counter, 0)+"; echo "+testToken+" not up >&2; exit 4",
		"RETRY_COUNT=4", "RETRY_WAIT_PERIOD=7")
	w := &waits{}
	in.Sleep = w.sleep
	sr, err := apply(t, in)
	if err == nil {
		t.Fatal("Apply succeeded although the readiness check never passed")
	}
	if n := runs(t, counter); n != 4 {
		t.Errorf("check ran %d times, want RETRY_COUNT=4", n)
	}
	if len(w.got) != 3 || w.got[0] != 7*time.Second || w.got[2] != 7*time.Second {
		t.Errorf("waits %v, want 3 of 7s", w.got)
	}
	if notes := strings.Join(sr.Notes, "\n"); strings.Count(notes, "readiness check failed (try ") != 3 || strings.Contains(notes, testToken) {
		t.Errorf("notes = %q, want one per failed try before the last, without the token", sr.Notes)
	}
	for _, s := range []string{err.Error(), h.rec.Report} {
		if !strings.Contains(s, "readiness check failed 4 times") || !strings.Contains(s, "READY_SCRIPT exited with status 4") {
			t.Errorf("%q does not say the check failed 4 times and why", s)
		}
		if strings.Contains(s, testToken) {
			t.Errorf("token in %q", s)
		}
	}
	if !strings.HasPrefix(h.rec.Report, "not sent: ") {
		t.Errorf("Record.Report = %q", h.rec.Report)
	}
	if n := len(h.gate.Requests()); n != 0 {
		t.Errorf("%d requests sent, want none", n)
	}
	if h.root.Exists(PendingFile) {
		t.Error("a report was queued although the VM is not ready")
	}

	// A shutdown while waiting for the next try stops at once.
	h2 := newHarness(t)
	h2.rec.Steps = okSteps()
	in = h2.input()
	in.OneGate = h2.gateFrom("READY_SCRIPT=false")
	w = &waits{err: context.Canceled}
	in.Sleep = w.sleep
	if _, err := apply(t, in); !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "stopped waiting") {
		t.Errorf("Apply: %v, want the cut-short wait", err)
	}
	if len(w.got) != 1 || !strings.HasPrefix(h2.rec.Report, "not sent: readiness check failed (READY_SCRIPT exited with status 1)") {
		t.Errorf("waits %v, report %q", w.got, h2.rec.Report)
	}
}

// A gate that redirects PUT /vm does not get READY counted as sent (the
// client does not follow, so the token goes nowhere else); the step fails
// and the report is queued.
func TestRedirectingGateIsNotReady(t *testing.T) {
	h := newHarness(t)
	h.rec.Steps = okSteps()
	var hits int
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		http.Redirect(w, r, h.gate.URL+r.URL.Path, http.StatusMovedPermanently)
	}))
	defer redirector.Close()
	in := h.input()
	u := *in.OneGate.Endpoint
	in.OneGate.Endpoint = &u
	in.OneGate.Endpoint.Host = strings.TrimPrefix(redirector.URL, "http://")
	_, err := apply(t, in)
	if err == nil || !strings.Contains(err.Error(), "redirect") {
		t.Fatalf("Apply: %v, want a failure naming the redirect", err)
	}
	if hits == 0 {
		t.Fatal("the redirecting gate was not asked")
	}
	if n := len(h.gate.Requests()); n != 0 {
		t.Errorf("the redirect target got %d requests, want none", n)
	}
	if strings.HasPrefix(h.rec.Report, "sent") || strings.Contains(err.Error(), testToken) || strings.Contains(h.rec.Report, testToken) {
		t.Errorf("Record.Report = %q, err = %v", h.rec.Report, err)
	}
	if !h.root.Exists(PendingFile) {
		t.Error("not queued for the background retry")
	}
}
