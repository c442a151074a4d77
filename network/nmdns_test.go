package network

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"one-contextd/network/model"
	"one-contextd/network/render"
	"one-contextd/network/resolv"
)

// The real NetworkManager reads the agent's global DNS drop-in: first its
// configuration parser over every golden case, then the daemon itself, in
// private namespaces, over the keyfiles and the drop-in of a case with
// global and per-NIC DNS.

// nmDaemon finds NetworkManager's binary (in sbin, which a user's PATH
// may lack), or skips.
func nmDaemon(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("NetworkManager"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/NetworkManager", "/sbin/NetworkManager"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skip("validator: NetworkManager is not installed (apt-get install network-manager)")
	return ""
}

// nmPrivate writes a NetworkManager configuration under dir whose every
// file NetworkManager reads or writes is under dir, with the drop-in in
// its conf.d, and returns the arguments that point NetworkManager at it.
func nmPrivate(t *testing.T, dir, main string, dropIn []byte) []string {
	t.Helper()
	for _, d := range []string{"conf.d", "lib-conf.d"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "NetworkManager.conf"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	if dropIn != nil {
		if err := os.WriteFile(filepath.Join(dir, "conf.d", filepath.Base(resolv.NMDropIn)), dropIn, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return []string{
		"--config=" + filepath.Join(dir, "NetworkManager.conf"),
		"--config-dir=" + filepath.Join(dir, "conf.d"),
		"--system-config-dir=" + filepath.Join(dir, "lib-conf.d"),
		"--intern-config=" + filepath.Join(dir, "intern.conf"),
		"--state-file=" + filepath.Join(dir, "state"),
	}
}

// caseDNS is what the network step hands the resolver for a case.
func caseDNS(t *testing.T, c goldenCase) (resolv.Config, model.Model) {
	t.Helper()
	ctx, err := LoadContext(c.context)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := model.Plan(ctx.Network, onegateAddr(ctx.OneGate), nil)
	return resolv.Config{Nameservers: m.Nameservers, Search: m.Searches}, m
}

func addrList(cfg resolv.Config, sep string) string {
	s := make([]string, len(cfg.Nameservers))
	for i, a := range cfg.Nameservers {
		s[i] = a.String()
	}
	return strings.Join(s, sep)
}

// TestValidateNetworkManagerGlobalDNS has NetworkManager --print-config
// read the drop-in of every golden case with nameservers, from a private
// configuration directory (nothing of this machine's NetworkManager is
// read or written), and print it back as its global DNS.
func TestValidateNetworkManagerGlobalDNS(t *testing.T) {
	nm := nmDaemon(t)
	check := func(dropIn []byte) (string, error) {
		args := append(nmPrivate(t, t.TempDir(), "[main]\n", dropIn), "--print-config")
		out, stderr, err := run(nm, args...)
		if err != nil {
			return stderr, err
		}
		return out, nil
	}
	if _, err := check([]byte("[global-dns\nsearches=example.org\n")); err == nil {
		t.Fatal("NetworkManager --print-config accepted a broken group line: the validator cannot fail")
	}
	n := 0
	for _, c := range goldenCases(t) {
		cfg, _ := caseDNS(t, c)
		if len(cfg.Nameservers) == 0 {
			continue
		}
		n++
		out, err := check(resolv.NMGlobalDNS(cfg))
		if err != nil {
			t.Errorf("%s: NetworkManager --print-config: %v: %s", c.name, err, out)
			continue
		}
		want := "\n[global-dns-domain-*]\nservers=" + addrList(cfg, ",") + "\n"
		if len(cfg.Search) > 0 {
			want = "\n[global-dns]\nsearches=" + strings.Join(cfg.Search, ",") + "\n" + want
		}
		if !strings.Contains(out, want) {
			t.Errorf("%s: NetworkManager's configuration lacks\n%s\nin:\n%s", c.name, want, out)
		}
	}
	if n == 0 {
		t.Skip("no golden case has nameservers")
	}
}

// nmScript runs NetworkManager in the private namespaces of the test,
// with a D-Bus system bus of its own (no service is activated on it),
// tmpfs over /run and /var/lib/NetworkManager, a read-only /sys (no udev
// will initialise the links) and rc-manager=unmanaged (it writes only
// /run/NetworkManager/resolv.conf). $1 is the directory of its
// configuration, $2 its binary, the rest the MACs of the veths to make.
// It prints the resolv.conf NetworkManager writes from the keyfiles alone,
// after the drop-in appears and `nmcli general reload conf,dns-rc` (what
// the agent runs), and after a restart of NetworkManager.
const nmScript = `set -e
d=$1
nm=$2
shift 2
want=$#
mount -t tmpfs tmpfs /run
mkdir -p /run/dbus
mount -t tmpfs tmpfs /var/lib/NetworkManager
mount -t sysfs -o ro sysfs /sys
ip link set lo up
i=0
for mac in "$@"; do
	ip link add "ctx$i" address "$mac" type veth peer name "peer$i"
	ip link set "peer$i" up
	i=$((i + 1))
done
dbus-daemon --config-file="$d/bus.conf" --nofork --nopidfile 2>/dev/null &
n=0
while [ ! -S /run/dbus/system_bus_socket ] && [ "$n" -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
start() {
	"$nm" --no-daemon --debug --log-level=DEBUG --log-domains=DNS,CORE,DEVICE \
		--config="$d/NetworkManager.conf" --config-dir="$d/conf.d" --system-config-dir="$d/lib-conf.d" \
		--intern-config="$d/intern.conf" --state-file="$d/state" >>"$d/nm.log" 2>&1 &
	pid=$!
	n=0
	until [ "$(nmcli -t -f DEVICE,STATE device 2>/dev/null | grep -c '^ctx[0-9]*:connected$')" = "$want" ] && [ -s /run/NetworkManager/resolv.conf ]; do
		[ "$n" -lt 150 ] || break
		sleep 0.1
		n=$((n + 1))
	done
	nmcli -t -f DEVICE,STATE device >>"$d/nm.log" 2>&1 || true
}
show() {
	echo "== $1"
	cat /run/NetworkManager/resolv.conf 2>/dev/null || true
}
start
show keyfiles
cp "$d/dropin.conf" "$d/conf.d/90-one-context-dns.conf"
nmcli general reload conf,dns-rc
show reload
kill "$pid"
wait "$pid" || true
rm -f /run/NetworkManager/resolv.conf
start
show restart
kill "$pid"
wait "$pid" || true
`

// busConf is a system bus that lets every peer in and activates nothing.
const busConf = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=/run/dbus/system_bus_socket</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
`

// resolvConfs splits the script's output into its resolv.conf files:
// name -> nameservers, search line.
func resolvConfs(out string) map[string][2]string {
	res := map[string][2]string{}
	name := ""
	for _, line := range strings.Split(out, "\n") {
		if n, ok := strings.CutPrefix(line, "== "); ok {
			name = n
			res[name] = [2]string{}
			continue
		}
		v := res[name]
		if ns, ok := strings.CutPrefix(line, "nameserver "); ok {
			v[0] = strings.TrimSpace(v[0] + " " + ns)
		}
		if s, ok := strings.CutPrefix(line, "search "); ok {
			v[1] = s
		}
		res[name] = v
	}
	return res
}

// TestNetworkManagerTakesTheGlobalDNS runs the real NetworkManager over the
// keyfiles of the vector with global and per-NIC DNS. From the keyfiles
// alone its resolv.conf lacks the global DNS (the finding this drop-in
// fixes); once the drop-in is there and the agent's reload has run, and
// again after a restart of NetworkManager, it holds exactly the context's
// nameservers and search domains, in context order, as one-context's
// resolv.conf does.
func TestNetworkManagerTakesTheGlobalDNS(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("runs NetworkManager in private mount, network and PID namespaces: needs root")
	}
	nm := nmDaemon(t)
	for _, tool := range []string{"unshare", "ip", "nmcli", "dbus-daemon"} {
		need(t, tool)
	}
	if fi, err := os.Stat("/var/lib/NetworkManager"); err != nil || !fi.IsDir() {
		t.Skip("/var/lib/NetworkManager is missing, nothing to mount over")
	}
	var c goldenCase
	for _, g := range goldenCases(t) {
		if g.name == "07-mtu-dns-search" {
			c = g
		}
	}
	if c.name == "" {
		t.Skip("shared vector 07-mtu-dns-search not found")
	}
	cfg, m := caseDNS(t, c)
	got, _ := renderCase(t, c)

	dir := t.TempDir()
	conn := filepath.Join(dir, "system-connections")
	if err := os.MkdirAll(conn, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range got[render.NM] {
		if err := os.WriteFile(filepath.Join(conn, filepath.Base(f.Path)), f.Data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	main := fmt.Sprintf("[main]\nplugins=keyfile\ndns=default\nrc-manager=unmanaged\nno-auto-default=*\nauth-polkit=false\n\n[keyfile]\npath=%s\n", conn)
	nmPrivate(t, dir, main, nil)
	for name, data := range map[string][]byte{"dropin.conf": resolv.NMGlobalDNS(cfg), "bus.conf": []byte(busConf)} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"90", "unshare", "--mount", "--net", "--uts", "--pid", "--fork", "--propagation", "private", "sh", "-c", nmScript, "sh", dir, nm}
	for _, n := range m.NICs {
		args = append(args, n.MAC.String())
	}
	out, stderr, err := run("timeout", args...)
	log, _ := os.ReadFile(filepath.Join(dir, "nm.log"))
	if err != nil {
		t.Fatalf("NetworkManager in namespaces: %v: %s\n%s\nlog:\n%s", err, stderr, out, log)
	}
	t.Logf("NetworkManager's resolv.conf:\n%s", out)
	confs := resolvConfs(out)

	// The keyfiles carry the static NICs' own DNS, never the global DNS.
	kf := confs["keyfiles"]
	var own []string
	for _, n := range m.NICs {
		for _, a := range n.DNS {
			own = append(own, a.String())
		}
	}
	gotOwn := strings.Fields(kf[0])
	slices.Sort(gotOwn)
	slices.Sort(own)
	if !slices.Equal(gotOwn, own) {
		t.Errorf("from the keyfiles: nameservers %q, want the NICs' own %q\n%s\nlog:\n%s", kf[0], own, out, log)
	}
	if slices.Contains(gotOwn, cfg.Nameservers[0].String()) {
		t.Errorf("the keyfiles alone carry the global DNS %s: the case does not show the finding", cfg.Nameservers[0])
	}

	want := [2]string{addrList(cfg, " "), strings.Join(cfg.Search, " ")}
	for _, step := range []string{"reload", "restart"} {
		if confs[step] != want {
			t.Errorf("after the %s: nameservers %q search %q, want %q %q\n%s\nlog:\n%s", step, confs[step][0], confs[step][1], want[0], want[1], out, log)
		}
	}
}
