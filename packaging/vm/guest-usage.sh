#!/bin/sh
# e2e only: print a unit's cgroup peak memory and CPU time on the serial
# console (run as the unit's ExecStartPost, while its cgroup exists; the
# numbers include this small script). Shell built-ins only: every process
# it forked would be counted in the unit's CPU time.
cg=/sys/fs/cgroup/system.slice/$1
peak="?"
cpu="?"
[ -r "$cg/memory.peak" ] && read -r peak <"$cg/memory.peak"
if [ -r "$cg/cpu.stat" ]; then
	while read -r k v; do
		[ "$k" = usage_usec ] && cpu=$v
	done <"$cg/cpu.stat"
fi
read -r up _ </proc/uptime
echo "E2E-USAGE $1 peak_bytes=$peak cpu_usec=$cpu uptime=$up" >/dev/ttyS0
