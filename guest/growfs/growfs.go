// Package growfs grows the partitions and file systems of / (GROW_ROOTFS)
// and of the mount points in GROW_FS to fill their disks, as one-context's
// loc-05-grow-rootfs does: growpart for the partition (the extended one
// first for a logical partition), then resize2fs, xfs_growfs or btrfs by
// file system type. A file system on an LVM logical volume gets growpart
// on each of the volume's physical volume partitions, pvresize, and
// lvextend -l +100%FREE before its file system is grown.
//
// Before running a tool it measures, from sysfs and the file system's own
// superblock, whether there is anything to grow, so a second boot runs
// no tool at all, except one read-only pvs for a volume on LVM (the
// volume group's free space is known only to LVM).
package growfs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"one-contextd/engine"
	"one-contextd/fsroot"
	"one-contextd/runner"
)

// MinGrowth is the least free space worth a tool run: smaller tails are
// alignment or GPT backup space, or less than a file system can use.
const MinGrowth = 16 << 20

// Input is what the grow step needs.
type Input struct {
	Mounts []string // settings.System.Grow: mount points inside the root
	Root   *fsroot.Root
	Run    runner.Runner
	// MountsFile lists the mounts in /proc/mounts format, with host paths
	// (default /proc/self/mounts).
	MountsFile string
	// SysDir is sysfs (default /sys).
	SysDir string
}

// Apply grows each mount point; a failure of one does not stop the others.
func Apply(ctx context.Context, r *engine.Recorder, in Input) error {
	if len(in.Mounts) == 0 {
		return engine.Skip("nothing to grow (GROW_ROOTFS=NO and no GROW_FS)")
	}
	if in.MountsFile == "" {
		in.MountsFile = "/proc/self/mounts"
	}
	if in.SysDir == "" {
		in.SysDir = "/sys"
	}
	mounts, err := readMounts(in.MountsFile)
	if err != nil {
		return fmt.Errorf("grow: %w", err)
	}
	var errs []error
	for _, mp := range in.Mounts {
		variable := "GROW_FS"
		if mp == "/" {
			variable = "GROW_ROOTFS"
		}
		host := in.Root.HostPath(mp)
		m, ok := mounts[host]
		if !ok {
			r.Problem(variable, "%s is not a mount point; not grown", mp)
			continue
		}
		if err := grow(ctx, r, in, variable, mp, m); err != nil {
			errs = append(errs, fmt.Errorf("grow %s: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}

type mount struct {
	dev, dir, fstype string
}

// readMounts maps each mount point to its last (visible) mount.
func readMounts(file string) (map[string]mount, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]mount{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		w := strings.Fields(sc.Text())
		if len(w) < 3 {
			continue
		}
		m := mount{dev: unescape(w[0]), dir: unescape(w[1]), fstype: w[2]}
		out[m.dir] = m
	}
	return out, sc.Err()
}

// unescape undoes the kernel's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// blockDev is a block device as sysfs shows it.
type blockDev struct {
	sys     string // /sys/devices/.../loop0/loop0p1
	name    string // loop0p1, nvme0n1p1, mmcblk0p1
	partNum int    // 0 when not a partition
	disk    string // parent disk name, for a partition
}

func lookupDev(sysDir, dev string) (blockDev, error) {
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		return blockDev{}, fmt.Errorf("%s: %w", dev, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return blockDev{}, fmt.Errorf("%s is not a block device", dev)
	}
	link := filepath.Join(sysDir, "dev/block", fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev)))
	sys, err := filepath.EvalSymlinks(link)
	if err != nil {
		return blockDev{}, fmt.Errorf("%s: %w", dev, err)
	}
	b := blockDev{sys: sys, name: filepath.Base(sys)}
	// A partition has a "partition" file; its parent directory is the disk.
	// Names are never parsed: nvme0n1p1 and mmcblk0p1 need no special case.
	if n, err := readInt(filepath.Join(sys, "partition")); err == nil {
		b.partNum = int(n)
		b.disk = filepath.Base(filepath.Dir(sys))
	}
	return b, nil
}

func readInt(p string) (int64, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
}

// partitionRoom is how many bytes the partition could grow: up to the next
// partition of the disk, or the disk's end.
func partitionRoom(b blockDev) (int64, error) {
	start, err := readInt(filepath.Join(b.sys, "start"))
	if err != nil {
		return 0, err
	}
	size, err := readInt(filepath.Join(b.sys, "size"))
	if err != nil {
		return 0, err
	}
	diskSys := filepath.Dir(b.sys)
	limit, err := readInt(filepath.Join(diskSys, "size"))
	if err != nil {
		return 0, err
	}
	entries, err := os.ReadDir(diskSys)
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		other := filepath.Join(diskSys, e.Name())
		if _, err := os.Stat(filepath.Join(other, "partition")); err != nil || e.Name() == b.name {
			continue
		}
		if s, err := readInt(filepath.Join(other, "start")); err == nil && s > start && s < limit {
			limit = s
		}
	}
	return (limit - start - size) * 512, nil
}

func grow(ctx context.Context, r *engine.Recorder, in Input, variable, mp string, m mount) error {
	switch m.fstype {
	case "ext2", "ext3", "ext4", "xfs", "btrfs":
	default:
		r.Note("grow %s: %s file systems are not grown", mp, m.fstype)
		return nil
	}
	b, err := lookupDev(in.SysDir, m.dev)
	if err != nil {
		return err
	}
	// A volume that could not be grown still has its file system grown to
	// what the device holds, as one-context does; the error comes after.
	var volErr error
	if b.partNum > 0 {
		if err := growPartition(ctx, r, in, mp, b); err != nil {
			return err
		}
	} else if isDM(b) {
		volErr = growLV(ctx, r, in, variable, mp, m, b)
	}
	return errors.Join(volErr, growFS(ctx, r, in, mp, m, b))
}

// growFS grows the file system to fill its device, when it is at least
// MinGrowth short of it.
func growFS(ctx context.Context, r *engine.Recorder, in Input, mp string, m mount, b blockDev) error {
	devSize, err := readInt(filepath.Join(b.sys, "size"))
	if err != nil {
		return fmt.Errorf("%s: %w", b.name, err)
	}
	fsSize, err := FSSize(m.dev, m.dir, m.fstype)
	if err != nil {
		return err
	}
	if devSize*512-fsSize < MinGrowth {
		return nil
	}
	var cmd runner.Cmd
	switch m.fstype {
	case "xfs":
		cmd = runner.Cmd{Name: "xfs_growfs", Args: []string{m.dir}}
	case "btrfs":
		cmd = runner.Cmd{Name: "btrfs", Args: []string{"filesystem", "resize", "max", m.dir}}
	default:
		cmd = runner.Cmd{Name: "resize2fs", Args: []string{m.dev}}
	}
	if _, err := in.Run.Run(ctx, cmd); err != nil {
		return err
	}
	after, err := FSSize(m.dev, m.dir, m.fstype)
	if err != nil {
		return err
	}
	r.Change("grow %s: %s file system on %s from %d to %d MiB", mp, m.fstype, m.dev, fsSize>>20, after>>20)
	return nil
}

// devPath is the device node of a sysfs block device name (cciss!c0d0p1
// is /dev/cciss/c0d0p1).
func devPath(name string) string {
	return "/dev/" + strings.ReplaceAll(name, "!", "/")
}

// growPartition runs growpart on a partition that has room after it. A
// logical partition of an msdos label lies inside the extended partition,
// which is grown first, as one-context does for a physical volume there
// (Debian's installer puts the LVM volume group on /dev/sda5).
func growPartition(ctx context.Context, r *engine.Recorder, in Input, mp string, b blockDev) error {
	room, err := partitionRoom(b)
	if err != nil {
		return fmt.Errorf("%s: %w", b.name, err)
	}
	if room < MinGrowth {
		return nil
	}
	disk := devPath(b.disk)
	if ext, ok := extendedPartition(b); ok {
		growpart(ctx, r, in, mp, disk, ext, "extended partition")
	}
	growpart(ctx, r, in, mp, disk, b.partNum, "partition")
	return nil
}

func growpart(ctx context.Context, r *engine.Recorder, in Input, mp, disk string, num int, what string) {
	res, err := in.Run.Run(ctx, runner.Cmd{Name: "growpart", Args: []string{disk, strconv.Itoa(num)}})
	switch {
	case err == nil:
		r.Change("grow %s: %s %d of %s grown", mp, what, num, disk)
	case bytes.Contains(res.Stdout, []byte("NOCHANGE")):
		r.Note("grow %s: growpart found nothing to grow on %s (%s %d)", mp, disk, what, num)
	default:
		// As one-context: a partition that cannot grow does not stop the file system.
		r.Note("grow %s: growpart %s %d: %v", mp, disk, num, err)
	}
}

// extendedPartition finds the msdos extended partition holding a logical
// partition (number 5 and up): the primary partition starting last before
// it. The kernel shows an extended partition as one logical sector (at
// most 8 of 512 bytes), which tells it from a GPT partition numbered 5+.
func extendedPartition(b blockDev) (int, bool) {
	if b.partNum <= 4 {
		return 0, false
	}
	start, err := readInt(filepath.Join(b.sys, "start"))
	if err != nil {
		return 0, false
	}
	diskSys := filepath.Dir(b.sys)
	entries, err := os.ReadDir(diskSys)
	if err != nil {
		return 0, false
	}
	best, bestStart, bestSize := 0, int64(-1), int64(0)
	for _, e := range entries {
		p := filepath.Join(diskSys, e.Name())
		n, err := readInt(filepath.Join(p, "partition"))
		if err != nil || n < 1 || n > 4 {
			continue
		}
		s, err1 := readInt(filepath.Join(p, "start"))
		size, err2 := readInt(filepath.Join(p, "size"))
		if err1 == nil && err2 == nil && s < start && s > bestStart {
			best, bestStart, bestSize = int(n), s, size
		}
	}
	return best, best > 0 && bestSize <= 8
}

func isDM(b blockDev) bool {
	_, err := os.Stat(filepath.Join(b.sys, "dm"))
	return err == nil
}

// growLV grows what lies under an LVM logical volume, in one-context's
// order: growpart on each physical volume's partition, pvresize, then
// lvextend -l +100%FREE (the volume takes all the volume group's free
// space). Only volumes whose physical volumes are partitions or whole
// disks are grown; a volume over other device-mapper devices (thin pool,
// RAID, cache, snapshot origin, LVM on LUKS) is a problem, as is a
// device-mapper device that is not LVM. What is measured first: the
// partition's room from sysfs, then one read-only pvs for the physical
// volumes' and the volume group's free space.
func growLV(ctx context.Context, r *engine.Recorder, in Input, variable, mp string, m mount, b blockDev) error {
	uuid, _ := os.ReadFile(filepath.Join(b.sys, "dm/uuid"))
	name, _ := os.ReadFile(filepath.Join(b.sys, "dm/name"))
	u, n := strings.TrimSpace(string(uuid)), strings.TrimSpace(string(name))
	if !strings.HasPrefix(u, "LVM-") {
		r.Problem(variable, "%s is on %s (%s), a device-mapper device that is not an LVM logical volume; the device is not resized, only the file system is grown to fill it", mp, m.dev, b.name)
		return nil
	}
	vg, lv, ok := splitLVMName(n)
	if !ok || len(u) != len("LVM-")+64 {
		r.Problem(variable, "%s is on %s (%s, %s), an LVM internal volume; the volume is not resized", mp, m.dev, b.name, n)
		return nil
	}
	// Every error names the device and the volume.
	wrap := func(err error) error { return fmt.Errorf("%s (%s/%s): %w", m.dev, vg, lv, err) }
	slaves, err := os.ReadDir(filepath.Join(b.sys, "slaves"))
	if err != nil || len(slaves) == 0 {
		return fmt.Errorf("%s (%s/%s): no physical volumes under %s in sysfs: %v", m.dev, vg, lv, b.name, err)
	}
	var pvs []blockDev
	for _, s := range slaves {
		sys, err := filepath.EvalSymlinks(filepath.Join(b.sys, "slaves", s.Name()))
		if err != nil {
			return wrap(err)
		}
		pv := blockDev{sys: sys, name: filepath.Base(sys)}
		if isDM(pv) {
			r.Problem(variable, "%s is on LVM volume %s/%s, which lies on %s, itself a device-mapper device (thin pool, RAID, cache, snapshot or encrypted physical volume); only volumes on partitions or disks are grown, so the volume is not resized", mp, vg, lv, pv.name)
			return nil
		}
		if num, err := readInt(filepath.Join(sys, "partition")); err == nil {
			pv.partNum = int(num)
			pv.disk = filepath.Base(filepath.Dir(sys))
		}
		pvs = append(pvs, pv)
	}
	for _, pv := range pvs {
		if pv.partNum > 0 {
			if err := growPartition(ctx, r, in, mp, pv); err != nil {
				return wrap(err)
			}
		}
	}

	args := []string{"--noheadings", "--nosuffix", "--units", "b", "--separator", "|",
		"-o", "pv_name,vg_name,dev_size,pe_start,pv_pe_count,vg_extent_size,vg_free"}
	for _, pv := range pvs {
		args = append(args, devPath(pv.name))
	}
	res, err := in.Run.Run(ctx, runner.Cmd{Name: "pvs", Args: args})
	if err != nil {
		return wrap(err)
	}
	rows, err := parsePVs(res.Stdout)
	if err != nil {
		return wrap(fmt.Errorf("pvs: %w", err))
	}
	var errs []error
	vgFree, resized, found := int64(0), false, false
	for _, row := range rows {
		if row.vg != vg {
			continue
		}
		vgFree, found = row.vgFree, true
		// growpart from cloud-utils 0.33 on runs pvresize itself.
		if row.room() < MinGrowth {
			continue
		}
		if _, err := in.Run.Run(ctx, runner.Cmd{Name: "pvresize", Args: []string{row.name}}); err != nil {
			errs = append(errs, wrap(err))
			continue
		}
		resized = true
		r.Change("grow %s: physical volume %s of %s resized by %d MiB", mp, row.name, vg, row.room()>>20)
	}
	if !found {
		return fmt.Errorf("%s (%s/%s): pvs shows no physical volume of %s on %s", m.dev, vg, lv, vg, strings.Join(args[len(args)-len(pvs):], " "))
	}
	if vgFree >= MinGrowth || resized {
		before, _ := readInt(filepath.Join(b.sys, "size"))
		if _, err := in.Run.Run(ctx, runner.Cmd{Name: "lvextend", Args: []string{"-l", "+100%FREE", vg + "/" + lv}}); err != nil {
			errs = append(errs, wrap(err))
		} else {
			after, _ := readInt(filepath.Join(b.sys, "size"))
			r.Change("grow %s: logical volume %s/%s extended from %d to %d MiB", mp, vg, lv, before>>11, after>>11)
		}
	}
	return errors.Join(errs...)
}

// pvRow is one physical volume as pvs reports it, sizes in bytes.
type pvRow struct {
	name, vg                                  string
	devSize, peStart, peCount, extent, vgFree int64
}

// room is how much the physical volume would gain from pvresize: whole
// extents between its last one and the end of its device.
func (p pvRow) room() int64 {
	if p.extent <= 0 {
		return 0
	}
	return ((p.devSize-p.peStart)/p.extent - p.peCount) * p.extent
}

func parsePVs(out []byte) ([]pvRow, error) {
	var rows []pvRow
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		f := strings.Split(line, "|")
		if len(f) != 7 {
			return nil, fmt.Errorf("unexpected line %q", line)
		}
		row := pvRow{name: f[0], vg: f[1]}
		for i, p := range []*int64{&row.devSize, &row.peStart, &row.peCount, &row.extent, &row.vgFree} {
			v, err := strconv.ParseInt(strings.TrimSpace(f[i+2]), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("unexpected line %q: %w", line, err)
			}
			*p = v
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// splitLVMName splits a device-mapper name LVM gave a logical volume,
// VG-LV with each '-' inside the names doubled, into its two names. A
// third part (vg-pool-tpool) is an internal layer: not ok.
func splitLVMName(name string) (vg, lv string, ok bool) {
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(name); i++ {
		switch {
		case name[i] != '-':
			cur.WriteByte(name[i])
		case i+1 < len(name) && name[i+1] == '-':
			cur.WriteByte('-')
			i++
		default:
			parts = append(parts, cur.String())
			cur.Reset()
		}
	}
	parts = append(parts, cur.String())
	if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
		return "", "", false
	}
	return parts[0], parts[1], true
}

// FSSize is a mounted file system's size in bytes, as the file system
// itself currently sees it. ext2/3/4 keep their superblock in the block
// device's page cache, so a buffered read of it is current; XFS and btrfs
// write theirs past that cache at log checkpoints, so they are asked
// through their ioctls on the mount point.
func FSSize(dev, dir, fstype string) (int64, error) {
	switch fstype {
	case "ext2", "ext3", "ext4":
		return extSize(dev)
	case "xfs":
		// XFS_IOC_FSGEOMETRY_V1 = _IOR('X', 100, struct xfs_fsop_geom_v1 [112 bytes]):
		// blocksize at offset 0, datablocks at offset 32.
		var geom [112]byte
		if err := dirIoctl(dir, 0x80705864, unsafe.Pointer(&geom[0])); err != nil {
			return 0, fmt.Errorf("%s: XFS geometry: %w", dir, err)
		}
		return int64(binary.NativeEndian.Uint64(geom[32:]) * uint64(binary.NativeEndian.Uint32(geom[0:]))), nil
	case "btrfs":
		// BTRFS_IOC_DEV_INFO = _IOWR(0x94, 30, struct btrfs_ioctl_dev_info_args [4096 bytes]):
		// devid in, total_bytes at offset 32 out. Device 1: single-device file systems.
		var info [4096]byte
		binary.NativeEndian.PutUint64(info[0:], 1)
		if err := dirIoctl(dir, 0xD000941E, unsafe.Pointer(&info[0])); err != nil {
			return 0, fmt.Errorf("%s: btrfs device info: %w", dir, err)
		}
		return int64(binary.NativeEndian.Uint64(info[32:])), nil
	}
	return 0, fmt.Errorf("%s: %s is not a supported file system", dev, fstype)
}

func dirIoctl(dir string, req uintptr, arg unsafe.Pointer) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg)); errno != 0 {
		return errno
	}
	return nil
}

func extSize(dev string) (int64, error) {
	f, err := os.Open(dev)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := make([]byte, 1024)
	if _, err := f.ReadAt(s, 1024); err != nil {
		return 0, fmt.Errorf("%s: read superblock: %w", dev, err)
	}
	le := binary.LittleEndian
	if le.Uint16(s[0x38:]) != 0xEF53 {
		return 0, fmt.Errorf("%s: no ext superblock", dev)
	}
	blocks := uint64(le.Uint32(s[0x4:]))
	if le.Uint32(s[0x60:])&0x80 != 0 { // INCOMPAT_64BIT
		blocks |= uint64(le.Uint32(s[0x150:])) << 32
	}
	return int64(blocks << (10 + le.Uint32(s[0x18:]))), nil
}
