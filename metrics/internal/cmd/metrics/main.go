// Command metrics runs `one-contextd metrics` on its own, to measure its
// CPU time and memory with /usr/bin/time -v (see the package's tests).
package main

import (
	"os"

	"one-contextd/metrics"
)

func main() { os.Exit(metrics.Main(os.Args[1:], os.Stdout, os.Stderr)) }
