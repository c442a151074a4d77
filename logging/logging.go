// Package logging builds the agent's logger: zerolog JSON lines to
// /var/log/one-context.log (mode 0600, under the root), the systemd
// journal with a fixed MESSAGE_ID per event kind, and a readable console
// on stderr when run by hand. Every writer sits behind the secret
// scrubber, so a secret that slipped into a message is still not written.
package logging

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/coreos/go-systemd/v22/journal"
	"github.com/rs/zerolog"

	"one-contextd/fsroot"
	"one-contextd/secret"
)

// LogFile is the agent's log, reusing the file name one-context users look for.
const LogFile = "/var/log/one-context.log"

// MessageIDs are the journal MESSAGE_IDs of the agent's event kinds, so
// `journalctl MESSAGE_ID=...` finds every failed step across boots.
var MessageIDs = map[string]string{
	"run-start":      "6f3d0c2a8e1b4b7a9d5e0c1f2a3b4c01",
	"run-done":       "6f3d0c2a8e1b4b7a9d5e0c1f2a3b4c02",
	"step-start":     "6f3d0c2a8e1b4b7a9d5e0c1f2a3b4c03",
	"step-done":      "6f3d0c2a8e1b4b7a9d5e0c1f2a3b4c04",
	"step-failed":    "6f3d0c2a8e1b4b7a9d5e0c1f2a3b4c05",
	"step-skipped":   "6f3d0c2a8e1b4b7a9d5e0c1f2a3b4c06",
	"problem":        "6f3d0c2a8e1b4b7a9d5e0c1f2a3b4c07",
	"change":         "6f3d0c2a8e1b4b7a9d5e0c1f2a3b4c08",
	"context-change": "6f3d0c2a8e1b4b7a9d5e0c1f2a3b4c09",
	"script-output":  "6f3d0c2a8e1b4b7a9d5e0c1f2a3b4c0a",
	"report":         "6f3d0c2a8e1b4b7a9d5e0c1f2a3b4c0b",
	"other":          "6f3d0c2a8e1b4b7a9d5e0c1f2a3b4c0f",
}

// Options say where the log goes.
type Options struct {
	Root     *fsroot.Root // the log file is opened under it; nil: no file
	File     string       // default LogFile
	Journal  bool         // send to the journal when it is reachable
	Console  io.Writer    // human-readable lines (stderr by hand); nil: none
	Level    zerolog.Level
	Scrubber *secret.Scrubber
	// JournalSend is the journal seam (tests capture it); nil: journal.Send.
	JournalSend func(msg string, p journal.Priority, vars map[string]string) error
}

// Logger is the built logger and what has to be closed at the end.
type Logger struct {
	zerolog.Logger
	closers []io.Closer
}

// Close flushes and closes the log file.
func (l *Logger) Close() error {
	var first error
	for _, c := range l.closers {
		if err := c.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// New builds the logger. A log file that cannot be opened is not fatal
// (the journal and console still work); it is reported on the logger.
func New(opt Options) (*Logger, error) {
	var writers []io.Writer
	l := &Logger{}
	var fileErr error
	if opt.Root != nil {
		name := opt.File
		if name == "" {
			name = LogFile
		}
		f, err := openLog(opt.Root, name)
		if err != nil {
			fileErr = err
		} else {
			writers = append(writers, f)
			l.closers = append(l.closers, f)
		}
	}
	if opt.Journal {
		send := opt.JournalSend
		if send == nil && journal.Enabled() {
			send = journal.Send
		}
		if send != nil {
			writers = append(writers, &journalWriter{send: send})
		}
	}
	if opt.Console != nil {
		writers = append(writers, zerolog.ConsoleWriter{Out: opt.Console, TimeFormat: "15:04:05.000", NoColor: true,
			PartsOrder:    []string{zerolog.TimestampFieldName, zerolog.LevelFieldName, "step", zerolog.MessageFieldName},
			FieldsExclude: []string{"step", "event", "changes", "ms"},
			FormatPartValueByName: func(v any, name string) string {
				if name == "step" {
					if v == nil {
						return "[run]"
					}
					return fmt.Sprintf("[%s]", v)
				}
				return fmt.Sprint(v)
			}})
	}
	for i, w := range writers {
		writers[i] = opt.Scrubber.Writer(w)
	}
	var out io.Writer = io.Discard
	if len(writers) > 0 {
		out = zerolog.MultiLevelWriter(writers...)
	}
	level := opt.Level
	if level == zerolog.NoLevel {
		level = zerolog.InfoLevel
	}
	l.Logger = zerolog.New(out).Level(level).With().Timestamp().Logger()
	if fileErr != nil {
		l.Warn().Str("event", "problem").Err(fileErr).Msg("log file not written")
	}
	return l, nil
}

// openLog opens the log file for appending, mode 0600, through the root.
func openLog(root *fsroot.Root, name string) (io.WriteCloser, error) {
	if err := root.Fs().MkdirAll(path.Dir(name), 0o755); err != nil {
		return nil, fmt.Errorf("log %s: %w", name, err)
	}
	if fi, err := root.Lstat(name); err == nil && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("log %s: not a regular file; not writing through it", name)
	}
	f, err := root.Fs().OpenFile(name, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("log %s: %w", name, err)
	}
	// An existing file keeps its contents but not a looser mode: the log
	// names users and files, and 0600 is what the package promises.
	_ = root.Fs().Chmod(name, 0o600)
	return f, nil
}

// journalWriter turns each zerolog JSON line into a journal entry with
// structured fields.
type journalWriter struct {
	send func(msg string, p journal.Priority, vars map[string]string) error
}

func (j *journalWriter) Write(p []byte) (int, error) {
	var ev map[string]any
	if err := json.Unmarshal(p, &ev); err != nil {
		return len(p), j.send(strings.TrimSpace(string(p)), journal.PriInfo, map[string]string{"SYSLOG_IDENTIFIER": "one-contextd"})
	}
	msg, _ := ev[zerolog.MessageFieldName].(string)
	vars := map[string]string{"SYSLOG_IDENTIFIER": "one-contextd"}
	kind, _ := ev["event"].(string)
	if id, ok := MessageIDs[kind]; ok {
		vars["MESSAGE_ID"] = id
	} else {
		vars["MESSAGE_ID"] = MessageIDs["other"]
	}
	for k, v := range ev {
		switch k {
		case zerolog.MessageFieldName, zerolog.TimestampFieldName, zerolog.LevelFieldName:
			continue
		}
		vars[journalField(k)] = fmt.Sprint(v)
	}
	if step, ok := ev["step"].(string); ok && msg != "" {
		msg = step + ": " + msg
	}
	lvl, _ := ev[zerolog.LevelFieldName].(string)
	return len(p), j.send(msg, priority(lvl), vars)
}

// journalField makes a zerolog key a valid journal field name (upper case,
// letters, digits and underscores, not starting with an underscore).
func journalField(k string) string {
	switch k {
	case "step":
		return "STEP"
	case "variable":
		return "VARIABLE"
	}
	var b strings.Builder
	b.WriteString("ONECONTEXT_")
	for _, r := range strings.ToUpper(k) {
		if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

func priority(level string) journal.Priority {
	switch level {
	case "trace", "debug":
		return journal.PriDebug
	case "warn":
		return journal.PriWarning
	case "error":
		return journal.PriErr
	case "fatal", "panic":
		return journal.PriCrit
	}
	return journal.PriInfo
}
