package onegate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Attr is one USER_TEMPLATE attribute to push.
type Attr struct {
	Key   string
	Value string
}

// AttrsFromMap returns m as attributes sorted by key.
func AttrsFromMap(m map[string]string) []Attr {
	attrs := make([]Attr, 0, len(m))
	for k, v := range m {
		attrs = append(attrs, Attr{k, v})
	}
	for i := 1; i < len(attrs); i++ { // insertion sort: maps here are small
		for j := i; j > 0 && attrs[j].Key < attrs[j-1].Key; j-- {
			attrs[j], attrs[j-1] = attrs[j-1], attrs[j]
		}
	}
	return attrs
}

// ValidateAttr reports whether a pair survives the server's quoting:
// OneGate wraps each value in double quotes without escaping, so a value
// holding , [ ] \ " or a newline, or an empty value, corrupts the template
// (500 or a silently wrong attribute). Keys are [A-Za-z0-9_]+.
func ValidateAttr(a Attr) error {
	if a.Key == "" {
		return errors.New("empty attribute name")
	}
	for _, r := range a.Key {
		if !(r == '_' || r >= '0' && r <= '9' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z') {
			return fmt.Errorf("attribute name %q: only letters, digits and _ are allowed", a.Key)
		}
	}
	if a.Value == "" {
		return fmt.Errorf("attribute %s: empty value (erase the attribute instead)", a.Key)
	}
	if i := strings.IndexAny(a.Value, ",[]\\\"\n\r"); i >= 0 {
		return fmt.Errorf("attribute %s: value contains %q, which OneGate cannot store", a.Key, a.Value[i])
	}
	return nil
}

func vmRoute(id string) (string, error) {
	if id == "" {
		return "/vm", nil
	}
	if _, err := strconv.ParseUint(id, 10, 31); err != nil {
		return "", fmt.Errorf("VM id %q is not a number", id)
	}
	return "/vms/" + id, nil
}

func badArg(method, route string, err error) error {
	return &Error{Method: method, Path: route, Err: err}
}

// VM returns the caller's own VM (GET /vm).
func (c *Client) VM(ctx context.Context) (*VM, error) { return c.VMByID(ctx, "") }

// VMByID returns another VM of the caller's service (GET /vms/ID); "" is
// the caller itself.
func (c *Client) VMByID(ctx context.Context, id string) (*VM, error) {
	route, err := vmRoute(id)
	if err != nil {
		return nil, badArg("GET", "/vms/"+id, err)
	}
	req := request{method: "GET", route: route}
	body, err := c.do(ctx, req)
	if err != nil {
		return nil, err
	}
	vm, err := decodeVM(body)
	if err != nil {
		return nil, badArg(req.method, req.route, fmt.Errorf("decode answer: %w", err))
	}
	return vm, nil
}

// Update merges attrs into the USER_TEMPLATE of VM id ("" = the caller):
// PUT /vm or /vms/ID with the form data=K=V\nK2=V2&type=1, as the reference
// CLI sends it. Every pair is checked with ValidateAttr first.
func (c *Client) Update(ctx context.Context, id string, attrs ...Attr) error {
	route, err := vmRoute(id)
	if err != nil {
		return badArg("PUT", "/vms/"+id, err)
	}
	if len(attrs) == 0 {
		return badArg("PUT", route, errors.New("no attributes to update"))
	}
	lines := make([]string, 0, len(attrs))
	for _, a := range attrs {
		if err := ValidateAttr(a); err != nil {
			return badArg("PUT", route, err)
		}
		lines = append(lines, a.Key+"="+a.Value)
	}
	return c.put(ctx, route, strings.Join(lines, "\n"), 1)
}

// UpdateData sends data verbatim as an update (type=1), for callers such as
// the onegate command that pass user text through (the server turns the
// two characters \n into a line break).
func (c *Client) UpdateData(ctx context.Context, id, data string) error {
	route, err := vmRoute(id)
	if err != nil {
		return badArg("PUT", "/vms/"+id, err)
	}
	return c.put(ctx, route, data, 1)
}

// Erase removes attributes from the USER_TEMPLATE of VM id ("" = the
// caller), one PUT with type=2 per key (the server takes one name a time).
func (c *Client) Erase(ctx context.Context, id string, keys ...string) error {
	route, err := vmRoute(id)
	if err != nil {
		return badArg("PUT", "/vms/"+id, err)
	}
	if len(keys) == 0 {
		return badArg("PUT", route, errors.New("no attribute to erase"))
	}
	for _, k := range keys {
		if k == "" || strings.ContainsAny(k, "\n\r") {
			return badArg("PUT", route, fmt.Errorf("attribute name %q cannot be erased", k))
		}
	}
	for _, k := range keys {
		if err := c.put(ctx, route, k, 2); err != nil {
			return err
		}
	}
	return nil
}

func (c *Client) put(ctx context.Context, route, data string, typ int) error {
	form := "data=" + url.QueryEscape(data) + "&type=" + strconv.Itoa(typ)
	_, err := c.do(ctx, request{method: "PUT", route: route, body: []byte(form), contentType: "application/x-www-form-urlencoded"})
	return err
}

// Action performs a VM action (POST /vms/ID/action); any action name is
// passed through. hard sets params=true, meaningful where HardCapable.
func (c *Client) Action(ctx context.Context, id, action string, hard bool) error {
	route := "/vms/" + id + "/action"
	if _, err := strconv.ParseUint(id, 10, 31); err != nil {
		return badArg("POST", route, fmt.Errorf("VM id %q is not a number", id))
	}
	if action == "" {
		return badArg("POST", route, errors.New("no action"))
	}
	type act struct {
		Perform string `json:"perform"`
		Params  *bool  `json:"params,omitempty"`
	}
	body := struct {
		Action act `json:"action"`
	}{act{Perform: action}}
	if hard {
		t := true
		body.Action.Params = &t
	}
	data, err := json.Marshal(body)
	if err != nil {
		return badArg("POST", route, err)
	}
	_, err = c.do(ctx, request{method: "POST", route: route, body: data, contentType: "application/json"})
	return err
}

// HardCapable reports whether action takes the hard flag.
func HardCapable(action string) bool {
	switch action {
	case "terminate", "reboot", "poweroff", "undeploy":
		return true
	}
	return false
}

// Service returns the caller's service (GET /service). extended asks for
// the complete VM document of every node (one oned call per node).
func (c *Client) Service(ctx context.Context, extended bool) (*Service, error) {
	req := request{method: "GET", route: "/service"}
	if extended {
		req.query = url.Values{"extended": {"true"}}
	}
	body, err := c.do(ctx, req)
	if err != nil {
		return nil, err
	}
	s, err := decodeService(body)
	if err != nil {
		return nil, badArg(req.method, req.route, fmt.Errorf("decode answer: %w", err))
	}
	return s, nil
}

// Scale asks OneFlow to set a role's cardinality (PUT /service/role/R).
// OneFlow refuses (400) unless the service is RUNNING, the role exists, the
// number differs and lies within min_vms..max_vms.
func (c *Client) Scale(ctx context.Context, role string, cardinality int) error {
	route := "/service/role/" + role
	if role == "" || strings.ContainsAny(role, "/?#") {
		return badArg("PUT", route, fmt.Errorf("invalid role name %q", role))
	}
	if cardinality < 0 {
		return badArg("PUT", route, fmt.Errorf("negative cardinality %d", cardinality))
	}
	body := []byte(`{"cardinality":` + strconv.Itoa(cardinality) + `}`)
	_, err := c.do(ctx, request{method: "PUT", route: "/service/role/" + url.PathEscape(role), body: body, contentType: "application/json"})
	return err
}

// VNet returns a virtual network (GET /vnet/ID); only VMs of a virtual
// router may ask. extended adds NIC names and BACKEND VMs' ONEGATE_* values.
func (c *Client) VNet(ctx context.Context, id string, extended bool) (*VNet, error) {
	req := request{method: "GET", route: "/vnet/" + url.PathEscape(id)}
	if id == "" {
		return nil, badArg(req.method, req.route, errors.New("no network id"))
	}
	if extended {
		req.query = url.Values{"extended": {"true"}}
	}
	body, err := c.do(ctx, req)
	if err != nil {
		return nil, err
	}
	n, err := decodeVNet(body)
	if err != nil {
		return nil, badArg(req.method, req.route, fmt.Errorf("decode answer: %w", err))
	}
	return n, nil
}

// VRouter returns the caller's virtual router (GET /vrouter).
func (c *Client) VRouter(ctx context.Context) (*VRouter, error) {
	req := request{method: "GET", route: "/vrouter"}
	body, err := c.do(ctx, req)
	if err != nil {
		return nil, err
	}
	r, err := decodeVRouter(body)
	if err != nil {
		return nil, badArg(req.method, req.route, fmt.Errorf("decode answer: %w", err))
	}
	return r, nil
}
