package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// BenchmarkBootSystemd boots the systemd image b.N times (each on a fresh
// overlay, same context) and reports power-on→READY-at-OneGate min, median
// and max, and the agent units' medians: wall time (systemd's timestamps),
// CPU and peak memory (their cgroups). The manager comes from
// ONE_CONTEXTD_BENCH_NM (ifupdown, networkd, nm; default ifupdown). The
// run record's cost splits the units' CPU into the agent's own and the
// tools'.
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
	var ready, wall, cpu, agentCPU, toolsCPU []time.Duration
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
		// netplan generate) and the e2e usage probe; the run record
		// tells the agent process's own share.
		var own, tools time.Duration
		var rss float64
		for _, c := range agentCost(bt) {
			own += time.Duration(c.AgentCPUMS * float64(time.Millisecond))
			tools += time.Duration(c.ToolsCPUMS * float64(time.Millisecond))
			rss = max(rss, float64(c.AgentMaxRSS)/1024)
		}
		agentCPU, toolsCPU, agentRSS = append(agentCPU, own), append(toolsCPU, tools), append(agentRSS, rss)
		b.Logf("boot %d (%s): READY %s, powered off %s, agent units %s wall %s CPU %.1f MiB peak; agent process %s CPU %.1f MiB RSS, tools %s CPU",
			i, label, fmtDur(ready[len(ready)-1]), fmtDur(bt.Wall), fmtDur(unitsWall), fmtDur(unitsCPU), unitsPeak,
			fmtDur(own), rss, fmtDur(tools))
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
	b.ReportMetric(median(toolsCPU).Seconds()*1000, "tools-cpu-ms")
	b.ReportMetric(slices.Max(agentRSS), "agent-rss-MiB")
}
