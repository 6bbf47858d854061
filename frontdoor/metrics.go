package frontdoor

import (
	"sync/atomic"

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
