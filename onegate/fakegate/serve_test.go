package fakegate

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestServeWithServiceTemplate(t *testing.T) {
	tmpl, err := os.ReadFile(filepath.Join(fixturesDir(t), "..", "oneflow-templates", "webapp-3tier.json"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logs := &syncWriter{}
	go func() {
		done <- Serve(ctx, addr, ServeConfig{VMID: 10, Token: "T0KEN", Service: tmpl, ServiceID: 3, Role: "app",
			IPs: []string{"192.0.2.50"}, AutoSettle: 50 * time.Millisecond}, logs)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}()
	base := "http://" + addr
	do := func(method, path, ct, body string) (int, string) {
		t.Helper()
		var resp *http.Response
		var err error
		for i := 0; i < 100; i++ { // the server starts in the background
			req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
			req.Header.Set("X-ONEGATE-TOKEN", "T0KEN")
			req.Header.Set("X-ONEGATE-VMID", "10")
			if ct != "" {
				req.Header.Set("Content-Type", ct)
			}
			if resp, err = http.DefaultClient.Do(req); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode, string(data)
	}
	code, body := do("GET", "/service", "", "")
	if code != 200 {
		t.Fatalf("service: %d %s", code, body)
	}
	var svc serviceDoc
	if err := json.Unmarshal([]byte(body), &svc); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range svc.SERVICE.Roles {
		names = append(names, r.Name)
	}
	if svc.SERVICE.Name != "webapp-3tier" || strings.Join(names, ",") != "database,app,frontend" ||
		svc.SERVICE.Roles[1].Cardinality != 2 || svc.SERVICE.Roles[1].Nodes[0].DeployID != 10 {
		t.Fatalf("service %s", body)
	}
	if code, _ := do("PUT", "/vm", "application/x-www-form-urlencoded", "data=READY%3DYES&type=1"); code != 200 {
		t.Fatalf("update: %d", code)
	}
	// min_vms/max_vms of the template apply: 7 > max_vms 6.
	if code, _ := do("PUT", "/service/role/app", "application/json", `{"cardinality":7}`); code != 400 {
		t.Fatalf("scale beyond max_vms: %d", code)
	}
	if code, _ := do("PUT", "/service/role/app", "application/json", `{"cardinality":"3"}`); code != 200 {
		t.Fatalf("scale: %d", code)
	}
	// The ready gate holds the role until the new VM reports READY.
	time.Sleep(150 * time.Millisecond)
	var st State
	_, raw := do("GET", "/__fake/state", "", "")
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		t.Fatal(err)
	}
	if st.VMs["10"].UserTemplate["READY"] != "YES" || st.Service.State != 8 || len(st.Service.Roles[1].VMs) != 3 {
		t.Fatalf("state %s", raw)
	}
	if strings.Contains(raw+logs.String(), "T0KEN") {
		t.Fatal("token in state or log")
	}
}

// syncWriter is a log buffer the server's goroutines may write to.
type syncWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestMainFlags(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main([]string{"--vmid", "1"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "--token is required") {
		t.Fatalf("no token: %d %q", code, errb.String())
	}
	errb.Reset()
	if code := Main([]string{"-h"}, &out, &errb); code != 0 || !strings.Contains(errb.String(), "--listen") {
		t.Fatalf("help: %d %q", code, errb.String())
	}
	if code := Main([]string{"--token", "x", "--service", filepath.Join(t.TempDir(), "none.json")}, &out, &errb); code != 1 {
		t.Fatalf("missing service file: %d", code)
	}
}
