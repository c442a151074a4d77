package users

import (
	"context"
	"errors"
	"syscall"
	"testing"

	"one-contextd/context/settings"
	"one-contextd/engine"
	"one-contextd/fsroot"
	"one-contextd/guest/hostname"
	"one-contextd/guest/hosts"
	"one-contextd/guest/internal/debroot"
	"one-contextd/guest/internal/guesttest"
	"one-contextd/guest/sshkeys"
	"one-contextd/guest/timezone"
	"one-contextd/runner"
)

// identityAndUsers is the whole identity+users step for one context:
// hostname, /etc/hosts, user, sudo, password, keys, time zone.
func identityAndUsers(b *testing.B, dir string, c *guesttestContext) int {
	root, err := fsroot.New(dir)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	r, rec := engine.NewTestRecorder()
	run := runner.Exec{}
	hin := hostname.Input{Identity: c.Identity, Root: root, Run: run, Resolver: noDNS{}}
	d := hostname.Decide(ctx, r, hin)
	steps := []error{
		hostname.Set(ctx, r, hin, d),
		hosts.Apply(ctx, r, hosts.Input{Root: root, Name: d.Name, IP: d.HostsIP}),
		Apply(ctx, r, Input{Users: c.Users, Root: root, Run: run}),
		sshkeys.Apply(ctx, r, sshkeys.Input{Users: c.Users, Root: root, Run: run}),
		timezone.Apply(ctx, r, timezone.Input{Timezone: c.System.Timezone, Root: root}),
	}
	for _, err := range steps {
		if err != nil {
			b.Fatal(err)
		}
	}
	return len(rec.Changes)
}

type guesttestContext = struct {
	Identity settings.Identity
	Users    settings.Users
	System   settings.System
}

var errNoDNS = errors.New("no DNS in the benchmark")

func childMaxRSS(b *testing.B) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		b.ReportMetric(float64(ru.Maxrss), "self-maxrss-KiB")
	}
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err == nil {
		b.ReportMetric(float64(ru.Maxrss), "tool-maxrss-KiB")
	}
}

func BenchmarkIdentityUsersFirstRun(b *testing.B) {
	c := vector08(b)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		dir := debroot.New(b)
		b.StartTimer()
		if n := identityAndUsers(b, dir, c); n == 0 {
			b.Fatal("first run changed nothing")
		}
	}
	childMaxRSS(b)
}

func BenchmarkIdentityUsersNoChange(b *testing.B) {
	c := vector08(b)
	dir := debroot.New(b)
	identityAndUsers(b, dir, c)
	b.ReportAllocs()
	for b.Loop() {
		if n := identityAndUsers(b, dir, c); n != 0 {
			b.Fatalf("no-change run made %d changes", n)
		}
	}
	childMaxRSS(b)
}

func vector08(b *testing.B) *guesttestContext {
	v := guesttest.Vector(b, "08-user-sudo-keys-crypted")
	return &guesttestContext{Identity: v.Identity, Users: v.Users, System: v.System}
}

type noDNS struct{}

func (noDNS) LookupAddr(context.Context, string) ([]string, error) { return nil, errNoDNS }
func (noDNS) LookupHost(context.Context, string) ([]string, error) { return nil, errNoDNS }
