package authz

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/authz/authz/logout"
)

// entryKind is what differs between the things the cache holds: the
// sessions of each format and API tokens. Looking them up, sharing a Redis
// read, the circuit, the caps, negative entries and stale allows are the
// same.
type entryKind struct {
	// label names the kind and its ids in log lines; doc names a stored
	// value of the kind.
	label, doc string
	// open, for a session its cookie carries, decodes the cookie's raw
	// value before Redis is asked anything: a cookie that fails its MAC
	// or has expired never costs a Redis read.
	open func(t *tenant, raw string, now time.Time) (*Session, error)
	// read fetches what Redis holds for key: the stored JSON and its
	// key's TTL, or for an opened session, only whether it is over.
	read func(v *Verifier, ctx context.Context, t *tenant, key string, opened *Session) ([]byte, time.Duration, error)
	// prefixes are the tenant's Redis prefixes of every key that can end
	// an entry of the kind: a stale allow needs tracking to cover each.
	prefixes func(t *tenant) []string
	// logID names key in a log line without revealing it.
	logID func(key string) string
	// Reasons for what a read can find besides an identity.
	notFound, tooLarge, invalid, anonymous Reason
	// noUser, when set, makes a value naming nobody an error worth a log
	// line (a token must name someone; a session may be anonymous).
	noUser error
	// expires: with EnforceExpires, cookie.expires bounds the entry.
	// hardExpires: the session's expiry bounds it whatever EnforceExpires
	// says, as the format's library checks it on every request.
	expires, hardExpires bool
	// touch slides the stored session's TTL (express-session's touch).
	touch bool
	// decode reads a stored value of the kind.
	decode func(d *decoder, data []byte, now time.Time) (*Session, error)
	// redisKeys are the (one or two) Redis keys read reads for key, whose
	// masters' breakers it answers to.
	redisKeys func(t *tenant, key string, opened *Session) []string
}

var sessionKind = &entryKind{
	label: "session", doc: "session",
	read: func(_ *Verifier, ctx context.Context, t *tenant, sid string, _ *Session) ([]byte, time.Duration, error) {
		return t.store.load(ctx, sid)
	},
	prefixes: func(t *tenant) []string { return []string{t.store.prefix} },
	logID:    shortHash,
	notFound: ReasonNotFound, tooLarge: ReasonSessionTooLarge,
	invalid: ReasonInvalidSession, anonymous: ReasonAnonymous,
	expires: true, touch: true,
	decode: func(d *decoder, data []byte, _ time.Time) (*Session, error) { return d.decodeSession(data) },
	redisKeys: func(t *tenant, sid string, _ *Session) []string {
		return []string{t.store.prefix + sid, t.store.revokedKey(sid)}
	},
}

// lookup returns the entry for key (a session id, or a token's cache key)
// in tenant t: from the cache, else from Redis, else, when Redis fails, a
// stale one if StaleIfError allows it. nil means the store is unavailable.
// raw is what k.open decodes for a session its cookie carries.
func (v *Verifier) lookup(ctx context.Context, t *tenant, key []byte, raw string, k *entryKind, now int64) *entry {
	var e *entry
	if !v.bypass.Load() {
		// The same id under another tenant is another session.
		if e = v.cache.get(key, now); e != nil && e.tenant != t {
			e = nil
		}
	}
	if e != nil {
		v.metrics.cacheHits.Inc()
		return e
	}
	v.metrics.cacheMisses.Inc()
	e, err := v.load(ctx, t, key, raw, k)
	if err != nil {
		return v.stale(t, k, key, now)
	}
	return e
}

// load fetches key from Redis, sharing one call among concurrent misses.
// The flight key carries the invalidation generation: a request that
// arrives after a logout never joins a read that started before it.
// The tenant's id is in it too: the same session id under two tenants is
// two sessions.
func (v *Verifier) load(ctx context.Context, t *tenant, key []byte, raw string, k *entryKind) (*entry, error) {
	gen := v.cache.gen(key)
	flight := strconv.FormatUint(gen, 36) + ":" + t.id + ":" + string(key)
	res, err, _ := v.flight.Do(flight, func() (any, error) {
		return v.fetch(context.WithoutCancel(ctx), t, flight[len(flight)-len(key):], raw, k, gen)
	})
	if err != nil {
		return nil, err
	}
	return res.(*entry), nil
}

func (v *Verifier) fetch(ctx context.Context, t *tenant, key, raw string, k *entryKind, gen uint64) (*entry, error) {
	negative := func(r Reason, now int64) (*entry, error) {
		e := &entry{tenant: t, reason: r, until: now + int64(v.cfg.NegativeCacheTTL)}
		if v.cfg.NegativeCacheTTL > 0 {
			v.put(key, e, gen, now)
		}
		return e, nil
	}
	// A session its cookie carries is decoded first: what is wrong with
	// the cookie itself is known without Redis.
	var opened *Session
	if k.open != nil {
		start := v.cfg.Now()
		s, err := k.open(t, raw, start)
		var re *reasonError
		switch {
		case errors.As(err, &re):
			return negative(re.r, start.UnixNano())
		case err != nil:
			v.log.Warn("unreadable "+k.doc, "tenant", t.name, k.label, k.logID(key), "err", err)
			return negative(k.invalid, start.UnixNano())
		case s.User == "":
			return negative(k.anonymous, start.UnixNano())
		}
		opened = s
	}
	// The breakers of the masters the read touches: on a cluster, each
	// of its keys' (the session's and its marker's may be on two); else
	// the one.
	var bs [2]*breaker
	var rkeys []string
	n := 1
	if v.breakers.cluster == nil {
		bs[0] = &v.breakers.one
	} else {
		rkeys = k.redisKeys(t, key, opened)
		n = len(rkeys)
		for i, rk := range rkeys {
			bs[i] = v.breakers.forKey(ctx, rk)
		}
	}
	for _, b := range bs[:n] {
		if b.open(v.cfg.Now().UnixNano()) {
			return nil, errBreakerOpen
		}
	}
	if !v.acquireLoad() {
		return nil, errOverloaded
	}
	defer v.pending.Add(-1)
	// The key's TTL counts from when Redis read it, at or after sent:
	// counting it from after the answer arrived would let the entry
	// outlive the key by the round trip.
	sent := v.cfg.Now().UnixNano()
	data, ttl, err := k.read(v, ctx, t, key, opened)
	nowT := v.cfg.Now()
	now := nowT.UnixNano()
	switch {
	case errors.Is(err, logout.ErrNotTracked):
		// Redis answered, from a server the logout subscription is
		// not on (a failover under way): no sign of Redis being down.
	case err != nil && !isAnswer(err):
		// Only the master that failed is counted against, when the
		// read says which.
		var ke *keyError
		named := errors.As(err, &ke)
		failed := false
		for i, b := range bs[:n] {
			if rkeys == nil || !named || ke.key == rkeys[i] {
				b.failure(now)
				failed = true
			}
		}
		if !failed {
			bs[0].failure(now)
		}
	default:
		for _, b := range bs[:n] {
			b.success()
		}
	}
	switch {
	case errors.Is(err, errNotFound):
		return negative(k.notFound, now)
	case errors.Is(err, errRevoked):
		return negative(ReasonRevoked, now)
	case errors.Is(err, errStaleRevision):
		return negative(ReasonStaleRevision, now)
	case errors.Is(err, errTooLarge):
		v.log.Warn(k.doc+" over the size cap", "err", err)
		return negative(k.tooLarge, now)
	case errors.Is(err, errWrongType):
		v.log.Warn("unreadable "+k.doc, "tenant", t.name, k.label, k.logID(key), "err", err)
		return negative(k.invalid, now)
	case err != nil:
		v.metrics.redisErrors.WithLabelValues("load").Inc()
		v.log.Warn(k.label+" store unavailable", "err", err)
		return nil, err
	}
	s := opened
	if s == nil {
		s, err = k.decode(&t.decoder, data, nowT)
		if err == nil && s.User == "" && k.noUser != nil {
			err = k.noUser
		}
		if errors.Is(err, errExpired) {
			return negative(ReasonExpired, now)
		}
		if err != nil {
			v.log.Warn("unreadable "+k.doc, "tenant", t.name, k.label, k.logID(key), "err", err)
			return negative(k.invalid, now)
		}
		if s.User == "" {
			return negative(k.anonymous, now)
		}
	}
	s.userValue = []string{s.User}
	e := &entry{tenant: t, sess: s, until: now + int64(v.cfg.CacheTTL)}
	if ttl > 0 {
		kd := sent + int64(ttl)
		e.keyDeadline.Store(kd)
		e.keyExpires.Store(kd)
		e.until = min(e.until, kd)
	}
	if (k.hardExpires || k.expires && v.cfg.EnforceExpires) && !s.Expires.IsZero() {
		e.until = min(e.until, s.Expires.UnixNano())
	}
	v.put(key, e, gen, now)
	return e, nil
}

// isAnswer reports whether a read's error is what Redis holds (nothing, a
// revoked, oversized or unreadable value): an answer about the session,
// not a failure of the store, so it never feeds the breaker.
func isAnswer(err error) bool {
	return errors.Is(err, errNotFound) || errors.Is(err, errRevoked) || errors.Is(err, errStaleRevision) || errors.Is(err, errTooLarge) || errors.Is(err, errWrongType)
}

// SetStaleGuard sets what StaleIfError asks before serving a stale allow:
// whether keys under prefix are tracked, so that a session deleted without
// a logout event would have been heard of. Without a guard, nothing is
// served stale.
func (v *Verifier) SetStaleGuard(tracked func(prefix string) bool) {
	v.staleGuard.Store(&tracked)
}

// errOverloaded means MaxPendingLoads reads are already waiting on Redis.
var errOverloaded = errors.New("too many Redis reads in flight")

// acquireLoad takes a slot for one Redis read, or reports the cap hit.
func (v *Verifier) acquireLoad() bool {
	if v.pending.Add(1) > int64(v.cfg.MaxPendingLoads) {
		v.pending.Add(-1)
		v.metrics.bound("pending_loads")
		return false
	}
	return true
}

// stale returns what the cache held for key when Redis cannot be read, if
// StaleIfError allows serving it: an allowed session, within StaleIfError
// of its cache TTL and never past its key's own expiry, and only while the
// logout subscription is live. The subscription being live is what makes
// it safe: every logout published since the session was cached has been
// applied (losing the subscription empties the cache), so a stale allow
// can only be a session nobody logged out.
//
// The subscription alone hears logouts that publish; a session an app
// destroys without publishing is heard only through tracking. So stale
// allows also need the guard (SetStaleGuard) to vouch that tracking is on
// and covers the key's prefix.
func (v *Verifier) stale(t *tenant, k *entryKind, key []byte, now int64) *entry {
	if v.cfg.StaleIfError <= 0 || v.bypass.Load() {
		return nil
	}
	g := v.staleGuard.Load()
	if g == nil {
		return nil
	}
	for _, p := range k.prefixes(t) {
		if !(*g)(p) {
			return nil
		}
	}
	e := v.cache.peek(key)
	if e == nil || e.tenant != t || e.sess == nil || now >= e.until+int64(v.cfg.StaleIfError) {
		return nil
	}
	if k.hardExpires && !e.sess.Expires.IsZero() && now >= e.sess.Expires.UnixNano() {
		return nil // never past the session's own end
	}
	if ke := e.keyExpires.Load(); ke != 0 && now >= ke {
		return nil
	}
	v.metrics.staleServed.Inc()
	return e
}

func (v *Verifier) put(sid string, e *entry, gen uint64, now int64) {
	if !v.bypass.Load() {
		v.cache.put(sid, e, gen, now)
	}
}

// maybeTouch slides the session's expiry like express-session's touch, at
// most once per TouchInterval, and only for keys that have a TTL (a store
// written without TTL has nothing to slide).
func (v *Verifier) maybeTouch(t *tenant, sid []byte, e *entry, s *Session, now int64) {
	if v.cfg.TouchInterval < 0 {
		return
	}
	ttl := s.OriginalMaxAge
	if ttl <= 0 {
		ttl = v.cfg.StoreTTL
	}
	ttl = ttl.Round(time.Second) // EXPIRE takes whole seconds
	kd := e.keyDeadline.Load()
	if kd == 0 || int64(ttl)-(kd-now) < int64(v.cfg.TouchInterval) {
		return
	}
	next := now + int64(ttl)
	if !e.keyDeadline.CompareAndSwap(kd, next) {
		return // another request is touching it
	}
	// A touch that does not happen gives the deadline back, so a later
	// request tries again.
	undo := func() { e.keyDeadline.CompareAndSwap(next, kd) }
	select {
	case v.touches <- struct{}{}:
	default:
		undo()
		return
	}
	id := string(sid)
	b := v.breakers.forKey(context.Background(), t.store.prefix+id)
	if b.open(now) {
		<-v.touches
		undo()
		return
	}
	go func() {
		defer func() { <-v.touches }()
		if err := t.store.touch(context.Background(), id, ttl); err != nil {
			undo()
			b.failure(v.cfg.Now().UnixNano())
			v.metrics.redisErrors.WithLabelValues("touch").Inc()
			v.log.Warn("sliding expiry failed", "err", err)
			return
		}
		e.keyExpires.Store(next)
		v.metrics.touches.Inc()
	}()
}
