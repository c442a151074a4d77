package timezone

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"one-contextd/engine"
	"one-contextd/fsroot"
	"one-contextd/guest/internal/debroot"
	"one-contextd/guest/internal/guesttest"
)

func TestVector08SetsMoscowOnce(t *testing.T) {
	dir := debroot.New(t)
	root, _ := fsroot.New(dir)
	c := guesttest.Vector(t, "08-user-sudo-keys-crypted")
	r, rec := engine.NewTestRecorder()
	if err := Apply(context.Background(), r, Input{Timezone: c.System.Timezone, Root: root}); err != nil {
		t.Fatal(err)
	}
	if l, _ := os.Readlink(filepath.Join(dir, "etc/localtime")); l != "/usr/share/zoneinfo/Europe/Moscow" {
		t.Errorf("/etc/localtime -> %q", l)
	}
	if tz, _ := os.ReadFile(filepath.Join(dir, "etc/timezone")); string(tz) != "Europe/Moscow\n" {
		t.Errorf("/etc/timezone = %q", tz)
	}
	if len(rec.Changes) != 2 || len(rec.Problems) != 0 {
		t.Errorf("changes %v problems %v", rec.Changes, rec.Problems)
	}
	// glibc inside the guest agrees: date run chrooted into the tree.
	out, err := exec.Command("chroot", dir, "date", "+%Z").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "MSK" {
		t.Errorf("date in the guest: %q %v", out, err)
	}
	before := guesttest.Snapshot(t, filepath.Join(dir, "etc"))
	r, rec = engine.NewTestRecorder()
	if err := Apply(context.Background(), r, Input{Timezone: c.System.Timezone, Root: root}); err != nil || len(rec.Changes) != 0 {
		t.Errorf("second run: %v %v", err, rec.Changes)
	}
	if d := guesttest.Diff(before, guesttest.Snapshot(t, filepath.Join(dir, "etc"))); len(d) != 0 {
		t.Errorf("second run changed %v", d)
	}
}

// A zone name that is a link inside the zone directory (tzdata's legacy
// names) is a zone.
func TestLinkedZoneNameIsAZone(t *testing.T) {
	dir := debroot.New(t)
	root, _ := fsroot.New(dir)
	r, rec := engine.NewTestRecorder()
	if err := Apply(context.Background(), r, Input{Timezone: "US/Eastern", Root: root}); err != nil || len(rec.Problems) != 0 {
		t.Fatalf("%v %v", err, rec.Problems)
	}
	if l, _ := os.Readlink(filepath.Join(dir, "etc/localtime")); l != "/usr/share/zoneinfo/US/Eastern" {
		t.Errorf("/etc/localtime -> %q", l)
	}
}

func TestUnknownZoneChangesNothing(t *testing.T) {
	dir := debroot.New(t)
	root, _ := fsroot.New(dir)
	// tzdata's zoneinfo/localtime is a link to /etc/localtime: not a zone.
	if l, err := os.Readlink(filepath.Join(dir, "usr/share/zoneinfo/localtime")); err != nil || l != "/etc/localtime" {
		t.Fatalf("the tree's tzdata has no zoneinfo/localtime -> /etc/localtime (%q, %v)", l, err)
	}
	for _, tz := range []string{"Mars/Olympus_Mons", "Europe", "posixrules/../../../etc/passwd", "../../etc/shadow", "localtime"} {
		before := guesttest.Snapshot(t, filepath.Join(dir, "etc"))
		r, rec := engine.NewTestRecorder()
		if err := Apply(context.Background(), r, Input{Timezone: tz, Root: root}); err != nil {
			t.Errorf("%s: %v", tz, err)
		}
		if len(rec.Problems) != 1 || !strings.HasPrefix(rec.Problems[0], "TIMEZONE: ") || len(rec.Changes) != 0 {
			t.Errorf("%s: problems %v changes %v", tz, rec.Problems, rec.Changes)
		}
		if d := guesttest.Diff(before, guesttest.Snapshot(t, filepath.Join(dir, "etc"))); len(d) != 0 {
			t.Errorf("%s changed %v", tz, d)
		}
	}
	// settings already refuses what is not shaped like a zone name.
	c := guesttest.Context(t, map[string]string{"TIMEZONE": "Europe/../x y"})
	if !slices.Contains(guesttest.ProblemVars(c), "TIMEZONE") || c.System.Timezone != "" {
		t.Errorf("settings: %v", c.Problems)
	}
}
