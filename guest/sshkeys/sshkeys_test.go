package sshkeys

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"one-contextd/context/settings"
	"one-contextd/engine"
	"one-contextd/fsroot"
	"one-contextd/guest/internal/accounts"
	"one-contextd/guest/internal/debroot"
	"one-contextd/guest/internal/guesttest"
	"one-contextd/guest/users"
)

const (
	keyAlice = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH3k1vZ8tQyQmXo2o7Qw4cVfJd0bW1pS9r5u6a7b8c9d alice@example.org"
	keyOps   = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJq0Yw1c2b3n4m5k6j7h8g9f0d1s2a3p4o5i6u7y8t9r ops@example.org"
)

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

// withUser creates the context's user with the users step, for real.
func (f *fixture) withUser(t *testing.T, c *settings.Context) accounts.User {
	t.Helper()
	r, rec := engine.NewTestRecorder()
	if err := users.Apply(context.Background(), r, users.Input{Users: c.Users, Root: f.root, Run: f.run}); err != nil {
		t.Fatalf("users: %v (%v)", err, rec.Problems)
	}
	f.run.Calls()
	u, ok, err := accounts.Lookup(f.root, c.Users.Name)
	if err != nil || !ok {
		t.Fatalf("user %s missing: %v", c.Users.Name, err)
	}
	return u
}

func (f *fixture) apply(t *testing.T, u settings.Users) (*engine.StepRecord, error) {
	t.Helper()
	r, rec := engine.NewTestRecorder()
	err := Apply(context.Background(), r, Input{Users: u, Root: f.root, Run: f.run})
	return rec, err
}

func (f *fixture) path(p string) string { return filepath.Join(f.dir, p) }

func ownerMode(t *testing.T, p string) (int, int, os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return int(st.Uid), int(st.Gid), fi.Mode()
}

func TestVector08KeysGoToTheNamedUserOnly(t *testing.T) {
	f := newFixture(t)
	c := guesttest.Vector(t, "08-user-sudo-keys-crypted")
	u := f.withUser(t, c)
	rootKeys := f.path("root/.ssh/authorized_keys")
	if err := os.MkdirAll(filepath.Dir(rootKeys), 0o700); err != nil {
		t.Fatal(err)
	}
	rootOwn := []byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJq0Yw1c2b3n4m5k6j7h8g9f0d1s2a3p4o5i6u7y8t9r root-own\n")
	if err := os.WriteFile(rootKeys, rootOwn, 0o600); err != nil {
		t.Fatal(err)
	}

	rec, err := f.apply(t, c.Users)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if len(rec.Problems) != 0 {
		t.Errorf("problems: %v", rec.Problems)
	}
	ak := f.path("home/cloudadm/.ssh/authorized_keys")
	data, err := os.ReadFile(ak)
	if err != nil {
		t.Fatal(err)
	}
	want := BeginMarker + "\n" + keyAlice + "\n" + keyOps + "\n" + EndMarker + "\n"
	if string(data) != want {
		t.Errorf("authorized_keys:\n%s\nwant:\n%s", data, want)
	}
	for p, mode := range map[string]os.FileMode{ak: 0o600, filepath.Dir(ak): 0o700 | os.ModeDir} {
		uid, gid, m := ownerMode(t, p)
		if uid != u.UID || gid != u.GID || m != mode {
			t.Errorf("%s: owner %d:%d mode %v, want %d:%d %v", p, uid, gid, m, u.UID, u.GID, mode)
		}
	}
	if got, _ := os.ReadFile(rootKeys); !bytes.Equal(got, rootOwn) {
		t.Errorf("root's authorized_keys changed: %q", got)
	}
	// The real tools read the result: ssh-keygen lists both keys, and the
	// guest's sshd configuration looks for exactly this file with StrictModes.
	out, err := exec.Command("ssh-keygen", "-l", "-f", ak).CombinedOutput()
	if err != nil || strings.Count(string(out), "(ED25519)") != 2 {
		t.Errorf("ssh-keygen -l -f authorized_keys: %v\n%s", err, out)
	}
	sshdCheck(t, f.dir)

	// Second run: no tool, no write.
	if n := len(f.run.Calls()); n != 2 {
		t.Errorf("first run: ssh-keygen ran %d times, want 2", n)
	}
	before := guesttest.Snapshot(t, f.path("home"))
	rec, err = f.apply(t, c.Users)
	if err != nil || len(rec.Changes) != 0 {
		t.Errorf("second run: %v, %v", err, rec.Changes)
	}
	if calls := f.run.Calls(); len(calls) != 0 {
		t.Errorf("second run ran %v", guesttest.Lines(calls))
	}
	if d := guesttest.Diff(before, guesttest.Snapshot(t, f.path("home"))); len(d) != 0 {
		t.Errorf("second run changed %v", d)
	}
}

// sshdCheck runs the host's sshd in test mode against the guest's sshd
// configuration and checks that it would read ~/.ssh/authorized_keys with
// StrictModes, which the modes and owners above satisfy.
func sshdCheck(t *testing.T, dir string) {
	t.Helper()
	sshd, err := exec.LookPath("sshd")
	if err != nil {
		t.Log("sshd not installed on this machine; sshd -T check skipped")
		return
	}
	hostKey := filepath.Join(t.TempDir(), "hostkey")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostKey).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen host key: %v: %s", err, out)
	}
	cfg := filepath.Join(dir, "etc/ssh/sshd_config")
	// sshd wants its privilege separation directory /run/sshd; give it a
	// private /run in a mount namespace rather than touch this machine's.
	sshdIn := func(args ...string) ([]byte, error) {
		script := `mount -t tmpfs tmpfs /run && mkdir /run/sshd && exec "$@"`
		cmd := exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "sh", "-c", script, "sh", sshd}, args...)...)
		return cmd.CombinedOutput()
	}
	if out, err := sshdIn("-t", "-f", cfg, "-h", hostKey); err != nil {
		t.Errorf("sshd -t on the guest config: %v: %s", err, out)
	}
	out, err := sshdIn("-T", "-f", cfg, "-h", hostKey, "-C", "user=cloudadm,host=client,addr=192.0.2.1")
	if err != nil {
		t.Fatalf("sshd -T: %v: %s", err, out)
	}
	for _, want := range []string{"authorizedkeysfile .ssh/authorized_keys", "strictmodes yes"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("sshd -T does not say %q", want)
		}
	}
}

func TestOwnLinesKeptAndBlockUpdatedNotDuplicated(t *testing.T) {
	f := newFixture(t)
	c := guesttest.Context(t, map[string]string{"USERNAME": "dev", "SSH_PUBLIC_KEY": keyAlice})
	u := f.withUser(t, c)
	ak := f.path("home/dev/.ssh/authorized_keys")
	if err := os.MkdirAll(filepath.Dir(ak), 0o755); err != nil {
		t.Fatal(err)
	}
	own := "# my keys\r\nno-pty " + keyOps + "  \n\n" + "ssh-rsa AAAA-user-line-no-newline"
	if err := os.WriteFile(ak, []byte(own), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(ak, u.UID, u.GID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.apply(t, c.Users); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(ak)
	if !strings.HasPrefix(string(data), own+"\n"+BeginMarker+"\n"+keyAlice+"\n"+EndMarker+"\n") {
		t.Errorf("own lines not kept byte for byte:\n%q", data)
	}
	if _, _, m := ownerMode(t, ak); m != 0o600 {
		t.Errorf("mode %v", m)
	}

	// New keys replace the block in place; a key the user has on a line
	// of their own is not added again.
	c = guesttest.Context(t, map[string]string{"USERNAME": "dev", "SSH_PUBLIC_KEY": keyAlice + "\n" + "ssh-rsa AAAA-user-line-no-newline"})
	f.apply(t, c.Users)
	c = guesttest.Context(t, map[string]string{"USERNAME": "dev", "SSH_PUBLIC_KEY": keyOps + "\n" + keyAlice})
	rec, err := f.apply(t, c.Users)
	if err != nil || len(rec.Changes) != 1 {
		t.Fatalf("apply: %v %v", err, rec.Changes)
	}
	data, _ = os.ReadFile(ak)
	if strings.Count(string(data), BeginMarker) != 1 || strings.Count(string(data), keyAlice) != 1 {
		t.Errorf("block duplicated:\n%s", data)
	}
	if !strings.HasPrefix(string(data), own+"\n") || !strings.HasSuffix(string(data), BeginMarker+"\n"+keyOps+"\n"+keyAlice+"\n"+EndMarker+"\n") {
		t.Errorf("unexpected file:\n%q", data)
	}

	// No keys: the block goes, the user's lines and the file stay.
	c = guesttest.Context(t, map[string]string{"USERNAME": "dev"})
	if _, err := f.apply(t, c.Users); err != nil {
		t.Fatal(err)
	}
	data, err = os.ReadFile(ak)
	if err != nil || string(data) != own+"\n" {
		t.Errorf("after removing every key: %q, %v", data, err)
	}
}

func TestBadKeysAreProblemsAndTheOthersInstalled(t *testing.T) {
	f := newFixture(t)
	// Passes the Go pre-check (type and embedded type agree) but holds no
	// key material: only ssh-keygen can tell.
	// (An Ed25519 key has a fixed size the pre-check knows; an RSA key's
	// parts do not.)
	blob := append([]byte{0, 0, 0, 7}, "ssh-rsa"...)
	truncated := "ssh-rsa " + base64.StdEncoding.EncodeToString(blob) + " truncated"
	c := guesttest.Context(t, map[string]string{
		"SSH_PUBLIC_KEY": keyAlice + "\nssh-ed25519 !!!not-base64!!!\n" + truncated + "\nnot a key at all\n" + keyOps,
		"EC2_PUBLIC_KEY": "ssh-rsa " + base64.StdEncoding.EncodeToString(append([]byte{0, 0, 0, 11}, "ssh-ed25519"...)),
	})
	rec, err := f.apply(t, c.Users)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"SSH_PUBLIC_KEY: key 2 ", "SSH_PUBLIC_KEY: key 4 ", "EC2_PUBLIC_KEY: key 1 ", "SSH_PUBLIC_KEY: key 3 "}
	if len(rec.Problems) != len(want) {
		t.Fatalf("problems = %q", rec.Problems)
	}
	for i, w := range want {
		if !strings.HasPrefix(rec.Problems[i], w) {
			t.Errorf("problem %d = %q, want prefix %q", i, rec.Problems[i], w)
		}
	}
	data, _ := os.ReadFile(f.path("root/.ssh/authorized_keys"))
	if string(data) != BeginMarker+"\n"+keyAlice+"\n"+keyOps+"\n"+EndMarker+"\n" {
		t.Errorf("root's keys:\n%s", data)
	}
	// Only the key the pre-check could not judge went to ssh-keygen, and
	// the good ones (new at the first run).
	if n := len(f.run.Calls()); n != 3 {
		t.Errorf("ssh-keygen ran %d times, want 3", n)
	}
}

func TestSymlinkAttacksAreRefused(t *testing.T) {
	for _, attack := range []struct {
		name  string
		plant func(t *testing.T, f *fixture, home string)
	}{
		{"ssh dir is a symlink to /etc", func(t *testing.T, f *fixture, home string) {
			must(t, os.Symlink("../../etc", filepath.Join(home, ".ssh")))
		}},
		{"ssh dir is an absolute symlink to the guest's /etc", func(t *testing.T, f *fixture, home string) {
			must(t, os.Symlink(f.path("etc"), filepath.Join(home, ".ssh")))
		}},
		{"authorized_keys is a symlink to /etc/shadow", func(t *testing.T, f *fixture, home string) {
			must(t, os.Mkdir(filepath.Join(home, ".ssh"), 0o700))
			must(t, os.Symlink(f.path("etc/shadow"), filepath.Join(home, ".ssh/authorized_keys")))
		}},
		{"authorized_keys is a hard link to /etc/shadow", func(t *testing.T, f *fixture, home string) {
			must(t, os.Mkdir(filepath.Join(home, ".ssh"), 0o700))
			must(t, os.Link(f.path("etc/shadow"), filepath.Join(home, ".ssh/authorized_keys")))
		}},
		{"home is the user's symlink to /etc", func(t *testing.T, f *fixture, home string) {
			must(t, os.RemoveAll(home))
			must(t, os.Symlink("../etc", home))
			must(t, os.Lchown(home, 1000, 1000)) // a link the user made
		}},
		{"home is root's symlink in a /home others may write", func(t *testing.T, f *fixture, home string) {
			must(t, os.RemoveAll(home))
			must(t, os.Symlink("../etc", home))
			must(t, os.Chmod(f.path("home"), 0o1777)) // anybody could have put it there
		}},
		{"a trusted link leads to a home that is the user's symlink", func(t *testing.T, f *fixture, home string) {
			// /home -> var/home (root's), then the user's own link there.
			must(t, os.MkdirAll(f.path("var/home"), 0o755))
			must(t, os.Rename(f.path("home"), f.path("var/home.orig")))
			must(t, os.Symlink("var/home", f.path("home")))
			must(t, os.Symlink("../../etc", f.path("var/home/mallory")))
			must(t, os.Lchown(f.path("var/home/mallory"), 1000, 1000))
		}},
	} {
		t.Run(attack.name, func(t *testing.T) {
			f := newFixture(t)
			c := guesttest.Context(t, map[string]string{"USERNAME": "mallory", "SSH_PUBLIC_KEY": keyAlice})
			f.withUser(t, c)
			home := f.path("home/mallory")
			attack.plant(t, f, home)
			shadow, _ := os.ReadFile(f.path("etc/shadow"))
			etc := guesttest.Snapshot(t, f.path("etc"))

			_, err := f.apply(t, c.Users)
			if !errors.Is(err, ErrUnsafePath) {
				t.Errorf("apply: %v, want ErrUnsafePath", err)
			}
			if got, _ := os.ReadFile(f.path("etc/shadow")); !bytes.Equal(got, shadow) {
				t.Errorf("/etc/shadow changed")
			}
			if d := guesttest.Diff(etc, guesttest.Snapshot(t, f.path("etc"))); len(d) != 0 {
				t.Errorf("/etc changed: %v", d)
			}
			if fi, err := os.Stat(f.path("etc/shadow")); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 0 || fi.Mode().Perm() != 0o640 {
				t.Errorf("/etc/shadow owner or mode changed: %v", fi.Mode())
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestUnknownUserIsAnError(t *testing.T) {
	f := newFixture(t)
	c := guesttest.Context(t, map[string]string{"USERNAME": "ghost", "SSH_PUBLIC_KEY": keyAlice})
	if _, err := f.apply(t, c.Users); err == nil || !strings.Contains(err.Error(), "no such user") {
		t.Errorf("err = %v", err)
	}
	if _, err := os.Lstat(f.path("root/.ssh/authorized_keys")); err == nil {
		t.Errorf("keys went to root")
	}
}

func TestPrecheck(t *testing.T) {
	for line, ok := range map[string]bool{
		keyAlice:                           true,
		`from="10.0.0.1",no-pty ` + keyOps: true,
		"ssh-ed25519":                      false,
		"ssh-ed25519 AAAA":                 false,
		"ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIH3k1vZ": false,
		"hello world": false,
	} {
		if err := precheck(line); (err == nil) != ok {
			t.Errorf("precheck(%q) = %v, want ok=%v", line, err, ok)
		}
	}
}

func TestInvalidUserNameGivesNobodyTheKeys(t *testing.T) {
	f := newFixture(t)
	c := guesttest.Context(t, map[string]string{"USERNAME": "Bad User", "SSH_PUBLIC_KEY": keyAlice})
	if _, err := f.apply(t, c.Users); err == nil || !strings.Contains(err.Error(), "USERNAME") {
		t.Errorf("err = %v, want one naming USERNAME", err)
	}
	if _, err := os.Lstat(f.path("root/.ssh/authorized_keys")); err == nil {
		t.Errorf("keys went to root")
	}
}

func TestSplitKeepsTheUsersLinesAfterAnUnclosedBlock(t *testing.T) {
	// The END line was deleted by hand and the user's own key follows:
	// it must not be taken for the agent's block and replaced.
	data := "# mine\n" + BeginMarker + "\n" + keyAlice + "\n" + keyOps + "\n"
	own, block := split([]byte(data))
	if len(block) != 0 {
		t.Errorf("block = %q, want none", block)
	}
	if got := strings.Join(own, ""); got != "# mine\n"+keyAlice+"\n"+keyOps+"\n" {
		t.Errorf("own = %q", got)
	}
	// A whole block is still the agent's.
	own, block = split([]byte("# mine\n" + BeginMarker + "\n" + keyAlice + "\n" + EndMarker + "\n" + keyOps + "\n"))
	if len(block) != 1 || block[0] != keyAlice || strings.Join(own, "") != "# mine\n"+keyOps+"\n" {
		t.Errorf("own %q, block %q", own, block)
	}
}

// Images that keep homes under /var link /root and /home there (Fedora
// CoreOS, RHEL image mode): links only root could have made are followed,
// and the keys land in the linked directory.
func TestRootsOwnLinksToHomesAreFollowed(t *testing.T) {
	f := newFixture(t)
	must(t, os.MkdirAll(f.path("var"), 0o755))
	must(t, os.Rename(f.path("root"), f.path("var/roothome")))
	must(t, os.Symlink("var/roothome", f.path("root")))
	must(t, os.Rename(f.path("home"), f.path("var/home")))
	must(t, os.Symlink("/var/home", f.path("home"))) // absolute: taken from the guest's root

	root := guesttest.Context(t, map[string]string{"SSH_PUBLIC_KEY": keyAlice})
	if _, err := f.apply(t, root.Users); err != nil {
		t.Fatalf("root's keys: %v", err)
	}
	if got, _ := os.ReadFile(f.path("var/roothome/.ssh/authorized_keys")); !strings.Contains(string(got), keyAlice) {
		t.Errorf("/var/roothome/.ssh/authorized_keys:\n%s", got)
	}

	c := guesttest.Context(t, map[string]string{"USERNAME": "alice", "SSH_PUBLIC_KEY": keyOps})
	u := f.withUser(t, c)
	if _, err := f.apply(t, c.Users); err != nil {
		t.Fatalf("alice's keys: %v", err)
	}
	p := f.path("var/home/alice/.ssh/authorized_keys")
	if got, _ := os.ReadFile(p); !strings.Contains(string(got), keyOps) {
		t.Errorf("%s:\n%s", p, got)
	}
	if uid, gid, mode := ownerMode(t, p); uid != u.UID || gid != u.GID || mode.Perm() != 0o600 {
		t.Errorf("authorized_keys: owner %d:%d mode %v, want %d:%d 0600", uid, gid, mode, u.UID, u.GID)
	}
	if _, err := os.Lstat(f.path("var/roothome/.ssh/authorized_keys")); err != nil {
		t.Errorf("root's keys gone: %v", err)
	}
}

func TestResolveStaysInTheRoot(t *testing.T) {
	for _, c := range []struct {
		base   []string
		target string
		after  []string
		want   string
	}{
		{[]string{}, "var/roothome", []string{".ssh"}, "var/roothome/.ssh"},
		{[]string{"home"}, "../var/home/a", nil, "var/home/a"},
		{[]string{"a"}, "../../../../etc", nil, "etc"},
		{nil, "/var/home", []string{"alice"}, "var/home/alice"},
		{[]string{"x"}, "..", nil, ""},
	} {
		if got := strings.Join(resolve(c.base, c.target, c.after), "/"); got != c.want {
			t.Errorf("resolve(%v, %q, %v) = %q, want %q", c.base, c.target, c.after, got, c.want)
		}
	}
	if got := resolve(nil, "/", nil); got == nil {
		t.Error("resolve to the root itself returned nil (read as done)")
	}
}
