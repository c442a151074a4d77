package users

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"one-contextd/context/settings"
	"one-contextd/engine"
	"one-contextd/fsroot"
	"one-contextd/guest/internal/accounts"
	"one-contextd/guest/internal/debroot"
	"one-contextd/guest/internal/guesttest"
)

var snapshotSkip = []string{"usr", "var/cache", "var/lib/apt", "var/lib/dpkg", "proc", "dev", "sys"}

type fixture struct {
	dir  string
	root *fsroot.Root
	run  *guesttest.Recording
}

func newFixture(t *testing.T) *fixture {
	dir := debroot.New(t)
	root, err := fsroot.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{dir: dir, root: root, run: &guesttest.Recording{}}
}

// apply runs the step through the engine with a logger that writes to a
// buffer, so tests can search the log and the record for secrets.
func (f *fixture) apply(t *testing.T, u settings.Users) (engine.StepRecord, string) {
	t.Helper()
	var log bytes.Buffer
	e := engine.Engine{Log: zerolog.New(&log)}
	rec := &engine.Record{}
	e.Run(context.Background(), rec, []engine.Step{{Name: "users", Run: func(ctx context.Context, r *engine.Recorder) error {
		return Apply(ctx, r, Input{Users: u, Root: f.root, Run: f.run})
	}}})
	return rec.Steps[0], log.String()
}

func hostShadow(t *testing.T) []byte {
	data, err := os.ReadFile("/etc/shadow")
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestVector08CreatesUserSudoAndCryptedPassword(t *testing.T) {
	f := newFixture(t)
	c := guesttest.Vector(t, "08-user-sudo-keys-crypted")
	if len(c.Problems) != 0 {
		t.Fatalf("settings problems: %v", c.Problems)
	}
	hostBefore := hostShadow(t)

	rec, log := f.apply(t, c.Users)
	if rec.Status != engine.OK {
		t.Fatalf("step %s: %s", rec.Status, rec.Error)
	}
	calls := guesttest.Lines(f.run.Calls())
	wantPrefix := []string{
		"useradd --root " + f.dir + " -m -p * -s /bin/bash cloudadm",
		"chpasswd --root " + f.dir + " -e",
	}
	if !slices.Equal(calls, wantPrefix) {
		t.Errorf("tools run:\n%s\nwant:\n%s", strings.Join(calls, "\n"), strings.Join(wantPrefix, "\n"))
	}

	acct, ok, err := accounts.Lookup(f.root, "cloudadm")
	if err != nil || !ok {
		t.Fatalf("cloudadm not created: %v", err)
	}
	if acct.Home != "/home/cloudadm" || acct.Shell != "/bin/bash" {
		t.Errorf("cloudadm = %+v", acct)
	}
	if fi, err := os.Stat(filepath.Join(f.dir, "home/cloudadm")); err != nil || !fi.IsDir() {
		t.Errorf("home not created: %v", err)
	}
	hash, _ := base64.StdEncoding.DecodeString(c.Vars().Value("CRYPTED_PASSWORD_BASE64"))
	if got, _, _ := accounts.ShadowHash(f.root, "cloudadm"); got != string(hash) {
		t.Errorf("shadow hash of cloudadm is not the vector's hash")
	}
	sudo, err := os.ReadFile(filepath.Join(f.dir, SudoersPath))
	if err != nil || string(sudo) != "cloudadm ALL=(ALL) NOPASSWD:ALL\n" {
		t.Errorf("sudoers drop-in = %q, %v", sudo, err)
	}
	if fi, _ := os.Stat(filepath.Join(f.dir, SudoersPath)); fi == nil || fi.Mode().Perm() != 0o440 {
		t.Errorf("sudoers drop-in mode = %v", fi.Mode())
	}
	if _, err := os.Lstat(filepath.Join(f.dir, sudoersCheckPath)); err == nil {
		t.Errorf("the visudo check file was left behind")
	}
	// The real sudo parser accepts the whole sudoers tree of the guest.
	if out, err := runTool("visudo", "-c", "-f", filepath.Join(f.dir, SudoersPath)); err != nil {
		t.Errorf("visudo -c on the result: %v: %s", err, out)
	}
	created, err := Created(f.root)
	if err != nil || !slices.Equal(created, []string{"cloudadm"}) {
		t.Errorf("created users = %v, %v", created, err)
	}
	if bytes.Contains([]byte(log), hash) || strings.Contains(recordJSON(t, rec), string(hash)) {
		t.Errorf("the password hash reached the log or the record")
	}
	if !bytes.Equal(hostShadow(t), hostBefore) {
		t.Fatalf("the host's /etc/shadow changed")
	}

	// Second run: no tool, no file.
	before := guesttest.Snapshot(t, f.dir, snapshotSkip...)
	rec, _ = f.apply(t, c.Users)
	if rec.Status != engine.OK || len(rec.Changes) != 0 {
		t.Errorf("second run: %s %s, changes %v", rec.Status, rec.Error, rec.Changes)
	}
	if calls := f.run.Calls(); len(calls) != 0 {
		t.Errorf("second run ran tools: %v", guesttest.Lines(calls))
	}
	if d := guesttest.Diff(before, guesttest.Snapshot(t, f.dir, snapshotSkip...)); len(d) != 0 {
		t.Errorf("second run changed files: %v", d)
	}
}

func recordJSON(t *testing.T, rec engine.StepRecord) string {
	data, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestClearPasswordNeverLeavesStdin(t *testing.T) {
	f := newFixture(t)
	const pw = "Zx9-clear-text-secret"
	c := guesttest.Context(t, map[string]string{"USERNAME": "alice", "PASSWORD_BASE64": base64.StdEncoding.EncodeToString([]byte(pw))})
	rec, log := f.apply(t, c.Users)
	if rec.Status != engine.OK {
		t.Fatalf("step %s: %s", rec.Status, rec.Error)
	}
	calls := f.run.Calls()
	var stdinSeen bool
	for _, cmd := range calls {
		if strings.Contains(cmd.String(), pw) || slices.ContainsFunc(cmd.Env, func(e string) bool { return strings.Contains(e, pw) }) {
			t.Errorf("the password is on a command line or in the environment: %s", cmd.String())
		}
		if cmd.Name == "chpasswd" {
			stdinSeen = true
			if !slices.Contains(cmd.Args, "SHA512") {
				t.Errorf("chpasswd without an explicit method: %v", cmd.Args)
			}
		}
	}
	if !stdinSeen {
		t.Fatalf("chpasswd not run: %v", guesttest.Lines(calls))
	}
	if strings.Contains(log, pw) || strings.Contains(recordJSON(t, rec), pw) {
		t.Errorf("the password reached the log or the record")
	}
	hash, _, _ := accounts.ShadowHash(f.root, "alice")
	if !sha512CryptMatches(pw, hash) {
		t.Errorf("alice's shadow hash %q... does not verify the password", hash[:min(len(hash), 3)])
	}
	if strings.Contains(readAll(t, f.dir, "etc", "var/lib/one-contextd"), pw) {
		t.Errorf("the clear text was written to a file")
	}
	// Same password again: verified against the hash, nothing run.
	rec, _ = f.apply(t, c.Users)
	if len(rec.Changes) != 0 || len(f.run.Calls()) != 0 {
		t.Errorf("second run changed %v", rec.Changes)
	}
	// A new password is set.
	c = guesttest.Context(t, map[string]string{"USERNAME": "alice", "PASSWORD": "another-one"})
	rec, _ = f.apply(t, c.Users)
	hash, _, _ = accounts.ShadowHash(f.root, "alice")
	if len(rec.Changes) != 1 || !sha512CryptMatches("another-one", hash) {
		t.Errorf("new password: changes %v", rec.Changes)
	}
}

func readAll(t *testing.T, dir string, subdirs ...string) string {
	var b strings.Builder
	for _, s := range subdirs {
		_ = filepath.Walk(filepath.Join(dir, s), func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode().IsRegular() {
				data, _ := os.ReadFile(p)
				b.Write(data)
			}
			return nil
		})
	}
	return b.String()
}

func TestBadInputIsAProblemAndTheRestIsApplied(t *testing.T) {
	f := newFixture(t)
	c := guesttest.Context(t, map[string]string{
		"USERNAME":                "bob",
		"USERNAME_SHELL":          "/bin/no-such-shell",
		"CRYPTED_PASSWORD_BASE64": "%%%not-base64%%%",
		"PASSWORD_BASE64":         base64.StdEncoding.EncodeToString([]byte("not a crypt")),
		"PASSWORD":                "fallback-pw",
	})
	// settings rejects the values it can judge alone, and PASSWORD_BASE64,
	// which decodes fine, is next in the priority order.
	if !slices.Contains(guesttest.ProblemVars(c), "CRYPTED_PASSWORD_BASE64") {
		t.Errorf("no problem for CRYPTED_PASSWORD_BASE64: %v", c.Problems)
	}
	if c.Users.Password.From != "PASSWORD_BASE64" {
		t.Errorf("password from %q", c.Users.Password.From)
	}
	rec, _ := f.apply(t, c.Users)
	if rec.Status != engine.OK {
		t.Fatalf("step %s: %s", rec.Status, rec.Error)
	}
	if len(rec.Problems) != 1 || !strings.HasPrefix(rec.Problems[0], "USERNAME_SHELL: ") {
		t.Errorf("problems = %v, want one naming USERNAME_SHELL", rec.Problems)
	}
	acct, ok, _ := accounts.Lookup(f.root, "bob")
	if !ok || acct.Shell != "/bin/bash" {
		t.Errorf("bob = %+v, %v; want created with /bin/bash", acct, ok)
	}
	hash, _, _ := accounts.ShadowHash(f.root, "bob")
	if !sha512CryptMatches("not a crypt", hash) {
		t.Errorf("bob's password is not PASSWORD_BASE64's")
	}
	if _, err := os.Stat(filepath.Join(f.dir, SudoersPath)); err != nil {
		t.Errorf("sudo not applied: %v", err)
	}

	// A CRYPTED_PASSWORD that is no crypt string: PASSWORD is used.
	c = guesttest.Context(t, map[string]string{"USERNAME": "bob", "CRYPTED_PASSWORD": "plain-text-not-a-hash", "PASSWORD": "fallback-pw"})
	if !slices.Contains(guesttest.ProblemVars(c), "CRYPTED_PASSWORD") || c.Users.Password.From != "PASSWORD" {
		t.Errorf("CRYPTED_PASSWORD: problems %v, password from %q", c.Problems, c.Users.Password.From)
	}
	f.apply(t, c.Users)
	if hash, _, _ := accounts.ShadowHash(f.root, "bob"); !sha512CryptMatches("fallback-pw", hash) {
		t.Errorf("bob's password is not PASSWORD's")
	}

	// An invalid user name is refused: root does not take its place (no
	// password for root, the sudo rule of an earlier USERNAME stays), and
	// the step fails, naming the variable.
	rootBefore, _, _ := accounts.ShadowHash(f.root, "root")
	if err := os.WriteFile(filepath.Join(f.dir, SudoersPath), []byte("bob ALL=(ALL) NOPASSWD:ALL\n"), 0o440); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"Bad User", "-rf", ".hidden", "1234", "a/b", "x:y"} {
		c = guesttest.Context(t, map[string]string{"USERNAME": bad, "CRYPTED_PASSWORD": "$6$salt$notahashbutshaped", "PASSWORD": "pw"})
		if !slices.Contains(guesttest.ProblemVars(c), "USERNAME") || !c.Users.NameInvalid || c.Users.Name != bad || c.Users.Sudo {
			t.Fatalf("USERNAME %q: problems %v, users %+v", bad, c.Problems, c.Users)
		}
		f.run.Calls() // forget the earlier runs' calls
		rec, _ = f.apply(t, c.Users)
		if rec.Status != engine.Failed || !strings.Contains(rec.Error, "USERNAME") || !strings.Contains(rec.Error, "not a valid user name") {
			t.Errorf("USERNAME %q: step %s: %q", bad, rec.Status, rec.Error)
		}
		if calls := f.run.Calls(); len(calls) != 0 {
			t.Errorf("USERNAME %q: tools ran: %v", bad, guesttest.Lines(calls))
		}
	}
	if hash, _, _ := accounts.ShadowHash(f.root, "root"); hash != rootBefore {
		t.Errorf("root's password changed for an invalid USERNAME")
	}
	if got, _ := os.ReadFile(filepath.Join(f.dir, SudoersPath)); string(got) != "bob ALL=(ALL) NOPASSWD:ALL\n" {
		t.Errorf("sudoers drop-in changed for an invalid USERNAME: %q", got)
	}
}

func TestSudoNoRemovesOnlyTheAgentsFile(t *testing.T) {
	f := newFixture(t)
	c := guesttest.Context(t, map[string]string{"USERNAME": "deploy", "USERNAME_SUDO": "NO"})
	p := filepath.Join(f.dir, SudoersPath)

	// A foreign drop-in with more than the agent's line stays.
	foreign := "deploy ALL=(ALL) NOPASSWD:ALL\nDefaults:deploy !requiretty\n"
	if err := os.WriteFile(p, []byte(foreign), 0o440); err != nil {
		t.Fatal(err)
	}
	rec, _ := f.apply(t, c.Users)
	if got, _ := os.ReadFile(p); string(got) != foreign {
		t.Errorf("foreign drop-in changed: %q", got)
	}
	if len(rec.Notes) == 0 {
		t.Errorf("no note about the foreign drop-in")
	}
	// Exactly the agent's line (left by one-context): removed.
	if err := os.WriteFile(p, []byte("olduser ALL=(ALL) NOPASSWD:ALL\n"), 0o440); err != nil {
		t.Fatal(err)
	}
	rec, _ = f.apply(t, c.Users)
	if _, err := os.Lstat(p); err == nil {
		t.Errorf("the agent's drop-in was not removed")
	}
	if !slices.ContainsFunc(rec.Changes, func(s string) bool { return strings.Contains(s, "removed") }) {
		t.Errorf("changes = %v", rec.Changes)
	}
	// The user was created without sudo; a second run does nothing.
	f.run.Calls()
	rec, _ = f.apply(t, c.Users)
	if len(rec.Changes) != 0 || len(f.run.Calls()) != 0 {
		t.Errorf("second run: %v", rec.Changes)
	}
}

func TestSudoYesThenNoForTheAgentsOwnFile(t *testing.T) {
	f := newFixture(t)
	p := filepath.Join(f.dir, SudoersPath)
	c := guesttest.Context(t, map[string]string{"USERNAME": "ops"})
	if rec, _ := f.apply(t, c.Users); rec.Status != engine.OK {
		t.Fatalf("%s", rec.Error)
	}
	// The admin adds a line to the agent's own file; it is still the
	// agent's file, so it is replaced on YES and removed on NO.
	if err := os.WriteFile(p, []byte("ops ALL=(ALL) NOPASSWD:ALL\nops2 ALL=(ALL) ALL\n"), 0o440); err != nil {
		t.Fatal(err)
	}
	c = guesttest.Context(t, map[string]string{"USERNAME": "ops", "USERNAME_SUDO": "NO"})
	f.apply(t, c.Users)
	if _, err := os.Lstat(p); err == nil {
		t.Errorf("the agent's drop-in was not removed")
	}
}

func TestVisudoRejectionLeavesTheOldFile(t *testing.T) {
	f := newFixture(t)
	p := filepath.Join(f.dir, SudoersPath)
	// A user name sudo cannot parse, bypassing settings' check.
	u := settings.Users{Name: "x!y", Sudo: true}
	if err := os.WriteFile(filepath.Join(f.dir, "etc/passwd"), append(must(os.ReadFile(filepath.Join(f.dir, "etc/passwd"))), "x!y:x:2000:2000::/home/x:/bin/sh\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	rec, _ := f.apply(t, u)
	if rec.Status != engine.Failed || !strings.Contains(rec.Error, "visudo") {
		t.Errorf("step %s: %q; want failed by visudo", rec.Status, rec.Error)
	}
	if _, err := os.Lstat(p); err == nil {
		t.Errorf("a drop-in visudo rejected was moved into place")
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func TestPasswordResetLocksOnce(t *testing.T) {
	f := newFixture(t)
	c := guesttest.Context(t, map[string]string{"PASSWORD": "root-pw"})
	f.apply(t, c.Users)
	c = guesttest.Context(t, map[string]string{"USERNAME_PASSWORD_RESET": "YES"})
	rec, _ := f.apply(t, c.Users)
	if h, _, _ := accounts.ShadowHash(f.root, "root"); h != "*" {
		t.Errorf("root not locked")
	}
	if len(rec.Changes) != 1 {
		t.Errorf("changes = %v", rec.Changes)
	}
	f.run.Calls()
	rec, _ = f.apply(t, c.Users)
	if len(rec.Changes) != 0 || len(f.run.Calls()) != 0 {
		t.Errorf("second lock: %v", rec.Changes)
	}
}

func runTool(name string, args ...string) (string, error) {
	out, err := osexec.Command(name, args...).CombinedOutput()
	return string(out), err
}

// The sudo line is written without a visudo run at boot when it is the
// agent's own line, so every name the settings accept must give a line
// the real sudo parser accepts.
func TestAgentSudoLineParsesForEveryAcceptedNameShape(t *testing.T) {
	if _, err := osexec.LookPath("visudo"); err != nil {
		t.Skip("visudo not installed (package sudo)")
	}
	names := []string{"a", "ops", "ops$", "_svc", "web-01_a", "a234567890123456789012345678901", "john.doe", "Admin", "1a", "x.", "Ab1$", "0_0"}
	for _, n := range names {
		c := guesttest.Context(t, map[string]string{"USERNAME": n})
		if c.Users.Name != n {
			t.Fatalf("settings did not accept %q (got %q)", n, c.Users.Name)
		}
		line := sudoLine(n)
		if !isAgentSudoLine([]byte(line)) {
			t.Errorf("%q: the line %q is not the agent's own line", n, line)
		}
		p := filepath.Join(t.TempDir(), "drop-in")
		if err := os.WriteFile(p, []byte(line), 0o440); err != nil {
			t.Fatal(err)
		}
		if out, err := runTool("visudo", "-c", "-q", "-f", p); err != nil {
			t.Errorf("%q: visudo rejects %q: %v %s", n, line, err, out)
		}
	}
	if isAgentSudoLine([]byte(sudoLine("x!y"))) {
		t.Errorf("a name settings refuse matches the agent's line")
	}
}
