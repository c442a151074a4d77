// Package hostname picks the guest's hostname with one-context's
// precedence (SET_HOSTNAME, then DNS_HOSTNAME's reverse lookup of the first
// IP, then EC2_HOSTNAME) and sets it: the kernel's name, /etc/hostname, and
// systemd-hostnamed or NetworkManager when they run, so they keep it.
package hostname

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"one-contextd/context/settings"
	"one-contextd/engine"
	"one-contextd/fsroot"
	"one-contextd/runner"
)

// Kernel is the running system's hostname.
type Kernel interface {
	Hostname() (string, error)
	SetHostname(name string) error
}

// UnixKernel is the real kernel (sethostname(2)).
type UnixKernel struct{}

// Hostname reads the kernel's hostname.
func (UnixKernel) Hostname() (string, error) { return os.Hostname() }

// SetHostname sets the kernel's hostname.
func (UnixKernel) SetHostname(name string) error { return unix.Sethostname([]byte(name)) }

// Resolver is what the step asks DNS (net.DefaultResolver in production).
type Resolver interface {
	LookupAddr(ctx context.Context, addr string) ([]string, error)
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// Input is what the hostname step needs.
type Input struct {
	Identity settings.Identity
	Root     *fsroot.Root
	Run      runner.Runner
	// Kernel is nil when the running kernel must not be touched (a root
	// other than the running system's /).
	Kernel   Kernel
	Resolver Resolver                                      // nil: net.DefaultResolver
	FirstIP  func(ctx context.Context) (netip.Addr, error) // nil: RouteSourceIP
	EC2      func(ctx context.Context) (string, error)     // nil: EC2LocalHostname
	LookPath func(name string) (string, bool)              // nil: runner.LookPath
	// TellNobody skips telling hostnamed or NetworkManager: before they
	// start (the local stage) they read the name themselves.
	TellNobody bool
}

// Decision is the chosen name.
type Decision struct {
	Name   string // as chosen ("web-01.example.org")
	Short  string // before the first dot: what the kernel and /etc/hostname get
	Domain string // after the first dot, "" if none (for resolv.conf's domain line)
	From   string // the variable that chose it
	// HostsIP is the address /etc/hosts maps the name to: the first IP
	// when DNS chose the name or the name resolves to exactly it, else 127.0.0.1.
	HostsIP netip.Addr
}

// IsZero reports that no variable chose a name: the hostname is not touched.
func (d Decision) IsZero() bool { return d.Name == "" }

// Apply decides the name and sets it.
func Apply(ctx context.Context, r *engine.Recorder, in Input) error {
	d := Decide(ctx, r, in)
	if d.IsZero() {
		return engine.Skip("no SET_HOSTNAME, DNS_HOSTNAME or EC2_HOSTNAME gave a name")
	}
	return Set(ctx, r, in, d)
}

// Decide applies one-context's precedence. Problems are recorded; a zero
// Decision means the hostname is left alone.
func Decide(ctx context.Context, r *engine.Recorder, in Input) Decision {
	id := in.Identity
	resolver := in.Resolver
	if resolver == nil {
		resolver = net.DefaultResolver
	}
	firstIP := in.FirstIP
	if firstIP == nil {
		firstIP = RouteSourceIP
	}
	var d Decision
	switch {
	case id.Hostname != "":
		d = decision(r, "SET_HOSTNAME", id.Hostname)
	case id.DNSHostname:
		ip, err := firstIP(ctx)
		if err != nil {
			r.Note("DNS_HOSTNAME: no first IP to look up (%v); hostname not changed", err)
			return Decision{}
		}
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		names, err := resolver.LookupAddr(lctx, ip.String())
		cancel()
		if err != nil || len(names) == 0 {
			r.Note("DNS_HOSTNAME: no PTR record for %s (%v); hostname not changed", ip, err)
			return Decision{}
		}
		d = decision(r, "DNS_HOSTNAME", strings.TrimSuffix(names[0], "."))
		d.HostsIP = ip
		return d
	case id.EC2Hostname:
		ec2 := in.EC2
		if ec2 == nil {
			ec2 = EC2LocalHostname
		}
		name, err := ec2(ctx)
		if err == nil {
			d = decision(r, "EC2_HOSTNAME", strings.TrimSpace(name))
		}
		if d.IsZero() {
			ip, ierr := firstIP(ctx)
			if ierr != nil || !ip.Is4() {
				r.Note("EC2_HOSTNAME: no metadata name (%v) and no IPv4 address (%v); hostname not changed", err, ierr)
				return Decision{}
			}
			d = decision(r, "EC2_HOSTNAME", "ip-"+strings.ReplaceAll(ip.String(), ".", "-"))
		}
	default:
		return Decision{}
	}
	if d.IsZero() {
		return d
	}
	d.HostsIP = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	if ip, err := firstIP(ctx); err == nil {
		// This lookup only picks the address of the /etc/hosts line, so a
		// DNS server that does not answer costs at most 1 s of the boot.
		lctx, cancel := context.WithTimeout(ctx, time.Second)
		addrs, err := resolver.LookupHost(lctx, d.Name)
		cancel()
		if err == nil && len(addrs) == 1 && addrs[0] == ip.String() {
			d.HostsIP = ip
		}
	}
	return d
}

// Early is the decision that needs no network: SET_HOSTNAME's name, with
// no /etc/hosts address. Names from DNS or EC2 metadata are decided by
// Decide once the network is up.
func Early(r *engine.Recorder, id settings.Identity) Decision {
	if id.Hostname == "" {
		return Decision{}
	}
	return decision(r, "SET_HOSTNAME", id.Hostname)
}

func decision(r *engine.Recorder, from, name string) Decision {
	if msg := Invalid(name); msg != "" {
		r.Problem(from, "%q is not a valid hostname: %s; the hostname is not changed", name, msg)
		return Decision{}
	}
	short, domain, _ := strings.Cut(strings.TrimSuffix(name, "."), ".")
	return Decision{Name: strings.TrimSuffix(name, "."), Short: short, Domain: domain, From: from}
}

// Invalid says why name is not a valid hostname ("" when it is).
func Invalid(name string) string {
	switch {
	case name == "":
		return "empty"
	case len(name) > 253:
		return "longer than 253 characters"
	}
	for _, label := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		switch {
		case label == "":
			return "an empty label"
		case len(label) > 63:
			return "a label longer than 63 characters"
		case label[0] == '-' || label[len(label)-1] == '-':
			return "a label starts or ends with '-'"
		}
		for _, c := range label {
			if !(c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
				return fmt.Sprintf("the character %q", c)
			}
		}
	}
	return ""
}

// Set writes the decision: /etc/hostname, the kernel, and the services
// that would otherwise put their own name back.
func Set(ctx context.Context, r *engine.Recorder, in Input, d Decision) error {
	changed, err := in.Root.WriteFile("/etc/hostname", []byte(d.Short+"\n"), fsroot.WriteOptions{Mode: 0o644})
	if err != nil {
		return fmt.Errorf("hostname: %w", err)
	}
	if changed {
		r.Change("hostname: /etc/hostname is %s (from %s)", d.Short, d.From)
	}
	if in.Kernel != nil {
		cur, err := in.Kernel.Hostname()
		if err != nil {
			return fmt.Errorf("hostname: read the kernel's: %w", err)
		}
		if cur != d.Short {
			if err := in.Kernel.SetHostname(d.Short); err != nil {
				return fmt.Errorf("hostname: set the kernel's to %s: %w", d.Short, err)
			}
			r.Change("hostname: kernel hostname %s (was %s)", d.Short, cur)
			changed = true
		}
	}
	if changed && in.Root.IsReal() && !in.TellNobody {
		return notify(ctx, r, in, d.Short)
	}
	return nil
}

// notify tells systemd-hostnamed (which owns the static name) or
// NetworkManager (which may set one from DHCP) about the new name.
func notify(ctx context.Context, r *engine.Recorder, in Input, short string) error {
	look := in.LookPath
	if look == nil {
		look = runner.LookPath
	}
	var cmd runner.Cmd
	switch {
	// hostnamectl talks to systemd-hostnamed over D-Bus; an image without
	// dbus (a minimal one) has no hostnamed to tell.
	case in.Root.Exists("/run/systemd/system") && in.Root.Exists("/run/dbus/system_bus_socket") && found(look, "hostnamectl"):
		cmd = runner.Cmd{Name: "hostnamectl", Args: []string{"set-hostname", "--static", short}}
	case in.Root.Exists("/run/NetworkManager") && found(look, "nmcli"):
		cmd = runner.Cmd{Name: "nmcli", Args: []string{"general", "hostname", short}}
	default:
		return nil
	}
	if _, err := in.Run.Run(ctx, cmd); err != nil {
		// /etc/hostname and the kernel already have the name; a service
		// that could not be told is worth a problem, not a failed step.
		r.Problem("SET_HOSTNAME", "hostname set, but telling %s failed: %v", cmd.Name, err)
		return nil
	}
	r.Note("hostname: told %s", cmd.Name)
	return nil
}

func found(look func(string) (string, bool), name string) bool {
	_, ok := look(name)
	return ok
}

// RouteSourceIP is the address the kernel would use to reach 1.0.0.0,
// like `ip route get 1`: a UDP socket is connected (no packet is sent)
// and asked for its local address. Without a route, the first global
// unicast IPv4 of the interfaces.
func RouteSourceIP(context.Context) (netip.Addr, error) {
	if c, err := net.Dial("udp4", "1.0.0.0:9"); err == nil {
		defer c.Close()
		if a, ok := c.LocalAddr().(*net.UDPAddr); ok {
			if ip, ok := netip.AddrFromSlice(a.IP); ok && !ip.Unmap().IsUnspecified() {
				return ip.Unmap(), nil
			}
		}
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return netip.Addr{}, err
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap().Is4() && ip.IsGlobalUnicast() {
				return ip.Unmap(), nil
			}
		}
	}
	return netip.Addr{}, fmt.Errorf("no route and no global IPv4 address")
}

// EC2LocalHostname asks the EC2 metadata service (5 s, as one-context).
func EC2LocalHostname(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://169.254.169.254/latest/meta-data/local-hostname", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("metadata: %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1024))
	return strings.TrimSpace(string(body)), err
}
