// Package guesttest holds what the guest steps' tests share: contexts
// built through the real parser and settings, the shared vectors, and a
// runner that runs real tools while recording them.
package guesttest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"

	"one-contextd/context/settings"
	"one-contextd/context/shvars"
	"one-contextd/runner"
)

// Context builds typed settings from variables, as context.sh would hold them.
func Context(t testing.TB, vars map[string]string) *settings.Context {
	t.Helper()
	names := make([]string, 0, len(vars))
	for n := range vars {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		b.WriteString(n + "=" + shvars.Quote(vars[n]) + "\n")
	}
	return parse(t, "context.sh", []byte(b.String()))
}

// Vector builds the settings of a shared context vector
// (../shared/vectors/contexts/<name>.context.sh), skipping when shared/ is absent.
func Vector(t testing.TB, name string) *settings.Context {
	t.Helper()
	p := filepath.Join(SharedDir(t), "vectors", "contexts", name+".context.sh")
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read vector: %v", err)
	}
	return parse(t, name, data)
}

func parse(t testing.TB, file string, data []byte) *settings.Context {
	t.Helper()
	vars, errs := shvars.Parse(file, data)
	for _, e := range errs {
		t.Fatalf("parse %s: %v", file, e)
	}
	return settings.Build(vars, settings.Inputs{File: file})
}

// SharedDir is ../shared beside the repository.
func SharedDir(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Skip("go.mod not found above the test directory")
		}
		dir = parent
	}
	shared := filepath.Join(dir, "..", "shared")
	if _, err := os.Stat(shared); err != nil {
		t.Skipf("shared reference directory %s is missing", shared)
	}
	return shared
}

// ProblemVars lists the variables named by settings' problems.
func ProblemVars(c *settings.Context) []string {
	var out []string
	for _, p := range c.Problems {
		out = append(out, p.Var)
	}
	return out
}

// Recording runs tools for real and remembers each call.
type Recording struct {
	Real runner.Runner
	mu   sync.Mutex
	cmds []runner.Cmd
}

// Run records c and runs it.
func (r *Recording) Run(ctx context.Context, c runner.Cmd) (runner.Result, error) {
	r.mu.Lock()
	r.cmds = append(r.cmds, c)
	r.mu.Unlock()
	if r.Real == nil {
		return runner.Exec{}.Run(ctx, c)
	}
	return r.Real.Run(ctx, c)
}

// Calls returns the recorded calls and forgets them.
func (r *Recording) Calls() []runner.Cmd {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.cmds
	r.cmds = nil
	return out
}

// Lines turns calls into command lines.
func Lines(cmds []runner.Cmd) []string {
	out := make([]string, len(cmds))
	for i, c := range cmds {
		out[i] = c.String()
	}
	return out
}

// Snapshot maps every regular file and symlink under dir to its content
// (or link target) and mode, for "nothing changed" assertions.
func Snapshot(t testing.TB, dir string, skip ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		for _, s := range skip {
			if rel == s || strings.HasPrefix(rel, s+"/") {
				if fi.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			out[rel] = "link:" + l
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = fi.Mode().String() + ":" + fi.ModTime().String() + ":" + string(data)
		case fi.IsDir():
			out[rel+"/"] = fi.Mode().String()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", dir, err)
	}
	return out
}

// Diff lists the paths that differ between two snapshots.
func Diff(a, b map[string]string) []string {
	var out []string
	for k, v := range a {
		if b[k] != v {
			out = append(out, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// Tree maps every entry under dir (but the skipped subtrees) to its type,
// mode, owner and content digest (a symlink's target), for "no file
// changed" assertions that do not depend on timestamps.
func Tree(t testing.TB, dir string, skip ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		for _, s := range skip {
			if rel == s || strings.HasPrefix(rel, s+"/") {
				if fi.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		var uid, gid uint32
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			uid, gid = st.Uid, st.Gid
		}
		entry := fmt.Sprintf("%v %d:%d", fi.Mode(), uid, gid)
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			entry += " -> " + l
		case fi.Mode().IsRegular():
			sum, err := fileSHA256(p)
			if err != nil {
				return err
			}
			entry += " sha256:" + sum
		}
		out[rel] = entry
		return nil
	})
	if err != nil {
		t.Fatalf("tree %s: %v", dir, err)
	}
	return out
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
