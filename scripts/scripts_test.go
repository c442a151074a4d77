package scripts

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"one-contextd/internal/testenv"

	"github.com/rs/zerolog"

	"one-contextd/context/settings"
	"one-contextd/context/shvars"
	"one-contextd/engine"
	"one-contextd/fsroot"
	"one-contextd/runner"
)

// fixture is a temporary root and medium directory.
type fixture struct {
	t      *testing.T
	root   *fsroot.Root
	medium string
	out    string // where scripts leave their traces
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	base := t.TempDir()
	f := &fixture{t: t, medium: filepath.Join(base, "run", "one-context", "medium"), out: filepath.Join(base, "out")}
	for _, d := range []string{f.medium, f.out, filepath.Join(base, "root")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	r, err := fsroot.New(filepath.Join(base, "root"))
	if err != nil {
		t.Fatal(err)
	}
	f.root = r
	return f
}

func (f *fixture) onMedium(name, body string) {
	f.t.Helper()
	if err := os.WriteFile(filepath.Join(f.medium, name), []byte(body), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// context builds the typed context from context.sh text; OUT names the
// trace directory for the scripts.
func (f *fixture) context(contextSh string) *settings.Context {
	f.t.Helper()
	contextSh += "\nOUT='" + f.out + "'\n"
	vars, errs := shvars.Parse("context.sh", []byte(contextSh))
	if len(errs) > 0 {
		f.t.Fatalf("parse: %v", errs)
	}
	entries, _ := os.ReadDir(f.medium)
	var files []string
	for _, e := range entries {
		files = append(files, e.Name())
	}
	return settings.Build(vars, settings.Inputs{MediumFiles: files})
}

func (f *fixture) input(c *settings.Context) Input {
	return Input{
		Context: c, Root: f.root, Run: runner.Exec{}, MediumDir: f.medium,
		BaseEnv: []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=de_DE.UTF-8"},
		Timeout: 20 * time.Second,
	}
}

func (f *fixture) read(name string) string {
	f.t.Helper()
	b, err := os.ReadFile(filepath.Join(f.out, name))
	if err != nil {
		f.t.Fatalf("trace %s: %v", name, err)
	}
	return string(b)
}

func envMap(dump string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(dump, "\x00") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m
}

func TestOrderEnvironmentAndWorkingDirectory(t *testing.T) {
	f := newFixture(t)
	f.onMedium("a.sh", "#!/bin/sh\necho a >> \"$OUT/order\"\npwd > \"$OUT/pwd-a\"\nenv -0 > \"$OUT/env-a\"\n")
	f.onMedium("b.sh", "#!/bin/sh\necho b >> \"$OUT/order\"\n")
	f.onMedium("app.conf", "x=1\n")
	c := f.context(`START_SCRIPT='echo start >> "$OUT/order"; cp "$MOUNT_DIR/app.conf" "$OUT/app.conf"'
INIT_SCRIPTS='b.sh a.sh'
ROOT_PASSWORD='s3cr3t-pass'
ETH0_IP='192.0.2.5'
FILES_DS='/var/lib/one/datastores/2/abc:'\''app.conf'\'''`)
	r, rec := engine.NewTestRecorder()
	if err := Apply(context.Background(), r, f.input(c)); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if got := f.read("order"); got != "start\nb\na\n" {
		t.Errorf("order = %q, want start, b, a", got)
	}
	if got := strings.TrimSpace(f.read("pwd-a")); got != f.medium {
		t.Errorf("working directory %q, want the medium %q", got, f.medium)
	}
	if f.read("app.conf") != "x=1\n" {
		t.Error("START_SCRIPT did not reach FILES_DS file through $MOUNT_DIR")
	}
	env := envMap(f.read("env-a"))
	want := map[string]string{
		"ETH0_IP": "192.0.2.5", "ROOT_PASSWORD": "s3cr3t-pass", "INIT_SCRIPTS": "b.sh a.sh",
		"MOUNT_DIR": f.medium, "RUNTIME_DIR": "/var/run/one-context",
		"CONTEXT_FILE": "/var/run/one-context/context.sh.network",
		"LANG":         "C", "LC_ALL": "C", "_one_orig_LANG": "de_DE.UTF-8", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("env %s = %q, want %q", k, env[k], v)
		}
	}
	if len(rec.Notes) < 4 || !strings.Contains(strings.Join(rec.Notes, "\n"), "a.sh: exit 0 in") {
		t.Errorf("notes = %q, want an exit status per script", rec.Notes)
	}
	if len(rec.Changes) != 0 {
		t.Errorf("running scripts recorded changes: %q", rec.Changes)
	}
	if left, _ := os.ReadDir(f.root.HostPath(TempParent)); len(left) != 0 {
		t.Errorf("temp directories left behind: %v", left)
	}
}

func TestShebangPicksInterpreterElseBash(t *testing.T) {
	f := newFixture(t)
	// /bin/sh on Debian is dash, which has no BASH_VERSION.
	f.onMedium("sh.sh", "#!/bin/sh\necho \"sh:${BASH_VERSION:-none}\" > \"$OUT/sh\"\n")
	f.onMedium("plain.sh", "echo \"plain:${BASH_VERSION:-none}\" > \"$OUT/plain\"\n")
	f.onMedium("py", "#!/usr/bin/env python3\nimport os\nopen(os.environ['OUT']+'/py','w').write('python')\n")
	init := "INIT_SCRIPTS='sh.sh plain.sh'"
	if _, ok := runner.LookPath("python3"); ok {
		init = "INIT_SCRIPTS='sh.sh plain.sh py'"
	}
	r, _ := engine.NewTestRecorder()
	if err := Apply(context.Background(), r, f.input(f.context(init))); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if got := strings.TrimSpace(f.read("sh")); got != "sh:none" {
		t.Errorf("shebang #!/bin/sh ran under bash: %q", got)
	}
	if got := strings.TrimSpace(f.read("plain")); got == "plain:none" {
		t.Errorf("a script without shebang must run under bash, got %q", got)
	}
	if strings.Contains(init, "py") && f.read("py") != "python" {
		t.Error("python shebang not honoured")
	}
}

func TestPrivateTempDirectory(t *testing.T) {
	f := newFixture(t)
	f.onMedium("mode.sh", "#!/bin/sh\nstat -c '%a %n' \"$(dirname \"$0\")\" \"$0\" > \"$OUT/mode\"\n")
	r, _ := engine.NewTestRecorder()
	if err := Apply(context.Background(), r, f.input(f.context("INIT_SCRIPTS='mode.sh'"))); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(f.read("mode")), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "700 ") || !strings.HasPrefix(lines[1], "700 ") {
		t.Fatalf("temp dir and script modes = %q, want 700 both", lines)
	}
	if !strings.Contains(lines[0], filepath.Join(f.root.Dir(), "var/lib/one-context/tmp/one-context.")) {
		t.Errorf("script not under the root's /var/lib/one-context/tmp: %s", lines[0])
	}
}

func TestTimeoutKillsScriptAndNextStillRuns(t *testing.T) {
	f := newFixture(t)
	f.onMedium("hang.sh", "#!/bin/sh\necho started\nsleep 1000 &\nwait\n")
	f.onMedium("next.sh", "#!/bin/sh\necho ran > \"$OUT/next\"\n")
	in := f.input(f.context("INIT_SCRIPTS='hang.sh next.sh'"))
	in.Timeout = 500 * time.Millisecond
	r, rec := engine.NewTestRecorder()
	start := time.Now()
	err := Apply(context.Background(), r, in)
	if err == nil || !strings.Contains(err.Error(), "hang.sh (timed out after") {
		t.Fatalf("err = %v, want hang.sh timed out", err)
	}
	if strings.Contains(err.Error(), "next.sh") {
		t.Errorf("next.sh reported failed: %v", err)
	}
	if f.read("next") != "ran\n" {
		t.Error("the script after the hanging one did not run")
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("hanging script was not killed at its timeout (took %s)", d)
	}
	if !strings.Contains(strings.Join(rec.Notes, "\n"), "hang.sh: timed out after") {
		t.Errorf("notes %q lack the timeout", rec.Notes)
	}
}

func TestFailureReportingKeepsGoing(t *testing.T) {
	f := newFixture(t)
	f.onMedium("fail.sh", "#!/bin/sh\necho boom >&2\nexit 3\n")
	f.onMedium("ok.sh", "#!/bin/sh\necho ok > \"$OUT/ok\"\n")
	c := f.context(`START_SCRIPT_BASE64='` + base64.StdEncoding.EncodeToString([]byte("#!/bin/sh\nexit 7\n")) + `'
INIT_SCRIPTS='fail.sh missing.sh ok.sh'`)
	sink := &logSink{seen: make(chan string, 64)}
	r, rec := engine.NewTestRecorder()
	r.Log = zerolog.New(sink)
	err := Apply(context.Background(), r, f.input(c))
	if err == nil {
		t.Fatal("Apply succeeded with failing scripts")
	}
	// The failure's log line has the exit code and the output's tail, and
	// the output itself was logged.
	var failLine map[string]any
	sink.mu.Lock()
	for _, l := range sink.lines {
		if l["event"] == "script-failed" && l["script"] == "fail.sh" {
			failLine = l
		}
	}
	sink.mu.Unlock()
	if msg, _ := failLine["message"].(string); failLine["exit"] != float64(3) || !strings.Contains(msg, "exit status 3: boom") {
		t.Errorf("script-failed line %v, want exit 3 and the output's tail", failLine)
	}
	if out := sink.output("fail.sh"); len(out) != 1 || out[0]["stream"] != "stderr" || out[0]["message"] != "boom" {
		t.Errorf("fail.sh output lines %v", out)
	}
	for _, want := range []string{"START_SCRIPT_BASE64 (exit 7)", "fail.sh (exit 3)", "missing.sh (not on the medium)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "ok.sh") {
		t.Errorf("ok.sh named as failed: %v", err)
	}
	if f.read("ok") != "ok\n" {
		t.Error("ok.sh did not run after the failures")
	}
	if len(rec.Problems) != 1 || !strings.HasPrefix(rec.Problems[0], "INIT_SCRIPTS: missing.sh") {
		t.Errorf("problems = %q, want one INIT_SCRIPTS problem for missing.sh", rec.Problems)
	}
}

// A script that exits 0 while a process it started keeps running (`nohup
// app &`) succeeds without waiting for that process, which keeps running
// and can still write to the output it inherited. The process waits for a
// gate the test opens only after Apply returned.
func TestBackgroundProcessDoesNotFailTheScript(t *testing.T) {
	f := newFixture(t)
	gate, marker, pid := filepath.Join(f.out, "gate"), filepath.Join(f.out, "marker"), filepath.Join(f.out, "pid")
	t.Cleanup(func() {
		// The script led its process group; kill what is left of it.
		if b, err := os.ReadFile(pid); err == nil {
			if pgid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pgid > 1 {
				_ = syscall.Kill(-pgid, syscall.SIGKILL)
			}
		}
	})
	start := `echo $$ > "$OUT/pid"
( i=0; while [ ! -e "$OUT/gate" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
  echo late; echo late >&2; touch "$OUT/marker"; sleep 30 ) &
echo started
exit 0
`
	f.onMedium("next.sh", "#!/bin/sh\necho ran > \"$OUT/next\"\n")
	c := f.context("START_SCRIPT_BASE64='" + base64.StdEncoding.EncodeToString([]byte(start)) + "'\nINIT_SCRIPTS='next.sh'")
	sink := &logSink{seen: make(chan string, 64)}
	r, rec := engine.NewTestRecorder()
	r.Log = zerolog.New(sink)
	if err := Apply(context.Background(), r, f.input(c)); err != nil {
		t.Errorf("Apply: %v, want success: the script exited 0", err)
	}
	if notes := strings.Join(rec.Notes, "\n"); !strings.Contains(notes, "START_SCRIPT_BASE64: exit 0") {
		t.Errorf("notes %q, want START_SCRIPT_BASE64: exit 0", rec.Notes)
	}
	if out := sink.output("START_SCRIPT_BASE64"); len(out) != 1 || out[0]["message"] != "started" {
		t.Errorf("START_SCRIPT output lines %v, want its one line", out)
	}
	if f.read("next") != "ran\n" {
		t.Error("the script after START_SCRIPT did not run")
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(marker); err == nil {
			return
		}
	}
	t.Error("the background process did not survive writing to its output after the script's exit")
}

// logSink collects JSON log lines and tells when one contains a word.
type logSink struct {
	mu    sync.Mutex
	lines []map[string]any
	seen  chan string
}

func (s *logSink) Write(p []byte) (int, error) {
	var m map[string]any
	if err := json.Unmarshal(p, &m); err != nil {
		return 0, err
	}
	s.mu.Lock()
	s.lines = append(s.lines, m)
	s.mu.Unlock()
	if msg, _ := m["message"].(string); msg != "" {
		select {
		case s.seen <- msg:
		default:
		}
	}
	return len(p), nil
}

func (s *logSink) output(script string) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range s.lines {
		if l["event"] == "script-output" && l["script"] == script {
			out = append(out, l)
		}
	}
	return out
}

func TestOutputIsStreamedLineByLine(t *testing.T) {
	f := newFixture(t)
	gate := filepath.Join(f.out, "gate")
	// The script prints a line, then waits for the test to open the gate,
	// which the test does only once it has seen that line in the log: a
	// runner that buffered output until the end would deadlock into the
	// script's own 10 s limit and fail.
	f.onMedium("talk.sh", "#!/bin/sh\necho first line\necho to stderr >&2\n"+
		"i=0; while [ ! -e '"+gate+"' ]; do i=$((i+1)); [ $i -gt 100 ] && exit 9; sleep 0.1; done\n"+
		"printf 'second line\\nno newline at end'\n")
	sink := &logSink{seen: make(chan string, 64)}
	r, _ := engine.NewTestRecorder()
	r.Log = zerolog.New(sink)
	go func() {
		for msg := range sink.seen {
			if msg == "first line" {
				_ = os.WriteFile(gate, nil, 0o644)
				return
			}
		}
	}()
	if err := Apply(context.Background(), r, f.input(f.context("INIT_SCRIPTS='talk.sh'"))); err != nil {
		t.Fatalf("Apply: %v (output not streamed?)", err)
	}
	got := sink.output("talk.sh")
	var msgs []string
	for _, l := range got {
		msgs = append(msgs, l["stream"].(string)+":"+l["message"].(string))
	}
	// Two pipes: the order between stdout and stderr is not defined, the
	// order within each is.
	var stdout, stderr []string
	for _, m := range msgs {
		if s, ok := strings.CutPrefix(m, "stdout:"); ok {
			stdout = append(stdout, s)
		} else {
			stderr = append(stderr, strings.TrimPrefix(m, "stderr:"))
		}
	}
	if got := strings.Join(stdout, "|"); got != "first line|second line|no newline at end" {
		t.Errorf("stdout lines = %q", stdout)
	}
	if got := strings.Join(stderr, "|"); got != "to stderr" {
		t.Errorf("stderr lines = %q", stderr)
	}
}

func TestSecretsAreScrubbedFromOutput(t *testing.T) {
	f := newFixture(t)
	f.onMedium("leak.sh", "#!/bin/sh\necho \"password is $DB_PASSWORD\"\n")
	sink := &logSink{seen: make(chan string, 64)}
	r, _ := engine.NewTestRecorder()
	r.Log = zerolog.New(sink)
	if err := Apply(context.Background(), r, f.input(f.context("INIT_SCRIPTS='leak.sh'\nDB_PASSWORD='hunter2-long'"))); err != nil {
		t.Fatal(err)
	}
	out := sink.output("leak.sh")
	if len(out) != 1 || out[0]["message"] != "password is <redacted>" {
		t.Errorf("output lines %v, want the password redacted", out)
	}
}

func TestFilesDSNamesAreChecked(t *testing.T) {
	f := newFixture(t)
	f.onMedium("app.conf", "x\n")
	if err := os.Symlink("/etc/hostname", filepath.Join(f.medium, "link.conf")); err != nil {
		t.Fatal(err)
	}
	c := f.context(`FILES_DS='/ds/1:'\''../../etc/passwd'\'' /ds/2:'\''/etc/shadow'\'' /ds/3:'\''sub/x'\'' /ds/4:'\''app.conf'\'' /ds/5:'\''gone.conf'\'' /ds/6:'\''link.conf'\'''`)
	r, rec := engine.NewTestRecorder()
	err := Apply(context.Background(), r, f.input(c))
	if !errors.Is(err, engine.ErrSkip) {
		t.Errorf("with no scripts Apply = %v, want a skip", err)
	}
	want := []string{`"../../etc/passwd" climbs out`, `"/etc/shadow" is an absolute path`, `"sub/x" is not a plain file name`,
		`"gone.conf" is not on the medium`, `"link.conf" is a symlink`}
	if len(rec.Problems) != len(want) {
		t.Fatalf("problems = %q, want %d", rec.Problems, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(rec.Problems[i], "FILES_DS: ") || !strings.Contains(rec.Problems[i], w) {
			t.Errorf("problem %d = %q, want FILES_DS ... %s", i, rec.Problems[i], w)
		}
	}
	if len(rec.Notes) != 1 || !strings.Contains(rec.Notes[0], filepath.Join(f.medium, "app.conf")) {
		t.Errorf("notes = %q, want app.conf exposed at its medium path", rec.Notes)
	}
}

func TestInitScriptNamesCannotLeaveTheMedium(t *testing.T) {
	f := newFixture(t)
	// settings cuts names to their base, as one-context does; a symlink on
	// the medium is refused rather than followed.
	if err := os.Symlink("/etc/passwd", filepath.Join(f.medium, "evil.sh")); err != nil {
		t.Fatal(err)
	}
	r, _ := engine.NewTestRecorder()
	err := Apply(context.Background(), r, f.input(f.context("INIT_SCRIPTS='../../evil.sh'")))
	if err == nil || !strings.Contains(err.Error(), "evil.sh (not on the medium)") {
		t.Fatalf("err = %v, want evil.sh refused", err)
	}
}

func TestNothingToRunIsSkipped(t *testing.T) {
	f := newFixture(t)
	r, rec := engine.NewTestRecorder()
	err := Apply(context.Background(), r, f.input(f.context("ETH0_IP='192.0.2.1'")))
	if !errors.Is(err, engine.ErrSkip) {
		t.Fatalf("err = %v, want skip", err)
	}
	if len(rec.Notes)+len(rec.Problems)+len(rec.Changes) != 0 {
		t.Errorf("record not empty: %+v", rec)
	}
}

// TestVector09 runs the scripts of context vector 09 through a recording
// runner (its START_SCRIPT writes to /opt and /var/log of the host, so it is
// not executed) and checks the calls one-context would make.
func TestVector09(t *testing.T) {
	dir := vectorsDir(t)
	data, err := os.ReadFile(filepath.Join(dir, "contexts", "09-scripts-files.context.sh"))
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	f.onMedium("init.sh", "#!/bin/sh\necho init\n")
	f.onMedium("users.sh", "echo users\n")
	f.onMedium("app.conf", "conf\n")
	vars, errs := shvars.Parse("context.sh", data)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	c := settings.Build(vars, settings.Inputs{MediumFiles: []string{"init.sh", "users.sh", "app.conf", "context.sh"}})
	fake := &runner.Fake{}
	in := f.input(c)
	in.Run = fake
	r, rec := engine.NewTestRecorder()
	if err := Apply(context.Background(), r, in); err != nil {
		t.Fatal(err)
	}
	if len(fake.Calls) != 3 {
		t.Fatalf("calls = %q, want 3", fake.Commands())
	}
	if !strings.HasSuffix(fake.Calls[0].Name, "/"+StartScriptName) {
		t.Errorf("first call %q, want the start script run directly (#!/bin/bash)", fake.Calls[0].Name)
	}
	if !strings.HasSuffix(fake.Calls[1].Name, "-init.sh") {
		t.Errorf("second call %q, want init.sh run directly", fake.Calls[1].Name)
	}
	if fake.Calls[2].Name != "/bin/bash" || !strings.HasSuffix(fake.Calls[2].Args[0], "-users.sh") {
		t.Errorf("third call %q, want users.sh (no shebang) under /bin/bash", fake.Calls[2].String())
	}
	for _, call := range fake.Calls {
		if call.Dir != f.medium || call.Timeout != in.Timeout {
			t.Errorf("%s: dir %q timeout %s", call.Name, call.Dir, call.Timeout)
		}
		if !contains(call.Env, "SET_HOSTNAME=scripted-01") || !contains(call.Env, "MOUNT_DIR="+f.medium) {
			t.Errorf("%s: environment lacks context variables", call.Name)
		}
	}
	if len(rec.Problems) != 0 {
		t.Errorf("problems %q", rec.Problems)
	}
	var exposed int
	for _, n := range rec.Notes {
		if strings.HasPrefix(n, "FILES_DS: ") {
			exposed++
		}
	}
	if exposed != 3 {
		t.Errorf("notes %q, want the 3 FILES_DS files exposed", rec.Notes)
	}
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

func vectorsDir(t *testing.T) string { return testenv.Shared(t, "vectors") }

// With Scopes each script runs in a systemd scope of its own: systemd-run
// becomes the command, the script and its arguments follow "--".
func TestScriptsRunInScopesOfTheirOwn(t *testing.T) {
	f := newFixture(t)
	f.onMedium("init.sh", "echo init\n")
	fake := &runner.Fake{}
	in := f.input(f.context("START_SCRIPT='#!/bin/sh\necho start'\nINIT_SCRIPTS='init.sh'"))
	in.Run, in.Scopes = fake, true
	r, _ := engine.NewTestRecorder()
	if err := Apply(context.Background(), r, in); err != nil {
		t.Fatal(err)
	}
	if len(fake.Calls) != 2 {
		t.Fatalf("calls %q", fake.Commands())
	}
	for i, want := range []struct{ unit, cmd string }{{"START_SCRIPT", "/" + StartScriptName}, {"init.sh", "/bin/bash"}} {
		c := fake.Calls[i]
		args := strings.Join(c.Args, " ")
		if c.Name != "systemd-run" || !strings.HasPrefix(args, "--scope --quiet --collect --unit=one-contextd-script-"+want.unit+"-") {
			t.Errorf("call %d: %s", i, c.String())
		}
		sep := slices.Index(c.Args, "--")
		if sep < 0 || !strings.HasSuffix(c.Args[sep+1], want.cmd) || c.Dir != f.medium {
			t.Errorf("call %d: command after -- is %q (dir %s), want ...%s", i, c.Args[sep+1:], c.Dir, want.cmd)
		}
	}
	if u := unitPart("web/10 set up"); u != "web_10_set_up" {
		t.Errorf("unitPart = %q", u)
	}
}
