package logout

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/authz/authz/internal/testenv"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
)

// TestClusterTracking: on a 3-master cluster every node reports the keys
// read from it; one node's invalidation connection killed turns the cache
// off (Subscribed(false)) until it is back, and reads are then reported to
// the new connection.
func TestClusterTracking(t *testing.T) {
	t.Parallel()
	c := testenv.StartCluster(t)
	rdb := c.Client()
	ct := NewClusterTracking(rdb, ClusterTrackingConfig{
		Heartbeat: 200 * time.Millisecond,
		NewNodeClient: func(addr string, onConnect func(context.Context, *redis.Conn) error) *redis.Client {
			return redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, PoolSize: 2, OnConnect: onConnect})
		},
	})
	rec := &recorder{}
	sc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), Protocol: 2})
	defer sc.Close()
	reg := prometheus.NewRegistry()
	sub, err := NewSubscriber(sc, ct.Wrap(rec), SubscriberConfig{Heartbeat: 200 * time.Millisecond}, reg)
	if err != nil {
		t.Fatal(err)
	}
	ct.Count(sub)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sub.Run(ctx); close(done) }()
	go ct.Run(ctx)
	defer func() { cancel(); <-done }()
	testenv.WaitFor(t, 5*time.Second, "tracking whole", rec.with(func(r *recorder) bool { return r.live }))
	if !ct.Enabled() {
		t.Fatal("Enabled false while Subscribed(true)")
	}

	// One key on each master: read it (a pipeline, as authz reads),
	// then delete it; every node reports its own.
	keyOn := func(node *testenv.Redis, tag string) string {
		for i := 0; ; i++ {
			k := "sess:" + tag + string(rune('a'+i%26)) + string(rune('a'+i/26%26))
			if c.NodeOf(k) == node {
				return k
			}
		}
	}
	readThenDel := func(k string) {
		t.Helper()
		bg := context.Background()
		rdb.Set(bg, k, "v", time.Hour)
		if _, err := rdb.Pipelined(bg, func(p redis.Pipeliner) error { p.Get(bg, k); return nil }); err != nil {
			t.Fatalf("read %s: %v", k, err)
		}
		rdb.Del(bg, k)
		testenv.WaitFor(t, 2*time.Second, "the invalidation of "+k, rec.with(func(r *recorder) bool { return slices.Contains(r.keys, k) }))
	}
	for i, n := range c.Nodes {
		readThenDel(keyOn(n, string(rune('0'+i))))
	}
	if got := testutil.ToFloat64(sub.m.invalidated); got < 3 {
		t.Errorf("authz_tracking_invalidated_keys_total = %v after three keys invalidated on three nodes", got)
	}

	// Kill node 0's pub/sub connections: its invalidation connection (and
	// the logout subscription, if it lives there). The cache goes off and
	// comes back once both are live again.
	var downs int
	rec.with(func(r *recorder) bool { downs = r.downs; return true })()
	nc := redis.NewClient(&redis.Options{Addr: c.Nodes[0].Addr})
	defer nc.Close()
	if err := nc.Do(context.Background(), "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, "the cache off", rec.with(func(r *recorder) bool { return r.downs > downs }))
	testenv.WaitFor(t, 5*time.Second, "tracking whole again", rec.with(func(r *recorder) bool { return r.live }))
	// Pooled connections of node 0, armed for the killed connection, are
	// re-armed for the new one.
	readThenDel(keyOn(c.Nodes[0], "x"))
}
