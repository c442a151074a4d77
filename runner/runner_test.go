package runner

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
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
