package shvars

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Messages shared by several places.
const (
	msgCR  = `CR (\r) outside quotes: the file has Windows line endings (oned writes LF only)`
	msgNUL = "NUL byte in the file (sh would drop it silently)"
)

// parser is the state of one Parse call. It scans one string: the single copy
// of the input, so that values without escapes are substrings of it.
type parser struct {
	file   string
	s      string
	pos    int
	line   int  // line of s[pos]
	hasNUL bool // whether s holds a NUL at all; saves a scan per quoted segment
	vars   []Var
	errs   []*Error

	err *Error // first error of the current logical line
	val valueBuilder
}

// Parse reads a context.sh. It never runs or expands anything. It returns
// every good assignment and one *Error per rejected logical line; a bad line
// does not stop the lines after it (except an unterminated quote, which runs
// to the end of the file). The *Vars is never nil. file is only used to name
// the file in errors.
func Parse(file string, data []byte) (*Vars, []*Error) {
	if len(data) > MaxFileSize {
		return &Vars{}, []*Error{{
			File: file,
			Msg:  fmt.Sprintf("file is %d bytes, larger than the %d-byte limit", len(data), MaxFileSize),
		}}
	}
	p := parser{file: file, s: string(data), line: 1}
	p.hasNUL = strings.IndexByte(p.s, 0) >= 0
	// oned writes NAME='...' for every variable, so this is close to the
	// count; capped, because a hostile value can be made of nothing but ='.
	p.vars = make([]Var, 0, min(strings.Count(p.s, "='")+1, 1024))
	for p.pos < len(p.s) {
		if len(p.vars) >= MaxVariables || len(p.errs) >= MaxErrors {
			what := fmt.Sprintf("more than %d assignments", MaxVariables)
			if len(p.errs) >= MaxErrors {
				what = fmt.Sprintf("more than %d bad lines", MaxErrors)
			}
			p.errs = append(p.errs, &Error{File: p.file, Line: p.line, Msg: what + "; the rest of the file is not read"})
			break
		}
		p.logicalLine()
	}
	return newVars(p.vars), p.errs
}

// fail records the first error of the current logical line.
func (p *parser) fail(line int, name, msg string) {
	if p.err == nil {
		p.err = &Error{File: p.file, Line: line, Name: name, Msg: msg}
	}
}

// flush moves the pending error, if any, to the result and skips the rest of
// the logical line. It reports whether there was an error.
func (p *parser) flush() bool {
	if p.err == nil {
		return false
	}
	p.errs = append(p.errs, p.err)
	p.err = nil
	p.skipRest()
	return true
}

func (p *parser) skipBlanks() {
	for p.pos < len(p.s) && (p.s[p.pos] == ' ' || p.s[p.pos] == '\t') {
		p.pos++
	}
}

// logicalLine handles one blank line, comment or assignment, up to and
// including its final LF.
func (p *parser) logicalLine() {
	s := p.s
	p.skipBlanks()
	if p.pos >= len(s) {
		return
	}
	switch s[p.pos] {
	case '\n':
		p.pos++
		p.line++
		return
	case '#':
		p.comment("")
		p.flush()
		return
	}
	start, line := p.pos, p.line
	j := start
	for j < len(s) && isNameChar(s[j]) {
		j++
	}
	if j < len(s) && s[j] == '=' && j > start && !isDigit(s[start]) {
		p.pos = j + 1
		p.assignment(s[start:j], line)
		return
	}
	p.notAssignment()
	p.flush()
}

// comment skips from a "#" to the end of the line, LF included. sh ignores
// everything there, CR included; only NUL is reported, as everywhere.
func (p *parser) comment(name string) {
	rest := p.s[p.pos:]
	end := strings.IndexByte(rest, '\n')
	if end < 0 {
		end = len(rest)
	}
	if p.hasNUL && strings.IndexByte(rest[:end], 0) >= 0 {
		p.fail(p.line, name, msgNUL)
		p.pos += end // flush then skips the LF only
		return
	}
	p.pos += end
	if end < len(rest) {
		p.pos++
		p.line++
	}
}

// assignment parses the value and what follows it; p.pos is just after "=".
func (p *parser) assignment(name string, line int) {
	p.val.reset()
	p.word(name)
	if p.err == nil {
		p.afterWord(name)
	}
	if p.flush() {
		return
	}
	value := p.val.String()
	if !utf8.ValidString(value) {
		p.errs = append(p.errs, &Error{File: p.file, Line: line, Name: name,
			Msg: fmt.Sprintf("value is not valid UTF-8 (first bad byte at offset %d of the value)", invalidUTF8Offset(value))})
		return
	}
	p.vars = append(p.vars, Var{Name: name, Value: value, Line: line})
}

// word reads the value after "=" up to the first unquoted blank or LF. On an
// error it leaves p.pos at the offending byte, or after the quoted segment
// holding it, so that skipRest stays in step with the quotes.
func (p *parser) word(name string) {
	s := p.s
	atStart := true
	for ; p.pos < len(s) && p.err == nil; atStart = false {
		switch c := s[p.pos]; c {
		case ' ', '\t', '\n':
			return
		case '\'':
			p.singleQuoted(name)
		case '"':
			p.doubleQuoted(name)
		case '\\':
			switch {
			case p.pos+1 >= len(s):
				p.fail(p.line, name, "backslash at the end of the file")
			case s[p.pos+1] == '\n':
				p.fail(p.line, name, "backslash-newline (line continuation) outside quotes is not supported")
			case s[p.pos+1] == 0:
				p.fail(p.line, name, msgNUL)
			default:
				p.val.add(s[p.pos+1 : p.pos+2])
				p.pos += 2
			}
		case '$':
			switch {
			case p.pos+1 < len(s) && s[p.pos+1] == '(':
				p.fail(p.line, name, "command substitution $(...) outside single quotes would run a command")
			default:
				p.fail(p.line, name, `parameter expansion "$" outside single quotes would expand`)
			}
		case '`':
			p.fail(p.line, name, "backquote command substitution outside single quotes would run a command")
		case '\r':
			p.fail(p.line, name, msgCR)
		case 0:
			p.fail(p.line, name, msgNUL)
		case ';':
			p.fail(p.line, name, `";" would start a second statement; one assignment per line`)
		case '&', '|':
			p.fail(p.line, name, fmt.Sprintf("%q would start another command; one assignment per line", string(c)))
		case '<', '>':
			p.fail(p.line, name, fmt.Sprintf("redirection %q is not allowed", string(c)))
		case '(', ')':
			p.fail(p.line, name, fmt.Sprintf("%q outside quotes is not allowed (sh arrays and subshells)", string(c)))
		default:
			p.plain(name, atStart)
		}
	}
}

const msgTilde = `unquoted "~" would be tilde-expanded to $HOME; quote it`

// plain reads a run of bytes that stand for themselves.
func (p *parser) plain(name string, atStart bool) {
	s := p.s
	start := p.pos
	if atStart && s[start] == '~' {
		p.fail(p.line, name, msgTilde+" (at the start of the value)")
		return
	}
	j := start + 1
	for ; j < len(s) && isPlain(s[j]); j++ {
		// sh also expands a tilde right after an unquoted ":" in an assignment.
		if s[j] == '~' && s[j-1] == ':' {
			p.pos = j
			p.fail(p.line, name, msgTilde+` (after ":")`)
			return
		}
	}
	p.val.add(s[start:j])
	p.pos = j
}

// singleQuoted reads '...': every byte up to the next ' as it is.
func (p *parser) singleQuoted(name string) {
	s := p.s
	end := strings.IndexByte(s[p.pos+1:], '\'')
	if end < 0 {
		p.fail(p.line, name, "unterminated single-quoted value: the quote opened on this line is never closed")
		p.pos = len(s)
		return
	}
	seg := s[p.pos+1 : p.pos+1+end]
	if p.hasNUL {
		if k := strings.IndexByte(seg, 0); k >= 0 {
			p.fail(p.line+strings.Count(seg[:k], "\n"), name, msgNUL)
		}
	}
	p.line += strings.Count(seg, "\n")
	p.val.add(seg)
	p.pos += end + 2
}

// doubleQuoted reads "...", which is accepted only when nothing inside would
// be expanded or unescaped: no $, ` or \.
func (p *parser) doubleQuoted(name string) {
	s := p.s
	open, line := p.line, p.line
	for i := p.pos + 1; i < len(s); i++ {
		switch s[i] {
		case '"':
			p.val.add(s[p.pos+1 : i])
			p.line = line
			p.pos = i + 1
			return
		case '\n':
			line++
		case '$':
			p.fail(line, name, `"$" inside double quotes would expand; use single quotes`)
		case '`':
			p.fail(line, name, "backquote inside double quotes would run a command; use single quotes")
		case '\\':
			p.fail(line, name, `"\" inside double quotes is not supported; use single quotes`)
			if i+1 < len(s) && s[i+1] != '\n' {
				i++ // keep \" from ending the string, so recovery stays in step
			}
		case 0:
			p.fail(line, name, msgNUL)
		}
	}
	p.err = nil // an unterminated quote is the error that matters
	p.fail(open, name, "unterminated double-quoted value: the quote opened on this line is never closed")
	p.line = line
	p.pos = len(s)
}

// afterWord accepts blanks and a comment after the value, then the LF.
func (p *parser) afterWord(name string) {
	s := p.s
	p.skipBlanks()
	if p.pos >= len(s) {
		return
	}
	switch c := s[p.pos]; c {
	case '\n':
		p.pos++
		p.line++
	case '#':
		p.comment(name)
	case '\r':
		p.fail(p.line, name, msgCR)
	case 0:
		p.fail(p.line, name, msgNUL)
	case ';':
		p.fail(p.line, name, `";" after the value would start a second statement; one assignment per line`)
	case '&', '|':
		p.fail(p.line, name, fmt.Sprintf("%q after the value would start another command; one assignment per line", string(c)))
	case '<', '>':
		p.fail(p.line, name, fmt.Sprintf("redirection %q after the value is not allowed", string(c)))
	default:
		p.fail(p.line, name, "unexpected text after the value (sh would run it as a command); one assignment per line")
	}
}

// notAssignment explains a logical line that does not start with NAME=.
// p.pos is at its first non-blank byte.
func (p *parser) notAssignment() {
	s := p.s
	start := p.pos
	j := start
	for j < len(s) && !isWordBreak(s[j]) {
		j++
	}
	word := s[start:j]
	next := byte('\n')
	if j < len(s) {
		next = s[j]
	}
	switch {
	case next == '=' && word == "":
		p.fail(p.line, "", `missing variable name before "="`)
	case next == '=' && strings.HasSuffix(word, "+") && ValidName(word[:len(word)-1]):
		p.fail(p.line, word[:len(word)-1], `"+=" (append) is not supported; write NAME='value'`)
	case next == '=':
		p.fail(p.line, "", fmt.Sprintf("invalid variable name %s (must match [A-Za-z_][A-Za-z0-9_]*)", shown(word)))
	case isCommandWord(word):
		p.fail(p.line, "", fmt.Sprintf("%q is a command, not an assignment; commands are not allowed", word))
	case ValidName(word) && followedByEquals(s[j:]):
		p.fail(p.line, word, `not an assignment: with blanks around "=" sh would run the name as a command`)
	case word == "" && next == '\r':
		p.fail(p.line, "", msgCR)
	case word == "" && next == 0:
		p.fail(p.line, "", msgNUL)
	case word == "":
		p.fail(p.line, "", fmt.Sprintf("unexpected %q at the start of a line; only NAME=value assignments are allowed", string(next)))
	default:
		p.fail(p.line, "", fmt.Sprintf("not an assignment: bare word %s would run as a command", shown(word)))
	}
}

// skipRest skips to the end of the logical line, LF included, following sh
// quoting well enough that a quoted multi-line value on a bad line is not
// read as lines of its own.
func (p *parser) skipRest() {
	s := p.s
	for p.pos < len(s) {
		switch c := s[p.pos]; c {
		case '\n':
			p.pos++
			p.line++
			return
		case '\\':
			if p.pos+1 < len(s) && s[p.pos+1] == '\n' {
				p.line++
			}
			p.pos += 2
		case '\'':
			end := strings.IndexByte(s[p.pos+1:], '\'')
			if end < 0 {
				p.pos = len(s)
				return
			}
			p.line += strings.Count(s[p.pos+1:p.pos+1+end], "\n")
			p.pos += end + 2
		case '"', '`':
			i := p.pos + 1
			for ; i < len(s) && s[i] != c; i++ {
				switch s[i] {
				case '\\':
					if i+1 < len(s) && s[i+1] == '\n' {
						p.line++
					}
					i++
				case '\n':
					p.line++
				}
			}
			p.pos = i + 1
		case '#':
			if p.pos > 0 && (s[p.pos-1] == ' ' || s[p.pos-1] == '\t') {
				end := strings.IndexByte(s[p.pos:], '\n')
				if end < 0 {
					p.pos = len(s)
					return
				}
				p.pos += end + 1
				p.line++
				return
			}
			p.pos++
		default:
			p.pos++
		}
	}
	p.pos = len(s) // a step of 2 may have gone past the end
}

// followedByEquals reports whether rest starts with blanks and then "=".
func followedByEquals(rest string) bool {
	i := 0
	for i < len(rest) && (rest[i] == ' ' || rest[i] == '\t') {
		i++
	}
	return i > 0 && i < len(rest) && rest[i] == '='
}

// isCommandWord lists the builtins that look like they assign variables.
func isCommandWord(w string) bool {
	switch w {
	case "export", "readonly", "declare", "typeset", "local", "set", "unset", "eval", "source", ".", "exec", "alias", "let":
		return true
	}
	return false
}

// shown quotes the first word of a bad line for a message, cut short. It is
// the name or command an admin must fix; values never reach a message.
func shown(w string) string {
	const max = 40
	if len(w) > max {
		return fmt.Sprintf("%q... (%d bytes)", w[:max], len(w))
	}
	return fmt.Sprintf("%q", w)
}

// Plain bytes stand for themselves outside quotes. These masks list the ASCII
// bytes that do not: NUL TAB LF CR SP " $ & ' ( ) ; < > \ ` |. Bytes >= 0x80
// are plain (UTF-8 sequences are kept as they are).
const (
	notPlainLo = 1<<0 | 1<<'\t' | 1<<'\n' | 1<<'\r' | 1<<' ' | 1<<'"' | 1<<'$' | 1<<'&' |
		1<<'\'' | 1<<'(' | 1<<')' | 1<<';' | 1<<'<' | 1<<'>'
	notPlainHi = 1<<('\\'-64) | 1<<('`'-64) | 1<<('|'-64)
)

func isPlain(c byte) bool {
	switch {
	case c < 64:
		return notPlainLo&(uint64(1)<<c) == 0
	case c < 128:
		return notPlainHi&(uint64(1)<<(c-64)) == 0
	}
	return true
}

// isWordBreak ends the first word of a line that is not an assignment.
func isWordBreak(c byte) bool {
	return c == '=' || !isPlain(c)
}

func invalidUTF8Offset(s string) int {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size <= 1 {
			return i
		}
		i += size
	}
	return len(s)
}

// valueBuilder joins the pieces of one value. A value made of one piece (the
// usual NAME='...') is a substring of the input and costs no copy.
type valueBuilder struct {
	first string
	n     int
	b     strings.Builder
}

func (v *valueBuilder) reset() {
	v.first, v.n = "", 0
	v.b.Reset()
}

func (v *valueBuilder) add(piece string) {
	if piece == "" {
		return
	}
	switch v.n {
	case 0:
		v.first = piece
	case 1:
		v.b.Grow(len(v.first) + len(piece) + 16)
		v.b.WriteString(v.first)
		v.b.WriteString(piece)
	default:
		v.b.WriteString(piece)
	}
	v.n++
}

func (v *valueBuilder) String() string {
	if v.n <= 1 {
		return v.first
	}
	return v.b.String()
}
