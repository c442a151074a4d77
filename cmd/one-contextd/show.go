package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"one-contextd/context/medium"
	"one-contextd/context/settings"
	"one-contextd/context/shvars"
	"one-contextd/secret"
)

func cmdShow(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("show")
	src := fs.String("context", "", "context source: ISO image, block device, directory or a context.sh file (default: find the CONTEXT device)")
	asJSON := fs.Bool("json", false, "print one JSON object of variable to value")
	wait := fs.Duration("wait", 5*time.Second, "how long to wait for the context device to appear")
	if code, ok := parseFlags(fs, args, "[--context SRC] [--json]", stdout, stderr); !ok {
		return code
	}
	name, raw, files, token, err := loadContext(*src, *wait)
	if err != nil {
		fmt.Fprintf(stderr, "one-contextd show: %v\n", err)
		return 1
	}
	vars, perrs := shvars.Parse(name, raw)
	c := settings.Build(vars, settings.Inputs{File: name, TokenFile: token, MediumFiles: files})

	if *asJSON {
		obj := map[string]any{}
		for _, v := range vars.List() {
			obj[v.Name] = shown(v)
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(obj); err != nil {
			fmt.Fprintf(stderr, "one-contextd show: %v\n", err)
			return 1
		}
	} else {
		for _, v := range vars.List() {
			if secret.IsName(v.Name) {
				fmt.Fprintf(stdout, "%s=%s\n", v.Name, secret.Redacted)
				continue
			}
			fmt.Fprintf(stdout, "%s=%s\n", v.Name, shvars.Quote(v.Value))
		}
	}
	for _, e := range perrs {
		fmt.Fprintln(stderr, e.Error())
	}
	for _, p := range c.Problems {
		fmt.Fprintln(stderr, p.String())
	}
	if len(perrs) > 0 || len(c.Problems) > 0 {
		return 2
	}
	return 0
}

// shown is a variable's value as show prints it: secrets redacted.
func shown(v shvars.Var) any {
	if secret.IsName(v.Name) {
		return secret.New(v.Value)
	}
	return v.Value
}

// loadContext reads context.sh (and token.txt and the file list) from a
// source, which may also be a plain context.sh file.
func loadContext(src string, wait time.Duration) (name string, raw []byte, files []string, token []byte, err error) {
	if strings.HasSuffix(src, ".sh") {
		// Problems name the file as context.sh, whatever it is called here,
		// so every source reads the same way.
		raw, err = readLimited(src, shvars.MaxFileSize)
		return medium.ContextFile, raw, nil, nil, err
	}
	var m *medium.Medium
	if src == "" {
		ctx, cancel := context.WithTimeout(context.Background(), wait+time.Second)
		defer cancel()
		m, err = medium.Find(ctx, medium.FindOptions{Timeout: wait})
	} else {
		m, err = medium.Open(src)
	}
	if err != nil {
		return "", nil, nil, nil, err
	}
	defer m.Close()
	raw, err = m.ReadFile(medium.ContextFile, shvars.MaxFileSize)
	if err != nil {
		return "", nil, nil, nil, err
	}
	if m.Has("token.txt") {
		token, _ = m.ReadFile("token.txt", 64<<10)
	}
	return medium.ContextFile, raw, m.Files(), token, nil
}

// readLimited reads a file, refusing one larger than limit bytes.
func readLimited(p string, limit int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s: file is %d bytes, larger than the %d-byte limit", p, fi.Size(), limit)
	}
	return io.ReadAll(io.LimitReader(f, limit+1))
}
