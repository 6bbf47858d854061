package logout

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/authz/authz/internal/testenv"
	"github.com/redis/go-redis/v9"
)

// TestFenceRefusesReplica: the read fence fails a pipeline sent to a
// replica even once the fence key holds the live subscription's token
// there (replicated from the master), as it does on an old master
// reconfigured as a replica of the new one after a Sentinel failover. On
// the master the same pipeline passes.
func TestFenceRefusesReplica(t *testing.T) {
	t.Parallel()
	master := testenv.StartRedisArgs(t, "--repl-diskless-sync-delay", "0")
	host, port, _ := net.SplitHostPort(master.Addr)
	replica := testenv.StartRedisArgs(t, "--replicaof", host, port)
	const fenceKey = "authz:fence:test"
	tr, err := NewReadTracking(fenceKey, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	sc := redis.NewClient(&redis.Options{Addr: master.Addr, Protocol: 2, OnConnect: tr.OnConnect})
	defer sc.Close()
	rec := &recorder{}
	sub, _ := NewSubscriber(sc, tr.Wrap(rec), SubscriberConfig{Heartbeat: 200 * time.Millisecond}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sub.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	testenv.WaitFor(t, 5*time.Second, "the subscription to go live", rec.with(func(r *recorder) bool { return r.live }))

	bg := context.Background()
	mc, rc := master.Client(), replica.Client()
	token, err := mc.Get(bg, fenceKey).Result()
	if err != nil {
		t.Fatalf("the fence key on the master: %v", err)
	}
	mc.Set(bg, "sess:x", "v", time.Hour)
	testenv.WaitFor(t, 10*time.Second, "the fence token and the session on the replica", func() bool {
		got, _ := rc.Get(bg, fenceKey).Result()
		s, _ := rc.Get(bg, "sess:x").Result()
		return got == token && s == "v"
	})

	read := func(addr string) (*redis.StringCmd, error) {
		c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2})
		defer c.Close()
		c.AddHook(tr)
		var get *redis.StringCmd
		_, err := c.Pipelined(bg, func(p redis.Pipeliner) error { get = p.Get(bg, "sess:x"); return nil })
		return get, err
	}
	if get, err := read(master.Addr); err != nil || get.Val() != "v" {
		t.Fatalf("a fenced read on the master: %q, %v", get.Val(), err)
	}
	get, err := read(replica.Addr)
	if err == nil || get.Err() == nil {
		t.Fatalf("a fenced read on a replica holding the right token passed: %q", get.Val())
	}
	if !errors.Is(err, ErrNotTracked) || !strings.Contains(err.Error(), "READONLY") || !redis.IsReadOnlyError(get.Err()) {
		t.Errorf("a fenced read on a replica failed with %v (the read: %v); want ErrNotTracked and READONLY", err, get.Err())
	}
}

// TestNoShebang: what Redis before 7 answers a script with a shebang.
func TestNoShebang(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{errors.New("ERR Error compiling script (new function): user_script:1: unexpected symbol near '#'"), true},
		{errors.New("READONLY You can't write against a read only replica."), false},
		{errors.New("NOSCRIPT"), false},
		{nil, false},
	} {
		if got := noShebang(c.err); got != c.want {
			t.Errorf("noShebang(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
