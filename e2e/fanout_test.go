package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
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

// BenchmarkTrackingFanout compares what the tracking modes cost as a site
// grows: N authz instances on one Redis, each serving a share of the users
// (a steady verify load of FANOUT_VERIFY requests/s across the site, each
// instance asked about its own slice of the live sessions), while a writer
// touches sessions (EXPIRE, what express-session's touch does) at a fixed
// rate. For every mode, instance count and write rate it reports, per
// instance, the invalidation messages and keys received, the cache misses
// and hit ratio and the CPU used, and Redis's own CPU. Run it once
// (make bench-fanout):
//
//	go test -run '^$' -bench TrackingFanout -benchtime 1x ./e2e/
//
// FANOUT_MODES (reads,bcast), FANOUT_INSTANCES and FANOUT_RATES
// (comma-separated), FANOUT_SESSIONS (live sessions), FANOUT_VERIFY and
// FANOUT_SECONDS change the grid and the length of each measurement;
// FANOUT_WRITERS (16) and FANOUT_BATCH (1: no pipelining) how the writes
// are sent.
func BenchmarkTrackingFanout(b *testing.B) {
	modes := strings.Split(envString("FANOUT_MODES", "reads,bcast"), ",")
	instances := envInts(b, "FANOUT_INSTANCES", []int{4, 8, 16})
	rates := envInts(b, "FANOUT_RATES", []int{0, 2000, 20000})
	secs := envInts(b, "FANOUT_SECONDS", []int{3})[0]
	writers := envInts(b, "FANOUT_WRITERS", []int{16})[0]
	batch := envInts(b, "FANOUT_BATCH", []int{1})[0]
	sessions := envInts(b, "FANOUT_SESSIONS", []int{10000})[0]
	verifyRate := envInts(b, "FANOUT_VERIFY", []int{2000})[0]
	// Many processes share the machine with Redis and the writer: one
	// thread each, as a small container would give them.
	b.Setenv("GOMAXPROCS", "1")
	var table []string
	for _, mode := range modes {
		for _, n := range instances {
			r := testenv.StartRedis(b)
			var as []*testenv.Authz
			for range n {
				as = append(as, testenv.StartAuthz(b, r.URL(), "--log-level", "warn", "--tracking=true", "--tracking-mode", mode))
			}
			for _, a := range as {
				testenv.WaitFor(b, 10*time.Second, "tracking on "+a.Addr, func() bool {
					return metricB(b, a, "authz_tracking_enabled") == 1 && metricB(b, a, "authz_logout_subscribed") == 1
				})
			}
			sids, cookies := benchSessions(b, r, sessions)
			rdb := r.Client()
			for _, rate := range rates {
				b.Run(fmt.Sprintf("mode=%s/instances=%d/writes=%d", mode, n, rate), func(b *testing.B) {
					before := fanoutSample(b, r, as)
					start := time.Now()
					d := time.Duration(secs) * time.Second
					verified := make(chan int64, 1)
					go func() { verified <- paceVerifies(as, cookies, verifyRate, d) }()
					writes := paceWrites(b, rdb, sids, rate, writers, batch, d)
					<-verified
					// Invalidations still on their way are part of the
					// cost: wait (bounded) until the stream has gone quiet.
					var after fanoutStats
					prev := -1.0
					testenv.WaitFor(b, 10*time.Second, "invalidations to drain", func() bool {
						after = fanoutSample(b, r, as)
						done := after.keys == prev
						prev = after.keys
						return done
					})
					elapsed := time.Since(start).Seconds()
					dd := after.sub(before)
					perInst := func(v float64) float64 { return safeDiv(v, float64(n)*elapsed) }
					wps := float64(writes) / elapsed
					hit := 100 * safeDiv(dd.hits, dd.hits+dd.misses)
					b.ReportMetric(wps, "writes/s")
					b.ReportMetric(perInst(dd.msgs), "msgs/s/inst")
					b.ReportMetric(perInst(dd.misses), "misses/s/inst")
					b.ReportMetric(hit, "hit%")
					b.ReportMetric(100*perInst(dd.cpu.Seconds()), "cpu%/inst")
					b.ReportMetric(100*dd.redisCPU.Seconds()/elapsed, "redis-cpu%")
					table = append(table, fmt.Sprintf("| %s | %d | %d | %.0f | %.0f | %.0f | %.0f | %.0f %% | %.1f %% | %.1f %% | %.0f |",
						mode, n, rate, wps, perInst(dd.msgs), perInst(dd.keys), perInst(dd.misses), hit,
						100*perInst(dd.cpu.Seconds()), 100*dd.redisCPU.Seconds()/elapsed, dd.drops))
				})
			}
		}
	}
	fmt.Printf("\nTracking fan-out: %d s per row, %d live sessions, %d verifies/s across the site (each instance its own share of sessions), "+
		"%d writers sending %d EXPIRE(s) at a time, GOMAXPROCS=1 per authz\n"+
		"| mode | instances | target writes/s | writes/s | msgs/s per instance | keys/s per instance | misses/s per instance | hit ratio | CPU per instance | Redis CPU | subscription drops |\n"+
		"| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n%s\n", secs, sessions, verifyRate, writers, batch, strings.Join(table, "\n"))
}

// paceVerifies sends rate verify requests a second for d, spread over the
// instances, and returns how many were answered. Instance i is asked about
// the sessions whose index is i modulo len(as): each sees its own share of
// the users, as behind a balancer with sticky sessions. Some users are
// much busier than others.
func paceVerifies(as []*testenv.Authz, cookies []string, rate int, d time.Duration) int64 {
	if rate == 0 || len(as) == 0 {
		return 0
	}
	const workers = 8
	start := time.Now()
	var total atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			c := benchClient()
			share := float64(rate) / workers
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			var sent int64
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for now := range tick.C {
				el := now.Sub(start)
				if el >= d {
					break
				}
				for due := int64(el.Seconds()*share) - sent; due > 0 && time.Since(start) < d; due-- {
					// Skewed reuse: a few users are busy, most
					// rarely seen (cubing a uniform draw puts
					// half the requests on 1/8 of the sessions).
					u := rng.Float64()
					k := min(int(u*u*u*float64(len(cookies))), len(cookies)-1)
					verifyStatus(c, as[k%len(as)].Addr, cookies[k])
					sent++
					total.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return total.Load()
}

func envString(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

type fanoutStats struct {
	msgs, keys, drops, hits, misses float64
	cpu, redisCPU                   time.Duration // cpu: summed over the instances
}

func (s fanoutStats) sub(o fanoutStats) fanoutStats {
	return fanoutStats{s.msgs - o.msgs, s.keys - o.keys, s.drops - o.drops, s.hits - o.hits, s.misses - o.misses, s.cpu - o.cpu, s.redisCPU - o.redisCPU}
}

func fanoutSample(b *testing.B, r *testenv.Redis, as []*testenv.Authz) fanoutStats {
	b.Helper()
	var s fanoutStats
	for _, a := range as {
		s.msgs += metricB(b, a, "authz_tracking_messages_total")
		s.keys += metricB(b, a, "authz_tracking_invalidated_keys_total")
		s.drops += metricB(b, a, "authz_logout_subscription_drops_total")
		s.hits += metricB(b, a, "authz_cache_hits_total")
		s.misses += metricB(b, a, "authz_cache_misses_total")
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
