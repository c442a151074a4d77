package fakegate

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// ServeConfig describes the gate a process serves: one calling VM and,
// optionally, a OneFlow service instantiated from a service template.
type ServeConfig struct {
	VMID  int
	Token string   // accepted for VMID (the AES token of the VM works too)
	Name  string   // VM name; default from the role, or "vm-<id>"
	IPs   []string // the VM's NIC addresses; default one address
	// Service is a OneFlow service template (JSON, as in
	// shared/reference/oneflow-templates); nil means no service.
	Service   []byte
	ServiceID int
	Role      string // the role the VM belongs to; default the first role
	// Endpoint is the ONEGATE_ENDPOINT written into extended documents.
	Endpoint string
	// AutoSettle finishes a scaling after this long; 0 leaves it SCALING.
	AutoSettle time.Duration
}

// flowTemplate is the part of a OneFlow service template the fake uses.
type flowTemplate struct {
	Name            string `json:"name"`
	ReadyStatusGate bool   `json:"ready_status_gate"`
	Roles           []struct {
		Name        string   `json:"name"`
		Cardinality int      `json:"cardinality"`
		Parents     []string `json:"parents"`
		MinVMs      int      `json:"min_vms"`
		MaxVMs      int      `json:"max_vms"`
	} `json:"roles"`
}

func (c ServeConfig) apply(g *Gate) error {
	g.SetAutoSettle(c.AutoSettle)
	ips := c.IPs
	if len(ips) == 0 {
		ips = []string{"192.0.2.10"}
	}
	if c.Service == nil {
		name := c.Name
		if name == "" {
			name = fmt.Sprintf("vm-%d", c.VMID)
		}
		return g.AddVM(c.VMID, name, c.Token, ips...)
	}
	var t flowTemplate
	if err := json.Unmarshal(c.Service, &t); err != nil {
		return fmt.Errorf("fakegate: service template: %w", err)
	}
	if len(t.Roles) == 0 {
		return errors.New("fakegate: service template has no roles")
	}
	callerRole := c.Role
	if callerRole == "" {
		callerRole = t.Roles[0].Name
	}
	spec := ServiceSpec{ID: c.ServiceID, Name: t.Name, ReadyGate: t.ReadyStatusGate}
	found := false
	next := c.VMID + 1
	for _, tr := range t.Roles {
		rs := RoleSpec{Name: tr.Name, Parents: tr.Parents, MinVMs: tr.MinVMs, MaxVMs: tr.MaxVMs}
		card := tr.Cardinality
		if tr.Name == callerRole {
			found = true
			if card < 1 {
				card = 1
			}
		}
		for i := 0; i < card; i++ {
			id, vmName, tok := next, fmt.Sprintf("%s_%d_(service_%d)", tr.Name, i, c.ServiceID), ""
			vmIPs, user := []string{}, map[string]string{"READY": "YES"}
			if tr.Name == callerRole && i == 0 { // the caller has not reported yet
				id, tok, vmIPs, user = c.VMID, c.Token, ips, nil
				if c.Name != "" {
					vmName = c.Name
				}
			} else {
				next++
			}
			if len(vmIPs) == 0 {
				g.mu.Lock()
				vmIPs = []string{g.freeIPLocked("192.0.2.20")}
				g.mu.Unlock()
			}
			err := g.AddVMSpec(VMSpec{ID: id, Name: vmName, Token: tok, NICs: nicSpecs(vmIPs),
				UserTemplate: user})
			if err != nil {
				return err
			}
			rs.VMs = append(rs.VMs, id)
		}
		spec.Roles = append(spec.Roles, rs)
	}
	if !found {
		return fmt.Errorf("fakegate: service template has no role %q", callerRole)
	}
	return g.SetService(spec)
}

func nicSpecs(ips []string) []NICSpec {
	var out []NICSpec
	for _, ip := range ips {
		out = append(out, NICSpec{IP: ip})
	}
	return out
}

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// Main is `one-contextd onegate-server`: it serves a fake gate until
// SIGINT/SIGTERM. The debug route GET /__fake/state returns every VM's
// attributes as JSON.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("onegate-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:5030", "address to listen on")
	vmid := fs.Int("vmid", 0, "id of the calling VM (X-ONEGATE-VMID)")
	token := fs.String("token", "", "token the VM sends (X-ONEGATE-TOKEN); required")
	name := fs.String("name", "", "VM name")
	var ips listFlag
	fs.Var(&ips, "ip", "NIC address of the VM (repeatable)")
	serviceFile := fs.String("service", "", "OneFlow service template (JSON) to instantiate")
	serviceID := fs.Int("service-id", 0, "id of the instantiated service")
	role := fs.String("role", "", "role of the VM in the service (default: the first role)")
	endpoint := fs.String("endpoint", "", "ONEGATE_ENDPOINT shown in extended documents (default: the listen URL)")
	settle := fs.Duration("settle", 5*time.Second, "time after which a scaling finishes (0: never)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: onegate-server --listen ADDR --vmid ID --token TOKEN [--service FILE] [flags]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "onegate-server: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *token == "" {
		fmt.Fprintln(stderr, "onegate-server: --token is required")
		return 2
	}
	cfg := ServeConfig{VMID: *vmid, Token: *token, Name: *name, IPs: ips, ServiceID: *serviceID, Role: *role,
		Endpoint: *endpoint, AutoSettle: *settle}
	if *serviceFile != "" {
		data, err := os.ReadFile(*serviceFile)
		if err != nil {
			fmt.Fprintf(stderr, "onegate-server: %v\n", err)
			return 1
		}
		cfg.Service = data
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := Serve(ctx, *listen, cfg, stdout); err != nil {
		fmt.Fprintf(stderr, "onegate-server: %v\n", err)
		return 1
	}
	return 0
}
