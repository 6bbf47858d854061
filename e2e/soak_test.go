package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authz/authz/internal/testenv"
	"github.com/authz/authz/logout"
)

// TestSoak runs a constant-rate load through Nginx and two authz instances
// for SOAK_DURATION (make soak; skipped without it), logging sessions out
// all along while requests for them keep coming, and reports requests,
// errors by kind, p50/p99 per interval, the RSS and goroutines of each
// authz at start and end, and stale allows: a 200 for a session whose
// logout had completed before the request was sent. Any stale allow, or
// any error, fails it.
//
//	SOAK_DURATION=5m make soak          # the run
//	SOAK_DURATION=30s make soak         # a quick try
//
// SOAK_RATE (requests/s, 400), SOAK_LOGOUT_RATE (logouts/s, 5),
// SOAK_SESSIONS (live sessions, 2000) and SOAK_INTERVAL (10s) tune it; the
// report also goes to SOAK_REPORT (bin/soak-report.txt).
func TestSoak(t *testing.T) {
	dur := soakEnvDuration(t, "SOAK_DURATION", 0)
	if dur <= 0 {
		t.Skip("set SOAK_DURATION (make soak) to run the soak test")
	}
	cfg := soakConfig{
		duration:   dur,
		interval:   soakEnvDuration(t, "SOAK_INTERVAL", 10*time.Second),
		rate:       soakEnvInt(t, "SOAK_RATE", 400),
		logoutRate: soakEnvInt(t, "SOAK_LOGOUT_RATE", 5),
		sessions:   soakEnvInt(t, "SOAK_SESSIONS", 2000),
	}
	report := os.Getenv("SOAK_REPORT")
	if report == "" {
		report = filepath.Join(testenv.RepoRoot(t), "bin", "soak-report.txt")
	}

	args := []string{"--log-level", "warn"}
	s, a1, a2 := newPairSite(t, args...)
	authzs := []*testenv.Authz{a1, a2}
	for _, a := range authzs {
		testenv.WaitFor(t, 10*time.Second, "the logout subscription on "+a.Addr, func() bool {
			return metric(t, a, "authz_logout_subscribed") == 1
		})
	}

	k := &soak{cfg: cfg, site: s, start: time.Now()}
	for range cfg.sessions {
		k.addSession()
	}
	res := k.run(t, authzs)
	out := res.String()
	fmt.Print(out)
	if err := os.MkdirAll(filepath.Dir(report), 0o755); err == nil {
		if err := os.WriteFile(report, []byte(out), 0o644); err != nil {
			t.Logf("write %s: %v", report, err)
		}
	}
	if res.stale > 0 {
		t.Errorf("%d stale allows: logged-out sessions allowed after their logout completed", res.stale)
	}
	if e := res.errorCount(); e > 0 {
		t.Errorf("%d errors", e)
	}
}

type soakConfig struct {
	duration, interval         time.Duration
	rate, logoutRate, sessions int
}

// soakSession is one session of the soak; state moves live → dying (its
// logout is under way) → dead (the logout has completed at deadAt).
type soakSession struct {
	session
	user   string
	state  atomic.Int32
	deadAt atomic.Int64 // UnixNano, once dead
}

const (
	stateLive = iota
	stateDying
	stateDead
)

type soak struct {
	cfg   soakConfig
	site  *site
	start time.Time

	mu   sync.Mutex
	live []*soakSession
	dead []*soakSession
	seq  int
	// deadAsked counts requests for sessions whose logout had completed.
	deadAsked atomic.Int64
}

func (k *soak) addSession() {
	k.mu.Lock()
	k.seq++
	u := user{ID: "u" + strconv.Itoa(k.seq)}
	k.mu.Unlock()
	ss := &soakSession{session: k.site.signIn(u), user: u.ID}
	k.mu.Lock()
	k.live = append(k.live, ss)
	k.mu.Unlock()
}

// pick returns a session to request: one in ten a logged-out one (once
// there are some; half of those among the ten logged out last, where a
// late invalidation would show), else a live one.
func (k *soak) pick() *soakSession {
	k.mu.Lock()
	defer k.mu.Unlock()
	if n := len(k.dead); n > 0 && rand.IntN(10) == 0 {
		if rand.IntN(2) == 0 {
			return k.dead[n-1-rand.IntN(min(n, 10))]
		}
		return k.dead[rand.IntN(n)]
	}
	return k.live[rand.IntN(len(k.live))]
}

// logoutOne logs a random live session out, alternately through POST
// /logout (authz's endpoint, through Nginx) and the way an Express app
// does (DEL, then PUBLISH), and replaces it with a new login.
func (k *soak) logoutOne(ctx context.Context, c *http.Client, pub *logout.Publisher, viaEndpoint bool) error {
	k.mu.Lock()
	i := rand.IntN(len(k.live))
	ss := k.live[i]
	k.live[i] = k.live[len(k.live)-1]
	k.live = k.live[:len(k.live)-1]
	k.mu.Unlock()
	ss.state.Store(stateDying)
	var err error
	if viaEndpoint {
		err = k.endpointLogout(ctx, c, ss)
	} else {
		if err = k.site.rdb.Del(ctx, "sess:"+ss.sid).Err(); err == nil {
			_, err = pub.Publish(ctx, logout.Event{Kind: logout.KindSession, Session: ss.sid})
		}
	}
	if err != nil {
		return err
	}
	ss.deadAt.Store(time.Now().UnixNano())
	ss.state.Store(stateDead)
	k.mu.Lock()
	k.dead = append(k.dead, ss)
	if len(k.dead) > 1000 {
		k.dead = k.dead[len(k.dead)-1000:] // keep asking about the recent ones
	}
	k.mu.Unlock()
	k.addSession()
	return nil
}

func (k *soak) endpointLogout(ctx context.Context, c *http.Client, ss *soakSession) error {
	req, err := http.NewRequestWithContext(ctx, "POST", k.site.nginx.URL("/logout"), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Cookie", ss.cookie)
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("POST /logout: status %d", resp.StatusCode)
	}
	return nil
}

// soakInterval collects one interval's answers.
type soakInterval struct {
	mu        sync.Mutex
	latencies []time.Duration
	errs      map[string]int
	requests  int
	stale     int
	staleAges []time.Duration
	logouts   int
}

// add records one answer; staleAge > 0 marks a stale allow, sent that
// long after the logout completed.
func (iv *soakInterval) add(lat time.Duration, kind string, staleAge time.Duration) {
	iv.mu.Lock()
	defer iv.mu.Unlock()
	iv.requests++
	if kind != "" {
		iv.errs[kind]++
	}
	if staleAge > 0 {
		iv.stale++
		iv.staleAges = append(iv.staleAges, staleAge)
	}
	iv.latencies = append(iv.latencies, lat)
}

// one sends a request for ss (or without a cookie when ss is nil) and
// classifies the answer: kind "" when it is right; staleAge > 0 for an
// allow of a session logged out that long before the request was sent.
func (k *soak) one(ctx context.Context, c *http.Client, ss *soakSession) (kind string, staleAge time.Duration) {
	req, err := http.NewRequestWithContext(ctx, "GET", k.site.nginx.URL("/orders?page=2"), nil)
	if err != nil {
		return "request", 0
	}
	state, sent := stateLive, time.Now().UnixNano()
	if ss != nil {
		req.Header.Set("Cookie", ss.cookie)
		state = int(ss.state.Load())
		if state == stateDead && ss.deadAt.Load() > sent {
			state = stateDying
		}
	}
	resp, err := c.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return "", 0 // the run ended under it
		}
		var ne interface{ Timeout() bool }
		if errors.As(err, &ne) && ne.Timeout() {
			return "timeout", 0
		}
		return "transport", 0
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	allowed := resp.StatusCode == http.StatusOK
	switch {
	case resp.StatusCode >= 500:
		return "status " + strconv.Itoa(resp.StatusCode), 0
	case ss == nil:
		if resp.StatusCode != http.StatusFound {
			return "anonymous not sent to login", 0
		}
	case state == stateDead:
		k.deadAsked.Add(1)
		if allowed {
			return "", max(time.Duration(sent-ss.deadAt.Load()), 1)
		}
		if resp.StatusCode != http.StatusFound {
			return "logged-out: status " + strconv.Itoa(resp.StatusCode), 0
		}
	case state == stateDying:
		// Either answer is right while the logout is under way.
	case !allowed:
		return "live session denied: status " + strconv.Itoa(resp.StatusCode), 0
	case !strings.Contains(string(b), `"X-Auth-User":["`+ss.user+`"]`):
		return "wrong identity", 0
	}
	return "", 0
}

// soakResult is the report.
type soakResult struct {
	cfg       soakConfig
	elapsed   time.Duration
	intervals []soakIntervalRow
	errs      map[string]int
	requests  int
	stale     int
	staleAges []time.Duration
	logouts   int
	deadAsked int
	skipped   int64
	procs     []soakProc
}

type soakIntervalRow struct {
	at               time.Duration
	requests, errors int
	stale, logouts   int
	p50, p99, max    time.Duration
	rss, goroutines  []float64 // per authz, at the end of the interval
	heapGoal         []float64 // per authz: the heap size of the next GC
}

type soakProc struct {
	addr                  string
	rssStart, rssEnd      float64
	goStart, goEnd        float64
	rssWarm               float64
	verifyOK, verifyOther float64
}

func (r *soakResult) errorCount() int {
	n := 0
	for _, c := range r.errs {
		n += c
	}
	return n
}

func (r *soakResult) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nauthz soak: %v at %d req/s through nginx -> 2 authz -> app, %d logouts/s, %d live sessions\n",
		r.elapsed.Round(time.Second), r.cfg.rate, r.cfg.logoutRate, r.cfg.sessions)
	fmt.Fprintf(&b, "requests %d (%.0f/s), errors %d, stale allows %d, logouts %d, requests not sent in time (generator behind) %d\n",
		r.requests, float64(r.requests)/r.elapsed.Seconds(), r.errorCount(), r.stale, r.logouts, r.skipped)
	fmt.Fprintf(&b, "requests for sessions whose logout had completed: %d, of which allowed (stale): %d\n", r.deadAsked, r.stale)
	if len(r.staleAges) > 0 {
		slices.Sort(r.staleAges)
		fmt.Fprintf(&b, "stale allows were sent %v to %v after their logout completed\n", r.staleAges[0], r.staleAges[len(r.staleAges)-1])
	}
	if len(r.errs) > 0 {
		kinds := make([]string, 0, len(r.errs))
		for k := range r.errs {
			kinds = append(kinds, k)
		}
		slices.Sort(kinds)
		for _, k := range kinds {
			fmt.Fprintf(&b, "  error %-40s %d\n", k, r.errs[k])
		}
	}
	fmt.Fprintf(&b, "\n%8s %9s %7s %6s %8s %9s %9s %9s  %s\n", "at", "requests", "errors", "stale", "logouts", "p50", "p99", "max", "per authz: RSS MB / heap goal MB / goroutines")
	for _, iv := range r.intervals {
		fmt.Fprintf(&b, "%8v %9d %7d %6d %8d %9s %9s %9s ", iv.at.Round(time.Second), iv.requests, iv.errors, iv.stale, iv.logouts,
			ms(iv.p50), ms(iv.p99), ms(iv.max))
		for i := range iv.rss {
			fmt.Fprintf(&b, "  %5.1f/%4.1f/%-3.0f", iv.rss[i]/1e6, iv.heapGoal[i]/1e6, iv.goroutines[i])
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "\n%-16s %14s %14s %14s %8s %12s %12s\n", "authz", "RSS start", "RSS warm", "RSS end", "growth", "goroutines", "verify ok/other")
	for _, p := range r.procs {
		fmt.Fprintf(&b, "%-16s %12.1f MB %12.1f MB %12.1f MB %+7.1f%% %5.0f -> %-4.0f %8.0f/%.0f\n", p.addr,
			p.rssStart/1e6, p.rssWarm/1e6, p.rssEnd/1e6, 100*(p.rssEnd-p.rssWarm)/p.rssWarm, p.goStart, p.goEnd, p.verifyOK, p.verifyOther)
	}
	fmt.Fprintf(&b, "RSS growth: from \"warm\" (the first interval ending after a fifth of the run) to the end; \"start\" is before any load.\n"+
		"Heap goal: the heap size at which the next GC runs (with GOGC=400, five times the live heap, 16 MB at least).\n")
	return b.String()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000) }

// run drives the load for cfg.duration and collects the report. The
// request schedule is fixed (cfg.rate a second, open loop): a request the
// workers cannot take in time is counted as skipped, not queued.
func (k *soak) run(t *testing.T, authzs []*testenv.Authz) *soakResult {
	cfg := k.cfg
	res := &soakResult{cfg: cfg, errs: map[string]int{}}
	for _, a := range authzs {
		res.procs = append(res.procs, soakProc{addr: a.Addr,
			rssStart: metric(t, a, "process_resident_memory_bytes"), goStart: metric(t, a, "go_goroutines")})
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.duration)
	defer cancel()
	tr := &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	newInterval := func() *soakInterval { return &soakInterval{errs: map[string]int{}} }
	var cur atomic.Pointer[soakInterval]
	cur.Store(newInterval())

	// Workers take requests from jobs; the scheduler never waits for them.
	jobs := make(chan struct{}, 64)
	var skipped atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for range jobs {
				var ss *soakSession
				if rand.IntN(50) != 0 { // one in fifty without a cookie
					ss = k.pick()
				}
				start := time.Now()
				kind, staleAge := k.one(ctx, c, ss)
				if ctx.Err() != nil {
					return
				}
				cur.Load().add(time.Since(start), kind, staleAge)
			}
		})
	}
	// Logouts, at their own rate.
	pub, err := logout.NewPublisher(k.site.rdb, logout.PublisherConfig{Origin: "soak"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() {
		tick := time.NewTicker(time.Second / time.Duration(max(cfg.logoutRate, 1)))
		defer tick.Stop()
		for i := 0; cfg.logoutRate > 0; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			err := k.logoutOne(ctx, c, pub, i%2 == 0)
			iv := cur.Load()
			iv.mu.Lock()
			if err != nil && ctx.Err() == nil {
				iv.errs["logout: "+err.Error()]++
			} else if err == nil {
				iv.logouts++
			}
			iv.mu.Unlock()
		}
	})

	// The scheduler: every millisecond, what is due.
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	nextReport := start.Add(cfg.interval)
	var sent int64
	warm := false
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case now := <-tick.C:
			for due := int64(now.Sub(start).Seconds()*float64(cfg.rate)) - sent; due > 0; due-- {
				select {
				case jobs <- struct{}{}:
				default:
					skipped.Add(1)
				}
				sent++
			}
			if now.After(nextReport) {
				row := res.addInterval(cur.Swap(newInterval()), now.Sub(start))
				for _, a := range authzs {
					row.rss = append(row.rss, metric(t, a, "process_resident_memory_bytes"))
					row.goroutines = append(row.goroutines, metric(t, a, "go_goroutines"))
					row.heapGoal = append(row.heapGoal, metric(t, a, "go_memstats_next_gc_bytes"))
				}
				nextReport = nextReport.Add(cfg.interval)
				// Caches and connection pools fill in the first minutes:
				// growth counts from a fifth of the way in.
				if !warm && now.Sub(start) >= cfg.duration/5 {
					warm = true
					for i := range authzs {
						res.procs[i].rssWarm = row.rss[i]
					}
				}
			}
		}
	}
	tick.Stop()
	close(jobs)
	wg.Wait()
	res.elapsed = time.Since(start)
	if iv := cur.Load(); iv.requests > 0 {
		res.addInterval(iv, res.elapsed)
	}
	res.skipped = skipped.Load()
	res.deadAsked = int(k.deadAsked.Load())
	for i, a := range authzs {
		p := &res.procs[i]
		p.rssEnd = metric(t, a, "process_resident_memory_bytes")
		p.goEnd = metric(t, a, "go_goroutines")
		if p.rssWarm == 0 {
			p.rssWarm = p.rssStart
		}
		total := metric(t, a, "authz_verify_requests_total")
		p.verifyOK = metricLabel(t, a, "authz_verify_requests_total", `reason="ok"`)
		p.verifyOther = total - p.verifyOK
	}
	return res
}

func (r *soakResult) addInterval(iv *soakInterval, at time.Duration) *soakIntervalRow {
	iv.mu.Lock()
	defer iv.mu.Unlock()
	row := soakIntervalRow{at: at, requests: iv.requests, stale: iv.stale, logouts: iv.logouts}
	for k, c := range iv.errs {
		r.errs[k] += c
		row.errors += c
	}
	if len(iv.latencies) > 0 {
		slices.Sort(iv.latencies)
		q := func(p float64) time.Duration { return iv.latencies[int(p*float64(len(iv.latencies)-1))] }
		row.p50, row.p99, row.max = q(0.50), q(0.99), iv.latencies[len(iv.latencies)-1]
	}
	r.requests += iv.requests
	r.stale += iv.stale
	r.staleAges = append(r.staleAges, iv.staleAges...)
	r.logouts += iv.logouts
	r.intervals = append(r.intervals, row)
	return &r.intervals[len(r.intervals)-1]
}

// metricLabel sums the samples of name whose labels contain label.
func metricLabel(t *testing.T, a *testenv.Authz, name, label string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + a.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", a.MetricsAddr, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, name+"{") || !strings.Contains(line, label) {
			continue
		}
		if v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64); err == nil {
			total += v
		}
	}
	return total
}

func soakEnvDuration(t *testing.T, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		t.Fatalf("%s=%q: want a duration such as 5m", name, v)
	}
	return d
}

func soakEnvInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a whole number", name, v)
	}
	return n
}
