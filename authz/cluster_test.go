package authz

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/authz/authz/internal/testenv"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
)

// On a Redis Cluster a frozen master opens only its own breaker: sessions
// whose keys (the session and its logout marker) live on the healthy
// masters keep answering 200. Before, the breaker was per process, so after
// five failures on the frozen master every session answered 503.
func TestClusterBreakerPerMaster(t *testing.T) {
	c := testenv.StartCluster(t)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	reg := prometheus.NewRegistry()
	v, err := New(Config{
		Secrets: []string{testSecret}, RedisTimeout: 200 * time.Millisecond,
		Topology: TopologyCluster, Cluster: rdb,
		BreakerFailures: 2, BreakerCooldown: time.Hour, NegativeCacheTTL: -1, TouchInterval: -1,
	}, rdb, reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	frozen, other := c.Nodes[0], c.Nodes[1]
	// On the frozen master: a session; a session on another master whose
	// logout marker is on the frozen one; and, on that same other master,
	// a session whose marker is not on the frozen one either.
	var onFrozen, markerOnFrozen, healthy string
	for i := 0; onFrozen == "" || markerOnFrozen == "" || healthy == ""; i++ {
		sid := fmt.Sprintf("cluster%025d", i)
		key, marker := c.NodeOf("sess:"+sid), c.NodeOf("authz:revoked:sess:"+sid)
		switch {
		case key == frozen:
			onFrozen = sid
		case key == other && marker == frozen:
			markerOnFrozen = sid
		case key == other && marker != frozen:
			healthy = sid
		}
	}
	ctx := context.Background()
	verify := func(sid string) int {
		v.InvalidateAll()
		req := httptest.NewRequest(http.MethodGet, "/verify", nil)
		req.Header.Set("Cookie", "connect.sid="+Sign(sid, testSecret))
		w := httptest.NewRecorder()
		v.ServeHTTP(w, req)
		return w.Code
	}
	for _, sid := range []string{onFrozen, markerOnFrozen, healthy} {
		if err := rdb.Set(ctx, "sess:"+sid, aliceJSON, time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
		if code := verify(sid); code != 200 {
			t.Fatalf("before the freeze: %d; want 200", code)
		}
	}

	frozen.Signal(syscall.SIGSTOP)
	for range 4 {
		if code := verify(onFrozen); code != 503 {
			t.Fatalf("session on the frozen master: %d; want 503", code)
		}
	}
	if v.breakers.opens() != 1 {
		t.Errorf("breakers opened %d times; want 1, the frozen master's", v.breakers.opens())
	}
	// Its marker cannot be read: 503, counted against the frozen master,
	// not against the master holding the session.
	for range 3 {
		if code := verify(markerOnFrozen); code != 503 {
			t.Fatalf("session whose marker is on the frozen master: %d; want 503", code)
		}
	}
	for range 3 {
		if code := verify(healthy); code != 200 {
			t.Fatalf("session on a healthy master while another is frozen: %d; want 200", code)
		}
	}
	if got := testutil.ToFloat64(v.metrics.requests[ReasonStoreUnavailable]); got != 7 {
		t.Errorf("store_unavailable answers = %v; want 7", got)
	}
}

// Finding a key's breaker on a cluster may load the slot map (CLUSTER
// SLOTS) before any breaker or bound applies; with every node frozen that
// load is bounded by RedisTimeout, not the client's read timeouts per node
// (a touch runs it with context.Background()).
func TestClusterBreakerLookupBounded(t *testing.T) {
	c := testenv.StartCluster(t)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { rdb.Close() })
	bs := newBreakers(rdb, 5, time.Second, 100*time.Millisecond)
	for _, n := range c.Nodes {
		n.Signal(syscall.SIGSTOP)
	}
	t.Cleanup(func() {
		for _, n := range c.Nodes {
			n.Signal(syscall.SIGCONT)
		}
	})
	start := time.Now()
	b := bs.forKey(context.Background(), "sess:x")
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("finding a key's breaker with every node frozen took %v; want about the 100ms Redis timeout", d)
	}
	if b != &bs.one {
		t.Error("without a slot map the key should share the one breaker")
	}
}
