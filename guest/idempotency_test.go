// The guest steps together: a second run on the same context makes no
// change, runs no tool and leaves every file as it was.
package guest_test

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"one-contextd/context/settings"
	"one-contextd/engine"
	"one-contextd/fsroot"
	"one-contextd/guest/growfs"
	"one-contextd/guest/hostkeys"
	"one-contextd/guest/hostname"
	"one-contextd/guest/hosts"
	"one-contextd/guest/internal/debroot"
	"one-contextd/guest/internal/guesttest"
	"one-contextd/guest/securetty"
	"one-contextd/guest/sshkeys"
	"one-contextd/guest/timezone"
	"one-contextd/guest/users"
	"one-contextd/runner"
)

// dns answers forward lookups from a table and knows no PTR records, so
// no test reaches a real resolver.
type dns map[string]string

func (d dns) LookupAddr(context.Context, string) ([]string, error) { return nil, nil }
func (d dns) LookupHost(_ context.Context, host string) ([]string, error) {
	if ip, ok := d[host]; ok {
		return []string{ip}, nil
	}
	return nil, nil
}

// guestSteps are the guest steps in the agent's order, with the seams a
// test tree needs: no kernel hostname, injected first IP and DNS.
func guestSteps(c *settings.Context, root *fsroot.Root, run runner.Runner, firstIP netip.Addr, inContainer bool) []engine.Step {
	var decision hostname.Decision
	hn := hostname.Input{
		Identity: c.Identity, Root: root, Run: run,
		Resolver: dns{c.Identity.Hostname: firstIP.String()},
		FirstIP:  func(context.Context) (netip.Addr, error) { return firstIP, nil },
	}
	return []engine.Step{
		{Name: "timezone", Run: func(ctx context.Context, r *engine.Recorder) error {
			return timezone.Apply(ctx, r, timezone.Input{Timezone: c.System.Timezone, Root: root})
		}},
		{Name: "grow-fs", Optional: true, Run: func(ctx context.Context, r *engine.Recorder) error {
			return growfs.Apply(ctx, r, growfs.Input{Mounts: c.System.Grow, Root: root, Run: run})
		}},
		{Name: "users", Run: func(ctx context.Context, r *engine.Recorder) error {
			return users.Apply(ctx, r, users.Input{Users: c.Users, Root: root, Run: run})
		}},
		{Name: "ssh-keys", Needs: []string{"users"}, Run: func(ctx context.Context, r *engine.Recorder) error {
			return sshkeys.Apply(ctx, r, sshkeys.Input{Users: c.Users, Root: root, Run: run})
		}},
		{Name: "securetty", Run: func(ctx context.Context, r *engine.Recorder) error {
			return securetty.Apply(ctx, r, securetty.Input{Securetty: c.Users.Securetty, InContainer: inContainer, Root: root})
		}},
		{Name: "ssh-host-keys", Run: func(ctx context.Context, r *engine.Recorder) error {
			return hostkeys.Apply(ctx, r, hostkeys.Input{Root: root, Run: run})
		}},
		{Name: "hostname", Run: func(ctx context.Context, r *engine.Recorder) error {
			decision = hostname.Decide(ctx, r, hn)
			if decision.IsZero() {
				return engine.Skip("no name")
			}
			return hostname.Set(ctx, r, hn, decision)
		}},
		{Name: "hosts", Needs: []string{"hostname"}, Run: func(ctx context.Context, r *engine.Recorder) error {
			return hosts.Apply(ctx, r, hosts.Input{Root: root, Name: decision.Name, IP: decision.HostsIP})
		}},
	}
}

func TestSecondRunChangesNothing(t *testing.T) {
	for _, tc := range []struct {
		vector      string
		inContainer bool // 13 runs as a container: the securetty rule is commented out
	}{
		{"08-user-sudo-keys-crypted", false},
		{"13-tier-frontend", true},
	} {
		t.Run(tc.vector, func(t *testing.T) {
			c := guesttest.Vector(t, tc.vector)
			// 13 asks for READY without a token file: OneGate's concern.
			for _, p := range c.Problems {
				if p.Var != "REPORT_READY" {
					t.Fatalf("settings problem: %v", p)
				}
			}
			firstIP, err := netip.ParseAddr(c.Vars().Value("ETH0_IP"))
			if err != nil {
				t.Fatal(err)
			}
			dir := debroot.New(t)
			// An image as it may come: no host keys, and the login PAM
			// rule bookworm no longer ships.
			keys, _ := filepath.Glob(filepath.Join(dir, "etc/ssh/ssh_host_*"))
			for _, k := range keys {
				if err := os.Remove(k); err != nil {
					t.Fatal(err)
				}
			}
			pam := filepath.Join(dir, securetty.PAMFile)
			login, err := os.ReadFile(pam)
			if err != nil {
				t.Fatal(err)
			}
			rule := "auth [success=ok new_authtok_reqd=ok ignore=ignore user_unknown=bad default=die] pam_securetty.so\n"
			if err := os.WriteFile(pam, append([]byte(rule), login...), 0o644); err != nil {
				t.Fatal(err)
			}
			root, err := fsroot.New(dir)
			if err != nil {
				t.Fatal(err)
			}
			run := &runner.Fake{Handler: func(cmd runner.Cmd) (runner.Result, error) {
				return runner.Exec{}.Run(context.Background(), cmd)
			}}
			steps := guestSteps(c, root, run, firstIP, tc.inContainer)

			first := runSteps(t, steps)
			if first.Changes() == 0 || len(run.Calls) == 0 {
				t.Fatalf("first run: %d changes, %d tools; the sweep tests nothing", first.Changes(), len(run.Calls))
			}
			for _, name := range []string{"timezone", "users", "ssh-keys", "ssh-host-keys", "hostname", "hosts"} {
				if s, _ := first.Step(name); len(s.Changes) == 0 {
					t.Errorf("first run: step %s changed nothing (%s %s)", name, s.Status, s.Error)
				}
			}
			if s, _ := first.Step("securetty"); (len(s.Changes) == 1) != tc.inContainer {
				t.Errorf("first run: securetty changes %v with container %v", s.Changes, tc.inContainer)
			}
			t.Logf("first run: %d changes, %d tools: %s", first.Changes(), len(run.Calls), strings.Join(run.Commands(), "; "))

			before := guesttest.Tree(t, dir)
			run.Calls = nil
			second := runSteps(t, steps)
			if n := second.Changes(); n != 0 {
				for _, s := range second.Steps {
					if len(s.Changes) > 0 {
						t.Errorf("second run: step %s changed %v", s.Name, s.Changes)
					}
				}
			}
			if len(run.Calls) != 0 {
				t.Errorf("second run ran tools: %v", run.Commands())
			}
			after := guesttest.Tree(t, dir)
			for _, p := range guesttest.Diff(before, after) {
				t.Errorf("second run changed %s: %q -> %q", p, before[p], after[p])
			}
			if len(before) < 1000 {
				t.Errorf("the snapshot holds %d entries; not the Debian tree", len(before))
			}
		})
	}
}

// runSteps runs the steps through the engine and fails on a failed step.
func runSteps(t *testing.T, steps []engine.Step) *engine.Record {
	t.Helper()
	rec := &engine.Record{}
	(&engine.Engine{}).Run(context.Background(), rec, steps)
	for _, s := range rec.Steps {
		if s.Status == engine.Failed {
			t.Errorf("step %s failed: %s", s.Name, s.Error)
		}
	}
	return rec
}
