package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"one-contextd/engine"
	"one-contextd/fsroot"
	"one-contextd/state"
)

func cmdStatus(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("status")
	root := fs.String("root", "/", "root of the configured system")
	asJSON := fs.Bool("json", false, "print the run record as JSON")
	if code, ok := parseFlags(fs, args, "[--root DIR] [--json]", stdout, stderr); !ok {
		return code
	}
	r, err := fsroot.New(*root)
	if err != nil {
		fmt.Fprintf(stderr, "one-contextd status: %v\n", err)
		return 2
	}
	rec, err := state.LoadRecord(r)
	if err != nil {
		fmt.Fprintf(stderr, "one-contextd status: %v\n", err)
		return 1
	}
	if rec == nil {
		fmt.Fprintf(stderr, "one-contextd status: no run recorded under %s\n", r.HostPath(state.RecordFile))
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rec)
	} else {
		printStatus(stdout, rec)
	}
	if !rec.OK() {
		return 1
	}
	return 0
}

func printStatus(w io.Writer, rec *engine.Record) {
	fmt.Fprintf(w, "one-contextd %s, %s stage, started %s, took %s\n", rec.Version, rec.Stage,
		rec.Started.Format(time.RFC3339), rec.Finished.Sub(rec.Started).Round(time.Millisecond))
	fmt.Fprintf(w, "context: %s %s", orDash(rec.Context), rec.ContextDigest)
	if rec.VMID != "" {
		fmt.Fprintf(w, "  vm %s", rec.VMID)
	}
	fmt.Fprintln(w)
	if rec.Report != "" {
		fmt.Fprintf(w, "report: %s\n", rec.Report)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tSTATUS\tTIME\tCPU\tCHANGES\tDETAIL")
	for _, s := range rec.Steps {
		detail := s.Error
		if detail == "" && len(s.Problems) > 0 {
			detail = fmt.Sprintf("%d problems: %s", len(s.Problems), s.Problems[0])
		}
		if detail == "" && len(s.Notes) > 0 {
			detail = s.Notes[len(s.Notes)-1]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", s.Name, s.Status, engine.FormatMS(s.DurationMS), engine.FormatMS(s.CPUMS), len(s.Changes), oneLine(detail, 100))
	}
	_ = tw.Flush()
	verdict := "ok"
	if !rec.OK() {
		verdict = "FAILED"
	}
	fmt.Fprintf(w, "\n%s: %d changes, %d failed steps\n", verdict, rec.Changes(), len(rec.Failed()))
	stages := make([]string, 0, len(rec.Cost))
	for st := range rec.Cost {
		stages = append(stages, st)
	}
	sort.Strings(stages)
	for _, st := range stages {
		c := rec.Cost[st]
		fmt.Fprintf(w, "cost of the %s stage: agent %.0f ms CPU (%.0f ms in the kernel), %.1f MiB peak; tools %.0f ms CPU, %.1f MiB peak\n",
			st, c.AgentCPUMS, c.AgentSysMS, float64(c.AgentMaxRSS)/1024, c.ToolsCPUMS, float64(c.ToolsMaxRSS)/1024)
		if c.StartCPUMS > 0 {
			fmt.Fprintf(w, "  before its first step: %.0f ms of the agent's CPU (%.0f ms to start: exec, Go runtime, logging)\n", c.StartCPUMS, c.EntryCPUMS)
		}
		if c.Unit != "" {
			fmt.Fprintf(w, "  unit %s (agent and tools, as systemd counts them): %.0f ms CPU, %.1f MiB peak\n",
				c.Unit, c.UnitCPUMS, float64(c.UnitPeakKiB)/1024)
		}
	}
}

func oneLine(s string, max int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len([]rune(s)) > max {
		return string([]rune(s)[:max-1]) + "…"
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
