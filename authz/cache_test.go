package authz

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/authz/authz/logout"
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

func TestCacheFollowsSubscription(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.CacheTTL = time.Hour })
	sid, c := f.session(bobJSON, time.Hour)
	f.v.Subscribed(false)
	gets := f.redis.Calls("getrange")
	f.verify(c, "")
	f.verify(c, "")
	if n := f.redis.Calls("getrange") - gets; n != 2 {
		t.Fatalf("subscription down: %d GETs for 2 requests; want 2 (no caching)", n)
	}
	f.v.Subscribed(true)
	f.verify(c, "")
	f.verify(c, "")
	if n := f.redis.Calls("getrange") - gets; n != 3 {
		t.Fatalf("subscription live: %d GETs; want 3 (cached again)", n)
	}
	// Tracking says the key changed: the next request reads it again.
	f.rdb.Del(context.Background(), "sess:"+sid)
	f.v.KeysChanged([]string{"sess:" + sid, "other:x"})
	if w := f.verify(c, ""); w.Code != 401 {
		t.Fatalf("after KeysChanged: %d; want 401", w.Code)
	}
	f.v.Logout(logout.Event{Kind: logout.KindUser, User: "nobody"})
}
