package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"one-contextd/engine"
)

const sshKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDoEF/oVRcmZp+augoIs0qQo4lpvTUqCIC7T//5gmnFe e2e@host"

func systemdContext(hostname string) string {
	return baseContext + "ONEGATE_TOKEN='" + vmToken + "'\nSET_HOSTNAME='" + hostname + "'\n" +
		"USERNAME='e2euser'\nSSH_PUBLIC_KEY='" + sshKey + "'\nETH0_DNS='10.0.2.3'\n"
}

// systemdBoot boots the image of network manager nm once on a fresh overlay
// of its disk, with the given context; opts adjust the VM.
func systemdBoot(t testing.TB, nm, contextISOPath, port string, overlay string, opts ...func(*vmSpec)) *boot {
	t.Helper()
	image, kernel, initrd := lab.systemdImage(t, nm)
	if overlay == "" {
		overlay = filepath.Join(t.TempDir(), "run.qcow2")
		if _, err := run(time.Minute, "", "qemu-img", "create", "-q", "-f", "qcow2", "-b", image, "-F", "qcow2", overlay); err != nil {
			t.Fatal(err)
		}
	}
	spec := vmSpec{
		Kernel: kernel, Initrd: initrd, Append: "root=/dev/vda rw console=ttyS0 panic=-1 quiet",
		Disk: overlay, ISO: contextISOPath, GatePort: port, SMP: 2, MemMiB: 1024, Timeout: 6 * time.Minute,
	}
	for _, o := range opts {
		o(&spec)
	}
	return bootVM(t, spec)
}

// TestSystemdBoot boots a Debian 12 image with the .deb installed, once
// per network manager, and checks from the serial console and the fake
// OneGate that the context was applied, survives a restart of the manager,
// and that READY arrived. The same disk then boots again with a changed
// context (reconfigured) and a third time with the same one (no changes).
func TestSystemdBoot(t *testing.T) {
	need(t, "qemu-system-x86_64", "qemu-img", "xorriso", "socat", "mmdebstrap", "mkfs.ext4", "dpkg-deb")
	for _, nm := range []string{"ifupdown", "networkd", "nm"} {
		t.Run(nm, func(t *testing.T) {
			g, port := gate(t)
			image, _, _ := lab.systemdImage(t, nm)
			disk := filepath.Join(t.TempDir(), "run.qcow2")
			if _, err := run(time.Minute, "", "qemu-img", "create", "-q", "-f", "qcow2", "-b", image, "-F", "qcow2", disk); err != nil {
				t.Fatal(err)
			}

			ready := watchReady(g)
			// A START_SCRIPT that leaves a process running, as one that
			// starts a service would.
			bg := "#!/bin/sh\nsleep 600 >/dev/null 2>&1 &\necho $! > /run/e2e-bg.pid\necho started\n"
			ctx1 := systemdContext("e2e-"+nm) + "START_SCRIPT_BASE64='" + base64.StdEncoding.EncodeToString([]byte(bg)) + "'\n"
			b := systemdBoot(t, nm, contextISO(t, ctx1, nil), port, disk)
			at, ok := ready.when()
			if !ok {
				b.fail(t, "READY=YES never reached the fake OneGate")
			} else {
				t.Logf("boot 1: READY at OneGate %.2fs after qemu start, powered off at %.2fs", at.Sub(b.Started).Seconds(), b.Wall.Seconds())
			}
			checkUnits(t, b)
			b.wantLine(t, "E2E-HOSTNAME=", "e2e-"+nm)
			checkEarlyHostname(t, b)
			b.wantLine(t, "E2E-ADDR ", "inet 10.0.2.15/24")
			b.wantLine(t, "E2E-ROUTE4 ", "default via 10.0.2.2")
			b.wantLine(t, "E2E-AFTER-ADDR ", "inet 10.0.2.15/24")
			b.wantLine(t, "E2E-AFTER-ROUTE4 ", "default via 10.0.2.2")
			b.wantLine(t, "E2E-PASSWD ", "e2euser:")
			b.wantLine(t, "E2E-KEYS /home/e2euser: ", sshKey)
			b.wantLine(t, "E2E-RESTARTED ", "rc=0")
			b.wantLine(t, "E2E-BG ", "alive=yes")
			b.wantLine(t, "E2E-BG ", "/system.slice/one-contextd-script-START_SCRIPT_BASE64-")
			b.wantLine(t, "E2E-UDEV ", "one-contextd-reconfigure.service")
			if m := b.marked("E2E-UDEVD "); len(m) > 0 {
				b.fail(t, "udevd complained about the rules: %q", m)
			}
			logUsage(t, b)

			// Second boot, same disk, changed context: reconfigured.
			b2 := systemdBoot(t, nm, contextISO(t, systemdContext("changed-"+nm), nil), port, disk)
			checkUnits(t, b2)
			b2.wantLine(t, "E2E-HOSTNAME=", "changed-"+nm)
			b2.wantLine(t, "E2E-ADDR ", "inet 10.0.2.15/24")
			// Third boot, same context: the agent changes nothing.
			b3 := systemdBoot(t, nm, contextISO(t, systemdContext("changed-"+nm), nil), port, disk)
			checkUnits(t, b3)
			b3.wantLine(t, "E2E-HOSTNAME=", "changed-"+nm)
			if c := persistentChanges(b3); len(c) != 0 {
				b3.fail(t, "third boot with an unchanged context made %d changes to the disk: %q", len(c), c)
			}
		})
	}
}

// TestSystemdHotplug plugs a NIC into a booted guest (ifupdown image)
// through qemu's monitor: the kernel's add event, which udev's rule turns
// into a start of the reconfigure unit, must configure the context's
// ETH1 on it. The boot itself, whose coldplug replays an add event for
// every device, must not have started that unit.
func TestSystemdHotplug(t *testing.T) {
	need(t, "qemu-system-x86_64", "qemu-img", "xorriso", "socat", "mmdebstrap", "mkfs.ext4", "dpkg-deb")
	const mac = "52:54:00:12:34:99"
	_, port := gate(t)
	ctx := systemdContext("hotplug") + "ETH1_MAC='" + mac + "'\nETH1_IP='10.0.3.15'\nETH1_MASK='255.255.255.0'\n"
	sock := filepath.Join(t.TempDir(), "monitor.sock")
	plugged := make(chan error, 1)
	b := systemdBoot(t, "ifupdown", contextISO(t, ctx, nil), port, "", func(s *vmSpec) {
		s.Append += " e2e.hotplug=" + mac
		s.Monitor = sock
		s.Watch = func(line string) {
			if strings.Contains(line, "E2E-WAIT-HOTPLUG") {
				go func() {
					out, err := monitor(sock, "device_add virtio-net-pci,netdev=hp0,mac="+mac+",bus=hp-port,id=hp-nic")
					if err == nil && strings.Contains(out, "Error") {
						err = fmt.Errorf("device_add: %s", strings.TrimSpace(out))
					}
					plugged <- err
				}()
			}
		}
	})
	select {
	case err := <-plugged:
		if err != nil {
			b.fail(t, "hot-plug through the monitor: %v", err)
			return
		}
	default:
		b.fail(t, "the guest never waited for the hot-plug")
		return
	}
	checkUnits(t, b)
	if dev := b.first("E2E-HOTPLUGGED "); dev == "" {
		b.fail(t, "the plugged NIC never appeared in the guest")
	}
	b.wantLine(t, "E2E-RECONFIGURE ", "Starting one-contextd-reconfigure.service")
	b.wantLine(t, "E2E-HOTPLUG-ADDR ", "inet 10.0.3.15/24")
	b.wantLine(t, "E2E-HOTPLUG-ADDR ", "inet 10.0.2.15/24")
}

// checkUnits wants both boot stages active and successful.
func checkUnits(t testing.TB, b *boot) {
	t.Helper()
	for _, u := range []string{"one-contextd-local.service", "one-contextd.service"} {
		line := ""
		for _, l := range b.marked("E2E-UNIT ") {
			if strings.HasPrefix(l, u+" ") {
				line = l
			}
		}
		if !strings.Contains(line, "ActiveState=active") || !strings.Contains(line, "Result=success") || !strings.Contains(line, "UnitFileState=enabled") {
			b.fail(t, "%s not enabled, active and successful: %q; failed steps: %q", u, line, failedSteps(b))
		}
	}
	// Nothing was hot-plugged: udev's coldplug of the NICs and the CD-ROM
	// at boot must not start a second, whole run.
	if l := reconfigureRun(b); l != "" {
		b.fail(t, "one-contextd-reconfigure.service ran during the boot: %q", l)
	}
}

// reconfigureRun is the journal line of the reconfigure unit's start when
// it ran during the boot, else "". (A oneshot unit that has finished shows
// no ExecMain timestamps any more.)
func reconfigureRun(b *boot) string {
	for _, l := range b.marked("E2E-JOURNAL ") {
		if strings.Contains(l, "Starting one-contextd-reconfigure.service") {
			return l
		}
	}
	return ""
}

// failedSteps lists "step: error" for every failed step in the status dump.
func failedSteps(b *boot) []string {
	var out []string
	name, failed := "", false
	for _, l := range b.marked("E2E-STATUS") {
		switch {
		case strings.HasPrefix(l, `"name": `):
			name, failed = strings.Trim(strings.TrimPrefix(l, `"name": `), `",`), false
		case l == `"status": "failed",`:
			failed = true
		case failed && strings.HasPrefix(l, `"error": `):
			out = append(out, name+": "+strings.Trim(strings.TrimPrefix(l, `"error": `), `",`))
			failed = false
		}
	}
	return out
}

// runtimeChange matches what every boot changes again whatever the
// context: the kernel starts with no addresses or routes of the agent's,
// and /run is a tmpfs.
var runtimeChange = regexp.MustCompile(`^"[^"]*: (link up|add address|add route|set mtu)|/run/`)

// persistentChanges lists the "changes" the agent's status reports (JSON
// lines `"changes": [` followed by entries, in the E2E-STATUS dump) that
// are not runtimeChange ones.
func persistentChanges(b *boot) []string {
	var out []string
	in := false
	for _, l := range b.marked("E2E-STATUS") {
		switch {
		case strings.HasPrefix(l, `"changes": [`):
			in = !strings.HasSuffix(l, "]") && !strings.HasSuffix(l, "],")
		case in && (l == "]" || l == "],"):
			in = false
		case in && !runtimeChange.MatchString(l):
			out = append(out, strings.TrimSuffix(l, ","))
		}
	}
	return out
}

// checkEarlyHostname wants SET_HOSTNAME's name set by the local stage,
// before the network manager started, and the network stage to have had
// nothing left to change or tell.
func checkEarlyHostname(t testing.TB, b *boot) {
	t.Helper()
	rec, err := runRecord(b)
	if err != nil {
		b.fail(t, "run record: %v", err)
		return
	}
	early, ok := rec.Step("local/hostname-early")
	if !ok || !slices.ContainsFunc(early.Changes, func(c string) bool { return strings.HasPrefix(c, "hostname: kernel hostname") }) {
		b.fail(t, "the local stage did not set the kernel's hostname: %+v", early)
	}
	late, ok := rec.Step("hostname")
	if !ok || len(late.Changes) != 0 || slices.ContainsFunc(late.Notes, func(n string) bool { return strings.HasPrefix(n, "hostname: told") }) {
		b.fail(t, "the network stage's hostname step still had work: %+v", late)
	}
}

// runRecord is the run record the guest dumped on the console
// (`status --json`, E2E-STATUS lines).
func runRecord(b *boot) (*engine.Record, error) {
	var rec engine.Record
	if err := json.Unmarshal([]byte(strings.Join(b.marked("E2E-STATUS"), "\n")), &rec); err != nil {
		return nil, err
	}
	return &rec, nil
}

// agentCost is the run record's cost of each stage (the agent process's
// own CPU and peak RSS apart from the tools it ran); nil when the dump
// does not parse.
func agentCost(b *boot) map[string]*engine.Cost {
	rec, err := runRecord(b)
	if err != nil {
		return nil
	}
	return rec.Cost
}

type unitUsage struct {
	Duration time.Duration // the agent process's run time (systemd's ExecMain timestamps)
	PeakMiB  float64       // the unit cgroup's memory.peak, as the agent read it before exiting
	CPU      time.Duration // systemd's CPUUsageNSec
}

var (
	reStart = regexp.MustCompile(`ExecMainStartTimestampMonotonic=(\d+)`)
	reExit  = regexp.MustCompile(`ExecMainExitTimestampMonotonic=(\d+)`)
	reCPU   = regexp.MustCompile(`CPUUsageNSec=(\d+)`)
)

// usage reads each boot unit's duration and CPU (systemd, from the
// console) and peak memory (the unit's cgroup, in the run record: systemd
// 252 keeps no peak for a unit that has ended).
func usage(b *boot) map[string]unitUsage {
	out := map[string]unitUsage{}
	for _, l := range b.marked("E2E-UNIT ") {
		name, rest, _ := strings.Cut(l, " ")
		u := out[name]
		s, e := reStart.FindStringSubmatch(rest), reExit.FindStringSubmatch(rest)
		if s != nil && e != nil {
			start, _ := strconv.ParseInt(s[1], 10, 64)
			end, _ := strconv.ParseInt(e[1], 10, 64)
			u.Duration = time.Duration(end-start) * time.Microsecond
		}
		if m := reCPU.FindStringSubmatch(rest); m != nil {
			ns, _ := strconv.ParseInt(m[1], 10, 64)
			u.CPU = time.Duration(ns)
		}
		out[name] = u
	}
	for _, c := range agentCost(b) {
		if c.Unit == "" {
			continue
		}
		u := out[c.Unit]
		u.PeakMiB = float64(c.UnitPeakKiB) / 1024
		out[c.Unit] = u
	}
	return out
}

func logUsage(t testing.TB, b *boot) {
	t.Helper()
	for name, u := range usage(b) {
		if strings.HasSuffix(name, ".service") {
			t.Logf("%s: %v wall, %v CPU, %.1f MiB peak", name, u.Duration.Round(time.Millisecond), u.CPU.Round(time.Millisecond), u.PeakMiB)
		}
	}
	for _, l := range b.marked("E2E-ANALYZE ") {
		t.Logf("systemd-analyze: %s", l)
	}
}

// fmtDur formats durations for benchmark output.
func fmtDur(d time.Duration) string { return fmt.Sprintf("%.3fs", d.Seconds()) }
