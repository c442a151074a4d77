package report

import (
	"strings"
	"time"
	"unicode/utf8"

	"one-contextd/engine"
)

// plan decides what to tell OneGate about rec.
func plan(rec *engine.Record, version string, now time.Time, scrub func(string) string) *Pending {
	agent := "one-contextd"
	if version != "" {
		agent += "/" + sanitize(version)
	}
	stamp := now.Format(time.RFC3339)
	p := &Pending{Version: pendingVersion}
	if msg := FailureText(rec, scrub); msg != "" {
		p.Outcome = OutcomeFailed
		p.Set = []Attr{{AttrError, msg}, {AttrStatus, "failed " + agent + " " + stamp}}
		p.Erase = []string{AttrReady}
		return p
	}
	p.Outcome = OutcomeReady
	p.Set = []Attr{{AttrReady, "YES"}, {AttrStatus, "ok " + agent + " " + stamp}}
	p.Erase = []string{AttrError}
	return p
}

// FailureText is the ONECONTEXT_ERROR value for rec: "step: reason" of
// every required step that failed or was blocked, joined by "; ", made
// storable by OneGate and cut to MaxErrorLen. "" means nothing failed.
// Optional steps never withhold READY and are not listed.
func FailureText(rec *engine.Record, scrub func(string) string) string {
	var parts []string
	for _, s := range rec.Steps {
		if s.Optional {
			continue
		}
		var why string
		switch {
		case s.Status == engine.Failed:
			why = s.Error
			if why == "" {
				why = "failed"
			}
		case s.Status == engine.Skipped && strings.HasPrefix(s.Error, "needs "):
			// The engine's "needs X, which did not succeed".
			why = "blocked: " + strings.TrimSuffix(s.Error, ", which did not succeed") + " which did not succeed"
		default:
			continue
		}
		if scrub != nil {
			why = scrub(why)
		}
		if !strings.HasPrefix(why, s.Name+":") {
			why = s.Name + ": " + why
		}
		parts = append(parts, why)
	}
	return truncate(sanitize(strings.Join(parts, "; ")), MaxErrorLen)
}

// sanitize replaces what OneGate's quoting cannot carry (, [ ] \ " and
// line breaks, see onegate.ValidateAttr) and control characters, and
// folds runs of spaces.
func sanitize(s string) string {
	r := strings.NewReplacer(",", ";", "[", "(", "]", ")", `\`, "/", `"`, "'")
	s = r.Replace(s)
	s = strings.Map(func(c rune) rune {
		if c < 0x20 || c == 0x7f {
			return ' '
		}
		return c
	}, s)
	return strings.Join(strings.Fields(s), " ")
}

// truncate cuts s to at most max bytes on a rune boundary, marking the cut.
func truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	const mark = "..."
	cut := max - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}
