package metrics

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"one-contextd/internal/lazyregexp"
	"one-contextd/onegate"
	"one-contextd/runner"
)

// DefaultDir holds the site's metric scripts.
const DefaultDir = "/etc/one-context.d/metrics.d"

// DefaultScriptTimeout bounds one metric script.
const DefaultScriptTimeout = 10 * time.Second

// Bounds on what one script may push.
const (
	maxScriptMetrics = 64
	maxValueLen      = 256
)

var (
	scriptNameRe = lazyregexp.New(`^[A-Za-z0-9_-]+$`) // run-parts' rule: skips *.dpkg-old, *~, .hidden
	keyRe        = lazyregexp.New(`^[A-Z0-9_]+$`)
)

// reservedKeys would make OneGate refuse the whole push (403) or forge
// the agent's own report.
var reservedKeys = map[string]bool{"READY": true, "SERVICE_ID": true, "ROLE_NAME": true, "SCHED_REQUIREMENTS": true}

// Scripts runs the executables of a metrics directory.
type Scripts struct {
	Dir     string // host path; "" or missing: no site metrics
	Run     runner.Runner
	Timeout time.Duration // per script; 0: DefaultScriptTimeout
	Env     []string      // nil: the agent's environment
}

// Collect runs every script and returns their metrics in script order,
// and one warning per script or line that was refused.
func (s Scripts) Collect(ctx context.Context) ([]Metric, []string) {
	if s.Dir == "" {
		return nil, nil
	}
	entries, err := os.ReadDir(s.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, []string{fmt.Sprintf("metrics directory: %v", err)}
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = DefaultScriptTimeout
	}
	var out []Metric
	var warns []string
	for _, e := range entries {
		if !scriptNameRe.MatchString(e.Name()) {
			continue
		}
		p := filepath.Join(s.Dir, e.Name())
		fi, err := os.Stat(p) // follows a symlink to the script
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			continue
		}
		res, err := s.Run.Run(ctx, runner.Cmd{Name: p, Env: s.Env, Timeout: timeout, Dir: s.Dir})
		if err != nil {
			warns = append(warns, fmt.Sprintf("%s: %v (its metrics are not pushed)", e.Name(), err))
			continue
		}
		m, w := parseOutput(e.Name(), string(res.Stdout))
		out = append(out, m...)
		warns = append(warns, w...)
	}
	return out, warns
}

// parseOutput reads KEY=VALUE lines (spaces around = allowed, blank
// lines and # comments skipped).
func parseOutput(script, stdout string) ([]Metric, []string) {
	var out []Metric
	var warns []string
	for i, line := range strings.Split(stdout, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		where := fmt.Sprintf("%s: line %d", script, i+1)
		k, v, ok := strings.Cut(line, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch {
		case !ok:
			warns = append(warns, fmt.Sprintf("%s: not KEY=VALUE", where))
			continue
		case !keyRe.MatchString(k):
			warns = append(warns, fmt.Sprintf("%s: key %q: only A-Z, 0-9 and _ are allowed", where, k))
			continue
		case reservedKeys[k] || strings.HasPrefix(k, "ONECONTEXT_"):
			warns = append(warns, fmt.Sprintf("%s: %s is reserved", where, k))
			continue
		case len(v) > maxValueLen:
			warns = append(warns, fmt.Sprintf("%s: %s: value longer than %d bytes", where, k, maxValueLen))
			continue
		}
		if err := onegate.ValidateAttr(onegate.Attr{Key: k, Value: v}); err != nil {
			warns = append(warns, fmt.Sprintf("%s: %v", where, err))
			continue
		}
		if len(out) == maxScriptMetrics {
			warns = append(warns, fmt.Sprintf("%s: more than %d metrics; the rest are ignored", script, maxScriptMetrics))
			break
		}
		out = append(out, Metric{k, v})
	}
	return out, warns
}

// merge appends site metrics to the built-in ones; a later key replaces
// an earlier one in place.
func merge(lists ...[]Metric) []Metric {
	var out []Metric
	at := map[string]int{}
	for _, l := range lists {
		for _, m := range l {
			if i, ok := at[m.Key]; ok {
				out[i] = m
				continue
			}
			at[m.Key] = len(out)
			out = append(out, m)
		}
	}
	return out
}
