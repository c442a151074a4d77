package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path"
	"strings"
	"syscall"
	"time"

	"one-contextd/fsroot"
	"one-contextd/onegate"
	"one-contextd/report"
	"one-contextd/runner"
	"one-contextd/secret"
)

// pushRetry keeps a push short: the next timer run pushes fresher numbers
// anyway.
var pushRetry = onegate.RetryPolicy{MaxAttempts: 3, Initial: time.Second, Max: 4 * time.Second}

// pushTimeout bounds the push, tries included, well inside the unit's
// TimeoutStartSec.
const pushTimeout = time.Minute

// Main is `one-contextd metrics [--root DIR] [--dir DIR] [--dry-run]`:
// collect the metrics and push them in one PUT /vm (--dry-run prints them
// instead). Exit 0: pushed (or printed); 1: not pushed; 2: usage.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("metrics", flag.ContinueOnError)
	fs.SetOutput(stderr)
	rootDir := fs.String("root", "/", "root directory of the system (env file, metrics directory, disk)")
	dir := fs.String("dir", DefaultDir, "directory of site metric scripts, inside the root")
	dryRun := fs.Bool("dry-run", false, "print the attributes instead of pushing them")
	proc := fs.String("proc", "/proc", "proc file system to read (of the running kernel, not under the root)")
	interval := fs.Duration("interval", DefaultInterval, "time between the two CPU samples")
	timeout := fs.Duration("script-timeout", DefaultScriptTimeout, "time limit of one metric script")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: one-contextd metrics [--root DIR] [--dir DIR] [--dry-run]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	root, err := fsroot.New(*rootDir)
	if err != nil {
		fmt.Fprintf(stderr, "metrics: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// Read the env file first: without a gate there is nothing to push for.
	var env report.Env
	if !*dryRun {
		if env, err = report.LoadEnv(root); err != nil {
			fmt.Fprintf(stderr, "metrics: %v; not pushing\n", err)
			return 1
		}
	}
	sys := System{Proc: *proc, Disk: root.Dir(), Interval: *interval, Since: fileCPUStore{root}}
	builtin, err := sys.Collect(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "metrics: %v\n", err)
	}
	scripts := Scripts{Dir: root.HostPath(path.Clean("/" + *dir)), Run: runner.Exec{}, Timeout: *timeout}
	site, warns := scripts.Collect(ctx)
	scrub := func(s string) string {
		if t := env.Token.Reveal(); t != "" {
			s = strings.ReplaceAll(s, t, secret.Redacted)
		}
		return s
	}
	for _, w := range warns {
		fmt.Fprintf(stderr, "metrics: %s\n", scrub(w))
	}
	all := merge(builtin, site)
	if *dryRun {
		for _, m := range all {
			fmt.Fprintf(stdout, "%s=%s\n", m.Key, m.Value)
		}
		return 0
	}
	if len(all) == 0 {
		fmt.Fprintln(stderr, "metrics: nothing to push")
		return 1
	}
	pctx, cancel := context.WithTimeout(ctx, pushTimeout)
	defer cancel()
	if err := Push(pctx, env, all); err != nil {
		fmt.Fprintf(stderr, "metrics: %s\n", scrub(err.Error()))
		return 1
	}
	fmt.Fprintf(stdout, "metrics: pushed %d attributes\n", len(all))
	return 0
}

// Push sends metrics to OneGate as the VM's attributes, in one update.
func Push(ctx context.Context, env report.Env, metrics []Metric) error {
	c, err := onegate.New(onegate.Config{Endpoint: env.Endpoint, Token: env.Token, VMID: env.VMID, Retry: pushRetry})
	if err != nil {
		return err
	}
	attrs := make([]onegate.Attr, len(metrics))
	for i, m := range metrics {
		attrs[i] = onegate.Attr{Key: m.Key, Value: m.Value}
	}
	return c.Update(ctx, "", attrs...)
}

// CPUSampleFile keeps the last run's /proc/stat sample (tmpfs: one boot).
const CPUSampleFile = "/run/one-contextd/metrics-cpu.json"

// fileCPUStore is the CPUStore of the metrics command, under the root.
type fileCPUStore struct{ root *fsroot.Root }

func (f fileCPUStore) Load() (CPUSample, bool) {
	data, err := f.root.ReadFile(CPUSampleFile)
	if err != nil {
		return CPUSample{}, false
	}
	var s CPUSample
	if json.Unmarshal(data, &s) != nil {
		return CPUSample{}, false
	}
	return s, true
}

func (f fileCPUStore) Save(s CPUSample) error {
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if _, err := f.root.WriteFile(CPUSampleFile, data, fsroot.WriteOptions{Mode: 0o644}); err != nil {
		return err
	}
	return f.root.Flush()
}
