package report

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"one-contextd/internal/wait"

	"one-contextd/context/shvars"
	"one-contextd/fsroot"
	"one-contextd/onegate"
	"one-contextd/secret"
	"one-contextd/state"
)

// EnvFile is the agent's environment file (under the root): endpoint, VM
// id and token as NAME='value' lines, root-only, in tmpfs.
const EnvFile = "/run/one-context/one_env"

// Backoff of the background retry.
const (
	retryInitial = time.Second
	retryCap     = 5 * time.Minute
)

// Env is how to reach OneGate, as the agent's env file says.
type Env struct {
	Endpoint string
	VMID     string
	Token    secret.Value
}

// LoadEnv reads EnvFile under root. The token is TOKENTXT (the one the
// agent chose: ONEGATE_TOKEN, else token.txt), else ONEGATE_TOKEN.
func LoadEnv(root *fsroot.Root) (Env, error) {
	data, err := root.ReadFile(EnvFile)
	if err != nil {
		return Env{}, fmt.Errorf("read %s: %w", EnvFile, err)
	}
	vars, perrs := shvars.Parse(EnvFile, data)
	if vars == nil && len(perrs) > 0 {
		return Env{}, fmt.Errorf("parse %s: %w", EnvFile, perrs[0])
	}
	tok := vars.Value("TOKENTXT")
	if strings.TrimSpace(tok) == "" {
		tok = vars.Value("ONEGATE_TOKEN")
	}
	e := Env{
		Endpoint: strings.TrimSpace(vars.Value("ONEGATE_ENDPOINT")),
		VMID:     strings.TrimSpace(vars.Value("VMID")),
		Token:    secret.New(strings.TrimSpace(tok)),
	}
	switch {
	case e.Endpoint == "":
		return e, fmt.Errorf("%s has no ONEGATE_ENDPOINT", EnvFile)
	case e.VMID == "":
		return e, fmt.Errorf("%s has no VMID", EnvFile)
	case e.Token.IsZero():
		return e, fmt.Errorf("%s has no token (TOKENTXT or ONEGATE_TOKEN)", EnvFile)
	}
	return e, nil
}

// retrier is one `report --retry` run; the fields are its seams.
type retrier struct {
	root   *fsroot.Root
	http   *http.Client
	sleep  func(context.Context, time.Duration) error
	now    func() time.Time
	stdout io.Writer
	stderr io.Writer
}

// RetryMain is `one-contextd report --retry [--root DIR] [--max-wait D]`:
// it delivers a pending report, trying with capped exponential backoff
// and jitter until OneGate accepts it or --max-wait (default: no limit)
// passes. Exit 0: nothing pending, or delivered; 1: not delivered; 2:
// usage.
func RetryMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	retry := fs.Bool("retry", false, "deliver the pending report (required)")
	rootDir := fs.String("root", "/", "root directory of the system")
	maxWait := fs.Duration("max-wait", 0, "give up after this long (0: keep trying)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: one-contextd report --retry [--root DIR] [--max-wait DURATION]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if !*retry || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	root, err := fsroot.New(*rootDir)
	if err != nil {
		fmt.Fprintf(stderr, "report: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *maxWait > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *maxWait)
		defer cancel()
	}
	rt := &retrier{root: root, sleep: sleepCtx, now: time.Now, stdout: stdout, stderr: stderr}
	code := rt.run(ctx)
	if err := root.Flush(); err != nil {
		fmt.Fprintf(stderr, "report: %v\n", err)
		return 1
	}
	return code
}

func (rt *retrier) run(ctx context.Context) int {
	p, raw, err := LoadPending(rt.root)
	if err != nil {
		// A file we cannot read back would be retried forever: drop it.
		fmt.Fprintf(rt.stderr, "report: %v; removing it\n", err)
		if raw != nil {
			_, _ = rt.root.Remove(PendingFile)
		}
		return 1
	}
	if p == nil {
		fmt.Fprintln(rt.stdout, "report: nothing pending")
		return 0
	}
	start := rt.now()
	var lastMsg string
	authRetried := false
	for attempt := 1; ; attempt++ {
		env, err := LoadEnv(rt.root) // every time: a reconfigure may renew the token
		if err == nil && p.VMID != "" && env.VMID != p.VMID {
			fmt.Fprintf(rt.stderr, "report: the pending report is for VM %s, this is VM %s; dropping it\n", p.VMID, env.VMID)
			rt.finish(raw, p, "not sent: dropped, the VM id changed")
			return 0
		}
		var scrub func(string) string
		if err == nil {
			err = rt.attempt(ctx, env, p)
			scrub = func(s string) string { return strings.ReplaceAll(s, env.Token.Reveal(), secret.Redacted) }
		}
		if err == nil {
			fmt.Fprintf(rt.stdout, "report: delivered %s after %d tries\n", describe(p), attempt)
			rt.finish(raw, p, fmt.Sprintf("sent: %s (background retry, %d tries, %s after the boot's try)",
				describe(p), attempt, rt.now().Sub(p.Queued).Round(time.Second)))
			return 0
		}
		msg := err.Error()
		if scrub != nil {
			msg = scrub(msg)
		}
		switch status := onegate.StatusOf(err); {
		case status == http.StatusUnauthorized && !authRetried:
			authRetried = true // re-read the env file once at once
			fmt.Fprintf(rt.stderr, "report: %s; reading %s again\n", msg, EnvFile)
			continue
		case status == http.StatusUnauthorized:
			fmt.Fprintf(rt.stderr, "report: OneGate refuses the token or VM id (%s): the token is stale or wrong; "+
				"keeping the report for a later run\n", msg)
			return 1
		case status >= 400 && status < 500:
			fmt.Fprintf(rt.stderr, "report: OneGate refused the report for good: %s; dropping it\n", msg)
			rt.finish(raw, p, "not sent: OneGate refused it ("+msg+")")
			return 1
		}
		if msg != lastMsg { // once per kind of failure, not once per try
			fmt.Fprintf(rt.stderr, "report: try %d: %s; retrying with backoff\n", attempt, msg)
			lastMsg = msg
		}
		if serr := rt.sleep(ctx, backoff(attempt)); serr != nil {
			fmt.Fprintf(rt.stderr, "report: giving up after %d tries in %s: %s\n", attempt,
				rt.now().Sub(start).Round(time.Millisecond), msg)
			return 1
		}
	}
}

// attempt makes one delivery try (the loop around it does the backoff).
func (rt *retrier) attempt(ctx context.Context, env Env, p *Pending) error {
	c, err := onegate.New(onegate.Config{Endpoint: env.Endpoint, Token: env.Token, VMID: env.VMID,
		HTTP: rt.http, Retry: onegate.RetryPolicy{MaxAttempts: 1}, Sleep: rt.sleep})
	if err != nil {
		return err
	}
	_, err = deliver(ctx, c, p)
	return err
}

// finish removes the pending file, unless a newer run replaced it
// meanwhile, and records the outcome in the run record it belongs to.
func (rt *retrier) finish(raw []byte, p *Pending, outcome string) {
	if now, err := rt.root.ReadFile(PendingFile); err == nil && bytes.Equal(now, raw) {
		if _, err := rt.root.Remove(PendingFile); err != nil {
			fmt.Fprintf(rt.stderr, "report: %v\n", err)
		}
	}
	rec, err := state.LoadRecord(rt.root)
	if err != nil || rec == nil || !rec.Started.Equal(p.RunStarted) {
		return // a newer run has its own report
	}
	rec.Report = outcome
	if err := state.SaveRecord(rt.root, rec); err != nil {
		fmt.Fprintf(rt.stderr, "report: %v\n", err)
	}
}

// backoff is the wait after failed try n: 1 s doubling to 5 min, ±20 %.
func backoff(n int) time.Duration {
	d := retryInitial
	for i := 1; i < n && d < retryCap; i++ {
		d *= 2
	}
	d = min(d, retryCap)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

func sleepCtx(ctx context.Context, d time.Duration) error { return wait.Sleep(ctx, d) }
