package agent

import (
	"strings"
	"testing"

	"one-contextd/engine"
	"one-contextd/onegate/fakegate"
)

// A whole run with REPORT_READY=YES leaves READY=YES at OneGate; a run
// whose script fails leaves the failure there instead, and no READY.
func TestRunReportsReadyAndFailuresToOneGate(t *testing.T) {
	gate := fakegate.Start(t)
	const token = "dGVzdC10b2tlbi1mb3ItdGhlLWFnZW50Cg=="
	if err := gate.Gate.AddVM(7, "vm-7", token, "192.0.2.7"); err != nil {
		t.Fatal(err)
	}
	ctxSh := "ONEGATE_ENDPOINT='" + gate.URL + "'\nVMID='7'\nTOKEN='YES'\nREPORT_READY='YES'\n"
	h := newHarness(t)
	src := contextDir(t, ctxSh, map[string]string{"token.txt": token + "\n"})
	rec := h.run(src, StageAll)
	if !rec.OK() {
		t.Fatalf("run failed: %+v", rec.Failed())
	}
	if v, ok := gate.Gate.VMAttr(7, "READY"); !ok || v != "YES" {
		t.Fatalf("READY = %q %v, want YES; report step: %+v", v, ok, stepOf(rec, "report"))
	}
	if !strings.HasPrefix(rec.Report, "sent") {
		t.Errorf("record says %q", rec.Report)
	}
	// The roles lookup (GET /service) and the report share one connection.
	if n := gate.Accepted(); n != 1 {
		t.Errorf("the run opened %d connections to OneGate, want 1 kept alive", n)
	}

	// Same VM, a start script that fails: the failure is reported, READY withdrawn.
	src2 := contextDir(t, ctxSh+"START_SCRIPT='echo failing >&2; exit 3'\n", map[string]string{"token.txt": token + "\n"})
	rec = h.run(src2, StageAll)
	if rec.OK() {
		t.Fatal("a failing START_SCRIPT must fail the run")
	}
	errAttr, ok := gate.Gate.VMAttr(7, "ONECONTEXT_ERROR")
	if !ok || !strings.Contains(errAttr, "scripts") {
		t.Fatalf("ONECONTEXT_ERROR = %q %v", errAttr, ok)
	}
	if v, ok := gate.Gate.VMAttr(7, "READY"); ok && v == "YES" {
		t.Error("READY=YES still set after a failed run")
	}
	if strings.Contains(errAttr, token) {
		t.Error("the token reached OneGate's attributes")
	}
}

func stepOf(rec *engine.Record, name string) engine.StepRecord {
	s, _ := rec.Step(name)
	return s
}
