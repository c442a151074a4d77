// Package onegate is a client for OpenNebula's OneGate API: the HTTP service
// through which a VM reads its own and its service peers' information and
// pushes attributes (READY, metrics) into its USER_TEMPLATE.
//
// The wire contract (routes, bodies, statuses) is the one of
// src/onegate/onegate-server.rb; see shared/reference/onegate.md.
package onegate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"one-contextd/internal/wait"

	"github.com/rs/zerolog"

	"one-contextd/secret"
)

// Header names the server reads.
const (
	HeaderToken = "X-ONEGATE-TOKEN"
	HeaderVMID  = "X-ONEGATE-VMID"
)

// Default timeouts of the HTTP client New builds when Config.HTTP is nil.
// /service?extended makes one oned call per node, so the whole request gets
// far more time than the connect.
const (
	DefaultDialTimeout    = 10 * time.Second
	DefaultRequestTimeout = 60 * time.Second
)

// maxBody bounds what is read from an answer; a service document with
// hundreds of extended nodes stays well below it.
const maxBody = 32 << 20

// Config says where the gate is and who is asking.
type Config struct {
	// Endpoint is ONEGATE_ENDPOINT, a full http(s) URL. A path prefix is
	// kept (the reference CLI drops it; keeping it is a superset).
	Endpoint string
	// Token is the content of token.txt (X-ONEGATE-TOKEN).
	Token secret.Value
	// VMID is the VM's own id (X-ONEGATE-VMID).
	VMID string
	// HTTP is the client to use; nil builds one with bounded timeouts and
	// the proxy variables of the environment (never for link-local or
	// loopback gates). New uses a copy that never follows redirects,
	// whatever the given client's CheckRedirect says.
	HTTP *http.Client
	// Retry is the policy for connection errors and 5xx answers; the zero
	// value means DefaultRetry().
	Retry RetryPolicy
	// Log gets one line per kind of failure in a call, never one per retry.
	Log zerolog.Logger
	// Sleep waits between attempts; nil uses a timer that honours ctx.
	Sleep func(context.Context, time.Duration) error
}

// Client talks to one OneGate server on behalf of one VM.
type Client struct {
	base  *url.URL
	token secret.Value
	vmid  string
	http  *http.Client
	retry RetryPolicy
	log   zerolog.Logger
	sleep func(context.Context, time.Duration) error
}

// New checks cfg and returns a client. It does not contact the server.
func New(cfg Config) (*Client, error) {
	if strings.TrimSpace(cfg.Endpoint) == "" {
		return nil, errors.New("onegate: no endpoint (ONEGATE_ENDPOINT)")
	}
	base, err := url.Parse(strings.TrimSpace(cfg.Endpoint))
	if err != nil {
		return nil, fmt.Errorf("onegate: endpoint: %w", err)
	}
	if base.Scheme != "http" && base.Scheme != "https" {
		return nil, fmt.Errorf("onegate: endpoint %q: scheme must be http or https", base.Redacted())
	}
	if base.Host == "" {
		return nil, fmt.Errorf("onegate: endpoint %q: no host", base.Redacted())
	}
	base.User = nil // the server authenticates by header only
	base.RawQuery, base.Fragment = "", ""
	base.Path = strings.TrimRight(base.Path, "/")
	base.RawPath = ""
	token := secret.New(strings.TrimSpace(cfg.Token.Reveal()))
	if token.IsZero() {
		return nil, errors.New("onegate: no token (token.txt / ONEGATE_TOKEN)")
	}
	vmid := strings.TrimSpace(cfg.VMID)
	if vmid == "" {
		return nil, errors.New("onegate: no VM id (VMID)")
	}
	if _, err := strconv.ParseUint(vmid, 10, 31); err != nil {
		return nil, fmt.Errorf("onegate: VM id %q is not a number", vmid)
	}
	var hc *http.Client
	if cfg.HTTP == nil {
		hc = DefaultHTTPClient()
	} else {
		// A copy: the caller's client (shared by other users) keeps its
		// own policy; the copy shares its transport and connections.
		c := *cfg.HTTP
		c.CheckRedirect = noRedirect
		hc = &c
	}
	sleep := cfg.Sleep
	if sleep == nil {
		sleep = sleepCtx
	}
	return &Client{
		base: base, token: token, vmid: vmid, http: hc,
		retry: cfg.Retry.withDefaults(), log: cfg.Log, sleep: sleep,
	}, nil
}

// VMID is the id the client speaks for.
func (c *Client) VMID() string { return c.vmid }

// DefaultHTTPClient is the client New uses when Config.HTTP is nil. It
// never follows redirects (see noRedirect).
func DefaultHTTPClient() *http.Client {
	return &http.Client{
		Timeout:       DefaultRequestTimeout,
		CheckRedirect: noRedirect,
		Transport: &http.Transport{
			Proxy: func(r *http.Request) (*url.URL, error) {
				return proxyFor(r, http.ProxyFromEnvironment)
			},
			DialContext:           (&net.Dialer{Timeout: DefaultDialTimeout, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   DefaultDialTimeout,
			ResponseHeaderTimeout: DefaultRequestTimeout,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConns:          4,
		},
	}
}

// noRedirect makes a client hand back a 3xx answer instead of following
// it, as upstream's Ruby client (Net::HTTP, CloudClient.http_start) does:
// a followed PUT /vm turns into a GET whose 200 would count as stored, and
// the X-ONEGATE-TOKEN header would go to whatever host the Location names.
// once turns the 3xx into an APIError.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// proxyFor applies fallback (the environment's proxy rule) except for gates
// on link-local or loopback addresses, which no proxy can reach.
func proxyFor(r *http.Request, fallback func(*http.Request) (*url.URL, error)) (*url.URL, error) {
	host := r.URL.Hostname()
	if host == "localhost" {
		return nil, nil
	}
	if ip := net.ParseIP(host); ip != nil && (ip.IsLoopback() || ip.IsLinkLocalUnicast()) {
		return nil, nil
	}
	return fallback(r)
}

func sleepCtx(ctx context.Context, d time.Duration) error { return wait.Sleep(ctx, d) }

// request is one logical call; do turns it into one or more attempts.
type request struct {
	method      string
	route       string // path relative to the endpoint, for URLs and messages
	query       url.Values
	body        []byte
	contentType string
}

func (r request) name() string { return r.method + " " + r.route }

// do runs req with retries and returns the body of a 2xx answer.
func (c *Client) do(ctx context.Context, req request) ([]byte, error) {
	logged := map[string]bool{}
	var last error
	for attempt := 1; ; attempt++ {
		body, kind, err := c.once(ctx, req)
		if err == nil {
			return body, nil
		}
		last = err
		if !logged[kind] {
			logged[kind] = true
			c.log.Warn().Str("request", req.name()).Int("attempt", attempt).Str("failure", kind).Msg(c.redact(err.Error()))
		}
		if !retryable(err) || attempt >= c.retry.MaxAttempts || ctx.Err() != nil {
			return nil, last
		}
		if serr := c.sleep(ctx, c.retry.delay(attempt)); serr != nil {
			return nil, fmt.Errorf("%w (retry abandoned: %v)", last, serr)
		}
	}
}

// once makes a single attempt. kind classifies a failure for logging.
func (c *Client) once(ctx context.Context, req request) (body []byte, kind string, err error) {
	u := *c.base
	u.Path = c.base.Path + req.route
	u.RawQuery = req.query.Encode()
	var rd io.Reader
	if req.body != nil {
		rd = bytes.NewReader(req.body)
	}
	hreq, err := http.NewRequestWithContext(ctx, req.method, u.String(), rd)
	if err != nil {
		return nil, "request", &Error{Method: req.method, Path: req.route, Err: err}
	}
	if req.contentType != "" {
		hreq.Header.Set("Content-Type", req.contentType)
	}
	hreq.Header.Set(HeaderToken, c.token.Reveal())
	hreq.Header.Set(HeaderVMID, c.vmid)
	hreq.Header.Set("User-Agent", "one-contextd")
	resp, err := c.http.Do(hreq)
	if err != nil {
		return nil, transportKind(err), &Error{Method: req.method, Path: req.route, Err: c.scrub(err), transport: true}
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, transportKind(err), &Error{Method: req.method, Path: req.route, Err: fmt.Errorf("read answer: %w", c.scrub(err)), transport: true}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		msg := errorMessage(data)
		if resp.StatusCode >= 300 && resp.StatusCode <= 399 {
			msg = redirectMessage(resp)
		}
		return nil, "status " + strconv.Itoa(resp.StatusCode), &APIError{
			Method: req.method, Path: req.route, Status: resp.StatusCode, Message: c.redact(msg),
		}
	}
	return data, "", nil
}

// scrub drops url.Error's wrapper (it repeats method and URL, which the
// Error already names) and keeps the cause.
func (c *Client) scrub(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if msg := err.Error(); strings.Contains(msg, c.token.Reveal()) {
		return errors.New(c.redact(msg))
	}
	return err
}

// redact replaces the token in text that came from outside (a server body
// that echoes headers, a proxy's error page).
func (c *Client) redact(s string) string {
	if t := c.token.Reveal(); t != "" {
		s = strings.ReplaceAll(s, t, secret.Redacted)
	}
	return s
}

func transportKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	default:
		return "connection"
	}
}

// redirectMessage describes a 3xx answer, which is never followed. The
// target is named (without credentials) so a wrong endpoint (http for
// https, a missing path prefix) can be fixed; the body, an HTML page
// repeating it, is dropped.
func redirectMessage(resp *http.Response) string {
	loc := strings.TrimSpace(resp.Header.Get("Location"))
	if loc == "" {
		return "redirect not followed"
	}
	if u, err := resp.Request.URL.Parse(loc); err == nil {
		u.User = nil
		u.RawQuery, u.Fragment = "", ""
		loc = u.String()
	} else {
		loc = "an invalid Location"
	}
	return "redirect to " + loc + " not followed; check ONEGATE_ENDPOINT"
}

// errorMessage is the server's error text. OneGate sends plain text despite
// its JSON content type; a JSON string is unquoted in case a proxy in front
// does it differently.
func errorMessage(body []byte) string {
	msg := string(body)
	var s string
	if t := strings.TrimSpace(msg); strings.HasPrefix(t, `"`) && json.Unmarshal([]byte(t), &s) == nil {
		msg = s
	}
	const limit = 64 << 10
	if len(msg) > limit {
		msg = msg[:limit]
	}
	return msg
}
