package sshkeys

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"one-contextd/engine"
	"one-contextd/guest/internal/guesttest"
	"one-contextd/runner"
)

func TestPrecheckStructure(t *testing.T) {
	good := []string{
		"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDoEF/oVRcmZp+augoIs0qQo4lpvTUqCIC7T//5gmnFe alice@example.org",
		`from="192.0.2.0/24",no-pty ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDoEF/oVRcmZp+augoIs0qQo4lpvTUqCIC7T//5gmnFe`,
	}
	for _, k := range good {
		if err := precheck(k); err != nil {
			t.Errorf("%q: %v", k, err)
		}
	}
	bad := []string{
		"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE2eE2eE2eE2eE2eE2eE2eE2eE2eE2eE2eE2eE2eE2e x", // 40 bytes, not 51
		"ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIDoEF/oVRcmZp+augoIs0qQo4lpvTUqCIC7T//5gmnFe",      // blob says ed25519
		"ssh-ed25519 !!!notbase64!!!",
		"ssh-ed25519",
		"hello world",
		"",
	}
	for _, k := range bad {
		if err := precheck(k); err == nil {
			t.Errorf("%q accepted", k)
		}
	}
}

// An image without ssh-keygen still gets its keys, checked by precheck.
func TestKeysInstalledWithoutSSHKeygen(t *testing.T) {
	f := newFixture(t)
	missing := &runner.Fake{Handler: func(c runner.Cmd) (runner.Result, error) {
		return runner.Result{}, fmt.Errorf("%s: %w", c.String(), &exec.Error{Name: c.Name, Err: exec.ErrNotFound})
	}}
	c := guesttest.Context(t, map[string]string{"SSH_PUBLIC_KEY": keyAlice + "\nssh-ed25519 AAAA\n" + keyOps})
	r, rec := engine.NewTestRecorder()
	if err := Apply(context.Background(), r, Input{Users: c.Users, Root: f.root, Run: missing}); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(f.path("root/.ssh/authorized_keys"))
	if string(data) != BeginMarker+"\n"+keyAlice+"\n"+keyOps+"\n"+EndMarker+"\n" {
		t.Errorf("root's keys:\n%s", data)
	}
	if len(rec.Problems) != 1 || !strings.HasPrefix(rec.Problems[0], "SSH_PUBLIC_KEY: key 2 ") {
		t.Errorf("problems %q", rec.Problems)
	}
	if len(missing.Calls) != 1 {
		t.Errorf("ssh-keygen was tried %d times; once is enough to learn it is missing", len(missing.Calls))
	}
}
