package agent

import (
	"context"
	"errors"
	"net/http"
	"os"

	"one-contextd/engine"
	"one-contextd/fsroot"
	"one-contextd/guest/growfs"
	"one-contextd/guest/hostkeys"
	"one-contextd/guest/hostname"
	"one-contextd/guest/hosts"
	"one-contextd/guest/securetty"
	"one-contextd/guest/sshkeys"
	"one-contextd/guest/timezone"
	"one-contextd/guest/users"
	"one-contextd/network"
	"one-contextd/network/resolv"
	"one-contextd/onegate"
	"one-contextd/report"
	"one-contextd/roles"
	"one-contextd/scripts"
)

// Step names that later steps name in Needs.
const (
	stepMedium  = "medium"
	stepContext = "context"
	stepState   = "state"
)

func (s *session) commonSteps() []engine.Step {
	return []engine.Step{
		{Name: stepMedium, Run: s.readMedium},
		{Name: stepContext, Needs: []string{stepMedium}, Run: s.parseContext},
		{Name: stepState, Needs: []string{stepContext}, Run: s.compareState},
	}
}

func (s *session) localSteps() []engine.Step {
	return []engine.Step{
		// Network files are in place before the network manager starts.
		{Name: "network", Needs: []string{stepContext}, Run: s.network},
		// The name before the network manager starts: its DHCP client
		// sends it from the first request, and no one has to be told.
		{Name: "hostname-early", Needs: []string{stepContext}, Run: s.hostnameEarly},
		{Name: "timezone", Needs: []string{stepContext}, Run: s.timezone},
		// A disk that cannot grow is reported, but does not hold READY back.
		{Name: "grow-fs", Needs: []string{stepContext}, Optional: true, Run: s.growFS},
		{Name: "users", Needs: []string{stepContext}, Run: s.users},
		// Keys go in before sshd starts accepting logins (the local stage
		// runs before the network is up).
		{Name: "ssh-keys", Needs: []string{"users"}, Run: s.sshKeys},
		{Name: "securetty", Needs: []string{stepContext}, Run: s.securetty},
		// Host keys before sshd starts; they do not depend on the context.
		{Name: "ssh-host-keys", Run: s.sshHostKeys},
		{Name: "env-file", Needs: []string{stepContext}, Run: s.writeEnvFile},
	}
}

func (s *session) networkSteps() []engine.Step {
	return []engine.Step{
		// What the network manager made of the local stage's files.
		{Name: "network-verify", Needs: []string{stepContext}, Run: s.networkVerify},
		{Name: "hostname", Needs: []string{stepContext}, Run: s.hostname},
		{Name: "hosts", Needs: []string{"hostname"}, Run: s.hosts},
		{Name: "medium-files", Needs: []string{stepMedium}, Run: s.copyMedium},
		// Scripts run after network, hostname, users and keys are in
		// place; they need the medium's files as their working directory.
		{Name: "scripts", Needs: []string{stepContext, "medium-files"}, Run: s.scripts},
		// Role scripts come after the user's scripts, which may install
		// what a role configures.
		{Name: "roles", Needs: []string{stepContext, "medium-files"}, Run: s.roles},
		// READY (or what failed) goes to OneGate last, from the record of
		// every step before it.
		{Name: "report", Needs: []string{stepContext}, Run: s.report},
	}
}

func (s *session) roleSteps() []engine.Step {
	return []engine.Step{
		{Name: "medium-files", Needs: []string{stepMedium}, Run: s.copyMedium},
		{Name: "roles-reconfigure", Needs: []string{stepContext, "medium-files"}, Run: s.rolesReconfigure},
	}
}

func (s *session) finalSteps() []engine.Step {
	return []engine.Step{
		{Name: "save-state", Needs: []string{stepState}, Run: s.saveState},
	}
}

func (s *session) users(ctx context.Context, r *engine.Recorder) error {
	return users.Apply(ctx, r, users.Input{Users: s.ctx.Users, Root: s.opt.Root, Run: s.opt.Run})
}

func (s *session) scripts(ctx context.Context, r *engine.Recorder) error {
	// A user's script may power the VM off or reboot it without a sync.
	if err := s.opt.Root.Flush(); err != nil {
		r.Note("files not flushed to disk before the scripts: %v", err)
	}
	defer s.keepAlive()()
	return scripts.Apply(ctx, r, scripts.Input{
		Context: s.ctx, Root: s.opt.Root, Run: s.opt.Run, Scrubber: s.opt.Scrubber,
		MediumDir: s.opt.Root.HostPath(mediumDir()), RuntimeDir: RuntimeDir, ContextFile: EnvFile,
		Scopes: s.scopes(),
	})
}

func (s *session) networkInput() network.Input {
	return network.Input{
		Settings: s.ctx.Network, OneGate: s.ctx.OneGate, Root: s.opt.Root, Run: s.opt.Run, Netlink: s.opt.Netlink,
		NetcfgType: s.opt.Netcfg,
	}
}

func (s *session) network(ctx context.Context, r *engine.Recorder) error {
	in := s.networkInput()
	in.Domain = s.resolvDomain(r)
	return network.Apply(ctx, r, in)
}

// resolvDomain is the domain line the network step gives a resolv.conf it
// writes: the domain of the hostname. SET_HOSTNAME's is known now; the
// name DNS_HOSTNAME or EC2_HOSTNAME gives is known only at the network
// stage (a reverse lookup, the metadata service), after this step, and
// the hostname step puts its domain on the line then (syncDomain), as
// one-context's net-15-hostname does. Until it does, the line the last
// boot left is kept, so that every boot does not take it away and put it
// back.
func (s *session) resolvDomain(r *engine.Recorder) string {
	id := s.ctx.Identity
	if id.Hostname != "" || !(id.DNSHostname || id.EC2Hostname) {
		return id.Domain()
	}
	d, err := resolv.CurrentDomain(s.opt.Root)
	if err != nil {
		r.Note("dns: the domain line of the last boot is not kept: %v", err)
		return ""
	}
	return d
}

// syncDomain puts the domain of the chosen name on resolv.conf's domain
// line, when the agent wrote that file (see resolvDomain).
func syncDomain(r *engine.Recorder, root *fsroot.Root, d hostname.Decision) {
	res, err := resolv.SetDomain(root, d.Domain)
	for _, c := range res.Changes {
		r.Change("%s (from %s)", c, d.From)
	}
	for _, n := range res.Notes {
		r.Note("%s", n)
	}
	if err != nil {
		// The hostname itself does not depend on it.
		r.Problem(d.From, "the domain %q is not on resolv.conf's domain line: %v", d.Domain, err)
	}
}

func (s *session) networkVerify(ctx context.Context, r *engine.Recorder) error {
	if len(s.ctx.Network.NICs) == 0 {
		return engine.Skip("no NIC in the context")
	}
	return network.Verify(ctx, r, s.networkInput())
}

func (s *session) roles(ctx context.Context, r *engine.Recorder) error {
	defer s.keepAlive()()
	return roles.Apply(ctx, r, s.rolesInput(r))
}

func (s *session) rolesReconfigure(ctx context.Context, r *engine.Recorder) error {
	defer s.keepAlive()()
	return roles.Reconfigure(ctx, r, s.rolesInput(r))
}

func (s *session) rolesInput(r *engine.Recorder) roles.Input {
	in := roles.Input{
		Context: s.ctx, Root: s.opt.Root, Run: s.opt.Run, Scrubber: s.opt.Scrubber,
		MediumDir: s.opt.Root.HostPath(mediumDir()), RuntimeDir: RuntimeDir, ContextFile: EnvFile,
		Scopes: s.scopes(),
	}
	if c, err := s.gate(r); err == nil {
		in.Service = roles.OneGate{Client: c}
	}
	return in
}

// gate is the OneGate client of this run; an error when the context does
// not give one.
func (s *session) gate(r *engine.Recorder) (*onegate.Client, error) {
	g := s.ctx.OneGate
	if !g.Usable() {
		return nil, errors.New("no OneGate in the context (ONEGATE_ENDPOINT, VMID and a token are needed)")
	}
	return onegate.New(onegate.Config{Endpoint: g.Endpoint.String(), Token: g.Token, VMID: g.VMID, Log: r.Log, HTTP: s.onegateHTTP()})
}

// scopes: user scripts run in systemd scopes of their own on the running
// system when systemd runs it (not for another root, a container without
// systemd, or the initramfs of the e2e tests).
func (s *session) scopes() bool {
	if s.opt.Scopes != nil {
		return *s.opt.Scopes
	}
	return s.opt.Root.IsReal() && scripts.ScopeAvailable()
}

func (s *session) onegateHTTP() *http.Client {
	if s.gateHTTP == nil {
		s.gateHTTP = onegate.DefaultHTTPClient()
	}
	return s.gateHTTP
}

func (s *session) timezone(ctx context.Context, r *engine.Recorder) error {
	return timezone.Apply(ctx, r, timezone.Input{Timezone: s.ctx.System.Timezone, Root: s.opt.Root})
}

func (s *session) growFS(ctx context.Context, r *engine.Recorder) error {
	if len(s.ctx.System.Grow) == 0 {
		return engine.Skip("nothing to grow (GROW_ROOTFS=NO and no GROW_FS)")
	}
	if !s.opt.Root.IsReal() {
		// Growing acts on the disks of the running system; a root other
		// than / is an image or a test tree whose mounts are not its own.
		return engine.Skip("the root is not the running system's /; disks are not grown")
	}
	return growfs.Apply(ctx, r, growfs.Input{Mounts: s.ctx.System.Grow, Root: s.opt.Root, Run: s.opt.Run})
}

func (s *session) sshKeys(ctx context.Context, r *engine.Recorder) error {
	if len(s.ctx.Users.Keys) == 0 {
		return engine.Skip("no SSH_PUBLIC_KEY")
	}
	return sshkeys.Apply(ctx, r, sshkeys.Input{Users: s.ctx.Users, Root: s.opt.Root, Run: s.opt.Run})
}

func (s *session) hostnameInput() hostname.Input {
	in := hostname.Input{Identity: s.ctx.Identity, Root: s.opt.Root, Run: s.opt.Run,
		Resolver: s.opt.Resolver, FirstIP: s.opt.FirstIP, EC2: s.opt.EC2}
	if s.opt.Root.IsReal() {
		in.Kernel = hostname.UnixKernel{}
	}
	return in
}

func (s *session) hostname(ctx context.Context, r *engine.Recorder) error {
	in := s.hostnameInput()
	d := hostname.Decide(ctx, r, in)
	s.hostDecision = d
	if d.Name == "" {
		return engine.Skip("no SET_HOSTNAME, DNS_HOSTNAME or EC2_HOSTNAME")
	}
	syncDomain(r, s.opt.Root, d)
	return hostname.Set(ctx, r, in, d)
}

// hostnameEarly sets SET_HOSTNAME's name in the local stage; the network
// stage's hostname step finds it set (and decides names that need the
// network). At boot hostnamed and NetworkManager have not started and read
// the name when they do; a reconfigure of a running system tells them.
func (s *session) hostnameEarly(ctx context.Context, r *engine.Recorder) error {
	d := hostname.Early(r, s.ctx.Identity)
	if d.IsZero() {
		return engine.Skip("no SET_HOSTNAME (DNS_HOSTNAME and EC2_HOSTNAME need the network stage)")
	}
	in := s.hostnameInput()
	in.TellNobody = s.opt.Stage == StageLocal
	return hostname.Set(ctx, r, in, d)
}

func (s *session) hosts(ctx context.Context, r *engine.Recorder) error {
	return hosts.Apply(ctx, r, hosts.Input{Root: s.opt.Root, Name: s.hostDecision.Name, IP: s.hostDecision.HostsIP})
}

func (s *session) report(ctx context.Context, r *engine.Recorder) error {
	// READY tells OneFlow the VM is configured: what the run wrote is on
	// disk before it is said.
	if err := s.opt.Root.Flush(); err != nil {
		r.Note("files not flushed to disk before the report: %v", err)
	}
	defer s.keepAlive()()
	return report.Apply(ctx, r, report.Input{
		OneGate: s.ctx.OneGate, Record: s.rec, Root: s.opt.Root, Run: s.opt.Run,
		Env:     scripts.Environment(os.Environ(), s.vars),
		Version: s.opt.Version, Scrub: s.opt.Scrubber.Scrub, Clock: s.opt.Clock,
		HTTP: s.onegateHTTP(),
	})
}

func (s *session) securetty(ctx context.Context, r *engine.Recorder) error {
	if s.ctx.Users.SecurettyInvalid {
		return engine.Skip("SECURETTY is neither YES nor NO; /etc/pam.d/login is left as it is")
	}
	in := securetty.Input{Securetty: s.ctx.Users.Securetty, Root: s.opt.Root}
	// The default (YES in a VM, NO in a container) is about the running
	// system; a root other than / is taken for a VM.
	if in.Securetty == nil && s.opt.Root.IsReal() {
		c, err := securetty.PID1InContainer("/proc")
		if err != nil {
			r.Note("%v; taking the guest for a VM", err)
		}
		in.InContainer = c
	}
	return securetty.Apply(ctx, r, in)
}

func (s *session) sshHostKeys(ctx context.Context, r *engine.Recorder) error {
	return hostkeys.Apply(ctx, r, hostkeys.Input{Root: s.opt.Root, Run: s.opt.Run})
}
