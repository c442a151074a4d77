package shvars

import (
	"slices"
	"strconv"
	"strings"
)

// MaxFileSize is the one documented size limit for a whole context.sh
// (32 MiB). Larger input gets one *Error on line 0 and no variables.
const MaxFileSize = 32 << 20

// MaxVariables and MaxErrors bound what one file can make the parser hold:
// 32 MiB of tiny assignments or of bad lines would otherwise take hundreds
// of MiB. oned writes a few hundred variables; past either limit the rest
// of the file is not read and one more error says so.
const (
	MaxVariables = 1 << 16
	MaxErrors    = 1000
)

// Var is one assignment read from the file.
type Var struct {
	Name  string
	Value string // byte-exact, after unquoting
	Line  int    // 1-based line where the assignment starts
}

// Error is one rejected line.
type Error struct {
	File string
	Line int    // 1-based; 0 when the error concerns the whole file
	Name string // variable name when known, else ""
	Msg  string
}

// Error formats as "FILE:LINE: NAME: message"; LINE is left out for whole-file
// errors and NAME when it is not known.
func (e *Error) Error() string {
	var b strings.Builder
	b.Grow(len(e.File) + len(e.Name) + len(e.Msg) + 16)
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Name != "" {
		b.WriteString(e.Name)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Vars is the set of variables a file defines, sorted by name. When a name is
// defined more than once the later definition wins, as in sh. A nil *Vars is
// an empty set.
type Vars struct {
	list []Var // sorted by Name, names unique
}

// newVars sorts the assignments by name and keeps the last one of each name.
// Input already sorted (oned's files are) costs no copy.
func newVars(in []Var) *Vars {
	sorted := true
	for i := 1; i < len(in); i++ {
		if in[i-1].Name > in[i].Name {
			sorted = false
			break
		}
	}
	if !sorted {
		// Sort positions, not the Vars themselves: moving int32s is much
		// cheaper than moving structs of strings. Ties keep file order, so the
		// last of a run of equal names is the latest definition.
		order := make([]int32, len(in))
		for i := range order {
			order[i] = int32(i)
		}
		slices.SortFunc(order, func(a, b int32) int {
			if c := strings.Compare(in[a].Name, in[b].Name); c != 0 {
				return c
			}
			return int(a - b)
		})
		byName := make([]Var, len(in))
		for i, j := range order {
			byName[i] = in[j]
		}
		in = byName
	}
	out := in[:0]
	for i, v := range in {
		if i+1 < len(in) && in[i+1].Name == v.Name {
			continue
		}
		out = append(out, v)
	}
	return &Vars{list: out}
}

// Get returns the variable called name.
func (v *Vars) Get(name string) (Var, bool) {
	if v == nil {
		return Var{}, false
	}
	i, ok := slices.BinarySearchFunc(v.list, name, func(e Var, n string) int {
		return strings.Compare(e.Name, n)
	})
	if !ok {
		return Var{}, false
	}
	return v.list[i], true
}

// Value returns the value of name, or "" when it is not defined.
func (v *Vars) Value(name string) string {
	e, _ := v.Get(name)
	return e.Value
}

// Has reports whether name is defined (possibly as "").
func (v *Vars) Has(name string) bool {
	_, ok := v.Get(name)
	return ok
}

// Names returns the defined names in byte order.
func (v *Vars) Names() []string {
	if v == nil {
		return nil
	}
	names := make([]string, len(v.list))
	for i, e := range v.list {
		names[i] = e.Name
	}
	return names
}

// List returns a copy of the variables, sorted by name.
func (v *Vars) List() []Var {
	if v == nil {
		return nil
	}
	return slices.Clone(v.list)
}

// Len is the number of distinct names.
func (v *Vars) Len() int {
	if v == nil {
		return 0
	}
	return len(v.list)
}

// ValidName reports whether name is a sh variable name, [A-Za-z_][A-Za-z0-9_]*.
func ValidName(name string) bool {
	if name == "" || isDigit(name[0]) {
		return false
	}
	for i := 0; i < len(name); i++ {
		if !isNameChar(name[i]) {
			return false
		}
	}
	return true
}

// Quote writes value the way oned does: inside single quotes, with every
// single quote written as close-quote, backslash, quote, open-quote:
//
//	it's  ->  'it'\''s'
//
// sh and Parse read it back byte for byte (sh cannot hold NUL).
func Quote(value string) string {
	return string(appendQuoted(make([]byte, 0, len(value)+2+3*strings.Count(value, "'")), value))
}

func appendQuoted(dst []byte, value string) []byte {
	dst = append(dst, '\'')
	for {
		i := strings.IndexByte(value, '\'')
		if i < 0 {
			break
		}
		dst = append(dst, value[:i]...)
		dst = append(dst, `'\''`...)
		value = value[i+1:]
	}
	dst = append(dst, value...)
	return append(dst, '\'')
}

// Format writes one NAME='value' line per variable, in the order given. The
// result is safe to source with sh and reads back with Parse. Variables whose
// Name is not a valid sh name (see ValidName) are left out: written as they
// are, they would be commands.
func Format(vars []Var) []byte {
	size := 0
	for _, v := range vars {
		size += len(v.Name) + len(v.Value) + 4 + 3*strings.Count(v.Value, "'")
	}
	out := make([]byte, 0, size)
	for _, v := range vars {
		if !ValidName(v.Name) {
			continue
		}
		out = append(out, v.Name...)
		out = append(out, '=')
		out = appendQuoted(out, v.Value)
		out = append(out, '\n')
	}
	return out
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isNameChar(c byte) bool {
	return c == '_' || isDigit(c) || ('A' <= c && c <= 'Z') || ('a' <= c && c <= 'z')
}
