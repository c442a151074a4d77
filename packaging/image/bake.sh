#!/bin/sh
# Bake the one-contextd .deb into a Qcow2 cloud image with virt-customize,
# without network inside the appliance, then run `one-contextd clean
# --machine-id` in it so that the image boots as a new VM (no state, log or
# machine-id from the bake).
#
# usage: packaging/image/bake.sh IN.qcow2 ONE-CONTEXTD.deb OUT.qcow2
#   IN is not modified; OUT is a full copy with the package installed.
# env:
#   SUPERMIN_KERNEL, SUPERMIN_MODULES, SUPERMIN_KERNEL_VERSION
#       the kernel libguestfs' appliance boots; when unset and the host has
#       no /boot/vmlinuz-*, Debian's linux-image-amd64 is fetched with
#       apt-get download and unpacked into BAKE_WORK (never installed).
#   BAKE_WORK  work directory (default: a temp dir, removed at the end)
#
# libguestfs runs qemu under TCG here (LIBGUESTFS_BACKEND_SETTINGS=force_tcg):
# with accel=kvm:tcg it hangs on hosts whose KVM cannot run the appliance
# (nested PVM). supermin lstat()s /lib/modules; on a host without it the
# script re-runs itself in a private mount namespace with an overlay that
# adds an empty /lib/modules, so the host is left as it was.
set -eu
if [ $# -ne 3 ]; then
	echo "usage: $0 IN.qcow2 ONE-CONTEXTD.deb OUT.qcow2" >&2
	exit 2
fi
IN=$(realpath "$1")
DEB=$(realpath "$2")
OUT=$3

if [ ! -e /lib/modules ] && [ -z "${BAKE_IN_NS:-}" ]; then
	# The namespace, and the overlay in it, go away with its last process.
	ov=$(mktemp -d "${TMPDIR:-/tmp}/bake-libov.XXXXXX")
	mkdir -p "$ov/upper/modules" "$ov/work"
	rc=0
	BAKE_IN_NS=1 unshare --mount --propagation private sh -c '
		set -e
		lib=$(readlink -f /lib)
		mount -t overlay overlay -o "lowerdir=$lib,upperdir=$1/upper,workdir=$1/work" "$lib"
		shift
		exec "$@"' sh "$ov" "$0" "$@" || rc=$?
	rm -rf "$ov"
	exit "$rc"
fi

if [ -n "${BAKE_WORK:-}" ]; then
	W=$BAKE_WORK
	mkdir -p "$W"
else
	W=$(mktemp -d "${TMPDIR:-/tmp}/bake.XXXXXX")
	trap 'rm -rf "$W"' EXIT
fi

export LIBGUESTFS_BACKEND=direct LIBGUESTFS_BACKEND_SETTINGS=force_tcg
export LIBGUESTFS_CACHEDIR="${LIBGUESTFS_CACHEDIR:-$W/guestfs-cache}"
mkdir -p "$LIBGUESTFS_CACHEDIR"
if [ -z "${SUPERMIN_KERNEL:-}" ] && ! ls /boot/vmlinuz-* >/dev/null 2>&1; then
	K=$W/kernel
	mkdir -p "$K"
	PKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
	if ! ls "$K/$PKG"_*.deb >/dev/null 2>&1; then
		(cd "$K" && apt-get download -q "$PKG" >/dev/null 2>&1)
	fi
	rm -rf "$K/x"
	dpkg-deb -x "$K/$PKG"_*.deb "$K/x"
	KV=$(ls "$K/x/lib/modules")
	depmod -b "$K/x" "$KV"
	export SUPERMIN_KERNEL="$K/x/boot/vmlinuz-$KV" SUPERMIN_MODULES="$K/x/lib/modules/$KV" SUPERMIN_KERNEL_VERSION="$KV"
fi

qemu-img convert -O qcow2 "$IN" "$OUT"
NAME=$(basename "$DEB")
virt-customize -a "$OUT" --no-network --smp 2 --memsize 1024 \
	--copy-in "$DEB:/var/tmp" \
	--run-command "dpkg -i /var/tmp/$NAME" \
	--delete "/var/tmp/$NAME" \
	--run-command "one-contextd clean --machine-id"
echo "$OUT"
