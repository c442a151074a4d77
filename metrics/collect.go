package metrics

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"one-contextd/internal/wait"

	"golang.org/x/sys/unix"
)

// Built-in attribute names.
const (
	AttrCPUUsedPerc  = "CPU_USED_PERC"
	AttrLoad1        = "LOAD1"
	AttrLoad5        = "LOAD5"
	AttrLoad15       = "LOAD15"
	AttrMemUsedPerc  = "MEM_USED_PERC"
	AttrSwapUsedPerc = "SWAP_USED_PERC"
	AttrDiskUsedPerc = "DISK_USED_PERC"
)

// DefaultInterval is the time between the two /proc/stat samples.
const DefaultInterval = time.Second

// Metric is one attribute to push.
type Metric struct {
	Key   string
	Value string
}

// System reads the kernel's numbers.
type System struct {
	// Proc is the directory standing for /proc ("" is /proc).
	Proc string
	// Disk is a path on the root file system (host path of the root).
	Disk string
	// Interval between the CPU samples; 0: DefaultInterval.
	Interval time.Duration
	// Sleep waits between the CPU samples; nil: a timer honouring ctx.
	Sleep func(context.Context, time.Duration) error
	// Statfs reads a file system's counters; nil: unix.Statfs.
	Statfs func(path string) (DiskStats, error)
	// Since, when it holds a sample of this boot at least MinSpan old,
	// is where CPU_USED_PERC starts: the whole time since the last push,
	// rather than a second-long sample that lets one spike count in
	// several of OneFlow's evaluations and misses everything in between.
	// Collect stores its own sample there for the next run.
	Since CPUStore
}

// MinSpan is the shortest span a stored CPU sample is used for; a younger
// one (two runs in a row) gives way to a fresh Interval-long sample.
const MinSpan = 5 * time.Second

// CPUStore keeps a /proc/stat sample between runs.
type CPUStore interface {
	Load() (CPUSample, bool)
	Save(CPUSample) error
}

// CPUSample is the aggregate cpu line of /proc/stat, in ticks, and when
// it was read (the kernel's boot time tells the boots apart).
type CPUSample struct {
	Busy  uint64    `json:"busy"`
	Total uint64    `json:"total"`
	At    time.Time `json:"at"`
	Boot  string    `json:"boot"`
}

func (s System) proc(name string) string {
	dir := s.Proc
	if dir == "" {
		dir = "/proc"
	}
	return filepath.Join(dir, name)
}

// Collect returns the built-in metrics in a fixed order. A source that
// cannot be read is left out and named in the returned error (the others
// are still pushed).
func (s System) Collect(ctx context.Context) ([]Metric, error) {
	var out []Metric
	var errs []error
	cpu, err := s.cpuUsed(ctx)
	if err != nil {
		errs = append(errs, err)
	} else {
		out = append(out, Metric{AttrCPUUsedPerc, pct(cpu)})
	}
	if la, err := readLoad(s.proc("loadavg")); err != nil {
		errs = append(errs, err)
	} else {
		out = append(out, Metric{AttrLoad1, la[0]}, Metric{AttrLoad5, la[1]}, Metric{AttrLoad15, la[2]})
	}
	if mem, swap, err := readMem(s.proc("meminfo")); err != nil {
		errs = append(errs, err)
	} else {
		out = append(out, Metric{AttrMemUsedPerc, pct(mem)}, Metric{AttrSwapUsedPerc, pct(swap)})
	}
	statfs := s.Statfs
	if statfs == nil {
		statfs = realStatfs
	}
	disk := s.Disk
	if disk == "" {
		disk = "/"
	}
	if st, err := statfs(disk); err != nil {
		errs = append(errs, fmt.Errorf("statfs %s: %w", disk, err))
	} else if p, ok := st.UsedPerc(); ok {
		out = append(out, Metric{AttrDiskUsedPerc, pct(p)})
	} else {
		errs = append(errs, fmt.Errorf("statfs %s: no blocks", disk))
	}
	return out, errors.Join(errs...)
}

func pct(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }

// cpuTimes is the aggregate "cpu" line of /proc/stat, in ticks.
type cpuTimes struct{ busy, total uint64 }

func (s System) cpuUsed(ctx context.Context) (float64, error) {
	boot, _ := readBootTime(s.proc("stat"))
	if s.Since != nil {
		if prev, ok := s.Since.Load(); ok && prev.Boot == boot && boot != "" && time.Since(prev.At) >= MinSpan {
			b, err := readCPU(s.proc("stat"))
			if err != nil {
				return 0, err
			}
			s.save(b, boot)
			if b.total > prev.Total {
				return cpuPerc(cpuTimes{prev.Busy, prev.Total}, b), nil
			}
		}
	}
	a, err := readCPU(s.proc("stat"))
	if err != nil {
		return 0, err
	}
	d := s.Interval
	if d <= 0 {
		d = DefaultInterval
	}
	sleep := s.Sleep
	if sleep == nil {
		sleep = sleepCtx
	}
	if err := sleep(ctx, d); err != nil {
		return 0, fmt.Errorf("cpu sample: %w", err)
	}
	b, err := readCPU(s.proc("stat"))
	if err != nil {
		return 0, err
	}
	s.save(b, boot)
	return cpuPerc(a, b), nil
}

// save stores the sample for the next run; a store that fails costs the
// next run its span, not this run its metric.
func (s System) save(t cpuTimes, boot string) {
	if s.Since != nil && boot != "" {
		_ = s.Since.Save(CPUSample{Busy: t.busy, Total: t.total, At: time.Now(), Boot: boot})
	}
}

// readBootTime is the btime line of /proc/stat: the same for every run of
// one boot.
func readBootTime(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "btime "); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("%s: no btime line", path)
}

// cpuPerc is the busy share between two samples; 0 when no tick passed
// (or the counters went back, as after a CPU went offline).
func cpuPerc(a, b cpuTimes) float64 {
	if b.total <= a.total || b.busy < a.busy {
		return 0
	}
	p := 100 * float64(b.busy-a.busy) / float64(b.total-a.total)
	return min(p, 100)
}

// readCPU parses "cpu  user nice system idle iowait irq softirq steal
// guest guest_nice". guest time is already inside user, so it is not
// added again; idle and iowait are the idle part.
func readCPU(path string) (cpuTimes, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return cpuTimes{}, fmt.Errorf("cpu: %w", err)
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return cpuTimes{}, fmt.Errorf("cpu: %s: no aggregate cpu line", path)
	}
	var v [8]uint64
	for i := 0; i < len(v) && i+1 < len(f); i++ {
		n, err := strconv.ParseUint(f[i+1], 10, 64)
		if err != nil {
			return cpuTimes{}, fmt.Errorf("cpu: %s: field %d: %w", path, i+1, err)
		}
		v[i] = n
	}
	var t cpuTimes
	for i, n := range v {
		t.total += n
		if i != 3 && i != 4 { // idle, iowait
			t.busy += n
		}
	}
	return t, nil
}

// readLoad returns the three load averages as the kernel prints them.
func readLoad(path string) ([3]string, error) {
	var la [3]string
	data, err := os.ReadFile(path)
	if err != nil {
		return la, fmt.Errorf("load: %w", err)
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return la, fmt.Errorf("load: %s: want three load averages, got %q", path, strings.TrimSpace(string(data)))
	}
	for i := range la {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil || v < 0 {
			return la, fmt.Errorf("load: %s: %q is not a load average", path, f[i])
		}
		la[i] = pct(v)
	}
	return la, nil
}

// readMem returns memory and swap used, in %.
func readMem(path string) (mem, swap float64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, fmt.Errorf("memory: %w", err)
	}
	defer func() { _ = f.Close() }()
	kb := map[string]uint64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch name {
		case "MemTotal", "MemAvailable", "MemFree", "Buffers", "Cached", "SwapTotal", "SwapFree":
		default:
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		n, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("memory: %s: %s: %w", path, name, err)
		}
		kb[name] = n
	}
	if err := sc.Err(); err != nil {
		return 0, 0, fmt.Errorf("memory: %s: %w", path, err)
	}
	total := kb["MemTotal"]
	if total == 0 {
		return 0, 0, fmt.Errorf("memory: %s: no MemTotal", path)
	}
	avail, ok := kb["MemAvailable"]
	if !ok { // kernels before 3.14
		avail = kb["MemFree"] + kb["Buffers"] + kb["Cached"]
	}
	avail = min(avail, total)
	mem = 100 * float64(total-avail) / float64(total)
	if st := kb["SwapTotal"]; st > 0 {
		swap = 100 * float64(st-min(kb["SwapFree"], st)) / float64(st)
	}
	return mem, swap, nil
}

// DiskStats are a file system's block counters.
type DiskStats struct {
	Blocks uint64 // total
	Free   uint64 // free, including blocks reserved for root
	Avail  uint64 // free for ordinary users
}

// UsedPerc is df's Use%: used / (used + available to users), unrounded.
func (d DiskStats) UsedPerc() (float64, bool) {
	if d.Blocks == 0 {
		return 0, false
	}
	used := d.Blocks - min(d.Free, d.Blocks)
	if used+d.Avail == 0 {
		return 0, true
	}
	return 100 * float64(used) / float64(used+d.Avail), true
}

func realStatfs(path string) (DiskStats, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return DiskStats{}, err
	}
	return DiskStats{Blocks: st.Blocks, Free: st.Bfree, Avail: st.Bavail}, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error { return wait.Sleep(ctx, d) }
