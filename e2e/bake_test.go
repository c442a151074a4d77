package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestBakeImage bakes the .deb into a Debian 12 image built without it,
// with packaging/image/bake.sh (virt-customize,
// --no-network, dpkg -i, one-contextd clean --machine-id), boots it once
// and wants READY at the fake OneGate and a fresh machine-id.
func TestBakeImage(t *testing.T) {
	need(t, "virt-customize", "qemu-system-x86_64", "qemu-img", "xorriso", "socat", "mmdebstrap", "unshare")
	image, kernel, initrd := lab.image(t, "ifupdown", "none")
	deb := lab.deb(t)
	baked := filepath.Join(t.TempDir(), "baked.qcow2")
	cmd := exec.Command(filepath.Join(lab.repo, "packaging/image/bake.sh"), image, deb, baked)
	cmd.Env = append(os.Environ(), "BAKE_WORK="+filepath.Join(lab.dir, "bake"))
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bake.sh: %v\n%s", err, tail(string(out), 6000))
	}
	t.Logf("bake.sh took %.1fs", time.Since(start).Seconds())

	g, port := gate(t)
	ready := watchReady(g)
	b := bootVM(t, vmSpec{
		Kernel: kernel, Initrd: initrd, Append: "root=/dev/vda rw console=ttyS0 panic=-1 quiet",
		Disk: baked, ISO: contextISO(t, systemdContext("baked"), nil), GatePort: port, SMP: 2, MemMiB: 1024, Timeout: 6 * time.Minute,
	})
	if _, ok := ready.when(); !ok {
		b.fail(t, "READY=YES never reached the fake OneGate from the baked image")
	}
	checkUnits(t, b)
	b.wantLine(t, "E2E-HOSTNAME=", "baked")
}
