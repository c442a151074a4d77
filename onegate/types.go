package onegate

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// VM is a VM document as OneGate returns it: filtered by GET /vm and
// GET /vms/:id, six fields only in a plain service answer, complete in an
// extended one. Fields the answer did not carry are zero ("" or -1).
type VM struct {
	ID   string
	Name string
	// Owner fields; only service node documents carry them.
	UID, GID     string
	UName, GName string
	// State and LCMState are OpenNebula's numbers, -1 when absent.
	State    int
	LCMState int
	// UserTemplate holds the scalar attributes of USER_TEMPLATE (READY,
	// SERVICE_ID, pushed metrics). Vector attributes are only in Raw.
	UserTemplate map[string]string
	NICs         []NIC
	NICAliases   []NIC
	// Raw is the document as received, {"VM": {...}}.
	Raw json.RawMessage
}

// NIC is a network interface of a VM. The filtered /vm answer keeps only
// IP, IP6_LINK, IP6_SITE, IP6_GLOBAL, NETWORK, MAC, NAME, PARENT, EXTERNAL
// and EXTERNAL_IP; extended service documents carry the rest.
type NIC struct {
	Name       string `json:"NAME"`
	NICID      string `json:"NIC_ID"`
	Network    string `json:"NETWORK"`
	NetworkID  string `json:"NETWORK_ID"`
	IP         string `json:"IP"`
	IP6        string `json:"IP6"`
	IP6Global  string `json:"IP6_GLOBAL"`
	IP6Link    string `json:"IP6_LINK"`
	IP6Site    string `json:"IP6_SITE"`
	MAC        string `json:"MAC"`
	Parent     string `json:"PARENT"`
	External   string `json:"EXTERNAL"`
	ExternalIP string `json:"EXTERNAL_IP"`
}

// Ready reports whether the VM has said READY=YES, with OneFlow's rule
// (trimmed, case-sensitive).
func (v *VM) Ready() bool { return strings.TrimSpace(v.UserTemplate["READY"]) == "YES" }

// IPs lists the IPv4 addresses of the VM's NICs, in NIC order.
func (v *VM) IPs() []string {
	var ips []string
	for _, n := range v.NICs {
		if n.IP != "" {
			ips = append(ips, n.IP)
		}
	}
	return ips
}

// StateName is the state name the onegate CLI prints: the LCM state when the
// VM is ACTIVE, else the VM state.
func (v *VM) StateName() string { return VMStateName(v.State, v.LCMState) }

// Service is the caller's OneFlow service as GET /service returns it.
type Service struct {
	ID    string
	Name  string
	State int
	Roles []Role
	Raw   json.RawMessage // {"SERVICE": {...}} as received
}

// Role is one role of a service, in template order.
type Role struct {
	Name        string
	Cardinality int
	State       int
	// Parents is filled only if the answer carries "parents"; OneGate
	// itself never sends it (OneFlow's document has it, OneGate drops it).
	Parents []string
	Nodes   []Node // in creation order
}

// Node is a VM of a role.
type Node struct {
	DeployID int // the VM id
	// VM is the node's vm_info: six fields in a plain answer, the complete
	// VM in an extended one; nil if OneFlow could not read the VM.
	VM *VM
}

// Role returns the role called name, or nil.
func (s *Service) Role(name string) *Role {
	for i := range s.Roles {
		if s.Roles[i].Name == name {
			return &s.Roles[i]
		}
	}
	return nil
}

// VMIDs lists the ids of the role's nodes.
func (r *Role) VMIDs() []string {
	ids := make([]string, 0, len(r.Nodes))
	for _, n := range r.Nodes {
		ids = append(ids, strconv.Itoa(n.DeployID))
	}
	return ids
}

// VNet is a virtual network as GET /vnet/:id returns it (virtual routers
// only).
type VNet struct {
	ID       string
	Name     string
	Template map[string]string // the attributes the server lets through
	Leases   []Lease
	Raw      json.RawMessage // {"VNET": {...}} as received
}

// Lease is one used address of a VNet's address ranges.
type Lease struct {
	IP, IP6, MAC, VM string
	NICName          string // extended only
	Backend          bool   // extended only: the VM's context says BACKEND=YES
	// Attrs holds every scalar of the lease, ONEGATE_* pass-through
	// attributes included.
	Attrs map[string]string
}

// VRouter is the caller's virtual router as GET /vrouter returns it.
type VRouter struct {
	ID    string
	Name  string
	VMIDs []string
	Raw   json.RawMessage // {"VROUTER": {...}} as received
}

// flexString decodes the scalars of OpenNebula's XML-to-JSON conversion:
// normally strings, numbers where OneFlow wrote them, {} for an empty
// element.
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0, bytes.Equal(b, []byte("null")), b[0] == '{', b[0] == '[':
		*f = ""
		return nil
	case b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexString(s)
	default:
		*f = flexString(b) // number or boolean, as written
	}
	return nil
}

func (f flexString) int() int {
	n, err := strconv.Atoi(strings.TrimSpace(string(f)))
	if err != nil {
		return -1
	}
	return n
}

// oneOrMany decodes an element that is an object when it occurs once and
// an array when it occurs more often (and {} or null when absent).
type oneOrMany[T any] []T

func (o *oneOrMany[T]) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || bytes.Equal(b, []byte("null")) || bytes.Equal(b, []byte("{}")) || b[0] == '"' {
		*o = nil
		return nil
	}
	if b[0] == '[' {
		var many []T
		err := json.Unmarshal(b, &many)
		*o = many
		return err
	}
	var one T
	if err := json.Unmarshal(b, &one); err != nil {
		return err
	}
	*o = []T{one}
	return nil
}

type wireNIC struct {
	NAME, NIC_ID, NETWORK, NETWORK_ID, IP, IP6, IP6_GLOBAL, IP6_LINK, IP6_SITE, MAC, PARENT, EXTERNAL, EXTERNAL_IP flexString
}

func (w wireNIC) nic() NIC {
	return NIC{
		Name: string(w.NAME), NICID: string(w.NIC_ID), Network: string(w.NETWORK), NetworkID: string(w.NETWORK_ID),
		IP: string(w.IP), IP6: string(w.IP6), IP6Global: string(w.IP6_GLOBAL), IP6Link: string(w.IP6_LINK),
		IP6Site: string(w.IP6_SITE), MAC: string(w.MAC), Parent: string(w.PARENT), External: string(w.EXTERNAL),
		ExternalIP: string(w.EXTERNAL_IP),
	}
}

type wireVM struct {
	ID, NAME, UID, GID, UNAME, GNAME flexString
	STATE, LCM_STATE                 *flexString
	USER_TEMPLATE                    map[string]json.RawMessage
	TEMPLATE                         struct {
		NIC       oneOrMany[wireNIC]
		NIC_ALIAS oneOrMany[wireNIC]
	}
}

// decodeVM turns {"VM": {...}} into a VM.
func decodeVM(raw []byte) (*VM, error) {
	var doc struct{ VM *wireVM }
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	if doc.VM == nil {
		return nil, errNoRoot("VM")
	}
	v := vmFromWire(doc.VM)
	v.Raw = json.RawMessage(raw)
	return v, nil
}

func vmFromWire(w *wireVM) *VM {
	v := &VM{
		ID: string(w.ID), Name: string(w.NAME), UID: string(w.UID), GID: string(w.GID),
		UName: string(w.UNAME), GName: string(w.GNAME), State: -1, LCMState: -1,
		UserTemplate: scalars(w.USER_TEMPLATE),
	}
	if w.STATE != nil {
		v.State = w.STATE.int()
	}
	if w.LCM_STATE != nil {
		v.LCMState = w.LCM_STATE.int()
	}
	for _, n := range w.TEMPLATE.NIC {
		v.NICs = append(v.NICs, n.nic())
	}
	for _, n := range w.TEMPLATE.NIC_ALIAS {
		v.NICAliases = append(v.NICAliases, n.nic())
	}
	return v
}

// scalars keeps the string-valued attributes of a template.
func scalars(m map[string]json.RawMessage) map[string]string {
	out := make(map[string]string, len(m))
	for k, raw := range m {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			out[k] = s
		}
	}
	return out
}

type wireService struct {
	SERVICE *struct {
		Name  flexString `json:"name"`
		ID    flexString `json:"id"`
		State flexString `json:"state"`
		Roles []struct {
			Name        flexString `json:"name"`
			Cardinality flexString `json:"cardinality"`
			State       flexString `json:"state"`
			Parents     []string   `json:"parents"`
			Nodes       []struct {
				DeployID flexString `json:"deploy_id"`
				VMInfo   *struct {
					VM *wireVM
				} `json:"vm_info"`
			} `json:"nodes"`
		} `json:"roles"`
	}
}

func decodeService(raw []byte) (*Service, error) {
	var doc wireService
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	if doc.SERVICE == nil {
		return nil, errNoRoot("SERVICE")
	}
	w := doc.SERVICE
	s := &Service{ID: string(w.ID), Name: string(w.Name), State: w.State.int(), Raw: json.RawMessage(raw)}
	for _, wr := range w.Roles {
		r := Role{Name: string(wr.Name), Cardinality: wr.Cardinality.int(), State: wr.State.int(), Parents: wr.Parents}
		for _, wn := range wr.Nodes {
			n := Node{DeployID: wn.DeployID.int()}
			if wn.VMInfo != nil && wn.VMInfo.VM != nil {
				n.VM = vmFromWire(wn.VMInfo.VM)
			}
			r.Nodes = append(r.Nodes, n)
		}
		s.Roles = append(s.Roles, r)
	}
	return s, nil
}

func decodeVNet(raw []byte) (*VNet, error) {
	var doc struct {
		VNET *struct {
			ID, NAME flexString
			TEMPLATE map[string]json.RawMessage
			AR_POOL  struct {
				AR oneOrMany[struct {
					LEASES struct {
						LEASE oneOrMany[map[string]json.RawMessage]
					}
				}]
			}
		}
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	if doc.VNET == nil {
		return nil, errNoRoot("VNET")
	}
	n := &VNet{ID: string(doc.VNET.ID), Name: string(doc.VNET.NAME), Template: scalars(doc.VNET.TEMPLATE), Raw: json.RawMessage(raw)}
	for _, ar := range doc.VNET.AR_POOL.AR {
		for _, l := range ar.LEASES.LEASE {
			a := scalars(l)
			n.Leases = append(n.Leases, Lease{
				IP: a["IP"], IP6: a["IP6"], MAC: a["MAC"], VM: a["VM"], NICName: a["NIC_NAME"],
				Backend: a["BACKEND"] == "YES", Attrs: a,
			})
		}
	}
	return n, nil
}

func decodeVRouter(raw []byte) (*VRouter, error) {
	var doc struct {
		VROUTER *struct {
			ID, NAME flexString
			VMS      struct {
				ID oneOrMany[flexString]
			}
		}
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	if doc.VROUTER == nil {
		return nil, errNoRoot("VROUTER")
	}
	r := &VRouter{ID: string(doc.VROUTER.ID), Name: string(doc.VROUTER.NAME), Raw: json.RawMessage(raw)}
	for _, id := range doc.VROUTER.VMS.ID {
		r.VMIDs = append(r.VMIDs, string(id))
	}
	return r, nil
}

type errNoRoot string

func (e errNoRoot) Error() string { return "answer has no " + string(e) + " element" }
