package agent

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"one-contextd/engine"
	"one-contextd/fsroot"
	"one-contextd/runner"
	"one-contextd/secret"
)

type fakeResolver struct{ ptr, addr string }

func (f fakeResolver) LookupAddr(context.Context, string) ([]string, error) {
	return []string{f.ptr}, nil
}

func (f fakeResolver) LookupHost(context.Context, string) ([]string, error) {
	return []string{f.addr}, nil
}

// A name DNS_HOSTNAME or EC2_HOSTNAME chooses at the network stage puts
// its domain on the domain line of the agent's resolv.conf, as
// one-context's net-15-hostname does for every source of the name; the
// local stage of the next boot keeps the line, so nothing changes back
// and forth between the stages.
func TestDomainOfAChosenNameGoesToResolvConf(t *testing.T) {
	first := netip.MustParseAddr("192.0.2.10")
	for _, tc := range []struct {
		name, variable string
		opt            func(*Options)
		domain, hosts  string
	}{
		{"DNS_HOSTNAME", "DNS_HOSTNAME='YES'",
			func(o *Options) { o.Resolver = fakeResolver{ptr: "web.example.org.", addr: first.String()} },
			"example.org", "192.0.2.10 web.example.org web"},
		{"EC2_HOSTNAME", "EC2_HOSTNAME='YES'",
			func(o *Options) {
				o.EC2 = func(context.Context) (string, error) { return "ip-192-0-2-10.ec2.internal", nil }
				o.Resolver = fakeResolver{addr: "198.51.100.1"}
			},
			"ec2.internal", "127.0.0.1 ip-192-0-2-10.ec2.internal ip-192-0-2-10"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := t.TempDir()
			ctxSh := "VMID='5'\nETH0_MAC='02:00:c0:00:02:0a'\nETH0_IP='192.0.2.10'\nETH0_MASK='255.255.255.0'\n" +
				"ETH0_DNS='192.0.2.53'\n" + tc.variable + "\n"
			if err := os.WriteFile(filepath.Join(src, "context.sh"), []byte(ctxSh), 0o644); err != nil {
				t.Fatal(err)
			}
			rootDir := t.TempDir()
			for name, content := range map[string]string{
				"etc/passwd": "root:x:0:0:root:/root:/bin/bash\n", "etc/group": "root:x:0:\n",
				"etc/shadow": "root:*:19000:0:99999:7:::\n", "etc/os-release": "ID=debian\nVERSION_ID=\"12\"\n",
			} {
				p := filepath.Join(rootDir, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			root, err := fsroot.New(rootDir)
			if err != nil {
				t.Fatal(err)
			}
			boot := "boot-1\n"
			opt := Options{Root: root, Source: src, Log: zerolog.Nop(), Run: &runner.Fake{}, Netlink: readOnlyNetlink{},
				LockWait: -1, ReadHost: func(string) ([]byte, error) { return []byte(boot), nil },
				FirstIP: func(context.Context) (netip.Addr, error) { return first, nil }}
			tc.opt(&opt)
			run := func(stage string) *engine.Record {
				t.Helper()
				o := opt
				o.Stage, o.Scrubber = stage, &secret.Scrubber{}
				return Run(context.Background(), o)
			}
			resolvConf := func() string {
				data, _ := os.ReadFile(filepath.Join(rootDir, "etc/resolv.conf"))
				return string(data)
			}
			changes := func(rec *engine.Record, step string) []string {
				s, _ := rec.Step(step)
				return s.Changes
			}

			run(StageLocal)
			if got := resolvConf(); !strings.Contains(got, "nameserver 192.0.2.53\n") || strings.Contains(got, "domain") {
				t.Fatalf("local stage of the first boot wrote:\n%s", got)
			}
			rec := run(StageNetwork)
			if got := resolvConf(); !strings.HasSuffix(got, "nameserver 192.0.2.53\ndomain "+tc.domain+"\n") {
				t.Errorf("after the network stage resolv.conf is:\n%s\nwant its domain line %q", got, tc.domain)
			}
			if hosts, _ := os.ReadFile(filepath.Join(rootDir, "etc/hosts")); !strings.Contains(string(hosts), tc.hosts+"\n") {
				t.Errorf("hosts:\n%s\nwant the line %q", hosts, tc.hosts)
			}
			if s, _ := rec.Step("hostname"); s.Status != engine.OK || len(s.Problems) != 0 {
				t.Errorf("hostname step: %+v", s)
			}
			after := resolvConf()

			boot = "boot-2\n"
			rec = run(StageLocal)
			if c := changes(rec, "network"); len(c) != 0 || resolvConf() != after {
				t.Errorf("local stage of the next boot: changes %q, resolv.conf:\n%s", c, resolvConf())
			}
			rec = run(StageNetwork)
			if c := changes(rec, "hostname"); len(c) != 0 || resolvConf() != after {
				t.Errorf("network stage of the next boot: changes %q, resolv.conf:\n%s", c, resolvConf())
			}
		})
	}
}
