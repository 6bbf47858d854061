package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/internal/testenv"
	"github.com/authz/authz/logout"
)

// benchSessions stores n sessions and returns their ids and cookies.
func benchSessions(b *testing.B, r *testenv.Redis, n int) (sids, cookies []string) {
	b.Helper()
	rdb := r.Client()
	pipe := rdb.Pipeline()
	for i := range n {
		sid := newSID()
		sids = append(sids, sid)
		cookies = append(cookies, "connect.sid="+authz.Sign(sid, testenv.SessionSecret))
		pipe.Set(context.Background(), "sess:"+sid, `{"cookie":{"originalMaxAge":3600000},"passport":{"user":"u`+strconv.Itoa(i)+`"}}`, time.Hour)
	}
	if _, err := pipe.Exec(context.Background()); err != nil {
		b.Fatal(err)
	}
	return sids, cookies
}

func benchClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 5 * time.Second}
}

func verifyStatus(c *http.Client, addr, cookie string) int {
	req, _ := http.NewRequest("GET", "http://"+addr+"/verify", nil)
	req.Header.Set("Cookie", cookie)
	resp, err := c.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// BenchmarkLogoutPropagation measures single sign-off: 8 authz instances
// with warm caches, 1,000 logouts one after another (marker + DEL + PUBLISH,
// what `authz logout` does), and for each the time from the start of the
// logout until every instance denies the session; and the same for an app's
// plain DEL (express-session's destroy), seen through tracking alone in
// either mode. Run it once:
//
//	go test -run '^$' -bench LogoutPropagation -benchtime 1x ./e2e/
func BenchmarkLogoutPropagation(b *testing.B) {
	for _, mode := range []struct {
		name, tracking string
		plainDEL       bool
	}{
		{"pubsub", "--tracking=false", false},
		{"pubsub+tracking", "--tracking-mode=reads", false},
		{"DEL/tracking-reads", "--tracking-mode=reads", true},
		{"DEL/tracking-bcast", "--tracking-mode=bcast", true},
	} {
		b.Run(mode.name, func(b *testing.B) {
			const instances, logouts = 8, 1000
			// Eight processes share two cores: one thread each keeps the
			// scheduler, not authz, from dominating the tail.
			b.Setenv("GOMAXPROCS", "1")
			r := testenv.StartRedis(b)
			var as []*testenv.Authz
			for range instances {
				as = append(as, testenv.StartAuthz(b, r.URL(), "--cache-ttl", "1h", "--log-level", "warn", mode.tracking))
			}
			client := benchClient()
			sids, cookies := benchSessions(b, r, logouts)
			for _, a := range as {
				testenv.WaitFor(b, 10*time.Second, "authz ready", func() bool {
					return verifyStatus(client, a.Addr, cookies[0]) == 200
				})
			}
			// Warm every cache with every session.
			var wg sync.WaitGroup
			for _, a := range as {
				wg.Go(func() {
					for _, c := range cookies {
						if s := verifyStatus(client, a.Addr, c); s != 200 {
							b.Errorf("warm-up: %d", s)
							return
						}
					}
				})
			}
			wg.Wait()
			rdb := r.Client()
			pub, err := logout.NewPublisher(rdb, logout.PublisherConfig{Origin: "bench"}, nil)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			delays := make([]time.Duration, 0, logouts)
			b.ResetTimer()
			for i := range b.N {
				_ = i
				delays = delays[:0]
				for j, sid := range sids {
					if b.N > 1 && j > 0 {
						break // later rounds would find the sessions gone
					}
					start := time.Now()
					if mode.plainDEL {
						if err := rdb.Del(ctx, "sess:"+sid).Err(); err != nil {
							b.Fatal(err)
						}
					} else {
						pipe := rdb.Pipeline()
						pipe.Set(ctx, "authz:revoked:sess:"+sid, "1", time.Hour)
						pipe.Del(ctx, "sess:"+sid)
						if _, err := pipe.Exec(ctx); err != nil {
							b.Fatal(err)
						}
						if _, err := pub.Publish(ctx, logout.Event{Kind: logout.KindSession, Session: sid}); err != nil {
							b.Fatal(err)
						}
					}
					// Ask every instance still allowing it at once, in waves,
					// until all deny: each wave costs the slowest answer, not
					// the sum, without pollers spinning against authz for CPU.
					denied := make([]bool, instances)
					left := instances
					deadline := start.Add(5 * time.Second)
					for left > 0 && time.Now().Before(deadline) {
						var wave sync.WaitGroup
						for k, a := range as {
							if !denied[k] {
								wave.Go(func() { denied[k] = verifyStatus(client, a.Addr, cookies[j]) == 401 })
							}
						}
						wave.Wait()
						left = 0
						for _, d := range denied {
							if !d {
								left++
							}
						}
					}
					if left != 0 {
						b.Fatalf("logout %d: %d instances still allowed the session after 5s", j, left)
					}
					delays = append(delays, time.Since(start))
				}
			}
			b.StopTimer()
			slices.Sort(delays)
			q := func(p float64) time.Duration { return delays[int(p*float64(len(delays)-1))] }
			b.ReportMetric(float64(q(0.50).Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(q(0.99).Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(delays[len(delays)-1].Microseconds())/1000, "max-ms")
			b.Logf("%s: %d logouts across %d instances: p50 %v, p99 %v, max %v",
				mode.name, len(delays), instances, q(0.50), q(0.99), delays[len(delays)-1])
			var sum, count float64
			for _, a := range as {
				sum += metricB(b, a, "authz_logout_propagation_seconds_sum")
				count += metricB(b, a, "authz_logout_propagation_seconds_count")
			}
			if count > 0 {
				b.Logf("%s: event time to applied, as the instances saw it: mean %.3f ms over %.0f events", mode.name, 1000*sum/count, count)
			}
		})
	}
}

// BenchmarkVerifyTrackingCost compares verify throughput of two authz
// instances on one Redis, one with tracking on and one with it off, while a
// writer touches sessions (EXPIRE, as express-session's touch does) at a
// steady rate. Rounds alternate between the two so both see the same
// machine. Run it once:
//
//	go test -run '^$' -bench VerifyTrackingCost -benchtime 1x ./e2e/
func BenchmarkVerifyTrackingCost(b *testing.B) {
	const (
		sessions    = 2000
		concurrency = 32
		round       = 3 * time.Second
		rounds      = 3
		touchesPerS = 2000
	)
	r := testenv.StartRedis(b)
	on := testenv.StartAuthz(b, r.URL(), "--log-level", "warn", "--tracking=true", "--cache-ttl", "1h")
	off := testenv.StartAuthz(b, r.URL(), "--log-level", "warn", "--tracking=false", "--cache-ttl", "1h")
	sids, cookies := benchSessions(b, r, sessions)
	client := benchClient()
	rdb := r.Client()

	// A steady stream of touches for the whole run, bounded by ctx.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var touches atomic.Int64
	go func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		i := 0
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			pipe := rdb.Pipeline()
			for range touchesPerS / 100 {
				pipe.Expire(ctx, "sess:"+sids[i%len(sids)], time.Hour)
				i++
			}
			if _, err := pipe.Exec(ctx); err == nil {
				touches.Add(touchesPerS / 100)
			}
		}
	}()

	load := func(addr string) (reqs int64, errs int64) {
		stop := time.Now().Add(round)
		var n, bad atomic.Int64
		var wg sync.WaitGroup
		for w := range concurrency {
			wg.Go(func() {
				for i := w; time.Now().Before(stop); i += concurrency {
					if verifyStatus(client, addr, cookies[i%len(cookies)]) == 200 {
						n.Add(1)
					} else {
						bad.Add(1)
					}
				}
			})
		}
		wg.Wait()
		return n.Load(), bad.Load()
	}
	for _, a := range []*testenv.Authz{on, off} {
		load(a.Addr) // warm caches and connections
	}
	b.ResetTimer()
	var totalOn, totalOff int64
	for range b.N {
		for range rounds {
			n, e := load(on.Addr)
			totalOn += n
			if e > 0 {
				b.Errorf("tracking on: %d non-200 answers", e)
			}
			n, e = load(off.Addr)
			totalOff += n
			if e > 0 {
				b.Errorf("tracking off: %d non-200 answers", e)
			}
		}
	}
	b.StopTimer()
	secs := float64(rounds*b.N) * round.Seconds()
	ratio := float64(totalOn) / float64(totalOff)
	b.ReportMetric(float64(totalOn)/secs, "on-req/s")
	b.ReportMetric(float64(totalOff)/secs, "off-req/s")
	b.ReportMetric(ratio, "on/off")
	b.Logf("verify with %d touches/s: tracking on %.0f req/s, off %.0f req/s, ratio %.3f (%s touches)",
		touchesPerS, float64(totalOn)/secs, float64(totalOff)/secs, ratio, fmt.Sprint(touches.Load()))
}
