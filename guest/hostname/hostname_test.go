package hostname

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"one-contextd/context/settings"
	"one-contextd/engine"
	"one-contextd/fsroot"
	"one-contextd/guest/internal/guesttest"
	"one-contextd/runner"
)

type fakeKernel struct {
	name string
	sets int
}

func (k *fakeKernel) Hostname() (string, error)     { return k.name, nil }
func (k *fakeKernel) SetHostname(name string) error { k.name = name; k.sets++; return nil }

type fakeDNS struct {
	ptr   map[string][]string
	hosts map[string][]string
}

func (f fakeDNS) LookupAddr(_ context.Context, a string) ([]string, error) {
	if n, ok := f.ptr[a]; ok {
		return n, nil
	}
	return nil, errors.New("no PTR")
}

func (f fakeDNS) LookupHost(_ context.Context, h string) ([]string, error) {
	if a, ok := f.hosts[h]; ok {
		return a, nil
	}
	return nil, errors.New("NXDOMAIN")
}

var firstIP = netip.MustParseAddr("192.0.2.80")

func input(t *testing.T, id settings.Identity, k Kernel) (Input, string) {
	dir := t.TempDir()
	root, err := fsroot.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return Input{
		Identity: id, Root: root, Run: &runner.Fake{}, Kernel: k,
		Resolver: fakeDNS{
			ptr:   map[string][]string{"192.0.2.80": {"vm80.example.org."}},
			hosts: map[string][]string{"mgmt-01": {"192.0.2.80"}},
		},
		FirstIP: func(context.Context) (netip.Addr, error) { return firstIP, nil },
		EC2:     func(context.Context) (string, error) { return "", errors.New("no metadata service") },
	}, dir
}

func TestVector08SetsHostnameOnce(t *testing.T) {
	c := guesttest.Vector(t, "08-user-sudo-keys-crypted")
	k := &fakeKernel{name: "localhost"}
	in, dir := input(t, c.Identity, k)
	r, rec := engine.NewTestRecorder()
	if err := Apply(context.Background(), r, in); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "etc/hostname")); string(data) != "mgmt-01\n" {
		t.Errorf("/etc/hostname = %q", data)
	}
	if k.name != "mgmt-01" || len(rec.Changes) != 2 {
		t.Errorf("kernel %q, changes %v", k.name, rec.Changes)
	}
	d := Decide(context.Background(), r, in)
	if d.From != "SET_HOSTNAME" || d.HostsIP != firstIP {
		t.Errorf("decision %+v: the name resolves to the first IP, so /etc/hosts should use it", d)
	}
	r, rec = engine.NewTestRecorder()
	if err := Apply(context.Background(), r, in); err != nil || len(rec.Changes) != 0 || k.sets != 1 {
		t.Errorf("second run: %v %v, %d sets", err, rec.Changes, k.sets)
	}
}

func TestPrecedenceAndSources(t *testing.T) {
	for _, c := range []struct {
		name    string
		vars    map[string]string
		want    Decision
		problem string
	}{
		{"SET_HOSTNAME wins over DNS", map[string]string{"SET_HOSTNAME": "web 01", "DNS_HOSTNAME": "YES"},
			Decision{Name: "web-01", Short: "web-01", From: "SET_HOSTNAME", HostsIP: netip.MustParseAddr("127.0.0.1")}, ""},
		{"DNS_HOSTNAME reverse lookup", map[string]string{"DNS_HOSTNAME": "YES", "EC2_HOSTNAME": "YES"},
			Decision{Name: "vm80.example.org", Short: "vm80", Domain: "example.org", From: "DNS_HOSTNAME", HostsIP: firstIP}, ""},
		{"EC2 falls back to ip-a-b-c-d", map[string]string{"EC2_HOSTNAME": "YES"},
			Decision{Name: "ip-192-0-2-80", Short: "ip-192-0-2-80", From: "EC2_HOSTNAME", HostsIP: netip.MustParseAddr("127.0.0.1")}, ""},
		{"nothing set", map[string]string{}, Decision{}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := guesttest.Context(t, c.vars)
			in, _ := input(t, ctx.Identity, &fakeKernel{})
			r, rec := engine.NewTestRecorder()
			if got := Decide(context.Background(), r, in); got != c.want {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
			if len(rec.Problems) != 0 {
				t.Errorf("problems %v", rec.Problems)
			}
		})
	}
}

func TestInvalidNamesAreProblemsNamingTheVariable(t *testing.T) {
	// settings sanitises SET_HOSTNAME and rejects what stays invalid.
	c := guesttest.Context(t, map[string]string{"SET_HOSTNAME": "-.-"})
	if !slices.Contains(guesttest.ProblemVars(c), "SET_HOSTNAME") || c.Identity.Hostname != "" {
		t.Errorf("settings: %v, %q", c.Problems, c.Identity.Hostname)
	}
	// A name that reaches the step invalid (built by hand, or from DNS).
	for _, tc := range []struct {
		id      settings.Identity
		ptr     string
		problem string
	}{
		{settings.Identity{Hostname: "a..b"}, "", "SET_HOSTNAME: "},
		{settings.Identity{DNSHostname: true}, "bad_name.example.org.", "DNS_HOSTNAME: "},
		{settings.Identity{DNSHostname: true}, strings.Repeat("x", 64) + ".example.", "DNS_HOSTNAME: "},
	} {
		k := &fakeKernel{name: "keep"}
		in, dir := input(t, tc.id, k)
		if tc.ptr != "" {
			in.Resolver = fakeDNS{ptr: map[string][]string{firstIP.String(): {tc.ptr}}}
		}
		r, rec := engine.NewTestRecorder()
		err := Apply(context.Background(), r, in)
		if !errors.Is(err, engine.ErrSkip) {
			t.Errorf("%+v: err %v, want skip", tc.id, err)
		}
		if len(rec.Problems) != 1 || !strings.HasPrefix(rec.Problems[0], tc.problem) {
			t.Errorf("%+v: problems %v", tc.id, rec.Problems)
		}
		if _, err := os.Lstat(filepath.Join(dir, "etc/hostname")); err == nil || k.sets != 0 {
			t.Errorf("%+v: the hostname was changed", tc.id)
		}
	}
}

func TestNotifyOnlyWhenTheServiceRuns(t *testing.T) {
	dir := t.TempDir()
	root, _ := fsroot.New(dir)
	look := func(string) (string, bool) { return "/usr/bin/x", true }
	fake := &runner.Fake{}
	in := Input{Root: root, Run: fake, LookPath: look}
	r, _ := engine.NewTestRecorder()
	if err := notify(context.Background(), r, in, "web-01"); err != nil || len(fake.Calls) != 0 {
		t.Errorf("neither service runs: %v %v", err, fake.Commands())
	}
	if err := os.MkdirAll(filepath.Join(dir, "run/NetworkManager"), 0o755); err != nil {
		t.Fatal(err)
	}
	_ = notify(context.Background(), r, in, "web-01")
	if err := os.MkdirAll(filepath.Join(dir, "run/systemd/system"), 0o755); err != nil {
		t.Fatal(err)
	}
	// systemd without a D-Bus system bus: no hostnamed to tell, NM is told.
	_ = notify(context.Background(), r, in, "web-01")
	if err := os.MkdirAll(filepath.Join(dir, "run/dbus"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "run/dbus/system_bus_socket"), nil, 0o666); err != nil {
		t.Fatal(err)
	}
	_ = notify(context.Background(), r, in, "web-01")
	in.LookPath = func(string) (string, bool) { return "", false }
	_ = notify(context.Background(), r, in, "web-01")
	want := []string{"nmcli general hostname web-01", "nmcli general hostname web-01", "hostnamectl set-hostname --static web-01"}
	if got := fake.Commands(); !slices.Equal(got, want) {
		t.Errorf("calls %v, want %v", got, want)
	}
}

const utsChildEnv = "ONE_CONTEXTD_TEST_UTS_CHILD"

// TestUnixKernelInNewUTSNamespace sets the kernel hostname for real, in a
// child process with its own UTS namespace, never this machine's.
func TestUnixKernelInNewUTSNamespace(t *testing.T) {
	if dir := os.Getenv(utsChildEnv); dir != "" {
		utsChild(dir)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a UTS namespace")
	}
	before, _ := os.Hostname()
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestUnixKernelInNewUTSNamespace$", "-test.v")
	cmd.Env = append(os.Environ(), utsChildEnv+"="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUTS}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	for _, want := range []string{"first: kernel=uts-web-01 changes=2", "second: kernel=uts-web-01 changes=0"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("child output lacks %q:\n%s", want, out)
		}
	}
	if after, _ := os.Hostname(); after != before {
		t.Fatalf("this machine's hostname changed from %q to %q", before, after)
	}
}

func utsChild(dir string) {
	root, err := fsroot.New(dir)
	if err != nil {
		fmt.Println("child:", err)
		os.Exit(1)
	}
	in := Input{Identity: settings.Identity{Hostname: "uts-web-01.example.org"}, Root: root, Run: &runner.Fake{}, Kernel: UnixKernel{},
		Resolver: fakeDNS{}, FirstIP: func(context.Context) (netip.Addr, error) { return firstIP, nil }}
	for _, run := range []string{"first", "second"} {
		r, rec := engine.NewTestRecorder()
		if err := Apply(context.Background(), r, in); err != nil {
			fmt.Println("child:", err)
			os.Exit(1)
		}
		k, _ := UnixKernel{}.Hostname()
		fmt.Printf("%s: kernel=%s changes=%d\n", run, k, len(rec.Changes))
	}
}

func TestNotifyFailureIsAProblemNotAFailure(t *testing.T) {
	dir := t.TempDir()
	root, _ := fsroot.New(dir)
	for _, d := range []string{"run/systemd/system", "run/dbus"} {
		_ = os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	_ = os.WriteFile(filepath.Join(dir, "run/dbus/system_bus_socket"), nil, 0o666)
	fake := &runner.Fake{Handler: func(c runner.Cmd) (runner.Result, error) {
		return runner.Result{ExitCode: 1}, &runner.ExitError{Cmd: c.String(), Code: 1, Stderr: "Failed to connect to bus"}
	}}
	r, rec := engine.NewTestRecorder()
	err := notify(context.Background(), r, Input{Root: root, Run: fake, LookPath: func(string) (string, bool) { return "/x", true }}, "web-01")
	if err != nil || len(rec.Problems) != 1 || !strings.Contains(rec.Problems[0], "SET_HOSTNAME") {
		t.Errorf("err %v, problems %v", err, rec.Problems)
	}
}
