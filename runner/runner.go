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
	"os"
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
	// Stdout and Stderr, when set, also receive the output as it comes,
	// within a tenth of a second (for streaming script output into the log
	// line by line). They are written from one goroutine at a time.
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
//
// A tool's stdout and stderr are unlinked temporary files, not pipes, when
// the temporary directory allows: Run then waits for the tool itself and
// not for every process holding its output. A tool (a user's script above
// all) may leave a background process running, `nohup app &` or
// `(sleep 4; echo late) &`: Run returns when the tool exits, and the
// process keeps a real file to write to, so it neither holds up Run nor
// dies of SIGPIPE when nobody reads a pipe any more. What it writes after
// the tool's exit lands in that file, which nothing reads and which goes
// away with the last process holding it; it never reaches a log, so a
// secret it prints cannot either.
type Exec struct{}

// pollInterval is how often output is passed on to Cmd.Stdout and
// Cmd.Stderr while the tool runs.
const pollInterval = 100 * time.Millisecond

// waitDelay bounds the wait for I/O that outlives the tool: copying Stdin
// into a pipe the tool's children still hold, and the output pipes when no
// temporary file could be made.
const waitDelay = 2 * time.Second

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
	cmd.WaitDelay = waitDelay
	if c.Stdin != nil {
		cmd.Stdin = bytes.NewReader(c.Stdin)
	}
	stdout, stderr := newCapture(c.Stdout), newCapture(c.Stderr)
	defer stdout.close()
	defer stderr.close()
	cmd.Stdout, cmd.Stderr = stdout.writer(), stderr.writer()
	start := time.Now()
	err := cmd.Start()
	if err == nil {
		err = wait(cmd, stdout, stderr)
	}
	// What the tool wrote up to its exit; a background child's later
	// output is not waited for.
	readErr := errors.Join(stdout.drain(), stderr.drain())
	res := Result{Stdout: stdout.buf.Bytes(), Stderr: stderr.buf.Bytes(), Duration: time.Since(start)}
	if err == nil {
		if readErr != nil {
			return res, fmt.Errorf("%s: read output: %w", c.String(), readErr)
		}
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

// wait waits for the started tool, passing its output on to the live
// writers every pollInterval meanwhile.
func wait(cmd *exec.Cmd, outs ...*capture) error {
	var live []*capture
	for _, o := range outs {
		if o.f != nil && o.live != nil {
			live = append(live, o)
		}
	}
	if len(live) == 0 {
		return cmd.Wait()
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-tick.C:
			for _, o := range live {
				// A read error shows again in the last drain.
				_ = o.drain()
			}
		}
	}
}

// capture is where one output stream of a tool goes: an unlinked
// temporary file, read back into buf (and passed on to live) as it grows.
// Without a file (the temporary directory is not writable) it is a plain
// buffer behind a pipe, and a background child holds Run up to waitDelay.
type capture struct {
	f    *os.File // nil: pipe into buf
	buf  bytes.Buffer
	live io.Writer // nil: none
}

func newCapture(live io.Writer) *capture {
	c := &capture{live: live}
	f, err := os.CreateTemp("", "one-contextd-output.*")
	if err != nil {
		return c
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return c
	}
	c.f = f
	return c
}

// writer is what the tool gets as its stream.
func (c *capture) writer() io.Writer {
	if c.f != nil {
		return c.f
	}
	return teeTo(&c.buf, c.live)
}

// drain reads what was written to the file since the last drain, up to
// the file's size now, into buf and live. ReadAt leaves the file offset,
// which the tool shares, alone.
func (c *capture) drain() error {
	if c.f == nil {
		return nil
	}
	fi, err := c.f.Stat()
	if err != nil {
		return fmt.Errorf("stat output file: %w", err)
	}
	var chunk []byte
	for off := int64(c.buf.Len()); off < fi.Size(); {
		n := min(fi.Size()-off, 32<<10)
		if int64(len(chunk)) < n {
			chunk = make([]byte, n)
		}
		m, err := c.f.ReadAt(chunk[:n], off)
		if m > 0 {
			c.buf.Write(chunk[:m])
			if c.live != nil {
				_, _ = c.live.Write(chunk[:m])
			}
			off += int64(m)
		}
		if errors.Is(err, io.EOF) {
			return nil // truncated by the tool
		}
		if err != nil {
			return fmt.Errorf("read output file: %w", err)
		}
	}
	return nil
}

// close lets go of the agent's descriptor; a background child keeps its own.
func (c *capture) close() {
	if c.f != nil {
		c.f.Close()
	}
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
