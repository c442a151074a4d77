package packaging

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func unitFiles(t *testing.T) []string {
	t.Helper()
	var units []string
	for _, pat := range []string{"systemd/*.service", "systemd/*.timer"} {
		m, err := filepath.Glob(pat)
		if err != nil {
			t.Fatal(err)
		}
		units = append(units, m...)
	}
	if len(units) < 7 {
		t.Fatalf("found %d unit files, want at least 7: %v", len(units), units)
	}
	return units
}

// TestUnitsVerify runs systemd-analyze verify on every unit inside a temp
// root holding the host's system units, a stub /usr/sbin/one-contextd and
// the man page (verify also checks Documentation=man:one-contextd(8)).
// systemd-analyze prints problems as warnings and still exits 0, so any
// output fails the test.
func TestUnitsVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed (apt-get install systemd): units not verified")
	}
	hostUnits := "/usr/lib/systemd/system"
	if _, err := os.Stat(filepath.Join(hostUnits, "sysinit.target")); err != nil {
		hostUnits = "/lib/systemd/system"
	}
	if _, err := os.Stat(filepath.Join(hostUnits, "sysinit.target")); err != nil {
		t.Skip("no systemd unit directory with sysinit.target on this host: units not verified")
	}
	root := t.TempDir()
	copyTree(t, hostUnits, filepath.Join(root, "usr/lib/systemd/system"))
	writeFile(t, filepath.Join(root, "usr/sbin/one-contextd"), "#!/bin/sh\nexit 0\n", 0o755)
	etc := filepath.Join(root, "etc/systemd/system")
	var names []string
	for _, u := range unitFiles(t) {
		data, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(etc, filepath.Base(u)), string(data), 0o644)
		names = append(names, filepath.Join(etc, filepath.Base(u)))
	}
	manDir := t.TempDir()
	page, err := os.ReadFile("man/one-contextd.8")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(manDir, "man8/one-contextd.8"), string(page), 0o644)

	cmd := exec.Command(sa, append([]string{"verify", "--root=" + root}, names...)...)
	cmd.Env = append(os.Environ(), "MANPATH="+manDir, "SYSTEMD_LOG_COLOR=0", "SYSTEMD_PAGER=")
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestUnitsVerifyCatchesErrors makes sure the check above can fail: a unit
// with a misspelt key and a bad limit must produce output.
func TestUnitsVerifyCatchesErrors(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.service")
	writeFile(t, bad, "[Service]\nTpye=oneshot\nMemoryMax=32Q\nExecStart=/bin/true\n", 0o644)
	out, _ := exec.Command(sa, "verify", "--man=no", bad).CombinedOutput()
	if !bytes.Contains(out, []byte("Tpye")) || !bytes.Contains(out, []byte("32Q")) {
		t.Errorf("systemd-analyze verify did not report the broken unit:\n%s", out)
	}
}

// TestUnitPolicy checks what verify cannot: the limits and timeouts the
// project requires, and that every command is a real agent subcommand.
func TestUnitPolicy(t *testing.T) {
	subcommands := map[string]bool{"run": true, "reconfigure": true, "report": true, "metrics": true, "roles": true}
	for _, u := range unitFiles(t) {
		data, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		if !strings.Contains(text, "Documentation=man:one-contextd(8)") {
			t.Errorf("%s: no Documentation=man:one-contextd(8)", u)
		}
		if !strings.HasSuffix(u, ".service") {
			continue
		}
		for _, key := range []string{"Type=", "TimeoutStartSec=", "TimeoutStopSec=", "MemoryMax=", "CPUQuota="} {
			if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(key) + `\S`).MatchString(text) {
				t.Errorf("%s: no %s", u, key)
			}
		}
		if regexp.MustCompile(`(?m)^Timeout(Start|Stop)?Sec=(0|infinity)$`).MatchString(text) {
			t.Errorf("%s: unbounded timeout", u)
		}
		m := regexp.MustCompile(`(?m)^ExecStart=/usr/sbin/one-contextd (\S+)`).FindStringSubmatch(text)
		if m == nil || !subcommands[m[1]] {
			t.Errorf("%s: ExecStart is not /usr/sbin/one-contextd with a known subcommand: %v", u, m)
		}
	}
	local, _ := os.ReadFile("systemd/one-contextd-local.service")
	for _, want := range []string{"DefaultDependencies=no", "Before=network-pre.target", "Wants=network-pre.target", "Type=notify", "--stage local"} {
		if !strings.Contains(string(local), want) {
			t.Errorf("one-contextd-local.service lacks %q", want)
		}
	}
	network, _ := os.ReadFile("systemd/one-contextd.service")
	for _, want := range []string{"After=network-online.target", "Wants=network-online.target", "Type=notify", "--stage network", "RuntimeDirectory=one-contextd"} {
		if !strings.Contains(string(network), want) {
			t.Errorf("one-contextd.service lacks %q", want)
		}
	}
}

// TestUdevRules checks the rules with udevadm verify where this udev has it
// (systemd >= 254; Debian 12 has 252, where the rules are parsed by the real
// udevd in the e2e VM boot instead), and the no-blocking policy everywhere.
func TestUdevRules(t *testing.T) {
	rules, err := filepath.Glob("udev/*.rules")
	if err != nil || len(rules) == 0 {
		t.Fatalf("no udev rules: %v", err)
	}
	for _, r := range rules {
		data, err := os.ReadFile(r)
		if err != nil {
			t.Fatal(err)
		}
		synthSkipped := false
		for i, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, `ENV{SYNTH_UUID}=="?*", GOTO=`) {
				synthSkipped = true
			}
			if strings.Contains(line, "one-contextd-reconfigure") && !synthSkipped {
				t.Errorf("%s:%d: reconfigure started by synthetic events (udev's coldplug at every boot): %s", r, i+1, line)
			}
			if strings.Contains(line, "RUN+=") && !strings.Contains(line, "systemctl --no-block start") {
				t.Errorf("%s:%d: RUN without systemctl --no-block blocks udev: %s", r, i+1, line)
			}
			if strings.Contains(line, "one-contextd-reconfigure") && !strings.Contains(line, `TEST=="/run/one-contextd"`) {
				t.Errorf("%s:%d: reconfigure started before the boot run: %s", r, i+1, line)
			}
		}
	}
	udevadm, err := exec.LookPath("udevadm")
	if err != nil {
		t.Skip("udevadm not installed: rules not parsed here")
	}
	if out, err := exec.Command(udevadm, "verify", "--help").CombinedOutput(); err != nil {
		t.Skipf("this udevadm has no verify (systemd < 254): rules parsed only in the VM boot test (e2e); %s", bytes.TrimSpace(out))
	}
	out, err := exec.Command(udevadm, append([]string{"verify", "--no-style"}, rules...)...).CombinedOutput()
	if err != nil {
		t.Errorf("udevadm verify: %v\n%s", err, out)
	}
}

// TestShellScripts parses every shell script with sh -n, and runs
// shellcheck on them when it is installed.
func TestShellScripts(t *testing.T) {
	var scripts []string
	for _, pat := range []string{"*.sh", "deb/postinst", "deb/prerm", "deb/postrm", "image/*.sh", "vm/*.sh"} {
		m, _ := filepath.Glob(pat)
		scripts = append(scripts, m...)
	}
	if len(scripts) < 4 {
		t.Fatalf("found only %v", scripts)
	}
	for _, s := range scripts {
		if out, err := exec.Command("sh", "-n", s).CombinedOutput(); err != nil {
			t.Errorf("sh -n %s: %v\n%s", s, err, out)
		}
	}
	sc, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Skip("shellcheck not installed (apt-get install shellcheck): scripts only parsed")
	}
	out, err := exec.Command(sc, append([]string{"-s", "sh", "-S", "warning"}, scripts...)...).CombinedOutput()
	if err != nil {
		t.Errorf("shellcheck: %v\n%s", err, out)
	}
}

func writeFile(t *testing.T, p, data string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}

// copyTree copies a unit directory, keeping symlinks as they are (aliases
// like dbus-org.*.service are relative or point inside the same tree).
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, out)
		case fi.IsDir():
			return os.MkdirAll(out, 0o755)
		default:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(out, data, 0o644)
		}
	})
	if err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
}
