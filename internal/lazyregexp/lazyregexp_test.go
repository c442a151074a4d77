package lazyregexp

import (
	"sync"
	"testing"
)

func TestCompiledOnceOnFirstUse(t *testing.T) {
	r := &Regexp{expr: `^(ETH([0-9]+))_MAC$`} // as New outside a test binary
	if r.re != nil {
		t.Fatal("compiled before use")
	}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if m := r.FindStringSubmatch("ETH12_MAC"); len(m) != 3 || m[2] != "12" {
				t.Errorf("submatch %q", m)
			}
		}()
	}
	wg.Wait()
	first := r.re
	if !r.MatchString("ETH0_MAC") || r.MatchString("ETH0_IP") || r.re != first {
		t.Error("match wrong or compiled again")
	}
	if got := New(`[^a-z]`).ReplaceAllString("a.b", "-"); got != "a-b" {
		t.Errorf("replace: %q", got)
	}
}

func TestBadExpressionFailsInTests(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("a bad expression did not panic in a test binary")
		}
	}()
	New(`(`)
}
