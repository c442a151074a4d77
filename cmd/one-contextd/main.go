// Command one-contextd is OpenNebula's in-guest contextualization agent:
// one static binary that systemd starts at boot. It also answers to the
// name onegate (a symlink), as OpenNebula's onegate command for scripts.
package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// command is one subcommand.
type command struct {
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

func commands() map[string]command {
	return map[string]command{
		"run":            {"run the boot job (stages local, network or all)", cmdRun},
		"show":           {"print the parsed context, secrets redacted, and its problems", cmdShow},
		"status":         {"print the last run's steps, durations and outcome", cmdStatus},
		"version":        {"print the version", cmdVersion},
		"net":            {"network tools: net render shows the files each network manager would get", cmdNet},
		"onegate":        {"OpenNebula's onegate command (also when invoked as onegate)", cmdOnegate},
		"onegate-server": {"run a fake OneGate server (for the demo and tests)", cmdOnegateServer},
		"reconfigure":    {"run every stage again, serialised with other runs (udev, the reconfigure unit)", cmdReconfigure},
		"roles":          {"roles reconfigure: re-run role scripts when the service's membership changed (timer)", cmdRoles},
		"report":         {"report --retry: deliver a queued READY/failure report to OneGate (unit/timer)", cmdReport},
		"metrics":        {"push CPU, memory, disk and custom metrics to OneGate for OneFlow elasticity (timer)", cmdMetrics},
		"clean":          {"remove what earlier boots left, so a baked image boots as new", cmdClean},
	}
}

func main() {
	// Log timestamps to the microsecond: a boot's steps take milliseconds.
	// (zerolog keeps this format in a package variable; this is the one
	// place that sets it.)
	zerolog.TimeFieldFormat = time.RFC3339Nano
	os.Exit(profiled(func() int { return dispatch(os.Args, os.Stdout, os.Stderr) }))
}

// profiled runs f under a CPU profile written to $ONE_CONTEXTD_CPUPROFILE
// when that is set: the boot cost is measured, not guessed.
func profiled(f func() int) int {
	p := os.Getenv("ONE_CONTEXTD_CPUPROFILE")
	if p == "" {
		return f()
	}
	out, err := os.Create(p)
	if err != nil {
		fmt.Fprintf(os.Stderr, "one-contextd: cpu profile: %v\n", err)
		return f()
	}
	defer out.Close()
	if err := pprof.StartCPUProfile(out); err != nil {
		fmt.Fprintf(os.Stderr, "one-contextd: cpu profile: %v\n", err)
		return f()
	}
	defer pprof.StopCPUProfile()
	return f()
}

func dispatch(argv []string, stdout, stderr io.Writer) int {
	if len(argv) == 0 {
		argv = []string{"one-contextd"}
	}
	if h, ok := multiCall[filepath.Base(argv[0])]; ok {
		return h(argv[1:], stdout, stderr)
	}
	if len(argv) < 2 {
		usage(stderr)
		return 2
	}
	name, args := argv[1], argv[2:]
	switch name {
	case "-h", "--help", "help":
		usage(stdout)
		return 0
	case "-v", "--version":
		return cmdVersion(nil, stdout, stderr)
	}
	c, ok := commands()[name]
	if !ok {
		fmt.Fprintf(stderr, "one-contextd: unknown command %q (see one-contextd --help)\n", name)
		return 2
	}
	return c.run(args, stdout, stderr)
}

// multiCall maps the names the binary may be invoked under to their mains.
var multiCall = map[string]func(args []string, stdout, stderr io.Writer) int{}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: one-contextd COMMAND [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	cmds := commands()
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-15s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run one-contextd COMMAND --help for the flags of a command.")
}

func cmdVersion(_ []string, stdout, _ io.Writer) int {
	fmt.Fprintf(stdout, "one-contextd %s\n", version)
	return 0
}

// firstLine keeps flag errors to one line.
func firstLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

func usageError(stderr io.Writer, cmd, msg string) int {
	fmt.Fprintf(stderr, "one-contextd %s: %s\n", cmd, msg)
	return 2
}
