package growfs

import "testing"

func TestSplitLVMName(t *testing.T) {
	for name, want := range map[string][2]string{
		"rhel-root":             {"rhel", "root"},
		"debian--vg-root":       {"debian-vg", "root"},
		"vg-lv--data":           {"vg", "lv-data"},
		"a---b":                 {"a-", "b"},
		"vg-pool-tpool":         {},
		"vg-pool_tdata":         {"vg", "pool_tdata"},
		"root":                  {},
		"-root":                 {},
		"vg-":                   {},
		"my--vg--1-my--lv--2--": {"my-vg-1", "my-lv-2-"},
	} {
		vg, lv, ok := splitLVMName(name)
		if ok != (want != [2]string{}) || vg != want[0] || lv != want[1] {
			t.Errorf("splitLVMName(%q) = %q, %q, %v; want %q", name, vg, lv, ok, want)
		}
	}
}

func TestPVRoom(t *testing.T) {
	rows, err := parsePVs([]byte("  /dev/vda5|debian-vg|21474836480|1048576|2436|4194304|0\n\n  /dev/vdb|debian-vg|4194304000|1048576|999|4194304|0\n"))
	if err != nil || len(rows) != 2 {
		t.Fatalf("%v %v", rows, err)
	}
	// (20 GiB - 1 MiB) / 4 MiB = 5119 extents, 2436 in use.
	if got := rows[0].room(); got != (5119-2436)*4<<20 {
		t.Errorf("room %d", got)
	}
	// 999 of (4000 MiB - 1 MiB) / 4 MiB = 999: nothing to gain.
	if got := rows[1].room(); got != 0 {
		t.Errorf("room %d", got)
	}
}
