package fakegate

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// The documents below mirror the element order of the real answers:
// structs where OpenNebula or OneGate fix the order, maps (which encode
// sorted) where OpenNebula's templates sort attributes by name.

type filteredVMDoc struct {
	VM filteredVMBody `json:"VM"`
}

type filteredVMBody struct {
	NAME          string            `json:"NAME"`
	ID            string            `json:"ID"`
	STATE         string            `json:"STATE"`
	LCM_STATE     string            `json:"LCM_STATE"`
	USER_TEMPLATE map[string]string `json:"USER_TEMPLATE"`
	TEMPLATE      struct {
		NIC       []map[string]string `json:"NIC"`
		NIC_ALIAS []map[string]string `json:"NIC_ALIAS"`
	} `json:"TEMPLATE"`
}

// nicKeys is NIC_VALID_KEYS of onegate-server.rb.
var nicKeys = []string{"IP", "IP6_LINK", "IP6_SITE", "IP6_GLOBAL", "NETWORK", "MAC", "NAME", "PARENT", "EXTERNAL", "EXTERNAL_IP"}

// filteredVM is build_vm_hash: the answer of GET /vm and GET /vms/:id.
func filteredVM(v *vm) filteredVMDoc {
	b := filteredVMBody{NAME: v.name, ID: strconv.Itoa(v.id), STATE: strconv.Itoa(v.state), LCM_STATE: strconv.Itoa(v.lcm),
		USER_TEMPLATE: map[string]string{}}
	for k, val := range v.user {
		if k != "SCHED_MESSAGE" {
			b.USER_TEMPLATE[k] = val
		}
	}
	b.TEMPLATE.NIC = []map[string]string{}
	b.TEMPLATE.NIC_ALIAS = []map[string]string{}
	for _, n := range v.nics {
		f := map[string]string{}
		for _, k := range nicKeys {
			if val, ok := n[k]; ok {
				f[k] = val
			}
		}
		b.TEMPLATE.NIC = append(b.TEMPLATE.NIC, f)
	}
	return filteredVMDoc{VM: b}
}

// vmInfo is the six-field document OneFlow stores per node.
type vmInfo struct {
	VM struct {
		ID    string `json:"ID"`
		UID   string `json:"UID"`
		GID   string `json:"GID"`
		UNAME string `json:"UNAME"`
		GNAME string `json:"GNAME"`
		NAME  string `json:"NAME"`
	} `json:"VM"`
}

func shortVM(v *vm) vmInfo {
	var d vmInfo
	d.VM.ID, d.VM.UID, d.VM.GID = strconv.Itoa(v.id), strconv.Itoa(v.uid), strconv.Itoa(v.gid)
	d.VM.UNAME, d.VM.GNAME, d.VM.NAME = v.uname, v.gname, v.name
	return d
}

type permissions struct {
	OWNER_U string `json:"OWNER_U"`
	OWNER_M string `json:"OWNER_M"`
	OWNER_A string `json:"OWNER_A"`
	GROUP_U string `json:"GROUP_U"`
	GROUP_M string `json:"GROUP_M"`
	GROUP_A string `json:"GROUP_A"`
	OTHER_U string `json:"OTHER_U"`
	OTHER_M string `json:"OTHER_M"`
	OTHER_A string `json:"OTHER_A"`
}

type history struct {
	OID        string `json:"OID"`
	SEQ        string `json:"SEQ"`
	HOSTNAME   string `json:"HOSTNAME"`
	HID        string `json:"HID"`
	CID        string `json:"CID"`
	STIME      string `json:"STIME"`
	ETIME      string `json:"ETIME"`
	VM_MAD     string `json:"VM_MAD"`
	TM_MAD     string `json:"TM_MAD"`
	DS_ID      string `json:"DS_ID"`
	PLAN_ID    string `json:"PLAN_ID"`
	ACTION_ID  string `json:"ACTION_ID"`
	PSTIME     string `json:"PSTIME"`
	PETIME     string `json:"PETIME"`
	RSTIME     string `json:"RSTIME"`
	RETIME     string `json:"RETIME"`
	ESTIME     string `json:"ESTIME"`
	EETIME     string `json:"EETIME"`
	ACTION     string `json:"ACTION"`
	UID        string `json:"UID"`
	GID        string `json:"GID"`
	REQUEST_ID string `json:"REQUEST_ID"`
}

type empty struct{}

// fullVMBody is VirtualMachine::to_xml_extended converted to JSON.
type fullVMBody struct {
	ID              string            `json:"ID"`
	UID             string            `json:"UID"`
	GID             string            `json:"GID"`
	UNAME           string            `json:"UNAME"`
	GNAME           string            `json:"GNAME"`
	NAME            string            `json:"NAME"`
	PERMISSIONS     permissions       `json:"PERMISSIONS"`
	LAST_POLL       string            `json:"LAST_POLL"`
	STATE           string            `json:"STATE"`
	LCM_STATE       string            `json:"LCM_STATE"`
	PREV_STATE      string            `json:"PREV_STATE"`
	PREV_LCM_STATE  string            `json:"PREV_LCM_STATE"`
	RESCHED         string            `json:"RESCHED"`
	STIME           string            `json:"STIME"`
	ETIME           string            `json:"ETIME"`
	DEPLOY_ID       any               `json:"DEPLOY_ID"`
	MONITORING      map[string]string `json:"MONITORING"`
	SCHED_ACTIONS   empty             `json:"SCHED_ACTIONS"`
	TEMPLATE        map[string]any    `json:"TEMPLATE"`
	USER_TEMPLATE   map[string]string `json:"USER_TEMPLATE"`
	HISTORY_RECORDS struct {
		HISTORY history `json:"HISTORY"`
	} `json:"HISTORY_RECORDS"`
	BACKUPS struct {
		BACKUP_CONFIG empty `json:"BACKUP_CONFIG"`
		BACKUP_IDS    empty `json:"BACKUP_IDS"`
	} `json:"BACKUPS"`
}

type fullVMDoc struct {
	VM fullVMBody `json:"VM"`
}

// fullVM is the complete VM document of an extended service answer.
// Values that the fake does not model are plausible constants.
func (g *Gate) fullVM(v *vm) fullVMDoc {
	id := strconv.Itoa(v.id)
	booted := !(v.state == 3 && (v.lcm == 1 || v.lcm == 2))
	stime := strconv.FormatInt(v.stime, 10)
	b := fullVMBody{
		ID: id, UID: strconv.Itoa(v.uid), GID: strconv.Itoa(v.gid), UNAME: v.uname, GNAME: v.gname, NAME: v.name,
		PERMISSIONS: permissions{"1", "1", "0", "0", "0", "0", "0", "0", "0"},
		LAST_POLL:   "0", STATE: strconv.Itoa(v.state), LCM_STATE: strconv.Itoa(v.lcm),
		PREV_STATE: strconv.Itoa(v.state), PREV_LCM_STATE: strconv.Itoa(v.lcm), RESCHED: "0",
		STIME: stime, ETIME: "0", DEPLOY_ID: empty{}, MONITORING: map[string]string{},
		USER_TEMPLATE: map[string]string{},
	}
	for k, val := range v.user {
		b.USER_TEMPLATE[k] = val
	}
	if booted {
		poll := strconv.FormatInt(v.stime+600, 10)
		b.LAST_POLL, b.DEPLOY_ID = poll, "one-"+id
		b.MONITORING = map[string]string{"CPU": "2.0", "DISKRDBYTES": "200000000", "DISKWRBYTES": "40000000", "ID": id,
			"MEMORY": "400000", "NETRX": "1800000", "NETTX": "900000", "TIMESTAMP": poll}
	}
	ctx := map[string]string{"DISK_ID": "1", "NETWORK": "YES", "ONEGATE_ENDPOINT": g.endpoint, "REPORT_READY": "YES",
		"SSH_PUBLIC_KEY": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExample alice@example.org",
		"TARGET":         "hda", "TOKEN": "YES", "VMID": id}
	if r, ok := v.user["ROLE_NAME"]; ok {
		ctx["ROLE"] = r
	}
	for i, n := range v.nics {
		p := fmt.Sprintf("ETH%d_", i)
		ip := net.ParseIP(n["IP"]).To4()
		netw := net.IPv4(ip[0], ip[1], ip[2], 0).String()
		gw := net.IPv4(ip[0], ip[1], ip[2], 1).String()
		ctx[p+"DNS"], ctx[p+"GATEWAY"], ctx[p+"IP"], ctx[p+"MAC"] = gw, gw, n["IP"], n["MAC"]
		ctx[p+"MASK"], ctx[p+"NETWORK"] = "255.255.255.0", netw
	}
	for k, val := range v.context {
		ctx[k] = val
	}
	tmpl := map[string]any{
		"AUTOMATIC_DS_REQUIREMENTS":  `("CLUSTERS/ID" @> 0)`,
		"AUTOMATIC_NIC_REQUIREMENTS": `("CLUSTERS/ID" @> 0)`,
		"AUTOMATIC_REQUIREMENTS":     "(CLUSTER_ID = 0) & !(PUBLIC_CLOUD = YES) & !(PIN_POLICY = PINNED)",
		"CONTEXT":                    ctx,
		"CPU":                        "1",
		"CREATED_BY":                 strconv.Itoa(v.uid),
		"DISK": map[string]string{"ALLOW_ORPHANS": "YES", "CLONE": "YES", "CLONE_TARGET": "SYSTEM", "CLUSTER_ID": "0",
			"DATASTORE": "default", "DATASTORE_ID": "1", "DEV_PREFIX": "vd", "DISK_ID": "0", "DISK_SNAPSHOT_TOTAL_SIZE": "0",
			"DISK_TYPE": "FILE", "DRIVER": "qcow2", "FORMAT": "qcow2", "IMAGE": "debian12-one-contextd", "IMAGE_ID": "3",
			"IMAGE_STATE": "2", "IMAGE_UID": strconv.Itoa(v.uid), "IMAGE_UNAME": v.uname, "LN_TARGET": "NONE",
			"ORIGINAL_SIZE": "2048", "READONLY": "NO", "SAVE": "NO", "SIZE": "8192",
			"SOURCE": "/var/lib/one//datastores/1/" + fmt.Sprintf("%032x", v.id), "TARGET": "vda", "TM_MAD": "ssh", "TYPE": "FILE"},
		"GRAPHICS":      map[string]string{"LISTEN": "0.0.0.0", "PORT": strconv.Itoa(5900 + v.id), "TYPE": "VNC"},
		"MEMORY":        "1024",
		"OS":            map[string]string{"ARCH": "x86_64", "UUID": fmt.Sprintf("8c0d5a6e-0000-4000-8000-%012d", v.id)},
		"TEMPLATE_ID":   "12",
		"TM_MAD_SYSTEM": "ssh",
		"VMID":          id,
	}
	switch len(v.nics) { // one element is an object, more an array
	case 0:
	case 1:
		tmpl["NIC"] = v.nics[0]
	default:
		tmpl["NIC"] = v.nics
	}
	if v.vrouterID != "" {
		tmpl["VROUTER_ID"] = v.vrouterID
	}
	b.TEMPLATE = tmpl
	h := &b.HISTORY_RECORDS.HISTORY
	*h = history{OID: id, SEQ: "0", HOSTNAME: "kvm-node-1", HID: "0", CID: "0", STIME: strconv.FormatInt(v.stime+2, 10),
		ETIME: "0", VM_MAD: "kvm", TM_MAD: "ssh", DS_ID: "0", PLAN_ID: "-1", ACTION_ID: "-1",
		PSTIME: strconv.FormatInt(v.stime+2, 10), PETIME: "0", RSTIME: "0", RETIME: "0", ESTIME: "0", EETIME: "0",
		ACTION: "0", UID: "-1", GID: "-1", REQUEST_ID: "-1"}
	if booted {
		h.PETIME, h.RSTIME = strconv.FormatInt(v.stime+9, 10), strconv.FormatInt(v.stime+9, 10)
	}
	return fullVMDoc{VM: b}
}

type serviceDoc struct {
	SERVICE serviceBody `json:"SERVICE"`
}

type serviceBody struct {
	Name  string     `json:"name"`
	ID    string     `json:"id"`
	State int        `json:"state"`
	Roles []roleBody `json:"roles"`
}

type roleBody struct {
	Name        string     `json:"name"`
	Cardinality int        `json:"cardinality"`
	State       int        `json:"state"`
	Nodes       []nodeBody `json:"nodes"`
}

type nodeBody struct {
	DeployID int   `json:"deploy_id"`
	Running  *bool `json:"running"` // OneFlow 6.x/7.x never sets it
	VMInfo   any   `json:"vm_info"`
}

// buildServiceLocked is build_service_hash. missing is the id of a node
// whose VM is gone (an extended answer then fails with 404), else -1.
func (g *Gate) buildServiceLocked(extended bool) (doc *serviceDoc, missing int) {
	s := g.svc
	doc = &serviceDoc{SERVICE: serviceBody{Name: s.spec.Name, ID: strconv.Itoa(s.spec.ID), State: s.spec.State, Roles: []roleBody{}}}
	for _, r := range s.roles {
		rb := roleBody{Name: r.spec.Name, Cardinality: r.cardinality, State: r.state, Nodes: []nodeBody{}}
		for _, id := range r.nodes {
			n := nodeBody{DeployID: id}
			v, ok := g.vms[id]
			switch {
			case extended && !ok:
				return nil, id
			case extended:
				n.VMInfo = g.fullVM(v)
			case ok:
				n.VMInfo = shortVM(v)
			}
			rb.Nodes = append(rb.Nodes, n)
		}
		doc.SERVICE.Roles = append(doc.SERVICE.Roles, rb)
	}
	return doc, -1
}

func vrouterDoc(vr *VRouterSpec) any {
	ids := []string{}
	for _, id := range vr.VMs {
		ids = append(ids, strconv.Itoa(id))
	}
	nics := vr.NICs
	if nics == nil {
		nics = []map[string]string{}
	}
	type body struct {
		NAME string `json:"NAME"`
		ID   string `json:"ID"`
		VMS  struct {
			ID []string `json:"ID"`
		} `json:"VMS"`
		TEMPLATE map[string]any `json:"TEMPLATE"`
	}
	b := body{NAME: vr.Name, ID: strconv.Itoa(vr.ID), TEMPLATE: map[string]any{"NIC": nics}}
	b.VMS.ID = ids
	return map[string]any{"VROUTER": b}
}

type lease map[string]any

// vnetDocLocked is process_vnet (+ the extended lease details) for n; its
// leases are the NICs of the fake's VMs on that network.
func (g *Gate) vnetDocLocked(n *VNetSpec, vr *VRouterSpec, extended bool) any {
	nid := strconv.Itoa(n.ID)
	var leases []lease
	first := ""
	for _, id := range sortedIDs(g.vms) {
		v := g.vms[id]
		for _, nic := range v.nics {
			if nic["NETWORK_ID"] != nid {
				continue
			}
			if first == "" {
				first = nic["IP"]
			}
			l := lease{"IP": nic["IP"], "MAC": nic["MAC"], "VM": strconv.Itoa(v.id)}
			if extended {
				l["NIC_NAME"] = nic["NAME"]
				if strings.EqualFold(v.context["BACKEND"], "yes") {
					l["BACKEND"] = "YES"
					for k, val := range v.user {
						if strings.HasPrefix(k, "ONEGATE_") {
							l[k] = val
						}
					}
				}
			}
			leases = append(leases, l)
		}
	}
	if leases == nil {
		leases = []lease{}
	}
	tmpl := map[string]string{}
	for _, k := range []string{"NETWORK_ADDRESS", "NETWORK_MASK", "GATEWAY", "GATEWAY6", "DNS", "GUEST_MTU", "SEARCH_DOMAIN", "METRIC", "IP6_METRIC"} {
		if val, ok := n.Template[k]; ok {
			tmpl[k] = val
		}
	}
	type ar struct {
		AR_ID  string `json:"AR_ID"`
		TYPE   string `json:"TYPE"`
		IP     string `json:"IP"`
		SIZE   string `json:"SIZE"`
		LEASES struct {
			LEASE []lease `json:"LEASE"`
		} `json:"LEASES"`
	}
	type body struct {
		ID          string `json:"ID"`
		NAME        string `json:"NAME"`
		USED_LEASES string `json:"USED_LEASES"`
		VROUTERS    struct {
			ID []string `json:"ID"`
		} `json:"VROUTERS"`
		PARENT_NETWORK_ID empty `json:"PARENT_NETWORK_ID"`
		AR_POOL           struct {
			AR []ar `json:"AR"`
		} `json:"AR_POOL"`
		TEMPLATE map[string]string `json:"TEMPLATE"`
	}
	b := body{ID: nid, NAME: n.Name, USED_LEASES: strconv.Itoa(len(leases)), TEMPLATE: tmpl}
	b.VROUTERS.ID = []string{strconv.Itoa(vr.ID)}
	a := ar{AR_ID: "0", TYPE: "IP4", IP: first, SIZE: "200"}
	a.LEASES.LEASE = leases
	b.AR_POOL.AR = []ar{a}
	return map[string]any{"VNET": b}
}

func sortedIDs(m map[int]*vm) []int {
	ids := make([]int, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	for i := 1; i < len(ids); i++ {
		for j := i; j > 0 && ids[j] < ids[j-1]; j-- {
			ids[j], ids[j-1] = ids[j-1], ids[j]
		}
	}
	return ids
}

// State is what GET /__fake/state returns: everything a demo or VM test
// wants to read back, tokens excepted.
type State struct {
	VMs     map[string]VMState `json:"vms"`
	Service *ServiceState      `json:"service,omitempty"`
}

// VMState is one VM in State.
type VMState struct {
	Name         string            `json:"name"`
	State        int               `json:"state"`
	LCMState     int               `json:"lcm_state"`
	IPs          []string          `json:"ips"`
	UserTemplate map[string]string `json:"user_template"`
	Actions      []string          `json:"actions,omitempty"`
}

// ServiceState is the service in State.
type ServiceState struct {
	ID    int         `json:"id"`
	Name  string      `json:"name"`
	State int         `json:"state"`
	Roles []RoleState `json:"roles"`
}

// RoleState is one role in State.
type RoleState struct {
	Name        string `json:"name"`
	Cardinality int    `json:"cardinality"`
	State       int    `json:"state"`
	VMs         []int  `json:"vms"`
}

// State returns a snapshot of the gate.
func (g *Gate) State() State {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.stateLocked()
}

func (g *Gate) stateLocked() State {
	st := State{VMs: map[string]VMState{}}
	for id, v := range g.vms {
		vs := VMState{Name: v.name, State: v.state, LCMState: v.lcm, IPs: []string{}, UserTemplate: map[string]string{},
			Actions: append([]string(nil), v.actions...)}
		for _, n := range v.nics {
			vs.IPs = append(vs.IPs, n["IP"])
		}
		for k, val := range v.user {
			vs.UserTemplate[k] = val
		}
		st.VMs[strconv.Itoa(id)] = vs
	}
	if g.svc != nil {
		ss := &ServiceState{ID: g.svc.spec.ID, Name: g.svc.spec.Name, State: g.svc.spec.State, Roles: []RoleState{}}
		for _, r := range g.svc.roles {
			ss.Roles = append(ss.Roles, RoleState{Name: r.spec.Name, Cardinality: r.cardinality, State: r.state, VMs: append([]int{}, r.nodes...)})
		}
		st.Service = ss
	}
	return st
}
