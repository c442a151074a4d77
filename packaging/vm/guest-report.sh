#!/bin/sh
# e2e only: report the guest's state on the serial console once
# multi-user.target is reached, restart the network manager, report the
# network again, power off. The host test parses the E2E-* lines.
exec >/dev/ttyS0 2>&1
NM=$(cat /etc/e2e-netmgr)
# This runs as a Type=simple unit of multi-user.target: wait for the boot to
# finish so that systemd-analyze can tell its times.
systemctl is-system-running --wait >/dev/null 2>&1
net() {
	ip -o addr | sed "s/^/E2E-$1ADDR /"
	ip -o link | sed "s/^/E2E-$1LINK /"
	ip route | sed "s/^/E2E-$1ROUTE4 /"
	ip -6 route | sed "s/^/E2E-$1ROUTE6 /"
}
echo "E2E-MULTI-USER $(cut -d' ' -f1 /proc/uptime)"
echo "E2E-HOSTNAME=$(hostname)"
net ""
getent passwd | sed 's/^/E2E-PASSWD /'
for h in /root /home/*; do
	[ -f "$h/.ssh/authorized_keys" ] && sed "s|^|E2E-KEYS $h: |" "$h/.ssh/authorized_keys"
done
# A process a START_SCRIPT left running (the e2e context's): alive, and in
# a scope of its own rather than in the agent's unit.
if [ -f /run/e2e-bg.pid ]; then
	p=$(cat /run/e2e-bg.pid)
	alive=no
	[ -d "/proc/$p" ] && alive=yes
	echo "E2E-BG alive=$alive cgroup=$(cat "/proc/$p/cgroup" 2>/dev/null | tr '\n' ' ')"
fi
for f in /etc/hosts /etc/resolv.conf; do
	[ -f "$f" ] && sed "s|^|E2E-FILE $f: |" "$f"
done
for u in one-contextd-local.service one-contextd.service one-contextd-report.timer one-contextd-metrics.timer; do
	echo "E2E-UNIT $u $(systemctl show -p ActiveState -p Result -p UnitFileState -p ExecMainStartTimestampMonotonic -p ExecMainExitTimestampMonotonic -p CPUUsageNSec "$u" | tr '\n' ' ')"
done
systemd-analyze 2>&1 | sed 's/^/E2E-ANALYZE /'
systemd-analyze blame 2>&1 | grep -E 'one-contextd|networking|systemd-networkd|NetworkManager' | sed 's/^/E2E-BLAME /'
journalctl -b -o short-monotonic --no-pager -u 'one-contextd*' | sed 's/^/E2E-JOURNAL /'
journalctl -b -o cat --no-pager -u systemd-udevd | grep 65-one-contextd | sed 's/^/E2E-UDEVD /'
one-contextd status --json 2>&1 | sed 's/^/E2E-STATUS /'
# udev's view of the rules on the real CONTEXT CD-ROM (udevadm test parses
# every rules file and lists the RUN commands; it does not run them).
for d in /sys/class/block/sr*; do
	[ -e "$d" ] && udevadm test --action=change "$d" 2>&1 | grep -E '65-one-contextd|one-contextd-reconfigure' | sed 's/^/E2E-UDEV /'
done
# e2e.hotplug=MAC (the hot-plug test): say so, wait for the host to plug a
# NIC with that MAC, then for the reconfigure unit udev starts for it to
# finish, and report the network again.
hp=$(sed -n 's/.*e2e\.hotplug=\([0-9a-f:]*\).*/\1/p' /proc/cmdline)
if [ -n "$hp" ]; then
	echo "E2E-WAIT-HOTPLUG $hp"
	i=0
	until ip -o link | grep -q "link/ether $hp"; do
		i=$((i + 1))
		[ $i -gt 120 ] && break
		sleep 1
	done
	echo "E2E-HOTPLUGGED $(ip -o link | grep "link/ether $hp" | cut -d: -f2 | tr -d ' ')"
	i=0
	until journalctl -b -o cat --no-pager -u one-contextd-reconfigure.service | grep -q '^Finished\|Deactivated successfully\|Failed'; do
		i=$((i + 1))
		[ $i -gt 120 ] && break
		sleep 1
	done
	net "HOTPLUG-"
	journalctl -b -o short-monotonic --no-pager -u one-contextd-reconfigure.service | sed 's/^/E2E-RECONFIGURE /'
fi
case $NM in
ifupdown) systemctl restart networking.service ;;
networkd) systemctl restart systemd-networkd.service && /lib/systemd/systemd-networkd-wait-online --timeout=20 ;;
nm) systemctl restart NetworkManager.service && nm-online -q -t 20 ;;
esac
echo "E2E-RESTARTED $NM rc=$?"
net "AFTER-"
echo "E2E-END"
sync
systemctl poweroff --no-block
