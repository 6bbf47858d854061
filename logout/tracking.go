package logout

import (
	"context"
	"log/slog"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Tracking turns on Redis server-assisted invalidation for the connection a
// Subscriber listens on. Install OnConnect as the redis.Options.OnConnect of
// the Subscriber's own client (with Protocol: 2): every time go-redis opens
// that connection, reconnects included, it runs
//
//	CLIENT TRACKING ON REDIRECT <its own id> BCAST PREFIX <prefix>…
//
// so Redis reports every write, EXPIRE, DEL and expiry of a key under the
// prefixes to the very connection that is subscribed to
// __redis__:invalidate. Redirecting to itself avoids go-redis's trap where
// data connections keep redirecting to a subscriber id that no longer exists
// after a reconnect.
//
// Where Redis refuses (an ACL without CLIENT, Redis < 6, a proxy), the
// connection still comes up without tracking, Enabled reports false and a
// warning is logged: sessions deleted without an event then stop passing
// within the cache TTL instead of at once.
type Tracking struct {
	prefixes []string
	log      *slog.Logger
	enabled  atomic.Bool
	warned   atomic.Bool
}

// NewTracking returns a Tracking for keys under prefixes. reg may be nil.
func NewTracking(prefixes []string, log *slog.Logger, reg prometheus.Registerer) (*Tracking, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Tracking{prefixes: prefixes, log: log}
	if reg != nil {
		err := reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "authz_tracking_enabled", Help: "1 when Redis server-assisted invalidation is on for the logout subscription.",
		}, func() float64 {
			if t.Enabled() {
				return 1
			}
			return 0
		}))
		if err != nil {
			return nil, err
		}
	}
	return t, nil
}

// Prefixes are the key prefixes tracked.
func (t *Tracking) Prefixes() []string { return t.prefixes }

// Enabled reports whether tracking was turned on for the latest connection.
func (t *Tracking) Enabled() bool { return t.enabled.Load() }

// OnConnect is a redis.Options.OnConnect hook. It never fails the
// connection: without tracking, logout events still flow.
//
// A FailoverClient (Sentinel) runs its OnConnect on its connections to the
// sentinels too. A sentinel accepts CLIENT TRACKING but holds no sessions,
// so those connections are left alone: otherwise Enabled would tell of the
// sentinel rather than of the master.
func (t *Tracking) OnConnect(ctx context.Context, cn *redis.Conn) error {
	if role, err := cn.Do(ctx, "ROLE").Slice(); err == nil && len(role) > 0 && role[0] == "sentinel" {
		return nil
	}
	id, err := cn.ClientID(ctx).Result()
	if err == nil {
		args := []any{"CLIENT", "TRACKING", "ON", "REDIRECT", id, "BCAST"}
		for _, p := range t.prefixes {
			args = append(args, "PREFIX", p)
		}
		err = cn.Do(ctx, args...).Err()
	}
	if err != nil {
		t.enabled.Store(false)
		if !t.warned.Swap(true) {
			t.log.Warn("Redis refused CLIENT TRACKING; deleted sessions stop passing within the cache TTL instead of at once", "err", err)
		}
		return nil
	}
	t.enabled.Store(true)
	return nil
}
