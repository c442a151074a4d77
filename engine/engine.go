// Package engine runs a boot job as an ordered list of recorded steps.
//
// Each step has a name, the names of the steps it needs, and a function.
// The engine times each step, records its outcome and wrapped error, and
// keeps going after a failure: a step is skipped only when a step it needs
// failed or was skipped. The Record it fills is the single truth for
// `status`, the log summary and the READY/failure report to OneGate.
package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// Status of a step.
type Status string

// Step outcomes.
const (
	OK      Status = "ok"
	Failed  Status = "failed"
	Skipped Status = "skipped"
)

// Step is one unit of the run.
type Step struct {
	Name  string
	Needs []string
	// Optional steps do not make the run fail (their failure is still
	// recorded and reported).
	Optional bool
	Run      func(ctx context.Context, r *Recorder) error
}

// ErrSkip, returned by a step, records it as skipped with the error's
// text as the reason (nothing to do, not a failure).
var ErrSkip = errors.New("skipped")

// Skip returns an error that records the step as skipped for reason.
func Skip(reason string) error { return fmt.Errorf("%s: %w", reason, ErrSkip) }

// StepRecord is what the run record keeps of one step.
type StepRecord struct {
	Name       string    `json:"name"`
	Status     Status    `json:"status"`
	Start      time.Time `json:"start"`
	End        time.Time `json:"end"`
	DurationMS float64   `json:"duration_ms"`
	// CPUMS is the process's CPU time (user and kernel, the tools the step
	// ran included) while the step ran; 0 when the engine has no CPU clock.
	CPUMS    float64  `json:"cpu_ms,omitempty"`
	Changes  []string `json:"changes,omitempty"`
	Notes    []string `json:"notes,omitempty"`
	Problems []string `json:"problems,omitempty"`
	Error    string   `json:"error,omitempty"`
	Optional bool     `json:"optional,omitempty"`
}

// Record is one run.
type Record struct {
	Agent    string    `json:"agent"`
	Version  string    `json:"version"`
	Stage    string    `json:"stage"`
	Root     string    `json:"root"`
	BootID   string    `json:"boot_id,omitempty"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// Context is "first-boot", "unchanged" or "changed" (filled by the
	// medium/state steps), with the digest of what was applied.
	Context       string       `json:"context,omitempty"`
	ContextDigest string       `json:"context_digest,omitempty"`
	VMID          string       `json:"vmid,omitempty"`
	Steps         []StepRecord `json:"steps"`
	// Report says whether the READY/failure report reached OneGate.
	Report string `json:"report,omitempty"`
	// Cost is what each stage's process cost, apart from the tools it
	// ran, by stage ("local", "network", ...).
	Cost map[string]*Cost `json:"cost,omitempty"`
}

// Cost is a run's resource use, split between the agent's own process and
// the tools it started (useradd, netplan, scripts ...).
type Cost struct {
	AgentCPUMS float64 `json:"agent_cpu_ms"`
	// AgentSysMS is the kernel's share of AgentCPUMS (page faults,
	// syscalls, fsync): where the agent's own code is not the cost.
	AgentSysMS  float64 `json:"agent_sys_ms"`
	ToolsCPUMS  float64 `json:"tools_cpu_ms"`
	AgentMaxRSS int64   `json:"agent_max_rss_kib"`
	ToolsMaxRSS int64   `json:"tools_max_rss_kib"`
	// EntryCPUMS is the CPU the process had used when the run began (exec,
	// the Go runtime and package init, flags, logging); StartCPUMS when
	// its first step began (the lock and the record too).
	EntryCPUMS float64 `json:"entry_cpu_ms,omitempty"`
	StartCPUMS float64 `json:"start_cpu_ms,omitempty"`
	// Unit, UnitCPUMS and UnitPeakKiB are the systemd unit's cgroup
	// totals when the stage ended (the agent and every tool it ran), as
	// systemd counts them; empty when not run as a service.
	Unit        string  `json:"unit,omitempty"`
	UnitCPUMS   float64 `json:"unit_cpu_ms,omitempty"`
	UnitPeakKiB int64   `json:"unit_peak_kib,omitempty"`
}

// Failed lists the failed steps.
func (r *Record) Failed() []StepRecord {
	var out []StepRecord
	for _, s := range r.Steps {
		if s.Status == Failed {
			out = append(out, s)
		}
	}
	return out
}

// OK reports whether every non-optional step succeeded or was skipped
// for a reason of its own.
func (r *Record) OK() bool {
	for _, s := range r.Steps {
		if s.Status == Failed && !s.Optional {
			return false
		}
	}
	return true
}

// Step finds a step's record.
func (r *Record) Step(name string) (StepRecord, bool) {
	for _, s := range r.Steps {
		if s.Name == name {
			return s, true
		}
	}
	return StepRecord{}, false
}

// Changes counts the changes of all steps.
func (r *Record) Changes() int {
	n := 0
	for _, s := range r.Steps {
		n += len(s.Changes)
	}
	return n
}

// Recorder is what a running step uses to say what it did.
type Recorder struct {
	rec   *StepRecord
	Log   zerolog.Logger // already carries step=<name>
	scrub func(string) string
}

func (r *Recorder) clean(s string) string {
	if r.scrub != nil {
		return r.scrub(s)
	}
	return s
}

// Change records one change the step made ("eth0: add 192.0.2.10/24").
func (r *Recorder) Change(format string, args ...any) {
	msg := r.clean(fmt.Sprintf(format, args...))
	r.rec.Changes = append(r.rec.Changes, msg)
	r.Log.Info().Str("event", "change").Msg(msg)
}

// Note records a fact worth keeping that is not a change.
func (r *Recorder) Note(format string, args ...any) {
	msg := r.clean(fmt.Sprintf(format, args...))
	r.rec.Notes = append(r.rec.Notes, msg)
	r.Log.Info().Msg(msg)
}

// Problem records a bad input the step worked around; variable names the
// context variable (may be "").
func (r *Recorder) Problem(variable, format string, args ...any) {
	msg := r.clean(fmt.Sprintf(format, args...))
	if variable != "" && !strings.Contains(msg, variable+":") {
		msg = variable + ": " + msg
	}
	r.rec.Problems = append(r.rec.Problems, msg)
	ev := r.Log.Warn().Str("event", "problem")
	if variable != "" {
		ev = ev.Str("variable", variable)
	}
	ev.Msg(msg)
}

// Engine runs steps.
type Engine struct {
	Log   zerolog.Logger
	Clock func() time.Time
	// Scrub is applied to every error text before it is recorded (the
	// secret scrubber); nil keeps the text.
	Scrub func(string) string
	// CPU, when set, reads the CPU time used so far (the process's and its
	// waited-for children's): each step's share goes in its record.
	CPU func() time.Duration
}

func (e *Engine) cpu() time.Duration {
	if e.CPU == nil {
		return 0
	}
	return e.CPU()
}

func (e *Engine) now() time.Time {
	if e.Clock != nil {
		return e.Clock()
	}
	return time.Now()
}

// Run runs steps in order, appending their records to rec.
func (e *Engine) Run(ctx context.Context, rec *Record, steps []Step) {
	status := map[string]Status{}
	for _, s := range rec.Steps { // steps of an earlier part of this run
		if s.Status == Failed || (s.Status == Skipped && strings.HasPrefix(s.Error, "needs ")) {
			status[s.Name] = Failed
		} else {
			status[s.Name] = OK
		}
	}
	for _, st := range steps {
		sr := StepRecord{Name: st.Name, Optional: st.Optional}
		log := e.Log.With().Str("step", st.Name).Logger()
		if blocked := blockedBy(st.Needs, status); blocked != "" {
			sr.Status = Skipped
			sr.Start, sr.End = e.now(), e.now()
			sr.Error = fmt.Sprintf("needs %s, which did not succeed", blocked)
			log.Warn().Str("event", "step-skipped").Msg(sr.Error)
			status[st.Name] = Failed // what needs this one is blocked too
			rec.Steps = append(rec.Steps, sr)
			continue
		}
		sr.Start = e.now()
		log.Debug().Str("event", "step-start").Msg("start")
		r := &Recorder{rec: &sr, Log: log, scrub: e.Scrub}
		cpu0 := e.cpu()
		err := runGuarded(ctx, st, r)
		sr.CPUMS = float64((e.cpu() - cpu0).Microseconds()) / 1000
		sr.End = e.now()
		sr.DurationMS = float64(sr.End.Sub(sr.Start).Microseconds()) / 1000
		switch {
		case err == nil:
			sr.Status = OK
			log.Info().Str("event", "step-done").Int("changes", len(sr.Changes)).
				Float64("ms", sr.DurationMS).Msgf("done in %s, %d changes", FormatMS(sr.DurationMS), len(sr.Changes))
		case errors.Is(err, ErrSkip):
			sr.Status = Skipped
			sr.Error = e.scrub(strings.TrimSuffix(err.Error(), ": "+ErrSkip.Error()))
			log.Info().Str("event", "step-skipped").Msg(sr.Error)
		default:
			sr.Status = Failed
			sr.Error = e.scrub(err.Error())
			log.Error().Str("event", "step-failed").Float64("ms", sr.DurationMS).Msg(sr.Error)
		}
		// A step skipped for a reason of its own (nothing to do) does not
		// block the steps that need it; a failed one does.
		if sr.Status == Skipped {
			status[st.Name] = OK
		} else {
			status[st.Name] = sr.Status
		}
		rec.Steps = append(rec.Steps, sr)
	}
}

func (e *Engine) scrub(s string) string {
	if e.Scrub != nil {
		return e.Scrub(s)
	}
	return s
}

// runGuarded turns a panicking step into a failed one: one bad step must
// not take the boot job down with it.
func runGuarded(ctx context.Context, st Step, r *Recorder) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("internal error (panic): %v", p)
		}
	}()
	return st.Run(ctx, r)
}

// blockedBy returns the first needed step that did not succeed ("" if none).
// A need that never ran in this run (another stage) does not block.
func blockedBy(needs []string, status map[string]Status) string {
	for _, n := range needs {
		if s, ran := status[n]; ran && s != OK {
			return n
		}
	}
	return ""
}

// NewTestRecorder returns a Recorder that is not part of a run, and the
// record it fills: for testing a step's Apply function on its own.
func NewTestRecorder() (*Recorder, *StepRecord) {
	sr := &StepRecord{Name: "test"}
	return &Recorder{rec: sr, Log: zerolog.Nop()}, sr
}

// FormatMS prints a duration in milliseconds the way the log and
// `status` show step times: µs below 1 ms, s from 1 s on.
func FormatMS(ms float64) string {
	switch {
	case ms < 1:
		return fmt.Sprintf("%.0fµs", ms*1000)
	case ms < 1000:
		return fmt.Sprintf("%.1fms", ms)
	}
	return fmt.Sprintf("%.2fs", ms/1000)
}
