package fakegate

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"one-contextd/internal/lazyregexp"
)

// ContentType is what OneGate puts on every answer but 204, errors included.
const ContentType = "application/json;charset=utf-8"

// Error bodies of the real server (see onegate-fixtures/errors.json).
const (
	msgNotAuthorized = "Not authorized"
	msgUnsupported   = "OneGate server doesn't support this feature"
	msgInternal      = "Internal server error"
	msgWrongResource = "Error parsing JSON: Wrong resource type"
	msgNoServiceID   = "Empty or invalid SERVICE_ID"
	msgNoPeers       = "This VM does not belong to any Virtual Router or Service, so it cannot retrieve information from other VMs"
)

// maxRequests bounds the request log.
const maxRequests = 10000

// statusWriter remembers the status for the request log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// ServeHTTP implements the OneGate routes.
func (g *Gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	sw := &statusWriter{ResponseWriter: w}
	g.serve(sw, r, body)
	rec := Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, ContentType: r.Header.Get("Content-Type"),
		Body: string(body), VMID: r.Header.Get("X-ONEGATE-VMID"), Status: sw.status}
	g.mu.Lock()
	if len(g.requests) >= maxRequests { // a long-running demo server must not grow forever
		g.requests = append(g.requests[:0], g.requests[len(g.requests)-maxRequests/2:]...)
	}
	g.requests = append(g.requests, rec)
	logw := g.log
	g.mu.Unlock()
	if logw != nil {
		fmt.Fprintf(logw, "%s %s %s vmid=%q -> %d\n", time.Now().UTC().Format(time.RFC3339), rec.Method, r.URL.RequestURI(), rec.VMID, rec.Status)
	}
}

func (g *Gate) serve(w http.ResponseWriter, r *http.Request, body []byte) {
	if r.URL.Path == "/__fake/state" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		g.writeState(w)
		return
	}
	if g.applyFault(w, r) {
		return
	}
	segs := strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/"), "/")
	for i, s := range segs {
		u, err := url.PathUnescape(s)
		if err != nil {
			text(w, http.StatusBadRequest, msgUnsupported)
			return
		}
		segs[i] = u
	}
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	params := requestParams(r, body)
	switch {
	case len(segs) == 1 && segs[0] == "" && get:
		g.route(w, r, "", "", func(c *vm) { g.root(w, r) })
	case len(segs) == 1 && segs[0] == "vm" && get:
		g.route(w, r, "vm", "show", func(c *vm) { writeJSON(w, filteredVM(c)) })
	case len(segs) == 1 && segs[0] == "vm" && r.Method == http.MethodPut:
		g.route(w, r, "vm", "update", func(c *vm) { g.update(w, c, params, body) })
	case len(segs) == 2 && segs[0] == "vms" && segs[1] != "" && get:
		g.route(w, r, "vm", "show_by_id", func(c *vm) {
			if t := g.requestedLocked(w, c, segs[1]); t != nil {
				writeJSON(w, filteredVM(t))
			}
		})
	case len(segs) == 2 && segs[0] == "vms" && segs[1] != "" && r.Method == http.MethodPut:
		g.route(w, r, "vm", "update_by_id", func(c *vm) {
			if t := g.requestedLocked(w, c, segs[1]); t != nil {
				g.update(w, t, params, body)
			}
		})
	case len(segs) == 3 && segs[0] == "vms" && segs[1] != "" && segs[2] == "action" && r.Method == http.MethodPost:
		g.route(w, r, "vm", "action_by_id", func(c *vm) {
			if t := g.requestedLocked(w, c, segs[1]); t != nil {
				g.action(w, t, body)
			}
		})
	case len(segs) == 1 && segs[0] == "service" && get:
		g.route(w, r, "service", "show", func(c *vm) {
			_, extended := params["extended"] // presence is enough, as upstream
			if doc := g.callerServiceLocked(w, c, extended); doc != nil {
				writeJSON(w, doc)
			}
		})
	case len(segs) == 3 && segs[0] == "service" && segs[1] == "role" && segs[2] != "" && r.Method == http.MethodPut:
		g.route(w, r, "service", "change_cardinality", func(c *vm) { g.scale(w, c, segs[2], body) })
	case len(segs) == 1 && segs[0] == "vrouter" && get:
		g.route(w, r, "vrouter", "show", func(c *vm) { g.vrouter(w, c) })
	case len(segs) == 2 && segs[0] == "vnet" && segs[1] != "" && get:
		g.route(w, r, "vnet", "show_by_id", func(c *vm) { g.vnet(w, c, segs[1], params) })
	default:
		text(w, http.StatusBadRequest, msgUnsupported)
	}
}

// route runs the checks every upstream route starts with, in its order:
// permission (resource == "" for GET /, which has none), then the token;
// fn runs with the lock held and the calling VM.
func (g *Gate) route(w http.ResponseWriter, r *http.Request, resource, action string, fn func(caller *vm)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if resource != "" && !g.perms[resource+"."+action] {
		text(w, http.StatusForbidden, fmt.Sprintf("Action (%s) on resource (%s) not supported", action, resource))
		return
	}
	caller, err := g.authenticateLocked(r.Header.Values("X-ONEGATE-TOKEN"), r.Header.Values("X-ONEGATE-VMID"))
	if err != nil {
		text(w, http.StatusUnauthorized, msgNotAuthorized)
		return
	}
	fn(caller)
}

// applyFault answers for an installed fault; true means it did.
func (g *Gate) applyFault(w http.ResponseWriter, r *http.Request) bool {
	g.mu.Lock()
	f := g.fault
	if f.Delay > 0 || f.Status5xx > 0 || f.Force401 {
		if g.fault.Times > 0 {
			g.fault.Times--
			if g.fault.Times == 0 {
				g.fault = Fault{Down: g.fault.Down}
			}
		}
	}
	g.mu.Unlock()
	if f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return true
		}
	}
	switch {
	case f.Force401:
		text(w, http.StatusUnauthorized, msgNotAuthorized)
		return true
	case f.Status5xx >= 500 && f.Status5xx <= 599:
		msg := msgInternal
		if f.Status5xx != http.StatusInternalServerError {
			msg = http.StatusText(f.Status5xx) // what a proxy in front would say
		}
		text(w, f.Status5xx, msg)
		return true
	}
	return false
}

// requestParams merges query and form body as Rack does (body wins). Rack
// parses a form body whatever the method, so the CLI's GET with
// "extended=true" in the body counts.
func requestParams(r *http.Request, body []byte) url.Values {
	params := url.Values{}
	for k, v := range r.URL.Query() {
		params[k] = v
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "application/x-www-form-urlencoded" {
		form, _ := url.ParseQuery(string(body))
		for k, v := range form {
			params[k] = v
		}
	}
	return params
}

func text(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", ContentType)
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg)
}

func writeJSON(w http.ResponseWriter, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		text(w, http.StatusInternalServerError, msgInternal)
		return
	}
	w.Header().Set("Content-Type", ContentType)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data)
}

func (g *Gate) root(w http.ResponseWriter, r *http.Request) {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	base := scheme + "://" + r.Host
	writeJSON(w, struct {
		VMInfo      string `json:"vm_info"`
		ServiceInfo string `json:"service_info"`
	}{base + "/vm", base + "/service"})
}

// requestedLocked is get_requested_vm: the caller itself, or a VM of the
// caller's service (or virtual router). It answers the error itself and
// returns nil then.
func (g *Gate) requestedLocked(w http.ResponseWriter, caller *vm, rawID string) *vm {
	id := rubyToI(rawID)
	if id == caller.id {
		return caller
	}
	if sid, ok := caller.user["SERVICE_ID"]; ok {
		doc := g.serviceDocLocked(w, caller, sid, false)
		if doc == nil {
			return nil
		}
		if !serviceHas(doc, id) {
			text(w, http.StatusBadRequest, fmt.Sprintf("Service %s does not contain VM %d.", sid, id))
			return nil
		}
		return g.vmInfoLocked(w, id)
	}
	if caller.vrouterID != "" {
		vr := g.vrouterLocked(w, caller)
		if vr == nil {
			return nil
		}
		if !containsInt(vr.VMs, id) {
			text(w, http.StatusBadRequest, fmt.Sprintf("Virtual Router %d does not contain VM %d.", vr.ID, id))
			return nil
		}
		return g.vmInfoLocked(w, id)
	}
	text(w, http.StatusBadRequest, msgNoPeers)
	return nil
}

func (g *Gate) vmInfoLocked(w http.ResponseWriter, id int) *vm {
	v, ok := g.vms[id]
	if !ok {
		text(w, http.StatusNotFound, fmt.Sprintf("[one.vm.info] Error getting virtual machine [%d].", id))
		return nil
	}
	return v
}

func containsInt(list []int, n int) bool {
	for _, x := range list {
		if x == n {
			return true
		}
	}
	return false
}

func serviceHas(doc *serviceDoc, id int) bool {
	for _, r := range doc.SERVICE.Roles {
		for _, n := range r.Nodes {
			if n.DeployID == id {
				return true
			}
		}
	}
	return false
}

// serviceDocLocked is get_service + build_service_hash for service sid.
func (g *Gate) serviceDocLocked(w http.ResponseWriter, caller *vm, sid string, extended bool) *serviceDoc {
	if !serviceIDPattern.MatchString(sid) {
		text(w, http.StatusBadRequest, msgNoServiceID)
		return nil
	}
	if n, err := strconv.Atoi(sid); err != nil || g.svc == nil || n != g.svc.spec.ID {
		text(w, http.StatusNotFound, fmt.Sprintf("Service %s not found", sid))
		return nil
	}
	if g.svc.spec.Roles == nil {
		text(w, http.StatusBadRequest, fmt.Sprintf("Service %s is empty.", sid))
		return nil
	}
	doc, missing := g.buildServiceLocked(extended)
	if missing >= 0 {
		text(w, http.StatusNotFound, fmt.Sprintf("[one.vm.info] Error getting virtual machine [%d].", missing))
		return nil
	}
	return doc
}

// callerServiceLocked is GET /service: the caller's service, which must
// list the caller among its nodes.
func (g *Gate) callerServiceLocked(w http.ResponseWriter, caller *vm, extended bool) *serviceDoc {
	sid, ok := caller.user["SERVICE_ID"]
	if !ok {
		text(w, http.StatusBadRequest, msgNoServiceID)
		return nil
	}
	doc := g.serviceDocLocked(w, caller, sid, extended)
	if doc == nil {
		return nil
	}
	if !serviceHas(doc, caller.id) {
		text(w, http.StatusBadRequest, fmt.Sprintf("Service %s does not contain VM %d.", sid, caller.id))
		return nil
	}
	return doc
}

// update is the server's update helper: data (or the raw body), type 1
// merges, anything else erases one attribute.
func (g *Gate) update(w http.ResponseWriter, v *vm, params url.Values, body []byte) {
	data, hasData := params["data"]
	attr := string(body)
	if hasData {
		attr = data[0]
	}
	typ := 1
	if t, ok := params["type"]; ok {
		typ = rubyToI(t[0])
	}
	attr = escapeAttr(attr)
	verb := "cannot be modified"
	if typ != 1 {
		verb = "cannot be deleted"
	}
	// Upstream compares the text before the first '=' untrimmed, so
	// "SERVICE_ID = 5" slips through; the fake trims and refuses.
	for _, line := range strings.Split(attr, "\n") {
		key, _, _ := strings.Cut(line, "=")
		key = strings.TrimSpace(key)
		for _, r := range g.restrictedAttrs {
			if key != "" && strings.ToUpper(key) == r {
				text(w, http.StatusForbidden, fmt.Sprintf("Attribute (%s) %s", key, verb))
				return
			}
		}
	}
	if typ == 1 {
		pairs, ok := parseTemplate(attr)
		if !ok {
			text(w, http.StatusInternalServerError, msgInternal) // oned's parse error, masked since 7.0.1
			return
		}
		for _, p := range pairs {
			v.user[p[0]] = p[1]
		}
	} else {
		if _, ok := v.user[attr]; !ok {
			text(w, http.StatusInternalServerError, msgInternal) // "attribute not found", masked
			return
		}
		delete(v.user, attr)
	}
	w.Header().Set("Content-Type", ContentType)
	w.WriteHeader(http.StatusOK)
	if g.autoSettle > 0 {
		g.settleLocked()
	}
}

// escapeAttr re-implements the quoting of onegate-server.rb's escape_attr:
// a '"' after the first '=' of a line, a '"' before ',' '[' ']' '\' and
// newlines, "\n" (two characters) turned into a newline, and a closing
// quote at the end. Values holding those characters come out broken, as
// upstream.
func escapeAttr(in string) string {
	var out strings.Builder
	inValue := false
	prev := func(i int) byte {
		if i == 0 {
			return in[len(in)-1] // Ruby's attr[-1] is the last character
		}
		return in[i-1]
	}
	for i := 0; i < len(in); i++ {
		c := in[i]
		var next byte
		if i+1 < len(in) {
			next = in[i+1]
		}
		switch {
		case c == '=' && inValue:
			out.WriteByte(c)
		case c == '=' && next != '[' && next != '"':
			out.WriteString(`="`)
			inValue = true
		case c == ',' && prev(i) != '"':
			out.WriteString(`",`)
		case c == '[' && prev(i) != '=' && prev(i) != '"':
			out.WriteString(`"[`)
		case c == ']' && prev(i) != '=' && prev(i) != '"':
			out.WriteString(`"]`)
			inValue = false
		case c == '\\' && prev(i) != '"':
			out.WriteString(`"\`)
			inValue = false
		case c == '\n' && prev(i) != '"':
			out.WriteString("\"\n")
			inValue = false
		default:
			out.WriteByte(c)
		}
	}
	s := strings.ReplaceAll(out.String(), `\n`, "\n")
	if inValue && !strings.HasSuffix(s, "]") && !strings.HasSuffix(s, `"`) {
		s += `"`
	}
	return s
}

var serviceIDPattern = lazyregexp.New(`^\d+$`)

var templateLine = lazyregexp.New(`^([A-Za-z0-9_]+)[ \t]*=[ \t]*"([^"]*)"[ \t]*$`)

// parseTemplate accepts what oned's template parser accepts of the escaped
// text for simple attributes: NAME = "value" lines. Names are upper-cased
// as oned does. Anything else (broken quoting, vectors) fails.
func parseTemplate(s string) ([][2]string, bool) {
	var pairs [][2]string
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		m := templateLine.FindStringSubmatch(line)
		if m == nil {
			return nil, false
		}
		pairs = append(pairs, [2]string{strings.ToUpper(m[1]), m[2]})
	}
	return pairs, len(pairs) > 0
}

func (g *Gate) action(w http.ResponseWriter, v *vm, body []byte) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(body, &doc); err != nil {
		text(w, http.StatusBadRequest, err.Error()) // upstream: the Ruby parser's message
		return
	}
	raw, ok := doc["action"]
	if !ok {
		text(w, http.StatusBadRequest, msgWrongResource)
		return
	}
	var act struct {
		Perform string          `json:"perform"`
		Params  json.RawMessage `json:"params"`
	}
	if err := json.Unmarshal(raw, &act); err != nil {
		text(w, http.StatusInternalServerError, msgInternal)
		return
	}
	for _, r := range g.restrictedActions {
		if act.Perform != "" && strings.EqualFold(act.Perform, r) {
			text(w, http.StatusForbidden, fmt.Sprintf("Action (%s) is not allowed on this resource", act.Perform))
			return
		}
	}
	if !applyAction(v, act.Perform) {
		text(w, http.StatusInternalServerError, msgInternal) // unknown action or wrong state
		return
	}
	entry := act.Perform
	if string(act.Params) == "true" {
		entry += " hard"
	}
	v.actions = append(v.actions, entry)
	w.WriteHeader(http.StatusNoContent) // no body, no Content-Type
}

// transition is what an action needs (the states it is allowed from) and
// what it leaves (state, and LCM state unless keepLCM).
type transition struct {
	from    []int // nil: any state but DONE (6)
	to, lcm int
	keep    bool // the state does not change (reboot, resched)
	keepLCM bool
}

// actions are oned's transitions for the actions a guest uses; the states
// are oned's numbers (1 PENDING, 2 HOLD, 3 ACTIVE, 4 STOPPED, 5 SUSPENDED,
// 6 DONE, 8 POWEROFF, 9 UNDEPLOYED).
var actions = map[string]transition{
	"terminate": {to: 6}, "shutdown": {to: 6}, "delete": {to: 6},
	"poweroff": {from: []int{3}, to: 8}, "stop": {from: []int{3}, to: 4},
	"suspend": {from: []int{3}, to: 5}, "undeploy": {from: []int{3}, to: 9},
	"resume": {from: []int{4, 5, 8, 9}, to: 3, lcm: 3},
	"reboot": {from: []int{3}, keep: true}, "resched": {from: []int{3}, keep: true}, "unresched": {from: []int{3}, keep: true},
	"hold": {from: []int{1}, to: 2, keepLCM: true}, "release": {from: []int{2}, to: 1, keepLCM: true},
}

// applyAction changes the VM as oned would for the actions a guest uses;
// false means oned refuses (unknown action, wrong state).
func applyAction(v *vm, perform string) bool {
	t, ok := actions[perform]
	if !ok {
		return false
	}
	if t.from == nil && v.state == 6 || t.from != nil && !slices.Contains(t.from, v.state) {
		return false
	}
	if t.keep {
		return true
	}
	v.state = t.to
	if !t.keepLCM {
		v.lcm = t.lcm
	}
	return true
}

func (g *Gate) scale(w http.ResponseWriter, caller *vm, roleName string, body []byte) {
	if g.callerServiceLocked(w, caller, false) == nil {
		return
	}
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		text(w, http.StatusInternalServerError, err.Error()) // uncaught parser error keeps its message
		return
	}
	card, ok := cardinality(doc["cardinality"])
	if !ok || !g.scaleLocked(roleName, card) {
		text(w, http.StatusBadRequest, fmt.Sprintf("Error performing action on service %s role %s", caller.user["SERVICE_ID"], roleName))
		return
	}
	w.Header().Set("Content-Type", ContentType)
	w.WriteHeader(http.StatusOK)
}

// cardinality reads the value as OneFlow's to_i would (the CLI sends a
// string, our client a number).
func cardinality(v any) (int, bool) {
	switch c := v.(type) {
	case float64:
		return int(c), c == float64(int(c))
	case string:
		n, err := strconv.Atoi(strings.TrimSpace(c))
		return n, err == nil
	}
	return 0, false
}

func (g *Gate) vrouterLocked(w http.ResponseWriter, caller *vm) *VRouterSpec {
	if _, err := strconv.Atoi(caller.vrouterID); err != nil {
		text(w, http.StatusBadRequest, "Empty or invalid VROUTER_ID")
		return nil
	}
	vr, ok := g.vrouters[caller.vrouterID]
	if !ok {
		text(w, http.StatusNotFound, fmt.Sprintf("Virtual router %s not found", caller.vrouterID))
		return nil
	}
	return vr
}

func (g *Gate) vrouter(w http.ResponseWriter, caller *vm) {
	vr := g.vrouterLocked(w, caller)
	if vr == nil {
		return
	}
	if !containsInt(vr.VMs, caller.id) {
		text(w, http.StatusBadRequest, fmt.Sprintf("Virtual Router %d does not contain VM %d.", vr.ID, caller.id))
		return
	}
	writeJSON(w, vrouterDoc(vr))
}

func (g *Gate) vnet(w http.ResponseWriter, caller *vm, rawID string, params url.Values) {
	id, err := strconv.Atoi(rawID)
	if err != nil {
		text(w, http.StatusBadRequest, fmt.Sprintf("Invalid id format (ID: %s). ID must be an integer.", rawID))
		return
	}
	if caller.vrouterID == "" {
		text(w, http.StatusBadRequest, "Virtual networks information can only be retrieved from Virtual Routers.")
		return
	}
	vr := g.vrouterLocked(w, caller)
	if vr == nil {
		return
	}
	if !containsInt(vr.VMs, caller.id) {
		text(w, http.StatusBadRequest, fmt.Sprintf("Virtual Router %d does not contain VM %d.", vr.ID, caller.id))
		return
	}
	n, ok := g.vnets[id]
	if !ok {
		text(w, http.StatusNotFound, fmt.Sprintf("Virtual network %d not found", id))
		return
	}
	attached := false
	for _, nic := range vr.NICs {
		if nic["NETWORK_ID"] == strconv.Itoa(id) {
			attached = true
		}
	}
	if !attached {
		text(w, http.StatusBadRequest, fmt.Sprintf("Virtual Network %d cannot be retrieved from Virtual router %d.", id, vr.ID))
		return
	}
	ext := strings.EqualFold(params.Get("extended"), "true") // this route compares the value
	writeJSON(w, g.vnetDocLocked(n, vr, ext))
}

func (g *Gate) writeState(w http.ResponseWriter) {
	g.mu.Lock()
	defer g.mu.Unlock()
	writeJSON(w, g.stateLocked())
}
