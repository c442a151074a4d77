#!/bin/sh
# Boot benchmark: boots the Debian 12 systemd image with the .deb N times
# per network manager and reports min/median/max of power-on -> READY at
# the fake OneGate, and the agent units' run time, CPU (systemd's
# CPUUsageNSec) and peak memory (their cgroups' memory.peak).
# usage: packaging/bench-boot.sh [N] [NETMGR...]   (default: 5 ifupdown)
# With ONE_CONTEXTD_E2E_ICOUNT=0 (make bench-boot ICOUNT=0) the guest runs
# on qemu's instruction-counting clock, 1 ns per instruction: its times are
# those of a 1 GHz, one-instruction-per-cycle CPU, free of qemu's
# translation and of the host's load (see BenchmarkBootSystemd).
set -eu
N=${1:-5}
[ $# -gt 0 ] && shift
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
[ $# -gt 0 ] || set -- ifupdown
for nm in "$@"; do
	echo "== $nm: $N boots"
	ONE_CONTEXTD_E2E=1 ONE_CONTEXTD_BENCH_NM=$nm go test -run '^$' -bench '^BenchmarkBootSystemd$' \
		-benchtime "${N}x" -timeout 60m -v ./e2e
done
