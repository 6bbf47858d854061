package logout

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/authz/authz/internal/testenv"
	"github.com/redis/go-redis/v9"
)

// TestSubscriberFollowsSentinelFailover: after a failover the subscription
// moves to the new master, the Handler hears Subscribed(false) then
// Subscribed(true) (so caches are flushed), and both events and tracking
// work on the new master.
func TestSubscriberFollowsSentinelFailover(t *testing.T) {
	t.Parallel()
	s := testenv.StartSentinel(t)
	tr, err := NewTracking([]string{"sess:"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The Dialer asks the Subscriber (made below, before any dial):
	// go-redis's sentinel may still name the old master after another
	// sentinel announced the switch.
	var sub *Subscriber
	fo := &redis.FailoverOptions{
		MasterName: testenv.SentinelMaster, SentinelAddrs: s.Addrs,
		Protocol: 2, ReadTimeout: -1, OnConnect: tr.OnConnect,
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if err := sub.DialCheck(addr); err != nil {
				return nil, err
			}
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
	sc := redis.NewFailoverClient(fo)
	defer sc.Close()
	rec := &recorder{}
	sub, err = NewSubscriber(sc, rec, SubscriberConfig{Heartbeat: 200 * time.Millisecond, Sentinel: fo}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sub.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	testenv.WaitFor(t, 5*time.Second, "the subscription to go live", rec.with(func(r *recorder) bool { return r.live }))
	if !tr.Enabled() {
		t.Fatal("tracking is off on the master")
	}

	s.Failover()
	testenv.WaitFor(t, 10*time.Second, "the subscription to drop and come back", rec.with(func(r *recorder) bool {
		// The first Subscribed(false) is Run's own, before any subscription.
		return r.downs >= 2 && r.ups >= 2 && r.live
	}))
	rdb := s.Client()
	pub, _ := NewPublisher(rdb, PublisherConfig{}, nil)
	if _, err := pub.Publish(ctx, Event{Kind: KindSession, Session: "after-failover"}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, "the event published on the new master", rec.with(func(r *recorder) bool {
		return len(r.events) == 1 && r.events[0].Session == "after-failover"
	}))
	if err := rdb.Set(ctx, "sess:moved", "{}", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, "tracking to report a write on the new master", rec.with(func(r *recorder) bool {
		return slices.Contains(r.keys, "sess:moved")
	}))
	if !tr.Enabled() {
		t.Error("tracking is off after the failover")
	}
}

// TestTrackingIgnoresSentinels: go-redis runs a FailoverClient's OnConnect
// on its sentinel connections too; a sentinel accepts CLIENT TRACKING but
// holds no keys, so it must not count as tracking being on.
func TestTrackingIgnoresSentinels(t *testing.T) {
	t.Parallel()
	s := testenv.StartSentinel(t)
	tr, _ := NewTracking([]string{"sess:"}, nil, nil)
	c := redis.NewClient(&redis.Options{Addr: s.Addrs[0], Protocol: 2})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cn := c.Conn()
	defer cn.Close()
	if err := tr.OnConnect(ctx, cn); err != nil {
		t.Fatal(err)
	}
	if tr.Enabled() {
		t.Fatal("tracking counted as on for a connection to a sentinel")
	}
	if tracking, _ := cn.Do(ctx, "CLIENT", "TRACKINGINFO").Slice(); len(tracking) > 1 && slices.Contains(tracking[1].([]any), any("on")) {
		t.Errorf("tracking armed on a sentinel: %v", tracking)
	}
}
