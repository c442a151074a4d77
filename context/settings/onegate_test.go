package settings

import (
	"strings"
	"testing"
	"time"
)

func TestReadyRetry(t *testing.T) {
	for _, tc := range []struct {
		ctx     string
		count   int
		wait    time.Duration
		problem string // variable named by the one problem, "" for none
	}{
		{"", DefaultReadyRetryCount, DefaultReadyRetryWait, ""},
		{"RETRY_COUNT='5'\nRETRY_WAIT_PERIOD='2'\n", 5, 2 * time.Second, ""},
		{"RETRY_COUNT=' 1 '\nRETRY_WAIT_PERIOD='0'\n", 1, 0, ""},
		{"RETRY_WAIT_PERIOD='1.5'\n", 3, 1500 * time.Millisecond, ""},
		{"RETRY_WAIT_PERIOD='30s'\n", 3, 30 * time.Second, ""},
		{"RETRY_WAIT_PERIOD='2m'\n", 3, 2 * time.Minute, ""},
		{"RETRY_WAIT_PERIOD='1h'\n", 3, time.Hour, ""},
		{"RETRY_WAIT_PERIOD='1d'\n", 3, 24 * time.Hour, ""},
		{"RETRY_COUNT='0'\n", 3, DefaultReadyRetryWait, "RETRY_COUNT"},
		{"RETRY_COUNT='-2'\n", 3, DefaultReadyRetryWait, "RETRY_COUNT"},
		{"RETRY_COUNT='three'\n", 3, DefaultReadyRetryWait, "RETRY_COUNT"},
		{"RETRY_COUNT='99999999999999999999'\n", 3, DefaultReadyRetryWait, "RETRY_COUNT"},
		{"RETRY_WAIT_PERIOD='-1'\n", 3, DefaultReadyRetryWait, "RETRY_WAIT_PERIOD"},
		{"RETRY_WAIT_PERIOD='soon'\n", 3, DefaultReadyRetryWait, "RETRY_WAIT_PERIOD"},
		{"RETRY_WAIT_PERIOD='inf'\n", 3, DefaultReadyRetryWait, "RETRY_WAIT_PERIOD"},
		{"RETRY_WAIT_PERIOD='1e3'\n", 3, DefaultReadyRetryWait, "RETRY_WAIT_PERIOD"},
		{"RETRY_WAIT_PERIOD='2d'\n", 3, DefaultReadyRetryWait, "RETRY_WAIT_PERIOD"},
		{"RETRY_WAIT_PERIOD='s'\n", 3, DefaultReadyRetryWait, "RETRY_WAIT_PERIOD"},
	} {
		c := build(t, tc.ctx, Inputs{})
		g := c.OneGate
		if g.ReadyRetryCount != tc.count || g.ReadyRetryWait != tc.wait {
			t.Errorf("%q: count %d wait %v, want %d %v", tc.ctx, g.ReadyRetryCount, g.ReadyRetryWait, tc.count, tc.wait)
		}
		var vars []string
		for _, p := range c.Problems {
			vars = append(vars, p.Var)
			if p.Line != 1 || !strings.Contains(p.Msg, "using") {
				t.Errorf("%q: problem %s: want the line and the default used", tc.ctx, p)
			}
		}
		if got := strings.Join(vars, ","); got != tc.problem {
			t.Errorf("%q: problems on %q, want %q", tc.ctx, got, tc.problem)
		}
	}
}
