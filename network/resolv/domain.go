package resolv

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"one-contextd/fsroot"
)

// ours reads resolv.conf when it is a regular file the agent wrote (it
// starts with the agent's header); nil otherwise.
func ours(r *fsroot.Root) ([]byte, error) {
	fi, err := r.Lstat(ResolvConf)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ResolvConf, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, nil
	}
	data, err := r.ReadFile(ResolvConf)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ResolvConf, err)
	}
	if !bytes.HasPrefix(data, []byte(header)) {
		return nil, nil
	}
	return data, nil
}

// CurrentDomain is the "domain" line of a resolv.conf the agent wrote; ""
// when it has none or the file is not the agent's.
func CurrentDomain(r *fsroot.Root) (string, error) {
	data, err := ours(r)
	if err != nil {
		return "", err
	}
	domain := ""
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "domain" {
			domain = f[1] // the resolver takes the last one
		}
	}
	return domain, nil
}

// SetDomain puts domain on the "domain" line of a resolv.conf the agent
// wrote (and removes the line when domain is ""), as one-context's
// net-15-hostname does once it has picked the hostname: the line goes
// last, where Plain puts it, so the network step of the next boot writes
// the same file. A resolv.conf the agent did not write has an owner of
// its own and is left alone, as the network step leaves it.
func SetDomain(r *fsroot.Root, domain string) (Result, error) {
	res := Result{Owner: File}
	if domain != "" && (strings.ContainsAny(domain, " \t\r\n#;") || strings.HasPrefix(domain, ".")) {
		return res, fmt.Errorf("dns: %q is not a domain name", domain)
	}
	data, err := ours(r)
	if err != nil {
		return res, fmt.Errorf("dns: %w", err)
	}
	if data == nil {
		res.Owner, res.Trace = Detect(r)
		if domain != "" {
			res.Notes = append(res.Notes, "dns: resolv.conf is not the agent's ("+res.Trace+"); no domain line written")
		}
		return res, nil
	}
	res.Trace = "resolv.conf=ours"
	var b strings.Builder
	for _, l := range strings.SplitAfter(string(data), "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == "domain" {
			continue
		}
		b.WriteString(l)
	}
	if domain != "" {
		if b.Len() > 0 && !strings.HasSuffix(b.String(), "\n") {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "domain %s\n", domain)
	}
	changed, err := r.WriteFile(ResolvConf, []byte(b.String()), fsroot.WriteOptions{Mode: 0o644, UID: -1, GID: -1})
	if err != nil {
		return res, fmt.Errorf("dns: %w", err)
	}
	if changed {
		if domain == "" {
			res.Changes = append(res.Changes, "dns: "+ResolvConf+": no domain line")
		} else {
			res.Changes = append(res.Changes, "dns: "+ResolvConf+": domain "+domain)
		}
	}
	return res, nil
}
