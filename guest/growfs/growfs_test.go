package growfs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"one-contextd/engine"
	"one-contextd/fsroot"
	"one-contextd/guest/internal/guesttest"
)

func need(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for loop devices and mounts")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skip("loop devices are not available here (/dev/loop-control missing)")
	}
}

func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func sectors(t *testing.T, part string) int64 {
	n, err := readInt(filepath.Join("/sys/class/block", part, "size"))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func statfsSize(t *testing.T, dir string) int64 {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Blocks) * st.Bsize
}

// TestGrowLoopDisk grows a real disk image: ext4 on partition 1 (with a
// gap after it) mounted as the root, XFS on partition 2 (the last)
// mounted at /data. The image is made larger with truncate and the loop
// device re-read, as a hypervisor's disk resize would.
func TestGrowLoopDisk(t *testing.T) {
	need(t, "losetup", "sfdisk", "growpart", "mkfs.ext4", "mkfs.xfs", "resize2fs", "xfs_growfs")
	layout := "label: gpt\nstart=2048, size=32768, type=linux\nstart=81920, size=40960, type=linux\n"
	img, loop, devs := loopDisk(t, "64M", layout, 2)
	p1, p2 := devs[0], devs[1]

	run(t, nil, "mkfs.ext4", "-q", "-F", p1)
	// xfsprogs refuses file systems under 300 MB outside its own test
	// suite; these variables are how that suite says it is one.
	run(t, []string{"TEST_DIR=/tmp", "TEST_DEV=" + p2, "QA_CHECK_FS=1"}, "mkfs.xfs", "-q", "-f", p2)

	rootDir := filepath.Join(t.TempDir(), "root")
	must(t, os.Mkdir(rootDir, 0o755))
	mountT(t, p1, rootDir, "ext4")
	must(t, os.Mkdir(filepath.Join(rootDir, "data"), 0o755))
	mountT(t, p2, filepath.Join(rootDir, "data"), "xfs")

	base1, base2 := filepath.Base(loop)+"p1", filepath.Base(loop)+"p2"
	s1, s2 := sectors(t, base1), sectors(t, base2)
	f1, f2 := statfsSize(t, rootDir), statfsSize(t, filepath.Join(rootDir, "data"))

	run(t, nil, "truncate", "-s", "256M", img)
	run(t, nil, "losetup", "-c", loop)

	root, err := fsroot.New(rootDir)
	if err != nil {
		t.Fatal(err)
	}
	rec := &guesttest.Recording{}
	in := Input{Mounts: []string{"/", "/data"}, Root: root, Run: rec}
	// ext4 online resize needs CAP_SYS_RESOURCE; some sandboxes drop it
	// even for root. Then resize2fs must fail and the rest still happen.
	ext4Online := hasCap(t, unix.CAP_SYS_RESOURCE)
	r, sr := engine.NewTestRecorder()
	err = Apply(context.Background(), r, in)
	switch {
	case ext4Online && err != nil:
		t.Fatalf("apply: %v\nnotes %v", err, sr.Notes)
	case !ext4Online:
		t.Logf("no CAP_SYS_RESOURCE here: ext4 cannot be resized online; checking that only that part failed")
		if err == nil || !strings.Contains(err.Error(), "resize2fs") {
			t.Fatalf("apply: %v, want the resize2fs failure", err)
		}
	}
	calls := guesttest.Lines(rec.Calls())
	want := []string{"growpart " + loop + " 1", "resize2fs " + p1, "growpart " + loop + " 2", "xfs_growfs " + filepath.Join(rootDir, "data")}
	if !slices.Equal(calls, want) {
		t.Errorf("tools:\n%s\nwant\n%s", strings.Join(calls, "\n"), strings.Join(want, "\n"))
	}
	n1, n2 := sectors(t, base1), sectors(t, base2)
	// p1 grows up to p2 (sector 81920), p2 to the new end of the disk.
	if n1 != 81920-2048 {
		t.Errorf("partition 1: %d sectors, was %d, want %d", n1, s1, 81920-2048)
	}
	if n2 < (256<<11)-81920-2048 || n2 <= s2 {
		t.Errorf("partition 2: %d sectors, was %d", n2, s2)
	}
	g1, g2 := statfsSize(t, rootDir), statfsSize(t, filepath.Join(rootDir, "data"))
	if (ext4Online && g1 < f1+20<<20) || g2 < f2+150<<20 {
		t.Errorf("file systems did not grow: ext4 %d -> %d, xfs %d -> %d", f1, g1, f2, g2)
	}
	grown := map[string][2]string{p2: {filepath.Join(rootDir, "data"), "xfs"}}
	if ext4Online {
		grown[p1] = [2]string{rootDir, "ext4"}
	}
	for dev, m := range grown {
		size, err := FSSize(dev, m[0], m[1])
		base := filepath.Base(loop) + strings.TrimPrefix(filepath.Base(dev), filepath.Base(loop))
		if err != nil || sectors(t, base)*512-size >= MinGrowth {
			t.Errorf("%s: fs %d bytes on %d sectors: %v", dev, size, sectors(t, base), err)
		}
	}
	if want := map[bool]int{true: 4, false: 3}[ext4Online]; len(sr.Changes) != want {
		t.Errorf("changes %v, want %d", sr.Changes, want)
	}
	if !ext4Online {
		in.Mounts = []string{"/data"} // / would retry resize2fs
	}

	// Second run: all measured, nothing run.
	r, sr = engine.NewTestRecorder()
	if err := Apply(context.Background(), r, in); err != nil || len(sr.Changes) != 0 {
		t.Errorf("second run: %v %v", err, sr.Changes)
	}
	if calls := rec.Calls(); len(calls) != 0 {
		t.Errorf("second run ran %v", guesttest.Lines(calls))
	}
}

// partDevs returns device nodes for the loop device's partitions: /dev's
// when devtmpfs made them, else nodes made in a temporary directory from
// the numbers sysfs gives (this machine's /dev is left alone).
func partDevs(t *testing.T, loop string, n int) []string {
	t.Helper()
	nums := make([]int, n)
	for i := range nums {
		nums[i] = i + 1
	}
	return partNodes(t, loop, nums...)
}

// partNodes is partDevs for the partitions numbered nums (5 for the first
// logical partition of an msdos label).
func partNodes(t *testing.T, loop string, nums ...int) []string {
	t.Helper()
	// losetup -P does not always make the kernel scan the table; partx does.
	if _, err := os.Stat(fmt.Sprintf("/sys/class/block/%sp%d", filepath.Base(loop), nums[0])); err != nil {
		_ = exec.Command("partx", "-a", loop).Run()
	}
	_ = exec.Command("udevadm", "settle").Run()
	var out []string
	dir := t.TempDir()
	for _, i := range nums {
		dev := fmt.Sprintf("%sp%d", loop, i)
		if _, err := os.Stat(dev); err == nil {
			out = append(out, dev)
			continue
		}
		data, err := os.ReadFile(filepath.Join("/sys/class/block", filepath.Base(dev), "dev"))
		if err != nil {
			t.Skipf("the kernel did not create partition %d of %s: %v", i, loop, err)
		}
		var major, minor uint32
		if _, err := fmt.Sscanf(strings.TrimSpace(string(data)), "%d:%d", &major, &minor); err != nil {
			t.Fatal(err)
		}
		node := filepath.Join(dir, filepath.Base(dev))
		if err := unix.Mknod(node, unix.S_IFBLK|0o600, int(unix.Mkdev(major, minor))); err != nil {
			t.Skipf("cannot make a device node for %s: %v", dev, err)
		}
		out = append(out, node)
	}
	return out
}

func hasCap(t *testing.T, c int) bool {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			var mask uint64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%x", &mask); err == nil {
				return mask&(1<<c) != 0
			}
		}
	}
	return false
}

func mountT(t *testing.T, dev, dir, fstype string) {
	t.Helper()
	if err := unix.Mount(dev, dir, fstype, 0, ""); err != nil {
		t.Fatalf("mount %s %s: %v", dev, dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			_ = unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestMissingMountPointIsAProblem(t *testing.T) {
	dir := t.TempDir()
	root, _ := fsroot.New(dir)
	mounts := filepath.Join(dir, "mounts")
	must(t, os.WriteFile(mounts, []byte("proc /proc proc rw 0 0\n"), 0o644))
	r, sr := engine.NewTestRecorder()
	err := Apply(context.Background(), r, Input{Mounts: []string{"/", "/var/lib/postgresql"}, Root: root, MountsFile: mounts})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"GROW_ROOTFS: / is not a mount point; not grown", "GROW_FS: /var/lib/postgresql is not a mount point; not grown"}
	if !slices.Equal(sr.Problems, want) {
		t.Errorf("problems %q", sr.Problems)
	}
}

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{`/mnt/a\040b`: "/mnt/a b", `/x\134y`: `/x\y`, `/plain`: "/plain", `/end\04`: `/end\04`} {
		if got := unescape(in); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

// loopDisk makes a disk image of size with the sfdisk layout, attaches
// it with its partitions, and returns the image, the loop device and the
// partitions' device nodes.
func loopDisk(t *testing.T, size, layout string, parts int) (img, loop string, devs []string) {
	t.Helper()
	img = filepath.Join(t.TempDir(), "disk.img")
	run(t, nil, "truncate", "-s", size, img)
	cmd := exec.Command("sfdisk", "--quiet", img)
	cmd.Stdin = strings.NewReader(layout)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	out, err := exec.Command("losetup", "-P", "-f", "--show", img).CombinedOutput()
	if err != nil {
		t.Skipf("losetup cannot attach a loop device here: %v: %s", err, out)
	}
	loop = strings.TrimSpace(string(out))
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", loop).Run() })
	return img, loop, partDevs(t, loop, parts)
}

func needBtrfs(t *testing.T) {
	t.Helper()
	need(t, "losetup", "sfdisk", "growpart", "mkfs.btrfs", "btrfs")
	data, err := os.ReadFile("/proc/filesystems")
	if err != nil || !strings.Contains(string(data), "\tbtrfs\n") {
		t.Skip("the kernel has no btrfs (not in /proc/filesystems)")
	}
}

// TestGrowBtrfsLoopDisk grows a btrfs partition that is the last of its
// disk after the image was made larger.
func TestGrowBtrfsLoopDisk(t *testing.T) {
	needBtrfs(t)
	img, loop, devs := loopDisk(t, "160M", "label: gpt\nstart=2048, size=258048, type=linux\n", 1)
	run(t, nil, "mkfs.btrfs", "-q", "-f", devs[0])
	rootDir := filepath.Join(t.TempDir(), "root")
	must(t, os.MkdirAll(filepath.Join(rootDir, "srv/data"), 0o755))
	mp := filepath.Join(rootDir, "srv/data")
	mountT(t, devs[0], mp, "btrfs")
	part := filepath.Base(loop) + "p1"
	s0, f0 := sectors(t, part), statfsSize(t, mp)

	run(t, nil, "truncate", "-s", "416M", img)
	run(t, nil, "losetup", "-c", loop)

	root, err := fsroot.New(rootDir)
	if err != nil {
		t.Fatal(err)
	}
	rec := &guesttest.Recording{}
	in := Input{Mounts: []string{"/srv/data"}, Root: root, Run: rec}
	r, sr := engine.NewTestRecorder()
	if err := Apply(context.Background(), r, in); err != nil {
		t.Fatalf("apply: %v\nnotes %v", err, sr.Notes)
	}
	want := []string{"growpart " + loop + " 1", "btrfs filesystem resize max " + mp}
	if calls := guesttest.Lines(rec.Calls()); !slices.Equal(calls, want) {
		t.Errorf("tools:\n%s\nwant\n%s", strings.Join(calls, "\n"), strings.Join(want, "\n"))
	}
	s1, f1 := sectors(t, part), statfsSize(t, mp)
	// GPT keeps 33 sectors for its backup at the end.
	if s1 < (416<<11)-2048-34-2048 || s1 <= s0 {
		t.Errorf("partition: %d sectors, was %d", s1, s0)
	}
	if f1 < f0+200<<20 {
		t.Errorf("btrfs did not grow: statfs %d -> %d bytes", f0, f1)
	}
	if size, err := FSSize(devs[0], mp, "btrfs"); err != nil || s1*512-size >= MinGrowth {
		t.Errorf("btrfs device size %d on %d sectors: %v", size, s1, err)
	}
	if len(sr.Changes) != 2 {
		t.Errorf("changes %v, want the partition and the file system", sr.Changes)
	}

	r, sr = engine.NewTestRecorder()
	if err := Apply(context.Background(), r, in); err != nil || len(sr.Changes) != 0 {
		t.Errorf("second run: %v %v", err, sr.Changes)
	}
	if calls := rec.Calls(); len(calls) != 0 {
		t.Errorf("second run ran %v", guesttest.Lines(calls))
	}
}

// TestGrowFSEntryThatIsNotAMountPoint: a GROW_FS directory that exists
// but is not mounted, and one that does not exist, are problems naming
// GROW_FS; the mount point listed after them is still grown.
func TestGrowFSEntryThatIsNotAMountPoint(t *testing.T) {
	needBtrfs(t)
	img, loop, devs := loopDisk(t, "160M", "label: gpt\nstart=2048, size=258048, type=linux\n", 1)
	run(t, nil, "mkfs.btrfs", "-q", "-f", devs[0])
	rootDir := filepath.Join(t.TempDir(), "root")
	for _, d := range []string{"data", "plain"} {
		must(t, os.MkdirAll(filepath.Join(rootDir, d), 0o755))
	}
	mp := filepath.Join(rootDir, "data")
	mountT(t, devs[0], mp, "btrfs")
	f0 := statfsSize(t, mp)
	run(t, nil, "truncate", "-s", "416M", img)
	run(t, nil, "losetup", "-c", loop)

	root, err := fsroot.New(rootDir)
	if err != nil {
		t.Fatal(err)
	}
	rec := &guesttest.Recording{}
	r, sr := engine.NewTestRecorder()
	err = Apply(context.Background(), r, Input{Mounts: []string{"/plain", "/missing", "/data"}, Root: root, Run: rec})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	wantProblems := []string{"GROW_FS: /plain is not a mount point; not grown", "GROW_FS: /missing is not a mount point; not grown"}
	if !slices.Equal(sr.Problems, wantProblems) {
		t.Errorf("problems %q, want %q", sr.Problems, wantProblems)
	}
	want := []string{"growpart " + loop + " 1", "btrfs filesystem resize max " + mp}
	if calls := guesttest.Lines(rec.Calls()); !slices.Equal(calls, want) {
		t.Errorf("tools %v, want %v", calls, want)
	}
	if f1 := statfsSize(t, mp); f1 < f0+200<<20 {
		t.Errorf("/data did not grow: %d -> %d", f0, f1)
	}
}
