// Command fakegate serves a fake OneGate for measuring a metrics push
// against it (same flags as `one-contextd onegate-server`).
package main

import (
	"os"

	"one-contextd/onegate/fakegate"
)

func main() { os.Exit(fakegate.Main(os.Args[1:], os.Stdout, os.Stderr)) }
