package frontdoor

import (
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the front door's series: the connections open on --listen,
// and the hits of the caps it enforces (connections, request_header,
// read_header_timeout). Those hits are label values of
// authz_bounds_hit_total, which the decider registers and also counts in:
// the metric is registered once, and its counters come in through bound.
type Metrics struct {
	// conns is the connections open (Server, ConnState).
	conns                                         atomic.Int64
	connections, requestHeader, readHeaderTimeout prometheus.Counter
}

// NewMetrics registers authz_connections_open on reg and takes the
// counters of the caps the front door enforces from bound, which returns
// the authz_bounds_hit_total series of one cap (authz.Verifier's
// BoundCounter).
func NewMetrics(reg prometheus.Registerer, bound func(name string) prometheus.Counter) (*Metrics, error) {
	m := &Metrics{
		connections:       bound("connections"),
		requestHeader:     bound("request_header"),
		readHeaderTimeout: bound("read_header_timeout"),
	}
	err := reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "authz_connections_open", Help: "Connections open on --listen (at most --max-connections).",
	}, func() float64 { return float64(m.conns.Load()) }))
	if err != nil {
		return nil, err
	}
	return m, nil
}

// unregisteredMetrics counts where nobody reads: a Server made without
// Metrics.
func unregisteredMetrics() *Metrics {
	c := func() prometheus.Counter { return prometheus.NewCounter(prometheus.CounterOpts{Name: "unregistered"}) }
	return &Metrics{connections: c(), requestHeader: c(), readHeaderTimeout: c()}
}

// ConnState returns an http.Server ConnState hook that does for net/http
// (--stdlib-http) what Server does itself: it counts the connections open
// in authz_connections_open and, past max, counts the new one in
// authz_bounds_hit_total{bound="connections"} and closes the connection
// that has waited longest for a request (new or idle) to make room, or the
// new one when every other is being answered.
func ConnState(max int, m *Metrics) func(net.Conn, http.ConnState) {
	var (
		mu      sync.Mutex
		waiting = make(map[net.Conn]time.Time) // new or idle, since when
		open    int
	)
	return func(c net.Conn, st http.ConnState) {
		mu.Lock()
		defer mu.Unlock()
		switch st {
		case http.StateNew:
			m.conns.Add(1)
			open++
			waiting[c] = time.Now()
			if open > max {
				m.connections.Inc()
				// The new connection waits least: it is closed only when
				// no other is waiting. The server reads from the closed
				// one, fails, and reports StateClosed.
				oldest, since := c, time.Time{}
				for o, t := range waiting {
					if o != c && (oldest == c || t.Before(since)) {
						oldest, since = o, t
					}
				}
				delete(waiting, oldest)
				oldest.Close()
			}
		case http.StateIdle:
			waiting[c] = time.Now()
		case http.StateActive:
			delete(waiting, c)
		case http.StateClosed, http.StateHijacked:
			delete(waiting, c)
			m.conns.Add(-1)
			open--
		}
	}
}
