package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"one-contextd/engine"
)

// BenchmarkBootSystemd boots the systemd image b.N times (each on a fresh
// overlay, same context) and reports power-on→READY-at-OneGate min, median
// and max, and the agent units' medians: wall time (systemd's timestamps),
// CPU and peak memory (their cgroups). The manager comes from
// ONE_CONTEXTD_BENCH_NM (ifupdown, networkd, nm; default ifupdown). The
// run record's cost splits the units' CPU into the agent's own (and its
// kernel share) and the tools'.
//
// By default the guest's clocks follow the host's: a process's CPU time
// then includes qemu translating its code and whatever else the host ran
// meanwhile. With ONE_CONTEXTD_E2E_ICOUNT=0 (make bench-boot ICOUNT=0)
// qemu's instruction-counting clock runs instead: every guest instruction
// advances the guest's time by 1 ns (2^N ns for N), so CPU and wall times
// inside the guest are those of a 1 GHz CPU doing one instruction per
// cycle, slower than any server CPU, and the same on any host; idle time
// (I/O) still follows the host's clock. It runs one vCPU.
// Run it with packaging/bench-boot.sh N (make bench-boot).
func BenchmarkBootSystemd(b *testing.B) {
	need(b, "qemu-system-x86_64", "qemu-img", "xorriso", "socat", "mmdebstrap", "mkfs.ext4", "dpkg-deb")
	nm := os.Getenv("ONE_CONTEXTD_BENCH_NM")
	if nm == "" {
		nm = "ifupdown"
	}
	// The guest's DNS answers, as a cloud's does, unless
	// ONE_CONTEXTD_BENCH_DNS=dead: then every lookup waits out its bound.
	dns := os.Getenv("ONE_CONTEXTD_BENCH_DNS") != "dead"
	// ONE_CONTEXTD_BENCH_BOOT=again measures the boot after the first, on
	// the same disk with the same context (every reboot of a VM); by
	// default each measured boot is a VM's first.
	again := os.Getenv("ONE_CONTEXTD_BENCH_BOOT") == "again"
	label := nm
	if again {
		label += ", again"
	}
	withDNS := func(s *vmSpec) { s.AnsweringDNS = dns }
	image, _, _ := lab.systemdImage(b, nm)
	iso := contextISO(b, systemdContext("bench"), nil)
	var ready, wall, cpu, agentCPU, agentSys, toolsCPU []time.Duration
	var peak, agentRSS []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		g, port := gate(b)
		disk := filepath.Join(b.TempDir(), "run.qcow2")
		if _, err := run(time.Minute, "", "qemu-img", "create", "-q", "-f", "qcow2", "-b", image, "-F", "qcow2", disk); err != nil {
			b.Fatal(err)
		}
		if again {
			g0, port0 := gate(b)
			w0 := watchReady(g0)
			first := systemdBoot(b, nm, iso, port0, disk, withDNS)
			if _, ok := w0.when(); !ok {
				first.fail(b, "boot %d: the first boot's READY never reached OneGate", i)
				continue
			}
		}
		w := watchReady(g)
		b.StartTimer()
		bt := systemdBoot(b, nm, iso, port, disk, withDNS)
		b.StopTimer()
		at, ok := w.when()
		if !ok {
			bt.fail(b, "boot %d: READY never reached OneGate", i)
			continue
		}
		ready = append(ready, at.Sub(bt.Started))
		if l := reconfigureRun(bt); l != "" {
			b.Logf("boot %d: the reconfigure unit ran too, its cost not counted: %s", i, l)
		}
		var unitsWall, unitsCPU time.Duration
		var unitsPeak float64
		for name, u := range usage(bt) {
			if name == "one-contextd-local.service" || name == "one-contextd.service" {
				unitsWall += u.Duration
				unitsCPU += u.CPU
				if u.PeakMiB > unitsPeak {
					unitsPeak = u.PeakMiB
				}
			}
		}
		wall, cpu, peak = append(wall, unitsWall), append(cpu, unitsCPU), append(peak, unitsPeak)
		// The units' cgroups also hold the tools the agent ran (useradd,
		// netplan generate); the run record tells the agent process's own
		// share.
		var own, sys, tools time.Duration
		var rss float64
		for _, c := range agentCost(bt) {
			own += time.Duration(c.AgentCPUMS * float64(time.Millisecond))
			sys += time.Duration(c.AgentSysMS * float64(time.Millisecond))
			tools += time.Duration(c.ToolsCPUMS * float64(time.Millisecond))
			rss = max(rss, float64(c.AgentMaxRSS)/1024)
		}
		agentCPU, agentSys, toolsCPU, agentRSS = append(agentCPU, own), append(agentSys, sys), append(toolsCPU, tools), append(agentRSS, rss)
		b.Logf("boot %d (%s): READY %s, powered off %s, agent units %s wall %s CPU %.1f MiB peak; agent process %s CPU (%s in the kernel) %.1f MiB RSS, tools %s CPU",
			i, label, fmtDur(ready[len(ready)-1]), fmtDur(bt.Wall), fmtDur(unitsWall), fmtDur(unitsCPU), unitsPeak,
			fmtDur(own), fmtDur(sys), rss, fmtDur(tools))
		b.StartTimer()
	}
	if len(ready) == 0 {
		return
	}
	lo, hi := ready[0], ready[0]
	for _, d := range ready {
		lo, hi = min(lo, d), max(hi, d)
	}
	b.ReportMetric(lo.Seconds(), "ready-min-s")
	b.ReportMetric(median(ready).Seconds(), "ready-median-s")
	b.ReportMetric(hi.Seconds(), "ready-max-s")
	b.ReportMetric(median(wall).Seconds()*1000, "units-wall-ms")
	b.ReportMetric(median(cpu).Seconds()*1000, "units-cpu-ms")
	b.ReportMetric(slices.Max(peak), "units-peak-MiB")
	b.ReportMetric(median(agentCPU).Seconds()*1000, "agent-cpu-ms")
	b.ReportMetric(median(agentSys).Seconds()*1000, "agent-sys-ms")
	b.ReportMetric(median(toolsCPU).Seconds()*1000, "tools-cpu-ms")
	b.ReportMetric(slices.Max(agentRSS), "agent-rss-MiB")
}

// BenchmarkAgentColdWarm boots the minimal guest and runs the agent's
// whole job (stage all, first boot of a fresh root, READY to OneGate)
// several times in that one boot. Under TCG the first run also pays for
// qemu translating every code path it takes; the later runs find the
// binary's pages translated (qemu keys its translations by physical
// page, and the page cache keeps them). The gap between them is what
// emulation adds, and the warm runs are the agent's own work under
// emulation, steadier than a whole boot for comparing changes to it.
// Run it with: ONE_CONTEXTD_E2E=1 go test -run '^$' -bench AgentColdWarm -benchtime 1x ./e2e
func BenchmarkAgentColdWarm(b *testing.B) {
	need(b, "qemu-system-x86_64", "xorriso", "socat", "cpio", "apt-get", "dpkg-deb", "depmod")
	const runs = 6
	kernel, initrd := lab.initramfs(b)
	iso := contextISO(b, baseContext+"ONEGATE_TOKEN='"+vmToken+"'\nSET_HOSTNAME='bench'\nETH0_DNS='10.0.2.3'\n", nil)
	var coldCPU, warmCPU, coldWall, warmWall []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, port := gate(b)
		bt := bootVM(b, vmSpec{
			Kernel: kernel, Initrd: initrd, Append: fmt.Sprintf("console=ttyS0 panic=-1 quiet e2e.bench=%d", runs),
			ISO: iso, GatePort: port, Timeout: 5 * time.Minute,
		})
		b.StopTimer()
		for r := 0; r < runs; r++ {
			if exit := bt.first(fmt.Sprintf("E2E-BENCH-EXIT %d ", r)); exit != "0" {
				bt.fail(b, "boot %d, run %d: agent exit %q, want 0", i, r, exit)
				return
			}
			var rec engine.Record
			if err := json.Unmarshal([]byte(strings.Join(bt.marked(fmt.Sprintf("E2E-BENCH-%d ", r)), "\n")), &rec); err != nil {
				bt.fail(b, "boot %d, run %d: run record: %v", i, r, err)
				return
			}
			c := rec.Cost[rec.Stage]
			if c == nil || rec.Report == "" {
				bt.fail(b, "boot %d, run %d: record without cost or report: %+v", i, r, rec)
				return
			}
			cpu := time.Duration(c.AgentCPUMS * float64(time.Millisecond))
			wall := rec.Finished.Sub(rec.Started)
			b.Logf("boot %d, run %d: %s wall, agent %s CPU, %.1f MiB RSS, report %s", i, r, fmtDur(wall), fmtDur(cpu), float64(c.AgentMaxRSS)/1024, rec.Report)
			if r == 0 {
				coldCPU, coldWall = append(coldCPU, cpu), append(coldWall, wall)
			} else {
				warmCPU, warmWall = append(warmCPU, cpu), append(warmWall, wall)
			}
		}
		b.StartTimer()
	}
	b.ReportMetric(median(coldCPU).Seconds()*1000, "cold-cpu-ms")
	b.ReportMetric(median(warmCPU).Seconds()*1000, "warm-cpu-ms")
	b.ReportMetric(median(coldWall).Seconds()*1000, "cold-wall-ms")
	b.ReportMetric(median(warmWall).Seconds()*1000, "warm-wall-ms")
}
