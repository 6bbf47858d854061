package logout

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Tracking turns on Redis server-assisted invalidation. It works in one of
// two modes.
//
// Reads mode (NewReadTracking, authz's default) uses Redis's default
// tracking mode. Each connection that reads sessions asks Redis to report
// the keys it read to the invalidation connection (the Subscriber's), so an
// instance hears of a session only if it read it, and once per read:
// messages grow with the instance's own cache misses, not with the site's
// writes times the instance count. Install OnConnect on the Subscriber's
// client (RESP2), Wrap the Subscriber's Handler, and add the Tracking as a
// hook (AddHook) to the client that reads sessions: every pipeline it sends
// then starts with CLIENT TRACKING ON REDIRECT <invalidation connection id>.
// That arms a new connection before its first read, and moves a pooled one
// over when the invalidation connection is replaced (Redis silently drops
// the invalidations of a connection still redirecting to a closed one).
//
// BCAST mode (NewTracking): install OnConnect as the redis.Options.OnConnect
// of the Subscriber's own client (with Protocol: 2): every time go-redis
// opens that connection, reconnects included, it runs
//
//	CLIENT TRACKING ON REDIRECT <its own id> BCAST PREFIX <prefix>…
//
// so Redis reports every write, EXPIRE, DEL and expiry of a key under the
// prefixes to the very connection that is subscribed to
// __redis__:invalidate. Redirecting to itself avoids go-redis's trap where
// data connections keep redirecting to a subscriber id that no longer exists
// after a reconnect.
//
// Where Redis refuses (an ACL without CLIENT, Redis < 6, a proxy), the
// connection still comes up without tracking, Enabled reports false and a
// warning is logged: sessions deleted without an event then stop passing
// within the cache TTL instead of at once.
type Tracking struct {
	prefixes []string
	log      *slog.Logger
	enabled  atomic.Bool
	warned   atomic.Bool
	// warnedLegacy: the Redis < 7 fence was logged.
	warnedLegacy atomic.Bool

	// reads selects reads mode; the fields below serve it only.
	reads bool
	// fenceKey, when set, is a key each invalidation connection writes a
	// token to on its server, and every read checks (NewReadTracking).
	fenceKey string
	// pending is the invalidation connection opened last; target the one
	// whose subscription is live, nil while none is (Wrap moves pending
	// to target).
	pending atomic.Pointer[redirect]
	target  atomic.Pointer[redirect]
	// h is the Handler Wrap wrapped: CheckReaders empties the cache
	// through it.
	h Handler
	// readers are the reading connections CheckReaders last saw armed,
	// and readersFor the invalidation connection they were armed for
	// (nil: none).
	readers    map[string]bool
	readersFor *redirect
	// checkWarned: a failed CheckReaders was logged at warning level.
	checkWarned atomic.Bool
	readersLost atomic.Int64
	readersSeen atomic.Int64 // len(readers), for the gauge
}

// redirect is one invalidation connection.
type redirect struct {
	id      int64  // its CLIENT ID
	tracked bool   // false when Redis refused CLIENT TRACKING
	token   string // with a fence, what it wrote there
	legacy  bool   // with a fence, Redis < 7: legacyFenceScript
}

// NewTracking returns a Tracking in BCAST mode for keys under prefixes. reg
// may be nil.
func NewTracking(prefixes []string, log *slog.Logger, reg prometheus.Registerer) (*Tracking, error) {
	return newTracking(&Tracking{prefixes: prefixes}, log, reg)
}

// NewReadTracking returns a Tracking in reads mode (see Tracking). reg may be
// nil.
//
// fenceKey, when not empty, keeps reads off a node that is no longer the
// master (Sentinel): each invalidation connection writes a fresh random
// token to fenceKey on its own server as it opens, and every pipeline also
// reads fenceKey and fails with ErrNotTracked unless it holds the token of
// the live invalidation connection, or when the server is a replica
// (Redis 7 and later; see fenceScript). A read therefore only succeeds on
// the server the subscription is on while it is a master, and fails while
// there is no subscription. Each process should use a key of its own.
func NewReadTracking(fenceKey string, log *slog.Logger, reg prometheus.Registerer) (*Tracking, error) {
	return newTracking(&Tracking{reads: true, fenceKey: fenceKey}, log, reg)
}

func newTracking(t *Tracking, log *slog.Logger, reg prometheus.Registerer) (*Tracking, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t.log = log
	if reg != nil && t.reads {
		for _, c := range []prometheus.Collector{
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "authz_tracking_reading_connections",
				Help: "Connections armed for this instance's invalidation connection at the last check (reads mode).",
			}, func() float64 { return float64(t.readersSeen.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "authz_tracking_readers_lost_total",
				Help: "Times a connection that read sessions was found closed (Redis forgot what it read) and the cache emptied (reads mode).",
			}, func() float64 { return float64(t.readersLost.Load()) }),
		} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	if reg != nil {
		err := reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "authz_tracking_enabled", Help: "1 when Redis server-assisted invalidation is on for the logout subscription.",
		}, func() float64 {
			if t.Enabled() {
				return 1
			}
			return 0
		}))
		if err != nil {
			return nil, err
		}
	}
	return t, nil
}

// Prefixes are the key prefixes tracked in BCAST mode; nil in reads mode,
// where every key a tracked connection reads is tracked.
func (t *Tracking) Prefixes() []string { return t.prefixes }

// FenceKey is the read fence's key, "" without one.
func (t *Tracking) FenceKey() string { return t.fenceKey }

// Reads reports whether t is in reads mode.
func (t *Tracking) Reads() bool { return t.reads }

// Enabled reports whether tracking was turned on for the latest connection;
// in reads mode, also whether that connection's subscription is live, so
// that reads report to it.
func (t *Tracking) Enabled() bool {
	if t.reads {
		return t.enabled.Load() && t.target.Load() != nil
	}
	return t.enabled.Load()
}

// OnConnect is a redis.Options.OnConnect hook. It does not fail the
// connection when Redis refuses tracking: without it, logout events still
// flow. It does fail it when a fence cannot be written (reads mode).
//
// A FailoverClient (Sentinel) runs its OnConnect on its connections to the
// sentinels too. A sentinel accepts CLIENT TRACKING but holds no sessions,
// so those connections are left alone: otherwise Enabled would tell of the
// sentinel rather than of the master.
func (t *Tracking) OnConnect(ctx context.Context, cn *redis.Conn) error {
	if role, err := cn.Do(ctx, "ROLE").Slice(); err == nil && len(role) > 0 && role[0] == "sentinel" {
		return nil
	}
	id, err := cn.ClientID(ctx).Result()
	if err == nil && t.reads {
		err = t.openRedirect(ctx, cn, id)
	} else if err == nil {
		args := []any{"CLIENT", "TRACKING", "ON", "REDIRECT", id, "BCAST"}
		for _, p := range t.prefixes {
			args = append(args, "PREFIX", p)
		}
		err = cn.Do(ctx, args...).Err()
	}
	var fe *fenceError
	if errors.As(err, &fe) {
		return err
	}
	if err != nil {
		t.enabled.Store(false)
		if !t.warned.Swap(true) {
			t.log.Warn("Redis refused CLIENT TRACKING; deleted sessions stop passing within the cache TTL instead of at once", "err", err)
		}
		return nil
	}
	t.enabled.Store(true)
	return nil
}

// openRedirect records cn (client id) as the next invalidation connection.
// Tracking it onto itself only checks that Redis allows CLIENT TRACKING: the
// connection reads no key. With a fence, it writes a fresh token there;
// that failing fails the connection (the Subscriber retries), tracking being
// refused does not (reads then go untracked, and Enabled says so).
func (t *Tracking) openRedirect(ctx context.Context, cn *redis.Conn, id int64) error {
	terr := cn.Do(ctx, "CLIENT", "TRACKING", "ON", "REDIRECT", id).Err()
	r := &redirect{id: id, tracked: terr == nil}
	if t.fenceKey != "" {
		var b [16]byte
		rand.Read(b[:])
		r.token = hex.EncodeToString(b[:])
		if err := cn.Set(ctx, t.fenceKey, r.token, 0).Err(); err != nil {
			t.pending.Store(nil)
			return &fenceError{fmt.Errorf("write the read fence: %w", err)}
		}
		// Try the fence where it must pass (this is the master): a
		// Redis that cannot compile its shebang gets the legacy script.
		err := cn.Eval(ctx, fenceScript, []string{t.fenceKey}, r.token).Err()
		if noShebang(err) {
			r.legacy = true
			if !t.warnedLegacy.Swap(true) {
				t.log.Warn("Redis before 7: the read fence cannot refuse a replica that has replicated its token; reads are fenced by the token alone", "err", err)
			}
			err = cn.Eval(ctx, legacyFenceScript, []string{t.fenceKey}, r.token).Err()
		}
		if err != nil {
			t.pending.Store(nil)
			return &fenceError{fmt.Errorf("check the read fence: %w", err)}
		}
	}
	t.pending.Store(r)
	return terr
}

// fenceError fails a connection rather than letting it come up unfenced.
type fenceError struct{ err error }

func (e *fenceError) Error() string { return e.err.Error() }
func (e *fenceError) Unwrap() error { return e.err }

// Wrap returns h with the live invalidation connection kept up to date
// (reads mode): on Subscribed(true) the connection just opened becomes the
// one reads redirect to before h hears of it, so nothing h caches from then
// on was read untracked; on Subscribed(false) there is none. In BCAST mode
// it returns h.
func (t *Tracking) Wrap(h Handler) Handler {
	if !t.reads {
		return h
	}
	t.h = h
	return trackedHandler{h, t}
}

// WatchReaders runs CheckReaders through c every interval until ctx ends,
// each check bounded by timeout.
func (t *Tracking) WatchReaders(ctx context.Context, c redis.UniversalClient, every, timeout time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		if err := t.CheckReaders(cctx, c); err != nil && ctx.Err() == nil {
			t.checkFailed(err)
		}
		cancel()
	}
}

// checkFailed logs a failed CheckReaders: at warning level the first time
// (an ACL without CLIENT LIST, say: a reading connection's loss is then
// bounded by the cache TTL only), at debug level after that.
func (t *Tracking) checkFailed(err error) {
	if t.checkWarned.CompareAndSwap(false, true) {
		t.log.Warn("tracking: cannot check the connections that read sessions (needs CLIENT LIST): a session deleted right after one of them closes may stay cached until --cache-ttl", "err", err)
		return
	}
	t.log.Debug("tracking: cannot check the reading connections", "err", err)
}

// ReadersLost is how many times CheckReaders found a reading connection
// gone and emptied the cache.
func (t *Tracking) ReadersLost() int64 { return t.readersLost.Load() }

// CheckReaders (reads mode) asks the server, through c, which connections
// are armed for the live invalidation connection (CLIENT LIST: redir=<its
// id>), and empties the cache when one it saw armed last time is gone.
//
// Redis keeps what a connection read with the connection: when it closes
// (CLIENT KILL, the server's timeout, go-redis dropping it) Redis forgets
// those keys and reports none of their later writes, so a session an app
// then deletes would stay cached until --cache-ttl. Run every heartbeat,
// it bounds that to one heartbeat, the bound a plain DEL has anyway. A
// connection opened and closed between two checks goes unseen, unless an
// older one went with it (as with CLIENT KILL TYPE normal or a restart).
//
// c must not be the invalidation connection's own client: OnConnect would
// take c's connection for a new invalidation connection. Call it from one
// goroutine.
func (t *Tracking) CheckReaders(ctx context.Context, c redis.UniversalClient) error {
	if !t.reads || t.h == nil {
		return nil
	}
	r := t.target.Load()
	if r == nil || !r.tracked {
		t.readers, t.readersFor = nil, nil
		t.readersSeen.Store(0)
		return nil
	}
	list, err := c.Do(ctx, "CLIENT", "LIST", "TYPE", "normal").Text()
	if err != nil {
		return fmt.Errorf("list the connections armed for tracking: %w", err)
	}
	redir := "redir=" + strconv.FormatInt(r.id, 10)
	now := map[string]bool{}
	for _, line := range strings.Split(list, "\n") {
		var id string
		armed := false
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "id="); ok {
				id = v
			} else if f == redir {
				armed = true
			}
		}
		if armed && id != "" {
			now[id] = true
		}
	}
	lost := false
	if t.readersFor == r && t.target.Load() == r {
		for id := range t.readers {
			if !now[id] {
				lost = true
				break
			}
		}
	}
	t.readers, t.readersFor = now, r
	t.readersSeen.Store(int64(len(now)))
	if lost {
		t.readersLost.Add(1)
		t.log.Warn("a connection that read sessions has closed: Redis forgot what it read, so the cache is emptied")
		t.h.KeysChanged(nil)
	}
	return nil
}

type trackedHandler struct {
	Handler
	t *Tracking
}

func (h trackedHandler) Subscribed(live bool) {
	if live {
		h.t.target.Store(h.t.pending.Load())
	} else {
		h.t.target.Store(nil)
	}
	h.Handler.Subscribed(live)
}

// ErrNotTracked fails a read (reads mode with a fence) while there is no
// live invalidation connection, or when the read reached a server other
// than the one the invalidation connection is on.
var ErrNotTracked = errors.New("read not tracked: no live invalidation connection on this Redis server")

// DialHook passes dials through (redis.Hook).
func (t *Tracking) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook passes single commands through (redis.Hook): authz reads
// sessions and tokens in pipelines only.
func (t *Tracking) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

// ProcessPipelineHook (redis.Hook, reads mode) puts CLIENT TRACKING ON
// REDIRECT <id> before every pipeline, and with a fence a check of it
// (fenceScript). The pipeline fails if either does: its reads would not be reported. MULTI
// blocks are left alone.
func (t *Tracking) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	if !t.reads {
		return next
	}
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) == 0 || cmds[0].Name() == "multi" {
			return next(ctx, cmds)
		}
		r := t.target.Load()
		switch {
		case r == nil && t.fenceKey != "":
			return failAll(cmds, ErrNotTracked)
		case r == nil, !r.tracked && t.fenceKey == "":
			// No subscription: the cache is bypassed, so untracked
			// reads are harmless. Or tracking refused: reads go
			// untracked, as Enabled reports.
			return next(ctx, cmds)
		}
		all := make([]redis.Cmder, 0, len(cmds)+2)
		var fence *redis.Cmd
		if t.fenceKey != "" {
			// First: go-redis judges a pipeline's connection by its
			// first reply, and drops one that answers READONLY. A
			// connection to the old master thus leaves the pool, and
			// the next dial asks a sentinel where the master is now.
			script := fenceScript
			if r.legacy {
				script = legacyFenceScript
			}
			fence = redis.NewCmd(ctx, "EVAL", script, 1, t.fenceKey, r.token)
			all = append(all, fence)
		}
		var arm *redis.StatusCmd
		if r.tracked {
			arm = redis.NewStatusCmd(ctx, "CLIENT", "TRACKING", "ON", "REDIRECT", r.id)
			all = append(all, arm)
		}
		all = append(all, cmds...)
		err := next(ctx, all)
		if fence != nil && fence.Err() != nil {
			return failAll(cmds, fmt.Errorf("%w: %w", ErrNotTracked, fence.Err()))
		}
		if arm != nil && arm.Err() != nil {
			if !redirectGone(arm.Err()) {
				return failAll(cmds, fmt.Errorf("arm tracking: %w", arm.Err()))
			}
			// go-redis reports the first error of the whole batch;
			// report the first of the caller's own.
			for _, c := range cmds {
				if c.Err() != nil {
					return c.Err()
				}
			}
			return nil
		}
		return err
	}
}

// fenceScript fails, with an error go-redis takes for a connection to a
// replica, unless the fence key holds the live invalidation connection's
// token.
//
// The token alone proves "this server has seen it", not "this server is
// the master": an old master reconfigured as a replica of the new one
// receives the new token by replication, and a pooled connection to it
// would pass. So the script starts with a shebang without the no-writes
// flag: Redis 7 takes it for a script that may write and refuses it on a
// replica ("READONLY You can't write against a read only replica"),
// whatever the key holds. allow-oom keeps reads going on a master at
// maxmemory, as plain reads do. Redis before 7 cannot compile a shebang;
// there legacyFenceScript is used (see Tracking.openRedirect).
const fenceScript = "#!lua flags=allow-oom\n" + legacyFenceScript

// legacyFenceScript is fenceScript for Redis before 7: the token check
// alone, which a replica that has replicated the token passes.
const legacyFenceScript = `if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
return redis.error_reply('READONLY authz: not the Redis server the logout subscription is on')`

// noShebang reports Redis refusing to compile fenceScript: a Redis before
// 7, whose Lua takes the shebang for a syntax error.
func noShebang(err error) bool {
	return err != nil && strings.Contains(err.Error(), "Error compiling script")
}

// redirectGone reports Redis refusing a redirect to a connection that has
// closed. The read still stands: the Subscriber is about to hear its
// connection is gone, and then empties the cache of anything read in the
// meantime, as it does for a lost subscription. Failing it instead would
// turn every brief subscription loss into failed requests (a CLIENT PAUSE
// longer than two heartbeats, say).
func redirectGone(err error) bool {
	return strings.Contains(err.Error(), "redirect to does not exist")
}

func failAll(cmds []redis.Cmder, err error) error {
	for _, c := range cmds {
		c.SetErr(err)
	}
	return err
}
