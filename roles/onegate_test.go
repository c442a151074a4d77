package roles

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"one-contextd/engine"
	"one-contextd/onegate"
	"one-contextd/onegate/fakegate"
	"one-contextd/secret"
)

// gateFor starts a fake OneGate holding a master (VM 10) and two replicas
// (11, 12) and returns a client speaking for VM 12.
func gateFor(t *testing.T, vmid int) (*fakegate.Server, OneGate) {
	t.Helper()
	s := fakegate.Start(t)
	for id, ip := range map[int]string{10: "10.0.0.1", 11: "10.0.0.2", 12: "10.0.0.3"} {
		if err := s.AddVM(id, "vm", "", ip); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetService(fakegate.ServiceSpec{ID: 7, Name: "pg", Roles: []fakegate.RoleSpec{
		{Name: "master", VMs: []int{10}},
		{Name: "replica", Parents: []string{"master"}, VMs: []int{11, 12}},
	}}); err != nil {
		t.Fatal(err)
	}
	tok, err := s.Token(vmid)
	if err != nil {
		t.Fatal(err)
	}
	c, err := onegate.New(onegate.Config{Endpoint: s.URL, Token: secret.New(tok), VMID: strconv.Itoa(vmid)})
	if err != nil {
		t.Fatal(err)
	}
	return s, OneGate{Client: c}
}

func TestOneGateServiceDocument(t *testing.T) {
	s, src := gateFor(t, 12)
	if err := s.SetVMAttr(10, "READY", "YES"); err != nil {
		t.Fatal(err)
	}
	svc, err := src.Service(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	m := svc.Role("master")
	rep := svc.Role("replica")
	if m == nil || rep == nil || svc.ID != "7" {
		t.Fatalf("service %+v", svc)
	}
	if got := strings.Join(rep.IPs(), " "); got != "10.0.0.2 10.0.0.3" || !m.Nodes[0].Ready || rep.Nodes[0].Ready {
		t.Errorf("replica IPs %q, master ready %v, replica ready %v", got, m.Nodes[0].Ready, rep.Nodes[0].Ready)
	}
}

// The replica waits for the master through the real client and the fake
// gate, then runs with the master's address.
func TestOneGateReplicaWaitsForMaster(t *testing.T) {
	s, src := gateFor(t, 12)
	f := newFixture(t)
	f.image("replica", "10-setup", dumpEnv, 0o755)
	in := f.input("ROLE='replica'\nVMID='12'\nROLE_NAME='replica'\nROLE_PARENTS='master'", src)
	in.PollInterval = 50 * time.Millisecond
	go func() {
		time.Sleep(300 * time.Millisecond)
		_ = s.SetVMAttr(10, "READY", "YES")
	}()
	r, _ := engine.NewTestRecorder()
	if err := Apply(context.Background(), r, in); err != nil {
		t.Fatal(err)
	}
	env := envOf(f.read("env"))
	if env["ONECONTEXT_MASTER_IP"] != "10.0.0.1" || env["ONECONTEXT_ROLE_INDEX"] != "1" || env["ONECONTEXT_SERVICE_ID"] != "7" {
		t.Errorf("master %q index %q service %q", env["ONECONTEXT_MASTER_IP"], env["ONECONTEXT_ROLE_INDEX"], env["ONECONTEXT_SERVICE_ID"])
	}
	var polls int
	for _, q := range s.Requests() {
		if q.Path == "/service" {
			polls++
		}
	}
	if polls < 2 {
		t.Errorf("%d service reads; the replica did not wait", polls)
	}
}

func TestOneGateNotInServiceIsSingleMode(t *testing.T) {
	s := fakegate.Start(t)
	if err := s.AddVM(5, "lonely", "", "10.0.0.5"); err != nil {
		t.Fatal(err)
	}
	tok, _ := s.Token(5)
	c, err := onegate.New(onegate.Config{Endpoint: s.URL, Token: secret.New(tok), VMID: "5"})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	f.image("web", "10-setup", dumpEnv, 0o755)
	r, _ := engine.NewTestRecorder()
	if err := Apply(context.Background(), r, f.input("ROLE='web'\nVMID='5'", OneGate{Client: c})); err != nil {
		t.Fatal(err)
	}
	if envOf(f.read("env"))["ONECONTEXT_MODE"] != "single" {
		t.Error("not single mode")
	}
}

func TestOneGateScaleTriggersReconfigure(t *testing.T) {
	s, src := gateFor(t, 10)
	f := newFixture(t)
	f.image("master", "10-replicas", "#!/bin/sh\necho \"$1 $ONECONTEXT_ROLE_REPLICA_IPS\" >> \"$OUT/runs\"\n", 0o755)
	f.image("master", ReconfigureTag, "", 0o644)
	in := f.input("ROLE='master'\nVMID='10'", src)
	ctx := context.Background()
	r, _ := engine.NewTestRecorder()
	if err := Apply(ctx, r, in); err != nil {
		t.Fatal(err)
	}
	if err := src.Client.Scale(ctx, "replica", 3); err != nil {
		t.Fatal(err)
	}
	s.Settle()
	r, _ = engine.NewTestRecorder()
	if err := Reconfigure(ctx, r, in); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(f.read("runs")), "\n")
	if len(lines) != 2 || lines[0] != "apply 10.0.0.2 10.0.0.3" || !strings.HasPrefix(lines[1], "reconfigure 10.0.0.2 10.0.0.3 10.0.0.") {
		t.Errorf("runs %q", lines)
	}
}
