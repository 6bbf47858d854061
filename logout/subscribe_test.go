package logout

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/authz/authz/internal/testenv"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// recorder is a Handler that remembers what it was told.
type recorder struct {
	mu       sync.Mutex
	events   []Event
	keys     []string
	flushes  int
	live     bool
	ups      int
	downs    int
	sequence []string
}

func (r *recorder) Logout(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) KeysChanged(keys []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if keys == nil {
		r.flushes++
		return
	}
	r.keys = append(r.keys, keys...)
}

func (r *recorder) Subscribed(live bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.live = live
	if live {
		r.ups++
	} else {
		r.downs++
	}
}

func (r *recorder) with(f func(r *recorder) bool) func() bool {
	return func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return f(r)
	}
}

type subFixture struct {
	redis *testenv.Redis
	rdb   *redis.Client
	rec   *recorder
	reg   *prometheus.Registry
	pub   *Publisher
	track *Tracking
}

func startSubscriber(t *testing.T, tracking bool) *subFixture {
	t.Helper()
	r := testenv.StartRedis(t)
	f := &subFixture{redis: r, rdb: r.Client(), rec: &recorder{}, reg: prometheus.NewRegistry()}
	opts := &redis.Options{Addr: r.Addr, Protocol: 2, ReadTimeout: -1}
	if tracking {
		var err error
		if f.track, err = NewTracking([]string{"sess:"}, nil, f.reg); err != nil {
			t.Fatal(err)
		}
		opts.OnConnect = f.track.OnConnect
	}
	sc := redis.NewClient(opts)
	t.Cleanup(func() { sc.Close() })
	sub, err := NewSubscriber(sc, f.rec, SubscriberConfig{Heartbeat: 200 * time.Millisecond}, f.reg)
	if err != nil {
		t.Fatal(err)
	}
	if f.pub, err = NewPublisher(f.rdb, PublisherConfig{Origin: "test"}, f.reg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sub.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	testenv.WaitFor(t, 5*time.Second, "the subscription to go live", f.rec.with(func(r *recorder) bool { return r.live }))
	return f
}

func TestSubscriberDeliversEvents(t *testing.T) {
	f := startSubscriber(t, false)
	ctx := context.Background()
	n, err := f.pub.Publish(ctx, Event{Kind: KindSession, Session: "abc"})
	if err != nil || n != 1 {
		t.Fatalf("Publish = %d, %v; want 1 subscriber", n, err)
	}
	f.pub.Publish(ctx, Event{Kind: KindUser, User: "42", Tenant: "acme"})
	testenv.WaitFor(t, 5*time.Second, "two events", f.rec.with(func(r *recorder) bool { return len(r.events) == 2 }))
	e := f.rec.events[0]
	if e.Kind != KindSession || e.Session != "abc" || e.V != Version || e.Origin != "test" || e.Time.IsZero() {
		t.Errorf("first event = %+v", e)
	}
	if e := f.rec.events[1]; e.User != "42" || e.Tenant != "acme" {
		t.Errorf("second event = %+v", e)
	}
	if _, err := f.pub.Publish(ctx, Event{Kind: KindSession}); err == nil {
		t.Error("published an event without a session id")
	}
}

func TestSubscriberIgnoresBadEvents(t *testing.T) {
	f := startSubscriber(t, false)
	ctx := context.Background()
	for _, bad := range []string{"not json", `{"v":9,"kind":"session","session":"a"}`, `{"v":1,"kind":"session"}`, `{"v":1,"kind":"x","session":"a"}`, ""} {
		if err := f.rdb.Publish(ctx, DefaultChannel, bad).Err(); err != nil {
			t.Fatal(err)
		}
	}
	f.pub.Publish(ctx, Event{Kind: KindSession, Session: "after"})
	testenv.WaitFor(t, 5*time.Second, "the good event after the bad ones", f.rec.with(func(r *recorder) bool { return len(r.events) == 1 }))
	rejected := counterSum(t, f.reg, "authz_logout_events_rejected_total")
	if rejected != 5 {
		t.Errorf("rejected = %v; want 5", rejected)
	}
	if !f.rec.live || f.rec.downs != 1 {
		t.Errorf("bad events disturbed the subscription: live=%v downs=%d", f.rec.live, f.rec.downs)
	}
}

func TestSubscriberReconnects(t *testing.T) {
	f := startSubscriber(t, false)
	ctx := context.Background()
	if err := f.rdb.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, "the drop to be reported and the subscription to come back",
		f.rec.with(func(r *recorder) bool { return r.downs >= 2 && r.ups >= 2 && r.live }))
	f.pub.Publish(ctx, Event{Kind: KindSession, Session: "after-reconnect"})
	testenv.WaitFor(t, 5*time.Second, "an event after the reconnect", f.rec.with(func(r *recorder) bool { return len(r.events) == 1 }))
}

func TestSubscriberNoticesRedisDown(t *testing.T) {
	f := startSubscriber(t, false)
	f.redis.Stop()
	testenv.WaitFor(t, 5*time.Second, "the subscription to be reported lost", f.rec.with(func(r *recorder) bool { return !r.live }))
	f.redis.Start()
	testenv.WaitFor(t, 10*time.Second, "the subscription to come back", f.rec.with(func(r *recorder) bool { return r.live }))
}

func TestTrackingReportsChangedKeys(t *testing.T) {
	f := startSubscriber(t, true)
	if !f.track.Enabled() {
		t.Fatal("tracking not enabled on Redis 7")
	}
	ctx := context.Background()
	f.rdb.Set(ctx, "sess:one", "{}", time.Hour)
	f.rdb.Set(ctx, "other:two", "{}", time.Hour) // outside the prefix
	f.rdb.Del(ctx, "sess:one")
	f.rdb.Set(ctx, "sess:short", "{}", 50*time.Millisecond) // expires by TTL
	testenv.WaitFor(t, 5*time.Second, "invalidations for sess:one (set, del) and sess:short (set, expiry)",
		f.rec.with(func(r *recorder) bool {
			n := map[string]int{}
			for _, k := range r.keys {
				n[k]++
			}
			return n["sess:one"] >= 2 && n["sess:short"] >= 2
		}))
	for _, k := range f.rec.keys {
		if k == "other:two" {
			t.Error("invalidation for a key outside the prefix")
		}
	}
	f.rdb.FlushAll(ctx)
	testenv.WaitFor(t, 5*time.Second, "FLUSHALL to be reported as all keys", f.rec.with(func(r *recorder) bool { return r.flushes >= 1 }))

	// Tracking must be re-armed on the new connection after a reconnect.
	if err := f.rdb.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, "the subscription to come back", f.rec.with(func(r *recorder) bool { return r.ups >= 2 && r.live }))
	f.rdb.Set(ctx, "sess:after", "{}", time.Hour)
	testenv.WaitFor(t, 5*time.Second, "an invalidation after the reconnect", f.rec.with(func(r *recorder) bool {
		for _, k := range r.keys {
			if k == "sess:after" {
				return true
			}
		}
		return false
	}))
}

func TestTrackingFallsBackWhenRefused(t *testing.T) {
	r := testenv.StartRedis(t)
	admin := r.Client()
	ctx := context.Background()
	// A user that may subscribe but not run CLIENT.
	if err := admin.Do(ctx, "ACL", "SETUSER", "app", "on", ">pw", "~*", "&*", "+@all", "-client").Err(); err != nil {
		t.Fatal(err)
	}
	tr, _ := NewTracking([]string{"sess:"}, nil, nil)
	sc := redis.NewClient(&redis.Options{Addr: r.Addr, Username: "app", Password: "pw", Protocol: 2, OnConnect: tr.OnConnect})
	defer sc.Close()
	rec := &recorder{}
	sub, _ := NewSubscriber(sc, rec, SubscriberConfig{Heartbeat: 200 * time.Millisecond}, nil)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { sub.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	testenv.WaitFor(t, 5*time.Second, "the subscription to go live without tracking", rec.with(func(r *recorder) bool { return r.live }))
	if tr.Enabled() {
		t.Fatal("tracking reported enabled although CLIENT is denied")
	}
	pub, _ := NewPublisher(admin, PublisherConfig{}, nil)
	pub.Publish(ctx, Event{Kind: KindUser, User: "u"})
	testenv.WaitFor(t, 5*time.Second, "the event without tracking", rec.with(func(r *recorder) bool { return len(r.events) == 1 }))
}

// counterSum adds up every series of the counter name in reg.
func counterSum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			total := 0.0
			for _, m := range mf.GetMetric() {
				total += m.GetCounter().GetValue()
			}
			return total
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestSubscriberReportsLossBeforeReconnecting: go-redis reconnects a
// subscription before it reports the loss; the Subscriber must not wait
// for that. With Redis paused right after the kill, the reconnection hangs
// for the pause, and the loss must be reported long before it ends.
func TestSubscriberReportsLossBeforeReconnecting(t *testing.T) {
	f := startSubscriber(t, true)
	var downs int
	f.rec.with(func(r *recorder) bool { downs = r.downs; return true })()
	ctx := context.Background()
	pipe := f.rdb.Pipeline()
	pipe.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub")
	pipe.Do(ctx, "CLIENT", "PAUSE", 2000, "ALL")
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 500*time.Millisecond, "the loss to be reported while Redis is paused", f.rec.with(func(r *recorder) bool {
		return r.downs > downs && !r.live
	}))
}
