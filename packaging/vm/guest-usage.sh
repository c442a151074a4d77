#!/bin/sh
# e2e only: print a unit's cgroup peak memory and CPU time on the serial
# console (run as the unit's ExecStartPost, while its cgroup exists; the
# numbers include this small script).
cg=/sys/fs/cgroup/system.slice/$1
peak=$(cat "$cg/memory.peak" 2>/dev/null || echo "?")
cpu=$(sed -n 's/^usage_usec //p' "$cg/cpu.stat" 2>/dev/null || echo "?")
echo "E2E-USAGE $1 peak_bytes=$peak cpu_usec=$cpu uptime=$(cut -d' ' -f1 /proc/uptime)" >/dev/ttyS0
