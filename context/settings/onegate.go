package settings

import (
	"encoding/base64"
	"math"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"one-contextd/internal/lazyregexp"
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
	// ReadyRetryCount is RETRY_COUNT: how many times net-99-report-ready
	// runs the readiness check (and the report) before it gives up.
	// Build sets DefaultReadyRetryCount when unset or bad; 0 means that
	// default too.
	ReadyRetryCount int
	// ReadyRetryWait is RETRY_WAIT_PERIOD, the pause after a failed try.
	// Build sets DefaultReadyRetryWait when unset or bad; 0 is no pause.
	ReadyRetryWait time.Duration
}

// Defaults of net-99-report-ready (RETRY_COUNT=3, RETRY_WAIT_PERIOD=10).
// Upstream reads both from the environment, where every context variable
// is exported, so context.sh can set them.
const (
	DefaultReadyRetryCount = 3
	DefaultReadyRetryWait  = 10 * time.Second
)

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
	vmidRe      = lazyregexp.New(`^[0-9]+$`)
	strictB64Re = lazyregexp.New(`^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$`)
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
	g.ReadyRetryCount, g.ReadyRetryWait = b.readyRetry()
	if g.ReportReady && !g.Usable() {
		b.problem("REPORT_READY", "YES, but ONEGATE_ENDPOINT, VMID or the token is missing; READY cannot be reported")
	}
	return g
}

// maxRetryWait bounds RETRY_WAIT_PERIOD so the conversion cannot
// overflow; a day is far beyond any sensible pause.
const maxRetryWait = 24 * time.Hour

// readyRetry reads RETRY_COUNT and RETRY_WAIT_PERIOD. A bad value is a
// problem and the default is used (upstream's `[ "$RETRY_COUNT" -gt 0 ]`
// would not try at all, and `sleep` would fail without pausing).
func (b *builder) readyRetry() (int, time.Duration) {
	count, wait := DefaultReadyRetryCount, DefaultReadyRetryWait
	if v := b.trimmed("RETRY_COUNT"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.problem("RETRY_COUNT", "%q is not a number of tries (1 or more); using %d", v, DefaultReadyRetryCount)
		} else {
			count = n
		}
	}
	if v := b.trimmed("RETRY_WAIT_PERIOD"); v != "" {
		d, ok := sleepDuration(v)
		if !ok {
			b.problem("RETRY_WAIT_PERIOD", "%q is not a pause for sleep(1) (seconds, or a number with s, m, h or d) of at most %s; using %s",
				v, maxRetryWait, DefaultReadyRetryWait)
		} else {
			wait = d
		}
	}
	return count, wait
}

// sleepDuration parses one argument of GNU sleep: a non-negative decimal
// number with an optional unit suffix s, m, h or d (seconds by default).
func sleepDuration(v string) (time.Duration, bool) {
	unit := time.Second
	switch v[len(v)-1] {
	case 's':
		v = v[:len(v)-1]
	case 'm':
		unit, v = time.Minute, v[:len(v)-1]
	case 'h':
		unit, v = time.Hour, v[:len(v)-1]
	case 'd':
		unit, v = 24*time.Hour, v[:len(v)-1]
	}
	if v == "" || strings.ContainsAny(v, "+-eEpPxX_") { // plain decimals only: no sign, exponent, hex or Inf
		return 0, false
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
		return 0, false
	}
	d := f * float64(unit)
	if d > float64(maxRetryWait) {
		return 0, false
	}
	return time.Duration(d), true
}
