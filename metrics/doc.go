// Package metrics is `one-contextd metrics`: it measures the VM and pushes
// the numbers to OneGate as USER_TEMPLATE attributes, in one PUT /vm, so
// that OneFlow elasticity expressions such as "CPU_USED_PERC > 80" or
// "MEM_USED_PERC > 90 && LOAD5 > 2" can scale the VM's role. A timer
// (one-contextd-metrics.timer, every 5 minutes) runs it.
//
// OneFlow looks a name up in USER_TEMPLATE before the hypervisor's
// MONITORING values, so no built-in name shadows a MONITORING one (CPU,
// MEMORY, ...). Values are plain decimals with two places ("12.50").
//
// Built-in attributes:
//
//	CPU_USED_PERC   busy share of all CPUs, %, since the last run's /proc/stat sample
//	                (kept in /run for the boot), else over --interval
//	                (user+nice+system+irq+softirq+steal over the total; idle and iowait count as idle)
//	LOAD1           /proc/loadavg, 1-minute load average
//	LOAD5           /proc/loadavg, 5-minute load average
//	LOAD15          /proc/loadavg, 15-minute load average
//	MEM_USED_PERC   100 * (MemTotal - MemAvailable) / MemTotal from /proc/meminfo (memory
//	                that cannot be had without swapping; share/scripts/onegate_metrics.sh uses
//	                MemFree, which counts the page cache as used)
//	SWAP_USED_PERC  100 * (SwapTotal - SwapFree) / SwapTotal, 0 without swap (as onegate_metrics.sh)
//	DISK_USED_PERC  the root file system as df shows it: used / (used + available to users)
//
// Site metrics: every executable in the metrics directory (default
// /etc/one-context.d/metrics.d; names of letters, digits, - and _ only, as
// run-parts) runs in name order with a timeout and prints KEY=VALUE lines.
// KEY is [A-Z0-9_]+; VALUE is one non-empty line without , [ ] \ " (what
// OneGate cannot store). READY, ONECONTEXT_*, SERVICE_ID, ROLE_NAME and
// SCHED_REQUIREMENTS are refused (they would make OneGate reject the whole
// push, or fake a report). A script that fails or times out contributes
// nothing; bad lines are skipped with a warning. A site key replaces a
// built-in one of the same name.
package metrics
