package shvars

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"one-contextd/internal/testenv"
)

// sharedDir finds ../shared beside the repository root (the directory that
// holds go.mod), or skips the test when it is not there.
func sharedDir(t testing.TB) string { return filepath.Dir(testenv.Shared(t, "vectors")) }

func parseVectorFiles(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(sharedDir(t), "vectors", "parse", "*.context.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no parse vectors found")
	}
	return files
}

func valueMap(v *Vars) map[string]string {
	m := make(map[string]string, v.Len())
	for _, e := range v.List() {
		m[e.Name] = e.Value
	}
	return m
}

var errorLineRE = regexp.MustCompile(`^line ([0-9]+):`)

func TestParseVectors(t *testing.T) {
	files := parseVectorFiles(t)
	good, bad := 0, 0
	for _, file := range files {
		base := strings.TrimSuffix(file, ".context.sh")
		if _, err := os.Stat(base + ".expected.json"); err == nil {
			good++
		} else if _, err := os.Stat(base + ".error.txt"); err == nil {
			bad++
		}
	}
	if good < 28 || bad < 16 {
		t.Errorf("found %d good and %d error vectors, want at least 28 and 16", good, bad)
	}
	for _, file := range files {
		base := strings.TrimSuffix(file, ".context.sh")
		name := filepath.Base(base)
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			vars, errs := Parse("context.sh", data)
			if want, err := os.ReadFile(base + ".expected.json"); err == nil {
				var expected map[string]string
				if err := json.Unmarshal(want, &expected); err != nil {
					t.Fatalf("bad expected.json: %v", err)
				}
				for _, e := range errs {
					t.Errorf("unexpected error: %v", e)
				}
				compareMaps(t, expected, valueMap(vars))
				return
			}
			want, err := os.ReadFile(base + ".error.txt")
			if err != nil {
				t.Fatalf("vector has neither .expected.json nor .error.txt")
			}
			m := errorLineRE.FindSubmatch(want)
			if m == nil {
				t.Fatalf("error.txt does not start with \"line N:\": %q", want)
			}
			line, _ := strconv.Atoi(string(m[1]))
			if len(errs) == 0 {
				t.Fatalf("no error; want one on line %d (%s)", line, bytes.TrimSpace(want))
			}
			if errs[0].Line != line {
				t.Errorf("first error on line %d, want %d: %v\nvector says: %s", errs[0].Line, line, errs[0], bytes.TrimSpace(want))
			}
			if errs[0].File != "context.sh" || errs[0].Msg == "" {
				t.Errorf("error lacks file or message: %#v", errs[0])
			}
			t.Logf("%v", errs[0])
		})
	}
}

func compareMaps(t *testing.T, want, got map[string]string) {
	t.Helper()
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			t.Errorf("%s missing, want %q", k, short(w))
		case g != w:
			t.Errorf("%s = %q, want %q", k, short(g), short(w))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s = %q is not expected", k, short(g))
		}
	}
}

func short(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// Specific expectations for error vectors beyond the line number: the
// variable is named when it is known, and the good variables around the bad
// line are still returned.
func TestErrorVectorDetails(t *testing.T) {
	dir := filepath.Join(sharedDir(t), "vectors", "parse")
	cases := []struct {
		vector   string
		name     string // Error.Name
		contains string // in Error.Msg
		good     []string
		nErrs    int
	}{
		{"e01-cmdsubst-unquoted", "HOSTNAME", "command substitution $(...)", []string{"A"}, 1},
		{"e02-backticks-unquoted", "NOW", "backquote", nil, 1},
		{"e03-unterminated-single-quote", "START_SCRIPT", "unterminated single-quoted", []string{"A"}, 1},
		{"e04-bare-word", "", `bare word "whoami"`, []string{"A", "B"}, 1},
		{"e05-invalid-name-digit", "", `"2ETH_IP"`, nil, 1},
		{"e06-invalid-name-dash", "", `"MY-VAR"`, []string{"A"}, 1},
		{"e07-crlf-line-endings", "A", "Windows line endings", nil, 2},
		{"e08-param-expansion-unquoted", "HOME_COPY", `"$"`, nil, 1},
		{"e09-dquote-with-expansion", "GREETING", "inside double quotes", nil, 1},
		{"e10-space-around-equals", "ETH0_IP", `blanks around "="`, nil, 1},
		{"e11-two-statements", "A", `";"`, nil, 1},
		{"e12-redirection", "A", "redirection", nil, 1},
		{"e13-export-keyword", "", `"export" is a command`, nil, 1},
		{"e14-unterminated-double-quote", "A", "unterminated double-quoted", nil, 1},
		{"e15-tilde-unquoted", "A", "tilde", nil, 1},
		{"e16-nul-byte", "A", "NUL", nil, 1},
	}
	for _, c := range cases {
		t.Run(c.vector, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(dir, c.vector+".context.sh"))
			if err != nil {
				t.Fatal(err)
			}
			vars, errs := Parse("context.sh", data)
			if len(errs) != c.nErrs {
				t.Fatalf("got %d errors %v, want %d", len(errs), errs, c.nErrs)
			}
			e := errs[0]
			if e.Name != c.name || !strings.Contains(e.Msg, c.contains) {
				t.Errorf("error %q (name %q), want name %q and message containing %q", e, e.Name, c.name, c.contains)
			}
			if got := strings.Join(vars.Names(), ","); got != strings.Join(c.good, ",") {
				t.Errorf("good variables %q, want %q", got, strings.Join(c.good, ","))
			}
		})
	}
}

// bashEnv sources file with bash, with nothing from the outside environment,
// and returns the environment it exports.
func bashEnv(t *testing.T, file string) map[string]string {
	t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash not installed")
	}
	envBin, err := exec.LookPath("env")
	if err != nil {
		t.Skip("env not installed")
	}
	// PATH points nowhere, so no command could run even if a file were not
	// what it should be; it is the same in every run and so drops out.
	cmd := exec.Command(envBin, "-i", "PATH=/nonexistent", bash, "--noprofile", "--norc", "-c",
		`set -a; . "$1"; exec "$2" -0`, "x", file, envBin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("bash on %s: %v: %s", file, err, stderr.String())
	}
	env := map[string]string{}
	for _, kv := range strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			t.Fatalf("bash env entry without '=': %q", kv)
		}
		env[k] = v
	}
	return env
}

// definedByFile is what bash exports after sourcing file, minus what it
// exports for an empty file and the variables bash itself keeps changing.
func definedByFile(t *testing.T, file string) map[string]string {
	t.Helper()
	empty := filepath.Join(t.TempDir(), "empty.sh")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	base := bashEnv(t, empty)
	got := bashEnv(t, file)
	for k, v := range got {
		if k == "PWD" || k == "SHLVL" || k == "_" {
			delete(got, k)
			continue
		}
		if bv, ok := base[k]; ok && bv == v {
			delete(got, k)
		}
	}
	return got
}

// The realistic contexts (trusted, written by the project author, bash-safe)
// must parse cleanly and give exactly what bash gives.
func TestContextsMatchBash(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(sharedDir(t), "vectors", "contexts", "*.context.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 15 {
		t.Fatalf("found %d context vectors, want 15", len(files))
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			vars, errs := Parse(filepath.Base(file), data)
			for _, e := range errs {
				t.Errorf("unexpected error: %v", e)
			}
			if vars.Len() == 0 {
				t.Fatal("no variables parsed")
			}
			compareMaps(t, definedByFile(t, file), valueMap(vars))
		})
	}
}

// The good parse vectors are bash-safe too (the generator checked them with
// bash); compare them with bash as well, so the JSON is not the only oracle.
// Error vectors are never given to a shell.
func TestGoodParseVectorsMatchBash(t *testing.T) {
	for _, file := range parseVectorFiles(t) {
		base := strings.TrimSuffix(file, ".context.sh")
		if _, err := os.Stat(base + ".expected.json"); err != nil {
			continue
		}
		t.Run(filepath.Base(base), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			vars, errs := Parse("context.sh", data)
			if len(errs) > 0 {
				t.Fatalf("unexpected errors: %v", errs)
			}
			compareMaps(t, definedByFile(t, file), valueMap(vars))
		})
	}
}
