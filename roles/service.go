package roles

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Service is what the role runner needs to know of the VM's OneFlow
// service: its roles and, per role, its VMs with their addresses and
// READY flag. It holds no secret (OneGate's extended documents carry every
// peer's CONTEXT; none of it is kept here).
type Service struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Roles []Role `json:"roles"`
}

// Role is one role of the service, in template order.
type Role struct {
	Name string `json:"name"`
	// Cardinality is the number of VMs OneFlow wants (0: unknown).
	Cardinality int `json:"cardinality"`
	// Parents are the roles this one depends on, when the source knows them.
	Parents []string `json:"parents,omitempty"`
	Nodes   []Node   `json:"nodes"` // in creation order
}

// Node is one VM of a role.
type Node struct {
	VMID  string   `json:"vmid"`
	Name  string   `json:"name,omitempty"`
	IPs   []string `json:"ips"` // IPv4 addresses, NIC order
	Ready bool     `json:"ready"`
}

// IP is the node's first IPv4 address, the one peers use; "" if none.
func (n Node) IP() string {
	if len(n.IPs) == 0 {
		return ""
	}
	return n.IPs[0]
}

// ServiceSource gives the current service document (OneGate in the agent,
// a fixed or scripted answer in tests).
type ServiceSource interface {
	Service(ctx context.Context) (*Service, error)
}

// ErrNoService is returned (wrapped) by a source when the VM belongs to no
// service; the role runner then works in single mode.
var ErrNoService = errors.New("the VM is not part of a OneFlow service")

// Role finds a role by name (OneFlow names are case-sensitive).
func (s *Service) Role(name string) *Role {
	for i := range s.Roles {
		if s.Roles[i].Name == name {
			return &s.Roles[i]
		}
	}
	return nil
}

// find returns the role and index of the node with the VM id.
func (s *Service) find(vmid string) (*Role, int) {
	for i := range s.Roles {
		for j, n := range s.Roles[i].Nodes {
			if n.VMID == vmid {
				return &s.Roles[i], j
			}
		}
	}
	return nil, -1
}

// IPs lists the first address of each node, in node order.
func (r *Role) IPs() []string {
	var out []string
	for _, n := range r.Nodes {
		if ip := n.IP(); ip != "" {
			out = append(out, ip)
		}
	}
	return out
}

// ReadyIPs lists the first address of each READY node.
func (r *Role) ReadyIPs() []string {
	var out []string
	for _, n := range r.Nodes {
		if ip := n.IP(); ip != "" && n.Ready {
			out = append(out, ip)
		}
	}
	return out
}

// ready reports whether the role is complete and every VM said READY,
// with a short reason when not.
func (r *Role) ready() (bool, string) {
	n := 0
	for _, node := range r.Nodes {
		if node.Ready {
			n++
		}
	}
	// A role scaled to 0 VMs is complete (OneFlow shows it RUNNING); one
	// whose VMs are not listed yet waits for its cardinality.
	want := max(r.Cardinality, len(r.Nodes))
	if n >= want && n == len(r.Nodes) {
		return true, ""
	}
	return false, fmt.Sprintf("%s: %d of %d VMs READY", r.Name, n, want)
}

// Membership is role name → sorted addresses: what reconfiguration follows.
type Membership map[string][]string

// MembershipOf is the service's membership.
func MembershipOf(s *Service) Membership {
	m := Membership{}
	if s == nil {
		return m
	}
	for i := range s.Roles {
		ips := s.Roles[i].IPs()
		slices.Sort(ips)
		if ips == nil {
			ips = []string{}
		}
		m[s.Roles[i].Name] = ips
	}
	return m
}

// Equal compares two memberships.
func (m Membership) Equal(o Membership) bool {
	if len(m) != len(o) {
		return false
	}
	for k, v := range m {
		w, ok := o[k]
		if !ok || !slices.Equal(v, w) {
			return false
		}
	}
	return true
}

// Diff describes what changed from old to m, e.g. "app 2→3".
func (m Membership) Diff(old Membership) string {
	var parts []string
	names := make([]string, 0, len(m)+len(old))
	for k := range m {
		names = append(names, k)
	}
	for k := range old {
		if _, ok := m[k]; !ok {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	for _, k := range names {
		a, b := old[k], m[k]
		switch {
		case a == nil && b != nil:
			parts = append(parts, fmt.Sprintf("%s new (%d)", k, len(b)))
		case b == nil:
			parts = append(parts, k+" gone")
		case !slices.Equal(a, b):
			parts = append(parts, fmt.Sprintf("%s %d→%d [%s]", k, len(a), len(b), strings.Join(b, " ")))
		}
	}
	if len(parts) == 0 {
		return "no change"
	}
	return strings.Join(parts, ", ")
}
