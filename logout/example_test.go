package logout_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"

	"github.com/authz/authz/logout"
	"github.com/redis/go-redis/v9"
)

// userCache is what a Go service might keep: session id → user profile,
// loaded from Redis on a miss.
type userCache struct {
	mu      sync.Mutex
	bySID   map[string]string // session id → user id
	enabled bool
}

// Logout drops what the event ends.
func (c *userCache) Logout(e logout.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for sid, user := range c.bySID {
		if (e.Kind == logout.KindSession && sid == e.Session) || (e.Kind == logout.KindUser && user == e.User) {
			delete(c.bySID, sid)
		}
	}
}

// KeysChanged drops sessions Redis reports deleted, expired or rewritten.
func (c *userCache) KeysChanged(keys []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if keys == nil {
		clear(c.bySID)
		return
	}
	for _, k := range keys {
		delete(c.bySID, strings.TrimPrefix(k, "sess:"))
	}
}

// Subscribed empties the cache whenever events may have been missed, and
// keeps it off until the subscription is live again.
func (c *userCache) Subscribed(live bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.bySID)
	c.enabled = live
}

// Any Go service can keep its own session cache honest: subscribe with a
// Handler that drops what each logout ends.
func Example() {
	cache := &userCache{bySID: map[string]string{}}

	// The subscriber's own client: RESP2, and the tracking hook so
	// sessions deleted without an event are reported too.
	tracking, _ := logout.NewTracking([]string{"sess:"}, slog.Default(), nil)
	rdb := redis.NewClient(&redis.Options{
		Addr:        "127.0.0.1:6379",
		Protocol:    2,
		ReadTimeout: -1,
		OnConnect:   tracking.OnConnect,
	})
	defer rdb.Close()

	sub, _ := logout.NewSubscriber(rdb, cache, logout.SubscriberConfig{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go sub.Run(ctx) // until ctx ends, reconnecting as needed
}
