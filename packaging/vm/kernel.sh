#!/bin/sh
# Fetch the Debian cloud kernel without installing it: apt-get download the
# package linux-image-cloud-amd64 depends on, unpack it into OUTDIR and
# build modules.dep there. Prints the kernel version.
# usage: packaging/vm/kernel.sh OUTDIR
set -eu
OUT=$1
mkdir -p "$OUT"
cd "$OUT"
PKG=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
if [ -z "$PKG" ]; then
	echo "kernel.sh: apt knows no linux-image-cloud-amd64 (run apt-get update)" >&2
	exit 1
fi
if ! ls "$PKG"_*.deb >/dev/null 2>&1; then
	apt-get download -q "$PKG" >/dev/null
fi
rm -rf k
dpkg-deb -x "$PKG"_*.deb k
KV=$(ls k/lib/modules)
depmod -b "$PWD/k" "$KV"
echo "$KV"
