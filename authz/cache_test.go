package authz

import (
	"strconv"
	"testing"
)

func TestCacheExpiryAndBound(t *testing.T) {
	c := newCache(cacheShards * 2)
	sid := []byte("a")
	c.put("a", &entry{until: 100}, c.gen(sid), 0)
	if c.get(sid, 99) == nil {
		t.Fatal("entry missing before its deadline")
	}
	if c.get(sid, 100) != nil {
		t.Fatal("entry served at its deadline")
	}
	for i := range 10000 {
		k := strconv.Itoa(i)
		c.put(k, &entry{until: 1000}, c.gen([]byte(k)), 0)
	}
	if n := c.len(); n > cacheShards*2 {
		t.Fatalf("cache holds %d entries; bound is %d", n, cacheShards*2)
	}
	if c.evictions.Load() == 0 {
		t.Fatal("no evictions counted")
	}
}

func TestCacheInvalidationBeatsInflightLoad(t *testing.T) {
	c := newCache(100)
	sid := []byte("s")
	gen := c.gen(sid) // a load starts
	c.remove("s")     // a logout lands while it reads Redis
	c.put("s", &entry{until: 1 << 62}, gen, 0)
	if c.get(sid, 0) != nil {
		t.Fatal("a load that started before the invalidation was cached")
	}
	gen = c.gen(sid)
	c.removeIf(func(*entry) bool { return true })
	c.put("s", &entry{until: 1 << 62}, gen, 0)
	if c.get(sid, 0) != nil {
		t.Fatal("a load that started before InvalidateAll was cached")
	}
}

func TestCacheRemoveIf(t *testing.T) {
	c := newCache(100)
	for i, u := range []string{"alice", "bob", "alice"} {
		k := strconv.Itoa(i)
		c.put(k, &entry{sess: &Session{User: u}, until: 1 << 62}, c.gen([]byte(k)), 0)
	}
	if n := c.removeIf(func(e *entry) bool { return e.sess.User == "alice" }); n != 2 {
		t.Fatalf("removed %d; want 2", n)
	}
	if c.get([]byte("1"), 0) == nil {
		t.Fatal("bob's session went too")
	}
}
