package hosts

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"one-contextd/engine"
	"one-contextd/fsroot"
)

const debianHosts = "127.0.0.1\tlocalhost\n127.0.1.1\tvm\n\n# The following lines are desirable for IPv6 capable hosts\n::1     localhost ip6-localhost ip6-loopback\r\nff02::1 ip6-allnodes  # trailing spaces   \n10.0.0.5 no-newline-at-end"

func TestBlockFirstThenUpdatedInPlace(t *testing.T) {
	dir := t.TempDir()
	root, _ := fsroot.New(dir)
	p := filepath.Join(dir, "etc/hosts")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(debianHosts), 0o644); err != nil {
		t.Fatal(err)
	}
	apply := func(name string, ip netip.Addr) *engine.StepRecord {
		r, rec := engine.NewTestRecorder()
		if err := Apply(context.Background(), r, Input{Root: root, Name: name, IP: ip}); err != nil {
			t.Fatal(err)
		}
		return rec
	}
	apply("web-01.example.org", netip.Addr{})
	got, _ := os.ReadFile(p)
	want := BeginMarker + "\n127.0.0.1 web-01.example.org web-01\n" + EndMarker + "\n" + debianHosts
	if string(got) != want {
		t.Errorf("first run:\n%q\nwant\n%q", got, want)
	}
	if rec := apply("web-01.example.org", netip.Addr{}); len(rec.Changes) != 0 {
		t.Errorf("second run changed: %v", rec.Changes)
	}
	// Someone adds lines around the block; a new name replaces the block
	// where it is, once.
	edited := "# admin's header\n" + string(got) + "\n192.0.2.99 extra\n"
	if err := os.WriteFile(p, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	apply("db", netip.MustParseAddr("192.0.2.80"))
	got, _ = os.ReadFile(p)
	want = strings.Replace(edited, "127.0.0.1 web-01.example.org web-01", "192.0.2.80 db", 1)
	if string(got) != want {
		t.Errorf("update:\n%q\nwant\n%q", got, want)
	}
	if strings.Count(string(got), BeginMarker) != 1 {
		t.Errorf("block duplicated")
	}
}

func TestNoNameNoFileNoChange(t *testing.T) {
	dir := t.TempDir()
	root, _ := fsroot.New(dir)
	r, _ := engine.NewTestRecorder()
	if err := Apply(context.Background(), r, Input{Root: root}); !errors.Is(err, engine.ErrSkip) {
		t.Errorf("err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "etc/hosts")); err == nil {
		t.Errorf("file created without a name")
	}
	if err := Apply(context.Background(), r, Input{Root: root, Name: "evil\n1.2.3.4 bank"}); err == nil {
		t.Errorf("a name with a newline was accepted")
	}
	// A missing file is created with only the block.
	if err := Apply(context.Background(), r, Input{Root: root, Name: "solo"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "etc/hosts")); string(got) != BeginMarker+"\n127.0.0.1 solo\n"+EndMarker+"\n" {
		t.Errorf("new file %q", got)
	}
}

func TestUnclosedBlockKeepsTheLinesAfterIt(t *testing.T) {
	// The END line was removed by hand: the lines after BEGIN are the
	// file's own, not the agent's.
	old := "127.0.0.1 localhost\n" + BeginMarker + "\n10.0.0.5 web\n192.168.1.10 db\n::1 localhost ip6-localhost\n"
	got := string(Render([]byte(old), "10.0.0.7 web"))
	want := "127.0.0.1 localhost\n" + BeginMarker + "\n10.0.0.7 web\n" + EndMarker + "\n10.0.0.5 web\n192.168.1.10 db\n::1 localhost ip6-localhost\n"
	if got != want {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
	// The next run finds a whole block and keeps the rest as it is.
	if again := string(Render([]byte(got), "10.0.0.7 web")); again != got {
		t.Errorf("second render changed the file:\n%q", again)
	}
}
