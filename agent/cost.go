package agent

import (
	"bufio"
	"bytes"
	"path"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"one-contextd/engine"
)

// measureCost reads the process's own and its children's resource use,
// and, when the process runs as a systemd service, that unit's cgroup
// totals: what systemd reports for the unit (CPUUsageNSec, MemoryPeak),
// read here because systemd 252 keeps no peak for a unit that has ended.
func measureCost(readHost func(string) ([]byte, error)) *engine.Cost {
	self, children, ok := rusage()
	if !ok {
		return nil
	}
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	c := &engine.Cost{AgentCPUMS: ms(cpuOf(self)), AgentSysMS: ms(time.Duration(self.Stime.Nano())),
		ToolsCPUMS: ms(cpuOf(children)), AgentMaxRSS: self.Maxrss, ToolsMaxRSS: children.Maxrss}
	unitCost(readHost, c)
	return c
}

// cpuUsed is the CPU time of the process and of the tools it has waited
// for, so far.
func cpuUsed() time.Duration {
	self, children, ok := rusage()
	if !ok {
		return 0
	}
	return cpuOf(self) + cpuOf(children)
}

// rusage is the process's own and its waited-for children's resource use.
func rusage() (self, children unix.Rusage, ok bool) {
	ok = unix.Getrusage(unix.RUSAGE_SELF, &self) == nil && unix.Getrusage(unix.RUSAGE_CHILDREN, &children) == nil
	return self, children, ok
}

func cpuOf(u unix.Rusage) time.Duration { return time.Duration(u.Utime.Nano() + u.Stime.Nano()) }

// unitCost fills in the unit's cgroup totals when the process's cgroup (v2)
// is a service's own; a process started from a shell sits in a session
// scope shared with other processes, whose totals would mislead.
func unitCost(readHost func(string) ([]byte, error), c *engine.Cost) {
	b, err := readHost("/proc/self/cgroup")
	if err != nil {
		return
	}
	var cg string
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			cg = rest
		}
	}
	if !strings.HasSuffix(cg, ".service") || strings.Contains(cg, "..") {
		return
	}
	dir := path.Join("/sys/fs/cgroup", cg)
	stat, err := readHost(path.Join(dir, "cpu.stat"))
	if err != nil {
		return
	}
	sc := bufio.NewScanner(bytes.NewReader(stat))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "usage_usec "); ok {
			if us, err := strconv.ParseInt(v, 10, 64); err == nil {
				c.Unit = path.Base(cg)
				c.UnitCPUMS = float64(us) / 1000
			}
		}
	}
	if peak, err := readHost(path.Join(dir, "memory.peak")); err == nil && c.Unit != "" {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(peak)), 10, 64); err == nil {
			c.UnitPeakKiB = n / 1024
		}
	}
}
