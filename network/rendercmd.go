package network

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"one-contextd/context/medium"
	"one-contextd/context/settings"
	"one-contextd/context/shvars"
	"one-contextd/fsroot"
	"one-contextd/network/model"
	"one-contextd/network/render"
)

// maxContextSize bounds what is read of a context.sh.
const maxContextSize = 4 << 20

// RenderMain is `one-contextd net render --context SRC --type T [--root DIR]`:
// it renders the context's network for one manager, offline (device names
// come from the context: eth0, eth1, ...), and prints the files, or writes
// them under DIR. Exit 0 on success, 1 when the files cannot be made, 2 on
// bad usage.
func RenderMain(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("net render", flag.ContinueOnError)
	fl.SetOutput(io.Discard)
	src := fl.String("context", "", "context source: ISO image, block device, directory or a context.sh file")
	typ := fl.String("type", "", "netplan, nm, networkd or interfaces")
	root := fl.String("root", "", "write the files under this directory instead of printing them")
	if err := fl.Parse(args); err != nil {
		fmt.Fprintf(stderr, "net render: %v (usage: net render --context SRC --type netplan|nm|networkd|interfaces [--root DIR])\n", err)
		return 2
	}
	if fl.NArg() > 0 {
		fmt.Fprintf(stderr, "net render: unexpected argument %q\n", fl.Arg(0))
		return 2
	}
	if *src == "" {
		fmt.Fprintln(stderr, "net render: --context is required")
		return 2
	}
	t, ok := ParseType(*typ)
	if !ok || t == render.None {
		fmt.Fprintf(stderr, "net render: --type %q: want netplan, nm, networkd or interfaces\n", *typ)
		return 2
	}
	ctx, err := LoadContext(*src)
	if err != nil {
		fmt.Fprintf(stderr, "net render: %v\n", err)
		return 1
	}
	for _, p := range ctx.Problems {
		fmt.Fprintf(stderr, "problem: %s\n", p)
	}
	m, problems := model.Plan(ctx.Network, onegateAddr(ctx.OneGate), nil)
	for _, p := range problems {
		fmt.Fprintf(stderr, "problem: %s\n", p)
	}
	var r *fsroot.Root
	if *root != "" {
		if r, err = fsroot.New(*root); err != nil {
			fmt.Fprintf(stderr, "net render: %v\n", err)
			return 1
		}
	}
	files, problems, err := render.Render(t, m, render.Options{NetplanRenderer: netplanBackend(ctx.Network, r)})
	if err != nil {
		fmt.Fprintf(stderr, "net render: %v\n", err)
		return 1
	}
	for _, p := range problems {
		fmt.Fprintf(stderr, "problem: %s\n", p)
	}
	if t == render.Interfaces {
		fmt.Fprintln(stderr, "note: ifupdown names interfaces; the names are the context's (eth0, eth1, ...)")
	}
	if r == nil {
		for i, f := range files {
			if i > 0 {
				fmt.Fprintln(stdout)
			}
			fmt.Fprintf(stdout, "# ==> %s (mode %04o) <==\n", f.Path, f.Mode.Perm())
			_, _ = stdout.Write(f.Data)
		}
		return 0
	}
	for _, f := range files {
		changed, err := r.WriteFile(f.Path, f.Data, fsroot.WriteOptions{Mode: f.Mode, ForceMode: true, UID: -1, GID: -1})
		if err != nil {
			fmt.Fprintf(stderr, "net render: %v\n", err)
			return 1
		}
		state := "unchanged"
		if changed {
			state = "written"
		}
		fmt.Fprintf(stdout, "%s %s\n", state, r.HostPath(f.Path))
	}
	if err := r.Flush(); err != nil {
		fmt.Fprintf(stderr, "net render: %v\n", err)
		return 1
	}
	return 0
}

// ParseType reads a NETCFG_TYPE-style name with one-context's aliases.
func ParseType(s string) (render.Type, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "netplan":
		return render.Netplan, true
	case "nm", "networkmanager":
		return render.NM, true
	case "networkd", "systemd-networkd", "systemd-network", "systemd":
		return render.Networkd, true
	case "interfaces", "debian":
		return render.Interfaces, true
	case "none":
		return render.None, true
	}
	return "", false
}

// LoadContext reads and types a context from src: an ISO image, a block
// device or a directory (through package medium), or a plain *.sh file.
func LoadContext(src string) (*settings.Context, error) {
	fi, err := os.Stat(src)
	if err != nil {
		return nil, fmt.Errorf("context %s: %w", src, err)
	}
	var data, token []byte
	var files []string
	if fi.Mode().IsRegular() && strings.HasSuffix(src, ".sh") {
		if fi.Size() > maxContextSize {
			return nil, fmt.Errorf("context %s: %d bytes, more than %d", src, fi.Size(), maxContextSize)
		}
		if data, err = os.ReadFile(src); err != nil {
			return nil, fmt.Errorf("context: %w", err)
		}
	} else {
		med, err := medium.Open(src)
		if err != nil {
			return nil, fmt.Errorf("context: %w", err)
		}
		defer med.Close()
		if data, err = med.ReadFile("context.sh", maxContextSize); err != nil {
			return nil, fmt.Errorf("context %s: %w", src, err)
		}
		if t, err := med.ReadFile("token.txt", 64<<10); err == nil {
			token = t
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("context %s: %w", src, err)
		}
		files = med.Files()
	}
	vars, perrs := shvars.Parse(filepath.Base(src), data)
	ctx := settings.Build(vars, settings.Inputs{File: "context.sh", TokenFile: token, MediumFiles: files})
	for _, e := range perrs {
		ctx.Problems = append(ctx.Problems, settings.Problem{File: e.File, Line: e.Line, Var: e.Name, Msg: e.Msg})
	}
	sort.SliceStable(ctx.Problems, func(i, j int) bool { return ctx.Problems[i].Line < ctx.Problems[j].Line })
	return ctx, nil
}
