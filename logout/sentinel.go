package logout

import (
	"context"
	"net"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// followSentinel watches the sentinels of s.cfg.Sentinel for +switch-master
// of its master and restarts the subscription on each, until ctx ends. It
// listens to one sentinel at a time and moves to the next when that one
// fails. A switch announced while it had no sentinel may have been missed,
// so on each (re)connection it asks the sentinel where the master is, and
// restarts the subscription if that is not where it last knew it to be.
// It does not restart otherwise: the sentinels being down says nothing
// about the master, and a restart would need a sentinel to find it again.
func (s *Subscriber) followSentinel(ctx context.Context) {
	o := s.cfg.Sentinel
	backoff := 10 * time.Millisecond
	for i := 0; ctx.Err() == nil; i++ {
		addr := o.SentinelAddrs[i%len(o.SentinelAddrs)]
		if i > 0 {
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, s.cfg.MaxBackoff)
		}
		// A finite read timeout for the handshake and commands; the
		// subscription's reads set their own (ReceiveTimeout).
		c := redis.NewSentinelClient(&redis.Options{
			Addr: addr, Username: o.SentinelUsername, Password: o.SentinelPassword,
			TLSConfig: o.TLSConfig, DialTimeout: o.DialTimeout, ReadTimeout: max(o.DialTimeout, time.Second),
			Protocol: 2, MaxRetries: -1,
		})
		err := s.watchSentinel(ctx, c, o.MasterName, func() {
			backoff = 10 * time.Millisecond
			s.checkMaster(ctx, c, o.MasterName)
		})
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
			if f := strings.Fields(m.Payload); len(f) == 5 && f[0] == master {
				s.cfg.Logger.Info("sentinel switched master; resubscribing to the new one", "master", master, "switch", m.Payload)
				s.mu.Lock()
				s.master = net.JoinHostPort(f[3], f[4])
				s.mu.Unlock()
				s.restart()
			}
		}
	}
}

// checkMaster asks the sentinel where the master is and restarts the
// subscription when it moved since it was last known: a switch announced
// while no sentinel was being watched.
func (s *Subscriber) checkMaster(ctx context.Context, c *redis.SentinelClient, master string) {
	addr, err := c.GetMasterAddrByName(ctx, master).Result()
	if err != nil || len(addr) != 2 {
		return // the next reconnection asks again
	}
	now := net.JoinHostPort(addr[0], addr[1])
	s.mu.Lock()
	was := s.master
	s.master = now
	s.mu.Unlock()
	if was != "" && was != now {
		s.cfg.Logger.Info("the master moved while no sentinel was watched; resubscribing", "master", master, "now", now)
		s.restart()
	}
}
