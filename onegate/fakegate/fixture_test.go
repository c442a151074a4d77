package fakegate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"one-contextd/internal/testenv"
)

// fixturesDir finds shared/reference/onegate-fixtures beside the repository.
func fixturesDir(t testing.TB) string {
	return testenv.Shared(t, "reference", "onegate-fixtures")
}

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fixturesDir(t), name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func shopGate(t testing.TB) *Gate {
	t.Helper()
	g := New(nil)
	if err := g.AddShopScenario(); err != nil {
		t.Fatal(err)
	}
	return g
}

// call runs one request against g as VM vmid with its AES token.
func call(t testing.TB, g *Gate, vmid int, method, target, contentType, body string) *httptest.ResponseRecorder {
	t.Helper()
	tok, err := g.Token(vmid)
	if err != nil {
		t.Fatal(err)
	}
	return callWith(g, map[string]string{"X-ONEGATE-TOKEN": tok, "X-ONEGATE-VMID": fmt.Sprint(vmid)}, method, target, contentType, body)
}

func callWith(g *Gate, headers map[string]string, method, target, contentType, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	r.Host = "169.254.16.9:5030"
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	for k, v := range headers {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	g.ServeHTTP(w, r)
	return w
}

// shape describes a JSON document by its keys (in order) and value types,
// not its values.
func shape(t testing.TB, data []byte) string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var b strings.Builder
	var walk func() error
	walk = func() error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				b.WriteString("{")
				for dec.More() {
					k, err := dec.Token()
					if err != nil {
						return err
					}
					fmt.Fprintf(&b, "%s:", k)
					if err := walk(); err != nil {
						return err
					}
					b.WriteString(",")
				}
				_, err = dec.Token()
				b.WriteString("}")
			case '[':
				b.WriteString("[")
				for dec.More() {
					if err := walk(); err != nil {
						return err
					}
					b.WriteString(",")
				}
				_, err = dec.Token()
				b.WriteString("]")
			}
			return err
		case string:
			b.WriteString("s")
		case json.Number:
			b.WriteString("n")
		case bool:
			b.WriteString("b")
		case nil:
			b.WriteString("null")
		}
		return nil
	}
	if err := walk(); err != nil {
		t.Fatalf("shape: %v", err)
	}
	return b.String()
}

// sameJSON asserts equal values and equal key order.
func sameJSON(t *testing.T, want, got []byte) {
	t.Helper()
	var w, g any
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("answer is not JSON: %v\n%s", err, got)
	}
	if !reflect.DeepEqual(w, g) {
		t.Fatalf("values differ\nwant %s\ngot  %s", compact(want), compact(got))
	}
	if sw, sg := shape(t, want), shape(t, got); sw != sg {
		t.Fatalf("key order or types differ\nwant %s\ngot  %s", sw, sg)
	}
}

func compact(b []byte) string {
	var buf bytes.Buffer
	_ = json.Compact(&buf, b)
	return buf.String()
}

func assertOK(t *testing.T, w *httptest.ResponseRecorder, status int) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d, want %d; body %q", w.Code, status, w.Body.String())
	}
	if ct := w.Header().Get("Content-Type"); status != http.StatusNoContent && ct != ContentType {
		t.Fatalf("Content-Type %q, want %q", ct, ContentType)
	}
}

func TestFixtureVM(t *testing.T) {
	g := shopGate(t)
	for _, target := range []string{"/vm", "/vms/41"} {
		w := call(t, g, 41, "GET", target, "", "")
		assertOK(t, w, 200)
		sameJSON(t, fixture(t, "vm.json"), w.Body.Bytes())
	}
}

func TestFixtureVMPeer(t *testing.T) {
	g := shopGate(t)
	w := call(t, g, 41, "GET", "/vms/40", "", "")
	assertOK(t, w, 200)
	sameJSON(t, fixture(t, "vm-peer-database.json"), w.Body.Bytes())
}

func TestFixtureServiceBasic(t *testing.T) {
	g := shopGate(t)
	w := call(t, g, 41, "GET", "/service", "", "")
	assertOK(t, w, 200)
	sameJSON(t, fixture(t, "service-basic.json"), w.Body.Bytes())
}

func TestFixtureServiceExtended(t *testing.T) {
	g := shopGate(t)
	// The query form of our client and the form-body GET of the reference
	// CLI must both switch extended mode on; any value counts.
	for _, tc := range []struct{ target, ct, body string }{
		{"/service?extended=true", "", ""},
		{"/service", "application/x-www-form-urlencoded", "extended=true"},
		{"/service?extended=false", "", ""},
	} {
		w := call(t, g, 41, "GET", tc.target, tc.ct, tc.body)
		assertOK(t, w, 200)
		want := fixture(t, "service.json")
		if sw, sg := shape(t, want), shape(t, w.Body.Bytes()); sw != sg {
			t.Fatalf("%s: shape differs from service.json\nwant %s\ngot  %s", tc.target, sw, sg)
		}
		var doc struct {
			SERVICE struct {
				Roles []struct {
					Nodes []struct {
						VMInfo struct {
							VM struct {
								TEMPLATE struct {
									NIC struct{ IP string }
								}
								USER_TEMPLATE map[string]string
							}
						} `json:"vm_info"`
					}
				}
			}
		}
		if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil {
			t.Fatal(err)
		}
		if ip := doc.SERVICE.Roles[1].Nodes[0].VMInfo.VM.TEMPLATE.NIC.IP; ip != "192.0.2.21" {
			t.Fatalf("backend node 0 IP %q", ip)
		}
		if q := doc.SERVICE.Roles[1].Nodes[1].VMInfo.VM.USER_TEMPLATE["APP_QUEUE_DEPTH"]; q != "9" {
			t.Fatalf("backend node 1 APP_QUEUE_DEPTH %q", q)
		}
	}
}

func TestFixtureServiceScaling(t *testing.T) {
	g := shopGate(t)
	w := call(t, g, 41, "PUT", "/service/role/backend", "application/json", `{"cardinality":3}`)
	assertOK(t, w, 200)
	if w.Body.Len() != 0 {
		t.Fatalf("scale answered a body: %q", w.Body.String())
	}
	w = call(t, g, 41, "GET", "/service?extended=true", "", "")
	assertOK(t, w, 200)
	want := fixture(t, "service-scaling.json")
	if sw, sg := shape(t, want), shape(t, w.Body.Bytes()); sw != sg {
		t.Fatalf("shape differs from service-scaling.json\nwant %s\ngot  %s", sw, sg)
	}
	type node struct {
		DeployID int `json:"deploy_id"`
		VMInfo   struct {
			VM struct {
				NAME, STATE, LCM_STATE string
				TEMPLATE               struct{ NIC struct{ IP, MAC string } }
				USER_TEMPLATE          map[string]string
			}
		} `json:"vm_info"`
	}
	type doc struct {
		SERVICE struct {
			State int `json:"state"`
			Roles []struct {
				Name        string `json:"name"`
				Cardinality int    `json:"cardinality"`
				State       int    `json:"state"`
				Nodes       []node `json:"nodes"`
			} `json:"roles"`
		}
	}
	var fx, got doc
	if err := json.Unmarshal(want, &fx); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if fx.SERVICE.State != got.SERVICE.State {
		t.Fatalf("service state %d, fixture %d", got.SERVICE.State, fx.SERVICE.State)
	}
	for i, r := range fx.SERVICE.Roles {
		gr := got.SERVICE.Roles[i]
		if r.Name != gr.Name || r.Cardinality != gr.Cardinality || r.State != gr.State || len(r.Nodes) != len(gr.Nodes) {
			t.Fatalf("role %s: got %s card %d state %d nodes %d", r.Name, gr.Name, gr.Cardinality, gr.State, len(gr.Nodes))
		}
	}
	fn, gn := fx.SERVICE.Roles[1].Nodes[2], got.SERVICE.Roles[1].Nodes[2]
	fn.VMInfo.VM.USER_TEMPLATE, gn.VMInfo.VM.USER_TEMPLATE = nil, nil
	if !reflect.DeepEqual(fn, gn) {
		t.Fatalf("new node differs\nfixture %+v\ngot     %+v", fn, gn)
	}
	if _, ok := g.VMAttr(45, "READY"); ok {
		t.Fatal("new VM has READY before reporting")
	}
	// Settle: the new VM runs, the role and the service are RUNNING again.
	g.Settle()
	if st, lcm, _ := g.VMState(45); st != 3 || lcm != 3 {
		t.Fatalf("after Settle VM 45 is %d/%d", st, lcm)
	}
	if g.ServiceState() != 2 {
		t.Fatalf("after Settle service state %d", g.ServiceState())
	}
	// Scale in removes the newest node.
	assertOK(t, call(t, g, 41, "PUT", "/service/role/backend", "application/json", `{"cardinality":"2"}`), 200)
	if card, nodes, _ := g.Cardinality("backend"); card != 2 || !reflect.DeepEqual(nodes, []int{41, 42}) {
		t.Fatalf("after scale-in: %d %v", card, nodes)
	}
}

func TestFixtureRoot(t *testing.T) {
	g := shopGate(t)
	w := call(t, g, 41, "GET", "/", "", "")
	assertOK(t, w, 200)
	sameJSON(t, fixture(t, "root.json"), w.Body.Bytes())
}

// TestFixtureErrors triggers every answer of errors.json and compares
// status, content type and body with the catalogue.
func TestFixtureErrors(t *testing.T) {
	var catalogue []struct {
		File        *string `json:"file"`
		Status      int     `json:"status"`
		ContentType *string `json:"content_type"`
		Body        string  `json:"body"`
	}
	if err := json.Unmarshal(fixture(t, "errors.json"), &catalogue); err != nil {
		t.Fatal(err)
	}
	triggers := map[string]func(t *testing.T) *httptest.ResponseRecorder{
		"error-401.txt": func(t *testing.T) *httptest.ResponseRecorder {
			return callWith(shopGate(t), map[string]string{"X-ONEGATE-VMID": "41", "X-ONEGATE-TOKEN": "bm90IGEgdG9rZW4="}, "GET", "/vm", "", "")
		},
		"error-403-permission.txt": func(t *testing.T) *httptest.ResponseRecorder {
			g := shopGate(t)
			g.SetPermission("vm", "update", false)
			return call(t, g, 41, "PUT", "/vm", "application/x-www-form-urlencoded", "data=A%3D1&type=1")
		},
		"error-403-restricted-attr.txt": func(t *testing.T) *httptest.ResponseRecorder {
			return call(t, shopGate(t), 41, "PUT", "/vm", "application/x-www-form-urlencoded", "data=SERVICE_ID%3D5&type=1")
		},
		"error-403-restricted-action.txt": func(t *testing.T) *httptest.ResponseRecorder {
			return call(t, shopGate(t), 41, "POST", "/vms/42/action", "application/json", `{"action":{"perform":"reboot"}}`)
		},
		"error-400-no-service-id.txt": func(t *testing.T) *httptest.ResponseRecorder {
			g := New(nil)
			_ = g.AddVM(5, "lonely", "")
			return call(t, g, 5, "GET", "/service", "", "")
		},
		"error-400-not-in-service.txt": func(t *testing.T) *httptest.ResponseRecorder {
			return call(t, shopGate(t), 41, "GET", "/vms/99", "", "")
		},
		"error-400-no-service-no-vrouter.txt": func(t *testing.T) *httptest.ResponseRecorder {
			g := New(nil)
			_ = g.AddVM(5, "lonely", "")
			_ = g.AddVM(6, "other", "")
			return call(t, g, 5, "GET", "/vms/6", "", "")
		},
		"error-400-scale.txt": func(t *testing.T) *httptest.ResponseRecorder {
			return call(t, shopGate(t), 41, "PUT", "/service/role/backend", "application/json", `{"cardinality":2}`)
		},
		"error-400-unsupported.txt": func(t *testing.T) *httptest.ResponseRecorder {
			return call(t, shopGate(t), 41, "DELETE", "/vm", "", "")
		},
		"error-400-action-json.txt": func(t *testing.T) *httptest.ResponseRecorder {
			return call(t, shopGate(t), 41, "POST", "/vms/41/action", "application/json", `{"perform":"terminate"}`)
		},
		"error-404-service.txt": func(t *testing.T) *httptest.ResponseRecorder {
			g := shopGate(t)
			g.mu.Lock()
			g.svc = nil // OneFlow down: the service cannot be read
			g.mu.Unlock()
			return call(t, g, 41, "GET", "/service", "", "")
		},
		"error-500.txt": func(t *testing.T) *httptest.ResponseRecorder {
			return call(t, shopGate(t), 41, "PUT", "/vm", "application/x-www-form-urlencoded", "data=NO_SUCH&type=2")
		},
	}
	successes := []func(t *testing.T) *httptest.ResponseRecorder{
		func(t *testing.T) *httptest.ResponseRecorder {
			return call(t, shopGate(t), 41, "POST", "/vms/42/action", "application/json", `{"action":{"perform":"terminate","params":true}}`)
		},
		func(t *testing.T) *httptest.ResponseRecorder {
			return call(t, shopGate(t), 41, "PUT", "/vm", "application/x-www-form-urlencoded", "data=READY%3DYES&type=1")
		},
		func(t *testing.T) *httptest.ResponseRecorder {
			return call(t, shopGate(t), 41, "PUT", "/vms/42", "application/x-www-form-urlencoded", "data=ROLE_HINT%3Dreplica&type=1")
		},
		func(t *testing.T) *httptest.ResponseRecorder {
			return call(t, shopGate(t), 41, "PUT", "/service/role/frontend", "application/json", `{"cardinality":3}`)
		},
	}
	n204, n200 := 0, 0
	for _, e := range catalogue {
		var runs []*httptest.ResponseRecorder
		if e.File != nil {
			trig, ok := triggers[*e.File]
			if !ok {
				t.Fatalf("no trigger for %s", *e.File)
			}
			if body := string(fixture(t, *e.File)); body != e.Body {
				t.Fatalf("%s differs from its catalogue entry", *e.File)
			}
			runs = append(runs, trig(t))
		} else if e.Status == 204 {
			runs, n204 = append(runs, successes[0](t)), n204+1
		} else {
			for _, s := range successes[1:] {
				runs = append(runs, s(t))
			}
			n200++
		}
		for _, w := range runs {
			name := fmt.Sprint(e.File)
			if e.File != nil {
				name = *e.File
			}
			if w.Code != e.Status || w.Body.String() != e.Body {
				t.Errorf("%s: got %d %q, want %d %q", name, w.Code, w.Body.String(), e.Status, e.Body)
			}
			ct := w.Header().Get("Content-Type")
			if e.ContentType == nil && ct != "" || e.ContentType != nil && ct != *e.ContentType {
				t.Errorf("%s: Content-Type %q, want %v", name, ct, e.ContentType)
			}
		}
	}
	if n204 != 1 || n200 != 1 {
		t.Fatalf("catalogue success entries: %d x 204, %d x 200", n204, n200)
	}
}

func TestTokenVector(t *testing.T) {
	// The test vector of shared/reference/onegate.md (made with openssl).
	for _, tc := range []struct {
		vmid  int
		stime int64
		want  string
	}{{42, 1718000000, "rPEebS+ee/0CPNFLv+WJgg=="}, {12345, 1718000000, "94/B+81UgX+AOulOxX1daTy9k8CG1hM6dWI9kaLieKo="}} {
		got, err := MintToken(DefaultTokenPassword, tc.vmid, tc.stime)
		if err != nil || got != tc.want {
			t.Fatalf("MintToken(%d) = %q, %v; want %q", tc.vmid, got, err, tc.want)
		}
		plain, err := openToken(DefaultTokenPassword, tc.want+"\n")
		if err != nil || plain != fmt.Sprintf("%d:%d", tc.vmid, tc.stime) {
			t.Fatalf("openToken = %q, %v", plain, err)
		}
	}
	if _, err := openToken(DefaultTokenPassword, "rPEebS+ff/0CPNFLv+WJgg=="); err == nil {
		t.Fatal("a corrupted token decrypted")
	}
}

func TestAuthentication(t *testing.T) {
	g := New(nil)
	if err := g.AddVMSpec(VMSpec{ID: 42, STIME: 1718000000, Name: "x"}); err != nil {
		t.Fatal(err)
	}
	if err := g.AddVM(7, "static", "plain-token"); err != nil {
		t.Fatal(err)
	}
	good := "rPEebS+ee/0CPNFLv+WJgg=="
	other, _ := g.Token(7)
	for _, tc := range []struct {
		name    string
		headers map[string]string
		status  int
	}{
		{"aes token", map[string]string{"X-ONEGATE-TOKEN": good, "X-ONEGATE-VMID": "42"}, 200},
		{"vmid with trailing junk (Ruby to_i)", map[string]string{"X-ONEGATE-TOKEN": good, "X-ONEGATE-VMID": "42abc"}, 200},
		{"static token", map[string]string{"X-ONEGATE-TOKEN": "plain-token", "X-ONEGATE-VMID": "7"}, 200},
		{"aes token of a static-token VM", map[string]string{"X-ONEGATE-TOKEN": other, "X-ONEGATE-VMID": "7"}, 200},
		{"no token", map[string]string{"X-ONEGATE-VMID": "42"}, 401},
		{"no vmid", map[string]string{"X-ONEGATE-TOKEN": good}, 401},
		{"token of another VM", map[string]string{"X-ONEGATE-TOKEN": other, "X-ONEGATE-VMID": "42"}, 401},
		{"unknown VM", map[string]string{"X-ONEGATE-TOKEN": good, "X-ONEGATE-VMID": "43"}, 401},
		{"garbage", map[string]string{"X-ONEGATE-TOKEN": "%%%", "X-ONEGATE-VMID": "42"}, 401},
	} {
		w := callWith(g, tc.headers, "GET", "/vm", "", "")
		if w.Code != tc.status {
			t.Errorf("%s: %d %q, want %d", tc.name, w.Code, w.Body.String(), tc.status)
		}
		if tc.status == 401 && w.Body.String() != msgNotAuthorized {
			t.Errorf("%s: body %q", tc.name, w.Body.String())
		}
	}
	// Permission is checked before the token, as upstream.
	g.SetPermission("vm", "show", false)
	if w := callWith(g, nil, "GET", "/vm", "", ""); w.Code != 403 {
		t.Fatalf("disabled route without token: %d", w.Code)
	}
	// GET / has no permission key but needs the token.
	if w := callWith(g, nil, "GET", "/", "", ""); w.Code != 401 {
		t.Fatalf("GET / without token: %d", w.Code)
	}
	// HEAD works on GET routes; unknown paths and trailing slashes are 400.
	if w := call(t, g, 42, "HEAD", "/service", "", ""); w.Code != 400 {
		t.Fatalf("HEAD /service: %d", w.Code)
	}
	for _, p := range []string{"/vm/", "/vms/", "/service/role/", "/nothing"} {
		if w := call(t, g, 42, "GET", p, "", ""); w.Code != 400 || w.Body.String() != msgUnsupported {
			t.Fatalf("GET %s: %d %q", p, w.Code, w.Body.String())
		}
	}
}

func TestUpdateEncodingsAndEscaping(t *testing.T) {
	for _, tc := range []struct {
		name, ct, body, query string
		status                int
		want                  map[string]string
	}{
		{"cli form", "application/x-www-form-urlencoded", "data=READY%3DYES&type=1", "", 200, map[string]string{"READY": "YES"}},
		{"curl raw body with form type", "application/x-www-form-urlencoded", "APP_LOAD = 9.7", "", 200, map[string]string{"APP_LOAD": " 9.7"}},
		{"text/plain raw body", "text/plain", "READY=YES\nAPP_QUEUE_DEPTH=14", "", 200, map[string]string{"READY": "YES", "APP_QUEUE_DEPTH": "14"}},
		{"query string", "", "", "data=X%3D1", 200, map[string]string{"X": "1"}},
		{"backslash-n separator", "application/x-www-form-urlencoded", "data=" + urlq(`A=1\nB=2`), "", 200, map[string]string{"A": "1", "B": "2"}},
		{"equals inside value", "application/x-www-form-urlencoded", "data=" + urlq("URL=http://x/?a=b"), "", 200, map[string]string{"URL": "http://x/?a=b"}},
		{"spaces", "application/x-www-form-urlencoded", "data=" + urlq("T=x y z"), "", 200, map[string]string{"T": "x y z"}},
		{"lower-case key", "application/x-www-form-urlencoded", "data=" + urlq("app_x=1"), "", 200, map[string]string{"APP_X": "1"}},
		{"comma breaks", "application/x-www-form-urlencoded", "data=" + urlq("LIST=a,b"), "", 500, nil},
		{"backslash breaks", "application/x-www-form-urlencoded", "data=" + urlq(`P=a\b`), "", 500, nil},
		{"quote breaks", "application/x-www-form-urlencoded", "data=" + urlq(`MSG=say "hi"`), "", 500, nil},
		{"vector breaks", "application/x-www-form-urlencoded", "data=" + urlq("V=[A=1,B=2]"), "", 500, nil},
		{"empty value breaks", "application/x-www-form-urlencoded", "data=" + urlq("K="), "", 500, nil},
		{"restricted lower-case", "application/x-www-form-urlencoded", "data=" + urlq("role_name=x"), "", 403, nil},
		{"restricted with space (stricter than upstream)", "application/x-www-form-urlencoded", "data=" + urlq("SERVICE_ID = 5"), "", 403, nil},
	} {
		g := shopGate(t)
		target := "/vm"
		if tc.query != "" {
			target += "?" + tc.query
		}
		w := call(t, g, 41, "PUT", target, tc.ct, tc.body)
		if w.Code != tc.status {
			t.Errorf("%s: %d %q, want %d", tc.name, w.Code, w.Body.String(), tc.status)
			continue
		}
		for k, v := range tc.want {
			if got, ok := g.VMAttr(41, k); !ok || got != v {
				t.Errorf("%s: %s = %q (%v), want %q", tc.name, k, got, ok, v)
			}
		}
	}
	// Erase: type=2 removes one key; the name is case-sensitive; restricted
	// keys cannot be deleted; a trailing newline makes the name unknown.
	g := shopGate(t)
	assertOK(t, call(t, g, 41, "PUT", "/vm", "application/x-www-form-urlencoded", "data=APP_QUEUE_DEPTH&type=2"), 200)
	if _, ok := g.VMAttr(41, "APP_QUEUE_DEPTH"); ok {
		t.Fatal("erase left the attribute")
	}
	if w := call(t, g, 41, "PUT", "/vm", "application/x-www-form-urlencoded", "data=ready&type=2"); w.Code != 500 {
		t.Fatalf("erase of lower-case name: %d", w.Code)
	}
	if w := call(t, g, 41, "PUT", "/vm", "application/x-www-form-urlencoded", "data=READY%0A&type=2"); w.Code != 500 {
		t.Fatalf("erase with trailing newline: %d", w.Code)
	}
	if w := call(t, g, 41, "PUT", "/vm", "application/x-www-form-urlencoded", "data=SERVICE_ID&type=2"); w.Code != 403 || w.Body.String() != "Attribute (SERVICE_ID) cannot be deleted" {
		t.Fatalf("erase of restricted: %d %q", w.Code, w.Body.String())
	}
	// Peers: a VM of the same service may update another.
	assertOK(t, call(t, g, 41, "PUT", "/vms/40", "application/x-www-form-urlencoded", "data=FLAG%3D1&type=1"), 200)
	if v, _ := g.VMAttr(40, "FLAG"); v != "1" {
		t.Fatalf("peer update: %q", v)
	}
}

func urlq(s string) string {
	r := strings.NewReplacer("%", "%25", "&", "%26", "=", "%3D", "+", "%2B", " ", "+", "\n", "%0A", `"`, "%22", `\`, "%5C", ",", "%2C", "[", "%5B", "]", "%5D", "?", "%3F", "/", "%2F")
	return r.Replace(s)
}

func TestActions(t *testing.T) {
	g := shopGate(t)
	w := call(t, g, 41, "POST", "/vms/42/action", "application/json", `{"action":{"perform":"poweroff","params":true}}`)
	assertOK(t, w, 204)
	if w.Body.Len() != 0 || w.Header().Get("Content-Type") != "" {
		t.Fatalf("204 with body %q / type %q", w.Body.String(), w.Header().Get("Content-Type"))
	}
	if st, _, _ := g.VMState(42); st != 8 {
		t.Fatalf("state after poweroff: %d", st)
	}
	if a := g.Actions(42); !reflect.DeepEqual(a, []string{"poweroff hard"}) {
		t.Fatalf("actions %v", a)
	}
	for _, tc := range []struct {
		body   string
		status int
	}{
		{`{"action":{"perform":"poweroff"}}`, 500},  // already off
		{`{"action":{"perform":"fly"}}`, 500},       // unknown
		{`{"action":{"perform":"REBOOT"}}`, 403},    // restricted, compared lower-cased
		{`not json`, 400},                           // parser message
		{`{"action":{"perform":"resume"}}`, 204},    // back on
		{`{"action":{"perform":"terminate"}}`, 204}, // gone
		{`{"action":{"perform":"terminate"}}`, 500}, // already done
	} {
		if w := call(t, g, 41, "POST", "/vms/42/action", "application/json", tc.body); w.Code != tc.status {
			t.Errorf("%s: %d %q, want %d", tc.body, w.Code, w.Body.String(), tc.status)
		}
	}
}

func TestVRouterAndVNet(t *testing.T) {
	g := New(nil)
	for _, id := range []int{51, 52} {
		if err := g.AddVMSpec(VMSpec{ID: id, Name: fmt.Sprintf("vr-%d", id), NICs: []NICSpec{{IP: fmt.Sprintf("192.0.2.%d", id)}},
			Context: map[string]string{"BACKEND": "YES"}, UserTemplate: map[string]string{"ONEGATE_LB0_PORT": "80"}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.AddVRouter(VRouterSpec{ID: 3, Name: "vr-edge", VMs: []int{51, 52}, NICs: []map[string]string{{"NETWORK_ID": "2", "FLOATING_IP": "YES", "IP": "192.0.2.254"}}}); err != nil {
		t.Fatal(err)
	}
	g.AddVNet(VNetSpec{ID: 2, Name: "private", Template: map[string]string{"GATEWAY": "192.0.2.1", "SECRET_THING": "x"}})
	g.AddVNet(VNetSpec{ID: 9, Name: "elsewhere"})
	w := call(t, g, 51, "GET", "/vrouter", "", "")
	assertOK(t, w, 200)
	if got := compact(w.Body.Bytes()); got != `{"VROUTER":{"NAME":"vr-edge","ID":"3","VMS":{"ID":["51","52"]},"TEMPLATE":{"NIC":[{"FLOATING_IP":"YES","IP":"192.0.2.254","NETWORK_ID":"2"}]}}}` {
		t.Fatalf("vrouter: %s", got)
	}
	w = call(t, g, 51, "GET", "/vnet/2?extended=true", "", "")
	assertOK(t, w, 200)
	body := w.Body.String()
	for _, want := range []string{`"NIC_NAME":"NIC0"`, `"BACKEND":"YES"`, `"ONEGATE_LB0_PORT":"80"`, `"GATEWAY":"192.0.2.1"`} {
		if !strings.Contains(body, want) {
			t.Fatalf("vnet extended lacks %s: %s", want, body)
		}
	}
	if strings.Contains(body, "SECRET_THING") {
		t.Fatal("vnet template not filtered")
	}
	if w := call(t, g, 51, "GET", "/vnet/2", "", ""); strings.Contains(w.Body.String(), "NIC_NAME") {
		t.Fatal("plain vnet has extended fields")
	}
	for _, tc := range []struct {
		target string
		status int
		body   string
	}{
		{"/vnet/abc", 400, "Invalid id format (ID: abc). ID must be an integer."},
		{"/vnet/9", 400, "Virtual Network 9 cannot be retrieved from Virtual router 3."},
		{"/vnet/77", 404, "Virtual network 77 not found"},
		{"/vms/52", 200, ""},
	} {
		w := call(t, g, 51, "GET", tc.target, "", "")
		if w.Code != tc.status || tc.body != "" && w.Body.String() != tc.body {
			t.Errorf("%s: %d %q", tc.target, w.Code, w.Body.String())
		}
	}
	s := shopGate(t)
	if w := call(t, s, 41, "GET", "/vnet/2", "", ""); w.Code != 400 || w.Body.String() != "Virtual networks information can only be retrieved from Virtual Routers." {
		t.Fatalf("vnet from a service VM: %d %q", w.Code, w.Body.String())
	}
}

func TestFaults(t *testing.T) {
	s := Start(t)
	if err := s.AddVM(1, "one", "tok"); err != nil {
		t.Fatal(err)
	}
	get := func() (int, error) {
		req, _ := http.NewRequest("GET", s.URL+"/vm", nil)
		req.Header.Set("X-ONEGATE-TOKEN", "tok")
		req.Header.Set("X-ONEGATE-VMID", "1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := get(); err != nil || code != 200 {
		t.Fatalf("healthy: %d %v", code, err)
	}
	s.SetFault(Fault{Status5xx: 503, Times: 2})
	for i, want := range []int{503, 503, 200} {
		if code, err := get(); err != nil || code != want {
			t.Fatalf("request %d: %d %v, want %d", i, code, err, want)
		}
	}
	s.SetFault(Fault{Force401: true, Times: 1})
	if code, _ := get(); code != 401 {
		t.Fatalf("Force401: %d", code)
	}
	s.SetFault(Fault{Down: true})
	if _, err := get(); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("down: %v", err)
	}
	s.SetFault(Fault{})
	if code, err := get(); err != nil || code != 200 {
		t.Fatalf("up again: %d %v", code, err)
	}
	// The debug route answers without a token and never shows one.
	resp, err := http.Get(s.URL + "/__fake/state")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	var st State
	if err := json.Unmarshal(data, &st); err != nil || st.VMs["1"].Name != "one" {
		t.Fatalf("state: %v %s", err, data)
	}
	if strings.Contains(string(data), "tok") {
		t.Fatalf("state shows the token: %s", data)
	}
}
