package kernel_test

import (
	"fmt"
	"testing"

	"one-contextd/internal/netnstest"
	"one-contextd/network/kernel"
	"one-contextd/network/model"
)

// eightNICs is 8 NICs × (2 addresses, 2 aliases, 4 routes).
func eightNICs() []string {
	var l []string
	for i := 0; i < 8; i++ {
		n := fmt.Sprintf("ETH%d", i)
		l = append(l,
			fmt.Sprintf("%s_MAC='02:00:0a:%02x:00:01'", n, i),
			fmt.Sprintf("%s_IP='10.%d.0.10'", n, i),
			fmt.Sprintf("%s_IP6='2001:db8:%d::10'", n, i),
			fmt.Sprintf("%s_ALIAS0_MAC='02:00:0a:%02x:00:02'", n, i),
			fmt.Sprintf("%s_ALIAS0_IP='10.%d.0.11'", n, i),
			fmt.Sprintf("%s_ALIAS1_MAC='02:00:0a:%02x:00:03'", n, i),
			fmt.Sprintf("%s_ALIAS1_IP='10.%d.0.12'", n, i),
			fmt.Sprintf("%s_ROUTES='10.%d.1.0/24 via 10.%d.0.1, 10.%d.2.0/24 via 10.%d.0.1, 10.%d.3.0/24 via 10.%d.0.2, 10.%d.4.0/24 via 10.%d.0.2'", n, 100+i, i, 100+i, i, 100+i, i, 100+i, i),
		)
	}
	return l
}

func setupEight(b *testing.B) (*netnstest.NS, model.Model) {
	ns := netnstest.New(b)
	for i := 0; i < 8; i++ {
		ns.Veth(fmt.Sprintf("ens%d", i), fmt.Sprintf("02:00:0a:%02x:00:01", i), fmt.Sprintf("peer%d", i))
	}
	ctx := build(b, eightNICs()...)
	links, err := kernel.Links(ns.Handle)
	if err != nil {
		b.Fatal(err)
	}
	m, problems := model.Plan(ctx.Network, ctxOneGate(ctx), links)
	if len(problems) > 0 {
		b.Fatal(problems)
	}
	return ns, m
}

// BenchmarkApplyFresh applies the 8-NIC context into a fresh namespace.
func BenchmarkApplyFresh(b *testing.B) {
	var reads, writes int
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		ns, m := setupEight(b)
		c := &kernel.Counter{NL: ns.Handle}
		b.StartTimer()
		res, err := kernel.Apply(c, nil, m, kernel.Owned{})
		b.StopTimer()
		if err != nil || len(res.Problems) > 0 {
			b.Fatal(err, res.Problems)
		}
		reads, writes = c.Reads, c.Writes
		b.StartTimer()
	}
	b.ReportMetric(float64(reads), "reads/op")
	b.ReportMetric(float64(writes), "writes/op")
}

// BenchmarkApplyNoChange is the second run on the same context.
func BenchmarkApplyNoChange(b *testing.B) {
	ns, m := setupEight(b)
	first, err := kernel.Apply(ns.Handle, nil, m, kernel.Owned{})
	if err != nil {
		b.Fatal(err)
	}
	var c *kernel.Counter
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c = &kernel.Counter{NL: ns.Handle}
		res, err := kernel.Apply(c, nil, m, first.Owned)
		if err != nil || len(res.Changes) > 0 {
			b.Fatal(err, res.Changes)
		}
	}
	if c.Writes != 0 {
		b.Fatalf("no-change run issued %d write requests", c.Writes)
	}
	b.ReportMetric(float64(c.Reads), "reads/op")
	b.ReportMetric(float64(c.Writes), "writes/op")
}
