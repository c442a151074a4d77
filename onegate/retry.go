package onegate

import (
	"math/rand/v2"
	"time"
)

// RetryPolicy is capped exponential backoff with jitter, applied to
// connection errors and 5xx answers within one call. Zero fields take the
// value of DefaultRetry().
type RetryPolicy struct {
	MaxAttempts int           // tries in total, the first included; 1 disables retries
	Initial     time.Duration // wait after the first failure
	Max         time.Duration // cap of one wait
	Multiplier  float64       // growth per failure
	Jitter      float64       // each wait is scaled by a random factor in [1-Jitter, 1+Jitter]
}

// DefaultRetry keeps a single call short (about 15 s of waiting in all);
// callers that must get through eventually (READY) loop around the call.
func DefaultRetry() RetryPolicy {
	return RetryPolicy{MaxAttempts: 5, Initial: time.Second, Max: 60 * time.Second, Multiplier: 2, Jitter: 0.2}
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	d := DefaultRetry()
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = d.MaxAttempts
	}
	if p.Initial <= 0 {
		p.Initial = d.Initial
	}
	if p.Max <= 0 {
		p.Max = d.Max
	}
	if p.Max < p.Initial {
		p.Max = p.Initial
	}
	if p.Multiplier < 1 {
		p.Multiplier = d.Multiplier
	}
	if p.Jitter <= 0 || p.Jitter > 1 {
		p.Jitter = d.Jitter
	}
	return p
}

// delay is the wait after failed attempt n (1-based).
func (p RetryPolicy) delay(n int) time.Duration {
	d := float64(p.Initial)
	for i := 1; i < n && d < float64(p.Max); i++ {
		d *= p.Multiplier
	}
	if d > float64(p.Max) {
		d = float64(p.Max)
	}
	if p.Jitter > 0 {
		d *= 1 - p.Jitter + 2*p.Jitter*rand.Float64()
	}
	return time.Duration(d)
}
