package agent

import (
	"io/fs"
	"testing"
)

func fakeHost(files map[string]string) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		if s, ok := files[name]; ok {
			return []byte(s), nil
		}
		return nil, fs.ErrNotExist
	}
}

func TestCostReadsTheServiceCgroup(t *testing.T) {
	host := fakeHost(map[string]string{
		"/proc/self/cgroup": "0::/system.slice/one-contextd-local.service\n",
		"/sys/fs/cgroup/system.slice/one-contextd-local.service/cpu.stat":    "usage_usec 48213\nuser_usec 9000\nsystem_usec 39213\n",
		"/sys/fs/cgroup/system.slice/one-contextd-local.service/memory.peak": "15728640\n",
	})
	c := measureCost(host)
	if c == nil {
		t.Fatal("no cost")
	}
	if c.Unit != "one-contextd-local.service" || c.UnitCPUMS != 48.213 || c.UnitPeakKiB != 15360 {
		t.Errorf("unit cost %q %v ms %v KiB", c.Unit, c.UnitCPUMS, c.UnitPeakKiB)
	}
	if c.AgentCPUMS <= 0 {
		t.Errorf("own CPU not read: %+v", c)
	}
}

func TestCostLeavesOutCgroupsThatAreNotTheAgentsUnit(t *testing.T) {
	for name, files := range map[string]map[string]string{
		"session scope": {
			"/proc/self/cgroup": "0::/user.slice/user-0.slice/session-3.scope\n",
			"/sys/fs/cgroup/user.slice/user-0.slice/session-3.scope/cpu.stat": "usage_usec 999999\n",
		},
		"cgroup v1 only":    {"/proc/self/cgroup": "12:cpu,cpuacct:/system.slice/x.service\n"},
		"no cgroup file":    {},
		"unit stats absent": {"/proc/self/cgroup": "0::/system.slice/one-contextd.service\n"},
		"escaping path": {
			"/proc/self/cgroup":       "0::/../../etc/x.service\n",
			"/etc/x.service/cpu.stat": "usage_usec 1\n",
		},
	} {
		c := measureCost(fakeHost(files))
		if c == nil || c.Unit != "" || c.UnitCPUMS != 0 || c.UnitPeakKiB != 0 {
			t.Errorf("%s: unit cost recorded: %+v", name, c)
		}
	}
}
