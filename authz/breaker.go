package authz

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// errBreakerOpen means Redis failed too often lately to be worth waiting
// for: the request fails at once instead of after --redis-timeout.
var errBreakerOpen = errors.New("redis circuit open: recent calls failed")

// breaker keeps a dead Redis from adding its timeout to every request.
// After `failures` consecutive store errors it opens for `cooldown`, during
// which loads fail at once (503, as they would after the timeout). After
// the cooldown, requests try Redis again; one more failure re-opens it at
// once, one success closes it. Only failures to reach Redis count: a
// missing session is an answer.
type breaker struct {
	failures  int32 // threshold; <= 0 turns the breaker off
	cooldown  int64 // nanoseconds
	count     atomic.Int32
	openUntil atomic.Int64 // unix nanoseconds
	opens     atomic.Uint64
}

// allow reports whether a Redis call may be made at now.
func (b *breaker) allow(now int64) bool {
	return b.failures <= 0 || now >= b.openUntil.Load()
}

// open reports whether the breaker refuses calls at now.
func (b *breaker) open(now int64) bool { return !b.allow(now) }

func (b *breaker) success() {
	if b.count.Load() != 0 {
		b.count.Store(0)
	}
}

func (b *breaker) failure(now int64) {
	if b.failures <= 0 {
		return
	}
	if b.count.Add(1) >= b.failures {
		b.count.Store(b.failures) // stays at the threshold until a success
		if b.openUntil.Swap(now+b.cooldown) <= now {
			b.opens.Add(1)
		}
	}
}

// breakers holds a breaker per Redis master. On a single Redis or
// Sentinel's master there is one; on a cluster each master has its own,
// found through the client's slot map: one failing master must not make
// keys on the healthy ones answer 503. A cluster's masters may change
// (failover, resharding): a key's breaker is the one of the master the
// client's slot map names now.
type breakers struct {
	failures int32
	cooldown int64
	// timeout bounds a slot map reload MasterForKey may run (CLUSTER
	// SLOTS), which no other bound covers: it runs before the breaker and
	// the pending-load bound are consulted.
	timeout time.Duration
	// cluster is the client's slot map (Config.Cluster); nil: one
	// breaker, one.
	cluster ClusterNodes
	one     breaker
	nodes   sync.Map // master address -> *breaker
}

// newBreakers makes the breakers of a cluster's masters (cluster, nil on
// any other topology: one breaker).
func newBreakers(cluster ClusterNodes, failures int, cooldown, timeout time.Duration) *breakers {
	bs := &breakers{failures: int32(failures), cooldown: int64(cooldown), timeout: timeout, cluster: cluster}
	bs.one = breaker{failures: bs.failures, cooldown: bs.cooldown}
	return bs
}

// forKey is the breaker of the master serving key. A cluster whose slot map
// cannot be had within the timeout (no node answered yet) shares the one
// breaker.
func (bs *breakers) forKey(ctx context.Context, key string) *breaker {
	if bs.cluster == nil {
		return &bs.one
	}
	ctx, cancel := context.WithTimeout(ctx, bs.timeout)
	defer cancel()
	c, err := bs.cluster.MasterForKey(ctx, key)
	if err != nil {
		return &bs.one
	}
	addr := c.Options().Addr
	if b, ok := bs.nodes.Load(addr); ok {
		return b.(*breaker)
	}
	b, _ := bs.nodes.LoadOrStore(addr, &breaker{failures: bs.failures, cooldown: bs.cooldown})
	return b.(*breaker)
}

// each calls f with every breaker.
func (bs *breakers) each(f func(*breaker)) {
	f(&bs.one)
	bs.nodes.Range(func(_, b any) bool { f(b.(*breaker)); return true })
}

// anyOpen reports whether some master's breaker is open at now.
func (bs *breakers) anyOpen(now int64) bool {
	open := false
	bs.each(func(b *breaker) { open = open || b.open(now) })
	return open
}

// opens is how many times any breaker opened.
func (bs *breakers) opens() uint64 {
	var n uint64
	bs.each(func(b *breaker) { n += b.opens.Load() })
	return n
}

// keyError names the Redis key whose command failed, so the failure is
// counted against the master serving it.
type keyError struct {
	key string
	err error
}

func (e *keyError) Error() string { return e.err.Error() }
func (e *keyError) Unwrap() error { return e.err }
