// Package growfs grows the partitions and file systems of / (GROW_ROOTFS)
// and of the mount points in GROW_FS to fill their disks, as one-context's
// loc-05-grow-rootfs does: growpart for the partition, then resize2fs,
// xfs_growfs or btrfs by file system type.
//
// Before running a tool it measures, from sysfs and the file system's own
// superblock, whether there is anything to grow, so a second boot runs
// no tool at all.
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
		if err := grow(ctx, r, in, mp, m); err != nil {
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

func grow(ctx context.Context, r *engine.Recorder, in Input, mp string, m mount) error {
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
	if b.partNum > 0 {
		room, err := partitionRoom(b)
		if err != nil {
			return fmt.Errorf("%s: %w", b.name, err)
		}
		if room >= MinGrowth {
			disk := "/dev/" + b.disk
			res, err := in.Run.Run(ctx, runner.Cmd{Name: "growpart", Args: []string{disk, strconv.Itoa(b.partNum)}})
			switch {
			case err == nil:
				r.Change("grow %s: partition %d of %s grown", mp, b.partNum, disk)
			case bytes.Contains(res.Stdout, []byte("NOCHANGE")):
				r.Note("grow %s: growpart found nothing to grow on %s", mp, disk)
			default:
				// As one-context: a partition that cannot grow does not stop the file system.
				r.Note("grow %s: growpart %s %d: %v", mp, disk, b.partNum, err)
			}
		}
	} else if strings.HasPrefix(b.name, "dm-") {
		r.Note("grow %s: %s is a device-mapper device (LVM); the volume is not resized", mp, m.dev)
	}

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
