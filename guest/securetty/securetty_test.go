package securetty

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"one-contextd/engine"
	"one-contextd/fsroot"
	"one-contextd/guest/internal/debroot"
	"one-contextd/guest/internal/guesttest"
)

// busterRule is the pam_securetty rule Debian's login PAM file carried up
// to buster (bullseye dropped it).
const busterRule = "auth [success=ok new_authtok_reqd=ok ignore=ignore user_unknown=bad default=die] pam_securetty.so"

func boolp(b bool) *bool { return &b }

func apply(t *testing.T, root *fsroot.Root, in Input) (*engine.StepRecord, error) {
	t.Helper()
	in.Root = root
	r, sr := engine.NewTestRecorder()
	err := Apply(context.Background(), r, in)
	return sr, err
}

func read(t *testing.T, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestDebianLoginHasNoSecuretty: bookworm's /etc/pam.d/login has no
// pam_securetty rule, so both settings leave it alone and say so.
func TestDebianLoginHasNoSecuretty(t *testing.T) {
	dir := debroot.New(t)
	root, err := fsroot.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, PAMFile)
	orig := read(t, p)
	if strings.Contains(orig, "pam_securetty") {
		t.Fatalf("the Debian tree's %s mentions pam_securetty; this test's premise is wrong", PAMFile)
	}
	before := guesttest.Snapshot(t, dir, "usr", "var/cache", "var/lib/apt", "var/lib/dpkg")
	for _, in := range []Input{{Securetty: boolp(false)}, {Securetty: boolp(true)}, {InContainer: true}} {
		sr, err := apply(t, root, in)
		if err != nil || len(sr.Changes) != 0 {
			t.Errorf("%+v: err %v changes %v", in, err, sr.Changes)
		}
		if len(sr.Notes) != 1 || !strings.Contains(sr.Notes[0], "no pam_securetty.so line") {
			t.Errorf("%+v: notes %v", in, sr.Notes)
		}
	}
	if d := guesttest.Diff(before, guesttest.Snapshot(t, dir, "usr", "var/cache", "var/lib/apt", "var/lib/dpkg")); len(d) != 0 {
		t.Errorf("files changed: %v", d)
	}
}

// TestCraftedLoginRoundTrip puts buster's rule into the Debian tree's
// login file and runs NO, NO, YES, YES.
func TestCraftedLoginRoundTrip(t *testing.T) {
	dir := debroot.New(t)
	root, err := fsroot.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, PAMFile)
	bookworm := read(t, p)
	anchor := "auth       requisite  pam_nologin.so\n"
	if !strings.Contains(bookworm, anchor) {
		t.Fatalf("%s has no pam_nologin line to anchor the crafted rule", PAMFile)
	}
	adminOff := "# auth required /lib/security/pam_securetty.so noconsole\n"
	crafted := strings.Replace(bookworm, anchor, busterRule+"\n"+adminOff+anchor, 1)
	if err := os.WriteFile(p, []byte(crafted), 0o640); err != nil {
		t.Fatal(err)
	}
	// A mode and group of the administrator's, which the edit keeps.
	if err := os.Chmod(p, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, 0, 42); err != nil {
		t.Fatal(err)
	}

	sr, err := apply(t, root, Input{Securetty: boolp(false)})
	if err != nil || len(sr.Changes) != 1 {
		t.Fatalf("NO: err %v changes %v", err, sr.Changes)
	}
	got := read(t, p)
	wantNO := strings.Replace(crafted, busterRule+"\n", "#"+busterRule+" "+Marker+"\n", 1)
	if got != wantNO {
		t.Errorf("NO gave:\n%s", got)
	}
	st := fileStat(t, p)
	if st.mode != 0o640 || st.gid != 42 {
		t.Errorf("mode/owner not kept: %+v", st)
	}
	sr, err = apply(t, root, Input{Securetty: boolp(false)})
	if err != nil || len(sr.Changes) != 0 || read(t, p) != wantNO {
		t.Errorf("second NO: err %v changes %v", err, sr.Changes)
	}

	sr, err = apply(t, root, Input{Securetty: boolp(true)})
	if err != nil || len(sr.Changes) != 1 {
		t.Fatalf("YES: err %v changes %v", err, sr.Changes)
	}
	if got := read(t, p); got != crafted {
		t.Errorf("YES did not give the file back byte for byte:\n%s", got)
	}
	sr, err = apply(t, root, Input{Securetty: boolp(true)})
	if err != nil || len(sr.Changes) != 0 || len(sr.Notes) != 0 {
		t.Errorf("second YES: err %v changes %v notes %v", err, sr.Changes, sr.Notes)
	}
	// The administrator's own commented-out line was never touched.
	if !strings.Contains(read(t, p), adminOff) {
		t.Errorf("the administrator's line changed")
	}
}

func TestDefaultFollowsTheContainerFact(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "etc/pam.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, PAMFile)
	orig := "auth optional pam_faildelay.so delay=3000000\n" + busterRule + "\n"
	if err := os.WriteFile(p, []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	root, err := fsroot.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	// A VM (no container=): YES, the rule stays.
	if sr, err := apply(t, root, Input{}); err != nil || len(sr.Changes) != 0 || read(t, p) != orig {
		t.Errorf("VM default: err %v changes %v", err, sr.Changes)
	}
	// A container: NO.
	if sr, err := apply(t, root, Input{InContainer: true}); err != nil || len(sr.Changes) != 1 || !strings.Contains(read(t, p), "#"+busterRule+" "+Marker) {
		t.Errorf("container default: err %v changes %v\n%s", err, sr.Changes, read(t, p))
	}
	// SECURETTY=YES wins over the container.
	if sr, err := apply(t, root, Input{InContainer: true, Securetty: boolp(true)}); err != nil || len(sr.Changes) != 1 || read(t, p) != orig {
		t.Errorf("YES in a container: err %v changes %v", err, sr.Changes)
	}
}

func TestNoLoginFileIsSkipped(t *testing.T) {
	root, err := fsroot.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := apply(t, root, Input{Securetty: boolp(false)}); !errors.Is(err, engine.ErrSkip) {
		t.Errorf("err = %v, want a skip", err)
	}
}

func TestEdit(t *testing.T) {
	for _, c := range []struct {
		name, in  string
		want      bool
		out       string
		n         int
		roundTrip bool
	}{
		{"path form, no final newline", "auth required /lib/x86_64-linux-gnu/security/pam_securetty.so", false,
			"#auth required /lib/x86_64-linux-gnu/security/pam_securetty.so " + Marker, 1, true},
		{"indented, two rules", "  auth requisite pam_securetty.so\naccount required pam_unix.so\n-auth optional pam_securetty.so\n", false,
			"#  auth requisite pam_securetty.so " + Marker + "\naccount required pam_unix.so\n#-auth optional pam_securetty.so " + Marker + "\n", 2, true},
		{"comment mentioning it", "# pam_securetty.so is off\n", false, "# pam_securetty.so is off\n", 0, false},
		{"another module", "auth required pam_securetty_extra.so\n", false, "auth required pam_securetty_extra.so\n", 0, false},
		{"marked but not a rule", "#just text " + Marker + "\n", true, "#just text " + Marker + "\n", 0, false},
		{"admin's commented rule", "#auth required pam_securetty.so\n", true, "#auth required pam_securetty.so\n", 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, n := Edit([]byte(c.in), c.want)
			if string(out) != c.out || n != c.n {
				t.Errorf("Edit = %q, %d; want %q, %d", out, n, c.out, c.n)
			}
			if c.roundTrip {
				if back, _ := Edit(out, !c.want); string(back) != c.in {
					t.Errorf("round trip = %q", back)
				}
			}
		})
	}
}

func TestContainerEnviron(t *testing.T) {
	for env, want := range map[string]bool{
		"PATH=/bin\x00container=lxc\x00":      true,
		"container=podman":                    true,
		"container=\x00HOME=/":                true,
		"PATH=/bin\x00TERM=linux\x00":         false,
		"mycontainer=x\x00CONTAINER_ID=1\x00": false,
		"":                                    false,
	} {
		if got := ContainerEnviron([]byte(env)); got != want {
			t.Errorf("ContainerEnviron(%q) = %v", env, got)
		}
	}
	proc := t.TempDir()
	if err := os.MkdirAll(filepath.Join(proc, "1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(proc, "1", "environ"), []byte("HOME=/\x00container=systemd-nspawn\x00"), 0o400); err != nil {
		t.Fatal(err)
	}
	if in, err := PID1InContainer(proc); err != nil || !in {
		t.Errorf("PID1InContainer = %v, %v", in, err)
	}
	if _, err := PID1InContainer(t.TempDir()); err == nil {
		t.Errorf("no environ file: no error")
	}
}

type stat struct {
	mode     os.FileMode
	uid, gid uint32
}

func fileStat(t *testing.T, p string) stat {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return stat{mode: fi.Mode().Perm(), uid: st.Uid, gid: st.Gid}
}
