#!/bin/sh
# Build a small initramfs whose /init runs the agent once against the
# CONTEXT CD-ROM and powers off: busybox-static, the static agent, the
# modules for virtio NIC, virtio-scsi CD-ROM and iso9660, and a minimal /etc.
# The init prints E2E-* markers on the serial console for the host to read.
# usage: packaging/vm/initramfs.sh KDIR KVERSION AGENT OUT.cpio.gz
set -eu
K=$(cd "$1" && pwd)
KV=$2
AGENT=$3
OUT=$4
BUSYBOX=${BUSYBOX:-/bin/busybox}
MODS="virtio_pci virtio_net virtio_scsi sr_mod isofs"

R=$(mktemp -d "${TMPDIR:-/tmp}/initramfs.XXXXXX")
trap 'rm -rf "$R"' EXIT
mkdir -p "$R/bin" "$R/sbin" "$R/dev" "$R/proc" "$R/sys" "$R/run" "$R/tmp" "$R/etc" "$R/root" "$R/var/lib" "$R/var/log"
cp "$BUSYBOX" "$R/bin/busybox"
for a in sh mount umount modprobe poweroff cat ip hostname sleep echo mkdir ls grep sed id; do
	ln -s busybox "$R/bin/$a"
done
install -m 0755 "$AGENT" "$R/sbin/one-contextd"
for f in $(for m in $MODS; do modprobe -d "$K" -S "$KV" --show-depends "$m"; done | awk '/^insmod/{print $2}' | sort -u); do
	d="$R/${f#"$K"/}"
	mkdir -p "$(dirname "$d")"
	cp "$f" "$d"
done
cp "$K/lib/modules/$KV/modules.dep" "$K/lib/modules/$KV/modules.alias" "$R/lib/modules/$KV/"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$R/etc/passwd"
printf 'root:x:0:\n' >"$R/etc/group"
printf 'localhost\n' >"$R/etc/hostname"
printf '127.0.0.1 localhost\n' >"$R/etc/hosts"
cat >"$R/init" <<EOI
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs run /run
mount -t tmpfs tmp /tmp
for m in $MODS; do modprobe \$m; done
ip link set lo up
args=\$(sed -n 's/.*e2e.args=\([^ ]*\).*/\1/p' /proc/cmdline | sed 's/,/ /g')
# e2e.bench=N (BenchmarkAgentColdWarm): the whole job N times in this one
# boot, each on a fresh root, each run's record on the console. The first
# run pays for qemu translating the agent's code; the others find it
# translated, which is what a guest under KVM never pays.
bench=\$(sed -n 's/.*e2e.bench=\([0-9]*\).*/\1/p' /proc/cmdline)
if [ -n "\$bench" ]; then
	i=0
	while [ \$i -lt \$bench ]; do
		mkdir -p /tmp/bench\$i
		/sbin/one-contextd run --stage all --root /tmp/bench\$i \$args >/dev/null 2>&1
		echo "E2E-BENCH-EXIT \$i \$?"
		/sbin/one-contextd status --root /tmp/bench\$i --json 2>&1 | sed "s/^/E2E-BENCH-\$i /"
		i=\$((i+1))
	done
	poweroff -f
fi
echo "E2E-AGENT-START \$(cut -d' ' -f1 /proc/uptime)"
/sbin/one-contextd run --stage all \$args 2>&1
echo "E2E-AGENT-EXIT=\$? \$(cut -d' ' -f1 /proc/uptime)"
echo "E2E-HOSTNAME=\$(hostname)"
ip -o addr | sed 's/^/E2E-ADDR /'
ip -o -6 addr | sed 's/^/E2E-ADDR6 /'
ip -o link | sed 's/^/E2E-LINK /'
ip route | sed 's/^/E2E-ROUTE4 /'
ip -6 route | sed 's/^/E2E-ROUTE6 /'
for f in /etc/hosts /etc/hostname /etc/resolv.conf /tmp/e2e-start-script; do
	[ -f "\$f" ] && sed "s|^|E2E-FILE \$f: |" "\$f"
done
/sbin/one-contextd status --json 2>&1 | sed 's/^/E2E-STATUS /'
echo E2E-END
poweroff -f
EOI
chmod 0755 "$R/init"
(cd "$R" && find . | cpio -o -H newc --quiet | gzip -1) >"$OUT"
