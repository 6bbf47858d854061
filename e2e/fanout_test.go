package e2e

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/internal/testenv"
	"github.com/redis/go-redis/v9"
)

// BenchmarkTrackingFanout compares what the tracking modes cost as a site
// grows: N authz instances on one Redis (or on a 3-master Cluster), each
// serving a share of the users (a steady verify load of FANOUT_VERIFY
// requests/s across the site, each instance asked about its own slice of
// the live sessions), while writers touch sessions (EXPIRE, what
// express-session's touch does) at a fixed rate. Every row first runs
// FANOUT_WARMUP seconds (5: one default cache TTL, so the caches are in
// their steady state) of the same load unmeasured, then FANOUT_SECONDS
// measured; after the load stops it waits (bounded) for the invalidations
// of the measured writes to arrive. Per instance it reports the
// invalidation messages and keys, the cache misses and hit ratio and the
// CPU used, and Redis's own CPU; in reads mode also the tracking entries
// Redis held at the window's start (INFO tracking_total_items, per
// instance): each entry and each miss can bring at most one message, so
// messages ≤ misses + those entries, which the row checks. Run it once
// (make bench-fanout):
//
//	go test -run '^$' -bench TrackingFanout -benchtime 1x -timeout 30m ./e2e/
//
// FANOUT_MODES (reads,bcast,cluster: cluster is reads mode on a 3-master
// Cluster), FANOUT_INSTANCES, FANOUT_CLUSTER_INSTANCES, FANOUT_RATES and
// FANOUT_SESSIONS (comma-separated lists), FANOUT_VERIFY, FANOUT_WARMUP and
// FANOUT_SECONDS change the grid; FANOUT_WRITERS (8) is how many writer
// connections send the writes (per master on a cluster).
func BenchmarkTrackingFanout(b *testing.B) {
	modes := strings.Split(envString("FANOUT_MODES", "reads,bcast,cluster"), ",")
	instances := envInts(b, "FANOUT_INSTANCES", []int{4, 8, 16})
	clusterInstances := envInts(b, "FANOUT_CLUSTER_INSTANCES", []int{4, 16})
	rates := envInts(b, "FANOUT_RATES", []int{0, 2000, 20000, 50000})
	sessionCounts := envInts(b, "FANOUT_SESSIONS", []int{10000, 100000})
	warm := time.Duration(envInts(b, "FANOUT_WARMUP", []int{5})[0]) * time.Second
	secs := envInts(b, "FANOUT_SECONDS", []int{3})[0]
	writers := max(1, envInts(b, "FANOUT_WRITERS", []int{8})[0])
	verifyRate := envInts(b, "FANOUT_VERIFY", []int{2000})[0]
	// Many processes share the machine with Redis and the writer: one
	// thread each, as a small container would give them.
	b.Setenv("GOMAXPROCS", "1")
	maxSessions := slices.Max(sessionCounts)
	sids := make([]string, maxSessions)
	cookies := make([]string, maxSessions)
	for i := range sids {
		sids[i] = newSID()
		cookies[i] = "connect.sid=" + authz.Sign(sids[i], testenv.SessionSecret)
	}
	began := time.Now()
	var table []string
	for _, mode := range modes {
		ns := instances
		if mode == "cluster" {
			ns = clusterInstances
		}
		for _, n := range ns {
			site := startFanoutSite(b, mode, n, sids)
			for _, sessions := range sessionCounts {
				var idle float64 // CPU per instance of the row without writes
				for _, rate := range rates {
					b.Run(fmt.Sprintf("mode=%s/instances=%d/sessions=%d/writes=%d", mode, n, sessions, rate), func(b *testing.B) {
						row := site.run(b, sids[:sessions], cookies[:sessions], rate, verifyRate, writers, warm, time.Duration(secs)*time.Second)
						if rate == 0 {
							idle = row.cpu
						}
						b.ReportMetric(row.wps, "writes/s")
						b.ReportMetric(row.msgs, "msgs/s/inst")
						b.ReportMetric(row.misses, "misses/s/inst")
						b.ReportMetric(row.hit, "hit%")
						b.ReportMetric(row.cpu, "cpu%/inst")
						b.ReportMetric(row.redisCPU, "redis-cpu%")
						table = append(table, row.line(mode, n, sessions, rate, idle))
					})
				}
			}
		}
	}
	fmt.Printf("\nTracking fan-out: %d s warm-up + %d s measured per row, %d verifies/s across the site (each instance its own share of the sessions), "+
		"%d writer connections (per master on a cluster), GOMAXPROCS=1 per authz; grid took %s\n"+
		"| mode | instances | sessions | target writes/s | writes/s | verifies/s | msgs/s per instance | keys/s per instance | misses/s per instance | "+
		"msgs − misses per instance (window) | tracked at start per instance | msgs ≤ misses + tracked | hit ratio | CPU per instance | over 0 writes | Redis CPU | drops |\n"+
		"| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n%s\n",
		int(warm.Seconds()), secs, verifyRate, writers, time.Since(began).Round(time.Second), strings.Join(table, "\n"))
}

// fanoutSite is one deployment of the grid: its Redis nodes (one, or a
// Cluster's masters) and its authz instances.
type fanoutSite struct {
	mode  string
	nodes []*testenv.Redis
	as    []*testenv.Authz
	rdb   redis.Cmdable
	route []int // node index of each session's key (nil: one node)
}

func startFanoutSite(b *testing.B, mode string, n int, sids []string) *fanoutSite {
	b.Helper()
	s := &fanoutSite{mode: mode}
	var url string
	flags := []string{"--log-level", "warn", "--tracking=true"}
	if mode == "cluster" {
		c := testenv.StartCluster(b)
		s.nodes, url, s.rdb = c.Nodes, c.URL(), c.Client()
		flags = append(flags, "--tracking-mode", "reads")
	} else {
		r := testenv.StartRedis(b)
		s.nodes, url, s.rdb = []*testenv.Redis{r}, r.URL(), r.Client()
		flags = append(flags, "--tracking-mode", mode)
	}
	for range n {
		s.as = append(s.as, testenv.StartAuthz(b, url, flags...))
	}
	for _, a := range s.as {
		testenv.WaitFor(b, 20*time.Second, "tracking on "+a.Addr, func() bool {
			return metricB(b, a, "authz_tracking_enabled") == 1 && (mode == "cluster" || metricB(b, a, "authz_logout_subscribed") == 1)
		})
	}
	ctx := context.Background()
	for i := 0; i < len(sids); i += 10000 {
		pipe := s.rdb.Pipeline()
		for j := i; j < min(i+10000, len(sids)); j++ {
			pipe.Set(ctx, "sess:"+sids[j], `{"cookie":{"originalMaxAge":3600000},"passport":{"user":"u`+strconv.Itoa(j)+`"}}`, time.Hour)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatalf("store sessions: %v", err)
		}
	}
	if mode == "cluster" {
		s.route = clusterRoute(b, s.nodes, sids)
	}
	return s
}

// clusterRoute says which node holds each session's key, from CLUSTER
// KEYSLOT (pipelined) and CLUSTER SLOTS, so the writers can send each
// EXPIRE straight to its master.
func clusterRoute(b *testing.B, nodes []*testenv.Redis, sids []string) []int {
	b.Helper()
	ctx := context.Background()
	rc := redis.NewClient(&redis.Options{Addr: nodes[0].Addr})
	defer rc.Close()
	owner := make([]int, 16384)
	slots, err := rc.ClusterSlots(ctx).Result()
	if err != nil {
		b.Fatalf("CLUSTER SLOTS: %v", err)
	}
	for _, sr := range slots {
		idx := slices.IndexFunc(nodes, func(r *testenv.Redis) bool { return len(sr.Nodes) > 0 && r.Addr == sr.Nodes[0].Addr })
		if idx < 0 {
			b.Fatalf("CLUSTER SLOTS names %v, not one of the nodes", sr.Nodes)
		}
		for sl := sr.Start; sl <= sr.End; sl++ {
			owner[sl] = idx
		}
	}
	pipe := rc.Pipeline()
	cmds := make([]*redis.IntCmd, len(sids))
	for i, sid := range sids {
		cmds[i] = pipe.ClusterKeySlot(ctx, "sess:"+sid)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		b.Fatalf("CLUSTER KEYSLOT: %v", err)
	}
	route := make([]int, len(sids))
	for i, c := range cmds {
		route[i] = owner[c.Val()]
	}
	return route
}

// fanoutRow is one row's figures, per instance and per second of the
// measured window.
type fanoutRow struct {
	wps, vps, msgs, keys, misses, hit, cpu, redisCPU float64 // vps: verifies answered per second, site-wide
	excess, tracked                                  float64 // counts over the window, per instance; tracked < 0: not known (BCAST)
	drops                                            float64
	drained                                          bool // false: invalidations still arriving 15 s after the load
}

func (r fanoutRow) line(mode string, n, sessions, rate int, idle float64) string {
	tracked, holds := "—", "—"
	if r.tracked >= 0 {
		tracked = fmt.Sprintf("%.0f", r.tracked)
		holds = "yes"
		if r.excess > r.tracked {
			holds = "**no**"
		}
	}
	over := "—"
	if rate > 0 {
		over = fmt.Sprintf("%+.1f %%", r.cpu-idle)
	}
	late := ""
	if !r.drained {
		late = " (still arriving 15 s after the load)"
	}
	return fmt.Sprintf("| %s | %d | %d | %d | %.0f | %.0f | %.0f | %.0f%s | %.0f | %.0f | %s | %s | %.0f %% | %.1f %% | %s | %.1f %% | %.0f |",
		mode, n, sessions, rate, r.wps, r.vps, r.msgs, r.keys, late, r.misses, r.excess, tracked, holds, r.hit, r.cpu, over, r.redisCPU, r.drops)
}

// run runs one row: warm-up and measured window under the same load, then
// the wait for the window's invalidations.
func (s *fanoutSite) run(b *testing.B, sids, cookies []string, rate, verifyRate, writers int, warm, d time.Duration) fanoutRow {
	b.Helper()
	start := time.Now()
	w := startWriters(b, s.nodes, s.route, sids, rate, writers, start, warm+d)
	verified := make(chan int64, 1)
	go func() { verified <- paceVerifies(s.as, cookies, verifyRate, warm+d) }()
	waitUntil(start.Add(warm))
	t0, w0 := time.Now(), w.acked.Load()
	before := fanoutSample(b, s.nodes, s.as)
	tracked := float64(trackingItems(b, s.nodes))
	<-verified
	w.wait(b)
	t1, w1 := time.Now(), w.ackedAtEnd
	end := fanoutSample(b, s.nodes, s.as)
	// Invalidations still on their way are part of the window's cost:
	// wait until the stream has gone quiet for 100 ms, at most 15 s (past
	// that the row is marked: Redis or the instances could not keep up).
	after, drained := end, false
	tick := time.NewTicker(100 * time.Millisecond)
	for deadline := time.Now().Add(15 * time.Second); !drained && time.Now().Before(deadline); {
		<-tick.C
		prev := after.keys
		after = fanoutSample(b, s.nodes, s.as)
		drained = after.keys == prev
	}
	tick.Stop()
	n := float64(len(s.as))
	el := t1.Sub(t0).Seconds()
	dd := end.sub(before)
	msgs, keys := after.msgs-before.msgs, after.keys-before.keys
	row := fanoutRow{
		wps:      float64(w1-w0) / el,
		vps:      (dd.hits + dd.misses) / el,
		msgs:     msgs / n / el,
		keys:     keys / n / el,
		misses:   dd.misses / n / el,
		hit:      100 * safeDiv(dd.hits, dd.hits+dd.misses),
		cpu:      100 * dd.cpu.Seconds() / n / el,
		redisCPU: 100 * dd.redisCPU.Seconds() / el,
		excess:   (msgs - dd.misses) / n,
		tracked:  tracked / n,
		drops:    after.drops - before.drops,
		drained:  drained,
	}
	if s.mode == "bcast" {
		row.tracked = -1
	}
	return row
}

// waitUntil blocks until t (a pacing point of the load, not a
// synchronisation: the load runs on its own clock).
func waitUntil(t time.Time) {
	if d := time.Until(t); d > 0 {
		<-time.After(d)
	}
}

// trackingItems is Redis's count of (client, key) tracking entries, summed
// over the nodes: each can bring one invalidation message.
func trackingItems(b *testing.B, nodes []*testenv.Redis) int64 {
	b.Helper()
	var total int64
	for _, r := range nodes {
		rc := redis.NewClient(&redis.Options{Addr: r.Addr})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		info, err := rc.Info(ctx, "stats").Result()
		cancel()
		rc.Close()
		if err != nil {
			b.Fatalf("INFO stats on %s: %v", r.Addr, err)
		}
		for _, line := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(line, "tracking_total_items:"); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				total += n
			}
		}
	}
	return total
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

// fanoutSample reads every instance's counters (one scrape each, all at
// once, so the sample is close to one moment even when the instances are
// busy) and the CPU time of every process.
func fanoutSample(b *testing.B, nodes []*testenv.Redis, as []*testenv.Authz) fanoutStats {
	b.Helper()
	names := []string{"authz_tracking_messages_total", "authz_tracking_invalidated_keys_total",
		"authz_logout_subscription_drops_total", "authz_cache_hits_total", "authz_cache_misses_total"}
	vals := make([]map[string]float64, len(as))
	errs := make([]error, len(as))
	var wg sync.WaitGroup
	for i, a := range as {
		wg.Go(func() { vals[i], errs[i] = scrape(a.MetricsAddr, names) })
	}
	wg.Wait()
	var s fanoutStats
	for i, a := range as {
		if errs[i] != nil {
			b.Fatal(errs[i])
		}
		v := vals[i]
		s.msgs += v[names[0]]
		s.keys += v[names[1]]
		s.drops += v[names[2]]
		s.hits += v[names[3]]
		s.misses += v[names[4]]
		t, err := testenv.CPUTime(a.Pid())
		if err != nil {
			b.Fatal(err)
		}
		s.cpu += t
	}
	for _, r := range nodes {
		t, err := testenv.CPUTime(r.Pid())
		if err != nil {
			b.Fatal(err)
		}
		s.redisCPU += t
	}
	return s
}

// scrape reads the named metrics (summed over their labels) from one
// /metrics page.
func scrape(addr string, names []string) (map[string]float64, error) {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", addr, err)
	}
	defer resp.Body.Close()
	out := make(map[string]float64, len(names))
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		for _, name := range names {
			if strings.HasPrefix(line, name+" ") || strings.HasPrefix(line, name+"{") {
				if v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64); err == nil {
					out[name] += v
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("scrape %s: %w", addr, err)
	}
	return out, nil
}

// fanoutWriters send session touches (EXPIRE) at a fixed rate over raw
// connections: the commands due at each millisecond tick go out in one
// write per connection (a pipeline of one command when the writers keep
// up, more when they fall behind), and a reader per connection counts the
// replies. This costs far less CPU per write than a client library, so the
// 2-core machine can put more of itself into Redis and authz. Writes
// round-robin over the sessions; on a cluster each goes straight to its
// key's master.
type fanoutWriters struct {
	wg         sync.WaitGroup
	acked      atomic.Int64
	ackedAtEnd int64
	errs       chan error
	conns      []net.Conn
	sent       []atomic.Int64 // per connection
	done       []chan int64   // per connection: commands sent, once the senders stop
	replies    []atomic.Int64 // per connection: replies read
}

// maxInFlight bounds the commands a connection may have unanswered: a
// writer that Redis cannot keep up with falls behind instead of queueing
// without end.
const maxInFlight = 2000

func startWriters(b *testing.B, nodes []*testenv.Redis, route []int, sids []string, rate, writers int, start time.Time, d time.Duration) *fanoutWriters {
	b.Helper()
	w := &fanoutWriters{errs: make(chan error, writers*len(nodes)*2)}
	if rate == 0 {
		return w
	}
	// conns[wi*len(nodes)+node]
	for range writers {
		for _, r := range nodes {
			c, err := net.DialTimeout("tcp", r.Addr, 5*time.Second)
			if err != nil {
				b.Fatalf("writer: %v", err)
			}
			w.conns = append(w.conns, c)
		}
	}
	w.sent = make([]atomic.Int64, len(w.conns))
	w.done = make([]chan int64, len(w.conns))
	w.replies = make([]atomic.Int64, len(w.conns))
	replies := w.replies
	for ci, c := range w.conns {
		w.done[ci] = make(chan int64, 1)
		w.wg.Go(func() {
			br := bufio.NewReaderSize(c, 64<<10)
			for {
				line, err := br.ReadSlice('\n')
				if err != nil {
					return // closed by wait
				}
				if len(line) > 0 && line[0] == '-' {
					select {
					case w.errs <- fmt.Errorf("EXPIRE: %s", strings.TrimSpace(string(line))):
					default:
					}
				}
				replies[ci].Add(1)
				w.acked.Add(1)
			}
		})
	}
	var senders sync.WaitGroup
	for wi := range writers {
		senders.Go(func() {
			share := float64(rate) / float64(writers)
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			bufs := make([][]byte, len(nodes))
			var sent int64
			i := wi
			for now := range tick.C {
				el := now.Sub(start)
				if el >= d {
					break
				}
				due := int64(el.Seconds()*share) - sent
				for due > 0 {
					k := i % len(sids)
					node := 0
					if route != nil {
						node = route[k]
					}
					ci := wi*len(nodes) + node
					if w.sent[ci].Load()-replies[ci].Load() >= maxInFlight {
						break // behind: try again at the next tick
					}
					key := "sess:" + sids[k]
					bufs[node] = fmt.Appendf(bufs[node], "*3\r\n$6\r\nEXPIRE\r\n$%d\r\n%s\r\n$4\r\n3600\r\n", len(key), key)
					w.sent[ci].Add(1)
					i += writers
					sent++
					due--
				}
				for node, buf := range bufs {
					if len(buf) == 0 {
						continue
					}
					if _, err := w.conns[wi*len(nodes)+node].Write(buf); err != nil {
						w.errs <- fmt.Errorf("writer: %w", err)
						return
					}
					bufs[node] = buf[:0]
				}
			}
		})
	}
	go func() {
		senders.Wait()
		for ci := range w.conns {
			w.done[ci] <- w.sent[ci].Load()
		}
	}()
	return w
}

// wait waits until the writers have stopped and Redis has answered every
// write sent (bounded), then closes the connections.
func (w *fanoutWriters) wait(b *testing.B) {
	b.Helper()
	for ci := range w.conns {
		sent := <-w.done[ci]
		testenv.WaitFor(b, 10*time.Second, "replies to the writes", func() bool { return w.replies[ci].Load() >= sent })
	}
	w.ackedAtEnd = w.acked.Load()
	for _, c := range w.conns {
		c.Close()
	}
	w.wg.Wait()
	select {
	case err := <-w.errs:
		b.Fatal(err)
	default:
	}
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
