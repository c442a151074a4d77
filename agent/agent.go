// Package agent is the boot job: it builds the ordered list of steps for a
// stage from the typed context and the injected seams, runs them through
// the engine, and saves the run record. cmd/one-contextd only parses flags
// and calls Run.
package agent

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"time"

	"github.com/rs/zerolog"

	"one-contextd/context/medium"
	"one-contextd/context/settings"
	"one-contextd/context/shvars"
	"one-contextd/engine"
	"one-contextd/fsroot"
	"one-contextd/guest/hostname"
	"one-contextd/network/kernel"
	"one-contextd/runner"
	"one-contextd/secret"
	"one-contextd/state"
)

// Stages of the boot job.
const (
	StageLocal   = "local"   // before the network manager starts
	StageNetwork = "network" // after the network is online
	StageAll     = "all"
	// StageRoles re-reads the context and re-runs the role scripts that
	// asked for it when the service's membership changed (the timer).
	StageRoles = "roles"
)

// RuntimeDir is where the agent keeps what lives for one boot (tmpfs).
const RuntimeDir = "/run/one-context"

// Options are the seams and flags of one run.
type Options struct {
	Root     *fsroot.Root
	Source   string // --context: ISO image, block device or directory; "" finds the medium
	Find     medium.FindOptions
	Stage    string
	Netcfg   string // --netcfg override of NETCFG_TYPE
	Log      zerolog.Logger
	Scrubber *secret.Scrubber
	Run      runner.Runner
	Version  string
	Clock    func() time.Time
	// LockWait bounds the wait for another run's lock (0: 120 s; < 0: no lock).
	LockWait time.Duration
	// Netlink is the kernel the network step configures; nil: the current
	// network namespace.
	Netlink kernel.Netlink
	// ReadHost reads files of the running system that are not under the
	// root (boot_id); nil: os.ReadFile.
	ReadHost func(string) ([]byte, error)
	// Notify sends a state line to the service manager (sd_notify); nil
	// sends nothing.
	Notify func(state string)
	// Scopes overrides whether user scripts run in systemd scopes of their
	// own; nil: when the root is / and systemd runs the system.
	Scopes *bool
	// Resolver, FirstIP and EC2 are what the hostname step asks for
	// DNS_HOSTNAME and EC2_HOSTNAME; nil: DNS, the route to 1.0.0.0 and
	// the EC2 metadata service.
	Resolver hostname.Resolver
	FirstIP  func(ctx context.Context) (netip.Addr, error)
	EC2      func(ctx context.Context) (string, error)
}

// keepAliveEvery and keepAliveFor: while user code runs (scripts, role
// scripts and their parent wait, the readiness check), the unit's start
// timeout is pushed on (EXTEND_TIMEOUT_USEC) every keepAliveEvery by
// keepAliveFor. Each of those has bounds of its own (a script's timeout,
// the parent wait, RETRY_COUNT); the unit's TimeoutStartSec is then the
// bound of everything else, and slow but working scripts (a package
// install) are not killed half-way by it.
const (
	keepAliveEvery = 30 * time.Second
	keepAliveFor   = 2 * time.Minute
)

// keepAlive extends the unit's start timeout until the returned function
// is called.
func (s *session) keepAlive() (stop func()) {
	notify := s.opt.Notify
	if notify == nil {
		return func() {}
	}
	extend := func() { notify(fmt.Sprintf("EXTEND_TIMEOUT_USEC=%d", keepAliveFor.Microseconds())) }
	extend()
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(keepAliveEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				extend()
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// session is what the steps of one run share: each step fills in what
// later steps read.
type session struct {
	opt     Options
	rec     *engine.Record
	medium  *medium.Medium
	raw     []byte
	token   []byte // token.txt as read from the medium, nil if absent
	vars    *shvars.Vars
	ctx     *settings.Context
	applied state.Applied
	change  state.Change

	hostDecision hostname.Decision
	// gateHTTP is the one HTTP client of the run's OneGate requests, so
	// the roles lookup and the report share a kept-alive connection.
	gateHTTP *http.Client
}

// Run runs the stage and returns its record, which is also saved.
func Run(ctx context.Context, opt Options) *engine.Record {
	entryCPU := cpuUsed()
	if opt.Clock == nil {
		opt.Clock = time.Now
	}
	if opt.ReadHost == nil {
		opt.ReadHost = os.ReadFile
	}
	if opt.Run == nil {
		opt.Run = runner.Exec{}
	}
	if opt.Stage == "" {
		opt.Stage = StageAll
	}
	s := &session{opt: opt}
	s.rec = s.startRecord()
	if opt.LockWait >= 0 {
		wait := opt.LockWait
		if wait == 0 {
			wait = lockWait
		}
		unlock, err := acquireLock(ctx, opt.Root.HostPath(LockFile), wait)
		if err != nil {
			s.rec.Steps = append(s.rec.Steps, engine.StepRecord{Name: "lock", Status: engine.Failed,
				Start: s.rec.Started, End: opt.Clock(), Error: err.Error()})
			s.rec.Finished = opt.Clock()
			opt.Log.Error().Str("event", "step-failed").Str("step", "lock").Msg(err.Error())
			return s.rec
		}
		defer unlock()
	}
	defer func() {
		if s.medium != nil {
			_ = s.medium.Close()
		}
	}()
	eng := &engine.Engine{Log: opt.Log, Clock: opt.Clock, Scrub: opt.Scrubber.Scrub, CPU: cpuUsed}
	opt.Log.Info().Str("event", "run-start").Str("stage", opt.Stage).Str("root", opt.Root.Dir()).
		Str("version", opt.Version).Msg("one-contextd " + opt.Stage + " stage")

	startCPU := cpuUsed()
	eng.Run(ctx, s.rec, s.commonSteps())
	if opt.Stage == StageLocal || opt.Stage == StageAll {
		eng.Run(ctx, s.rec, s.localSteps())
	}
	if opt.Stage == StageNetwork || opt.Stage == StageAll {
		eng.Run(ctx, s.rec, s.networkSteps())
	}
	if opt.Stage == StageRoles {
		eng.Run(ctx, s.rec, s.roleSteps())
	}
	eng.Run(ctx, s.rec, s.finalSteps())

	s.rec.Finished = opt.Clock()
	if c := measureCost(opt.ReadHost); c != nil {
		c.EntryCPUMS = float64(entryCPU.Microseconds()) / 1000
		c.StartCPUMS = float64(startCPU.Microseconds()) / 1000
		if s.rec.Cost == nil {
			s.rec.Cost = map[string]*engine.Cost{}
		}
		s.rec.Cost[opt.Stage] = c
	}
	recFile := state.RecordFile
	if opt.Stage == StageRoles {
		recFile = state.RolesRecordFile
	}
	if err := state.SaveRecordAs(opt.Root, recFile, s.rec); err != nil {
		opt.Log.Error().Str("event", "step-failed").Err(err).Msg("run record not saved")
	}
	if err := opt.Root.Flush(); err != nil {
		opt.Log.Error().Str("event", "step-failed").Err(err).Msg("files written, but not flushed to disk")
	}
	s.logSummary()
	return s.rec
}

// startRecord begins a new record, or continues the local stage's record
// of this same boot when this is the network stage, so `status` shows the
// whole boot.
func (s *session) startRecord() *engine.Record {
	boot := state.BootID(s.opt.ReadHost)
	rec := &engine.Record{Agent: "one-contextd", Version: s.opt.Version, Stage: s.opt.Stage,
		Root: s.opt.Root.Dir(), BootID: boot, Started: s.opt.Clock()}
	if s.opt.Stage != StageNetwork || boot == "" {
		return rec
	}
	last, err := state.LoadRecord(s.opt.Root)
	if err != nil || last == nil || last.BootID != boot || last.Stage != StageLocal {
		return rec
	}
	// Keep the local stage's steps; the common steps run again (the medium
	// is read anew) under names that say which stage ran them.
	for i := range last.Steps {
		last.Steps[i].Name = "local/" + last.Steps[i].Name
	}
	rec.Steps = last.Steps
	rec.Started = last.Started
	rec.Cost = last.Cost
	rec.Stage = StageLocal + "+" + StageNetwork
	return rec
}

func (s *session) logSummary() {
	failed := s.rec.Failed()
	ev := s.opt.Log.Info()
	if len(failed) > 0 {
		ev = s.opt.Log.Error()
	}
	names := make([]string, 0, len(failed))
	for _, f := range failed {
		names = append(names, f.Name)
	}
	ev.Str("event", "run-done").Str("context", s.rec.Context).Int("changes", s.rec.Changes()).
		Strs("failed", names).Float64("ms", float64(s.rec.Finished.Sub(s.rec.Started).Microseconds())/1000).
		Msg(fmt.Sprintf("%s stage done: context %s, %d changes, %d failed steps",
			s.opt.Stage, orNone(s.rec.Context), s.rec.Changes(), len(failed)))
}

func orNone(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
