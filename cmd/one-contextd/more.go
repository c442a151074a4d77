package main

import (
	"io"

	"one-contextd/agent"
	"one-contextd/cleanup"
	"one-contextd/metrics"
	"one-contextd/report"
)

// cmdReconfigure is what udev and the reconfigure unit start: the whole
// boot job again, serialised with any other run by the lock.
func cmdReconfigure(args []string, stdout, stderr io.Writer) int {
	return runStage("reconfigure", agent.StageAll, args, stdout, stderr)
}

// cmdRoles re-runs the role scripts that asked for it when the service's
// membership changed; the metrics/reconfigure timer starts it.
func cmdRoles(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "reconfigure" {
		return usageError(stderr, "roles", "usage: one-contextd roles reconfigure [--root DIR] [--context SRC]")
	}
	return runStage("roles reconfigure", agent.StageRoles, args[1:], stdout, stderr)
}

func cmdReport(args []string, stdout, stderr io.Writer) int {
	return report.RetryMain(args, stdout, stderr)
}

func cmdMetrics(args []string, stdout, stderr io.Writer) int {
	return metrics.Main(args, stdout, stderr)
}

func cmdClean(args []string, stdout, stderr io.Writer) int {
	return cleanup.Main(args, stdout, stderr)
}
