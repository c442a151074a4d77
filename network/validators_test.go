package network

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"one-contextd/network/render"
)

// The real tools of the managers read every rendered golden case. Each
// validator is first shown a broken file, to prove it can fail at all.

func need(t *testing.T, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		t.Skipf("validator %s is not installed (apt-get install the packages in .ci/apt.d/network.txt)", tool)
	}
	return p
}

func writeTree(t *testing.T, files []render.File) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range files {
		p := filepath.Join(dir, f.Path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.Data, f.Mode); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func run(name string, args ...string) (string, string, error) {
	var out, errb bytes.Buffer
	c := exec.Command(name, args...)
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	return out.String(), errb.String(), err
}

func TestValidateNetplan(t *testing.T) {
	need(t, "netplan")
	check := func(files []render.File) (string, error) {
		dir := writeTree(t, files)
		_, stderr, err := run("netplan", "generate", "--root-dir", dir)
		return stderr, err
	}
	if _, err := check([]render.File{{Path: render.NetplanPath, Data: []byte("network:\n  version: 2\n  ethernets:\n    eth0:\n      addresses: [\"192.0.2.300/24\"]\n"), Mode: 0o600}}); err == nil {
		t.Fatal("netplan generate accepted an invalid address: the validator cannot fail")
	}
	for _, c := range goldenCases(t) {
		got, _ := renderCase(t, c)
		stderr, err := check(got[render.Netplan])
		if err != nil || strings.TrimSpace(stderr) != "" {
			t.Errorf("%s: netplan generate: %v: %s", c.name, err, stderr)
		}
	}
}

func TestValidateIfupdown(t *testing.T) {
	need(t, "ifup")
	check := func(files []render.File) (string, error) {
		dir := writeTree(t, files)
		state := t.TempDir()
		_, stderr, err := run("ifup", "--no-act", "--no-scripts", "--state-dir", state, "-i", filepath.Join(dir, render.InterfacesPath), "-a")
		return stderr, err
	}
	if _, err := check([]render.File{{Path: render.InterfacesPath, Data: []byte("auto eth0\niface eth0 inet statik\n"), Mode: 0o644}}); err == nil {
		t.Fatal("ifup -n accepted an unknown method: the validator cannot fail")
	}
	for _, c := range goldenCases(t) {
		got, _ := renderCase(t, c)
		// --no-act prints the commands it would run on stderr; its own
		// complaints start with "ifup:".
		stderr, err := check(got[render.Interfaces])
		if err != nil || strings.Contains(stderr, "ifup:") {
			t.Errorf("%s: ifup --no-act: %v: %s", c.name, err, stderr)
		}
	}
}

// nmCheck reads keyfiles with libnm's keyfile reader (the one
// NetworkManager uses), fails on any warning, and verifies the connection.
const nmCheck = `
import sys, gi
gi.require_version('NM', '1.0')
from gi.repository import NM, GLib
rc = 0
for p in sys.argv[1:]:
    warnings = []
    def handler(kf, conn, htype, hdata, user):
        if htype == NM.KeyfileHandlerType.WARN:
            warnings.append(hdata.get_message())
        return False
    kf = GLib.KeyFile()
    kf.load_from_file(p, GLib.KeyFileFlags.NONE)
    try:
        c = NM.keyfile_read(kf, "/etc/NetworkManager/system-connections", NM.KeyfileHandlerFlags.NONE, handler, None)
        c.verify()
        if warnings:
            raise Exception("; ".join(warnings))
    except Exception as e:
        print(p + ": " + str(e)); rc = 1
sys.exit(rc)
`

func TestValidateNetworkManagerKeyfile(t *testing.T) {
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		t.Skip("validator: /usr/bin/python3 missing")
	}
	if _, _, err := run(py, "-c", "import gi; gi.require_version('NM', '1.0'); from gi.repository import NM"); err != nil {
		t.Skip("validator: libnm's GObject bindings are not installed (python3-gi, gir1.2-nm-1.0)")
	}
	script := filepath.Join(t.TempDir(), "nmcheck.py")
	if err := os.WriteFile(script, []byte(nmCheck), 0o644); err != nil {
		t.Fatal(err)
	}
	check := func(files []render.File) (string, error) {
		dir := writeTree(t, files)
		var paths []string
		for _, f := range files {
			paths = append(paths, filepath.Join(dir, f.Path))
		}
		out, _, err := run(py, append([]string{script}, paths...)...)
		return out, err
	}
	if _, err := check([]render.File{{Path: render.NMPath("eth0"), Data: []byte("[connection]\nid=x\ntype=ethernet\n[ipv4]\nmethod=manual\naddress1=192.0.2.300/24\n"), Mode: 0o600}}); err == nil {
		t.Fatal("libnm accepted an invalid address: the validator cannot fail")
	}
	for _, c := range goldenCases(t) {
		got, _ := renderCase(t, c)
		if len(got[render.NM]) == 0 {
			continue
		}
		if out, err := check(got[render.NM]); err != nil {
			t.Errorf("%s: NetworkManager keyfile: %v: %s", c.name, err, out)
		}
	}
}

// TestValidateNetworkd runs systemd-networkd itself over the units, once,
// in a private mount and network namespace (a tmpfs over /run, the units
// bind-mounted over /etc/systemd/network), and fails on any line it logs
// about a unit.
func TestValidateNetworkd(t *testing.T) {
	needNetworkd(t)
	networkd := "/lib/systemd/systemd-networkd"
	parse := func(units map[string][]byte) string {
		dir := t.TempDir()
		for name, data := range units {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		script := `mount -t tmpfs tmpfs /run && mount --bind "$1" /etc/systemd/network && SYSTEMD_LOG_TARGET=console timeout 2 "$2"; true`
		_, stderr, err := run("timeout", "20", "unshare", "--mount", "--net", "--propagation", "private", "sh", "-c", script, "sh", dir, networkd)
		if err != nil {
			t.Fatalf("unshare: %v: %s", err, stderr)
		}
		var bad []string
		for _, line := range strings.Split(stderr, "\n") {
			if strings.Contains(line, "/etc/systemd/network/") {
				bad = append(bad, line)
			}
		}
		return strings.Join(bad, "\n")
	}
	if out := parse(map[string][]byte{"broken.network": []byte("[Match]\nName=x\n[Network]\nAddress=192.0.2.300/24\n")}); out == "" {
		t.Fatal("systemd-networkd said nothing about an invalid address: the validator cannot fail")
	}
	units := map[string][]byte{}
	for _, c := range goldenCases(t) {
		got, _ := renderCase(t, c)
		for _, f := range got[render.Networkd] {
			units[c.name+"--"+filepath.Base(f.Path)] = f.Data
		}
	}
	if out := parse(units); out != "" {
		t.Errorf("systemd-networkd rejected parts of the units:\n%s", out)
	}
}

// TestValidateNmcliOffline has nmcli (1.40 or later) read every keyfile
// offline and write it back: it verifies the connection as
// NetworkManager does when it loads the file, and a keyfile it refuses
// is dropped whole by NetworkManager, IPv4 included.
func TestValidateNmcliOffline(t *testing.T) {
	nmcli := need(t, "nmcli")
	if _, stderr, err := run(nmcli, "--offline", "--help"); err != nil {
		t.Skipf("validator: nmcli has no --offline (NetworkManager before 1.40): %v: %s", err, stderr)
	}
	check := func(f render.File) (string, error) {
		c := exec.Command(nmcli, "--offline", "connection", "modify", "connection.autoconnect", "yes")
		c.Stdin = bytes.NewReader(f.Data)
		var errb bytes.Buffer
		c.Stderr = &errb
		err := c.Run()
		return errb.String(), err
	}
	broken := "[connection]\nid=x\ntype=ethernet\n[ipv4]\nmethod=manual\naddress1=192.0.2.10/24\n[ipv6]\nmethod=ignore\naddress1=2001:db8:1::b/64\n"
	if _, err := check(render.File{Path: render.NMPath("eth0"), Data: []byte(broken)}); err == nil {
		t.Fatal("nmcli --offline accepted an IPv6 address with method=ignore: the validator cannot fail")
	}
	for _, c := range goldenCases(t) {
		got, _ := renderCase(t, c)
		for _, f := range got[render.NM] {
			if stderr, err := check(f); err != nil {
				t.Errorf("%s: %s: nmcli --offline: %v: %s", c.name, f.Path, err, stderr)
			}
		}
	}
}
