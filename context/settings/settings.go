// Package settings is the typed view of a context: the only place that
// knows OpenNebula's variable names (ETH0_MTU, USERNAME_SUDO,
// START_SCRIPT_BASE64, ...), their defaults and their legacy spellings.
//
// Build turns the raw variables of context.sh into typed settings and a
// list of problems. A bad value never stops the build: it becomes a
// Problem naming the variable and its line, that one setting is left out,
// and everything else is still returned. Code elsewhere takes these types
// and never reads raw strings.
package settings

import (
	"fmt"
	"sort"
	"strings"

	"one-contextd/context/shvars"
)

// Problem is one variable the agent cannot use as given.
type Problem struct {
	File string // "context.sh"
	Line int    // 0 when unknown (a default, a derived check)
	Var  string
	Msg  string
}

func (p Problem) String() string {
	f := p.File
	if f == "" {
		f = "context.sh"
	}
	if p.Line > 0 {
		return fmt.Sprintf("%s:%d: %s: %s", f, p.Line, p.Var, p.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", f, p.Var, p.Msg)
}

// Inputs are the facts about the medium that settings need besides the
// variables.
type Inputs struct {
	File        string   // name used in problems, default "context.sh"
	TokenFile   []byte   // contents of token.txt on the medium, nil if absent
	MediumFiles []string // every file on the medium (for INIT_SCRIPTS' init.sh default)
}

// Context is everything the agent does, as typed settings.
type Context struct {
	Network  Network
	Identity Identity
	Users    Users
	System   System
	Scripts  Scripts
	OneGate  OneGate
	Role     Role

	// Problems found while building, in variable order.
	Problems []Problem

	vars *shvars.Vars
}

// Build reads every variable it knows from vars.
func Build(vars *shvars.Vars, in Inputs) *Context {
	b := &builder{vars: vars, file: in.File}
	if b.file == "" {
		b.file = "context.sh"
	}
	c := &Context{vars: vars}
	c.Network = b.network()
	c.OneGate = b.onegate(in.TokenFile)
	c.Identity = b.identity()
	c.Users = b.users()
	c.System = b.system()
	c.Scripts = b.scripts(in.MediumFiles)
	c.Role = b.role()
	sort.SliceStable(b.problems, func(i, j int) bool { return b.problems[i].Line < b.problems[j].Line })
	c.Problems = b.problems
	return c
}

// Vars gives the raw variables, for exporting them into scripts' environment.
func (c *Context) Vars() *shvars.Vars { return c.vars }

// builder collects problems while reading variables.
type builder struct {
	vars     *shvars.Vars
	file     string
	problems []Problem
}

func (b *builder) get(name string) string { return b.vars.Value(name) }

// trimmed is the value with surrounding whitespace removed, as the shell
// scripts see it after word splitting.
func (b *builder) trimmed(name string) string { return strings.TrimSpace(b.vars.Value(name)) }

func (b *builder) line(name string) int {
	if v, ok := b.vars.Get(name); ok {
		return v.Line
	}
	return 0
}

func (b *builder) problem(name, format string, args ...any) {
	b.problems = append(b.problems, Problem{File: b.file, Line: b.line(name), Var: name, Msg: fmt.Sprintf(format, args...)})
}

// first returns the first non-empty of the names (current spelling first,
// then legacy ones) and which name it came from.
func (b *builder) first(names ...string) (string, string) {
	for _, n := range names {
		if v := b.trimmed(n); v != "" {
			return v, n
		}
	}
	return "", names[0]
}

// yes is one-context's upper-cased YES test, with the default for an
// empty value. Any other value is NO, as one-context's `= "YES"` tests
// make it (USERNAME_SUDO='false' grants no sudo), and a problem.
func (b *builder) yes(name string, def bool) bool {
	v, ok := b.yesNo(name, def)
	if !ok {
		b.problem(name, "%q is neither YES nor NO; taken as NO", b.trimmed(name))
	}
	return v
}

// yesNo is yes without the problem: ok is false for a value that is
// neither empty, YES nor NO (then v is false).
func (b *builder) yesNo(name string, def bool) (v, ok bool) {
	switch strings.ToUpper(b.trimmed(name)) {
	case "":
		return def, true
	case "YES":
		return true, true
	case "NO":
		return false, true
	}
	return false, false
}

// trueish is the looser test one-context uses for flags like
// ETHx_ALIASy_EXTERNAL: 1, true, yes, y in any case.
func trueish(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "true", "yes", "y":
		return true
	}
	return false
}
