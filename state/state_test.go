package state

import (
	"strings"
	"testing"

	"one-contextd/engine"
	"one-contextd/fsroot"
)

func TestChangeDetection(t *testing.T) {
	r, err := fsroot.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"context.sh": []byte("A='1'\n"), "token.txt": []byte("tok-secret\n"), "init.sh": []byte("echo\n")}
	cur := Fingerprint("7", files)
	last, err := LoadApplied(r)
	if err != nil || last != nil {
		t.Fatalf("no state yet: %v %v", last, err)
	}
	if c, _ := Compare(last, cur); c != FirstBoot {
		t.Errorf("no state: %s", c)
	}
	if err := SaveApplied(r, cur); err != nil {
		t.Fatal(err)
	}
	data, _ := r.ReadFile(ContextFile)
	if strings.Contains(string(data), "tok-secret") || strings.Contains(string(data), Fingerprint("7", map[string][]byte{"t": []byte("tok-secret\n")}).Files["t"]) {
		t.Error("the state file holds the token or its digest")
	}
	last, _ = LoadApplied(r)
	if c, _ := Compare(last, Fingerprint("7", files)); c != Unchanged {
		t.Errorf("same files: %s", c)
	}
	files["init.sh"] = []byte("echo 2\n")
	if c, diff := Compare(last, Fingerprint("7", files)); c != Changed || strings.Join(diff, ",") != "init.sh" {
		t.Errorf("changed init.sh: %s %v", c, diff)
	}
	files["token.txt"] = []byte("other\n")
	files["init.sh"] = []byte("echo\n")
	if c, diff := Compare(last, Fingerprint("7", files)); c != Changed || strings.Join(diff, ",") != "token.txt" {
		t.Errorf("changed token: %s %v", c, diff)
	}
	if c, _ := Compare(last, Fingerprint("8", files)); c != FirstBoot {
		t.Errorf("another VM (cloned image): %s", c)
	}
	// A corrupt state file is reported and treated as none.
	if _, err := r.WriteFile(ContextFile, []byte("{not json"), fsroot.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if a, err := LoadApplied(r); a != nil || err == nil {
		t.Errorf("corrupt state: %v %v", a, err)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	r, _ := fsroot.New(t.TempDir())
	rec := &engine.Record{Stage: "all", Steps: []engine.StepRecord{{Name: "medium", Status: engine.OK}}}
	if err := SaveRecord(r, rec); err != nil {
		t.Fatal(err)
	}
	fi, _ := r.Lstat(RecordFile)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("record mode %v", fi.Mode())
	}
	got, err := LoadRecord(r)
	if err != nil || got.Stage != "all" || len(got.Steps) != 1 {
		t.Fatalf("%+v %v", got, err)
	}
}
