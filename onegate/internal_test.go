package onegate

import (
	"net/http"
	"net/url"
	"testing"
	"time"
)

func TestProxyBypassesLocalGates(t *testing.T) {
	proxy, _ := url.Parse("http://proxy.example:3128")
	fallback := func(*http.Request) (*url.URL, error) { return proxy, nil }
	for endpoint, direct := range map[string]bool{
		"http://169.254.16.9:5030/vm":  true,
		"http://127.0.0.1:5030/vm":     true,
		"http://[::1]:5030/vm":         true,
		"http://[fe80::1]:5030/vm":     true,
		"http://localhost:5030/vm":     true,
		"http://frontend.example/vm":   false,
		"http://192.0.2.1:5030/vm":     false,
		"https://gate.example:8443/vm": false,
	} {
		req, _ := http.NewRequest("GET", endpoint, nil)
		got, err := proxyFor(req, fallback)
		if err != nil || (got == nil) != direct {
			t.Errorf("%s: proxy %v, want direct=%v", endpoint, got, direct)
		}
	}
}

func TestBackoffIsCappedAndJittered(t *testing.T) {
	p := RetryPolicy{MaxAttempts: 10, Initial: time.Second, Max: 8 * time.Second, Multiplier: 2, Jitter: 0.25}.withDefaults()
	for n, base := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 9: 8 * time.Second} {
		for i := 0; i < 50; i++ {
			d := p.delay(n)
			if d < base*3/4 || d > base*5/4 {
				t.Fatalf("delay(%d) = %v, want %v ±25%%", n, d, base)
			}
		}
	}
	if d := (RetryPolicy{}).withDefaults(); d != DefaultRetry() {
		t.Fatalf("zero policy = %+v", d)
	}
}
