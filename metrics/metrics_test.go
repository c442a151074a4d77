package metrics

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"one-contextd/context/shvars"
	"one-contextd/fsroot"
	"one-contextd/onegate/fakegate"
	"one-contextd/report"
	"one-contextd/runner"
	"one-contextd/secret"
)

func writeFile(t *testing.T, p, data string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}

const (
	statA   = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 100 0 50 800 50 0 0 0 0 0\nintr 1 2 3\n"
	statB   = "cpu  160 0 70 900 70 0 0 0 0 0\ncpu0 160 0 70 900 70 0 0 0 0 0\nintr 4 5 6\n"
	loadavg = "0.52 1.25 3.00 2/345 6789\n"
	meminfo = "MemTotal:        8000000 kB\nMemFree:          500000 kB\nMemAvailable:    2000000 kB\n" +
		"Buffers:          100000 kB\nCached:          1000000 kB\nSwapCached:            0 kB\n" +
		"SwapTotal:       1000000 kB\nSwapFree:         750000 kB\n"
)

// fakeProc makes a proc directory whose stat file moves from statA to
// statB during the sampling interval.
func fakeProc(t *testing.T) (string, func(context.Context, time.Duration) error) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "stat"), statA, 0o644)
	writeFile(t, filepath.Join(dir, "loadavg"), loadavg, 0o644)
	writeFile(t, filepath.Join(dir, "meminfo"), meminfo, 0o644)
	return dir, func(context.Context, time.Duration) error {
		return os.WriteFile(filepath.Join(dir, "stat"), []byte(statB), 0o644)
	}
}

func fakeStatfs(string) (DiskStats, error) {
	return DiskStats{Blocks: 1000, Free: 300, Avail: 250}, nil
}

func TestCollectOnFakeProc(t *testing.T) {
	proc, sleep := fakeProc(t)
	got, err := System{Proc: proc, Sleep: sleep, Statfs: fakeStatfs}.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []Metric{
		{"CPU_USED_PERC", "40.00"}, // busy 230-150 of 1200-1000 ticks
		{"LOAD1", "0.52"}, {"LOAD5", "1.25"}, {"LOAD15", "3.00"},
		{"MEM_USED_PERC", "75.00"},  // (8000000-2000000)/8000000
		{"SWAP_USED_PERC", "25.00"}, // (1000000-750000)/1000000
		{"DISK_USED_PERC", "73.68"}, // 700/(700+250)
	}
	if len(got) != len(want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("metric %d = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestMemoryWithoutMemAvailable(t *testing.T) {
	p := filepath.Join(t.TempDir(), "meminfo")
	// Before 3.14: free + buffers + cache = 1000000 of 4000000; no swap.
	writeFile(t, p, "MemTotal: 4000000 kB\nMemFree: 500000 kB\nBuffers: 200000 kB\nCached: 300000 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n", 0o644)
	mem, swap, err := readMem(p)
	if err != nil || pct(mem) != "75.00" || pct(swap) != "0.00" {
		t.Errorf("readMem = %v %v %v, want 75.00 0.00", pct(mem), pct(swap), err)
	}
}

func TestCollectorErrors(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "stat"), "intr 1\n", 0o644)
	writeFile(t, filepath.Join(dir, "loadavg"), "0.1 x\n", 0o644)
	got, err := System{Proc: dir, Interval: time.Millisecond, Statfs: fakeStatfs}.Collect(context.Background())
	if err == nil {
		t.Fatal("no error for unreadable proc files")
	}
	for _, part := range []string{"no aggregate cpu line", "want three load averages", "meminfo"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q lacks %q", err, part)
		}
	}
	if len(got) != 1 || got[0].Key != AttrDiskUsedPerc {
		t.Errorf("the readable source is not kept: %v", got)
	}
}

func TestCPUPercEdges(t *testing.T) {
	if p := cpuPerc(cpuTimes{10, 100}, cpuTimes{10, 100}); p != 0 {
		t.Errorf("no ticks: %v", p)
	}
	if p := cpuPerc(cpuTimes{50, 100}, cpuTimes{20, 90}); p != 0 {
		t.Errorf("counters went back: %v", p)
	}
	if p := cpuPerc(cpuTimes{0, 0}, cpuTimes{100, 100}); p != 100 {
		t.Errorf("all busy: %v", p)
	}
}

func TestDiskUsedPerc(t *testing.T) {
	for _, tc := range []struct {
		d    DiskStats
		want string
		ok   bool
	}{
		{DiskStats{1000, 300, 250}, "73.68", true},
		{DiskStats{1000, 1000, 950}, "0.00", true},
		{DiskStats{1000, 50, 0}, "100.00", true}, // only root's reserve left
		{DiskStats{}, "", false},
	} {
		p, ok := tc.d.UsedPerc()
		if ok != tc.ok || (ok && pct(p) != tc.want) {
			t.Errorf("%+v: %v %v, want %s %v", tc.d, pct(p), ok, tc.want, tc.ok)
		}
	}
}

// The real kernel's files must parse, and percentages stay in range.
func TestCollectOnRealKernel(t *testing.T) {
	got, err := System{Interval: 50 * time.Millisecond, Disk: t.TempDir()}.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 7 {
		t.Fatalf("got %v", got)
	}
	for _, m := range got {
		v, err := strconv.ParseFloat(m.Value, 64)
		if err != nil || v < 0 || (strings.HasSuffix(m.Key, "_PERC") && v > 100) {
			t.Errorf("%s=%s out of range", m.Key, m.Value)
		}
	}
}

func TestParseOutput(t *testing.T) {
	out := "APP_QUEUE_DEPTH=57\n  APP_RPS = 180 \n# comment\n\nlower=1\nNOEQUALS\nREADY=YES\nONECONTEXT_ERROR=x\n" +
		"LIST=a,b\nEMPTY=\nQUOTE=say \"hi\"\nURL=http://x/?a=b\n"
	got, warns := parseOutput("app", out)
	want := []Metric{{"APP_QUEUE_DEPTH", "57"}, {"APP_RPS", "180"}, {"URL", "http://x/?a=b"}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%d: %v, want %v", i, got[i], want[i])
		}
	}
	if len(warns) != 7 {
		t.Errorf("%d warnings, want 7: %q", len(warns), warns)
	}
	for _, w := range []string{"app: line 5: key \"lower\"", "line 6: not KEY=VALUE", "READY is reserved", "ONECONTEXT_ERROR is reserved", "line 9:", "empty value"} {
		if !strings.Contains(strings.Join(warns, "\n"), w) {
			t.Errorf("warnings lack %q: %q", w, warns)
		}
	}
}

func TestScriptsRunInOrderWithTimeout(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "10-app"), "#!/bin/sh\necho APP_QUEUE_DEPTH=57\necho LOAD1=9.99\n", 0o755)
	writeFile(t, filepath.Join(dir, "20-fails"), "#!/bin/sh\necho FAILS=1\nexit 2\n", 0o755)
	writeFile(t, filepath.Join(dir, "30-hangs"), "#!/bin/sh\necho HANGS=1\nexec sleep 30\n", 0o755)
	writeFile(t, filepath.Join(dir, "40-noexec"), "#!/bin/sh\necho NOEXEC=1\n", 0o644)
	writeFile(t, filepath.Join(dir, "50-app.dpkg-old"), "#!/bin/sh\necho OLD=1\n", 0o755)
	writeFile(t, filepath.Join(dir, "60-db"), "#!/bin/sh\necho PG_CONNECTIONS=61\n", 0o755)
	start := time.Now()
	got, warns := Scripts{Dir: dir, Run: runner.Exec{}, Timeout: 300 * time.Millisecond}.Collect(context.Background())
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %s; the hanging script was not cut off", d)
	}
	want := []Metric{{"APP_QUEUE_DEPTH", "57"}, {"LOAD1", "9.99"}, {"PG_CONNECTIONS", "61"}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("got %v, want %v", got, want)
	}
	w := strings.Join(warns, "\n")
	if len(warns) != 2 || !strings.Contains(w, "20-fails") || !strings.Contains(w, "30-hangs") || !strings.Contains(w, "timed out") {
		t.Errorf("warnings %q", warns)
	}
	// A site key replaces the built-in one in place.
	merged := merge([]Metric{{"CPU_USED_PERC", "1.00"}, {"LOAD1", "0.52"}}, got)
	if len(merged) != 4 || merged[1] != (Metric{"LOAD1", "9.99"}) {
		t.Errorf("merge = %v", merged)
	}
}

func TestMainDryRun(t *testing.T) {
	proc, _ := fakeProc(t)
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "etc/one-context.d/metrics.d/app"), "#!/bin/sh\necho APP_RPS=180\n", 0o755)
	var out, errOut bytes.Buffer
	code := Main([]string{"--root", root, "--proc", proc, "--interval", "1ms", "--dry-run"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("Main = %d: %s", code, &errOut)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	wantPrefix := []string{"CPU_USED_PERC=0.00", "LOAD1=0.52", "LOAD5=1.25", "LOAD15=3.00", "MEM_USED_PERC=75.00",
		"SWAP_USED_PERC=25.00", "DISK_USED_PERC=", "APP_RPS=180"}
	if len(lines) != len(wantPrefix) {
		t.Fatalf("output:\n%s", &out)
	}
	for i, w := range wantPrefix {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d = %q, want %q...", i, lines[i], w)
		}
	}
}

func TestMainPushesToOneGate(t *testing.T) {
	g := fakegate.Start(t)
	const token = "metrics-token-secret"
	if err := g.AddVM(41, "backend_0", token, "192.0.2.21"); err != nil {
		t.Fatal(err)
	}
	proc, _ := fakeProc(t)
	rootDir := t.TempDir()
	root, err := fsroot.New(rootDir)
	if err != nil {
		t.Fatal(err)
	}
	env := shvars.Format([]shvars.Var{{Name: "ONEGATE_ENDPOINT", Value: g.URL}, {Name: "VMID", Value: "41"}, {Name: "TOKENTXT", Value: token}})
	if _, err := root.WriteFile(report.EnvFile, env, fsroot.WriteOptions{Mode: 0o400}); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(rootDir, "srv/metrics/queue"), "#!/bin/sh\necho APP_QUEUE_DEPTH=57\n", 0o755)
	var out, errOut bytes.Buffer
	code := Main([]string{"--root", rootDir, "--proc", proc, "--interval", "1ms", "--dir", "/srv/metrics"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("Main = %d: %s", code, &errOut)
	}
	for k, want := range map[string]string{"LOAD1": "0.52", "LOAD15": "3.00", "MEM_USED_PERC": "75.00",
		"SWAP_USED_PERC": "25.00", "CPU_USED_PERC": "0.00", "APP_QUEUE_DEPTH": "57"} {
		if v, _ := g.VMAttr(41, k); v != want {
			t.Errorf("%s = %q, want %q", k, v, want)
		}
	}
	if v, ok := g.VMAttr(41, "DISK_USED_PERC"); !ok || v == "" {
		t.Error("DISK_USED_PERC not pushed")
	}
	if reqs := g.Requests(); len(reqs) != 1 || reqs[0].Method != "PUT" || reqs[0].Path != "/vm" {
		t.Errorf("requests %+v, want one PUT /vm", reqs)
	}
	if strings.Contains(out.String()+errOut.String(), token) {
		t.Error("token printed")
	}
}

func TestMainWithoutEnvFile(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := Main([]string{"--root", t.TempDir()}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "one_env") {
		t.Errorf("Main = %d, %q", code, &errOut)
	}
}

// BenchmarkCollectAndPush is one timer run in-process: the built-in
// collectors on fake proc files and one PUT /vm to a loopback fake.
func BenchmarkCollectAndPush(b *testing.B) {
	g := fakegate.Start(b)
	const token = "bench-token"
	if err := g.AddVM(41, "vm", token); err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	for name, data := range map[string]string{"stat": statA, "loadavg": loadavg, "meminfo": meminfo} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	sys := System{Proc: dir, Disk: dir, Sleep: func(context.Context, time.Duration) error { return nil }}
	env := report.Env{Endpoint: g.URL, VMID: "41", Token: secret.New(token)}
	ctx := context.Background()
	for b.Loop() {
		m, err := sys.Collect(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := Push(ctx, env, m); err != nil {
			b.Fatal(err)
		}
	}
}

type memCPUStore struct {
	s  CPUSample
	ok bool
}

func (m *memCPUStore) Load() (CPUSample, bool) { return m.s, m.ok }
func (m *memCPUStore) Save(s CPUSample) error  { m.s, m.ok = s, true; return nil }

// CPU_USED_PERC covers the time since the last run when that run's sample
// is of this boot and old enough; otherwise a fresh sample is taken.
func TestCPUSinceTheLastRun(t *testing.T) {
	proc, sleep := fakeProc(t)
	writeFile(t, filepath.Join(proc, "stat"), statA+"btime 1700000000\n", 0o644)
	slept := 0
	countingSleep := func(ctx context.Context, d time.Duration) error {
		slept++
		if err := sleep(ctx, d); err != nil {
			return err
		}
		// statB, same boot.
		return os.WriteFile(filepath.Join(proc, "stat"), []byte(statB+"btime 1700000000\n"), 0o644)
	}
	store := &memCPUStore{}
	sys := System{Proc: proc, Sleep: countingSleep, Statfs: fakeStatfs, Since: store}
	cpu := func() string {
		t.Helper()
		got, err := sys.Collect(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return got[0].Value
	}
	// No earlier sample: a fresh one, stored.
	if v := cpu(); v != "40.00" || slept != 1 || !store.ok || store.s.Total != 1200 || store.s.Boot != "1700000000" {
		t.Fatalf("first run: %s, slept %d, stored %+v", v, slept, store.s)
	}
	// A minute later, 300 more ticks of which 270 busy: the span since the
	// stored sample, no new sampling wait.
	store.s.At = time.Now().Add(-time.Minute)
	writeFile(t, filepath.Join(proc, "stat"), "cpu  360 0 140 910 90 0 0 0 0 0\nbtime 1700000000\n", 0o644)
	if v := cpu(); v != "90.00" || slept != 1 {
		t.Errorf("second run: %s (want 90.00 over the span), slept %d", v, slept)
	}
	// A sample of another boot, or a fresh one, is not a starting point.
	for _, s := range []CPUSample{{Busy: 1, Total: 2, At: time.Now().Add(-time.Minute), Boot: "1600000000"}, {Busy: 1, Total: 2, At: time.Now(), Boot: "1700000000"}} {
		store.s = s
		writeFile(t, filepath.Join(proc, "stat"), statA+"btime 1700000000\n", 0o644)
		before := slept
		if v := cpu(); v != "40.00" || slept != before+1 {
			t.Errorf("stored %+v: %s, slept %d times", s, v, slept-before)
		}
	}
}
