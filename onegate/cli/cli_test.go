package cli

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"one-contextd/internal/testenv"

	"one-contextd/onegate/fakegate"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// fixturesDir finds shared/reference/onegate-fixtures beside the repository.
func fixturesDir(t *testing.T) string {
	return testenv.Shared(t, "reference", "onegate-fixtures")
}

// gate starts the fixtures' scenario plus a virtual router (VM 51).
func gate(t *testing.T) *fakegate.Server {
	t.Helper()
	s := fakegate.Start(t)
	s.SetEndpoint("http://169.254.16.9:5030")
	if err := s.AddShopScenario(); err != nil {
		t.Fatal(err)
	}
	if err := s.AddVMSpec(fakegate.VMSpec{ID: 51, Name: "vr-edge_0", NICs: []fakegate.NICSpec{{IP: "192.0.2.251"}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddVRouter(fakegate.VRouterSpec{ID: 3, Name: "vr-edge", VMs: []int{51},
		NICs: []map[string]string{{"NETWORK_ID": "2", "FLOATING_IP": "YES", "IP": "192.0.2.254"}}}); err != nil {
		t.Fatal(err)
	}
	s.AddVNet(fakegate.VNetSpec{ID: 2, Name: "private", Template: map[string]string{"NETWORK_ADDRESS": "192.0.2.0", "NETWORK_MASK": "255.255.255.0", "GATEWAY": "192.0.2.1", "DNS": "192.0.2.1"}})
	return s
}

type result struct {
	code           int
	stdout, stderr string
}

func run(env map[string]string, args ...string) result {
	var out, errb bytes.Buffer
	code := Main(args, func(k string) string { return env[k] }, &out, &errb)
	return result{code, out.String(), errb.String()}
}

func envFor(t *testing.T, s *fakegate.Server, vmid int) map[string]string {
	t.Helper()
	tok, err := s.Token(vmid)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{"ONEGATE_ENDPOINT": s.URL, "VMID": fmt.Sprint(vmid), "TOKENTXT": tok,
		"ONECONTEXT_ENV_FILE": filepath.Join(t.TempDir(), "absent")}
}

// golden compares r with testdata/<name>.golden, the server's address
// replaced by HOST:PORT.
func golden(t *testing.T, name string, s *fakegate.Server, r result) {
	t.Helper()
	got := fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.code, r.stdout, r.stderr)
	if s != nil {
		got = strings.ReplaceAll(got, strings.TrimPrefix(s.URL, "http://"), "HOST:PORT")
	}
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from %s\n--- got\n%s\n--- want\n%s", name, path, got, want)
	}
}

func TestGolden(t *testing.T) {
	cases := []struct {
		name  string
		vmid  int
		args  []string
		check func(t *testing.T, s *fakegate.Server)
	}{
		{"vm-show", 41, []string{"vm", "show"}, nil},
		{"vm-show-peer", 41, []string{"vm", "show", "40"}, nil},
		{"vm-show-extended", 41, []string{"vm", "show", "--extended"}, nil},
		{"vm-show-json", 41, []string{"vm", "show", "--json"}, nil},
		{"vm-show-outsider", 41, []string{"vm", "show", "99"}, nil},
		{"vm-update", 41, []string{"vm", "update", "--data", "READY=YES"}, func(t *testing.T, s *fakegate.Server) {
			if v, _ := s.VMAttr(41, "READY"); v != "YES" {
				t.Fatalf("READY=%q", v)
			}
			reqs := s.Requests()
			if b := reqs[len(reqs)-1].Body; b != "data=READY%3DYES&type=1" {
				t.Fatalf("body %q", b)
			}
		}},
		{"vm-update-peer-multi", 41, []string{"vm", "update", "42", `-dA=1\nB=2`}, func(t *testing.T, s *fakegate.Server) {
			if v, _ := s.VMAttr(42, "B"); v != "2" {
				t.Fatalf("B=%q", v)
			}
		}},
		{"vm-erase", 41, []string{"vm", "update", "--erase", "APP_QUEUE_DEPTH"}, func(t *testing.T, s *fakegate.Server) {
			if _, ok := s.VMAttr(41, "APP_QUEUE_DEPTH"); ok {
				t.Fatal("not erased")
			}
		}},
		{"vm-erase-missing", 41, []string{"vm", "update", "-e", "NOPE"}, nil},
		{"vm-update-no-data", 41, []string{"vm", "update"}, nil},
		{"vm-update-restricted", 41, []string{"vm", "update", "--data=SERVICE_ID=9"}, nil},
		{"vm-terminate-hard", 41, []string{"vm", "terminate", "42", "--hard"}, func(t *testing.T, s *fakegate.Server) {
			if a := s.Actions(42); len(a) != 1 || a[0] != "terminate hard" {
				t.Fatalf("actions %v", a)
			}
		}},
		{"vm-poweroff", 41, []string{"--hard", "vm", "poweroff", "40"}, nil},
		{"vm-action-no-id", 41, []string{"vm", "terminate"}, nil},
		{"vm-reboot-restricted", 41, []string{"vm", "reboot", "42"}, nil},
		{"vm-unknown", 41, []string{"vm", "fly"}, nil},
		{"service-show", 41, []string{"service", "show"}, nil},
		{"service-show-extended", 41, []string{"service", "show", "--extended"}, nil},
		{"service-show-json", 41, []string{"service", "show", "-j"}, nil},
		{"service-show-not-in-service", 51, []string{"service", "show"}, nil},
		{"service-scale", 41, []string{"service", "scale", "--role", "frontend", "--card", "3"}, func(t *testing.T, s *fakegate.Server) {
			if c, _, _ := s.Cardinality("frontend"); c != 3 {
				t.Fatalf("cardinality %d", c)
			}
			if r := run(envFor(t, s, 41), "service", "show"); !strings.Contains(r.stdout, "STATE               : SCALING") ||
				!strings.Contains(r.stdout, "frontend_2_(service_7)") {
				t.Fatalf("after scale:\n%s", r.stdout)
			}
		}},
		{"service-scale-refused", 41, []string{"service", "scale", "-r", "frontend", "-c", "2"}, nil},
		{"service-scale-no-role", 41, []string{"service", "scale", "-c", "2"}, nil},
		{"service-unknown", 41, []string{"service", "list"}, nil},
		{"vrouter-show", 51, []string{"vrouter", "show"}, nil},
		{"vrouter-show-json", 51, []string{"vrouter", "show", "--json"}, nil},
		{"vnet-show", 51, []string{"vnet", "show", "2"}, nil},
		{"vnet-show-json-extended", 51, []string{"vnet", "show", "2", "--json", "--extended"}, nil},
		{"vnet-show-no-id", 51, []string{"vnet", "show"}, nil},
		{"vnet-show-from-service-vm", 41, []string{"vnet", "show", "2"}, nil},
		{"help", 41, []string{"-h"}, nil},
		{"no-args", 41, nil, nil},
		{"unknown-command", 41, []string{"host", "list"}, nil},
		{"invalid-option", 41, []string{"vm", "show", "--colour"}, nil},
	}
	var token string
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := gate(t)
			env := envFor(t, s, tc.vmid)
			token = env["TOKENTXT"]
			r := run(env, tc.args...)
			golden(t, tc.name, s, r)
			if strings.Contains(r.stdout+r.stderr, token) {
				t.Fatal("token in output")
			}
			if tc.check != nil {
				tc.check(t, s)
			}
		})
	}
}

// TestFixtureOutputs: the text outputs equal the fixtures' samples of the
// reference command byte for byte.
func TestFixtureOutputs(t *testing.T) {
	fx := fixturesDir(t)
	for file, args := range map[string][]string{
		"cli-vm-show.txt":               {"vm", "show"},
		"cli-service-show.txt":          {"service", "show"},
		"cli-service-show-extended.txt": {"service", "show", "--extended"},
	} {
		want, err := os.ReadFile(filepath.Join(fx, file))
		if err != nil {
			t.Fatal(err)
		}
		s := gate(t)
		r := run(envFor(t, s, 41), args...)
		if r.code != 0 || r.stdout != string(want) || r.stderr != "" {
			t.Errorf("%s: exit %d\n--- got\n%s\n--- want\n%s\n--- stderr\n%s", file, r.code, r.stdout, want, r.stderr)
		}
	}
}

func TestFailures(t *testing.T) {
	s := gate(t)
	env := envFor(t, s, 41)
	badTok := map[string]string{}
	for k, v := range env {
		badTok[k] = v
	}
	badTok["TOKENTXT"] = "bm90IHRoZSB0b2tlbiBhdCBhbGw="
	golden(t, "error-401", s, run(badTok, "vm", "show"))

	s.SetFault(fakegate.Fault{Status5xx: 500})
	golden(t, "error-500", s, run(env, "vm", "update", "--data", "READY=YES"))

	s.SetFault(fakegate.Fault{Down: true})
	r := run(env, "vm", "show")
	golden(t, "error-refused", s, r)
	if strings.Contains(r.stderr, env["TOKENTXT"]) {
		t.Fatal("token in output")
	}

	// Neither environment nor env file: a clear message.
	r = run(map[string]string{"ONECONTEXT_ENV_FILE": filepath.Join(t.TempDir(), "none")}, "vm", "show")
	if r.code != exitFail || !strings.Contains(r.stderr, "no OneGate endpoint") {
		t.Fatalf("no config: %+v", r)
	}
}

// TestEnvFile: without environment variables the command reads the agent's
// env file (NAME='value', '\” escaping) without a shell.
func TestEnvFile(t *testing.T) {
	s := gate(t)
	tok, _ := s.Token(41)
	dir := t.TempDir()
	path := filepath.Join(dir, "one_env")
	content := "ONEGATE_ENDPOINT='" + s.URL + "'\nVMID='41'\nONEGATE_TOKEN='" + tok + "'\n" +
		"MOTD='it'\\''s $(rm -rf /) fine'\nSTART_SCRIPT='echo 1\necho 2'\n"
	if err := os.WriteFile(path, []byte(content), 0o400); err != nil {
		t.Fatal(err)
	}
	r := run(map[string]string{"ONECONTEXT_ENV_FILE": path}, "vm", "show")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "VM 41\n") {
		t.Fatalf("env file: %+v", r)
	}
	// The environment wins over the file, variable by variable.
	r = run(map[string]string{"ONECONTEXT_ENV_FILE": path, "VMID": "40", "ONEGATE_TOKEN": mustToken(t, s, 40)}, "vm", "show")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "VM 40\n") {
		t.Fatalf("env over file: %+v", r)
	}
	// one-context's own format (export NAME="value") is read too.
	legacy := filepath.Join(dir, "legacy_env")
	if err := os.WriteFile(legacy, []byte("export TOKENTXT=\""+tok+"\"\nexport VMID=\"41\"\nexport ONEGATE_ENDPOINT=\""+s.URL+"\"\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	r = run(map[string]string{"ONECONTEXT_ENV_FILE": legacy}, "vm", "show")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "VM 41\n") {
		t.Fatalf("legacy env file: %+v", r)
	}
}

func mustToken(t *testing.T, s *fakegate.Server, id int) string {
	t.Helper()
	tok, err := s.Token(id)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestParseOptions(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want options
		rest string
	}{
		{[]string{"vm", "update", "-d", "A=1", "-e", "B"}, options{data: "B", updateType: 2}, "vm update"},
		{[]string{"-jf", "vm", "terminate", "3"}, options{json: true, hard: true}, "vm terminate 3"},
		{[]string{"--ext", "service", "show", "--json"}, options{extended: true, json: true}, "service show"},
		{[]string{"--role=web", "-c3"}, options{role: "web", hasRole: true, cardinality: "3", hasCard: true}, ""},
		{[]string{"vm", "--", "-x"}, options{}, "vm -x"},
	} {
		got, rest, err := parseOptions(tc.args)
		if err != nil || got != tc.want || strings.Join(rest, " ") != tc.rest {
			t.Errorf("%q: %+v %q %v", tc.args, got, rest, err)
		}
	}
	for _, bad := range [][]string{{"--nope"}, {"-x"}, {"--data"}, {"--json=1"}, {"--e"}} {
		if _, _, err := parseOptions(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
