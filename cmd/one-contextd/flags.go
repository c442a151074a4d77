package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// newFlags makes a flag set whose errors the caller prints as one line.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parseFlags parses args; it returns an exit code and false when the
// command should stop (help asked: 0, bad flags: 2).
func parseFlags(fs *flag.FlagSet, args []string, synopsis string, stdout, stderr io.Writer) (int, bool) {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(stdout, "usage: one-contextd %s %s\n\nflags:\n", fs.Name(), synopsis)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return 0, false
	}
	if err != nil {
		fmt.Fprintf(stderr, "one-contextd %s: %s\n", fs.Name(), firstLine(err))
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "one-contextd %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return 2, false
	}
	return 0, true
}
