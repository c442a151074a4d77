package runner

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestExecSuccessStdinAndStreaming(t *testing.T) {
	var live bytes.Buffer
	res, err := Exec{}.Run(context.Background(), Cmd{Name: "/bin/sh", Args: []string{"-c", "cat; echo out; echo err >&2"},
		Stdin: []byte("from-stdin\n"), Stdout: &live})
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Stdout) != "from-stdin\nout\n" || string(res.Stderr) != "err\n" || res.ExitCode != 0 {
		t.Errorf("result %+v", res)
	}
	if live.String() != "from-stdin\nout\n" {
		t.Errorf("streamed %q", live.String())
	}
}

func TestExecExitErrorNamesTheCommandNotStdin(t *testing.T) {
	_, err := Exec{}.Run(context.Background(), Cmd{Name: "/bin/sh", Args: []string{"-c", "echo bad thing >&2; exit 3"}, Stdin: []byte("s3cret-stdin")})
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 3 || !strings.Contains(err.Error(), "bad thing") {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Error("stdin leaked into the error")
	}
	if _, err := (Exec{}).Run(context.Background(), Cmd{Name: "/nonexistent/tool"}); err == nil || !strings.Contains(err.Error(), "/nonexistent/tool") {
		t.Errorf("missing tool: %v", err)
	}
}

func TestExecTimeoutKillsTheWholeProcessGroup(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "child-survived")
	start := time.Now()
	// The child outlives the shell unless the whole group is killed.
	_, err := Exec{}.Run(context.Background(), Cmd{Name: "/bin/sh", Timeout: 300 * time.Millisecond,
		Args: []string{"-c", "(sleep 1; touch " + marker + ") & sleep 30"}})
	var ee *ExitError
	if !errors.As(err, &ee) || !ee.TimedOut {
		t.Fatalf("err = %v, want a timeout", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("the timeout did not stop the tool in time: %v", time.Since(start))
	}
	time.Sleep(1500 * time.Millisecond)
	if _, err := os.Stat(marker); err == nil {
		t.Error("a child of the timed-out tool kept running")
	}
}

func TestFakeRecords(t *testing.T) {
	f := &Fake{Handler: func(c Cmd) (Result, error) {
		if c.Name == "fail" {
			return Result{ExitCode: 1}, &ExitError{Cmd: c.String(), Code: 1}
		}
		return Result{Stdout: []byte("ok")}, nil
	}}
	if res, err := f.Run(context.Background(), Cmd{Name: "useradd", Args: []string{"--root", "/r", "u"}, Stdin: []byte("x")}); err != nil || string(res.Stdout) != "ok" {
		t.Fatal(res, err)
	}
	if _, err := f.Run(context.Background(), Cmd{Name: "fail"}); err == nil {
		t.Fatal("want error")
	}
	if got := strings.Join(f.Commands(), "|"); got != "useradd --root /r u|fail" {
		t.Errorf("commands %q", got)
	}
}

func TestTail(t *testing.T) {
	if got := Tail([]byte("a\n\nb\nc\nd\n\n"), 2); got != "c; d" {
		t.Errorf("Tail = %q", got)
	}
}

// waitForFile polls for path, giving up after a generous bound so that a
// broken runner fails the test instead of hanging it.
func waitForFile(t *testing.T, path string) bool {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return true
		}
	}
	return false
}

// killGroupFrom kills, at the end of the test, the process group whose id
// the tool wrote to pidFile (the tool's own pid: it leads its group).
func killGroupFrom(t *testing.T, pidFile string) {
	t.Cleanup(func() {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return
		}
		if pgid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pgid > 1 {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
	})
}

// A tool that exits 0 while a child it started keeps running succeeds
// without waiting for the child, and the child can still write to the
// stdout and stderr it inherited afterwards. The child waits for a gate
// the test opens only after Run returned, so a Run that waited for the
// child's output could not succeed, and a closed output pipe would kill
// the child (SIGPIPE) before it leaves its marker.
func TestExecDoesNotWaitForABackgroundChild(t *testing.T) {
	dir := t.TempDir()
	gate, marker, pid := filepath.Join(dir, "gate"), filepath.Join(dir, "marker"), filepath.Join(dir, "pid")
	killGroupFrom(t, pid)
	script := `echo $$ > "$1"
( i=0; while [ ! -e "$2" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
  echo late; echo late >&2; touch "$3"; sleep 30 ) &
echo early; echo early-err >&2; exit 0`
	var live bytes.Buffer
	res, err := Exec{}.Run(context.Background(), Cmd{Name: "/bin/sh", Args: []string{"-c", script, "sh", pid, gate, marker},
		Timeout: 20 * time.Second, Stdout: &live})
	if err != nil {
		t.Errorf("a tool that exited 0 failed: %v", err)
	}
	if res.ExitCode != 0 || string(res.Stdout) != "early\n" || string(res.Stderr) != "early-err\n" || live.String() != "early\n" {
		t.Errorf("result %+v, streamed %q", res, live.String())
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if !waitForFile(t, marker) {
		t.Fatal("the background child did not survive writing to its stdout and stderr after the tool's exit")
	}
}

// A failing tool's exit code and output are reported even when a child it
// started keeps the output open.
func TestExecFailureWithABackgroundChild(t *testing.T) {
	pid := filepath.Join(t.TempDir(), "pid")
	killGroupFrom(t, pid)
	res, err := Exec{}.Run(context.Background(), Cmd{Name: "/bin/sh", Timeout: 20 * time.Second,
		Args: []string{"-c", `echo $$ > "$1"; sleep 30 & echo partial; echo it broke >&2; exit 4`, "sh", pid}})
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 4 || ee.TimedOut || !strings.Contains(err.Error(), "exit status 4: it broke") {
		t.Fatalf("err = %v, want exit status 4 with the stderr tail", err)
	}
	if res.ExitCode != 4 || string(res.Stdout) != "partial\n" {
		t.Errorf("result %+v", res)
	}
}
