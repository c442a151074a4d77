// Package runner is the agent's one way to run external tools (useradd,
// netplan, growpart, user scripts). Steps get a Runner injected; tests give
// them a Fake that records calls and answers from a table.
//
// Secrets reach tools only through Stdin, never through Args or Env, so a
// command line (which any user can read in /proc) never carries one.
package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Cmd is one tool invocation.
type Cmd struct {
	Name    string
	Args    []string
	Stdin   []byte   // may hold a secret: never logged
	Env     []string // nil: the agent's environment
	Dir     string
	Timeout time.Duration // 0: DefaultTimeout
	// Stdout and Stderr, when set, also receive the output as it comes
	// (for streaming script output into the log line by line).
	Stdout, Stderr io.Writer
}

// DefaultTimeout bounds a tool that hangs.
const DefaultTimeout = 2 * time.Minute

// String is the command line for logs: the name and arguments (which by
// rule never hold a secret), never stdin.
func (c Cmd) String() string {
	if len(c.Args) == 0 {
		return c.Name
	}
	return c.Name + " " + strings.Join(c.Args, " ")
}

// Result is what a finished tool left.
type Result struct {
	ExitCode int
	Stdout   []byte
	Stderr   []byte
	Duration time.Duration
}

// ExitError is a tool that ran and failed.
type ExitError struct {
	Cmd      string
	Code     int
	Stderr   string // last lines, trimmed
	TimedOut bool
}

func (e *ExitError) Error() string {
	msg := fmt.Sprintf("%s: exit status %d", e.Cmd, e.Code)
	if e.TimedOut {
		msg = e.Cmd + ": timed out"
	}
	if e.Stderr != "" {
		msg += ": " + e.Stderr
	}
	return msg
}

// Runner runs tools.
type Runner interface {
	Run(ctx context.Context, c Cmd) (Result, error)
}

// Exec runs real processes.
type Exec struct{}

// Run starts the tool, waits for it within the timeout, and returns an
// *ExitError when it exits non-zero.
func (Exec) Run(ctx context.Context, c Cmd) (Result, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Name, c.Args...)
	cmd.Env = c.Env
	cmd.Dir = c.Dir
	// Own process group so a timeout kills the tool's children too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	if c.Stdin != nil {
		cmd.Stdin = bytes.NewReader(c.Stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = teeTo(&stdout, c.Stdout)
	cmd.Stderr = teeTo(&stderr, c.Stderr)
	start := time.Now()
	err := cmd.Run()
	res := Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), Duration: time.Since(start)}
	if err == nil {
		return res, nil
	}
	res.ExitCode = -1
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		res.ExitCode = ee.ExitCode()
	}
	if ctx.Err() == context.DeadlineExceeded {
		return res, &ExitError{Cmd: c.String(), Code: res.ExitCode, TimedOut: true, Stderr: Tail(res.Stderr, 3)}
	}
	if ee != nil {
		return res, &ExitError{Cmd: c.String(), Code: res.ExitCode, Stderr: Tail(res.Stderr, 3)}
	}
	return res, fmt.Errorf("%s: %w", c.String(), err)
}

func teeTo(buf *bytes.Buffer, w io.Writer) io.Writer {
	if w == nil {
		return buf
	}
	return io.MultiWriter(buf, w)
}

// Tail returns the last n non-empty lines of out, joined by "; ".
func Tail(out []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var keep []string
	for i := len(lines) - 1; i >= 0 && len(keep) < n; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			keep = append([]string{l}, keep...)
		}
	}
	return strings.Join(keep, "; ")
}

// LookPath finds a tool, reporting whether it exists.
func LookPath(name string) (string, bool) {
	p, err := exec.LookPath(name)
	return p, err == nil
}

// Fake records calls and answers them from Handler (nil: success, no output).
type Fake struct {
	mu      sync.Mutex
	Calls   []Cmd
	Handler func(Cmd) (Result, error)
}

// Run records c and returns the handler's answer.
func (f *Fake) Run(_ context.Context, c Cmd) (Result, error) {
	f.mu.Lock()
	f.Calls = append(f.Calls, c)
	h := f.Handler
	f.mu.Unlock()
	if h == nil {
		return Result{}, nil
	}
	return h(c)
}

// Commands returns the recorded command lines.
func (f *Fake) Commands() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, len(f.Calls))
	for i, c := range f.Calls {
		out[i] = c.String()
	}
	return out
}
