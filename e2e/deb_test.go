package e2e

import (
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDebLintian builds the package and runs the real lintian on it: no
// error and no warning may remain (overrides only with a written reason,
// in packaging/deb/lintian-overrides). It also checks size, contents and
// that two builds give the same bytes.
func TestDebLintian(t *testing.T) {
	need(t, "lintian", "dpkg-deb")
	deb := lab.deb(t)
	out, err := exec.Command("lintian", "--fail-on", "error,warning", "--display-info", deb).CombinedOutput()
	t.Logf("lintian:\n%s", out)
	if err != nil {
		t.Errorf("lintian: %v", err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "E: ") || strings.HasPrefix(l, "W: ") {
			t.Errorf("lintian: %s", l)
		}
	}
	fi, err := os.Stat(deb)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %.2f MB", filepath.Base(deb), float64(fi.Size())/1e6)
	if fi.Size() > 6e6 {
		t.Errorf("the .deb is %d bytes, the target is under 6 MB", fi.Size())
	}
	list, err := run(time.Minute, "", "dpkg-deb", "-c", deb)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"./usr/sbin/one-contextd", "./usr/bin/onegate -> ../sbin/one-contextd",
		"./usr/lib/systemd/system/one-contextd-local.service", "./usr/lib/systemd/system/one-contextd.service",
		"./usr/lib/systemd/system/one-contextd-reconfigure.service", "./usr/lib/systemd/system/one-contextd-report.timer",
		"./usr/lib/systemd/system/one-contextd-metrics.timer", "./usr/lib/udev/rules.d/65-one-contextd.rules",
		"./usr/share/man/man8/one-contextd.8.gz", "./usr/share/doc/one-contextd/copyright", "./etc/one-context.d/",
	} {
		if !strings.Contains(list, want) {
			t.Errorf("the .deb lacks %s", want)
		}
	}
	fields, err := run(time.Minute, "", "dpkg-deb", "-f", deb, "Conflicts", "Replaces", "Provides")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"Conflicts: one-context", "Replaces: one-context", "Provides: one-context"} {
		if !strings.Contains(fields, f) {
			t.Errorf("control lacks %q:\n%s", f, fields)
		}
	}

	// Reproducible: a second build from the same binary is byte-identical.
	again := t.TempDir()
	cmd := exec.Command(filepath.Join(lab.repo, "packaging/build-deb.sh"), "0.0.0~e2e", again)
	cmd.Env = append(os.Environ(), "BIN="+lab.agent(t))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("second build: %v\n%s", err, b)
	}
	if a, b := fileSum(t, deb), fileSum(t, filepath.Join(again, filepath.Base(deb))); a != b {
		t.Errorf("two builds differ: %s vs %s", a, b)
	}
}

func fileSum(t *testing.T, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(data))
}

// fakeOneContext builds a stand-in for OpenNebula's one-context package:
// the same /usr/sbin/one-contextd path, a unit and a script in
// /etc/one-context.d, so installing ours must replace it cleanly.
func fakeOneContext(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	files := map[string]string{
		"DEBIAN/control": "Package: one-context\nVersion: 6.10.0-1\nArchitecture: all\nMaintainer: test <test@example.org>\n" +
			"Description: stand-in for the shell one-context package\n test only\n",
		"DEBIAN/conffiles":                           "/etc/one-context.d/loc-10-network\n",
		"usr/sbin/one-contextd":                      "#!/bin/sh\necho shell one-context\n",
		"etc/one-context.d/loc-10-network":           "#!/bin/sh\n",
		"usr/lib/systemd/system/one-context.service": "[Service]\nExecStart=/usr/sbin/one-contextd network\n",
	}
	for p, data := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasPrefix(p, "usr/sbin") || strings.HasPrefix(p, "etc/one-context.d") {
			mode = 0o755
		}
		if err := os.WriteFile(full, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "one-context_6.10.0-1_all.deb")
	if _, err := run(time.Minute, "", "dpkg-deb", "--root-owner-group", "--build", root, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDebInstall installs the .deb into minbase roots made by mmdebstrap
// (Debian 12, Debian 13, Ubuntu 24.04 when its archive answers), over a
// stand-in one-context, and checks the files, the enabled units, the
// binary, then remove and purge.
func TestDebInstall(t *testing.T) {
	need(t, "mmdebstrap", "dpkg-deb", "chroot")
	deb := lab.deb(t)
	oldPkg := fakeOneContext(t)
	suites := []struct{ name, suite, mirror, keyring string }{
		{"debian12", "bookworm", "http://deb.debian.org/debian", "/usr/share/keyrings/debian-archive-keyring.gpg"},
		{"debian13", "trixie", "http://deb.debian.org/debian", "/usr/share/keyrings/debian-archive-keyring.gpg"},
		{"ubuntu2404", "noble", "http://archive.ubuntu.com/ubuntu", "/usr/share/keyrings/ubuntu-archive-keyring.gpg"},
	}
	for _, s := range suites {
		t.Run(s.name, func(t *testing.T) {
			if _, err := os.Stat(s.keyring); err != nil {
				t.Skipf("no keyring %s (apt-get install %s): %s not tried", s.keyring, keyringPkg(s.keyring), s.suite)
			}
			if _, err := run(20*time.Second, "", "curl", "-fsS", "-o", "/dev/null", s.mirror+"/dists/"+s.suite+"/InRelease"); err != nil {
				t.Skipf("%s archive %s not reachable from here: %v", s.suite, s.mirror, err)
			}
			root := filepath.Join(t.TempDir(), "root")
			args := []string{"--quiet", "--variant=minbase", "--include=passwd,udev", "--keyring=" + s.keyring}
			if strings.Contains(s.mirror, "ubuntu") {
				args = append(args, "--components=main,universe")
			}
			args = append(args,
				"--customize-hook=copy-in "+oldPkg+" /tmp",
				"--customize-hook=chroot \"$1\" dpkg -i /tmp/"+filepath.Base(oldPkg),
				s.suite, root, s.mirror)
			if _, err := run(10*time.Minute, "", "mmdebstrap", args...); err != nil {
				t.Fatal(err)
			}
			inRoot := func(args ...string) (string, error) {
				return run(2*time.Minute, "", "chroot", append([]string{root}, args...)...)
			}
			// mmdebstrap empties /tmp at the end: bring the package in now.
			data, err := os.ReadFile(deb)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, "var/tmp", filepath.Base(deb)), data, 0o644); err != nil {
				t.Fatal(err)
			}
			// Install over one-context: Conflicts+Replaces make dpkg remove it.
			if out, err := inRoot("dpkg", "-i", "/var/tmp/"+filepath.Base(deb)); err != nil {
				t.Fatalf("dpkg -i: %v\n%s", err, out)
			}
			if st, _ := inRoot("dpkg-query", "-W", "-f=${db:Status-Status}", "one-context"); strings.TrimSpace(st) == "installed" {
				t.Errorf("one-context is still installed after installing one-contextd")
			}
			if out, err := inRoot("/usr/sbin/one-contextd", "version"); err != nil || !strings.Contains(out, "0.0.0~e2e") {
				t.Errorf("one-contextd version in the root = %q, %v", out, err)
			}
			for _, p := range []string{
				"usr/lib/systemd/system/one-contextd-local.service", "usr/lib/udev/rules.d/65-one-contextd.rules",
				"usr/share/man/man8/one-contextd.8.gz", "etc/one-context.d",
			} {
				if _, err := os.Stat(filepath.Join(root, p)); err != nil {
					t.Errorf("after install: %v", err)
				}
			}
			if l, err := os.Readlink(filepath.Join(root, "usr/bin/onegate")); err != nil || l != "../sbin/one-contextd" {
				t.Errorf("/usr/bin/onegate -> %q, %v", l, err)
			}
			// The script the user had in /etc/one-context.d (a conffile of
			// one-context) was not ours to remove.
			enabled := map[string]string{
				"multi-user.target.wants/one-contextd-local.service": "one-contextd-local.service",
				"multi-user.target.wants/one-contextd.service":       "one-contextd.service",
				"timers.target.wants/one-contextd-report.timer":      "one-contextd-report.timer",
				"timers.target.wants/one-contextd-metrics.timer":     "one-contextd-metrics.timer",
			}
			for link, unit := range enabled {
				target, err := os.Readlink(filepath.Join(root, "etc/systemd/system", link))
				if err != nil || filepath.Base(target) != unit {
					t.Errorf("%s not enabled: link %q, %v", unit, target, err)
				}
			}
			if v, err := inRoot("udevadm", "verify", "--help"); err == nil && v != "" {
				if out, err := inRoot("udevadm", "verify", "--no-style", "/usr/lib/udev/rules.d/65-one-contextd.rules"); err != nil {
					t.Errorf("udevadm verify (%s): %v\n%s", s.suite, err, out)
				} else {
					t.Logf("udevadm verify (%s): %s", s.suite, strings.TrimSpace(out))
				}
			}

			// What a boot leaves, and something that is not the agent's.
			for p, data := range map[string]string{
				"var/lib/one-contextd/state.json": "{}", "var/log/one-context.log": "x", "var/log/one-context.log.1": "x",
				"run/one-context/one_env": "X=1", "etc/e2e-user-file": "mine",
			} {
				full := filepath.Join(root, p)
				if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if out, err := inRoot("dpkg", "--remove", "one-contextd"); err != nil {
				t.Fatalf("dpkg --remove: %v\n%s", err, out)
			}
			if _, err := os.Stat(filepath.Join(root, "usr/sbin/one-contextd")); err == nil {
				t.Error("binary left after remove")
			}
			if _, err := os.Stat(filepath.Join(root, "var/lib/one-contextd/state.json")); err != nil {
				t.Error("remove (not purge) deleted the agent's state")
			}
			if out, err := inRoot("dpkg", "--purge", "one-contextd"); err != nil {
				t.Fatalf("dpkg --purge: %v\n%s", err, out)
			}
			for _, p := range []string{"var/lib/one-contextd", "var/log/one-context.log", "var/log/one-context.log.1", "run/one-context",
				"etc/systemd/system/multi-user.target.wants/one-contextd.service", "etc/systemd/system/timers.target.wants/one-contextd-report.timer",
				"etc/systemd/system/one-contextd.service"} {
				if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
					t.Errorf("purge left %s", p)
				}
			}
			if _, err := os.Stat(filepath.Join(root, "etc/e2e-user-file")); err != nil {
				t.Error("purge removed a file that was not the package's or the agent's")
			}
		})
	}
}

func keyringPkg(p string) string {
	if strings.Contains(p, "ubuntu") {
		return "ubuntu-keyring"
	}
	return "debian-archive-keyring"
}
