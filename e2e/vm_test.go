package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"one-contextd/onegate/fakegate"
)

// Guest addresses under slirp: the guest is 10.0.2.15, OneGate is
// 10.0.2.100:5030, forwarded to the fake gate on host loopback.
const (
	guestMAC   = "52:54:00:12:34:56"
	gateInside = "http://10.0.2.100:5030"
	vmID       = 42
	vmToken    = "e2e-token-Secret"
)

// gate starts the fake OneGate for one boot with the test VM in it.
func gate(t testing.TB) (*fakegate.Server, string) {
	t.Helper()
	g := fakegate.Start(t)
	if err := g.AddVM(vmID, "e2e-vm", vmToken, "10.0.2.15"); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(g.URL)
	if err != nil {
		t.Fatal(err)
	}
	return g, u.Port()
}

// contextISO writes context.sh (and the extra files) into an ISO labelled
// CONTEXT with Joliet and Rock Ridge, as oned makes it.
func contextISO(t testing.TB, contextSh string, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "ctx")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	files = mergeFiles(files, map[string]string{"context.sh": contextSh})
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(src, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	iso := filepath.Join(dir, "context.iso")
	if _, err := run(time.Minute, dir, "xorriso", "-as", "mkisofs", "-quiet", "-V", "CONTEXT", "-J", "-R", "-o", iso, src); err != nil {
		t.Fatal(err)
	}
	return iso
}

func mergeFiles(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// vmSpec is one qemu boot.
type vmSpec struct {
	Kernel, Initrd, Append string
	Disk                   string // qcow2 overlay, virtio; "" for none
	ISO                    string
	GatePort               string
	SMP, MemMiB            int
	Timeout                time.Duration
	// Watch, when set, is called with every serial line as it arrives.
	Watch func(line string)
	// Monitor, when set, is the path of a unix socket where qemu serves
	// its human monitor (hot-plug); a spare restricted netdev "hp0" is
	// there for a NIC to plug.
	Monitor string
	// AnsweringDNS lifts slirp's restriction so that its DNS (10.0.2.3)
	// forwards to the host's resolver and answers, as a cloud's DNS does.
	// Restricted, the guest's DNS queries go unanswered: the agent's
	// bounded lookups are tested that way, and the boot benchmark would
	// measure their time-outs instead of the agent.
	AnsweringDNS bool
	// Silence is how long the guest may print nothing before the boot is
	// taken for stalled; 0: see stallAfter.
	Silence time.Duration
}

// boot is the outcome of one boot: the serial console and timings.
type boot struct {
	Serial   []string
	Wall     time.Duration
	Started  time.Time
	LogPath  string
	ExitErr  error
	TimedOut bool
	Stalled  string // qemu's view of the vCPUs when the guest fell silent, "" if it did not
	shown    bool   // the serial tail was printed once already
}

// bootVM runs qemu under TCG (KVM here is nested PVM and cannot run these
// guests, see shared/research/vm-lab.md) until the guest powers off.
//
// Rarely, an emulated guest hangs before its kernel has handed over to
// userspace: the console stays silent after the firmware, with no panic
// and no stall report. A boot silent for stallAfter is stopped with what
// qemu's monitor says of its vCPUs; one that stalled before the guest
// printed any E2E- line (before systemd ran, or the minimal init) is booted
// again once, as the same machine would be after a reset. Any other stall
// fails the test.
func bootVM(t testing.TB, spec vmSpec) *boot {
	t.Helper()
	if spec.SMP == 0 {
		spec.SMP = 1
	}
	if spec.MemMiB == 0 {
		spec.MemMiB = 512
	}
	if spec.Timeout == 0 {
		spec.Timeout = 3 * time.Minute
	}
	// qemu's instruction-counting clock (see BenchmarkBootSystemd) runs
	// every vCPU on one host thread, and a Debian guest with two vCPUs
	// stalls under it: one vCPU.
	shift := os.Getenv("ONE_CONTEXTD_E2E_ICOUNT")
	if shift != "" {
		spec.SMP = 1
		spec.Timeout *= 2
	}
	b := bootOnce(t, spec)
	if stalledEarly(b) {
		t.Logf("the guest stalled before it printed anything (serial log %s); qemu's vCPUs:\n%s\nbooting again", b.LogPath, b.Stalled)
		b = bootOnce(t, spec)
	}
	if b.Stalled != "" {
		t.Errorf("the guest printed nothing for %v and was stopped; qemu's vCPUs:\n%s\nserial tail:\n%s",
			stallAfter(spec), b.Stalled, strings.Join(lastLines(b.Serial, 60), "\n"))
	} else if b.TimedOut {
		t.Errorf("qemu did not power off within %v; serial tail:\n%s", spec.Timeout, strings.Join(lastLines(b.Serial, 60), "\n"))
	}
	return b
}

// cpuModel is qemu's -cpu: "max" (every feature TCG emulates), or
// ONE_CONTEXTD_E2E_CPU, e.g. "max,-erms,-fsrm" to see what the instruction
// clock charges for the kernel's byte-wise rep stosb/movsb page zeroing and
// copies, which it counts one instruction per byte.
func cpuModel() string {
	if m := os.Getenv("ONE_CONTEXTD_E2E_CPU"); m != "" {
		return m
	}
	return "max"
}

// stallAfter is how long a guest may print nothing: Silence when set, else
// a third of the boot's time limit (the quiet stretch from firmware to the
// first E2E- line of a normal boot is well under that), at least a minute.
func stallAfter(spec vmSpec) time.Duration {
	if spec.Silence > 0 {
		return spec.Silence
	}
	return max(spec.Timeout/3, time.Minute)
}

// stalledEarly reports a boot stopped for silence before the guest printed
// any E2E- line: before systemd ran (packaging/vm/e2e-early.service) or
// before the minimal init began.
func stalledEarly(b *boot) bool {
	return b.Stalled != "" && len(b.marked("E2E-")) == 0
}

// bootOnce is one boot, stopped early when the console stays silent.
func bootOnce(t testing.TB, spec vmSpec) *boot {
	t.Helper()
	shift := os.Getenv("ONE_CONTEXTD_E2E_ICOUNT")
	restrict := "on"
	if spec.AnsweringDNS {
		restrict = "off"
	}
	args := []string{
		"-machine", "q35,accel=tcg", "-cpu", cpuModel(), "-smp", fmt.Sprint(spec.SMP), "-m", fmt.Sprint(spec.MemMiB),
		"-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
		"-kernel", spec.Kernel, "-initrd", spec.Initrd, "-append", spec.Append,
		// restrict=on: the guest reaches nothing but the guestfwd target. The
		// cmd: form runs one socat per connection (a tcp: chardev serves only
		// the first connection).
		"-netdev", "user,id=n0,restrict=" + restrict + ",ipv6=off,guestfwd=tcp:10.0.2.100:5030-cmd:socat - TCP:127.0.0.1:" + spec.GatePort,
		"-device", "virtio-net-pci,netdev=n0,mac=" + guestMAC,
		"-device", "virtio-scsi-pci,id=scsi0",
	}
	if shift != "" {
		args = append(args, "-icount", "shift="+shift+",sleep=on")
	}
	// The monitor tells where the vCPUs are when the guest stalls. A short
	// directory of its own: a unix socket's path has room for 107 bytes.
	sock := spec.Monitor
	if sock == "" {
		dir, err := os.MkdirTemp("", "qemu-mon")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		sock = filepath.Join(dir, "m.sock")
	}
	args = append(args, "-monitor", "unix:"+sock+",server=on,wait=off")
	if spec.Monitor != "" {
		// q35's root bus takes no hot-plug: a PCIe root port does.
		args = append(args, "-netdev", "user,id=hp0,restrict=on,ipv6=off", "-device", "pcie-root-port,id=hp-port,chassis=1,slot=1")
	}
	if spec.Disk != "" {
		args = append(args, "-drive", "file="+spec.Disk+",if=virtio,format=qcow2")
	}
	if spec.ISO != "" {
		args = append(args, "-drive", "file="+spec.ISO+",if=none,id=cd0,media=cdrom,readonly=on",
			"-device", "scsi-cd,bus=scsi0.0,drive=cd0")
	}
	ctx, cancel := context.WithTimeout(context.Background(), spec.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	// ONE_CONTEXTD_E2E_SERIAL_DIR keeps every serial log for a look after
	// the run; by default they go with the test's temporary directory.
	logDir := t.TempDir()
	if d := os.Getenv("ONE_CONTEXTD_E2E_SERIAL_DIR"); d != "" {
		logDir = d
	}
	logPath := filepath.Join(logDir, strings.NewReplacer("/", "_").Replace(t.Name())+"-"+time.Now().Format("150405.000")+".serial.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	b := &boot{LogPath: logPath, Started: time.Now()}
	if err := cmd.Start(); err != nil {
		t.Fatalf("qemu: %v", err)
	}
	var lastLine atomic.Int64
	lastLine.Store(time.Now().UnixNano())
	stalled := make(chan string, 1)
	done := make(chan struct{})
	defer close(done)
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if time.Since(time.Unix(0, lastLine.Load())) > stallAfter(spec) {
					stalled <- vcpuState(sock)
					cancel()
					return
				}
			}
		}
	}()
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lastLine.Store(time.Now().UnixNano())
		line := strings.TrimRight(sc.Text(), "\r")
		b.Serial = append(b.Serial, line)
		fmt.Fprintln(logf, line)
		if spec.Watch != nil {
			spec.Watch(line)
		}
	}
	b.ExitErr = cmd.Wait()
	b.Wall = time.Since(b.Started)
	select {
	case b.Stalled = <-stalled:
	default:
		b.TimedOut = ctx.Err() != nil
	}
	return b
}

// vcpuState asks qemu's monitor twice, a second apart, where each vCPU
// is (RIP) and whether it is halted (HLT=1): a guest waiting for an
// interrupt that never comes shows halted vCPUs at the same addresses.
func vcpuState(sock string) string {
	var out []string
	for i := 0; i < 2; i++ {
		if i > 0 {
			time.Sleep(time.Second)
			out = append(out, "a second later:")
		}
		s, err := monitor(sock, "info registers -a")
		if err != nil {
			return fmt.Sprintf("monitor: %v", err)
		}
		for _, l := range strings.Split(s, "\n") {
			l = strings.TrimSpace(l)
			if strings.HasPrefix(l, "CPU#") || strings.HasPrefix(l, "RIP=") {
				out = append(out, l)
			}
		}
	}
	return strings.Join(out, "\n")
}

func lastLines(lines []string, n int) []string {
	if len(lines) > n {
		return lines[len(lines)-n:]
	}
	return lines
}

// marked returns the rest of every serial line that starts with prefix
// (kernel messages can share a line, so the prefix may follow them).
func (b *boot) marked(prefix string) []string {
	var out []string
	for _, l := range b.Serial {
		if i := strings.Index(l, prefix); i >= 0 {
			out = append(out, strings.TrimSpace(l[i+len(prefix):]))
		}
	}
	return out
}

func (b *boot) first(prefix string) string {
	if m := b.marked(prefix); len(m) > 0 {
		return m[0]
	}
	return ""
}

// fail reports a failed check with the serial console's tail.
func (b *boot) fail(t testing.TB, format string, args ...any) {
	t.Helper()
	if b.shown {
		t.Errorf(format, args...)
		return
	}
	b.shown = true
	t.Errorf(format+"\nserial log %s, tail:\n%s", append(args, b.LogPath, strings.Join(lastLines(b.Serial, 40), "\n"))...)
}

func (b *boot) wantLine(t testing.TB, prefix, contains string) {
	t.Helper()
	for _, l := range b.marked(prefix) {
		if strings.Contains(l, contains) {
			return
		}
	}
	b.fail(t, "no %q line contains %q", prefix, contains)
}

// readyWatch polls the gate for READY=YES from the test VM and records when
// it first arrived.
type readyWatch struct {
	at   chan time.Time
	stop chan struct{}
}

func watchReady(g *fakegate.Server) *readyWatch {
	w := &readyWatch{at: make(chan time.Time, 1), stop: make(chan struct{})}
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-tick.C:
				if v, ok := g.VMAttr(vmID, "READY"); ok && v == "YES" {
					w.at <- time.Now()
					return
				}
			}
		}
	}()
	return w
}

// when returns the time READY arrived, or false if it never did.
func (w *readyWatch) when() (time.Time, bool) {
	close(w.stop)
	select {
	case at := <-w.at:
		return at, true
	default:
		return time.Time{}, false
	}
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// monitor sends one command to qemu's human monitor at socket and returns
// what qemu answered up to its next prompt.
func monitor(socket, command string) (string, error) {
	c, err := net.DialTimeout("unix", socket, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	readPrompt := func() (string, error) {
		var out strings.Builder
		for !strings.HasSuffix(out.String(), "(qemu) ") {
			b, err := r.ReadByte()
			if err != nil {
				return out.String(), err
			}
			out.WriteByte(b)
		}
		return out.String(), nil
	}
	if _, err := readPrompt(); err != nil {
		return "", fmt.Errorf("monitor greeting: %w", err)
	}
	if _, err := fmt.Fprintf(c, "%s\n", command); err != nil {
		return "", err
	}
	return readPrompt()
}
