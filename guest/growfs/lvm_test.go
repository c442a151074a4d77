package growfs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"one-contextd/engine"
	"one-contextd/fsroot"
	"one-contextd/guest/internal/guesttest"
	"one-contextd/runner"
)

// pvsArgs is the query the step makes, before the physical volumes.
const pvsArgs = "pvs --noheadings --nosuffix --units b --separator | -o pv_name,vg_name,dev_size,pe_start,pv_pe_count,vg_extent_size,vg_free"

// fakeSys is a sysfs tree in a temporary directory.
type fakeSys struct {
	t   *testing.T
	dir string
}

func (f fakeSys) write(rel string, v any) {
	f.t.Helper()
	p := filepath.Join(f.dir, rel)
	must(f.t, os.MkdirAll(filepath.Dir(p), 0o755))
	must(f.t, os.WriteFile(p, []byte(fmt.Sprint(v)+"\n"), 0o644))
}

func (f fakeSys) link(rel, target string) {
	f.t.Helper()
	p := filepath.Join(f.dir, rel)
	must(f.t, os.MkdirAll(filepath.Dir(p), 0o755))
	must(f.t, os.Symlink(filepath.Join(f.dir, target), p))
}

// part adds partition num of disk (a directory under devices/) at start
// with size sectors.
func (f fakeSys) part(disk, name string, num int, start, size int64) {
	f.write(filepath.Join(disk, name, "partition"), num)
	f.write(filepath.Join(disk, name, "start"), start)
	f.write(filepath.Join(disk, name, "size"), size)
}

// dm adds the device-mapper device name (dm-N) with its dm/uuid and dm/name.
func (f fakeSys) dm(name, uuid, dmName string, sectors int64) string {
	dir := filepath.Join("devices/virtual/block", name)
	f.write(filepath.Join(dir, "size"), sectors)
	f.write(filepath.Join(dir, "dm/uuid"), uuid)
	f.write(filepath.Join(dir, "dm/name"), dmName)
	return dir
}

const (
	vda    = "devices/pci0000:00/0000:00:04.0/virtio1/block/vda"
	vdb    = "devices/pci0000:00/0000:00:05.0/virtio2/block/vdb"
	lvUUID = "LVM-" + "0123456789abcdefABCDEFghijklmnop" + "qrstuvwxyzQRSTUVWXYZ0123456789ab"
)

// extLoop is an unmounted ext4 file system of 32 MiB on a read-only loop
// device: what FSSize reads for the volume the fake sysfs describes.
func extLoop(t *testing.T) (dev string, fsSectors int64) {
	t.Helper()
	need(t, "losetup", "mkfs.ext4")
	img := filepath.Join(t.TempDir(), "fs.img")
	run(t, nil, "truncate", "-s", "32M", img)
	run(t, nil, "mkfs.ext4", "-q", "-F", img)
	out, err := exec.Command("losetup", "-r", "-f", "--show", img).CombinedOutput()
	if err != nil {
		t.Skipf("losetup cannot attach a loop device here: %v: %s", err, out)
	}
	dev = strings.TrimSpace(string(out))
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", dev).Run() })
	size, err := extSize(dev)
	if err != nil {
		t.Fatal(err)
	}
	return dev, size / 512
}

// TestGrowLVMLayouts runs the step over fake sysfs trees (the volume's file
// system is a real ext4 on a loop device, as full as its "volume") with a
// fake runner answering pvs, and checks which tools it runs.
func TestGrowLVMLayouts(t *testing.T) {
	dev, fsSectors := extLoop(t)
	var st unix.Stat_t
	must(t, unix.Stat(dev, &st))
	devNum := fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))

	const gib = 1 << 21 // sectors
	// Debian's installer on a BIOS machine: /boot on 1, extended 2, the
	// physical volume on logical 5, on a 10 GiB disk grown to 20 GiB.
	debian := func(f fakeSys, diskSectors int64) {
		f.write(vda+"/size", diskSectors)
		f.part(vda, "vda1", 1, 2048, 997376)
		f.part(vda, "vda2", 2, 1001470, 2)
		f.part(vda, "vda5", 5, 1001472, 10*gib-1001472)
		lv := f.dm("dm-0", lvUUID, "debian--vg-root", fsSectors)
		f.link(lv+"/slaves/vda5", vda+"/vda5")
		f.link("dev/block/"+devNum, lv)
	}
	pvRow := func(name, vg string, devSize, peCount, free int64) string {
		return fmt.Sprintf("  %s|%s|%d|1048576|%d|4194304|%d\n", name, vg, devSize, peCount, free)
	}
	tests := []struct {
		name     string
		layout   func(fakeSys)
		pvs      string
		want     []string
		changes  int
		problems []string
	}{{
		name:    "msdos logical partition: extended first, then pvresize and lvextend",
		layout:  func(f fakeSys) { debian(f, 20*gib) },
		pvs:     pvRow("/dev/vda5", "debian-vg", 20<<30-512<<20, 2436, 0),
		want:    []string{"growpart /dev/vda 2", "growpart /dev/vda 5", pvsArgs + " /dev/vda5", "pvresize /dev/vda5", "lvextend -l +100%FREE debian-vg/root"},
		changes: 4,
	}, {
		name:    "growpart already ran pvresize (cloud-utils 0.33): lvextend only",
		layout:  func(f fakeSys) { debian(f, 20*gib) },
		pvs:     pvRow("/dev/vda5", "debian-vg", 20<<30-512<<20, 4991, 10<<30),
		want:    []string{"growpart /dev/vda 2", "growpart /dev/vda 5", pvsArgs + " /dev/vda5", "lvextend -l +100%FREE debian-vg/root"},
		changes: 3,
	}, {
		name:   "second boot: everything full, only the query",
		layout: func(f fakeSys) { debian(f, 10*gib+34) },
		pvs:    pvRow("/dev/vda5", "debian-vg", 10<<30-512<<20, 2436, 0),
		want:   []string{pvsArgs + " /dev/vda5"},
	}, {
		name:    "free space left in the volume group goes to the volume, as one-context does",
		layout:  func(f fakeSys) { debian(f, 10*gib+34) },
		pvs:     pvRow("/dev/vda5", "debian-vg", 10<<30-512<<20, 2436, 1<<30),
		want:    []string{pvsArgs + " /dev/vda5", "lvextend -l +100%FREE debian-vg/root"},
		changes: 1,
	}, {
		name: "GPT partition 5 is not a logical one; a whole-disk physical volume is resized",
		layout: func(f fakeSys) {
			f.write(vda+"/size", 20*gib)
			for i := 1; i <= 5; i++ {
				f.part(vda, "vda"+strconv.Itoa(i), i, int64(i)*gib, gib)
			}
			f.write(vdb+"/size", 4*gib)
			lv := f.dm("dm-3", lvUUID, "rhel-root", fsSectors)
			f.link(lv+"/slaves/vda5", vda+"/vda5")
			f.link(lv+"/slaves/vdb", vdb)
			f.link("dev/block/"+devNum, lv)
		},
		pvs: pvRow("/dev/vda5", "rhel", 15<<30, 1023, 0) + pvRow("/dev/vdb", "rhel", 4<<30, 511, 0),
		want: []string{"growpart /dev/vda 5", pvsArgs + " /dev/vda5 /dev/vdb",
			"pvresize /dev/vda5", "pvresize /dev/vdb", "lvextend -l +100%FREE rhel/root"},
		changes: 4,
	}, {
		name: "thin volume: a problem, nothing run",
		layout: func(f fakeSys) {
			f.write(vda+"/size", 20*gib)
			f.part(vda, "vda2", 2, 2048, 10*gib)
			pool := f.dm("dm-2", lvUUID+"-tpool", "vg-pool-tpool", 10*gib)
			f.link(pool+"/slaves/vda2", vda+"/vda2")
			lv := f.dm("dm-4", lvUUID, "vg-root", fsSectors)
			f.link(lv+"/slaves/dm-2", pool)
			f.link("dev/block/"+devNum, lv)
		},
		problems: []string{"GROW_ROOTFS: / is on LVM volume vg/root, which lies on dm-2, itself a device-mapper device (thin pool, RAID, cache, snapshot or encrypted physical volume); only volumes on partitions or disks are grown, so the volume is not resized"},
	}, {
		name: "LVM on LUKS: a problem, nothing run",
		layout: func(f fakeSys) {
			f.write(vda+"/size", 20*gib)
			f.part(vda, "vda3", 3, 2048, 10*gib)
			crypt := f.dm("dm-0", "CRYPT-LUKS2-0123-luks", "luks-0123", 10*gib)
			f.link(crypt+"/slaves/vda3", vda+"/vda3")
			lv := f.dm("dm-1", lvUUID, "vg-root", fsSectors)
			f.link(lv+"/slaves/dm-0", crypt)
			f.link("dev/block/"+devNum, lv)
		},
		problems: []string{"GROW_ROOTFS: / is on LVM volume vg/root, which lies on dm-0, itself a device-mapper device (thin pool, RAID, cache, snapshot or encrypted physical volume); only volumes on partitions or disks are grown, so the volume is not resized"},
	}, {
		name: "LUKS without LVM: a problem, nothing run",
		layout: func(f fakeSys) {
			crypt := f.dm("dm-0", "CRYPT-LUKS2-0123-luks", "luks-0123", fsSectors)
			f.link("dev/block/"+devNum, crypt)
		},
		problems: []string{"GROW_ROOTFS: / is on " + dev + " (dm-0), a device-mapper device that is not an LVM logical volume; the device is not resized, only the file system is grown to fill it"},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			f := fakeSys{t: t, dir: filepath.Join(tmp, "sys")}
			tc.layout(f)
			rootDir := filepath.Join(tmp, "root")
			must(t, os.Mkdir(rootDir, 0o755))
			mounts := filepath.Join(tmp, "mounts")
			must(t, os.WriteFile(mounts, []byte(dev+" "+rootDir+" ext4 rw 0 0\n"), 0o644))
			root, err := fsroot.New(rootDir)
			must(t, err)
			fake := &runner.Fake{Handler: func(c runner.Cmd) (runner.Result, error) {
				if c.Name == "pvs" {
					return runner.Result{Stdout: []byte(tc.pvs)}, nil
				}
				return runner.Result{}, nil
			}}
			r, sr := engine.NewTestRecorder()
			err = Apply(context.Background(), r, Input{Mounts: []string{"/"}, Root: root, Run: fake, MountsFile: mounts, SysDir: f.dir})
			if err != nil {
				t.Fatalf("apply: %v", err)
			}
			if got := fake.Commands(); !slices.Equal(got, tc.want) {
				t.Errorf("tools:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			if len(sr.Changes) != tc.changes {
				t.Errorf("changes %q, want %d", sr.Changes, tc.changes)
			}
			if !slices.Equal(sr.Problems, tc.problems) {
				t.Errorf("problems %q\nwant %q", sr.Problems, tc.problems)
			}
		})
	}
}

// TestGrowLVMToolFails: a failing lvextend fails the step with an error
// naming the mount point, the device and the volume; pvs output that is
// not what was asked for, or not about the volume's group, is an error too.
func TestGrowLVMToolFails(t *testing.T) {
	dev, fsSectors := extLoop(t)
	var st unix.Stat_t
	must(t, unix.Stat(dev, &st))
	for _, tc := range []struct {
		pvs, lvextendErr, want string
	}{
		{"  /dev/vda2|vg|1073741824|1048576|255|4194304|536870912\n", "Insufficient free space",
			"grow /: " + dev + " (vg/root): lvextend -l +100%FREE vg/root: exit status 5: Insufficient free space"},
		{"  WARNING: something\n", "", "grow /: " + dev + " (vg/root): pvs: unexpected line \"WARNING: something\""},
		{"  /dev/vda2|other|1073741824|1048576|255|4194304|536870912\n", "", "grow /: " + dev + " (vg/root): pvs shows no physical volume of vg on /dev/vda2"},
	} {
		tmp := t.TempDir()
		f := fakeSys{t: t, dir: filepath.Join(tmp, "sys")}
		f.write(vda+"/size", 1<<21)
		f.part(vda, "vda2", 2, 2048, 1<<21-2048-33)
		lv := f.dm("dm-0", lvUUID, "vg-root", fsSectors)
		f.link(lv+"/slaves/vda2", vda+"/vda2")
		f.link(fmt.Sprintf("dev/block/%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev)), lv)
		rootDir := filepath.Join(tmp, "root")
		must(t, os.Mkdir(rootDir, 0o755))
		mounts := filepath.Join(tmp, "mounts")
		must(t, os.WriteFile(mounts, []byte(dev+" "+rootDir+" ext4 rw 0 0\n"), 0o644))
		root, err := fsroot.New(rootDir)
		must(t, err)
		fake := &runner.Fake{Handler: func(c runner.Cmd) (runner.Result, error) {
			switch c.Name {
			case "pvs":
				return runner.Result{Stdout: []byte(tc.pvs)}, nil
			case "lvextend":
				return runner.Result{ExitCode: 5}, &runner.ExitError{Cmd: c.String(), Code: 5, Stderr: tc.lvextendErr}
			}
			return runner.Result{}, nil
		}}
		r, sr := engine.NewTestRecorder()
		err = Apply(context.Background(), r, Input{Mounts: []string{"/"}, Root: root, Run: fake, MountsFile: mounts, SysDir: f.dir})
		if err == nil || err.Error() != tc.want {
			t.Errorf("apply: %v\nwant %s", err, tc.want)
		}
		if len(sr.Changes) != 0 {
			t.Errorf("changes %q", sr.Changes)
		}
	}
}

// lvmConfined makes every LVM command of this test process, the step's
// and growpart's own pvresize included, see only dev: an lvm.conf in a
// temporary LVM_SYSTEM_DIR with a filter accepting dev alone, no devices
// file, no hints, no metadata backups or archives (which go to /etc/lvm),
// file locks in the temporary directory, and no udev or dmeventd
// involvement. It returns the environment entry for commands the test
// runs itself.
func lvmConfined(t *testing.T, dev string) string {
	t.Helper()
	dir := t.TempDir()
	filter := fmt.Sprintf(`[ "a|^%s$|", "r|.*|" ]`, dev)
	conf := fmt.Sprintf(`devices {
	filter = %[1]s
	global_filter = %[1]s
	use_devicesfile = 0
	hints = "none"
}
backup {
	backup = 0
	archive = 0
}
global {
	locking_dir = "%[2]s"
}
activation {
	udev_sync = 0
	udev_rules = 0
	monitoring = 0
}
`, filter, filepath.Join(dir, "lock"))
	must(t, os.WriteFile(filepath.Join(dir, "lvm.conf"), []byte(conf), 0o644))
	env := "LVM_SYSTEM_DIR=" + dir
	t.Setenv("LVM_SYSTEM_DIR", dir)
	t.Setenv("LVM_SUPPRESS_FD_WARNINGS", "1")
	// Refuse to go on unless LVM reads that file.
	if got := run(t, []string{env}, "lvmconfig", "devices/global_filter"); !strings.Contains(got, "^"+dev+"$") {
		t.Fatalf("LVM does not take the test's configuration: global_filter is %s", got)
	}
	return env
}

// TestGrowLVMLoopDisk grows a real LVM volume: a Debian-style msdos disk
// image (/boot on 1, extended 2, the physical volume on logical 5) with
// ext4 on the logical volume, mounted as the root. The image is made
// larger and the loop device re-read, as a hypervisor's disk resize
// would; the step must grow the extended and the logical partition, the
// physical volume, the logical volume and the file system, and a second
// run must change nothing.
func TestGrowLVMLoopDisk(t *testing.T) {
	need(t, "losetup", "sfdisk", "growpart", "mkfs.ext4", "resize2fs",
		"lvmconfig", "pvcreate", "vgcreate", "lvcreate", "lvs", "vgremove", "pvs", "pvresize", "lvextend")
	if _, err := os.Stat("/sys/class/misc/device-mapper"); err != nil {
		if out, err := exec.Command("modprobe", "-n", "dm-mod").CombinedOutput(); err != nil {
			t.Skipf("the kernel has no device-mapper (lvcreate could not load dm-mod: %s)", strings.TrimSpace(string(out)))
		}
	}
	layout := "label: dos\nstart=2048, size=16384, type=83\nstart=18432, size=79872, type=5\nstart=20480, size=77824, type=8e\n"
	img, loop, _ := loopDisk(t, "48M", layout, 1)
	pv := partNodes(t, loop, 5)[0]
	if filepath.Dir(pv) != "/dev" {
		t.Skipf("no /dev node for %sp5 (LVM finds devices in /dev only)", loop)
	}
	env := lvmConfined(t, pv)
	lvm := func(args ...string) string { t.Helper(); return run(t, []string{env}, args[0], args[1:]...) }

	vg := "growfstest" + strconv.FormatInt(time.Now().UnixNano(), 36)
	lvm("pvcreate", "-q", "-y", pv)
	lvm("vgcreate", "-q", vg, pv)
	t.Cleanup(func() {
		cmd := exec.Command("vgremove", "-q", "-f", vg)
		cmd.Env = append(os.Environ(), env)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("cleanup: vgremove -f %s: %v\n%s", vg, err, out)
		}
	})
	lvcreate := exec.Command("lvcreate", "-q", "-y", "-l", "100%FREE", "-n", "root", vg)
	lvcreate.Env = append(os.Environ(), env)
	if out, err := lvcreate.CombinedOutput(); err != nil {
		if strings.Contains(string(out), "device-mapper") {
			t.Skipf("lvcreate: no device-mapper here: %s", out)
		}
		t.Fatalf("lvcreate: %v\n%s", err, out)
	}
	dmName := lvm("lvs", "--noheadings", "-o", "lv_kernel_major,lv_kernel_minor", vg+"/root")
	var major, minor int
	if _, err := fmt.Sscan(dmName, &major, &minor); err != nil {
		t.Fatalf("lvs: %q: %v", dmName, err)
	}
	lvSys, err := filepath.EvalSymlinks(fmt.Sprintf("/sys/dev/block/%d:%d", major, minor))
	must(t, err)
	lvDev := "/dev/mapper/" + vg + "-root"
	if _, err := os.Stat(lvDev); err != nil {
		lvDev = "/dev/" + filepath.Base(lvSys)
	}
	lvSectors := func() int64 {
		n, err := readInt(filepath.Join(lvSys, "size"))
		must(t, err)
		return n
	}

	run(t, nil, "mkfs.ext4", "-q", "-F", lvDev)
	rootDir := filepath.Join(t.TempDir(), "root")
	must(t, os.Mkdir(rootDir, 0o755))
	mountT(t, lvDev, rootDir, "ext4")
	part := filepath.Base(pv)
	s0, l0, f0 := sectors(t, part), lvSectors(), statfsSize(t, rootDir)

	run(t, nil, "truncate", "-s", "128M", img)
	run(t, nil, "losetup", "-c", loop)

	root, err := fsroot.New(rootDir)
	must(t, err)
	rec := &guesttest.Recording{}
	in := Input{Mounts: []string{"/"}, Root: root, Run: rec}
	ext4Online := hasCap(t, unix.CAP_SYS_RESOURCE)
	r, sr := engine.NewTestRecorder()
	err = Apply(context.Background(), r, in)
	switch {
	case ext4Online && err != nil:
		t.Fatalf("apply: %v\nnotes %v", err, sr.Notes)
	case !ext4Online && (err == nil || !strings.Contains(err.Error(), "resize2fs")):
		t.Fatalf("apply: %v, want the resize2fs failure (no CAP_SYS_RESOURCE: ext4 cannot be resized online)", err)
	}
	// growpart from cloud-utils 0.33 on runs pvresize itself; older
	// ones leave it to the step.
	calls := slices.DeleteFunc(guesttest.Lines(rec.Calls()), func(c string) bool { return c == "pvresize "+pv })
	want := []string{"growpart " + loop + " 2", "growpart " + loop + " 5", pvsArgs + " " + pv,
		"lvextend -l +100%FREE " + vg + "/root", "resize2fs " + lvDev}
	if !slices.Equal(calls, want) {
		t.Errorf("tools:\n%s\nwant (besides pvresize)\n%s\nnotes %q", strings.Join(calls, "\n"), strings.Join(want, "\n"), sr.Notes)
	}
	// Partition 5 reaches the end of the disk, less the 33 sectors
	// growpart keeps for a GPT backup; the volume takes the new extents.
	s1, l1, f1 := sectors(t, part), lvSectors(), statfsSize(t, rootDir)
	if s1 != (128<<11)-33-20480 {
		t.Errorf("partition 5: %d sectors, was %d, want %d", s1, s0, (128<<11)-33-20480)
	}
	// 241631 sectors less the 1 MiB before the first extent: 29 extents of 4 MiB.
	if l1 != 29*4<<11 {
		t.Errorf("logical volume: %d sectors, was %d", l1, l0)
	}
	if ext4Online {
		if size, err := FSSize(lvDev, rootDir, "ext4"); err != nil || l1*512-size >= MinGrowth || f1 < f0+64<<20 {
			t.Errorf("file system: %d bytes on %d sectors (statfs %d -> %d): %v", size, l1, f0, f1, err)
		}
	}
	t.Logf("first run: %q", sr.Changes)
	// The extended partition, partition 5, the logical volume, the file
	// system; the physical volume too when the step resized it.
	wantChanges := map[bool]int{true: 4, false: 3}[ext4Online]
	others := slices.DeleteFunc(slices.Clone(sr.Changes), func(c string) bool { return strings.Contains(c, "physical volume") })
	if len(others) != wantChanges || len(sr.Changes)-len(others) > 1 {
		t.Errorf("changes %q, want %d besides the physical volume's", sr.Changes, wantChanges)
	}

	// Second run: measured, only the query run, nothing changed.
	r, sr = engine.NewTestRecorder()
	err = Apply(context.Background(), r, in)
	wantCalls := []string{pvsArgs + " " + pv}
	if !ext4Online {
		wantCalls = append(wantCalls, "resize2fs "+lvDev) // still short, still failing
	} else if err != nil {
		t.Errorf("second run: %v", err)
	}
	if len(sr.Changes) != 0 {
		t.Errorf("second run changed %q", sr.Changes)
	}
	if calls := guesttest.Lines(rec.Calls()); !slices.Equal(calls, wantCalls) {
		t.Errorf("second run ran %q, want %q", calls, wantCalls)
	}
	if s2, l2 := sectors(t, part), lvSectors(); s2 != s1 || l2 != l1 {
		t.Errorf("second run resized: partition %d -> %d, volume %d -> %d sectors", s1, s2, l1, l2)
	}
}
