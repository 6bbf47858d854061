package logout

import (
	"context"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// followSentinel watches the sentinels of s.cfg.Sentinel for +switch-master
// of its master and restarts the subscription on each, until ctx ends. It
// listens to one sentinel at a time and moves to the next when that one
// fails. A switch announced while it had no sentinel may have been missed,
// so each reconnection after the first restarts the subscription too: a
// cache flush is cheap, a subscription left on a demoted master is not.
func (s *Subscriber) followSentinel(ctx context.Context) {
	o := s.cfg.Sentinel
	backoff := 10 * time.Millisecond
	for i := 0; ctx.Err() == nil; i++ {
		addr := o.SentinelAddrs[i%len(o.SentinelAddrs)]
		if i > 0 {
			s.restart()
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, s.cfg.MaxBackoff)
		}
		c := redis.NewSentinelClient(&redis.Options{
			Addr: addr, Username: o.SentinelUsername, Password: o.SentinelPassword,
			TLSConfig: o.TLSConfig, DialTimeout: o.DialTimeout, ReadTimeout: -1,
			Protocol: 2, MaxRetries: -1,
		})
		err := s.watchSentinel(ctx, c, o.MasterName, func() { backoff = 10 * time.Millisecond })
		c.Close()
		if ctx.Err() == nil {
			s.cfg.Logger.Warn("lost the sentinel watched for master switches; trying the next", "sentinel", addr, "err", err)
		}
	}
}

// watchSentinel listens on one sentinel until it fails or ctx ends; ok is
// called once the sentinel confirmed the subscription.
func (s *Subscriber) watchSentinel(ctx context.Context, c *redis.SentinelClient, master string, ok func()) error {
	ps := c.Subscribe(ctx, "+switch-master")
	defer ps.Close()
	stop := context.AfterFunc(ctx, func() { ps.Close() })
	defer stop()
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, s.cfg.Heartbeat)
		switch {
		case err != nil && isTimeout(err) && !pinged:
			if err := ps.Ping(ctx); err != nil {
				return err
			}
			pinged = true
			continue
		case err != nil:
			return err
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			ok()
		case *redis.Message:
			// "<master> <old ip> <old port> <new ip> <new port>"
			if name, _, _ := strings.Cut(m.Payload, " "); name == master {
				s.cfg.Logger.Info("sentinel switched master; resubscribing to the new one", "master", master, "switch", m.Payload)
				s.restart()
			}
		}
	}
}
