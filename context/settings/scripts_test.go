package settings

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"one-contextd/context/shvars"
)

func buildScripts(t *testing.T, contextSh string, medium ...string) *Context {
	t.Helper()
	vars, errs := shvars.Parse("context.sh", []byte(contextSh))
	if len(errs) > 0 {
		t.Fatalf("parse: %v", errs)
	}
	return Build(vars, Inputs{MediumFiles: medium})
}

func TestScriptsVector09(t *testing.T) {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		if filepath.Dir(dir) == dir {
			t.Skip("no go.mod above the test directory")
		}
		dir = filepath.Dir(dir)
	}
	data, err := os.ReadFile(filepath.Join(dir, "..", "shared", "vectors", "contexts", "09-scripts-files.context.sh"))
	if os.IsNotExist(err) {
		t.Skip("shared vectors not present beside the repository")
	}
	if err != nil {
		t.Fatal(err)
	}
	c := buildScripts(t, string(data))
	s := c.Scripts
	if s.StartFrom != "START_SCRIPT_BASE64" || !strings.HasPrefix(string(s.Start), "#!/bin/bash\nset -eu\n") {
		t.Errorf("start %s %q", s.StartFrom, s.Start)
	}
	if !reflect.DeepEqual(s.Init, []string{"init.sh", "users.sh"}) {
		t.Errorf("init %q", s.Init)
	}
	if !reflect.DeepEqual(s.Files, []string{"init.sh", "users.sh", "app.conf"}) {
		t.Errorf("files %q", s.Files)
	}
}

func TestScriptsStartScriptAndDefaults(t *testing.T) {
	c := buildScripts(t, "START_SCRIPT='echo hi'", "init.sh")
	if string(c.Scripts.Start) != "echo hi\n" || c.Scripts.StartFrom != "START_SCRIPT" {
		t.Errorf("start %q from %s", c.Scripts.Start, c.Scripts.StartFrom)
	}
	if !reflect.DeepEqual(c.Scripts.Init, []string{"init.sh"}) {
		t.Errorf("init.sh default: %q", c.Scripts.Init)
	}
	c = buildScripts(t, "START_SCRIPT_BASE64='!!notbase64'\nSTART_SCRIPT='echo fallback'")
	if c.Scripts.Start != nil || len(c.Problems) != 1 || c.Problems[0].Var != "START_SCRIPT_BASE64" {
		t.Errorf("bad base64: start %q problems %v", c.Scripts.Start, c.Problems)
	}
	c = buildScripts(t, "INIT_SCRIPTS='/abs/a.sh ../b.sh ..'")
	if !reflect.DeepEqual(c.Scripts.Init, []string{"a.sh", "b.sh"}) || len(c.Problems) != 1 {
		t.Errorf("init %q problems %v", c.Scripts.Init, c.Problems)
	}
}

// FILES_DS names are kept as written so the scripts step can refuse the
// bad ones by name instead of silently using another file.
func TestFilesDSKeepsNamesAsWritten(t *testing.T) {
	c := buildScripts(t, `FILES_DS='/ds/1:'\''../../etc/passwd'\'' /ds/2:'\''/etc/shadow'\'' /ds/3:'\''ok.conf'\'' junk'`)
	want := []string{"../../etc/passwd", "/etc/shadow", "ok.conf"}
	if !reflect.DeepEqual(c.Scripts.Files, want) {
		t.Errorf("files %q, want %q", c.Scripts.Files, want)
	}
}

// Image names with spaces and colons, as parse vector 15 has them.
func TestFilesDSNamesWithSpacesAndColons(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(sharedDir(t), "vectors", "parse", "15-files-ds.context.sh"))
	if err != nil {
		t.Fatal(err)
	}
	c := build(t, string(data), Inputs{})
	if want := []string{"init.sh", "app config.conf"}; !reflect.DeepEqual(c.Scripts.Files, want) {
		t.Errorf("vector 15: files %q, want %q", c.Scripts.Files, want)
	}
	c = buildScripts(t, `FILES_DS='/ds/1:'\''db:backup.tar'\'' /ds/2:'\''a b:c'\'' '`)
	if want := []string{"db:backup.tar", "a b:c"}; !reflect.DeepEqual(c.Scripts.Files, want) {
		t.Errorf("files %q, want %q", c.Scripts.Files, want)
	}
}

func TestRole(t *testing.T) {
	c := buildScripts(t, "ROLE=' Replica '\nROLE_NAME='replica'\nROLE_PARENTS='master  witness'")
	want := Role{Name: "replica", ServiceRole: "replica", Parents: []string{"master", "witness"}}
	if !reflect.DeepEqual(c.Role, want) {
		t.Errorf("role %+v, want %+v", c.Role, want)
	}
	if c := buildScripts(t, "ETH0_IP='192.0.2.1'"); !reflect.DeepEqual(c.Role, Role{}) {
		t.Errorf("no role: %+v", c.Role)
	}
}
