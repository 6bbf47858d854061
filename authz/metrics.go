package authz

import (
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// metrics are the Verifier's Prometheus series. Labels are closed sets
// (outcome, reason, op): never a session or user id.
type metrics struct {
	requests    map[Reason]prometheus.Counter // pre-resolved: no label lookup per request
	duration    map[string]prometheus.Observer
	cacheHits   prometheus.Counter
	cacheMisses prometheus.Counter
	redisErrors *prometheus.CounterVec
	touches     prometheus.Counter
	invalidated prometheus.Counter
	tenants     prometheus.Gauge
	reloads     *prometheus.CounterVec
	bounds      *prometheus.CounterVec
	staleServed prometheus.Counter
	endedAgain  *prometheus.CounterVec
	// byFormat counts session decisions by format and outcome; each
	// tenant holds its format's counters (formatCounters).
	byFormat *prometheus.CounterVec
}

// bound counts a request that hit one of the caps (docs/configuration.md#bounds).
func (m *metrics) bound(name string) { m.bounds.WithLabelValues(name).Inc() }

// BoundCounter is the authz_bounds_hit_total series of one cap, for a
// cap enforced outside the Verifier (package frontdoor's connections,
// request_header and read_header_timeout), so that the metric has one
// registration and one closed set of labels. It panics on a name not in
// that set: a programming error, not a request's.
func (v *Verifier) BoundCounter(bound string) prometheus.Counter {
	if !slices.Contains(boundNames, bound) {
		panic("authz: unknown bound " + strconv.Quote(bound))
	}
	return v.metrics.bounds.WithLabelValues(bound)
}

// boundNames are the caps authz_bounds_hit_total counts.
var boundNames = []string{"cookie", "session", "identity_header", "answer_header", "pending_loads", "request_header", "connections", "read_header_timeout"}

func newMetrics(reg prometheus.Registerer, c *cache, rdb redis.UniversalClient, b *breakers, now func() time.Time) (*metrics, error) {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "authz_verify_requests_total",
		Help: "Verify requests by outcome (allowed, unauthenticated, forbidden, unavailable, misconfigured) and reason.",
	}, []string{"outcome", "reason"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "authz_verify_duration_seconds",
		Help:    "Time to answer a verify request, by outcome.",
		Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
	}, []string{"outcome"})
	m := &metrics{
		requests: make(map[Reason]prometheus.Counter),
		duration: make(map[string]prometheus.Observer),
		cacheHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "authz_cache_hits_total", Help: "Verify requests answered from the local cache.",
		}),
		cacheMisses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "authz_cache_misses_total", Help: "Verify requests that had to read Redis.",
		}),
		redisErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authz_redis_errors_total", Help: "Failed Redis calls by operation (load, touch, ping).",
		}, []string{"op"}),
		touches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "authz_session_touches_total", Help: "Session TTLs extended by sliding expiry.",
		}),
		invalidated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "authz_cache_invalidations_total", Help: "Cache entries dropped by logouts, tracking invalidations and flushes.",
		}),
		tenants: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "authz_tenants", Help: "Tenants configured (1 without a tenant file).",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authz_tenant_reloads_total", Help: "Tenant file reloads by result (ok, error); an error keeps the old tenants.",
		}, []string{"result"}),
	}
	m.bounds = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "authz_bounds_hit_total", Help: "Requests that hit a cap, by cap (cookie, session, identity_header, answer_header, pending_loads, request_header, connections, read_header_timeout).",
	}, []string{"bound"})
	for _, b := range boundNames {
		m.bounds.WithLabelValues(b)
	}
	m.staleServed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "authz_stale_allows_total", Help: "Allows served from a cache entry past its TTL because Redis could not be read (--stale-if-error).",
	})
	m.endedAgain = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "authz_sessions_ended_again_total", Help: "Sessions found saved back after their logout (with their revocation marker) and deleted again, by result (ok, error).",
	}, []string{"result"})
	m.byFormat = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "authz_session_format_requests_total", Help: "Verify requests a tenant decided, by its session format (express-session, client-sessions, cookie-session, fastify-session) and outcome.",
	}, []string{"format", "outcome"})
	for _, f := range Formats {
		for _, o := range outcomes {
			m.byFormat.WithLabelValues(string(f), o)
		}
	}
	m.reloads.WithLabelValues("ok")
	m.reloads.WithLabelValues("error")
	m.endedAgain.WithLabelValues("ok")
	m.endedAgain.WithLabelValues("error")
	for _, r := range allReasons {
		m.requests[r] = requests.WithLabelValues(r.Outcome(), string(r))
		m.duration[r.Outcome()] = duration.WithLabelValues(r.Outcome())
	}
	for _, op := range []string{"load", "touch", "ping"} {
		m.redisErrors.WithLabelValues(op)
	}
	cs := []prometheus.Collector{
		requests, duration, m.cacheHits, m.cacheMisses, m.redisErrors, m.touches, m.invalidated,
		m.tenants, m.reloads, m.bounds, m.staleServed, m.endedAgain, m.byFormat,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "authz_cache_entries", Help: "Entries in the local session cache, including negative ones.",
		}, func() float64 { return float64(c.len()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "authz_cache_evictions_total", Help: "Cache entries evicted because the cache was full.",
		}, func() float64 { return float64(c.evictions.Load()) }),
		poolCollector{rdb},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "authz_redis_breaker_open", Help: "1 while the Redis circuit is open (on a cluster, any master's): loads fail at once instead of after the timeout.",
		}, func() float64 {
			if b.anyOpen(now().UnixNano()) {
				return 1
			}
			return 0
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "authz_redis_breaker_opens_total", Help: "Times the Redis circuit opened after consecutive failures.",
		}, func() float64 { return float64(b.opens()) }),
	}
	for _, x := range cs {
		if err := reg.Register(x); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) observe(r Reason, d time.Duration) {
	m.requests[r].Inc()
	switch r {
	case ReasonCookieTooLarge:
		m.bound("cookie")
	case ReasonSessionTooLarge:
		m.bound("session")
	}
	m.duration[r.Outcome()].Observe(d.Seconds())
}

// outcomes are Reason.Outcome's values.
var outcomes = []string{"allowed", "unauthenticated", "forbidden", "unavailable", "misconfigured"}

// formatCounters are the byFormat counters of format f, by outcome,
// resolved once per tenant so a request does no label lookup.
func (m *metrics) formatCounters(f Format) map[string]prometheus.Counter {
	cs := make(map[string]prometheus.Counter, len(outcomes))
	for _, o := range outcomes {
		cs[o] = m.byFormat.WithLabelValues(string(f), o)
	}
	return cs
}

// poolCollector exports go-redis connection pool statistics.
type poolCollector struct{ rdb redis.UniversalClient }

var poolDescs = struct {
	hits, misses, timeouts, total, idle, stale *prometheus.Desc
}{
	hits:     prometheus.NewDesc("authz_redis_pool_hits_total", "Times a free connection was found in the pool.", nil, nil),
	misses:   prometheus.NewDesc("authz_redis_pool_misses_total", "Times no free connection was in the pool.", nil, nil),
	timeouts: prometheus.NewDesc("authz_redis_pool_timeouts_total", "Times waiting for a pool connection timed out.", nil, nil),
	total:    prometheus.NewDesc("authz_redis_pool_connections", "Connections in the pool.", nil, nil),
	idle:     prometheus.NewDesc("authz_redis_pool_idle_connections", "Idle connections in the pool.", nil, nil),
	stale:    prometheus.NewDesc("authz_redis_pool_stale_connections_total", "Stale connections removed from the pool.", nil, nil),
}

func (poolCollector) Describe(ch chan<- *prometheus.Desc) {
	d := poolDescs
	for _, x := range []*prometheus.Desc{d.hits, d.misses, d.timeouts, d.total, d.idle, d.stale} {
		ch <- x
	}
}

func (p poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := p.rdb.PoolStats()
	d := poolDescs
	ch <- prometheus.MustNewConstMetric(d.hits, prometheus.CounterValue, float64(s.Hits))
	ch <- prometheus.MustNewConstMetric(d.misses, prometheus.CounterValue, float64(s.Misses))
	ch <- prometheus.MustNewConstMetric(d.timeouts, prometheus.CounterValue, float64(s.Timeouts))
	ch <- prometheus.MustNewConstMetric(d.total, prometheus.GaugeValue, float64(s.TotalConns))
	ch <- prometheus.MustNewConstMetric(d.idle, prometheus.GaugeValue, float64(s.IdleConns))
	ch <- prometheus.MustNewConstMetric(d.stale, prometheus.CounterValue, float64(s.StaleConns))
}
