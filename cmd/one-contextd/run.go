package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/rs/zerolog"

	"one-contextd/agent"
	"one-contextd/context/medium"
	"one-contextd/fsroot"
	"one-contextd/logging"
	"one-contextd/secret"
)

func cmdRun(args []string, stdout, stderr io.Writer) int {
	return runStage("run", "", args, stdout, stderr)
}

// runStage is run, reconfigure and roles reconfigure: fixedStage, when
// set, replaces the --stage flag.
func runStage(name, fixedStage string, args []string, stdout, stderr io.Writer) int {
	fs := newFlags(name)
	root := fs.String("root", "/", "root of the system to configure")
	src := fs.String("context", "", "context source: ISO image, block device or directory (default: find the CONTEXT device)")
	stage := new(string)
	if fixedStage == "" {
		fs.StringVar(stage, "stage", agent.StageAll, "stage to run: local, network or all")
	} else {
		*stage = fixedStage
	}
	netcfg := fs.String("netcfg", "", "network configuration type, overriding NETCFG_TYPE (netplan, networkd, nm, interfaces, none)")
	wait := fs.Duration("wait", 30*time.Second, "how long to wait for the context device to appear")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	journalFlag := fs.Bool("journal", false, "also log to the journal when --root is not / (it always does with --root /)")
	if code, ok := parseFlags(fs, args, "[--root DIR] [--context SRC] [--stage local|network|all] [--netcfg TYPE]", stdout, stderr); !ok {
		return code
	}
	switch *stage {
	case agent.StageLocal, agent.StageNetwork, agent.StageAll, agent.StageRoles:
	default:
		fmt.Fprintf(stderr, "one-contextd %s: --stage %q: want local, network or all\n", name, *stage)
		return 2
	}
	lvl, err := zerolog.ParseLevel(*level)
	if err != nil || lvl == zerolog.NoLevel {
		fmt.Fprintf(stderr, "one-contextd %s: --log-level %q: want debug, info, warn or error\n", name, *level)
		return 2
	}
	r, err := fsroot.New(*root)
	if err != nil {
		fmt.Fprintf(stderr, "one-contextd %s: %v\n", name, err)
		return 2
	}
	scrub := &secret.Scrubber{}
	log, _ := logging.New(logging.Options{
		Root: r, Journal: r.IsReal() || *journalFlag, Console: consoleFor(stderr), Level: lvl, Scrubber: scrub,
	})
	defer log.Close()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	_, _ = daemon.SdNotify(false, "STATUS=running the "+*stage+" stage")
	rec := agent.Run(ctx, agent.Options{
		Root: r, Source: *src, Stage: *stage, Netcfg: *netcfg, Log: log.Logger, Scrubber: scrub,
		Version: version, Find: medium.FindOptions{Timeout: *wait},
		Notify: func(state string) { _, _ = daemon.SdNotify(false, state) },
	})
	status := fmt.Sprintf("STATUS=%s stage: context %s, %d changes, %d failed steps",
		*stage, rec.Context, rec.Changes(), len(rec.Failed()))
	_, _ = daemon.SdNotify(false, daemon.SdNotifyReady+"\n"+status)
	if !rec.OK() {
		return 1
	}
	return 0
}

// consoleFor returns where human-readable log lines go: stderr when run by
// hand, nothing under systemd (which already sends stderr to the journal,
// where the structured entries go anyway).
func consoleFor(stderr io.Writer) io.Writer {
	if os.Getenv("INVOCATION_ID") != "" || os.Getenv("JOURNAL_STREAM") != "" {
		return nil
	}
	return stderr
}
