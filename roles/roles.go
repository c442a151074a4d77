// Package roles runs the scripts that turn a VM into one role of a
// service: a PostgreSQL master or replica, a web backend, a load balancer.
//
// # Which role
//
// The role is ROLE from the context; without it, the VM's OneFlow role as
// the service document reports it (or ROLE_NAME from the context). Its
// scripts are the executable files of /etc/one-context.d/roles/<role>/
// under the root (the image bakes them in) and the files of
// roles/<role>/ on the medium (run whatever their mode; a medium file
// replaces the image's file of the same name). They run in name order, each
// with the per-script timeout; the first one that fails stops the role's
// later scripts, since they build on each other.
//
// # The service
//
// With a ServiceSource (OneGate) the runner resolves the service first: the
// VM's own OneFlow role, its index among that role's VMs (creation order)
// and whether it is the first, every VM of every role with its address and
// READY flag. It then waits, at most Input.WaitTimeout, for every parent
// role (the service's "parents", which OneGate leaves out, plus
// ROLE_PARENTS from the context) to have all its VMs READY. Without a
// source, or when the VM belongs to no service, it works in single mode:
// the scripts configure a standalone service from context variables.
//
// # What the scripts get
//
// The environment of a user script (every context variable, MOUNT_DIR,
// RUNTIME_DIR, CONTEXT_FILE, LANG=C; see package scripts), $1 = "apply" or
// "reconfigure", and:
//
//	ONECONTEXT_MODE            service | single
//	ONECONTEXT_ROLE            the role whose scripts run (folder name)
//	ONECONTEXT_SERVICE_ROLE    the VM's OneFlow role ("" in single mode)
//	ONECONTEXT_SERVICE_ID      ONECONTEXT_SERVICE_NAME
//	ONECONTEXT_VMID            the VM's id
//	ONECONTEXT_SELF_IP         the VM's address (service document, else ETH0's)
//	ONECONTEXT_ROLE_INDEX      0-based place among its role's VMs (0 in single mode)
//	ONECONTEXT_ROLE_FIRST      YES | NO
//	ONECONTEXT_ROLES           every role of the service, space-separated
//	ONECONTEXT_ROLE_<R>_IPS    first address of each VM of role R, space-separated,
//	                           creation order (R upper-cased, non-alphanumerics as _)
//	ONECONTEXT_ROLE_<R>_READY_IPS  the same for READY VMs only
//	ONECONTEXT_MASTER_IP       first address of the first VM of a role named "master"
//	ONECONTEXT_PARENTS         the parent roles waited for
//	ONECONTEXT_RECONFIGURE     YES when re-run for a membership change, else NO
//	ONECONTEXT_SERVICE_JSON    host path of the same facts as one JSON file (0600)
//
// # Reconfiguration
//
// Reconfigure compares the service's membership (role → sorted addresses)
// with the one last applied, kept in /var/lib/one-contextd/roles-membership.json.
// When it changed, the role's scripts run again, with ONECONTEXT_RECONFIGURE=YES,
// if the role's folder (in the image or on the medium) holds a file named
// "reconfigure"; that marker file is never run. The choice of a marker
// over per-script names keeps a role's scripts one ordered sequence that
// works the same at boot and on scale.
package roles

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/afero"

	"one-contextd/context/settings"
	"one-contextd/engine"
	"one-contextd/fsroot"
	"one-contextd/internal/lazyregexp"
	"one-contextd/internal/wait"
	"one-contextd/runner"
	"one-contextd/scripts"
	"one-contextd/secret"
)

// Paths under the root.
const (
	ImageDir       = "/etc/one-context.d/roles"
	MediumSubdir   = "roles"
	ServiceJSON    = "/var/lib/one-contextd/roles/service.json"
	MembershipFile = "/var/lib/one-contextd/roles-membership.json"
	ReconfigureTag = "reconfigure"
	tempParent     = "/var/lib/one-context/tmp"
)

// Defaults for Input's durations.
const (
	DefaultWaitTimeout  = 5 * time.Minute
	DefaultPollInterval = 5 * time.Second
)

// Input is what the role step needs.
type Input struct {
	Context *settings.Context
	Root    *fsroot.Root // on the host's disk: scripts are executed from it
	Run     runner.Runner
	// Service is the source of the service document; nil means single mode.
	Service ServiceSource
	// MediumDir is the host path of the medium's files (roles/<role>/ may
	// be there); "" when there is none.
	MediumDir string
	// RuntimeDir and ContextFile as in scripts.Input.
	RuntimeDir, ContextFile string
	// Timeout per script (default scripts.DefaultTimeout).
	Timeout time.Duration
	// WaitTimeout bounds the wait for parent roles (default
	// DefaultWaitTimeout); PollInterval is the time between two looks at
	// the service (default DefaultPollInterval).
	WaitTimeout, PollInterval time.Duration
	// Sleep waits between polls; nil uses a timer that honours ctx.
	Sleep func(context.Context, time.Duration) error
	// BaseEnv, Scrubber and Scopes as in scripts.Input.
	BaseEnv  []string
	Scrubber *secret.Scrubber
	Scopes   bool
}

// View is everything the runner resolved, as the scripts see it; it is
// also the JSON file.
type View struct {
	Mode        string     `json:"mode"` // "service" or "single"
	Role        string     `json:"role"`
	ServiceRole string     `json:"service_role,omitempty"`
	VMID        string     `json:"vmid,omitempty"`
	SelfIP      string     `json:"self_ip,omitempty"`
	Index       int        `json:"index"`
	First       bool       `json:"first"`
	Parents     []string   `json:"parents,omitempty"`
	Reconfigure bool       `json:"reconfigure"`
	Service     *Service   `json:"service,omitempty"`
	Membership  Membership `json:"membership,omitempty"`
}

var roleNameRe = lazyregexp.New(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)

// MaxApplyRetries bounds how often the roles timer applies again, in one
// boot, a role whose apply failed (its service unreadable, a parent not
// READY in time, a script failing): role scripts run at every boot, so
// they are written to run again, but one that keeps failing is left for
// the next boot or context change.
const MaxApplyRetries = 5

// Apply resolves the role and the service and runs the role's scripts. A
// failure is remembered for this boot, and Reconfigure (the roles timer)
// applies the role again.
func Apply(ctx context.Context, r *engine.Recorder, in Input) error {
	if in.Context == nil {
		return errors.New("roles: no context")
	}
	err := in.apply(ctx, r, true)
	in.remember(r, err, 0)
	return err
}

func (in Input) apply(ctx context.Context, r *engine.Recorder, patient bool) error {
	v, err := in.resolve(ctx, r, patient)
	if err != nil {
		return err
	}
	if v == nil {
		return engine.Skip("no ROLE and no service role")
	}
	set, err := in.findScripts(r, v.Role)
	if err != nil {
		return err
	}
	if len(set.scripts) == 0 {
		return engine.Skip(fmt.Sprintf("role %s has no scripts", v.Role))
	}
	if v.Mode == "service" {
		if err := in.waitParents(ctx, r, v); err != nil {
			return err
		}
	}
	if err := in.runRole(ctx, r, v, set, "apply"); err != nil {
		return err
	}
	if v.Mode == "service" {
		return in.saveMembership(r, v)
	}
	return nil
}

// Reconfigure re-runs the role's scripts when the service's membership
// differs from the last applied one and the role asks for it.
func Reconfigure(ctx context.Context, r *engine.Recorder, in Input) error {
	if in.Context == nil {
		return errors.New("roles: no context")
	}
	if p, ok := in.pending(); ok {
		if p.Retries >= MaxApplyRetries {
			return engine.Skip(fmt.Sprintf("role %s failed to apply at boot and in %d retries; tried again at the next boot or context change", p.Role, p.Retries))
		}
		r.Note("role %s failed to apply at boot; applying it again (retry %d of %d)", p.Role, p.Retries+1, MaxApplyRetries)
		err := in.apply(ctx, r, false)
		in.remember(r, err, p.Retries+1)
		return err
	}
	if in.Service == nil {
		return engine.Skip("single mode: no service to follow")
	}
	v, err := in.resolve(ctx, r, false)
	if err != nil {
		return err
	}
	if v == nil {
		return engine.Skip("no ROLE and no service role")
	}
	if v.Mode != "service" {
		return engine.Skip("the VM is in no service")
	}
	last, err := in.loadMembership()
	if err != nil {
		r.Problem("", "%v; treating the membership as changed", err)
	}
	if last != nil && last.Equal(v.Membership) {
		return engine.Skip("service membership unchanged")
	}
	r.Note("service membership changed: %s", v.Membership.Diff(last))
	set, err := in.findScripts(r, v.Role)
	if err != nil {
		return err
	}
	if !set.reconfigure || len(set.scripts) == 0 {
		r.Note("role %s does not ask for reconfiguration (no %q file in its folder)", v.Role, ReconfigureTag)
		return in.saveMembership(r, v)
	}
	v.Reconfigure = true
	if err := in.runRole(ctx, r, v, set, "reconfigure"); err != nil {
		return err // the membership is not saved: the next look tries again
	}
	return in.saveMembership(r, v)
}

// resolve works out the role and, in service mode, the VM's place in the
// service. It returns nil when there is no role at all. patient (the boot
// run) waits out a service that cannot be read yet; the timer's run looks
// again a minute later anyway.
func (in Input) resolve(ctx context.Context, r *engine.Recorder, patient bool) (*View, error) {
	role := in.Context.Role
	v := &View{Mode: "single", Role: role.Name, ServiceRole: role.ServiceRole, VMID: in.Context.OneGate.VMID, First: true}
	v.Parents = slices.Clone(role.Parents)
	if in.Service != nil {
		svc, err := in.service(ctx, r, patient)
		switch {
		case errors.Is(err, ErrNoService):
			r.Note("not in a OneFlow service (%v): single mode", err)
		case err != nil:
			return nil, fmt.Errorf("roles: read the service: %w", err)
		default:
			if err := v.place(svc); err != nil {
				r.Problem("ROLE_NAME", "%v", err)
				return nil, fmt.Errorf("roles: %w", err)
			}
		}
	}
	if v.Role == "" {
		v.Role = strings.ToLower(v.ServiceRole)
	}
	if v.Role == "" {
		return nil, nil
	}
	if !roleNameRe.MatchString(v.Role) {
		r.Problem("ROLE", "%q is not a role name (letters, digits, _ . -)", v.Role)
		return nil, fmt.Errorf("roles: %q is not a role name", v.Role)
	}
	if v.SelfIP == "" {
		for _, n := range in.Context.Network.NICs {
			if n.IPv4.Address.IsValid() {
				v.SelfIP = n.IPv4.Address.Addr().String()
				break
			}
		}
	}
	return v, nil
}

// place fills the service part of v.
func (v *View) place(svc *Service) error {
	v.Mode, v.Service, v.Membership = "service", svc, MembershipOf(svc)
	own, idx := svc.find(v.VMID)
	switch {
	case own != nil:
		if v.ServiceRole != "" && v.ServiceRole != own.Name {
			return fmt.Errorf("ROLE_NAME is %q but service %s has VM %s in role %q", v.ServiceRole, svc.ID, v.VMID, own.Name)
		}
		v.ServiceRole = own.Name
		v.Index, v.First = idx, idx == 0
		v.SelfIP = own.Nodes[idx].IP()
	case v.ServiceRole != "" && svc.Role(v.ServiceRole) == nil:
		return fmt.Errorf("unknown role %q: service %s has roles %s", v.ServiceRole, svc.ID, strings.Join(roleNames(svc), ", "))
	default:
		return fmt.Errorf("VM %s is a node of no role of service %s (roles %s)", v.VMID, svc.ID, strings.Join(roleNames(svc), ", "))
	}
	for _, p := range own.Parents {
		if !slices.Contains(v.Parents, p) {
			v.Parents = append(v.Parents, p)
		}
	}
	return nil
}

func roleNames(svc *Service) []string {
	var out []string
	for _, r := range svc.Roles {
		out = append(out, r.Name)
	}
	return out
}

// waiting is how the role runner waits for the service: at most
// WaitTimeout in all, a look every PollInterval, through Sleep.
func (in Input) waiting() (wait, poll time.Duration, sleep func(context.Context, time.Duration) error) {
	wait, poll, sleep = in.WaitTimeout, in.PollInterval, in.Sleep
	if wait <= 0 {
		wait = DefaultWaitTimeout
	}
	if poll <= 0 {
		poll = DefaultPollInterval
	}
	if sleep == nil {
		sleep = sleepCtx
	}
	return wait, poll, sleep
}

// service reads the VM's service. When patient, an answer that can change
// (OneGate's 404 while oneflow-server is down, no answer, a 5xx) is asked
// again every PollInterval for at most WaitTimeout: giving up at boot
// would leave the role unapplied and READY unsent for good.
func (in Input) service(ctx context.Context, r *engine.Recorder, patient bool) (*Service, error) {
	wait, poll, sleep := in.waiting()
	start := time.Now()
	for try := 1; ; try++ {
		svc, err := in.Service.Service(ctx)
		if err == nil || !patient || !passing(err, in.Context.Role.Name != "" || in.Context.Role.ServiceRole != "") {
			return svc, err
		}
		if time.Since(start) >= wait {
			return nil, fmt.Errorf("%w (still after %s)", err, wait)
		}
		r.Log.Warn().Err(err).Int("try", try).Msg("the service cannot be read yet; asking again")
		if err := sleep(ctx, min(poll, wait-time.Since(start)+time.Millisecond)); err != nil {
			return nil, fmt.Errorf("roles: waiting for the service: %w", err)
		}
	}
}

// waitParents polls the service until every parent role is READY or the
// wait is over.
func (in Input) waitParents(ctx context.Context, r *engine.Recorder, v *View) error {
	if len(v.Parents) == 0 {
		return nil
	}
	wait, poll, sleep := in.waiting()
	start := time.Now()
	for {
		var waiting []string
		for _, p := range v.Parents {
			role := v.Service.Role(p)
			if role == nil {
				r.Problem("ROLE_PARENTS", "parent role %q is not in service %s", p, v.Service.ID)
				return fmt.Errorf("roles: parent role %q is not in service %s (roles %s)", p, v.Service.ID, strings.Join(roleNames(v.Service), ", "))
			}
			if ok, why := role.ready(); !ok {
				waiting = append(waiting, why)
			}
		}
		if len(waiting) == 0 {
			r.Note("parent roles %s are READY after %s", strings.Join(v.Parents, ", "), time.Since(start).Round(time.Millisecond))
			return nil
		}
		if time.Since(start) >= wait {
			return fmt.Errorf("roles: parent roles not READY after %s: %s", wait, strings.Join(waiting, "; "))
		}
		r.Log.Info().Str("event", "wait-parents").Strs("waiting", waiting).Msg("waiting for parent roles")
		if err := sleep(ctx, min(poll, wait-time.Since(start)+time.Millisecond)); err != nil {
			return fmt.Errorf("roles: waiting for parent roles: %w", err)
		}
		svc, err := in.Service.Service(ctx)
		if err != nil {
			r.Log.Warn().Err(err).Msg("read the service while waiting for parents")
			continue
		}
		if err := v.place(svc); err != nil {
			return fmt.Errorf("roles: %w", err)
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error { return wait.Sleep(ctx, d) }

// roleScript is one script of a role.
type roleScript struct {
	name     string // file name
	host     string // host path of an image script (run in place)
	data     []byte // content of a medium script (copied to a temp dir)
	fromDisk bool
}

type scriptSet struct {
	scripts     []roleScript // by name
	reconfigure bool
	imageDir    string // host path, "" if absent
}

// findScripts lists the role's scripts from the image and the medium.
func (in Input) findScripts(r *engine.Recorder, role string) (scriptSet, error) {
	var set scriptSet
	byName := map[string]roleScript{}
	imageDir := path.Join(ImageDir, role)
	imageFound := false
	if entries, err := afero.ReadDir(in.Root.Fs(), imageDir); err == nil {
		imageFound = true
		set.imageDir = in.Root.HostPath(imageDir)
		for _, e := range entries {
			switch {
			case e.Name() == ReconfigureTag:
				set.reconfigure = true
			case skipName(e.Name()) || !e.Mode().IsRegular():
			case e.Mode().Perm()&0o111 == 0:
				r.Log.Debug().Str("file", path.Join(imageDir, e.Name())).Msg("not executable; not a role script")
			default:
				byName[e.Name()] = roleScript{name: e.Name(), host: in.Root.HostPath(path.Join(imageDir, e.Name())), fromDisk: true}
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return set, fmt.Errorf("roles: %s: %w", imageDir, err)
	}
	mediumFound := false
	if in.MediumDir != "" {
		dir := filepath.Join(in.MediumDir, MediumSubdir, role)
		if entries, err := os.ReadDir(dir); err == nil {
			mediumFound = true
			for _, e := range entries {
				if e.Name() == ReconfigureTag {
					set.reconfigure = true
					continue
				}
				if skipName(e.Name()) || !e.Type().IsRegular() {
					continue // symlinks and folders are not followed
				}
				data, err := os.ReadFile(filepath.Join(dir, e.Name()))
				if err != nil {
					return set, fmt.Errorf("roles: medium %s/%s/%s: %w", MediumSubdir, role, e.Name(), err)
				}
				if _, dup := byName[e.Name()]; dup {
					r.Note("role %s: %s from the medium replaces the image's", role, e.Name())
				}
				byName[e.Name()] = roleScript{name: e.Name(), data: data}
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			return set, fmt.Errorf("roles: medium %s/%s: %w", MediumSubdir, role, err)
		}
	}
	if !imageFound && !mediumFound {
		r.Problem("ROLE", "role %q has no folder: neither %s nor %s/%s/ on the medium", role, imageDir, MediumSubdir, role)
		return set, fmt.Errorf("roles: role %q has no scripts folder (%s or %s/%s on the medium)", role, imageDir, MediumSubdir, role)
	}
	for _, s := range byName {
		set.scripts = append(set.scripts, s)
	}
	slices.SortFunc(set.scripts, func(a, b roleScript) int { return strings.Compare(a.name, b.name) })
	return set, nil
}

// skipName leaves out what is clearly not a script: hidden files, editor
// and package-manager leftovers, documentation.
func skipName(n string) bool {
	return strings.HasPrefix(n, ".") || strings.HasSuffix(n, "~") || strings.Contains(n, ".dpkg-") ||
		strings.HasPrefix(strings.ToUpper(n), "README") || strings.HasSuffix(n, ".md")
}

// runRole writes the JSON file and runs the scripts in order.
func (in Input) runRole(ctx context.Context, r *engine.Recorder, v *View, set scriptSet, mode string) error {
	jsonHost, err := in.writeView(r, v)
	if err != nil {
		return err
	}
	env := in.environment(v, set, jsonHost)
	scrub := scripts.SecretScrubber(in.Scrubber, in.Context.Vars())
	timeout := in.Timeout
	if timeout <= 0 {
		timeout = scripts.DefaultTimeout
	}
	var tmp string
	defer func() {
		if tmp != "" {
			if err := in.Root.Fs().RemoveAll(tmp); err != nil {
				r.Log.Warn().Err(err).Msg("remove role script directory")
			}
		}
	}()
	dir := in.MediumDir
	if dir == "" {
		dir = in.Root.HostPath("/")
	}
	r.Note("role %s (%s mode, %s): %d scripts", v.Role, v.Mode, mode, len(set.scripts))
	for _, s := range set.scripts {
		name := v.Role + "/" + s.name
		host := s.host
		if !s.fromDisk {
			if tmp == "" {
				if tmp, err = makeTempDir(in.Root); err != nil {
					return fmt.Errorf("roles: %w", err)
				}
			}
			p := path.Join(tmp, s.name)
			if _, err := in.Root.WriteFile(p, s.data, fsroot.WriteOptions{Mode: 0o700, DirMode: 0o700}); err != nil {
				return fmt.Errorf("roles: %s: %w", name, err)
			}
			host = in.Root.HostPath(p)
		}
		job := scripts.Job{Name: name, Path: host, Args: []string{mode}, Dir: dir, Env: env, Timeout: timeout, Scrub: scrub, Scope: in.Scopes}
		r.Log.Info().Str("event", "script-start").Str("script", name).Msg("running " + name)
		out := job.Execute(ctx, in.Run, r.Log)
		r.Note("%s: %s in %s", name, out.Summary(), out.Duration.Round(time.Millisecond))
		if out.Err != nil {
			r.Log.Error().Str("event", "script-failed").Str("script", name).Int("exit", out.ExitCode).Msg(scrub.Scrub(out.Err.Error()))
			return fmt.Errorf("roles: %s (%s); the role's later scripts were not run", name, out.Summary())
		}
	}
	return nil
}

// writeView writes the JSON file (0600) and returns its host path.
func (in Input) writeView(r *engine.Recorder, v *View) (string, error) {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return "", fmt.Errorf("roles: encode %s: %w", ServiceJSON, err)
	}
	changed, err := in.Root.WriteFile(ServiceJSON, append(data, '\n'), fsroot.WriteOptions{Mode: 0o600, ForceMode: true, DirMode: 0o700})
	if err != nil {
		return "", fmt.Errorf("roles: %w", err)
	}
	if changed {
		r.Change("%s: role %s, %s mode", ServiceJSON, v.Role, v.Mode)
	}
	return in.Root.HostPath(ServiceJSON), nil
}

// environment is the scripts' environment: a user script's plus the role's.
func (in Input) environment(v *View, set scriptSet, jsonHost string) []string {
	base := in.BaseEnv
	if base == nil {
		base = os.Environ()
	}
	rt := in.RuntimeDir
	if rt == "" {
		rt = scripts.DefaultRuntimeDir
	}
	cf := in.ContextFile
	if cf == "" {
		cf = path.Join(rt, "context.sh.network")
	}
	extra := []string{
		"MOUNT_DIR=" + in.MediumDir, "RUNTIME_DIR=" + rt, "CONTEXT_FILE=" + cf,
		"ONECONTEXT_MODE=" + v.Mode,
		"ONECONTEXT_ROLE=" + v.Role,
		"ONECONTEXT_SERVICE_ROLE=" + v.ServiceRole,
		"ONECONTEXT_VMID=" + v.VMID,
		"ONECONTEXT_SELF_IP=" + v.SelfIP,
		fmt.Sprintf("ONECONTEXT_ROLE_INDEX=%d", v.Index),
		"ONECONTEXT_ROLE_FIRST=" + yesNo(v.First),
		"ONECONTEXT_PARENTS=" + strings.Join(v.Parents, " "),
		"ONECONTEXT_RECONFIGURE=" + yesNo(v.Reconfigure),
		"ONECONTEXT_SERVICE_JSON=" + jsonHost,
		"ONECONTEXT_ROLE_DIR=" + set.imageDir,
	}
	if s := v.Service; s != nil {
		extra = append(extra, "ONECONTEXT_SERVICE_ID="+s.ID, "ONECONTEXT_SERVICE_NAME="+s.Name,
			"ONECONTEXT_ROLES="+strings.Join(roleNames(s), " "))
		for i := range s.Roles {
			role := &s.Roles[i]
			key := EnvName(role.Name)
			extra = append(extra,
				"ONECONTEXT_ROLE_"+key+"_IPS="+strings.Join(role.IPs(), " "),
				"ONECONTEXT_ROLE_"+key+"_READY_IPS="+strings.Join(role.ReadyIPs(), " "))
		}
		if m := s.Role("master"); m != nil && len(m.Nodes) > 0 {
			extra = append(extra, "ONECONTEXT_MASTER_IP="+m.Nodes[0].IP())
		}
	}
	return scripts.Environment(base, in.Context.Vars(), extra...)
}

// EnvName is a role name as it appears in variable names: upper-cased,
// anything but letters and digits turned into _.
func EnvName(role string) string {
	b := []byte(strings.ToUpper(role))
	for i, c := range b {
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			b[i] = '_'
		}
	}
	return string(b)
}

func yesNo(b bool) string {
	if b {
		return "YES"
	}
	return "NO"
}

type membershipState struct {
	Role       string     `json:"role"`
	Membership Membership `json:"membership"`
}

func (in Input) loadMembership() (Membership, error) {
	data, err := in.Root.ReadFile(MembershipFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", MembershipFile, err)
	}
	var st membershipState
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", MembershipFile, err)
	}
	return st.Membership, nil
}

func (in Input) saveMembership(r *engine.Recorder, v *View) error {
	data, err := json.MarshalIndent(membershipState{Role: v.Role, Membership: v.Membership}, "", "  ")
	if err != nil {
		return fmt.Errorf("roles: encode membership: %w", err)
	}
	changed, err := in.Root.WriteFile(MembershipFile, append(data, '\n'), fsroot.WriteOptions{Mode: 0o600})
	if err != nil {
		return fmt.Errorf("roles: save membership: %w", err)
	}
	if changed {
		r.Change("%s: membership %s", MembershipFile, v.Membership.Diff(nil))
	}
	return nil
}

// pendingApply is the runtime note of a role whose last apply failed.
type pendingApply struct {
	Role    string `json:"role"`
	Retries int    `json:"retries"`
}

func (in Input) pendingPath() string {
	rt := in.RuntimeDir
	if rt == "" {
		rt = scripts.DefaultRuntimeDir
	}
	return path.Join(rt, "role-pending.json")
}

func (in Input) pending() (pendingApply, bool) {
	var p pendingApply
	data, err := in.Root.ReadFile(in.pendingPath())
	if err != nil || json.Unmarshal(data, &p) != nil {
		return p, false
	}
	return p, true
}

// remember notes a failed apply for the roles timer (retries: the apply
// was the boot's, 0, or the timer's nth), and forgets it once an apply
// succeeded or had nothing to do. The note lives in the runtime folder,
// so a reboot, which applies the role anyway, starts afresh.
func (in Input) remember(r *engine.Recorder, err error, retries int) {
	if err == nil || errors.Is(err, engine.ErrSkip) {
		if _, rmErr := in.Root.Remove(in.pendingPath()); rmErr != nil {
			r.Note("forget the failed apply: %v", rmErr)
		}
		return
	}
	role := in.Context.Role.Name
	if role == "" {
		role = strings.ToLower(in.Context.Role.ServiceRole)
	}
	if role == "" {
		role = "(the service's)"
	}
	data, _ := json.Marshal(pendingApply{Role: role, Retries: retries})
	if _, werr := in.Root.WriteFile(in.pendingPath(), append(data, '\n'), fsroot.WriteOptions{Mode: 0o600}); werr != nil {
		r.Note("the roles timer will not retry: %v", werr)
	}
}

// makeTempDir creates a private directory for the medium's role scripts.
func makeTempDir(root *fsroot.Root) (string, error) {
	if err := root.Fs().MkdirAll(tempParent, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", tempParent, err)
	}
	dir, err := afero.TempDir(root.Fs(), tempParent, "one-context-role.")
	if err != nil {
		return "", fmt.Errorf("create a directory in %s: %w", tempParent, err)
	}
	if err := root.Fs().Chmod(dir, 0o700); err != nil {
		return "", fmt.Errorf("chmod %s: %w", dir, err)
	}
	return dir, nil
}
