package network

import (
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"one-contextd/internal/testenv"

	"one-contextd/network/model"
	"one-contextd/network/render"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/net")

// repoRoot is the directory holding go.mod.
func repoRoot(t testing.TB) string { return testenv.RepoRoot(t) }

type goldenCase struct {
	name    string
	context string // path of context.sh
	golden  string // directory of expected files
}

// goldenCases are the shared context vectors and the cases of testdata/net.
func goldenCases(t testing.TB) []goldenCase {
	root := repoRoot(t)
	var out []goldenCase
	vectors := filepath.Join(root, "..", "shared", "vectors", "contexts")
	ents, err := os.ReadDir(vectors)
	if err != nil {
		t.Skipf("shared vectors not found at %s: %v", vectors, err)
	}
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), ".context.sh"); ok {
			out = append(out, goldenCase{n, filepath.Join(vectors, e.Name()), filepath.Join(root, "testdata", "net", n)})
		}
	}
	own, _ := filepath.Glob(filepath.Join(root, "testdata", "net", "*", "context.sh"))
	for _, c := range own {
		d := filepath.Dir(c)
		out = append(out, goldenCase{filepath.Base(d), c, d})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// renderCase renders a case offline for every type: type -> path -> bytes,
// plus its problems as text.
func renderCase(t testing.TB, c goldenCase) (map[render.Type][]render.File, string) {
	t.Helper()
	ctx, err := LoadContext(c.context)
	if err != nil {
		t.Fatal(err)
	}
	m, problems := model.Plan(ctx.Network, onegateAddr(ctx.OneGate), nil)
	var text strings.Builder
	for _, p := range ctx.Problems {
		if isNetworkVar(p.Var) {
			text.WriteString(p.String() + "\n")
		}
	}
	for _, p := range problems {
		text.WriteString(p.String() + "\n")
	}
	out := map[render.Type][]render.File{}
	for _, typ := range render.Types {
		files, rp, err := render.Render(typ, m, render.Options{NetplanRenderer: netplanBackend(ctx.Network, nil)})
		if err != nil {
			t.Fatal(err)
		}
		out[typ] = files
		for _, p := range rp {
			text.WriteString(string(typ) + ": " + p.String() + "\n")
		}
	}
	if s := render.Sysctls(m); s != nil {
		out["sysctl"] = []render.File{{Path: render.SysctlPath, Data: s, Mode: 0o644}}
	}
	return out, text.String()
}

func isNetworkVar(v string) bool {
	for _, p := range []string{"ETH", "DNS", "SEARCH_DOMAIN", "NETCFG_", "PCI", "ONEGATE_ENDPOINT"} {
		if strings.HasPrefix(v, p) {
			return true
		}
	}
	return false
}

func TestGoldenRenderers(t *testing.T) {
	for _, c := range goldenCases(t) {
		t.Run(c.name, func(t *testing.T) {
			got, problems := renderCase(t, c)
			want := map[string][]byte{}
			for typ, files := range got {
				for _, f := range files {
					want[filepath.Join(string(typ), f.Path)] = f.Data
				}
			}
			want["problems.txt"] = []byte(problems)
			if *update {
				for _, typ := range append(render.Types, "sysctl") {
					_ = os.RemoveAll(filepath.Join(c.golden, string(typ)))
				}
				for rel, data := range want {
					p := filepath.Join(c.golden, rel)
					if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(p, data, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				return
			}
			// Every expected file must be produced, byte for byte, and no
			// file may be produced that is not expected.
			var onDisk []string
			_ = filepath.Walk(c.golden, func(p string, fi os.FileInfo, err error) error {
				if err == nil && !fi.IsDir() && filepath.Base(p) != "context.sh" {
					rel, _ := filepath.Rel(c.golden, p)
					onDisk = append(onDisk, rel)
				}
				return nil
			})
			if len(onDisk) == 0 {
				t.Fatalf("no golden files in %s (run go test ./network -run TestGoldenRenderers -update)", c.golden)
			}
			for _, rel := range onDisk {
				exp, _ := os.ReadFile(filepath.Join(c.golden, rel))
				g, ok := want[rel]
				if !ok {
					t.Errorf("%s: expected, not rendered", rel)
					continue
				}
				if string(g) != string(exp) {
					t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", rel, g, exp)
				}
			}
			for rel := range want {
				if _, err := os.Stat(filepath.Join(c.golden, rel)); err != nil {
					t.Errorf("%s: rendered, not expected", rel)
				}
			}
		})
	}
}
