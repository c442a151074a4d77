#!/bin/sh
# Build a Debian 12 (bookworm) qcow2 image with systemd, the Debian cloud
# kernel (and its initramfs-tools initrd) and the one-contextd .deb
# installed, for booting under qemu with -kernel/-initrd (no bootloader, no
# partition table). The image reports on the serial console once
# multi-user.target is reached (E2E-* lines: addresses, routes, hostname,
# users, keys, the agent units' times and usage, udev's view of the rules),
# restarts the network manager, reports again and powers off.
#
# usage: packaging/vm/mkimage.sh DEB NETMGR OUTDIR [SUITE]
#   DEB: the package to install, or "none" for an image to bake it into later
#   NETMGR: ifupdown | networkd (netplan + systemd-networkd) | nm (NetworkManager)
#   OUTDIR receives root.qcow2, vmlinuz, initrd.img
set -eu
DEB=$1
[ "$DEB" = none ] || DEB=$(realpath "$DEB")
NM=$2
OUT=$3
SUITE=${4:-bookworm}
HERE=$(cd "$(dirname "$0")" && pwd)

case $NM in
ifupdown) PKGS=ifupdown ;;
networkd) PKGS=netplan.io ;;
nm) PKGS=network-manager ;;
*)
	echo "mkimage.sh: unknown network manager '$NM' (ifupdown, networkd, nm)" >&2
	exit 2
	;;
esac

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
W=$(mktemp -d "${TMPDIR:-/tmp}/mkimage.XXXXXX")
trap 'rm -rf "$W"' EXIT
DEBNAME=$(basename "$DEB")

# A local .deb in --include fails in mmdebstrap 1.3.5 (dpkg cannot stat it
# inside the chroot), hence copy-in and dpkg -i in a hook.
mmdebstrap --quiet --variant=minbase \
	--include="systemd-sysv,udev,iproute2,kmod,passwd,sudo,linux-image-cloud-amd64,$PKGS" \
	--customize-hook="if [ '$DEB' != none ]; then cp '$DEB' \"\$1/tmp/\" && chroot \"\$1\" dpkg -i /tmp/$DEBNAME && rm \"\$1/tmp/$DEBNAME\"; fi" \
	--customize-hook="upload $HERE/guest-report.sh /usr/local/sbin/e2e-report" \
	--customize-hook='chmod 0755 "$1/usr/local/sbin/e2e-report"' \
	--customize-hook="echo $NM > \"\$1/etc/e2e-netmgr\"" \
	--customize-hook='echo image > "$1/etc/hostname"' \
	--customize-hook='echo "/dev/vda / ext4 defaults 0 1" > "$1/etc/fstab"' \
	--customize-hook='if [ -e "$1/lib/systemd/system/systemd-networkd.service" ] && [ -e "$1/usr/sbin/netplan" ]; then chroot "$1" systemctl enable systemd-networkd.service; fi' \
	--customize-hook='printf "[Unit]\nDescription=e2e: report the guest state on the console, power off\nAfter=one-contextd.service\n[Service]\nType=simple\nExecStart=/usr/local/sbin/e2e-report\n[Install]\nWantedBy=multi-user.target\n" > "$1/etc/systemd/system/e2e-report.service"' \
	--customize-hook='chroot "$1" systemctl enable e2e-report.service' \
	--customize-hook="upload $HERE/e2e-early.service /etc/systemd/system/e2e-early.service" \
	--customize-hook='chroot "$1" systemctl enable e2e-early.service' \
	--customize-hook='chroot "$1" systemctl mask serial-getty@ttyS0.service' \
	--customize-hook='rm -f "$1/etc/machine-id"; : > "$1/etc/machine-id"' \
	"$SUITE" "$W/rootfs"

cp "$W"/rootfs/boot/vmlinuz-* "$OUT/vmlinuz"
cp "$W"/rootfs/boot/initrd.img-* "$OUT/initrd.img"
mkfs.ext4 -q -F -L root -d "$W/rootfs" "$W/root.raw" 1G
qemu-img convert -O qcow2 "$W/root.raw" "$OUT/root.qcow2"
