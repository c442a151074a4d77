package report

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"one-contextd/context/settings"
	"one-contextd/engine"
	"one-contextd/fsroot"
	"one-contextd/onegate"
	"one-contextd/runner"
)

// Attribute names (see the package documentation).
const (
	AttrReady  = "READY"
	AttrError  = "ONECONTEXT_ERROR"
	AttrStatus = "ONECONTEXT_STATUS"
)

// Defaults of Input.
const (
	DefaultBriefTimeout = 15 * time.Second
	DefaultReadyTimeout = 5 * time.Minute
)

// MaxErrorLen bounds ONECONTEXT_ERROR (bytes).
const MaxErrorLen = 1024

// Outcomes of a report.
const (
	OutcomeReady  = "ready"
	OutcomeFailed = "failed"
)

// Input is what the report step needs.
type Input struct {
	OneGate settings.OneGate
	// Record is the current run's record so far, read when Apply runs; its
	// Report field is set to what became of the report.
	Record *engine.Record
	Root   *fsroot.Root
	// Run runs READY_SCRIPT_PATH and READY_SCRIPT, with Env as their
	// environment (nil: the agent's).
	Run          runner.Runner
	Env          []string
	ReadyTimeout time.Duration // bound of the readiness check; 0: DefaultReadyTimeout
	// HTTP is the client for OneGate; nil: onegate.DefaultHTTPClient().
	HTTP *http.Client
	// Sleep waits between tries; nil: a timer honouring ctx.
	Sleep func(context.Context, time.Duration) error
	// BriefTimeout bounds all tries during the boot; 0: DefaultBriefTimeout.
	BriefTimeout time.Duration
	Clock        func() time.Time // nil: time.Now
	Version      string           // agent version for ONECONTEXT_STATUS; "": Record.Version
	// Scrub removes secrets from text sent to OneGate or stored (the
	// agent's scrubber); the token is always removed.
	Scrub func(string) string
}

// briefRetry is the policy of the in-boot tries: about 11 s of waiting in
// 6 tries, inside BriefTimeout.
var briefRetry = onegate.RetryPolicy{MaxAttempts: 6, Initial: 500 * time.Millisecond, Max: 4 * time.Second, Multiplier: 2, Jitter: 0.2}

// Apply is the "report" step.
func Apply(ctx context.Context, r *engine.Recorder, in Input) error {
	g := in.OneGate
	if !g.ReportReady {
		return engine.Skip("REPORT_READY is not YES")
	}
	if in.Record == nil {
		in.Record = &engine.Record{}
	}
	if !g.Usable() {
		in.Record.Report = "not sent: ONEGATE_ENDPOINT, VMID or the token is missing"
		return errors.New("REPORT_READY=YES but ONEGATE_ENDPOINT, VMID or the token is missing; cannot report")
	}
	now := time.Now
	if in.Clock != nil {
		now = in.Clock
	}
	version := in.Version
	if version == "" {
		version = in.Record.Version
	}
	scrub := func(s string) string {
		if in.Scrub != nil {
			s = in.Scrub(s)
		}
		if t := g.Token.Reveal(); t != "" {
			s = strings.ReplaceAll(s, t, "<redacted>")
		}
		return s
	}

	sleep := in.Sleep
	if sleep == nil {
		sleep = sleepCtx
	}
	if tries, why, cut := awaitReady(ctx, r, in, sleep, scrub); why != "" {
		// As net-99-report-ready: nothing is sent, and the step fails
		// ("Failed to report READY", exit 1) so status and the log say so.
		in.Record.Report = fmt.Sprintf("not sent: readiness check failed%s (%s)", triesText(tries), why)
		if cut != nil {
			in.Record.Report += "; stopped waiting for the next try"
			return fmt.Errorf("READY not reported: readiness check failed%s: %s; stopped waiting for the next try: %w", triesText(tries), why, cut)
		}
		return fmt.Errorf("READY not reported: readiness check failed%s: %s", triesText(tries), why)
	}

	p := plan(in.Record, version, now().UTC(), scrub)
	p.VMID = g.VMID
	p.RunStarted = in.Record.Started

	brief := in.BriefTimeout
	if brief <= 0 {
		brief = DefaultBriefTimeout
	}
	bctx, cancel := context.WithTimeout(ctx, brief)
	defer cancel()
	c, err := onegate.New(onegate.Config{
		Endpoint: g.Endpoint.String(), Token: g.Token, VMID: g.VMID,
		HTTP: in.HTTP, Retry: briefRetry, Log: r.Log, Sleep: in.Sleep,
	})
	if err != nil {
		in.Record.Report = "not sent: " + scrub(err.Error())
		return fmt.Errorf("report: %w", err)
	}
	notes, err := deliver(bctx, c, p)
	for _, n := range notes {
		r.Note("%s", n)
	}
	what := describe(p)
	if err == nil {
		// A report queued by an earlier run is stale now.
		if _, rerr := in.Root.Remove(PendingFile); rerr != nil {
			r.Log.Warn().Err(rerr).Msg("remove stale pending report")
		}
		in.Record.Report = "sent: " + what
		r.Note("reported %s to OneGate", what)
		return nil
	}
	reason := scrub(err.Error())
	status := onegate.StatusOf(err)
	if status >= 400 && status < 500 && status != http.StatusUnauthorized {
		// The gate's final word for this request (permission, restricted
		// attribute): retrying cannot help.
		in.Record.Report = "not sent: OneGate refused it (" + reason + ")"
		return fmt.Errorf("report %s: %w", what, err)
	}
	p.Queued = now().UTC()
	p.LastError = reason
	if werr := savePending(in.Root, p); werr != nil {
		in.Record.Report = "not sent: " + reason + "; and not queued: " + scrub(werr.Error())
		return fmt.Errorf("report %s: %s; queue it: %w", what, reason, werr)
	}
	if status >= 300 && status < 400 {
		// The gate redirects (an http endpoint for an https gate, a
		// missing path prefix): redirects are never followed, and it is
		// no outage. Queued in case a reconfigure fixes ONEGATE_ENDPOINT.
		in.Record.Report = "queued (OneGate redirected it: " + reason + ")"
		return fmt.Errorf("report %s: OneGate answered with a redirect, which is not followed (queued in %s for a retry): %w", what, PendingFile, err)
	}
	if status == http.StatusUnauthorized {
		// Bad or stale token, or a wrong VMID: not an outage, so the step
		// fails; a reconfigure may bring a new token, so it stays queued
		// for the background retry.
		in.Record.Report = "queued (OneGate refused the token: " + reason + ")"
		return fmt.Errorf("report %s: OneGate refused the token or VM id (queued in %s for a retry): %w", what, PendingFile, err)
	}
	in.Record.Report = "queued (OneGate unreachable: " + reason + ")"
	r.Note("OneGate did not accept the report within %s (%s); queued in %s for the background retry", brief, reason, PendingFile)
	return nil
}

func triesText(n int) string {
	if n > 1 {
		return fmt.Sprintf(" %d times", n)
	}
	return ""
}

// awaitReady is net-99-report-ready's loop around the readiness check: up
// to RETRY_COUNT tries, RETRY_WAIT_PERIOD apart. why is "" when the check
// passed, else the last failure; tries is how many checks ran; cut is the
// error of a wait cut short (ctx), after which no more tries are made. A
// READY_SCRIPT_PATH that does not exist fails at once, as upstream.
// Upstream's tries also cover the report itself; here delivery has its
// own retries and queue (see Apply), so only the check is repeated. why
// (a script's stderr) has gone through scrub.
func awaitReady(ctx context.Context, r *engine.Recorder, in Input,
	sleep func(context.Context, time.Duration) error, scrub func(string) string) (tries int, why string, cut error) {
	g := in.OneGate
	if g.ReadyScriptPath == "" && strings.TrimSpace(g.ReadyScript) == "" {
		return 0, "", nil // no check: ready
	}
	limit := g.ReadyRetryCount
	if limit <= 0 {
		limit = settings.DefaultReadyRetryCount
	}
	pause := max(g.ReadyRetryWait, 0)
	for tries = 1; ; tries++ {
		ok, why, final := readinessCheck(ctx, r, in)
		why = scrub(why)
		if ok {
			if tries > 1 {
				r.Note("readiness check passed on try %d of %d", tries, limit)
			}
			return tries, "", nil
		}
		if final {
			return 0, why, nil
		}
		if tries >= limit {
			return tries, why, nil
		}
		r.Note("readiness check failed (try %d of %d, RETRY_COUNT): %s; trying again in %s (RETRY_WAIT_PERIOD)", tries, limit, why, pause)
		if err := sleep(ctx, pause); err != nil {
			return tries, why, fmt.Errorf("wait for try %d: %w", tries+1, err)
		}
	}
}

// readinessCheck is one try of net-99-report-ready's check:
// READY_SCRIPT_PATH, else READY_SCRIPT. final marks a failure another try
// cannot change (the path is not there).
func readinessCheck(ctx context.Context, r *engine.Recorder, in Input) (ok bool, why string, final bool) {
	g := in.OneGate
	timeout := in.ReadyTimeout
	if timeout <= 0 {
		timeout = DefaultReadyTimeout
	}
	switch {
	case g.ReadyScriptPath != "":
		p := g.ReadyScriptPath
		if !strings.HasPrefix(p, "/") {
			r.Problem("READY_SCRIPT_PATH", "%q is not an absolute path", p)
			return false, "READY_SCRIPT_PATH " + p + " is not an absolute path", true
		}
		if !in.Root.Exists(p) {
			r.Problem("READY_SCRIPT_PATH", "%s does not exist", p)
			return false, "READY_SCRIPT_PATH " + p + " does not exist", true
		}
		if _, err := in.Run.Run(ctx, runner.Cmd{Name: in.Root.HostPath(p), Env: in.Env, Timeout: timeout}); err != nil {
			return false, "READY_SCRIPT_PATH: " + err.Error(), false
		}
	case strings.TrimSpace(g.ReadyScript) != "":
		cmd := runner.Cmd{Name: "/bin/sh", Args: []string{"-c", g.ReadyScript}, Env: in.Env, Timeout: timeout}
		if _, err := in.Run.Run(ctx, cmd); err != nil {
			var ee *runner.ExitError
			if errors.As(err, &ee) {
				// The command line is the script itself: name it, do not repeat it.
				if ee.TimedOut {
					return false, "READY_SCRIPT timed out", false
				}
				msg := fmt.Sprintf("READY_SCRIPT exited with status %d", ee.Code)
				if ee.Stderr != "" {
					msg += ": " + ee.Stderr
				}
				return false, msg, false
			}
			return false, "READY_SCRIPT: " + err.Error(), false
		}
	}
	return true, "", false
}

// deliver sends p: the update first, then erases the keys of p.Erase that
// the VM still has (OneGate answers 500 for a missing one, which would
// read as an outage).
func deliver(ctx context.Context, c *onegate.Client, p *Pending) (notes []string, err error) {
	attrs := make([]onegate.Attr, 0, len(p.Set))
	for _, a := range p.Set {
		attrs = append(attrs, onegate.Attr{Key: a.Key, Value: a.Value})
	}
	if err := c.Update(ctx, "", attrs...); err != nil {
		return nil, err
	}
	if len(p.Erase) == 0 {
		return nil, nil
	}
	vm, err := c.VM(ctx)
	if err != nil {
		if s := onegate.StatusOf(err); s >= 400 && s < 500 {
			// GET /vm disabled: the update is what matters.
			return []string{"could not check for stale " + strings.Join(p.Erase, ", ") + ": " + err.Error()}, nil
		}
		return nil, err
	}
	for _, k := range p.Erase {
		if _, ok := vm.UserTemplate[k]; !ok {
			continue
		}
		if err := c.Erase(ctx, "", k); err != nil {
			return notes, err
		}
		notes = append(notes, "erased "+k+" left by an earlier run")
	}
	return notes, nil
}

func describe(p *Pending) string {
	keys := make([]string, 0, len(p.Set))
	for _, a := range p.Set {
		if a.Key == AttrReady {
			keys = append(keys, a.Key+"="+a.Value)
		} else {
			keys = append(keys, a.Key)
		}
	}
	return strings.Join(keys, ", ")
}
