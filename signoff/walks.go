package signoff

import (
	"context"
	"fmt"
	"sync"

	"github.com/authz/authz/authz"

	"github.com/prometheus/client_golang/prometheus"
)

// maxUserWalks bounds the user-wide logout walks one process runs at once:
// each is a pass over every session key, and several at once slow every
// other Redis call (six at once raised verify p99 from 4 to 15 ms over
// 200 k sessions). More wait for a slot, cancelled with their requests.
const maxUserWalks = 2

// userWalks runs the walks of POST /logout?everywhere=1: one per user and
// tenant at a time, which every request for that user arriving before it
// starts scanning waits for and shares (the same sessions would be found
// twice otherwise), at most maxUserWalks at once. A request arriving once
// the walk is scanning cannot share it: the walk's SCAN cursor may be past
// sessions created since, which the request's own walk would have found. It
// waits for one more walk instead, started when the scanning one ends and
// shared by every request arriving until it scans. A walk runs off its
// requests' goroutines and is cancelled when the last request waiting for
// it is gone (its client left): nobody is left to tell the result, and the
// user can ask again.
type userWalks struct {
	mu    sync.Mutex
	calls map[string]*userWalk // by tenant and user: the walk running or waiting for a slot
	slots chan struct{}
	// running is the number of walks started and not yet ended; done
	// counts them by result, joined the requests that shared one.
	running prometheus.Gauge
	done    *prometheus.CounterVec
	// scanned, when set (tests only), runs when a walk has scanned,
	// before it ends.
	scanned func()
}

type userWalk struct {
	done chan struct{} // closed when n and err are set
	refs int           // requests waiting
	// ctx is the walk's own, cancelled when no request waits: the walk
	// outlives the request that started it.
	ctx     context.Context
	cancel  context.CancelFunc
	started bool      // scanning: a request arriving now waits for next
	next    *userWalk // the walk to start when this one ends
	n       int
	err     error
}

func newUserWalk(ctx context.Context) *userWalk {
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	return &userWalk{done: make(chan struct{}), ctx: wctx, cancel: cancel}
}

func newUserWalks(reg prometheus.Registerer) (*userWalks, error) {
	w := &userWalks{
		calls: make(map[string]*userWalk),
		slots: make(chan struct{}, maxUserWalks),
		running: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "authz_logout_user_walks_running", Help: "User-wide logout walks (a pass over every session key) running or waiting for one of the slots now.",
		}),
		done: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authz_logout_user_walks_total", Help: "User-wide logout walks by result (ok, error, cancelled: every request waiting for it left), and requests that shared one not yet scanning (joined).",
		}, []string{"result"}),
	}
	for _, r := range []string{"ok", "error", "cancelled", "joined"} {
		w.done.WithLabelValues(r)
	}
	for _, c := range []prometheus.Collector{w.running, w.done} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// revoke revokes every session of user in ks (Signoff.RevokeUser), sharing
// a walk for them that has not started scanning, and returns how many it
// revoked. It returns when the walk ends or ctx does, whichever is first.
func (w *userWalks) revoke(ctx context.Context, s *Signoff, ks authz.Keyspace, user string) (int, error) {
	key := ks.ID() + "\x00" + user
	w.mu.Lock()
	c := w.calls[key]
	switch {
	case c == nil:
		c = newUserWalk(ctx)
		w.calls[key] = c
		w.running.Inc()
		go w.run(c, key, s, ks, user)
	case !c.started:
		w.done.WithLabelValues("joined").Inc()
	case c.next == nil:
		// Started by run when c ends: still one walk per user at a time.
		c.next = newUserWalk(ctx)
		c = c.next
	default:
		w.done.WithLabelValues("joined").Inc()
		c = c.next
	}
	c.refs++
	w.mu.Unlock()
	select {
	case <-c.done:
		return c.n, c.err
	case <-ctx.Done():
		w.mu.Lock()
		if c.refs--; c.refs == 0 {
			// A request arriving now starts a walk of its own rather
			// than join one being cancelled.
			c.cancel()
			switch p := w.calls[key]; {
			case p == c && c.next == nil:
				delete(w.calls, key)
			case p == c:
				// Requests wait for the walk after c: c stays, so that
				// none starts before c ends (run starts c.next then).
			case p != nil && p.next == c:
				// c has not started: drop it, and p with it if nobody
				// waits for p either.
				p.next = nil
				if p.refs == 0 {
					delete(w.calls, key)
				}
			}
		}
		w.mu.Unlock()
		return 0, fmt.Errorf("revoke user: %w", ctx.Err())
	}
}

func (w *userWalks) run(c *userWalk, key string, s *Signoff, ks authz.Keyspace, user string) {
	ctx := c.ctx
	defer c.cancel()
	select {
	case w.slots <- struct{}{}:
		w.mu.Lock()
		c.started = true
		w.mu.Unlock()
		c.n, c.err = s.RevokeUser(ctx, ks.Name(), user)
		if w.scanned != nil {
			w.scanned()
		}
		<-w.slots
	case <-ctx.Done():
		c.err = fmt.Errorf("revoke user: waiting for a walk slot: %w", ctx.Err())
	}
	result := "ok"
	switch {
	case ctx.Err() != nil:
		result = "cancelled"
	case c.err != nil:
		result = "error"
	}
	w.done.WithLabelValues(result).Inc()
	w.mu.Lock()
	if w.calls[key] == c {
		if next := c.next; next != nil {
			// Requests arrived while c scanned: their walk starts now.
			w.calls[key] = next
			w.running.Inc()
			go w.run(next, key, s, ks, user)
		} else {
			delete(w.calls, key)
		}
	}
	w.mu.Unlock()
	w.running.Dec()
	close(c.done)
}
