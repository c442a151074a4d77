package cleanup

import (
	"flag"
	"fmt"
	"io"

	"one-contextd/fsroot"
)

// Main is `one-contextd clean [--root DIR] [--machine-id] [--created-files]`.
// It prints every path it removed or reset and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("clean", flag.ContinueOnError)
	fl.SetOutput(stderr)
	rootDir := fl.String("root", "/", "root directory of the system to clean (an image being baked)")
	var opts Options
	fl.BoolVar(&opts.MachineID, "machine-id", false, `reset /etc/machine-id to "uninitialized" so the next boot gets a new one`)
	fl.BoolVar(&opts.CreatedFiles, "created-files", false, "also remove the files the agent created (listed in "+fsroot.ManifestPath+")")
	fl.Usage = func() {
		fmt.Fprintf(stderr, "usage: one-contextd clean [--root DIR] [--machine-id] [--created-files]\n\n"+
			"Remove what earlier boots left (%s, %s, %s) so an image boots as new.\n\n", StateDir, LogFile, RuntimeDir)
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fl.NArg() != 0 {
		fmt.Fprintf(stderr, "clean: unexpected argument %q\n", fl.Arg(0))
		fl.Usage()
		return 2
	}
	root, err := fsroot.New(*rootDir)
	if err != nil {
		fmt.Fprintf(stderr, "clean: %v\n", err)
		return 1
	}
	done, err := Clean(root, opts)
	for _, p := range done {
		verb := "removed"
		if p == MachineIDFile {
			verb = "reset"
		}
		fmt.Fprintf(stdout, "%s %s\n", verb, p)
	}
	if err != nil {
		fmt.Fprintf(stderr, "clean: %v\n", err)
		return 1
	}
	return 0
}
