package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestRunRecordsAndKeepsGoingAfterFailure(t *testing.T) {
	var ran []string
	step := func(name string, err error, needs ...string) Step {
		return Step{Name: name, Needs: needs, Run: func(_ context.Context, r *Recorder) error {
			ran = append(ran, name)
			if err == nil {
				r.Change("%s changed something", name)
			}
			return err
		}}
	}
	clock := time.Unix(0, 0)
	e := &Engine{Log: zerolog.Nop(), Clock: func() time.Time { clock = clock.Add(time.Millisecond); return clock },
		Scrub: func(s string) string { return strings.ReplaceAll(s, "s3cret", "<redacted>") }}
	rec := &Record{}
	e.Run(context.Background(), rec, []Step{
		step("a", nil),
		step("b", fmt.Errorf("b: set mtu: %w", errors.New("s3cret went wrong"))),
		step("c", nil, "b"),      // needs the failed one: skipped
		step("d", nil, "a"),      // independent of b: runs
		step("e", Skip("no-op")), // skipped for its own reason
		step("f", nil, "e"),      // an own-reason skip does not block
		step("g", nil, "c"),      // needs a blocked step: blocked too
		{Name: "h", Run: func(context.Context, *Recorder) error { panic("boom") }},
	})
	if got := strings.Join(ran, ","); got != "a,b,d,e,f" {
		t.Errorf("ran %s", got)
	}
	want := map[string]Status{"a": OK, "b": Failed, "c": Skipped, "d": OK, "e": Skipped, "f": OK, "g": Skipped, "h": Failed}
	for _, s := range rec.Steps {
		if s.Status != want[s.Name] {
			t.Errorf("step %s: %s, want %s (%s)", s.Name, s.Status, want[s.Name], s.Error)
		}
		if !s.End.After(s.Start) && s.Status != Skipped {
			t.Errorf("step %s not timed", s.Name)
		}
	}
	b, _ := rec.Step("b")
	if b.Error != "b: set mtu: <redacted> went wrong" {
		t.Errorf("error not wrapped or not scrubbed: %q", b.Error)
	}
	if h, _ := rec.Step("h"); !strings.Contains(h.Error, "panic") {
		t.Errorf("panic not recorded: %q", h.Error)
	}
	if e, _ := rec.Step("e"); e.Error != "no-op" {
		t.Errorf("skip reason %q", e.Error)
	}
	if rec.OK() || len(rec.Failed()) != 2 || rec.Changes() != 3 {
		t.Errorf("OK=%v failed=%d changes=%d", rec.OK(), len(rec.Failed()), rec.Changes())
	}
}

func TestOptionalFailureKeepsRunOK(t *testing.T) {
	e := &Engine{Log: zerolog.Nop()}
	rec := &Record{}
	e.Run(context.Background(), rec, []Step{{Name: "x", Optional: true, Run: func(context.Context, *Recorder) error { return errors.New("no") }}})
	if !rec.OK() || len(rec.Failed()) != 1 {
		t.Errorf("OK=%v failed=%v", rec.OK(), rec.Failed())
	}
}

func TestLaterPartOfRunSeesEarlierSteps(t *testing.T) {
	e := &Engine{Log: zerolog.Nop()}
	rec := &Record{}
	e.Run(context.Background(), rec, []Step{{Name: "medium", Run: func(context.Context, *Recorder) error { return errors.New("no medium") }}})
	ran := false
	e.Run(context.Background(), rec, []Step{{Name: "net", Needs: []string{"medium"}, Run: func(context.Context, *Recorder) error { ran = true; return nil }}})
	if ran {
		t.Error("a step ran although the step it needs failed in an earlier part of the run")
	}
}

func TestEachStepKeepsItsShareOfTheCPU(t *testing.T) {
	var used time.Duration
	e := &Engine{Log: zerolog.Nop(), CPU: func() time.Duration { return used }}
	rec := &Record{}
	e.Run(context.Background(), rec, []Step{
		{Name: "heavy", Run: func(context.Context, *Recorder) error { used += 7500 * time.Microsecond; return nil }},
		{Name: "light", Run: func(context.Context, *Recorder) error { used += 250 * time.Microsecond; return nil }},
	})
	if len(rec.Steps) != 2 || rec.Steps[0].CPUMS != 7.5 || rec.Steps[1].CPUMS != 0.25 {
		t.Errorf("steps' CPU: %+v", rec.Steps)
	}
}
