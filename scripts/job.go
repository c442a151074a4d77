package scripts

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"one-contextd/context/shvars"
	"one-contextd/runner"
	"one-contextd/secret"
)

// Job is one script to run: an executable file on the host, its name for
// the log, and where and how it runs. The role runner uses it too.
type Job struct {
	Name    string // START_SCRIPT, init.sh, master/10-setup: the log's "script" field
	Path    string // host path of the executable file
	Args    []string
	Dir     string   // working directory
	Env     []string // complete environment
	Timeout time.Duration
	// Scrub removes secrets from each output line before it is logged;
	// nil logs lines as they are.
	Scrub *secret.Scrubber
	// Scope runs the job in a transient systemd scope of its own
	// (systemd-run --scope). What a script leaves running, `nohup app &`,
	// then lives there as one-context users expect from a service they
	// start: not under the agent unit's memory and CPU limits, and not
	// stopped with that unit (a oneshot reconfigure unit stops what is
	// left in it the moment the agent exits). Only where systemd runs the
	// system; see ScopeAvailable.
	Scope bool
}

// ScopeAvailable reports whether jobs can run in systemd scopes: systemd
// runs the system (/run/systemd/system) and systemd-run is installed.
func ScopeAvailable() bool {
	if fi, err := os.Stat("/run/systemd/system"); err != nil || !fi.IsDir() {
		return false
	}
	_, ok := runner.LookPath("systemd-run")
	return ok
}

// scoped wraps a command line in systemd-run --scope. systemd-run becomes
// the command (it execs it once the scope exists), so the process, its
// environment, working directory and process group are the runner's as
// before.
func scoped(jobName, name string, args []string) (string, []string) {
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	unit := "one-contextd-script-" + unitPart(jobName) + "-" + hex.EncodeToString(rnd[:])
	return "systemd-run", append([]string{"--scope", "--quiet", "--collect", "--unit=" + unit,
		"--description=one-contextd: " + jobName, "--", name}, args...)
}

// unitPart keeps the characters a unit name may hold.
func unitPart(s string) string {
	out := []byte(s)
	for i, c := range out {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			out[i] = '_'
		}
	}
	return string(out)
}

// Outcome is what a finished job left.
type Outcome struct {
	Name     string
	ExitCode int // -1 when it did not exit on its own (killed, not started)
	Duration time.Duration
	TimedOut bool
	Err      error // nil on exit 0
}

// Summary is the short form used in notes and errors: "exit 3", "timed out
// after 10s", "exit 0".
func (o Outcome) Summary() string {
	switch {
	case o.TimedOut:
		return "timed out after " + o.Duration.Round(time.Millisecond).String()
	case o.Err != nil && o.ExitCode < 0:
		return o.Err.Error()
	default:
		return fmt.Sprintf("exit %d", o.ExitCode)
	}
}

// Execute runs the job through run, streaming every output line into log
// as it comes. A file starting with "#!" is run directly so its shebang
// picks the interpreter; any other file is run by /bin/bash, which is what
// happens to such a file under one-context's bash runner.
func (j Job) Execute(ctx context.Context, run runner.Runner, log zerolog.Logger) Outcome {
	out := Outcome{Name: j.Name, ExitCode: -1}
	name, args := j.Path, j.Args
	shebang, err := hasShebang(j.Path)
	if err != nil {
		out.Err = fmt.Errorf("%s: %w", j.Name, err)
		return out
	}
	if !shebang {
		name, args = "/bin/bash", append([]string{j.Path}, j.Args...)
	}
	if j.Scope {
		name, args = scoped(j.Name, name, args)
	}
	lw := &lineLogger{log: log.With().Str("script", j.Name).Logger(), scrub: j.Scrub}
	stdout, stderr := lw.stream("stdout"), lw.stream("stderr")
	start := time.Now()
	res, err := run.Run(ctx, runner.Cmd{
		Name: name, Args: args, Env: j.Env, Dir: j.Dir, Timeout: j.Timeout,
		Stdout: stdout, Stderr: stderr,
	})
	stdout.flush()
	stderr.flush()
	out.Duration = res.Duration
	if out.Duration == 0 {
		out.Duration = time.Since(start)
	}
	out.ExitCode = res.ExitCode
	if err == nil {
		return out
	}
	var ee *runner.ExitError
	if errors.As(err, &ee) {
		out.TimedOut = ee.TimedOut
		out.ExitCode = ee.Code
	} else {
		out.ExitCode = -1
	}
	out.Err = err
	return out
}

func hasShebang(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	var head [2]byte
	n, _ := f.Read(head[:])
	return n == 2 && head == [2]byte{'#', '!'}, nil
}

// maxLine bounds one logged line; a script writing megabytes without a
// newline is logged in pieces rather than held in memory.
const maxLine = 16 << 10

// lineLogger turns a script's output into one log line per output line.
type lineLogger struct {
	mu    sync.Mutex // stdout and stderr log through the same logger
	log   zerolog.Logger
	scrub *secret.Scrubber
}

func (l *lineLogger) stream(name string) *lineStream { return &lineStream{l: l, name: name} }

func (l *lineLogger) emit(stream string, line []byte) {
	text := strings.TrimRight(string(line), "\r")
	text = l.scrub.Scrub(text)
	l.mu.Lock()
	defer l.mu.Unlock()
	ev := l.log.Info()
	if stream == "stderr" {
		ev = l.log.Warn()
	}
	ev.Str("event", "script-output").Str("stream", stream).Msg(text)
}

// lineStream is the writer of one stream; it keeps the unfinished line.
type lineStream struct {
	l    *lineLogger
	name string
	buf  []byte
}

func (s *lineStream) Write(p []byte) (int, error) {
	s.buf = append(s.buf, p...)
	for {
		i := bytes.IndexByte(s.buf, '\n')
		if i < 0 {
			break
		}
		s.l.emit(s.name, s.buf[:i])
		s.buf = s.buf[i+1:]
	}
	for len(s.buf) >= maxLine {
		s.l.emit(s.name, s.buf[:maxLine])
		s.buf = s.buf[maxLine:]
	}
	if len(s.buf) == 0 {
		s.buf = nil // let a long-running script's consumed output be freed
	}
	return len(p), nil
}

// flush logs a last line that had no newline.
func (s *lineStream) flush() {
	if len(s.buf) > 0 {
		s.l.emit(s.name, s.buf)
		s.buf = nil
	}
}

// Environment is what one-context gives a script: the agent's own
// environment (base), every context variable exported, then extra
// ("NAME=value") entries, which win over both. LANG and LC_ALL are C; the
// user's locale is kept in _one_orig_LANG and _one_orig_LC_* as
// one-context does.
func Environment(base []string, vars *shvars.Vars, extra ...string) []string {
	env := make([]string, 0, len(base)+vars.Len()+len(extra)+4)
	for _, kv := range base {
		env = append(env, kv)
		name, _, _ := strings.Cut(kv, "=")
		if name == "LANG" || strings.HasPrefix(name, "LC_") {
			env = append(env, "_one_orig_"+kv)
		}
	}
	for _, v := range vars.List() {
		if shvars.ValidName(v.Name) {
			env = append(env, v.Name+"="+v.Value)
		}
	}
	env = append(env, "LANG=C", "LC_ALL=C")
	return append(env, extra...)
}

// SecretScrubber registers the values of every secret-named context
// variable (secret.IsName) in s, a new one when s is nil, so that a script
// echoing its password does not put it in the log.
func SecretScrubber(s *secret.Scrubber, vars *shvars.Vars) *secret.Scrubber {
	if s == nil {
		s = &secret.Scrubber{}
	}
	for _, v := range vars.List() {
		if secret.IsName(v.Name) {
			s.Add(secret.New(v.Value))
		}
	}
	return s
}
