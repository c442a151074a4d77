package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestSilentGuestIsStoppedWithItsVCPUs boots a guest whose init sleeps
// without a word (as a guest that hangs before userspace looks from
// outside): the boot must be stopped once the console has been silent
// for the limit, well before its time limit, with qemu's view of the
// vCPUs, and count as stalled early (the case bootVM boots again).
func TestSilentGuestIsStoppedWithItsVCPUs(t *testing.T) {
	need(t, "qemu-system-x86_64", "cpio", "apt-get", "dpkg-deb", "depmod")
	kernel, initrd := lab.initramfs(t)
	_, port := gate(t)
	b := bootOnce(t, vmSpec{
		Kernel: kernel, Initrd: initrd, Append: "console=ttyS0 panic=-1 quiet rdinit=/bin/sleep -- 600",
		GatePort: port, SMP: 1, MemMiB: 512, Timeout: 5 * time.Minute, Silence: 20 * time.Second,
	})
	if b.Stalled == "" {
		t.Fatalf("a silent guest was not taken for stalled (timed out %v, ran %v)", b.TimedOut, b.Wall)
	}
	if b.TimedOut || b.Wall > 2*time.Minute {
		t.Errorf("stopped after %v (timed out %v), want soon after 20 s of silence", b.Wall, b.TimedOut)
	}
	if !strings.Contains(b.Stalled, "CPU#0") || !strings.Contains(b.Stalled, "RIP=") {
		t.Errorf("no vCPU state from the monitor: %q", b.Stalled)
	}
	if !stalledEarly(b) {
		t.Errorf("a stall before any E2E- line is not taken for an early one")
	}
	t.Logf("vCPUs of the silent guest:\n%s", b.Stalled)
}
