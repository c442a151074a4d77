package logging

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coreos/go-systemd/v22/journal"

	"one-contextd/fsroot"
	"one-contextd/secret"
)

type entry struct {
	msg  string
	pri  journal.Priority
	vars map[string]string
}

func TestLogFileJournalAndConsole(t *testing.T) {
	dir := t.TempDir()
	root, _ := fsroot.New(dir)
	var got []entry
	var console strings.Builder
	scrub := &secret.Scrubber{}
	scrub.Add(secret.New("pa55-word-xyz"))
	l, err := New(Options{Root: root, Journal: true, Console: &console, Scrubber: scrub,
		JournalSend: func(msg string, p journal.Priority, vars map[string]string) error {
			got = append(got, entry{msg, p, vars})
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	l.Error().Str("step", "users").Str("event", "step-failed").Str("variable", "PASSWORD").
		Msg("chpasswd said pa55-word-xyz is bad")
	l.Info().Str("event", "no-such-kind").Msg("plain")
	_ = l.Close()

	data, err := os.ReadFile(filepath.Join(dir, LogFile))
	if err != nil || !strings.Contains(string(data), `"step":"users"`) || strings.Contains(string(data), "pa55-word-xyz") {
		t.Fatalf("log file: %q %v", data, err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, LogFile)); fi.Mode().Perm() != 0o600 {
		t.Errorf("log mode %v", fi.Mode())
	}
	if len(got) != 2 {
		t.Fatalf("journal got %d entries", len(got))
	}
	e := got[0]
	if e.pri != journal.PriErr || e.vars["MESSAGE_ID"] != MessageIDs["step-failed"] || e.vars["STEP"] != "users" ||
		e.vars["VARIABLE"] != "PASSWORD" || e.vars["SYSLOG_IDENTIFIER"] != "one-contextd" || !strings.HasPrefix(e.msg, "users: ") {
		t.Errorf("journal entry %+v", e)
	}
	if strings.Contains(e.msg, "pa55-word-xyz") {
		t.Error("journal message holds the secret")
	}
	if got[1].vars["MESSAGE_ID"] != MessageIDs["other"] || got[1].pri != journal.PriInfo {
		t.Errorf("unknown kind: %+v", got[1])
	}
	if !strings.Contains(console.String(), "[users]") || strings.Contains(console.String(), "pa55-word-xyz") {
		t.Errorf("console %q", console.String())
	}
}

func TestLogFileIsNotWrittenThroughASymlink(t *testing.T) {
	dir := t.TempDir()
	_ = os.MkdirAll(filepath.Join(dir, "var/log"), 0o755)
	target := filepath.Join(dir, "target")
	_ = os.WriteFile(target, []byte("keep\n"), 0o644)
	_ = os.Symlink(target, filepath.Join(dir, LogFile))
	root, _ := fsroot.New(dir)
	l, _ := New(Options{Root: root})
	l.Info().Msg("hello")
	_ = l.Close()
	if data, _ := os.ReadFile(target); string(data) != "keep\n" {
		t.Errorf("the log was written through a symlink: %q", data)
	}
}
