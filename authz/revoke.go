package authz

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Revocation is how a logout through authz ends sessions so that no
// instance, and no app, can bring them back:
//
//  1. a marker RevokedPrefix+KeyPrefix+sid is set, living as long as the
//     session could (its remaining TTL, its cookie's maxAge or StoreTTL,
//     whichever is longest; forever if the key had no TTL);
//  2. the session key is deleted, as express-session's destroy does;
//  3. the caller publishes the logout event, and every instance drops its
//     cached copy.
//
// The marker is what makes the logout stick: an Express request that loaded
// the session before the logout and saves it afterwards writes the key
// again, but authz checks the marker in the same round trip as the session
// and refuses it. Sessions created later have new ids and no marker.

// endedAgain counts and logs a session store.endAgain ended once more.
func (v *Verifier) endedAgain(err error) {
	if err != nil {
		v.metrics.endedAgain.WithLabelValues("error").Inc()
		v.metrics.redisErrors.WithLabelValues("load").Inc()
		v.rateLimited(func() {
			v.log.Warn("a logged-out session saved back by an app could not be ended again; authz still refuses it", "err", err)
		})
		return
	}
	v.metrics.endedAgain.WithLabelValues("ok").Inc()
}

// ParseSessionRef turns what an operator pastes (a session id, or a cookie
// value, raw or percent-encoded) into a session id. A cookie value must be
// signed by one of the tenant's secrets. tenant is "" without a tenant file.
func (v *Verifier) ParseSessionRef(tenant, ref string) (string, error) {
	if len(ref) > 2 && (ref[:2] == "s:" || len(ref) > 4 && (ref[:4] == "s%3A" || ref[:4] == "s%3a")) {
		t, err := v.tenant(tenant)
		if err != nil {
			return "", err
		}
		sg := t.codec.get()
		defer t.codec.put(sg)
		sid, reason := t.codec.unsign(sg, ref)
		if reason != "" {
			return "", fmt.Errorf("cookie value: %s", reason)
		}
		return string(sid), nil
	}
	if !validSID([]byte(ref)) {
		return "", fmt.Errorf("%q is neither a session id ([A-Za-z0-9_-], %d-%d characters) nor a signed cookie value (s:…)", ref, minSIDLen, maxSIDLen)
	}
	return ref, nil
}

// Session loads and decodes one session straight from Redis (no cache). It
// returns errNotFound-wrapping errors for missing or revoked sessions.
func (v *Verifier) Session(ctx context.Context, tenant, sid string) (*Session, time.Duration, error) {
	t, err := v.tenant(tenant)
	if err != nil {
		return nil, 0, err
	}
	data, ttl, err := t.store.load(ctx, sid)
	if errors.Is(err, errNotFound) || errors.Is(err, errRevoked) {
		return nil, 0, fmt.Errorf("session %s: %w", shortHash(sid), err)
	}
	if err != nil {
		return nil, 0, err
	}
	s, err := t.decoder.decode(data)
	if err != nil {
		return nil, 0, fmt.Errorf("session %s: %w", shortHash(sid), err)
	}
	return s, ttl, nil
}

// IsNotFound reports whether err means the session does not exist or was
// revoked.
func IsNotFound(err error) bool { return errors.Is(err, errNotFound) || errors.Is(err, errRevoked) }

// RevokeSession ends one session: marker, then DEL. It reports whether the
// session key existed. It does not publish; the caller does.
func (v *Verifier) RevokeSession(ctx context.Context, tenant, sid string) (bool, error) {
	t, err := v.tenant(tenant)
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(ctx, v.cfg.RedisTimeout*4)
	defer cancel()
	key := t.store.prefix + sid
	pipe := v.rdb.Pipeline()
	get := getCapped(ctx, pipe, key, v.cfg.MaxSessionBytes)
	pttl := pipe.PTTL(ctx, key)
	cmds, _ := pipe.Exec(ctx) // each command's own error: see readErr
	if err := readErr(cmds...); err != nil {
		return false, fmt.Errorf("revoke session %s: %w", shortHash(sid), err)
	}
	var maxAge time.Duration
	if data, err := capped(get, v.cfg.MaxSessionBytes); err == nil {
		if s, err := t.decoder.decode(data); err == nil {
			maxAge = s.OriginalMaxAge
		}
	}
	return v.revoke(ctx, t, []revocation{{sid: sid, pttl: pttl.Val(), maxAge: maxAge}})
}

type revocation struct {
	sid    string
	pttl   time.Duration // -1: no TTL, -2: no key
	maxAge time.Duration
}

// revoke marks, then deletes, so that no session is deleted before its
// marker is written. On a cluster that takes two round trips: one pipeline
// would not order them, as go-redis splits it by node and sends the parts
// concurrently (and MULTI cannot span the two keys' slots); a DEL that
// landed without its marker would let an app's late save revive the
// session.
//
// With RevokeWaitReplicas set (Sentinel), the DELs are followed by WAIT on
// the same connection, so the logout is on the replicas, which a failover
// promotes, before it is reported done. A master's replication offset
// covers every earlier write, so this covers the markers too.
func (v *Verifier) revoke(ctx context.Context, t *tenant, rs []revocation) (bool, error) {
	pipe := v.rdb.Pipeline()
	for _, r := range rs {
		var ttl time.Duration // 0: the marker never expires
		if r.pttl != -1 {
			ttl = max(r.pttl, r.maxAge, v.cfg.StoreTTL)
		}
		pipe.Set(ctx, t.store.revokedKey(r.sid), "1", ttl)
	}
	// On one connection (a single node, Sentinel's master) a pipeline runs
	// in order: one round trip. Only a cluster needs the markers confirmed
	// before the DELs are sent.
	if v.cfg.Topology == TopologyCluster {
		if _, err := pipe.Exec(ctx); err != nil {
			return false, fmt.Errorf("revoke %d sessions: write markers: %w", len(rs), err)
		}
		pipe = v.rdb.Pipeline()
	}
	dels := make([]*redis.IntCmd, len(rs))
	for i, r := range rs {
		dels[i] = pipe.Del(ctx, t.store.prefix+r.sid)
	}
	var wait *redis.Cmd
	if n := v.cfg.RevokeWaitReplicas; n > 0 {
		// Half the call timeout: the whole pipeline's answer must arrive
		// within it.
		wait = pipe.Do(ctx, "WAIT", n, max(1, (v.cfg.RedisTimeout/2).Milliseconds()))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return false, fmt.Errorf("revoke %d sessions: delete: %w", len(rs), err)
	}
	if wait != nil {
		if n, _ := wait.Int64(); n < int64(v.cfg.RevokeWaitReplicas) {
			v.log.Warn("logout written on the master but not yet confirmed by a replica; a failover right now could undo it",
				"sessions", len(rs), "replicas_acked", n, "wanted", v.cfg.RevokeWaitReplicas)
		}
	}
	found := false
	for _, d := range dels {
		found = found || d.Val() > 0
	}
	return found, nil
}

// scanBatch is how many keys one SCAN step asks for; each step's sessions
// are read in one pipelined round trip.
const scanBatch = 1000

// RevokeUser ends every session of user that exists now, whoever created
// it: it walks the session keyspace (walk) and revokes the user's sessions
// batch by batch. Its cost is one pass over all sessions; it runs in the
// CLI or the logout endpoint, never on the verify path. Only the tenant's
// key prefix is walked: the same user id in another tenant is another user.
func (v *Verifier) RevokeUser(ctx context.Context, tenant, user string) (int, error) {
	if user == "" {
		return 0, errors.New("revoke user: empty user id")
	}
	t, err := v.tenant(tenant)
	if err != nil {
		return 0, err
	}
	n := 0
	err = v.walk(ctx, t.store.prefix, func(ctx context.Context, batch []found) error {
		var rs []revocation
		for _, f := range batch {
			if len(f.data) > v.cfg.MaxSessionBytes {
				continue
			}
			s, err := t.decoder.decode(f.data)
			if err != nil || s.User != user {
				continue
			}
			rs = append(rs, revocation{sid: f.id, pttl: f.ttl, maxAge: s.OriginalMaxAge})
		}
		if len(rs) == 0 {
			return nil
		}
		if _, err := v.revoke(ctx, t, rs); err != nil {
			return err
		}
		n += len(rs)
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("revoke user: %w", err)
	}
	return n, nil
}

// found is a key a walk read: its name after the prefix, value and TTL.
type found struct {
	id   string
	data []byte
	ttl  time.Duration
}

// walk calls step with every batch of the keys under prefix that still
// exist, their values and TTLs read in one round trip per SCAN step (never
// KEYS, so Redis stays responsive). On a cluster it walks every master, in
// parallel, one step running at a time. step's ctx bounds its batch.
func (v *Verifier) walk(ctx context.Context, prefix string, step func(ctx context.Context, batch []found) error) error {
	var mu sync.Mutex
	each := func(ctx context.Context, c redis.UniversalClient) error {
		var cursor uint64
		for {
			err := func() error {
				ctx, cancel := context.WithTimeout(ctx, v.cfg.RedisTimeout*4)
				defer cancel()
				keys, next, err := c.Scan(ctx, cursor, globEscape(prefix)+"*", scanBatch).Result()
				if err != nil {
					return fmt.Errorf("scan %s*: %w", prefix, err)
				}
				cursor = next
				if len(keys) == 0 {
					return nil
				}
				pipe := c.Pipeline()
				gets := make([]*redis.StringCmd, len(keys))
				ttls := make([]*redis.DurationCmd, len(keys))
				for i, k := range keys {
					// Never more than the cap: a huge value is skipped
					// like any value over it, not downloaded.
					gets[i] = getCapped(ctx, pipe, k, v.cfg.MaxSessionBytes)
					ttls[i] = pipe.PTTL(ctx, k)
				}
				cmds, _ := pipe.Exec(ctx)
				if err := readErr(cmds...); err != nil {
					return fmt.Errorf("read %s*: %w", prefix, err)
				}
				batch := make([]found, 0, len(keys))
				for i, k := range keys {
					if data, err := gets[i].Bytes(); err == nil && len(data) > 0 && ttls[i].Val() != -2 { // else gone since the SCAN, or no string
						batch = append(batch, found{id: k[len(prefix):], data: data, ttl: ttls[i].Val()})
					}
				}
				mu.Lock()
				defer mu.Unlock()
				return step(ctx, batch)
			}()
			if err != nil || cursor == 0 {
				return err
			}
		}
	}
	if v.cfg.Cluster != nil {
		return v.cfg.Cluster.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return each(ctx, c) })
	}
	return each(ctx, v.rdb)
}

// globEscape quotes the glob characters SCAN MATCH would interpret in a
// key prefix, so "sessions:[acme]:" matches itself and nothing else.
func globEscape(s string) string {
	if !strings.ContainsAny(s, `*?[]\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
