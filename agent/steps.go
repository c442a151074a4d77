package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"

	"one-contextd/context/medium"
	"one-contextd/context/settings"
	"one-contextd/context/shvars"
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
	"one-contextd/onegate"
	"one-contextd/report"
	"one-contextd/roles"
	"one-contextd/scripts"
	"one-contextd/secret"
	"one-contextd/state"
)

// Step names that later steps name in Needs.
const (
	stepMedium  = "medium"
	stepContext = "context"
	stepState   = "state"
)

// EnvFile is the one-context-compatible environment file the onegate
// command and scripts read: the OneGate endpoint, VM id and token plus
// every context variable, in single-quoted form that is read back without
// a shell (one-context's double-quoted file ran $(...) on sourcing). It
// holds the token, so it is root-only and lives in tmpfs.
const EnvFile = RuntimeDir + "/one_env"

// referencedFileLimit bounds how much of one referenced file is read for
// the change digest; larger files are fingerprinted by name and size.
const referencedFileLimit = 16 << 20

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

// readMedium finds or opens the context source and reads context.sh.
func (s *session) readMedium(ctx context.Context, r *engine.Recorder) error {
	var m *medium.Medium
	var err error
	if s.opt.Source != "" {
		m, err = medium.Open(s.opt.Source)
	} else {
		m, err = medium.Find(ctx, s.opt.Find)
	}
	if err != nil {
		return err
	}
	s.medium = m
	r.Note("context medium %s (%s%s), %d files", m.Path(), m.Kind(), labelSuffix(m.Label()), len(m.Files()))
	raw, err := m.ReadFile(medium.ContextFile, shvars.MaxFileSize)
	if err != nil {
		return fmt.Errorf("read %s: %w", medium.ContextFile, err)
	}
	s.raw = raw
	return nil
}

func labelSuffix(l string) string {
	if l == "" {
		return ""
	}
	return ", label " + l
}

// parseContext parses context.sh and builds the typed settings. Bad lines
// and bad values are problems, not a failure: the rest is still applied.
func (s *session) parseContext(_ context.Context, r *engine.Recorder) error {
	vars, perrs := shvars.Parse(medium.ContextFile, s.raw)
	for _, e := range perrs {
		r.Problem(e.Name, "%s", e.Error())
	}
	var token []byte
	if s.medium.Has("token.txt") {
		t, err := s.medium.ReadFile("token.txt", 64<<10)
		if err != nil {
			r.Problem("", "token.txt: %v", err)
		} else {
			token = t
		}
	}
	c := settings.Build(vars, settings.Inputs{File: medium.ContextFile, TokenFile: token, MediumFiles: s.medium.Files()})
	s.vars, s.ctx = vars, c
	// Register every secret before anything else is logged, so the
	// scrubber stands in front of every writer from now on.
	for _, v := range vars.List() {
		if secret.IsName(v.Name) {
			s.opt.Scrubber.Add(secret.New(v.Value))
		}
	}
	s.opt.Scrubber.Add(c.OneGate.Token, c.Users.Password.Value)
	for _, p := range c.Problems {
		r.Problem(p.Var, "%s", p.String())
	}
	r.Note("%d variables, %d NICs, %d problems", vars.Len(), len(c.Network.NICs), len(perrs)+len(c.Problems))
	if vars.Len() == 0 && len(perrs) > 0 {
		return fmt.Errorf("%s: no usable variable (%d errors)", medium.ContextFile, len(perrs))
	}
	s.rec.VMID = c.OneGate.VMID
	return nil
}

// compareState classifies the context against the last applied one.
func (s *session) compareState(_ context.Context, r *engine.Recorder) error {
	files := map[string][]byte{medium.ContextFile: s.raw}
	refs := append([]string{"token.txt"}, s.ctx.Scripts.Init...)
	refs = append(refs, s.ctx.Scripts.Files...)
	for _, name := range refs {
		if !s.medium.Has(name) {
			continue
		}
		data, err := s.medium.ReadFile(name, referencedFileLimit)
		if err != nil {
			size, _ := s.medium.Size(name)
			data = []byte(fmt.Sprintf("size:%d", size))
		}
		files[name] = data
	}
	s.applied = state.Fingerprint(s.ctx.OneGate.VMID, files)
	last, err := state.LoadApplied(s.opt.Root)
	if err != nil {
		r.Problem("", "%v", err)
	}
	change, diff := state.Compare(last, s.applied)
	s.change = change
	s.rec.Context = string(change)
	s.rec.ContextDigest = s.applied.Digest
	ev := r.Log.Info().Str("event", "context-change").Str("context", string(change)).Str("digest", s.applied.Digest)
	switch change {
	case state.FirstBoot:
		ev.Msg("first boot of this VM: everything is applied")
	case state.Unchanged:
		ev.Msg("context unchanged since the last run: every step checks, nothing should change")
	case state.Changed:
		ev.Strs("files", diff).Msg("context changed since the last run: " + strings.Join(diff, ", "))
	}
	return nil
}

// writeEnvFile writes the environment file for onegate and scripts.
func (s *session) writeEnvFile(_ context.Context, r *engine.Recorder) error {
	g := s.ctx.OneGate
	var vars []shvars.Var
	if g.Endpoint != nil {
		vars = append(vars, shvars.Var{Name: "ONEGATE_ENDPOINT", Value: g.Endpoint.String()})
	}
	if g.VMID != "" {
		vars = append(vars, shvars.Var{Name: "VMID", Value: g.VMID})
	}
	if !g.Token.IsZero() {
		vars = append(vars, shvars.Var{Name: "TOKENTXT", Value: g.Token.Reveal()})
		if !s.vars.Has("ONEGATE_TOKEN") {
			vars = append(vars, shvars.Var{Name: "ONEGATE_TOKEN", Value: g.Token.Reveal()})
		}
	}
	vars = append(vars, s.vars.List()...)
	changed, err := s.opt.Root.WriteFile(EnvFile, shvars.Format(vars),
		fsroot.WriteOptions{Mode: 0o400, ForceMode: true, UID: 0, GID: 0, ForceOwner: true, DirMode: 0o700})
	if err != nil {
		return err
	}
	if changed {
		r.Change("wrote %s (%d variables)", EnvFile, len(vars))
	}
	return nil
}

// saveState remembers the applied context for the next run.
func (s *session) saveState(_ context.Context, r *engine.Recorder) error {
	last, _ := state.LoadApplied(s.opt.Root)
	if last != nil && last.Digest == s.applied.Digest && last.VMID == s.applied.VMID {
		return nil // keep the first time it was applied
	}
	s.applied.AppliedAt = s.opt.Clock()
	if err := state.SaveApplied(s.opt.Root, s.applied); err != nil {
		return err
	}
	r.Note("remembered context %s", s.applied.Digest)
	return nil
}

// mediumDir is where the medium's tree is copied for scripts (there is no
// mount to point them at).
func mediumDir() string { return path.Join(RuntimeDir, "medium") }

// copyMedium copies the medium's files for scripts, once per run.
func (s *session) copyMedium(_ context.Context, r *engine.Recorder) error {
	dir := mediumDir()
	// The copy holds token.txt: its parent stays root-only.
	if err := s.opt.Root.Fs().MkdirAll(RuntimeDir, 0o700); err != nil {
		return err
	}
	if err := s.opt.Root.Fs().Chmod(RuntimeDir, 0o700); err != nil {
		return err
	}
	if _, err := s.opt.Root.Fs().Stat(dir); err == nil {
		if err := s.opt.Root.Fs().RemoveAll(dir); err != nil {
			return fmt.Errorf("clear %s: %w", dir, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := s.medium.CopyTo(s.opt.Root.Fs(), dir); err != nil {
		return err
	}
	r.Note("medium files copied to %s", dir)
	return nil
}

func (s *session) users(ctx context.Context, r *engine.Recorder) error {
	return users.Apply(ctx, r, users.Input{Users: s.ctx.Users, Root: s.opt.Root, Run: s.opt.Run})
}

func (s *session) scripts(ctx context.Context, r *engine.Recorder) error {
	return scripts.Apply(ctx, r, scripts.Input{
		Context: s.ctx, Root: s.opt.Root, Run: s.opt.Run, Scrubber: s.opt.Scrubber,
		MediumDir: s.opt.Root.HostPath(mediumDir()), RuntimeDir: RuntimeDir, ContextFile: EnvFile,
	})
}

func (s *session) networkInput() network.Input {
	return network.Input{
		Settings: s.ctx.Network, OneGate: s.ctx.OneGate, Root: s.opt.Root, Run: s.opt.Run, Netlink: s.opt.Netlink,
		NetcfgType: s.opt.Netcfg, Changed: s.change != state.Unchanged, Domain: s.ctx.Identity.Domain(),
	}
}

func (s *session) network(ctx context.Context, r *engine.Recorder) error {
	return network.Apply(ctx, r, s.networkInput())
}

func (s *session) networkVerify(ctx context.Context, r *engine.Recorder) error {
	if len(s.ctx.Network.NICs) == 0 {
		return engine.Skip("no NIC in the context")
	}
	return network.Verify(ctx, r, s.networkInput())
}

func (s *session) roles(ctx context.Context, r *engine.Recorder) error {
	return roles.Apply(ctx, r, s.rolesInput(r))
}

func (s *session) rolesReconfigure(ctx context.Context, r *engine.Recorder) error {
	return roles.Reconfigure(ctx, r, s.rolesInput(r))
}

func (s *session) rolesInput(r *engine.Recorder) roles.Input {
	in := roles.Input{
		Context: s.ctx, Root: s.opt.Root, Run: s.opt.Run, Scrubber: s.opt.Scrubber,
		MediumDir: s.opt.Root.HostPath(mediumDir()), RuntimeDir: RuntimeDir, ContextFile: EnvFile,
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
	return onegate.New(onegate.Config{Endpoint: g.Endpoint.String(), Token: g.Token, VMID: g.VMID, Log: r.Log})
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
	in := hostname.Input{Identity: s.ctx.Identity, Root: s.opt.Root, Run: s.opt.Run}
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
	return hostname.Set(ctx, r, in, d)
}

func (s *session) hosts(ctx context.Context, r *engine.Recorder) error {
	return hosts.Apply(ctx, r, hosts.Input{Root: s.opt.Root, Name: s.hostDecision.Name, IP: s.hostDecision.HostsIP})
}

func (s *session) report(ctx context.Context, r *engine.Recorder) error {
	return report.Apply(ctx, r, report.Input{
		OneGate: s.ctx.OneGate, Record: s.rec, Root: s.opt.Root, Run: s.opt.Run,
		Env:     scripts.Environment(os.Environ(), s.vars),
		Version: s.opt.Version, Scrub: s.opt.Scrubber.Scrub, Clock: s.opt.Clock,
	})
}

func (s *session) securetty(ctx context.Context, r *engine.Recorder) error {
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
