package main

import (
	"fmt"
	"io"
	"os"

	"one-contextd/network"
	"one-contextd/onegate/cli"
	"one-contextd/onegate/fakegate"
)

func init() {
	multiCall["onegate"] = cmdOnegate
}

// cmdOnegate is OpenNebula's onegate command for scripts, reading the
// endpoint, token and VM id as one-context's wrapper does.
func cmdOnegate(args []string, stdout, stderr io.Writer) int {
	return cli.Main(args, os.Getenv, stdout, stderr)
}

// cmdOnegateServer runs the fake OneGate the demo and the VM tests use.
func cmdOnegateServer(args []string, stdout, stderr io.Writer) int {
	return fakegate.Main(args, stdout, stderr)
}

// cmdNet holds the network subcommands.
func cmdNet(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "--help" || args[0] == "-h" {
		fmt.Fprintln(stdout, "usage: one-contextd net render --context SRC --type netplan|nm|networkd|interfaces [--root DIR]")
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	switch args[0] {
	case "render":
		return network.RenderMain(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "one-contextd net: unknown subcommand %q (render)\n", args[0])
	return 2
}
