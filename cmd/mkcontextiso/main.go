// Command mkcontextiso builds an OpenNebula-style context ISO from a
// directory, with go-diskfs (no xorriso needed): volume label CONTEXT and
// Rock Ridge names, as oned's `xorriso -as mkisofs -V CONTEXT -J -R` makes.
// The demo and the tests use it; operators can use it to try a context.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("mkcontextiso", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "context.iso", "output ISO image")
	label := fs.String("label", "CONTEXT", "ISO 9660 volume label")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: mkcontextiso [-o OUT] [-label CONTEXT] DIR")
		return 2
	}
	if err := build(fs.Arg(0), *out, *label); err != nil {
		fmt.Fprintf(stderr, "mkcontextiso: %v\n", err)
		return 1
	}
	return 0
}

func build(src, out, label string) error {
	if _, err := os.Stat(filepath.Join(src, "context.sh")); err != nil {
		return fmt.Errorf("%s: no context.sh: %w", src, err)
	}
	// go-diskfs builds the image from a workspace it removes afterwards, so
	// it gets a copy.
	tmp, err := os.MkdirTemp("", "mkcontextiso-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	work := filepath.Join(tmp, "workspace")
	if err := os.CopyFS(work, os.DirFS(src)); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	iso, err := iso9660.Create(file.New(f, false), 0, 0, 2048, work)
	if err != nil {
		return fmt.Errorf("create %s: %w", out, err)
	}
	if err := iso.Finalize(iso9660.FinalizeOptions{RockRidge: true, VolumeIdentifier: label}); err != nil {
		return fmt.Errorf("finalize %s: %w", out, err)
	}
	return f.Close()
}
