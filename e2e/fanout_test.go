package e2e

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authz/authz/internal/testenv"
	"github.com/redis/go-redis/v9"
)

// BenchmarkTrackingFanout measures what BCAST tracking costs as a site
// grows: N authz instances on one Redis, each with tracking on, while a
// writer touches sessions (EXPIRE, what express-session's touch does) at
// a fixed rate. For every instance count and write rate it reports, per
// instance, the invalidation messages and keys received and the CPU used,
// and Redis's own CPU. Run it once (make bench-fanout):
//
//	go test -run '^$' -bench TrackingFanout -benchtime 1x ./e2e/
//
// FANOUT_INSTANCES and FANOUT_RATES (comma-separated) and FANOUT_SECONDS
// change the grid and the length of each measurement; FANOUT_WRITERS
// (16) and FANOUT_BATCH (1: no pipelining) how the writes are sent.
func BenchmarkTrackingFanout(b *testing.B) {
	// 0 instances: what the writes alone cost Redis.
	instances := envInts(b, "FANOUT_INSTANCES", []int{0, 1, 4, 8})
	rates := envInts(b, "FANOUT_RATES", []int{1000, 5000, 20000})
	secs := envInts(b, "FANOUT_SECONDS", []int{4})[0]
	writers := envInts(b, "FANOUT_WRITERS", []int{16})[0]
	batch := envInts(b, "FANOUT_BATCH", []int{1})[0]
	const sessions = 10000
	// Eight processes share the machine with Redis and the writer: one
	// thread each, as a small container would give them.
	b.Setenv("GOMAXPROCS", "1")
	var table []string
	for _, n := range instances {
		r := testenv.StartRedis(b)
		var as []*testenv.Authz
		for range n {
			as = append(as, testenv.StartAuthz(b, r.URL(), "--log-level", "warn", "--tracking=true"))
		}
		for _, a := range as {
			testenv.WaitFor(b, 10*time.Second, "tracking on "+a.Addr, func() bool {
				return metricB(b, a, "authz_tracking_enabled") == 1 && metricB(b, a, "authz_logout_subscribed") == 1
			})
		}
		sids, _ := benchSessions(b, r, sessions)
		rdb := r.Client()
		for _, rate := range rates {
			b.Run(fmt.Sprintf("instances=%d/writes=%d", n, rate), func(b *testing.B) {
				before := fanoutSample(b, r, as)
				start := time.Now()
				writes := paceWrites(b, rdb, sids, rate, writers, batch, time.Duration(secs)*time.Second)
				// Invalidations still on their way are part of the cost:
				// wait (bounded) until every instance has seen as many keys
				// as were written, or the stream has gone quiet.
				var after fanoutStats
				prev := -1.0
				testenv.WaitFor(b, 10*time.Second, "invalidations to drain", func() bool {
					after = fanoutSample(b, r, as)
					keys := after.keys - before.keys
					done := keys >= float64(writes*int64(n)) || keys == prev
					prev = keys
					return done
				})
				elapsed := time.Since(start).Seconds()
				d := after.sub(before)
				perInst := func(v float64) float64 { return safeDiv(v, float64(n)*elapsed) }
				wps := float64(writes) / elapsed
				b.ReportMetric(wps, "writes/s")
				b.ReportMetric(perInst(d.msgs), "msgs/s/inst")
				b.ReportMetric(perInst(d.keys), "keys/s/inst")
				b.ReportMetric(100*perInst(d.cpu.Seconds()), "cpu%/inst")
				b.ReportMetric(100*d.redisCPU.Seconds()/elapsed, "redis-cpu%")
				b.ReportMetric(d.drops, "drops")
				lost := 100 * (1 - safeDiv(d.keys, float64(writes*int64(n))))
				if n == 0 {
					lost = 0
				}
				table = append(table, fmt.Sprintf("| %d | %d | %.0f | %.0f | %.0f | %.1f %% | %.2f µs | %.1f %% | %.1f %% | %.0f |",
					n, rate, wps, perInst(d.msgs), perInst(d.keys), 100*perInst(d.cpu.Seconds()),
					// CPU per invalidated key on an instance, and on Redis per
					// key sent (a write reaches every instance).
					safeDiv(d.cpu.Seconds()*1e6, d.keys),
					100*d.redisCPU.Seconds()/elapsed, max(lost, 0), d.drops))
			})
		}
	}
	fmt.Printf("\nBCAST tracking fan-out: %d s per row, %d writers sending %d EXPIRE(s) at a time, GOMAXPROCS=1 per authz\n"+
		"| instances | target writes/s | writes/s | msgs/s per instance | keys/s per instance | CPU per instance | CPU per key | Redis CPU | keys lost | subscription drops |\n"+
		"| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n%s\n", secs, writers, batch, strings.Join(table, "\n"))
}

type fanoutStats struct {
	msgs, keys, drops float64
	cpu, redisCPU     time.Duration // cpu: summed over the instances
}

func (s fanoutStats) sub(o fanoutStats) fanoutStats {
	return fanoutStats{s.msgs - o.msgs, s.keys - o.keys, s.drops - o.drops, s.cpu - o.cpu, s.redisCPU - o.redisCPU}
}

func fanoutSample(b *testing.B, r *testenv.Redis, as []*testenv.Authz) fanoutStats {
	b.Helper()
	var s fanoutStats
	for _, a := range as {
		s.msgs += metricB(b, a, "authz_tracking_messages_total")
		s.keys += metricB(b, a, "authz_tracking_invalidated_keys_total")
		s.drops += metricB(b, a, "authz_logout_subscription_drops_total")
		t, err := testenv.CPUTime(a.Pid())
		if err != nil {
			b.Fatal(err)
		}
		s.cpu += t
	}
	t, err := testenv.CPUTime(r.Pid())
	if err != nil {
		b.Fatal(err)
	}
	s.redisCPU = t
	return s
}

// paceWrites sends rate EXPIREs a second over sids for d and returns how
// many Redis acknowledged. Like many app processes touching sessions,
// writers goroutines send one command at a time (batch 1), or batch
// commands per pipeline; Redis sends one invalidation message per event
// loop iteration with every key written in it, so the less batched the
// writes, the more messages. Writers fall behind rather than burst when
// Redis cannot keep up.
func paceWrites(b *testing.B, rdb *redis.Client, sids []string, rate, writers, batch int, d time.Duration) int64 {
	ctx := context.Background()
	start := time.Now()
	var total atomic.Int64
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			share := float64(rate) / float64(writers)
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			var sent int64
			i := w
			for now := range tick.C {
				el := now.Sub(start)
				if el >= d {
					break
				}
				for due := int64(el.Seconds()*share) - sent; due > 0 && time.Since(start) < d; due -= int64(batch) {
					n := min(due, int64(batch))
					var err error
					if n == 1 {
						err = rdb.Expire(ctx, "sess:"+sids[i%len(sids)], time.Hour).Err()
						i += writers
					} else {
						pipe := rdb.Pipeline()
						for range n {
							pipe.Expire(ctx, "sess:"+sids[i%len(sids)], time.Hour)
							i += writers
						}
						_, err = pipe.Exec(ctx)
					}
					if err != nil {
						b.Errorf("writes: %v", err)
						return
					}
					sent += n
					total.Add(n)
				}
			}
		})
	}
	wg.Wait()
	return total.Load()
}

func envInts(b *testing.B, name string, def []int) []int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 {
			b.Fatalf("%s=%q: want integers, comma-separated", name, v)
		}
		out = append(out, n)
	}
	return out
}

func safeDiv(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
