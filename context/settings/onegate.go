package settings

import (
	"encoding/base64"
	"net/netip"
	"net/url"
	"regexp"
	"strings"

	"one-contextd/secret"
)

// OneGate is how the VM reaches OneGate and what it reports there.
type OneGate struct {
	Endpoint *url.URL     // ONEGATE_ENDPOINT; nil when unset or unusable
	VMID     string       // VMID
	Token    secret.Value // ONEGATE_TOKEN, else token.txt from the medium
	// TokenFrom says where the token came from ("ONEGATE_TOKEN", "token.txt", "").
	TokenFrom string

	// ReportReady is REPORT_READY, which one-context compares with exactly "YES".
	ReportReady bool
	// ReadyScriptPath: an executable that must exit 0 before READY is sent.
	ReadyScriptPath string
	// ReadyScript: shell code (base64-decoded when the whole value is strict
	// base64) that must succeed before READY is sent.
	ReadyScript string
}

// Usable reports whether the VM can talk to OneGate at all.
func (g OneGate) Usable() bool { return g.Endpoint != nil && g.VMID != "" && !g.Token.IsZero() }

// LinkLocalAddr is the endpoint's host when it is an IPv4 address in
// 169.254.0.0/16, which needs an on-link host route on the first NIC.
func (g OneGate) LinkLocalAddr() (netip.Addr, bool) {
	if g.Endpoint == nil {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(g.Endpoint.Hostname())
	if err != nil || !a.Is4() || !netip.MustParsePrefix("169.254.0.0/16").Contains(a) {
		return netip.Addr{}, false
	}
	return a, true
}

var (
	vmidRe      = regexp.MustCompile(`^[0-9]+$`)
	strictB64Re = regexp.MustCompile(`^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$`)
)

func (b *builder) onegate(tokenFile []byte) OneGate {
	var g OneGate
	if e := b.trimmed("ONEGATE_ENDPOINT"); e != "" {
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			b.problem("ONEGATE_ENDPOINT", "%q is not an http(s) URL; OneGate is not used", e)
		} else {
			g.Endpoint = u
		}
	}
	if id := b.trimmed("VMID"); id != "" {
		if !vmidRe.MatchString(id) {
			b.problem("VMID", "%q is not a VM id (a number)", id)
		} else {
			g.VMID = id
		}
	}
	if t := strings.TrimSpace(b.get("ONEGATE_TOKEN")); t != "" {
		g.Token, g.TokenFrom = secret.New(t), "ONEGATE_TOKEN"
	} else if t := strings.TrimSpace(string(tokenFile)); t != "" {
		g.Token, g.TokenFrom = secret.New(t), "token.txt"
	}
	g.ReportReady = b.trimmed("REPORT_READY") == "YES"
	if v := b.trimmed("REPORT_READY"); v != "" && v != "YES" && strings.EqualFold(v, "YES") {
		b.problem("REPORT_READY", "%q: one-context only reports for exactly YES; not reporting", v)
	}
	g.ReadyScriptPath = b.trimmed("READY_SCRIPT_PATH")
	if s := b.get("READY_SCRIPT"); strings.TrimSpace(s) != "" {
		if strictB64Re.MatchString(s) {
			if dec, err := base64.StdEncoding.DecodeString(s); err == nil {
				s = string(dec)
			}
		}
		g.ReadyScript = s
	}
	if g.ReportReady && !g.Usable() {
		b.problem("REPORT_READY", "YES, but ONEGATE_ENDPOINT, VMID or the token is missing; READY cannot be reported")
	}
	return g
}
