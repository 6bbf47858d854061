package authz

import (
	"errors"
	"sync/atomic"
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
