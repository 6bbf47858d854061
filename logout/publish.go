package logout

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Publisher sends logout events.
type Publisher struct {
	rdb       redis.UniversalClient
	channel   string
	origin    string
	timeout   time.Duration
	now       func() time.Time
	published *prometheus.CounterVec
}

// PublisherConfig configures a Publisher; zero fields take their defaults.
type PublisherConfig struct {
	Channel string        // default DefaultChannel
	Origin  string        // stamped on events that name none
	Timeout time.Duration // per PUBLISH (default 1s)
	Now     func() time.Time
}

// NewPublisher returns a Publisher on rdb. reg may be nil (no metrics).
func NewPublisher(rdb redis.UniversalClient, cfg PublisherConfig, reg prometheus.Registerer) (*Publisher, error) {
	p := &Publisher{rdb: rdb, channel: cfg.Channel, origin: cfg.Origin, timeout: cfg.Timeout, now: cfg.Now}
	if p.channel == "" {
		p.channel = DefaultChannel
	}
	if p.timeout <= 0 {
		p.timeout = time.Second
	}
	if p.now == nil {
		p.now = time.Now
	}
	p.published = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "authz_logout_events_published_total",
		Help: "Logout events published, by kind.",
	}, []string{"kind"})
	for _, k := range []Kind{KindSession, KindUser, KindToken} {
		p.published.WithLabelValues(string(k)) // from 0, so rate() sees the first
	}
	if reg != nil {
		if err := reg.Register(p.published); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Publish stamps e (version, time, origin where unset), checks it and
// publishes it. It returns how many subscribers received it.
func (p *Publisher) Publish(ctx context.Context, e Event) (int64, error) {
	e.V = Version
	if e.Time.IsZero() {
		e.Time = p.now()
	}
	if e.Origin == "" {
		e.Origin = p.origin
	}
	if err := e.Validate(); err != nil {
		return 0, fmt.Errorf("publish logout: %w", err)
	}
	b, err := json.Marshal(e)
	if err != nil {
		return 0, fmt.Errorf("publish logout: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	n, err := p.rdb.Publish(ctx, p.channel, b).Result()
	if err != nil {
		return 0, fmt.Errorf("publish %s logout on %s: %w", e.Kind, p.channel, err)
	}
	p.published.WithLabelValues(string(e.Kind)).Inc()
	return n, nil
}
