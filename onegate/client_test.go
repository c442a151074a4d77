package onegate_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"one-contextd/onegate"
	"one-contextd/onegate/fakegate"
	"one-contextd/secret"
)

// sleeper records the waits the client asks for instead of waiting.
type sleeper struct {
	mu    sync.Mutex
	waits []time.Duration
	hook  func(n int) // called with the number of waits so far
}

func (s *sleeper) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.waits = append(s.waits, d)
	n := len(s.waits)
	hook := s.hook
	s.mu.Unlock()
	if hook != nil {
		hook(n)
	}
	return ctx.Err()
}

func (s *sleeper) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.waits)
}

// shop starts the fixtures' scenario and a client for VM 41 with its AES
// token.
func shop(t *testing.T) (*fakegate.Server, *onegate.Client, *sleeper, *bytes.Buffer) {
	t.Helper()
	s := fakegate.Start(t)
	if err := s.AddShopScenario(); err != nil {
		t.Fatal(err)
	}
	tok, err := s.Token(41)
	if err != nil {
		t.Fatal(err)
	}
	c, sl, logs := client(t, s.URL, tok, "41", nil)
	return s, c, sl, logs
}

func client(t *testing.T, endpoint, token, vmid string, hc *http.Client) (*onegate.Client, *sleeper, *bytes.Buffer) {
	t.Helper()
	sl := &sleeper{}
	logs := &bytes.Buffer{}
	c, err := onegate.New(onegate.Config{
		Endpoint: endpoint, Token: secret.New(token), VMID: vmid, HTTP: hc,
		Retry: onegate.RetryPolicy{MaxAttempts: 4, Initial: 100 * time.Millisecond, Max: 300 * time.Millisecond},
		Log:   zerolog.New(logs), Sleep: sl.sleep,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c, sl, logs
}

func TestVMShow(t *testing.T) {
	_, c, _, _ := shop(t)
	ctx := context.Background()
	vm, err := c.VM(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if vm.ID != "41" || vm.Name != "backend_0_(service_7)" || vm.State != 3 || vm.LCMState != 3 || vm.StateName() != "RUNNING" {
		t.Fatalf("vm %+v", vm)
	}
	if !vm.Ready() || vm.UserTemplate["SERVICE_ID"] != "7" || vm.UserTemplate["APP_QUEUE_DEPTH"] != "14" {
		t.Fatalf("user template %v", vm.UserTemplate)
	}
	if ips := vm.IPs(); len(ips) != 1 || ips[0] != "192.0.2.21" || vm.NICs[0].MAC != "02:00:c0:00:02:15" || vm.NICs[0].Network != "private" {
		t.Fatalf("nics %+v", vm.NICs)
	}
	if !bytes.HasPrefix(vm.Raw, []byte(`{"VM":{"NAME":`)) {
		t.Fatalf("raw %s", vm.Raw)
	}
	peer, err := c.VMByID(ctx, "40")
	if err != nil || peer.Name != "database_0_(service_7)" || peer.UserTemplate["PG_CONNECTIONS"] != "61" {
		t.Fatalf("peer %+v %v", peer, err)
	}
	_, err = c.VMByID(ctx, "99")
	if onegate.StatusOf(err) != 400 || err.Error() != "onegate: GET /vms/99: 400 Service 7 does not contain VM 99." {
		t.Fatalf("outsider: %v", err)
	}
	if _, err := c.VMByID(ctx, "4x"); err == nil || !strings.Contains(err.Error(), "not a number") {
		t.Fatalf("bad id: %v", err)
	}
}

func TestUpdateAndErase(t *testing.T) {
	s, c, _, _ := shop(t)
	ctx := context.Background()
	if err := c.Update(ctx, "", onegate.Attr{Key: "READY", Value: "YES"}, onegate.Attr{Key: "APP_QUEUE_DEPTH", Value: "57"}); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.VMAttr(41, "APP_QUEUE_DEPTH"); v != "57" {
		t.Fatalf("APP_QUEUE_DEPTH = %q", v)
	}
	reqs := s.Requests()
	last := reqs[len(reqs)-1]
	if last.Method != "PUT" || last.Path != "/vm" || last.ContentType != "application/x-www-form-urlencoded" ||
		last.Body != "data=READY%3DYES%0AAPP_QUEUE_DEPTH%3D57&type=1" {
		t.Fatalf("request %+v", last)
	}
	if err := c.Update(ctx, "42", onegate.AttrsFromMap(map[string]string{"B": "2", "A": "1"})...); err != nil {
		t.Fatal(err)
	}
	if a, _ := s.VMAttr(42, "A"); a != "1" {
		t.Fatalf("peer update: %q", a)
	}
	// Values the server would corrupt are refused before sending.
	before := len(s.Requests())
	for _, a := range []onegate.Attr{{"LIST", "a,b"}, {"K", ""}, {"MSG", `say "hi"`}, {"P", `a\b`}, {"BAD-KEY", "1"}, {"V", "x\ny"}} {
		if err := c.Update(ctx, "", a); err == nil {
			t.Errorf("%v accepted", a)
		}
	}
	if len(s.Requests()) != before {
		t.Fatal("invalid updates reached the server")
	}
	// A restricted attribute is a 403: permanent, one request.
	err := c.Update(ctx, "", onegate.Attr{Key: "SERVICE_ID", Value: "8"})
	var ae *onegate.APIError
	if !errors.As(err, &ae) || ae.Status != 403 || ae.Message != "Attribute (SERVICE_ID) cannot be modified" || len(s.Requests()) != before+1 {
		t.Fatalf("restricted: %v", err)
	}
	if err := c.UpdateData(ctx, "", `X=1\nY=2`); err != nil {
		t.Fatal(err)
	}
	if y, _ := s.VMAttr(41, "Y"); y != "2" {
		t.Fatalf("raw data: Y=%q", y)
	}
	if err := c.Erase(ctx, "", "X", "Y"); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.VMAttr(41, "X"); ok {
		t.Fatal("X not erased")
	}
	if err := c.Erase(ctx, "", "A\n"); err == nil {
		t.Fatal("erase of a name with a newline was sent")
	}
}

func TestActionServiceScale(t *testing.T) {
	s, c, _, _ := shop(t)
	ctx := context.Background()
	if err := c.Action(ctx, "42", "poweroff", true); err != nil {
		t.Fatal(err)
	}
	if a := s.Actions(42); len(a) != 1 || a[0] != "poweroff hard" {
		t.Fatalf("actions %v", a)
	}
	reqs := s.Requests()
	if last := reqs[len(reqs)-1]; last.Body != `{"action":{"perform":"poweroff","params":true}}` || last.ContentType != "application/json" {
		t.Fatalf("action request %+v", last)
	}
	if err := c.Action(ctx, "42", "reboot", false); onegate.StatusOf(err) != 403 {
		t.Fatalf("reboot: %v", err)
	}

	svc, err := c.Service(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if svc.ID != "7" || svc.Name != "shop" || svc.State != onegate.ServiceRunning || len(svc.Roles) != 3 {
		t.Fatalf("service %+v", svc)
	}
	be := svc.Role("backend")
	if be == nil || be.Cardinality != 2 || strings.Join(be.VMIDs(), ",") != "41,42" || be.Nodes[0].VM.UName != "alice" || be.Nodes[0].VM.State != -1 {
		t.Fatalf("backend %+v", be)
	}
	ext, err := c.Service(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	db := ext.Role("database").Nodes[0].VM
	if db.State != 3 || db.IPs()[0] != "192.0.2.10" || !db.Ready() || db.NICs[0].NetworkID != "2" {
		t.Fatalf("extended database node %+v", db)
	}

	if err := c.Scale(ctx, "backend", 3); err != nil {
		t.Fatal(err)
	}
	if card, nodes, _ := s.Cardinality("backend"); card != 3 || len(nodes) != 3 {
		t.Fatalf("after scale: %d %v", card, nodes)
	}
	// Busy service: OneFlow refuses with 400, not retried.
	n := len(s.Requests())
	if err := c.Scale(ctx, "backend", 4); onegate.StatusOf(err) != 400 || len(s.Requests()) != n+1 {
		t.Fatalf("scale while scaling: %v", err)
	}
	ext, err = c.Service(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if r := ext.Role("backend"); r.State != onegate.ServiceScaling || r.Nodes[2].VM.LCMState != onegate.LCMStateBoot || r.Nodes[2].VM.Ready() {
		t.Fatalf("scaling role %+v", r)
	}
}

func TestVRouterVNet(t *testing.T) {
	s := fakegate.Start(t)
	if err := s.AddVMSpec(fakegate.VMSpec{ID: 51, Name: "vr", NICs: []fakegate.NICSpec{{IP: "192.0.2.51"}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddVRouter(fakegate.VRouterSpec{ID: 3, Name: "vr-edge", VMs: []int{51}, NICs: []map[string]string{{"NETWORK_ID": "2"}}}); err != nil {
		t.Fatal(err)
	}
	s.AddVNet(fakegate.VNetSpec{ID: 2, Name: "private", Template: map[string]string{"DNS": "192.0.2.1"}})
	tok, _ := s.Token(51)
	c, _, _ := client(t, s.URL, tok, "51", nil)
	ctx := context.Background()
	vr, err := c.VRouter(ctx)
	if err != nil || vr.ID != "3" || vr.Name != "vr-edge" || strings.Join(vr.VMIDs, ",") != "51" {
		t.Fatalf("vrouter %+v %v", vr, err)
	}
	n, err := c.VNet(ctx, "2", true)
	if err != nil || n.Name != "private" || n.Template["DNS"] != "192.0.2.1" || len(n.Leases) != 1 || n.Leases[0].IP != "192.0.2.51" || n.Leases[0].NICName != "NIC0" {
		t.Fatalf("vnet %+v %v", n, err)
	}
	if _, err := c.VNet(ctx, "x", false); onegate.StatusOf(err) != 400 {
		t.Fatalf("bad vnet id: %v", err)
	}
}

func TestNewValidates(t *testing.T) {
	tok := secret.New("t")
	for _, cfg := range []onegate.Config{
		{Token: tok, VMID: "1"},
		{Endpoint: "ftp://h:5030", Token: tok, VMID: "1"},
		{Endpoint: "http://", Token: tok, VMID: "1"},
		{Endpoint: "http://h:5030", VMID: "1"},
		{Endpoint: "http://h:5030", Token: secret.New(" \n"), VMID: "1"},
		{Endpoint: "http://h:5030", Token: tok},
		{Endpoint: "http://h:5030", Token: tok, VMID: "one"},
	} {
		if _, err := onegate.New(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}

func TestEndpointPathPrefix(t *testing.T) {
	g := fakegate.New(nil)
	if err := g.AddShopScenario(); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(http.StripPrefix("/gate", g))
	defer hs.Close()
	tok, _ := g.Token(41)
	c, _, _ := client(t, hs.URL+"/gate/", tok, "41", nil)
	if vm, err := c.VM(context.Background()); err != nil || vm.ID != "41" {
		t.Fatalf("with prefix: %+v %v", vm, err)
	}
	if r := g.Requests(); r[0].Path != "/vm" {
		t.Fatalf("path after prefix %q", r[0].Path)
	}
}

func TestRetryDownThenUp(t *testing.T) {
	s, c, sl, logs := shop(t)
	s.SetFault(fakegate.Fault{Down: true})
	sl.hook = func(n int) {
		if n == 2 {
			s.SetFault(fakegate.Fault{})
		}
	}
	if err := c.Update(context.Background(), "", onegate.Attr{Key: "READY", Value: "YES"}); err != nil {
		t.Fatal(err)
	}
	if sl.count() != 2 {
		t.Fatalf("waited %d times, want 2", sl.count())
	}
	if sl.waits[1] <= sl.waits[0] {
		t.Fatalf("backoff did not grow: %v", sl.waits)
	}
	if lines := strings.Count(logs.String(), "\n"); lines != 1 || !strings.Contains(logs.String(), `"failure":"connection"`) {
		t.Fatalf("log lines: %q", logs.String())
	}
	if v, _ := s.VMAttr(41, "READY"); v != "YES" {
		t.Fatal("READY not stored")
	}
}

func TestRetry5xx(t *testing.T) {
	s, c, sl, _ := shop(t)
	s.SetFault(fakegate.Fault{Status5xx: 500, Times: 2})
	if _, err := c.VM(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(s.Requests()); n != 3 || sl.count() != 2 {
		t.Fatalf("%d requests, %d waits; want 3, 2", n, sl.count())
	}

	s2, c2, sl2, logs := shop(t)
	s2.SetFault(fakegate.Fault{Status5xx: 503})
	_, err := c2.VM(context.Background())
	if onegate.StatusOf(err) != 503 {
		t.Fatalf("err %v", err)
	}
	if n := len(s2.Requests()); n != 4 || sl2.count() != 3 {
		t.Fatalf("%d requests, %d waits; want 4 (MaxAttempts), 3", n, sl2.count())
	}
	for _, w := range sl2.waits {
		if w < 80*time.Millisecond || w > 360*time.Millisecond {
			t.Fatalf("wait %v outside the jittered 100ms..300ms range", w)
		}
	}
	if strings.Count(logs.String(), "\n") != 1 {
		t.Fatalf("want one log line for one failure kind, got %q", logs.String())
	}
}

func TestRetryTimeout(t *testing.T) {
	s, _, _, _ := shop(t)
	tok, _ := s.Token(41)
	c, sl, _ := client(t, s.URL, tok, "41", &http.Client{Timeout: 50 * time.Millisecond})
	s.SetFault(fakegate.Fault{Delay: 2 * time.Second})
	start := time.Now()
	_, err := c.VM(context.Background())
	var oe *onegate.Error
	if !errors.As(err, &oe) || !oe.Transport() {
		t.Fatalf("err %v", err)
	}
	if sl.count() != 3 {
		t.Fatalf("%d waits, want 3", sl.count())
	}
	if time.Since(start) > 1500*time.Millisecond {
		t.Fatal("the client waited for the slow server instead of timing out")
	}
}

func TestNo4xxRetry(t *testing.T) {
	s, c, sl, _ := shop(t)
	s.SetFault(fakegate.Fault{Force401: true})
	err := c.Update(context.Background(), "", onegate.Attr{Key: "READY", Value: "YES"})
	if err == nil || err.Error() != "onegate: PUT /vm: 401 Not authorized" {
		t.Fatalf("err %v", err)
	}
	if len(s.Requests()) != 1 || sl.count() != 0 {
		t.Fatalf("401 retried: %d requests", len(s.Requests()))
	}
	s.SetFault(fakegate.Fault{})
	for _, f := range []func() error{
		func() error { _, err := c.VMByID(context.Background(), "99"); return err },                // 400
		func() error { return c.Action(context.Background(), "41", "reboot", false) },              // 403
		func() error { return c.Update(context.Background(), "", onegate.Attr{"ROLE_NAME", "x"}) }, // 403
	} {
		n := len(s.Requests())
		if err := f(); err == nil || len(s.Requests()) != n+1 {
			t.Fatalf("4xx retried or passed: %v", err)
		}
	}
	if sl.count() != 0 {
		t.Fatal("waited after a 4xx")
	}
}

func TestContextCancelStopsRetry(t *testing.T) {
	s, c, _, _ := shop(t)
	s.SetFault(fakegate.Fault{Down: true})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.VM(ctx); err == nil {
		t.Fatal("no error")
	}
}

// TestTokenNeverShown drives every failure path and checks errors and logs.
func TestTokenNeverShown(t *testing.T) {
	const token = "VGhpcyBpcyB0aGUgc2VjcmV0IHRva2Vu"
	g := fakegate.New(nil)
	if err := g.AddVM(41, "x", token, "192.0.2.21"); err != nil {
		t.Fatal(err)
	}
	// A hostile or broken proxy that echoes the request headers in errors.
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(502)
		fmt.Fprintf(w, "bad gateway for %v", r.Header)
	})
	var mux http.ServeMux
	mux.Handle("/echo/", http.StripPrefix("/echo", echo))
	mux.Handle("/", g)
	hs := httptest.NewServer(&mux)
	defer hs.Close()
	slow := fakegate.Start(t)
	_ = slow.AddVM(41, "x", token)
	slow.SetFault(fakegate.Fault{Delay: time.Second})
	down := fakegate.Start(t)
	down.SetFault(fakegate.Fault{Down: true})

	var all bytes.Buffer
	try := func(endpoint, vmid string, hc *http.Client, f func(*onegate.Client) error) {
		c, _, logs := client(t, endpoint, token, vmid, hc)
		err := f(c)
		if err == nil {
			t.Fatalf("%s: no error", endpoint)
		}
		fmt.Fprintf(&all, "%v\n%+v\n%#v\n%s\n", err, err, err, logs)
	}
	ctx := context.Background()
	try(hs.URL, "41", nil, func(c *onegate.Client) error { _, err := c.VMByID(ctx, "7"); return err })
	try(hs.URL, "42", nil, func(c *onegate.Client) error { _, err := c.VM(ctx); return err }) // 401
	try(hs.URL, "41", nil, func(c *onegate.Client) error { return c.Update(ctx, "", onegate.Attr{"SERVICE_ID", "1"}) })
	try(hs.URL, "41", nil, func(c *onegate.Client) error { return c.Erase(ctx, "", "MISSING") }) // 500
	try(hs.URL+"/echo", "41", nil, func(c *onegate.Client) error { _, err := c.VM(ctx); return err })
	try(down.URL, "41", nil, func(c *onegate.Client) error { _, err := c.VM(ctx); return err })
	try(slow.URL, "41", &http.Client{Timeout: 20 * time.Millisecond}, func(c *onegate.Client) error { _, err := c.VM(ctx); return err })
	try("http://user:pw@127.0.0.1:1", "41", nil, func(c *onegate.Client) error { return c.Scale(ctx, "r", 1) })
	try(hs.URL, "41", nil, func(c *onegate.Client) error { return c.Update(ctx, "", onegate.Attr{"A", "a,b"}) })
	if _, err := onegate.New(onegate.Config{Endpoint: "gopher://x", Token: secret.New(token), VMID: "1"}); err != nil {
		fmt.Fprintf(&all, "%v\n", err)
	}
	out := all.String()
	if strings.Contains(out, token) {
		t.Fatalf("token leaked:\n%s", out)
	}
	for _, want := range []string{"401 Not authorized", "403 Attribute", "500 Internal server error", "502 bad gateway", "connection refused", "Timeout"} {
		if !strings.Contains(out, want) {
			t.Errorf("failure paths did not produce %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, secret.Redacted) {
		t.Error("the echoed token was not redacted")
	}
}

// TestRedirectIsNotFollowed: a 3xx from the gate is an error naming the
// status, as in upstream's Ruby client; nothing (above all not the token)
// reaches the redirect target, whichever client New was given.
func TestRedirectIsNotFollowed(t *testing.T) {
	const token = "cmVkaXJlY3Qtc2VjcmV0LXRva2Vu"
	var mu sync.Mutex
	var gateHits, targetHits int
	var targetTokens int // requests that carried the token
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		targetHits++
		if r.Header.Get(onegate.HeaderToken) != "" {
			targetTokens++
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"VM":{"ID":"41","NAME":"x","USER_TEMPLATE":{}}}`)
	}))
	defer target.Close()
	for _, status := range []int{301, 302, 303, 307, 308} {
		gate := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			gateHits++
			mu.Unlock()
			http.Redirect(w, r, target.URL+r.URL.Path+"?from=gate", status)
		}))
		for name, hc := range map[string]*http.Client{
			"nil (default)":       nil,
			"DefaultHTTPClient()": onegate.DefaultHTTPClient(), // the agent's onegateHTTP()
			"caller's client":     {Timeout: 5 * time.Second},  // follows redirects on its own
		} {
			mu.Lock()
			gateHits, targetHits, targetTokens = 0, 0, 0
			mu.Unlock()
			c, sl, logs := client(t, gate.URL, token, "41", hc)
			ctx := context.Background()
			uerr := c.Update(ctx, "", onegate.Attr{Key: "READY", Value: "YES"})
			_, verr := c.VM(ctx)
			for op, err := range map[string]error{"PUT /vm": uerr, "GET /vm": verr} {
				if err == nil {
					t.Errorf("%d, %s: %s: no error; a redirect must not count as success", status, name, op)
					continue
				}
				if got := onegate.StatusOf(err); got != status {
					t.Errorf("%d, %s: %s: status %d in %v", status, name, op, got, err)
				}
				var ae *onegate.APIError
				if !errors.As(err, &ae) || !strings.Contains(err.Error(), "redirect to "+target.URL+"/vm not followed") {
					t.Errorf("%d, %s: %s: error %q, want an APIError naming the target", status, name, op, err)
				}
				if strings.Contains(fmt.Sprintf("%v %+v %#v", err, err, err), token) {
					t.Errorf("%d, %s: %s: token in the error", status, name, op)
				}
			}
			if strings.Contains(logs.String(), token) {
				t.Errorf("%d, %s: token in the log", status, name)
			}
			mu.Lock()
			if targetHits != 0 {
				t.Errorf("%d, %s: the redirect target got %d requests (%d with the token), want none", status, name, targetHits, targetTokens)
			}
			if gateHits != 2 || sl.count() != 0 {
				t.Errorf("%d, %s: gate got %d requests, %d retries; a redirect is not retried", status, name, gateHits, sl.count())
			}
			mu.Unlock()
		}
		gate.Close()
	}
}

// BenchmarkUpdateReady is the agent's READY report: one PUT over loopback.
func BenchmarkUpdateReady(b *testing.B) {
	g := fakegate.New(nil)
	if err := g.AddVM(41, "x", "", "192.0.2.21"); err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(g)
	defer hs.Close()
	tok, _ := g.Token(41)
	c, err := onegate.New(onegate.Config{Endpoint: hs.URL, Token: secret.New(tok), VMID: "41", Log: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	ready := onegate.Attr{Key: "READY", Value: "YES"}
	b.ResetTimer()
	for b.Loop() {
		if err := c.Update(ctx, "", ready); err != nil {
			b.Fatal(err)
		}
	}
}
