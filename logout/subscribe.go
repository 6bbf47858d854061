package logout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// InvalidateChannel is where Redis sends key invalidations to a RESP2
// connection that tracking redirects to.
const InvalidateChannel = "__redis__:invalidate"

// Handler applies what a Subscriber hears. The Subscriber calls it from one
// goroutine, one call at a time, so calls should be quick.
type Handler interface {
	// Logout applies one logout event.
	Logout(Event)
	// KeysChanged reports keys Redis says were written, deleted or expired
	// (server-assisted invalidation). nil means every key (FLUSHALL).
	KeysChanged(keys []string)
	// Subscribed reports whether the subscription is live. On false, events
	// may be lost from now on: drop everything cached and cache nothing.
	// On true, drop everything once more (a read that raced the outage may
	// have cached something stale) and cache again.
	Subscribed(live bool)
}

// SubscriberConfig configures a Subscriber; zero fields take their defaults.
type SubscriberConfig struct {
	Channel string // default DefaultChannel
	// Heartbeat: when the subscription has been silent this long the
	// subscriber pings; no answer within another Heartbeat and it counts as
	// down (default 1s). It bounds how long a silently dead connection goes
	// unnoticed.
	Heartbeat time.Duration
	// MaxBackoff caps the wait between reconnection attempts (default 1s).
	MaxBackoff time.Duration
	Logger     *slog.Logger
	Now        func() time.Time
	// Sentinel, for a Subscriber on a FailoverClient, names the sentinels
	// to watch for +switch-master. go-redis moves commands to a new master
	// but leaves a subscription on the old one, which may live on as a
	// replica; on a switch the Subscriber resubscribes (Subscribed(false),
	// then Subscribed(true) from the new master). The client's Dialer
	// should refuse what DialCheck refuses: go-redis asks one sentinel
	// where the master is, and it may not have heard yet of a switch
	// another announced. Only MasterName,
	// SentinelAddrs, SentinelUsername, SentinelPassword, TLSConfig and
	// DialTimeout are used.
	Sentinel *redis.FailoverOptions
	// InvalidationsOnly subscribes to InvalidateChannel alone, not to
	// Channel: a per-node invalidation connection on a cluster
	// (ClusterTracking), where logout events come through another
	// Subscriber.
	InvalidationsOnly bool
}

// Subscriber listens for logout events (and tracking invalidations) and
// hands them to a Handler.
type Subscriber struct {
	rdb redis.UniversalClient
	h   Handler
	cfg SubscriberConfig
	m   subMetrics

	mu sync.Mutex
	ps *redis.PubSub // the current subscription, for restart
	// master is the Sentinel master's address as last learned (from a
	// sentinel or a +switch-master), "" before that; masters every
	// address ever learned as the master's.
	master  string
	masters map[string]bool
	// liveNow is true from Subscribed(true) until the first report of
	// the loss (connLost or Run), so the Handler hears of it once.
	liveNow atomic.Bool
}

type subMetrics struct {
	received     *prometheus.CounterVec
	rejected     *prometheus.CounterVec
	ignored      *prometheus.CounterVec
	propagation  prometheus.Histogram
	connects     prometheus.Counter
	drops        prometheus.Counter
	live         prometheus.Gauge
	invalidated  prometheus.Counter
	flushes      prometheus.Counter
	trackingMsgs prometheus.Counter
}

// NewSubscriber returns a Subscriber reading through rdb. For tracking
// invalidations rdb must speak RESP2 and carry a Tracking hook (see
// Tracking); without them it still delivers logout events. It adds a dial
// hook to rdb (on a cluster client, to each node's client) that watches
// the subscription's own connections, so that their loss turns the cache
// off before go-redis has reconnected (connwatch.go).
func NewSubscriber(rdb redis.UniversalClient, h Handler, cfg SubscriberConfig, reg prometheus.Registerer) (*Subscriber, error) {
	if cfg.Channel == "" {
		cfg.Channel = DefaultChannel
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m := subMetrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authz_logout_events_received_total", Help: "Logout events received and applied, by kind.",
		}, []string{"kind"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authz_logout_events_rejected_total", Help: "Messages on the logout channel that were not valid events, by reason.",
		}, []string{"reason"}),
		ignored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authz_logout_event_fields_ignored_total", Help: "Optional fields of logout events that could not be read and were left out (the event still applied), by field.",
		}, []string{"field"}),
		propagation: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "authz_logout_propagation_seconds",
			Help:    "Time from a logout event's time to its being applied here.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
		}),
		connects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "authz_logout_subscription_connects_total", Help: "Times the logout subscription was (re)established.",
		}),
		drops: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "authz_logout_subscription_drops_total", Help: "Times the logout subscription was lost (the cache was flushed and bypassed until it came back).",
		}),
		live: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "authz_logout_subscribed", Help: "1 while the logout subscription is live.",
		}),
		invalidated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "authz_tracking_invalidated_keys_total", Help: "Keys Redis reported changed through server-assisted invalidation.",
		}),
		flushes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "authz_tracking_flushes_total", Help: "FLUSHALL/FLUSHDB reported through server-assisted invalidation.",
		}),
		trackingMsgs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "authz_tracking_messages_total", Help: "Invalidation messages received.",
		}),
	}
	for _, r := range []string{"not_json", "version", "kind", "missing_id", "too_big"} {
		m.rejected.WithLabelValues(r)
	}
	for _, f := range []string{"time", "origin"} {
		m.ignored.WithLabelValues(f)
	}
	for _, k := range []Kind{KindSession, KindUser, KindToken} {
		m.received.WithLabelValues(string(k))
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.received, m.rejected, m.ignored, m.propagation, m.connects, m.drops, m.live, m.invalidated, m.flushes, m.trackingMsgs} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	s := &Subscriber{rdb: rdb, h: h, cfg: cfg, m: m}
	s.watchDials(rdb)
	return s, nil
}

// Run subscribes and delivers until ctx ends, reconnecting with backoff
// whenever the subscription is lost. It reports Subscribed(false) first, so
// nothing is cached before the subscription is live.
func (s *Subscriber) Run(ctx context.Context) error {
	s.h.Subscribed(false)
	if s.cfg.Sentinel != nil {
		done := make(chan struct{})
		go func() { s.followSentinel(ctx); close(done) }()
		defer func() { <-done }()
	}
	backoff := 10 * time.Millisecond
	for {
		live, err := s.subscribe(ctx)
		if live {
			s.m.drops.Inc()
			s.m.live.Set(0)
			if s.liveNow.Swap(false) {
				s.h.Subscribed(false)
			}
			backoff = 10 * time.Millisecond
		}
		if ctx.Err() != nil {
			return nil
		}
		s.cfg.Logger.Warn("logout subscription lost; local cache flushed and bypassed until it is back", "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(2*backoff, s.cfg.MaxBackoff)
	}
}

// subscribe runs one subscription until it fails; live reports whether it
// got as far as Subscribed(true).
func (s *Subscriber) subscribe(ctx context.Context) (live bool, err error) {
	// Marks the PubSub's dials for the connection watch (connwatch.go).
	ctx = context.WithValue(ctx, subCtxKey{}, s)
	ps := s.rdb.Subscribe(ctx)
	defer ps.Close()
	s.mu.Lock()
	s.ps = ps
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.ps = nil
		s.mu.Unlock()
	}()
	// ReceiveTimeout does not watch ctx; closing the subscription does end
	// it, so shutdown does not wait out a heartbeat.
	stop := context.AfterFunc(ctx, func() { ps.Close() })
	defer stop()
	channels := []string{s.cfg.Channel, InvalidateChannel}
	if s.cfg.InvalidationsOnly {
		channels = channels[1:]
	}
	if err := ps.Subscribe(ctx, channels...); err != nil {
		return false, fmt.Errorf("subscribe to %s: %w", strings.Join(channels, ", "), err)
	}
	pending := len(channels) // confirmations before the subscription counts as live
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, s.cfg.Heartbeat)
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return live, ctx.Err()
			case isTimeout(err) && !pinged:
				if err := ps.Ping(ctx); err != nil {
					return live, fmt.Errorf("ping subscription: %w", err)
				}
				pinged = true
				continue
			case isTimeout(err):
				return live, fmt.Errorf("subscription silent for %v after a ping", 2*s.cfg.Heartbeat)
			case isNullPayload(err):
				// FLUSHALL/FLUSHDB: tracking reports it with a null
				// payload, which go-redis cannot parse as a message.
				s.m.flushes.Inc()
				s.h.KeysChanged(nil)
				continue
			}
			return live, fmt.Errorf("receive: %w", err)
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				if pending--; pending == 0 {
					live = true
					s.m.connects.Inc()
					s.m.live.Set(1)
					s.h.Subscribed(true)
					s.liveNow.Store(true)
					s.cfg.Logger.Info("logout subscription live", "channels", strings.Join(channels, ","))
				}
			}
		case *redis.Message:
			s.deliver(m)
		}
	}
}

// restart ends the current subscription, if any; Run then subscribes
// again, through a new connection.
//
// Close runs outside s.mu: it waits for the subscription's own lock, which a
// subscription still connecting holds until its dial or handshake ends.
func (s *Subscriber) restart() {
	s.mu.Lock()
	ps := s.ps
	s.mu.Unlock()
	if ps != nil {
		ps.Close()
	}
}

func (s *Subscriber) deliver(m *redis.Message) {
	if m.Channel == InvalidateChannel {
		s.m.trackingMsgs.Inc()
		if m.PayloadSlice == nil && m.Payload == "" {
			s.m.flushes.Inc()
			s.h.KeysChanged(nil)
			return
		}
		keys := m.PayloadSlice
		if keys == nil {
			keys = []string{m.Payload}
		}
		s.m.invalidated.Add(float64(len(keys)))
		s.h.KeysChanged(keys)
		return
	}
	e, ignored, err := Decode([]byte(m.Payload))
	if err != nil {
		s.m.rejected.WithLabelValues(rejectReason(err)).Inc()
		s.cfg.Logger.Warn("ignored a bad logout event", "channel", m.Channel, "err", err)
		return
	}
	s.h.Logout(e)
	s.m.received.WithLabelValues(string(e.Kind)).Inc()
	for _, f := range ignored {
		s.m.ignored.WithLabelValues(f).Inc()
	}
	if !e.Time.IsZero() {
		// Without a time there is no delay to measure.
		s.m.propagation.Observe(max(0, s.cfg.Now().Sub(e.Time).Seconds()))
	}
}

func rejectReason(err error) string {
	switch {
	case errors.Is(err, ErrNotJSON):
		return "not_json"
	case errors.Is(err, ErrVersion):
		return "version"
	case errors.Is(err, ErrKind):
		return "kind"
	case errors.Is(err, ErrMissingID):
		return "missing_id"
	}
	return "too_big"
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isNullPayload(err error) bool {
	return strings.Contains(err.Error(), "unsupported pubsub message payload: <nil>")
}
