package logout

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// followSentinel watches every sentinel of s.cfg.Sentinel for
// +switch-master of its master and restarts the subscription on each
// switch, until ctx ends. It listens to all of them at once: the first to
// name the new master tells, so a client that learns of the new master from
// any sentinel and logs a session out there finds this instance already
// moving. Each watch reconnects to its sentinel with backoff when it fails.
// A switch announced while a sentinel was not watched may have been missed,
// so on each (re)connection it asks the sentinel where the master is, and
// restarts the subscription if that is not where it last knew it to be.
// It does not restart otherwise: the sentinels being down says nothing
// about the master, and a restart would need a sentinel to find it again.
func (s *Subscriber) followSentinel(ctx context.Context) {
	o := s.cfg.Sentinel
	done := make(chan struct{}, len(o.SentinelAddrs))
	for _, addr := range o.SentinelAddrs {
		go func() { s.followOneSentinel(ctx, addr); done <- struct{}{} }()
	}
	for range o.SentinelAddrs {
		<-done
	}
}

func (s *Subscriber) followOneSentinel(ctx context.Context, addr string) {
	o := s.cfg.Sentinel
	backoff := 10 * time.Millisecond
	for i := 0; ctx.Err() == nil; i++ {
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
			s.cfg.Logger.Warn("lost the sentinel watched for master switches; reconnecting", "sentinel", addr, "err", err)
		}
	}
}

// switchMaster records that the master is now at addr and restarts the
// subscription if it was known to be elsewhere, or, on a +switch-master
// event, not known. Several sentinels report the same switch: only the
// first restarts.
func (s *Subscriber) switchMaster(addr string, event bool) bool {
	s.mu.Lock()
	was := s.master
	s.master = addr
	if s.masters == nil {
		s.masters = make(map[string]bool)
	}
	s.masters[addr] = true
	s.mu.Unlock()
	if was != addr && (was != "" || event) {
		s.restart()
		return true
	}
	return false
}

// DialCheck is for the Dialer of a Subscriber's FailoverClient: it refuses
// to connect to a node that was the master but no longer is, as far as the
// sentinels have told. go-redis asks one sentinel where the master is, and
// that one may not have heard of a switch another has announced: the
// subscription would land on the old master, and with it the fence reads
// are checked against (NewReadTracking). Other addresses (the sentinels,
// the current master, nodes never seen as master) pass.
func (s *Subscriber) DialCheck(addr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.masters[addr] && addr != s.master {
		return fmt.Errorf("%s is no longer the master (now %s); waiting for the sentinels to agree", addr, s.master)
	}
	return nil
}

// watchSentinel listens on one sentinel until it fails or ctx ends; ok is
// called once the sentinel confirmed the subscription.
//
// Besides +switch-master it hears +promoted-slave: the sentinel leading a
// failover names the promoted replica as the master (SENTINEL
// GET-MASTER-ADDR-BY-NAME) from that event on, but announces
// +switch-master only once the other replicas are reconfigured, up to
// seconds later; a client that asked it meanwhile may already have
// written to the new master.
func (s *Subscriber) watchSentinel(ctx context.Context, c *redis.SentinelClient, master string, ok func()) error {
	ps := c.Subscribe(ctx, "+switch-master", "+promoted-slave")
	confirmed := 0
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
			if confirmed++; confirmed == 2 {
				ok()
			}
		case *redis.Message:
			if addr := switchedTo(m, master); addr != "" && s.switchMaster(addr, true) {
				s.cfg.Logger.Info("sentinel switched master; resubscribing to the new one", "master", master, "event", m.Channel, "switch", m.Payload)
			}
		}
	}
}

// switchedTo is the new master's address a sentinel event announces for
// master, "" when m is about another master or malformed.
func switchedTo(m *redis.Message, master string) string {
	f := strings.Fields(m.Payload)
	switch {
	case m.Channel == "+switch-master" && len(f) == 5 && f[0] == master:
		// "<master> <old ip> <old port> <new ip> <new port>"
		return net.JoinHostPort(f[3], f[4])
	case m.Channel == "+promoted-slave" && len(f) == 8 && f[0] == "slave" && f[4] == "@" && f[5] == master:
		// "slave <ip:port> <ip> <port> @ <master> <old ip> <old port>"
		return net.JoinHostPort(f[2], f[3])
	}
	return ""
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
	if s.switchMaster(now, false) {
		s.cfg.Logger.Info("the master moved while no sentinel was watched; resubscribing", "master", master, "now", now)
	}
}
