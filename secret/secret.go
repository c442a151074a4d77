// Package secret holds the one rule for what is secret and the type that
// keeps secret values out of logs, errors, JSON and state files.
//
// Redaction lives here and nowhere else: every other package asks IsName
// whether a variable is secret and wraps secret values in a Value.
package secret

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/rs/zerolog"
)

// Redacted is what a secret prints as, everywhere.
const Redacted = "<redacted>"

// Value is a secret string. Its only way out is Reveal; every formatting
// path (fmt, JSON, text marshalling, zerolog) prints Redacted.
//
// The clear text sits behind a pointer: fmt cannot call Format on a Value
// in an unexported struct field, and prints the field's contents instead,
// which is then an address, not the secret.
type Value struct {
	p *string
}

// New wraps a clear-text secret.
func New(clear string) Value {
	if clear == "" {
		return Value{}
	}
	return Value{p: &clear}
}

// Reveal returns the clear text. Call it only where the value is handed to
// its consumer (a tool's stdin, an HTTP header), never to build a message.
func (s Value) Reveal() string {
	if s.p == nil {
		return ""
	}
	return *s.p
}

// IsZero reports whether the secret is empty.
func (s Value) IsZero() bool { return s.p == nil || *s.p == "" }

// String implements fmt.Stringer.
func (s Value) String() string {
	if s.IsZero() {
		return ""
	}
	return Redacted
}

// GoString keeps %#v from printing the field.
func (s Value) GoString() string { return "secret.Value(" + Redacted + ")" }

// Format makes every verb (%s, %v, %q, %x, %d ...) print Redacted.
func (s Value) Format(f fmt.State, verb rune) {
	_, _ = f.Write([]byte(s.String()))
}

// MarshalJSON implements json.Marshaler.
func (s Value) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// MarshalText implements encoding.TextMarshaler (used by zerolog and maps).
func (s Value) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// IsName reports whether a context variable with this name holds a secret:
// PASSWORD*, CRYPTED_PASSWORD*, ONEGATE_TOKEN, TOKENTXT and any name that
// ends in _PASSWORD, _TOKEN, _SECRET or _KEY (names ending in PUBLIC_KEY excepted) or
// contains PASSWORD, SECRET or TOKEN as a word part (PASSWORD_BASE64,
// DB_PASSWORD_FILE). Names are compared case-insensitively. TOKEN alone is
// oned's YES/NO switch, not a secret.
func IsName(name string) bool {
	n := strings.ToUpper(name)
	// TOKEN is oned's YES/NO switch and USERNAME_PASSWORD_RESET a YES/NO
	// flag: neither holds a secret, and hiding them hides the context.
	if strings.HasSuffix(n, "PUBLIC_KEY") || n == "TOKEN" || n == "USERNAME_PASSWORD_RESET" {
		return false
	}
	if strings.HasSuffix(n, "_KEY") || strings.HasSuffix(n, "_KEY_BASE64") {
		return true
	}
	for _, part := range strings.Split(n, "_") {
		// Numbered and plural forms too: PASSWORD2, DB_PASSWORDS.
		part = strings.TrimRight(part, "0123456789")
		if secretWord(part) || (strings.HasSuffix(part, "S") && secretWord(strings.TrimSuffix(part, "S"))) {
			return true
		}
	}
	return false
}

func secretWord(w string) bool {
	switch w {
	case "PASSWORD", "PASSWD", "SECRET", "TOKEN", "TOKENTXT", "PASSPHRASE":
		return true
	}
	return false
}

// Scrubber removes known clear-text secrets from text that did not come
// through a Value: a tool's stderr echoing its input, an error from a
// library. It is the last line of defence in front of every log writer
// and the run record.
type Scrubber struct {
	mu     sync.RWMutex
	values []string
}

// minScrub is the shortest secret worth scrubbing: shorter strings would
// match ordinary words and make the log unreadable while protecting little.
const minScrub = 4

// Add registers clear-text secrets.
func (s *Scrubber) Add(values ...Value) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range values {
		if len(v.Reveal()) < minScrub {
			continue
		}
		for _, f := range escapedForms(v.Reveal()) {
			if !slices.Contains(s.values, f) {
				s.values = append(s.values, f)
			}
		}
	}
	// Longest first, so a secret that contains another is replaced whole.
	sort.Slice(s.values, func(i, j int) bool { return len(s.values[i]) > len(s.values[j]) })
}

// escapedForms is the secret as written and as each JSON encoder in the
// agent escapes it inside a string: zerolog's log lines (which keep <, >
// and & as they are) and encoding/json's records (which escape them).
func escapedForms(v string) []string {
	forms := []string{v}
	if j, err := json.Marshal(v); err == nil {
		forms = append(forms, string(j[1:len(j)-1]))
	}
	var line bytes.Buffer
	zl := zerolog.New(&line)
	zl.Log().Str("v", v).Send()
	z, ok := strings.CutPrefix(strings.TrimSpace(line.String()), `{"v":"`)
	if z, ok2 := strings.CutSuffix(z, `"}`); ok && ok2 {
		forms = append(forms, z)
	}
	return forms
}

// Scrub replaces every registered secret in text by Redacted.
func (s *Scrubber) Scrub(text string) string {
	if s == nil {
		return text
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, v := range s.values {
		if strings.Contains(text, v) {
			text = strings.ReplaceAll(text, v, Redacted)
		}
	}
	return text
}

// ScrubBytes is Scrub for a byte slice; it returns p itself when nothing matched.
func (s *Scrubber) ScrubBytes(p []byte) []byte {
	if s == nil {
		return p
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, v := range s.values {
		if bytes.Contains(p, []byte(v)) {
			p = bytes.ReplaceAll(p, []byte(v), []byte(Redacted))
		}
	}
	return p
}

// Writer wraps w so that everything written through it is scrubbed.
func (s *Scrubber) Writer(w io.Writer) io.Writer { return scrubWriter{s: s, w: w} }

type scrubWriter struct {
	s *Scrubber
	w io.Writer
}

func (sw scrubWriter) Write(p []byte) (int, error) {
	if _, err := sw.w.Write(sw.s.ScrubBytes(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}
