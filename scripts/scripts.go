// Package scripts runs the user's code from the context the way
// one-context does: START_SCRIPT (or START_SCRIPT_BASE64) first, then each
// of INIT_SCRIPTS in order, on every run of the network stage.
//
// Each script is written to a private 0700 directory under the root
// (/var/lib/one-context/tmp/one-context.XXXXXX), made executable and run
// directly, so its shebang picks the interpreter; a file without one is run
// by /bin/bash. The working directory is the medium's files (MOUNT_DIR).
//
// The environment holds the agent's own environment, every context
// variable, and MOUNT_DIR, RUNTIME_DIR, CONTEXT_FILE, LANG=C, LC_ALL=C.
// Like one-context, that includes the secret variables (PASSWORD,
// ONEGATE_TOKEN, DB_PASSWORD, ...): scripts are the user's own code and
// need them. Secrets never reach the log: every output line goes through a
// scrubber holding the values of the secret-named variables.
//
// Unlike one-context each script has a timeout (Input.Timeout), and its
// stdout and stderr go to the log line by line as they come, each line
// tagged with the script's name. A failing script does not stop the
// others; Apply returns an error naming every script that failed.
//
// As with one-context, a script's exit is what counts: a process it leaves
// running (`nohup app &`) neither holds up nor fails the run, and keeps
// writable stdout and stderr (runner.Exec gives it a file, not a pipe);
// what it writes after the script's exit is not logged.
//
// FILES_DS files stay where they are, at the medium's root: scripts find
// them as $MOUNT_DIR/<name>, as with one-context, and the agent copies them
// nowhere. Their names are checked so that none points outside the medium.
package scripts

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"one-contextd/context/settings"
	"one-contextd/engine"
	"one-contextd/fsroot"
	"one-contextd/runner"
	"one-contextd/secret"
)

// DefaultTimeout bounds one script when Input.Timeout is 0. one-context
// has no bound; an hour keeps a hung script from holding the boot run (and
// READY) for ever without cutting short the long ones users run there
// (installing or upgrading packages on a slow mirror).
const DefaultTimeout = time.Hour

// TempParent is where the private script directories are made, under the
// root, as one-context does.
const TempParent = "/var/lib/one-context/tmp"

// DefaultRuntimeDir is one-context's RUNTIME_DIR.
const DefaultRuntimeDir = "/var/run/one-context"

// StartScriptName is the file name START_SCRIPT gets in the temp directory.
const StartScriptName = "one-start-script"

// Input is what the scripts step needs.
type Input struct {
	Context *settings.Context
	Root    *fsroot.Root // a root on the host's disk: scripts are executed from it
	Run     runner.Runner
	// MediumDir is the host path of a directory holding the medium's
	// files (copied there by the caller); scripts run in it.
	MediumDir string
	// RuntimeDir and ContextFile are exported as RUNTIME_DIR and
	// CONTEXT_FILE (defaults: /var/run/one-context and
	// RuntimeDir/context.sh.network).
	RuntimeDir  string
	ContextFile string
	// Timeout per script; 0 means DefaultTimeout.
	Timeout time.Duration
	// BaseEnv is the environment the scripts inherit besides the context;
	// nil means the agent's own (os.Environ).
	BaseEnv []string
	// Scrubber, when set, is used (and extended) for script output.
	Scrubber *secret.Scrubber
	// Scopes runs each script in a systemd scope of its own (Job.Scope).
	Scopes bool
}

// script is one entry of the run list.
type script struct {
	name    string // START_SCRIPT, START_SCRIPT_BASE64, init.sh
	file    string // name in the temp dir
	data    []byte
	missing error // set when the file could not be read from the medium
}

// Apply checks FILES_DS names and runs START_SCRIPT then INIT_SCRIPTS.
func Apply(ctx context.Context, r *engine.Recorder, in Input) error {
	if in.Context == nil {
		return errors.New("scripts: no context")
	}
	sc := in.Context.Scripts
	checkFiles(r, in.MediumDir, sc.Files)
	list := in.list()
	if len(list) == 0 {
		return engine.Skip("no START_SCRIPT or INIT_SCRIPTS")
	}
	if in.MediumDir == "" {
		return errors.New("scripts: no medium directory to run in")
	}
	if in.Root == nil || in.Root.Dir() == "" {
		return errors.New("scripts: the root is not on disk; scripts cannot be executed")
	}
	dir, err := makeTempDir(in.Root)
	if err != nil {
		return fmt.Errorf("scripts: %w", err)
	}
	defer removeTempDir(r, in.Root, dir)

	env := in.environment()
	scrub := SecretScrubber(in.Scrubber, in.Context.Vars())
	timeout := in.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	var failed []string
	for _, s := range list {
		if s.missing != nil {
			r.Problem("INIT_SCRIPTS", "%s: %v; not run", s.name, s.missing)
			failed = append(failed, s.name+" (not on the medium)")
			continue
		}
		p := path.Join(dir, s.file)
		if err := writeScript(in.Root, p, s.data); err != nil {
			failed = append(failed, fmt.Sprintf("%s (%v)", s.name, err))
			continue
		}
		job := Job{Name: s.name, Path: in.Root.HostPath(p), Dir: in.MediumDir, Env: env, Timeout: timeout, Scrub: scrub, Scope: in.Scopes}
		r.Log.Info().Str("event", "script-start").Str("script", s.name).Msg("running " + s.name)
		out := job.Execute(ctx, in.Run, r.Log)
		r.Note("%s: %s in %s", s.name, out.Summary(), out.Duration.Round(time.Millisecond))
		if out.Err != nil {
			r.Log.Error().Str("event", "script-failed").Str("script", s.name).Int("exit", out.ExitCode).Msg(scrub.Scrub(out.Err.Error()))
			failed = append(failed, fmt.Sprintf("%s (%s)", s.name, out.Summary()))
		}
		if err := in.Root.Fs().Remove(p); err != nil {
			r.Log.Warn().Err(err).Msg("remove script copy")
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("scripts failed: %s", strings.Join(failed, ", "))
	}
	return nil
}

// list is the run order: the start script, then the init scripts read from
// the medium.
func (in Input) list() []script {
	sc := in.Context.Scripts
	var out []script
	if sc.Start != nil {
		from := sc.StartFrom
		if from == "" {
			from = "START_SCRIPT"
		}
		out = append(out, script{name: from, file: StartScriptName, data: sc.Start})
	}
	for i, n := range sc.Init {
		s := script{name: n, file: fmt.Sprintf("init-%02d-%s", i, n)}
		if !validFileName(n) {
			s.missing = errors.New("not a plain file name")
		} else if data, err := readMediumFile(in.MediumDir, n); err != nil {
			s.missing = err
		} else {
			s.data = data
		}
		out = append(out, s)
	}
	return out
}

func (in Input) environment() []string {
	base := in.BaseEnv
	if base == nil {
		base = os.Environ()
	}
	rt := in.RuntimeDir
	if rt == "" {
		rt = DefaultRuntimeDir
	}
	cf := in.ContextFile
	if cf == "" {
		cf = path.Join(rt, "context.sh.network")
	}
	return Environment(base, in.Context.Vars(), "MOUNT_DIR="+in.MediumDir, "RUNTIME_DIR="+rt, "CONTEXT_FILE="+cf)
}

// validFileName accepts what can only name a file at the medium's root.
func validFileName(n string) bool {
	return n != "" && n != "." && n != ".." && !strings.ContainsAny(n, "/\\\x00")
}

// readMediumFile reads a regular file at the medium's root; a symlink is
// refused so that nothing outside the medium is read.
func readMediumFile(dir, name string) ([]byte, error) {
	if dir == "" {
		return nil, errors.New("no medium directory")
	}
	p := filepath.Join(dir, name)
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("not on the medium")
	}
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file on the medium (%s)", fi.Mode().Type())
	}
	return os.ReadFile(p)
}

// checkFiles reports FILES_DS names that could point outside the medium's
// root and notes where the good ones are.
func checkFiles(r *engine.Recorder, mediumDir string, names []string) {
	for _, n := range names {
		switch {
		case path.IsAbs(n) || filepath.IsAbs(n):
			r.Problem("FILES_DS", "%q is an absolute path; not exposed to scripts", n)
		case strings.Contains(n, "..") && hasDotDot(n):
			r.Problem("FILES_DS", "%q climbs out of the medium (..); not exposed to scripts", n)
		case !validFileName(n):
			r.Problem("FILES_DS", "%q is not a plain file name (it has a / or is empty); not exposed to scripts", n)
		case mediumDir == "":
			r.Problem("FILES_DS", "%q: no medium directory", n)
		default:
			fi, err := os.Lstat(filepath.Join(mediumDir, n))
			switch {
			case err != nil:
				r.Problem("FILES_DS", "%q is not on the medium", n)
			case fi.Mode()&fs.ModeSymlink != 0:
				r.Problem("FILES_DS", "%q is a symlink on the medium; not exposed to scripts", n)
			default:
				r.Note("FILES_DS: %s is at %s", n, filepath.Join(mediumDir, n))
			}
		}
	}
}

func hasDotDot(n string) bool {
	for _, part := range strings.FieldsFunc(n, func(c rune) bool { return c == '/' || c == '\\' }) {
		if part == ".." {
			return true
		}
	}
	return n == ".."
}

// makeTempDir creates a fresh private directory under TempParent.
func makeTempDir(root *fsroot.Root) (string, error) {
	if err := root.Fs().MkdirAll(TempParent, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", TempParent, err)
	}
	for range 10 {
		var rnd [6]byte
		_, _ = rand.Read(rnd[:])
		dir := path.Join(TempParent, "one-context."+hex.EncodeToString(rnd[:]))
		err := root.Fs().Mkdir(dir, 0o700)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("create %s: %w", dir, err)
		}
		// Mkdir is subject to the umask; make sure of 0700.
		if err := root.Fs().Chmod(dir, 0o700); err != nil {
			return "", fmt.Errorf("chmod %s: %w", dir, err)
		}
		return dir, nil
	}
	return "", errors.New("cannot create a temporary directory")
}

// removeTempDir deletes the private directory and what a failed run left in it.
func removeTempDir(r *engine.Recorder, root *fsroot.Root, dir string) {
	if err := root.Fs().RemoveAll(dir); err != nil {
		r.Log.Warn().Err(err).Str("dir", dir).Msg("remove script directory")
	}
}

// writeScript puts a script's copy into the run's private directory. The
// directory is new, 0700 and removed after the run, so the copy needs none
// of fsroot's care for files that stay (atomic replace, fsync, backup,
// the record of created files): an exclusive create is enough.
func writeScript(root *fsroot.Root, p string, data []byte) error {
	f, err := root.Fs().OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o700)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return root.Fs().Chmod(p, 0o700)
}
