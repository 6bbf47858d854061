package logout

import (
	"context"
	"errors"
	"net"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// When the subscription's connection dies, go-redis does not report it at
// once: PubSub.Receive first dials a new connection and subscribes it again
// (OnConnect included), and only then returns the error. Meanwhile, milliseconds
// at best, the cache would still answer for sessions whose invalidations
// died with the connection: a key deleted just as it was killed is never
// reported to the new one. So the Subscriber watches the connection itself:
// the first failed read on it turns the cache off (Subscribed(false)) before
// go-redis reconnects.

// subCtxKey marks the context of the Subscriber's own calls into its
// PubSub, so that its dial hook watches the subscription's connections and
// no other of the client's.
type subCtxKey struct{}

// watchDials installs the hook on rdb: on a cluster client, on each node's
// client as go-redis makes it.
func (s *Subscriber) watchDials(rdb redis.UniversalClient) {
	if c, ok := rdb.(*redis.ClusterClient); ok {
		c.OnNewNode(func(n *redis.Client) { n.AddHook(dialWatch{s}) })
		return
	}
	rdb.AddHook(dialWatch{s})
}

// dialWatch wraps the connections the Subscriber's PubSub dials (redis.Hook).
type dialWatch struct{ s *Subscriber }

func (w dialWatch) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		cn, err := next(ctx, network, addr)
		if err != nil || ctx.Value(subCtxKey{}) != w.s {
			return cn, err
		}
		return &watchedConn{Conn: cn, s: w.s}, nil
	}
}

func (w dialWatch) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (w dialWatch) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// watchedConn is a subscription's connection: a read that fails other
// than by its deadline (the heartbeat) means it is gone.
type watchedConn struct {
	net.Conn
	s    *Subscriber
	dead atomic.Bool
}

func (c *watchedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	var ne net.Error
	if err != nil && !(errors.As(err, &ne) && ne.Timeout()) && !c.dead.Swap(true) {
		c.s.connLost()
	}
	return n, err
}

// connLost turns the cache off at once when the live subscription's
// connection fails; Run then reports the loss as usual and resubscribes.
// It runs in Run's goroutine (go-redis reads a PubSub's connection in
// Receive only), so the Handler still hears one call at a time.
func (s *Subscriber) connLost() {
	if s.liveNow.CompareAndSwap(true, false) {
		s.h.Subscribed(false)
	}
}
