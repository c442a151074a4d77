package roles

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"one-contextd/onegate"
)

// OneGate is the ServiceSource of the agent: the VM's service as OneGate
// reports it, in extended form (the plain form has no addresses and no
// READY flags).
type OneGate struct {
	Client *onegate.Client
}

// Service reads GET /service?extended. A 400 answer (the VM has no
// SERVICE_ID, or the service is empty) is ErrNoService.
func (g OneGate) Service(ctx context.Context) (*Service, error) {
	s, err := g.Client.Service(ctx, true)
	if err != nil {
		if onegate.StatusOf(err) == http.StatusBadRequest {
			return nil, fmt.Errorf("%v: %w", err, ErrNoService)
		}
		return nil, err
	}
	return FromOneGate(s), nil
}

// FromOneGate keeps what the role runner needs of a OneGate service
// document: names, cardinalities, parents when present, and per node the
// id, name, IPv4 addresses and READY. Everything else (the peers' CONTEXT,
// passwords included) is dropped.
func FromOneGate(s *onegate.Service) *Service {
	out := &Service{ID: s.ID, Name: s.Name}
	for _, r := range s.Roles {
		role := Role{Name: r.Name, Cardinality: max(r.Cardinality, 0), Parents: r.Parents, Nodes: []Node{}}
		for _, n := range r.Nodes {
			node := Node{VMID: strconv.Itoa(n.DeployID), IPs: []string{}}
			if n.VM != nil {
				node.Name, node.IPs, node.Ready = n.VM.Name, n.VM.IPs(), n.VM.Ready()
				if node.IPs == nil {
					node.IPs = []string{}
				}
			}
			role.Nodes = append(role.Nodes, node)
		}
		out.Roles = append(out.Roles, role)
	}
	return out
}

// passing reports whether a failed service read may succeed later:
// OneGate's 404 (the VM has a service, which it cannot show while
// oneflow-server is down), and, when the context names a role, no answer
// or a 5xx. Without a role in the context an outage is not waited out: the
// read only looks for a role the VM may not have.
func passing(err error, roleExpected bool) bool {
	if errors.Is(err, ErrNoService) {
		return false
	}
	switch st := onegate.StatusOf(err); {
	case st == http.StatusNotFound:
		return true
	case st == 0, st >= 500:
		return roleExpected
	}
	return false
}
