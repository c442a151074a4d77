package settings

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"one-contextd/internal/testenv"

	"one-contextd/context/shvars"
)

func build(t *testing.T, text string, in Inputs) *Context {
	t.Helper()
	vars, errs := shvars.Parse("context.sh", []byte(text))
	if len(errs) > 0 {
		t.Fatalf("parse: %v", errs)
	}
	return Build(vars, in)
}

// sharedDir finds ../shared beside the repository.
func sharedDir(t *testing.T) string { return testenv.Shared(t) }

// Every realistic context oned writes builds without a problem.
func TestRealisticContextsHaveNoProblems(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(sharedDir(t), "vectors", "contexts", "*.context.sh"))
	if len(files) < 15 {
		t.Fatalf("found %d context vectors", len(files))
	}
	for _, f := range files {
		data, _ := os.ReadFile(f)
		c := build(t, string(data), Inputs{TokenFile: []byte("tok\n")})
		for _, p := range c.Problems {
			t.Errorf("%s: %s", filepath.Base(f), p)
		}
	}
}

func TestOneGate(t *testing.T) {
	c := build(t, "ONEGATE_ENDPOINT='http://169.254.16.9:5030'\nVMID='1100'\nREPORT_READY='YES'\nTOKEN='YES'\n",
		Inputs{TokenFile: []byte("dG9rZW4=\n")})
	g := c.OneGate
	if !g.Usable() || g.Token.Reveal() != "dG9rZW4=" || g.TokenFrom != "token.txt" || !g.ReportReady || g.VMID != "1100" {
		t.Fatalf("%+v", g)
	}
	if a, ok := g.LinkLocalAddr(); !ok || a.String() != "169.254.16.9" {
		t.Errorf("link-local: %v %v", a, ok)
	}
	// ONEGATE_TOKEN overrides token.txt.
	c = build(t, "ONEGATE_ENDPOINT='https://gate.example.org/prefix'\nVMID='1'\nONEGATE_TOKEN='over'\n", Inputs{TokenFile: []byte("file\n")})
	if c.OneGate.Token.Reveal() != "over" || c.OneGate.TokenFrom != "ONEGATE_TOKEN" {
		t.Errorf("override: %+v", c.OneGate)
	}
	if _, ok := c.OneGate.LinkLocalAddr(); ok {
		t.Error("a DNS name is not link-local")
	}
	// REPORT_READY is compared case-sensitively, as one-context does.
	c = build(t, "REPORT_READY='yes'\n", Inputs{})
	if c.OneGate.ReportReady || !hasProblem(c, "REPORT_READY") {
		t.Errorf("yes: %+v %v", c.OneGate, c.Problems)
	}
	// READY_SCRIPT is decoded when the whole value is strict base64.
	c = build(t, "READY_SCRIPT='dGVzdCAtZiAvb2s='\n", Inputs{})
	if c.OneGate.ReadyScript != "test -f /ok" {
		t.Errorf("ready script %q", c.OneGate.ReadyScript)
	}
	c = build(t, "READY_SCRIPT='test -f /ok'\n", Inputs{})
	if c.OneGate.ReadyScript != "test -f /ok" {
		t.Errorf("plain ready script %q", c.OneGate.ReadyScript)
	}
	for _, bad := range []string{"ONEGATE_ENDPOINT='ftp://x'", "ONEGATE_ENDPOINT='::'", "VMID='12a'"} {
		c = build(t, bad+"\n", Inputs{})
		name := strings.SplitN(bad, "=", 2)[0]
		if !hasProblem(c, name) {
			t.Errorf("%s: no problem", bad)
		}
	}
	c = build(t, "REPORT_READY='YES'\n", Inputs{})
	if !hasProblem(c, "REPORT_READY") {
		t.Error("REPORT_READY without a gate must be a problem")
	}
}

func TestProblemsNameVariableAndLine(t *testing.T) {
	c := build(t, "A='1'\nETH0_MAC='02:00:00:00:00:01'\nETH0_MTU='10'\n", Inputs{})
	if len(c.Problems) != 1 || c.Problems[0].String() != `context.sh:3: ETH0_MTU: "10" is not a usable MTU (68-65535); the MTU is left as it is` {
		t.Fatalf("%v", c.Problems)
	}
	if len(c.Network.NICs) != 1 || c.Network.NICs[0].MTU != 0 {
		t.Errorf("the NIC is still configured without the MTU: %+v", c.Network.NICs)
	}
}

func hasProblem(c *Context, variable string) bool {
	for _, p := range c.Problems {
		if p.Var == variable {
			return true
		}
	}
	return false
}

// A flag that is neither YES nor NO is NO, as one-context's `= "YES"`
// tests make it, and a problem; SECURETTY's other values change nothing.
func TestFlagsOtherThanYesAreNo(t *testing.T) {
	for _, v := range []string{"false", "0", "off", "N", "maybe"} {
		c := build(t, "USERNAME='alice'\nUSERNAME_SUDO='"+v+"'\nGROW_ROOTFS='"+v+"'\nSECURETTY='"+v+"'\nUSERNAME_PASSWORD_RESET='"+v+"'\n", Inputs{})
		if c.Users.Sudo {
			t.Errorf("USERNAME_SUDO=%q grants sudo", v)
		}
		if len(c.System.Grow) != 0 {
			t.Errorf("GROW_ROOTFS=%q grows %v", v, c.System.Grow)
		}
		if c.Users.Securetty != nil || !c.Users.SecurettyInvalid {
			t.Errorf("SECURETTY=%q: securetty %v, invalid %v", v, c.Users.Securetty, c.Users.SecurettyInvalid)
		}
		if c.Users.PasswordReset {
			t.Errorf("USERNAME_PASSWORD_RESET=%q resets", v)
		}
		for _, name := range []string{"USERNAME_SUDO", "GROW_ROOTFS", "SECURETTY", "USERNAME_PASSWORD_RESET"} {
			if !hasProblem(c, name) {
				t.Errorf("%s=%q: no problem naming it in %v", name, v, c.Problems)
			}
		}
	}
	// The defaults and the two words are as before, in any case.
	c := build(t, "USERNAME='alice'\nSECURETTY='no'\n", Inputs{})
	if !c.Users.Sudo || len(c.System.Grow) != 1 || c.Users.Securetty == nil || *c.Users.Securetty || len(c.Problems) != 0 {
		t.Errorf("defaults: %+v grow %v problems %v", c.Users, c.System.Grow, c.Problems)
	}
}
