package resolv

import (
	"os"
	"path/filepath"
	"testing"

	"one-contextd/runner"
)

// The hostname step puts the domain of the name it chose (DNS_HOSTNAME's,
// EC2_HOSTNAME's) on the domain line of the agent's resolv.conf, where the
// network step of the next boot, given CurrentDomain, writes it again: the
// file does not change back and forth between the two.
func TestSetDomainOnTheAgentsResolvConf(t *testing.T) {
	r := tempRoot(t)
	apply(t, r, &runner.Fake{}, false, withDNS) // the local stage: no domain known yet
	res, err := SetDomain(r, "example.org")
	if err != nil || len(res.Changes) != 1 {
		t.Fatalf("SetDomain: %+v, %v", res, err)
	}
	cfg := withDNS
	cfg.Domain = "example.org"
	if got, _ := r.ReadFile(ResolvConf); string(got) != string(Plain(cfg, true)) {
		t.Errorf("resolv.conf:\n%s\nwant:\n%s", got, Plain(cfg, true))
	}
	if d, err := CurrentDomain(r); err != nil || d != "example.org" {
		t.Errorf("CurrentDomain = %q, %v", d, err)
	}
	// The next boot: the local stage keeps the line, the network stage
	// finds it in place.
	if res := apply(t, r, &runner.Fake{}, false, cfg); len(res.Changes) != 0 {
		t.Errorf("network step of the next boot: %v", res.Changes)
	}
	if res, err := SetDomain(r, "example.org"); err != nil || len(res.Changes) != 0 {
		t.Errorf("same domain again: %+v, %v", res, err)
	}
	// A name without a domain (ip-192-0-2-10) takes the line away.
	if res, err := SetDomain(r, ""); err != nil || len(res.Changes) != 1 {
		t.Errorf("no domain: %+v, %v", res, err)
	}
	if got, _ := r.ReadFile(ResolvConf); string(got) != string(Plain(withDNS, true)) {
		t.Errorf("resolv.conf without a domain:\n%s", got)
	}
	if d, _ := CurrentDomain(r); d != "" {
		t.Errorf("CurrentDomain = %q, want none", d)
	}
	if _, err := SetDomain(r, "example.org\nnameserver 203.0.113.1"); err == nil {
		t.Error("a domain with a line break was taken")
	}
}

// A resolv.conf the agent did not write (no nameservers in the context,
// or another owner) is left alone, as the network step leaves it.
func TestSetDomainLeavesOtherResolvConfsAlone(t *testing.T) {
	r := tempRoot(t)
	if res, err := SetDomain(r, "example.org"); err != nil || len(res.Changes) != 0 || r.Exists(ResolvConf) {
		t.Errorf("no resolv.conf: %+v, %v", res, err)
	}
	put(t, r, ResolvConf, "nameserver 192.0.2.1\ndomain site.example\n")
	if res, err := SetDomain(r, "example.org"); err != nil || len(res.Changes) != 0 || len(res.Notes) != 1 {
		t.Errorf("plain file: %+v, %v", res, err)
	}
	if got, _ := r.ReadFile(ResolvConf); string(got) != "nameserver 192.0.2.1\ndomain site.example\n" {
		t.Errorf("plain file changed: %q", got)
	}
	if d, _ := CurrentDomain(r); d != "" {
		t.Errorf("CurrentDomain of a file not the agent's = %q", d)
	}

	r = tempRoot(t)
	put(t, r, "/run/systemd/resolve/stub-resolv.conf", header+"nameserver 127.0.0.53\n")
	link(t, r, ResolvConf, "../run/systemd/resolve/stub-resolv.conf")
	if res, err := SetDomain(r, "example.org"); err != nil || len(res.Changes) != 0 {
		t.Errorf("symlink: %+v, %v", res, err)
	}
	if fi, err := os.Lstat(filepath.Join(r.Dir(), ResolvConf)); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the symlink was replaced: %v", err)
	}
}
