// Package fakegate is an in-memory OneGate server that follows the real
// one's contract (src/onegate/onegate-server.rb, see
// shared/reference/onegate.md): the same routes, check order (permission,
// then token, then route logic), AES-256-CBC tokens, plain-text error bodies
// with a JSON content type, and a small OneFlow simulation for scaling.
// Tests and demos use it instead of a frontend; it can also be told to fail.
package fakegate

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults that match the fixtures' scenario (owner alice, network private).
const (
	DefaultTokenPassword = "3f11291cee01d8924016e619dcc715528d363b16d445563a45c8dea2e87d813e"
	DefaultSTIME         = int64(1718000000)
)

// VMSpec describes a VM to add. Zero fields get the fixtures' defaults.
type VMSpec struct {
	ID   int
	Name string
	// Token, when set, is accepted as is in addition to the AES token the
	// server derives (oned's rule); a demo can thus pass any string.
	Token         string
	STIME         int64  // VM start time; part of the AES token
	TokenPassword string // owner's TOKEN_PASSWORD (64 hex characters)
	UID, GID      int
	UName, GName  string
	State         int // 0 means ACTIVE (3)
	LCMState      int // 0 means RUNNING (3) when State is ACTIVE
	NICs          []NICSpec
	UserTemplate  map[string]string
	Context       map[string]string // extra CONTEXT for extended documents
	VRouterID     string            // TEMPLATE/VROUTER_ID, "" for none
}

// NICSpec is one NIC; MAC defaults to OpenNebula's 02:00 + IPv4 rule.
type NICSpec struct {
	IP        string
	MAC       string
	Network   string // default "private"
	NetworkID string // default "2"
}

// vm is the server-side record of a VM.
type vm struct {
	id            int
	name          string
	token         string
	stime         int64
	tokenPassword string
	uid, gid      int
	uname, gname  string
	state, lcm    int
	nics          []map[string]string
	user          map[string]string
	context       map[string]string
	vrouterID     string
	actions       []string
}

// ServiceSpec describes the OneFlow service the VMs belong to.
type ServiceSpec struct {
	ID    int
	Name  string
	State int // 0 means RUNNING (2)
	Roles []RoleSpec
	// ReadyGate is the template's ready_status_gate: a scaled role becomes
	// RUNNING only when all its VMs have READY=YES.
	ReadyGate bool
}

// RoleSpec is one role. VMs must have been added before SetService.
type RoleSpec struct {
	Name    string
	Parents []string
	MinVMs  int // 0: no lower bound
	MaxVMs  int // 0: no upper bound
	VMs     []int
	State   int // 0 means RUNNING (2)
	// Next is the number used in the name of the next VM of the role
	// (OneFlow counts every VM ever created); 0 means len(VMs).
	Next int
}

type service struct {
	spec  ServiceSpec
	roles []*role
}

type role struct {
	spec        RoleSpec
	cardinality int
	state       int
	nodes       []int
	next        int
}

// VRouterSpec describes a virtual router (for /vrouter and /vnet).
type VRouterSpec struct {
	ID   int
	Name string
	VMs  []int
	NICs []map[string]string // NETWORK_ID, IP, FLOATING_IP ...
}

// VNetSpec describes a virtual network. Leases are derived from the NICs of
// the added VMs whose NETWORK_ID matches.
type VNetSpec struct {
	ID       int
	Name     string
	Template map[string]string
}

// Fault makes the server misbehave for tests.
type Fault struct {
	Down      bool          // refuse connections (listener closed) until cleared
	Delay     time.Duration // wait this long before answering
	Status5xx int           // answer this status with a plain-text body
	Force401  bool          // answer 401 Not authorized
	Times     int           // requests affected by Delay/Status5xx/Force401; 0 = until cleared
}

// Gate is the fake server's state and its http.Handler.
type Gate struct {
	mu                sync.Mutex
	vms               map[int]*vm
	svc               *service
	vrouters          map[string]*VRouterSpec
	vnets             map[int]*VNetSpec
	perms             map[string]bool
	restrictedAttrs   []string
	restrictedActions []string
	fault             Fault
	requests          []Request
	autoSettle        time.Duration
	endpoint          string
	log               io.Writer
	onDown            func(bool) // set by Server: opens/closes the listener
}

// Request is what the gate recorded of one request (never the token).
type Request struct {
	Method      string
	Path        string
	Query       string
	ContentType string
	Body        string
	VMID        string
	Status      int
}

// New returns an empty gate with the shipped configuration: every route
// permitted, SCHED_REQUIREMENTS/SERVICE_ID/ROLE_NAME restricted, reboot
// restricted. log (may be nil) gets one line per request.
func New(log io.Writer) *Gate {
	g := &Gate{
		vms:               map[int]*vm{},
		vrouters:          map[string]*VRouterSpec{},
		vnets:             map[int]*VNetSpec{},
		perms:             map[string]bool{},
		restrictedAttrs:   []string{"SCHED_REQUIREMENTS", "SERVICE_ID", "ROLE_NAME"},
		restrictedActions: []string{"reboot"},
		endpoint:          "http://169.254.16.9:5030",
		log:               log,
	}
	for _, p := range []string{"vm.show", "vm.show_by_id", "vm.update", "vm.update_by_id", "vm.action_by_id",
		"service.show", "service.change_cardinality", "vrouter.show", "vnet.show_by_id"} {
		g.perms[p] = true
	}
	return g
}

// AddVM adds an ACTIVE/RUNNING VM with one NIC per IP. token may be "" (use
// Token(id) for the AES token) or any string to accept as well.
func (g *Gate) AddVM(id int, name, token string, nicIPs ...string) error {
	spec := VMSpec{ID: id, Name: name, Token: token}
	for _, ip := range nicIPs {
		spec.NICs = append(spec.NICs, NICSpec{IP: ip})
	}
	return g.AddVMSpec(spec)
}

// AddVMSpec adds a VM described in full.
func (g *Gate) AddVMSpec(s VMSpec) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.addVMLocked(s)
}

func (g *Gate) addVMLocked(s VMSpec) error {
	if s.ID < 0 {
		return fmt.Errorf("fakegate: VM id %d is negative", s.ID)
	}
	if _, dup := g.vms[s.ID]; dup {
		return fmt.Errorf("fakegate: VM %d exists", s.ID)
	}
	v := &vm{
		id: s.ID, name: s.Name, token: s.Token, stime: s.STIME, tokenPassword: s.TokenPassword,
		uid: s.UID, gid: s.GID, uname: s.UName, gname: s.GName, state: s.State, lcm: s.LCMState,
		user: map[string]string{}, context: map[string]string{}, vrouterID: s.VRouterID,
	}
	if v.name == "" {
		v.name = "vm-" + strconv.Itoa(s.ID)
	}
	if v.stime == 0 {
		v.stime = DefaultSTIME + int64(s.ID)
	}
	if v.tokenPassword == "" {
		v.tokenPassword = DefaultTokenPassword
	}
	if len(v.tokenPassword) < 32 {
		return fmt.Errorf("fakegate: VM %d: TOKEN_PASSWORD must have at least 32 characters", s.ID)
	}
	if v.uname == "" {
		v.uid, v.gid, v.uname, v.gname = 2, 1, "alice", "users"
	}
	if v.state == 0 {
		v.state = 3
		if v.lcm == 0 {
			v.lcm = 3
		}
	}
	for i, n := range s.NICs {
		nic, err := nicAttrs(s.ID, i, n)
		if err != nil {
			return err
		}
		v.nics = append(v.nics, nic)
	}
	for k, val := range s.UserTemplate {
		v.user[strings.ToUpper(k)] = val
	}
	for k, val := range s.Context {
		v.context[strings.ToUpper(k)] = val
	}
	g.vms[s.ID] = v
	return nil
}

func nicAttrs(vmID, idx int, n NICSpec) (map[string]string, error) {
	ip := net.ParseIP(n.IP).To4()
	if ip == nil {
		return nil, fmt.Errorf("fakegate: VM %d: NIC %d: %q is not an IPv4 address", vmID, idx, n.IP)
	}
	mac := n.MAC
	if mac == "" {
		mac = fmt.Sprintf("02:00:%02x:%02x:%02x:%02x", ip[0], ip[1], ip[2], ip[3])
	}
	network, networkID := n.Network, n.NetworkID
	if network == "" {
		network = "private"
	}
	if networkID == "" {
		networkID = "2"
	}
	return map[string]string{
		"AR_ID": "0", "BRIDGE": "br0", "BRIDGE_TYPE": "linux", "CLUSTER_ID": "0", "IP": ip.String(), "MAC": mac,
		"MODEL": "virtio", "NAME": "NIC" + strconv.Itoa(idx), "NETWORK": network, "NETWORK_ID": networkID,
		"NETWORK_UNAME": "oneadmin", "NIC_ID": strconv.Itoa(idx), "SECURITY_GROUPS": "0",
		"TARGET": fmt.Sprintf("one-%d-%d", vmID, idx), "VN_MAD": "bridge",
	}, nil
}

// Token returns the AES token oned would write into VM id's token.txt.
func (g *Gate) Token(id int) (string, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	v, ok := g.vms[id]
	if !ok {
		return "", fmt.Errorf("fakegate: no VM %d", id)
	}
	return MintToken(v.tokenPassword, v.id, v.stime)
}

// SetService installs the service. Like OneFlow it writes SERVICE_ID and
// ROLE_NAME into every node's USER_TEMPLATE.
func (g *Gate) SetService(s ServiceSpec) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	svc := &service{spec: s}
	if svc.spec.State == 0 {
		svc.spec.State = 2
	}
	seen := map[string]bool{}
	for _, rs := range s.Roles {
		if rs.Name == "" || seen[rs.Name] {
			return fmt.Errorf("fakegate: role name %q empty or repeated", rs.Name)
		}
		seen[rs.Name] = true
		r := &role{spec: rs, cardinality: len(rs.VMs), state: rs.State, nodes: append([]int(nil), rs.VMs...), next: rs.Next}
		if r.state == 0 {
			r.state = 2
		}
		if r.next == 0 {
			r.next = len(rs.VMs)
		}
		for _, id := range rs.VMs {
			v, ok := g.vms[id]
			if !ok {
				return fmt.Errorf("fakegate: role %s: no VM %d", rs.Name, id)
			}
			v.user["SERVICE_ID"] = strconv.Itoa(s.ID)
			v.user["ROLE_NAME"] = rs.Name
		}
		svc.roles = append(svc.roles, r)
	}
	g.svc = svc
	return nil
}

// AddVRouter adds a virtual router and marks its VMs with VROUTER_ID.
func (g *Gate) AddVRouter(r VRouterSpec) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	id := strconv.Itoa(r.ID)
	for _, vmID := range r.VMs {
		v, ok := g.vms[vmID]
		if !ok {
			return fmt.Errorf("fakegate: vrouter %d: no VM %d", r.ID, vmID)
		}
		v.vrouterID = id
	}
	g.vrouters[id] = &r
	return nil
}

// AddVNet adds a virtual network.
func (g *Gate) AddVNet(n VNetSpec) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.vnets[n.ID] = &n
}

// SetPermission enables or disables a route, as :permissions: in
// onegate-server.conf does (resource "vm", action "update" ...).
func (g *Gate) SetPermission(resource, action string, allowed bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.perms[resource+"."+action] = allowed
}

// SetRestricted replaces :restricted_attrs: and :restricted_actions:.
func (g *Gate) SetRestricted(attrs, actions []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.restrictedAttrs = append([]string(nil), attrs...)
	g.restrictedActions = append([]string(nil), actions...)
}

// SetEndpoint sets the ONEGATE_ENDPOINT written into extended documents.
func (g *Gate) SetEndpoint(u string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.endpoint = u
}

// SetAutoSettle makes scaling finish by itself d after a scale request
// (0: only Settle finishes it).
func (g *Gate) SetAutoSettle(d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.autoSettle = d
}

// SetFault installs f (Fault{} clears it).
func (g *Gate) SetFault(f Fault) {
	g.mu.Lock()
	g.fault = f
	onDown := g.onDown
	g.mu.Unlock()
	if onDown != nil {
		onDown(f.Down)
	}
}

// VMAttr returns a USER_TEMPLATE attribute of VM id.
func (g *Gate) VMAttr(id int, key string) (string, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	v, ok := g.vms[id]
	if !ok {
		return "", false
	}
	val, ok := v.user[key]
	return val, ok
}

// SetVMAttr sets a USER_TEMPLATE attribute directly (as oned would).
func (g *Gate) SetVMAttr(id int, key, value string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	v, ok := g.vms[id]
	if !ok {
		return fmt.Errorf("fakegate: no VM %d", id)
	}
	v.user[key] = value
	return nil
}

// SetVMState sets a VM's state numbers.
func (g *Gate) SetVMState(id, state, lcm int) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	v, ok := g.vms[id]
	if !ok {
		return fmt.Errorf("fakegate: no VM %d", id)
	}
	v.state, v.lcm = state, lcm
	return nil
}

// VMState returns a VM's state numbers.
func (g *Gate) VMState(id int) (state, lcm int, ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	v, ok := g.vms[id]
	if !ok {
		return 0, 0, false
	}
	return v.state, v.lcm, true
}

// Actions lists the actions performed on VM id, in order.
func (g *Gate) Actions(id int) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if v, ok := g.vms[id]; ok {
		return append([]string(nil), v.actions...)
	}
	return nil
}

// Requests returns every request seen so far.
func (g *Gate) Requests() []Request {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]Request(nil), g.requests...)
}

// Cardinality returns a role's cardinality and its node ids.
func (g *Gate) Cardinality(roleName string) (int, []int, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.svc == nil {
		return 0, nil, false
	}
	for _, r := range g.svc.roles {
		if r.spec.Name == roleName {
			return r.cardinality, append([]int(nil), r.nodes...), true
		}
	}
	return 0, nil, false
}

// ServiceState returns the service's state number (-1 without service).
func (g *Gate) ServiceState() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.svc == nil {
		return -1
	}
	return g.svc.spec.State
}

// SetServiceState sets the service's state (e.g. 8 SCALING to make scale
// requests fail).
func (g *Gate) SetServiceState(state int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.svc != nil {
		g.svc.spec.State = state
	}
}

// Settle finishes a scaling as OneFlow would once the new VMs run: booting
// VMs become RUNNING; a scaling role becomes RUNNING (with the READY gate
// only when all its VMs said READY=YES) and so does the service when no
// role scales any more. Cooldown is not simulated.
func (g *Gate) Settle() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.settleLocked()
}

func (g *Gate) settleLocked() {
	if g.svc == nil {
		return
	}
	busy := false
	for _, r := range g.svc.roles {
		if r.state != 8 {
			continue
		}
		ready := true
		for _, id := range r.nodes {
			v := g.vms[id]
			if v.state == 3 && v.lcm == 2 {
				v.lcm = 3
			}
			if g.svc.spec.ReadyGate && strings.TrimSpace(v.user["READY"]) != "YES" {
				ready = false
			}
		}
		if ready {
			r.state = 2
		} else {
			busy = true
		}
	}
	if !busy && g.svc.spec.State == 8 {
		g.svc.spec.State = 2
	}
}

// scaleLocked applies OneFlow's checks and the scaling itself; false means
// OneFlow refused.
func (g *Gate) scaleLocked(roleName string, card int) bool {
	s := g.svc
	if s == nil || s.spec.State != 2 {
		return false
	}
	var r *role
	for _, x := range s.roles {
		if x.spec.Name == roleName {
			r = x
		}
	}
	if r == nil || card < 0 || card == r.cardinality ||
		(r.spec.MinVMs > 0 && card < r.spec.MinVMs) || (r.spec.MaxVMs > 0 && card > r.spec.MaxVMs) {
		return false
	}
	for len(r.nodes) < card {
		id := g.nextIDLocked()
		var tmpl *vm
		if len(r.nodes) > 0 {
			tmpl = g.vms[r.nodes[0]]
		}
		spec := VMSpec{ID: id, Name: fmt.Sprintf("%s_%d_(service_%d)", r.spec.Name, r.next, s.spec.ID),
			State: 3, LCMState: 2, STIME: time.Now().Unix()}
		if tmpl != nil {
			spec.UID, spec.GID, spec.UName, spec.GName, spec.TokenPassword = tmpl.uid, tmpl.gid, tmpl.uname, tmpl.gname, tmpl.tokenPassword
			spec.UserTemplate = map[string]string{}
			for _, k := range []string{"DESCRIPTION", "LOGO"} {
				if val, ok := tmpl.user[k]; ok {
					spec.UserTemplate[k] = val
				}
			}
			spec.Context = tmpl.context
			for _, n := range tmpl.nics {
				spec.NICs = append(spec.NICs, NICSpec{IP: g.freeIPLocked(n["IP"]), Network: n["NETWORK"], NetworkID: n["NETWORK_ID"]})
			}
		}
		if err := g.addVMLocked(spec); err != nil {
			return false
		}
		nv := g.vms[id]
		nv.user["SERVICE_ID"] = strconv.Itoa(s.spec.ID)
		nv.user["ROLE_NAME"] = r.spec.Name
		r.nodes = append(r.nodes, id)
		r.next++
	}
	for len(r.nodes) > card { // OneFlow shuts down the newest nodes first
		id := r.nodes[len(r.nodes)-1]
		r.nodes = r.nodes[:len(r.nodes)-1]
		if v, ok := g.vms[id]; ok {
			v.state, v.lcm = 6, 0
		}
	}
	r.cardinality = card
	r.state = 8
	s.spec.State = 8
	if g.autoSettle > 0 {
		time.AfterFunc(g.autoSettle, g.Settle)
	}
	return true
}

func (g *Gate) nextIDLocked() int {
	next := 0
	for id := range g.vms {
		if id >= next {
			next = id + 1
		}
	}
	return next
}

// freeIPLocked returns the first address after like that no VM uses.
func (g *Gate) freeIPLocked(like string) string {
	used := map[string]bool{}
	for _, v := range g.vms {
		for _, n := range v.nics {
			used[n["IP"]] = true
		}
	}
	ip := net.ParseIP(like).To4()
	if ip == nil {
		ip = net.IPv4(192, 0, 2, 100).To4()
	}
	n := uint32(ip[0])<<24 | uint32(ip[1])<<16 | uint32(ip[2])<<8 | uint32(ip[3])
	for i := 0; i < 1<<16; i++ {
		cand := net.IPv4(byte(n>>24), byte(n>>16), byte(n>>8), byte(n)).String()
		if !used[cand] {
			return cand
		}
		n++
	}
	return like
}

// authenticate is OneGateCloudAuth#do_auth: both headers present, the VM
// named by X-ONEGATE-VMID exists and the token decrypts to "<ID>:<STIME>"
// under its owner's TOKEN_PASSWORD (or equals the VM's static token).
func (g *Gate) authenticateLocked(token, vmid []string) (*vm, error) {
	if len(token) == 0 {
		return nil, errors.New("X_ONEGATE_TOKEN header not present")
	}
	if len(vmid) == 0 {
		return nil, errors.New("X_ONEGATE_VMID header not present")
	}
	v, ok := g.vms[rubyToI(vmid[0])]
	if !ok {
		return nil, errors.New("vm.info failed")
	}
	tok := strings.TrimSpace(token[0])
	if v.token != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(v.token)) == 1 {
		return v, nil
	}
	plain, err := openToken(v.tokenPassword, tok)
	if err != nil {
		return nil, fmt.Errorf("token decrypt error: %w", err)
	}
	id, stime, _ := strings.Cut(plain, ":")
	if id != strconv.Itoa(v.id) || stime != strconv.FormatInt(v.stime, 10) {
		return nil, errors.New("token content does not match")
	}
	return v, nil
}

// rubyToI is Ruby's String#to_i for the ids the server reads: leading
// blanks, optional sign, digits; anything else ends the number ("abc" is 0).
func rubyToI(s string) int {
	s = strings.TrimLeft(s, " \t\n\v\f\r")
	neg := false
	if s != "" && (s[0] == '-' || s[0] == '+') {
		neg = s[0] == '-'
		s = s[1:]
	}
	n := 0
	for i := 0; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		n = n*10 + int(s[i]-'0')
		if n > 1<<31 {
			break
		}
	}
	if neg {
		return -n
	}
	return n
}
