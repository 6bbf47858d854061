package authz

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// entry is one cached answer about a session id: a live session, or a
// negative result (not found, anonymous, invalid) kept briefly so a flood of
// the same dead cookie does not reach Redis.
type entry struct {
	tenant *tenant  // whose session this is: an id is only unique within a tenant
	sess   *Session // nil for a negative entry
	reason Reason   // why a negative entry denies
	// until is when the entry stops being served (unix nanoseconds): the
	// cache TTL, capped at the key's own expiry.
	until int64
	// keyDeadline estimates when the Redis key expires (unix nanoseconds, 0
	// if it has no TTL); sliding expiry advances it when it touches the key.
	keyDeadline atomic.Int64
	// keyExpires is when the Redis key expires as Redis last confirmed it
	// (at the load, or a touch that succeeded); keyDeadline runs ahead of
	// it while a touch is on its way. Stale allows never go past it.
	keyExpires atomic.Int64
}

const cacheShards = 64

// cache is a bounded, sharded map from session id to entry. Reads take a
// shard read lock only. When a shard is full, inserting evicts an expired
// entry if a short sample finds one, else the sampled entry closest to
// expiry: Redis's approximated eviction, cheaper than LRU bookkeeping on
// every hit, and with TTLs of seconds the difference does not matter.
type cache struct {
	seed      maphash.Seed
	perShard  int
	shards    [cacheShards]shard
	evictions atomic.Uint64
}

type shard struct {
	mu sync.RWMutex
	m  map[string]*entry
	// gen counts invalidations in this shard. A load that began before an
	// invalidation must not insert what it read, or a logout racing a cache
	// miss could leave the old session cached.
	gen atomic.Uint64
	_   [32]byte // keep shards' locks on separate cache lines
}

func newCache(size int) *cache {
	c := &cache{seed: maphash.MakeSeed(), perShard: max(1, (size+cacheShards-1)/cacheShards)}
	for i := range c.shards {
		c.shards[i].m = make(map[string]*entry)
	}
	return c
}

func (c *cache) shard(sid []byte) *shard {
	return &c.shards[maphash.Bytes(c.seed, sid)%cacheShards]
}

// get returns the entry for sid if it is still servable at now.
func (c *cache) get(sid []byte, now int64) *entry {
	s := c.shard(sid)
	s.mu.RLock()
	e := s.m[string(sid)]
	s.mu.RUnlock()
	if e == nil || now >= e.until {
		return nil
	}
	return e
}

// peek returns the entry for sid even if it is past its TTL, for
// StaleIfError; nil when there is none.
func (c *cache) peek(sid []byte) *entry {
	s := c.shard(sid)
	s.mu.RLock()
	e := s.m[string(sid)]
	s.mu.RUnlock()
	return e
}

// gen returns sid's invalidation generation, read before a load starts.
func (c *cache) gen(sid []byte) uint64 { return c.shard(sid).gen.Load() }

// put stores e unless sid's shard saw an invalidation since gen was read.
func (c *cache) put(sid string, e *entry, gen uint64, now int64) {
	s := c.shard([]byte(sid))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen.Load() != gen {
		return
	}
	if _, ok := s.m[sid]; !ok && len(s.m) >= c.perShard {
		c.evictOne(s, now)
	}
	s.m[sid] = e
}

func (c *cache) evictOne(s *shard, now int64) {
	const sample = 5
	var victim string
	var soonest int64
	n := 0
	for k, e := range s.m {
		if e.until <= now {
			victim = k
			break
		}
		if n == 0 || e.until < soonest {
			victim, soonest = k, e.until
		}
		if n++; n == sample {
			break
		}
	}
	delete(s.m, victim)
	c.evictions.Add(1)
}

// remove drops sid; it reports whether an entry was there.
func (c *cache) remove(sid string) bool {
	s := c.shard([]byte(sid))
	s.mu.Lock()
	s.gen.Add(1)
	_, ok := s.m[sid]
	delete(s.m, sid)
	s.mu.Unlock()
	return ok
}

// removeIf drops every entry for which drop returns true and reports how
// many went. It walks the whole cache, so it is for rare events (a user-wide
// logout), never the request path.
func (c *cache) removeIf(drop func(*entry) bool) int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		s.gen.Add(1)
		for k, e := range s.m {
			if drop(e) {
				delete(s.m, k)
				n++
			}
		}
		s.mu.Unlock()
	}
	return n
}

func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
