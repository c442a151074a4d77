package network

import (
	"os"
	"path/filepath"
	"testing"

	"one-contextd/fsroot"
	"one-contextd/network/render"
)

// imageWith makes a root holding the given executables and enabled units.
func imageWith(t *testing.T, tools []string, units map[string]string) *fsroot.Root {
	t.Helper()
	dir := t.TempDir()
	for _, tool := range tools {
		p := filepath.Join(dir, "usr/bin", tool)
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for unit, target := range units {
		p := filepath.Join(dir, "etc/systemd/system", target+".wants", unit)
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.Symlink("/lib/systemd/system/"+unit, p); err != nil {
			t.Fatal(err)
		}
	}
	r, err := fsroot.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Before any manager runs (the local stage), the enabled unit tells which
// manager the image uses: a Debian 12 image with ifupdown also has
// networkctl, which alone would pick networkd.
func TestSelectPrefersTheEnabledManager(t *testing.T) {
	deb12 := OSRelease{ID: "debian", VersionID: "12"}
	cases := []struct {
		name  string
		tools []string
		units map[string]string
		asked []render.Type
		want  render.Type
	}{
		{"ifupdown image", []string{"networkctl"}, map[string]string{"networking.service": "multi-user.target"}, nil, render.Interfaces},
		{"networkd image", []string{"networkctl"}, map[string]string{"systemd-networkd.service": "multi-user.target"}, nil, render.Networkd},
		{"NetworkManager image", []string{"networkctl", "nmcli"}, map[string]string{"NetworkManager.service": "multi-user.target"}, nil, render.NM},
		{"nothing enabled: one-context's order", []string{"networkctl"}, nil, nil, render.Networkd},
		{"asked for networkd", []string{"networkctl"}, map[string]string{"networking.service": "multi-user.target"}, []render.Type{render.Networkd}, render.Networkd},
	}
	for _, tc := range cases {
		r := imageWith(t, tc.tools, tc.units)
		cands, asked := DefaultTypes(deb12), false
		if tc.asked != nil {
			cands, asked = tc.asked, true
		}
		sel, err := Select(r, cands, asked, deb12, nil)
		if err != nil || sel.Type != tc.want {
			t.Errorf("%s: %s (%v), want %s; %s", tc.name, sel.Type, err, tc.want, sel.Trace)
		}
	}
}
