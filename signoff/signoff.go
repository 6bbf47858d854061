// Package signoff is authz's write side for sessions: it ends them. One
// session (a logout), every session of a user (a user-wide logout, a walk
// over the tenant's keys), through the CLI (authz logout) or the /logout
// endpoint (Endpoint).
//
// It reads the tenant table, the key layout and the Redis configuration of
// the authz.Verifier it is given, so that a tenant reload is seen by
// verify and logout alike, and drops what it ended from that Verifier's
// cache. authz never imports it: the read path does not write sessions.
//
// What logout means differs by session format (a marker and a DEL for a
// session in Redis; a deny entry, or a revision bump, for a session that
// lives in its cookie). Each format is one value of type format.
package signoff

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/internal/keyscan"
	"github.com/authz/authz/logout"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Signoff ends sessions of the tenants a Verifier serves.
type Signoff struct {
	v   *authz.Verifier
	cfg authz.Config
	rdb redis.UniversalClient
	// walker passes over a tenant's session keys (RevokeUser).
	walker keyscan.Walker
	// walks shares and bounds the endpoint's user-wide logouts.
	walks *userWalks
	log   *slog.Logger
}

// New returns a Signoff ending the sessions v reads, through v's Redis
// client. Its metrics (the user-wide walks') go to reg; call it once per
// registry.
func New(v *authz.Verifier, reg prometheus.Registerer, log *slog.Logger) (*Signoff, error) {
	cfg := v.Config()
	walks, err := newUserWalks(reg)
	if err != nil {
		return nil, err
	}
	s := &Signoff{v: v, cfg: cfg, rdb: v.Client(), walks: walks, log: log}
	s.walker = keyscan.Walker{Client: s.rdb, Timeout: cfg.RedisTimeout * 4, MaxBytes: cfg.MaxSessionBytes}
	if cfg.Cluster != nil {
		s.walker.Cluster = cfg.Cluster
	}
	return s, nil
}

// format is what logout means for the sessions of one session format: one
// small function per question. Adding a format is adding one value of this
// type and naming it in formatOf; the endpoint, the CLI and the shared
// user-wide walks then serve it unchanged.
type format struct {
	// ref names the session what an operator pastes into `authz logout
	// --session` names (an express session's id or cookie value; a
	// client-sessions cookie's value), as the request's cookie would.
	ref func(s *Signoff, ks authz.Keyspace, ref string) (session, error)
	// owner is whose the session is; "" when it names nobody (anonymous,
	// gone). An error is a failure to find out.
	owner func(s *Signoff, ctx context.Context, ks authz.Keyspace, x session) (string, error)
	// endSession ends that session for good, in Redis: the caller drops
	// it from the local cache and publishes the event. It reports whether
	// there was a session to end.
	endSession func(s *Signoff, ctx context.Context, ks authz.Keyspace, x session) (bool, error)
	// endUser ends every session of user in the tenant that exists now,
	// and reports how many (for a format whose cookie carries its
	// session, 1: the user's revision moved on).
	endUser func(s *Signoff, ctx context.Context, ks authz.Keyspace, user string) (int, error)
}

// session is what a logout names: the id its event and cache entry go
// by, and for a format whose cookie carries its session, the cookie.
type session struct {
	id  string
	raw string
}

// formatOf is the format of ks's sessions.
func formatOf(ks authz.Keyspace) *format {
	if ks.Format().Stored() {
		return &storedSession
	}
	return &cookieSession
}

// storedSession is express-session or @fastify/session with connect-redis:
// the session is a Redis key, ended by a marker and a DEL (see revoke); a
// user's sessions are found by walking the tenant's keys.
var storedSession = format{
	ref: func(s *Signoff, ks authz.Keyspace, ref string) (session, error) {
		id, err := s.v.ParseSessionRef(ks.Name(), ref)
		return session{id: id}, err
	},
	owner: func(s *Signoff, ctx context.Context, ks authz.Keyspace, x session) (string, error) {
		sess, _, err := s.v.Session(ctx, ks.Name(), x.id)
		switch {
		case authz.IsNotFound(err):
			return "", nil
		case err != nil:
			return "", err
		}
		return sess.User, nil
	},
	endSession: func(s *Signoff, ctx context.Context, ks authz.Keyspace, x session) (bool, error) {
		return s.revokeSession(ctx, ks, x.id)
	},
	endUser: (*Signoff).revokeUser,
}

// EndSession is `authz logout --session`: it ends the one session of
// tenant that ref names (what an operator pastes: for express sessions its
// id or its cookie value) and publishes its logout event, even when the
// session was gone, as instances may still cache it. It returns the
// session's id, whether it existed, and how many subscribers heard the
// event.
func (s *Signoff) EndSession(ctx context.Context, pub Publisher, tenant, ref string) (id string, found bool, heard int64, err error) {
	ks, err := s.v.Keyspace(tenant)
	if err != nil {
		return "", false, 0, err
	}
	f := formatOf(ks)
	x, err := f.ref(s, ks, ref)
	if err != nil {
		return "", false, 0, err
	}
	id = x.id
	if found, err = f.endSession(s, ctx, ks, x); err != nil {
		return id, false, 0, err
	}
	heard, err = pub.Publish(ctx, logout.Event{Kind: logout.KindSession, Session: id, Tenant: ks.Name()})
	return id, found, heard, err
}

// EndUser is `authz logout --user`: it ends every session of user in
// tenant and publishes the user's logout event, even when none was found,
// as instances may still cache some. It returns how many sessions it ended
// and how many subscribers heard the event.
func (s *Signoff) EndUser(ctx context.Context, pub Publisher, tenant, user string) (ended int, heard int64, err error) {
	if ended, err = s.RevokeUser(ctx, tenant, user); err != nil {
		return ended, 0, err
	}
	heard, err = pub.Publish(ctx, logout.Event{Kind: logout.KindUser, User: user, Tenant: tenant})
	return ended, heard, err
}

// RevokeSession ends one session of tenant ("" without a tenant file),
// named by its id (a format whose cookie carries its session is ended by
// the cookie: EndSession). It reports whether the session existed. It neither
// drops it from the cache nor publishes; the caller does.
func (s *Signoff) RevokeSession(ctx context.Context, tenant, sid string) (bool, error) {
	ks, err := s.v.Keyspace(tenant)
	if err != nil {
		return false, err
	}
	return formatOf(ks).endSession(s, ctx, ks, session{id: sid})
}

// RevokeUser ends every session of user in tenant that exists now, whoever
// created it, and reports how many. Only the tenant's sessions are ended:
// the same user id in another tenant is another user. It runs in the CLI
// or the logout endpoint, never on the verify path.
func (s *Signoff) RevokeUser(ctx context.Context, tenant, user string) (int, error) {
	if user == "" {
		return 0, errors.New("revoke user: empty user id")
	}
	ks, err := s.v.Keyspace(tenant)
	if err != nil {
		return 0, err
	}
	return formatOf(ks).endUser(s, ctx, ks, user)
}

// revokeSession ends one express session: marker, then DEL (see revoke).
// The session is read first, for how long its marker must live.
func (s *Signoff) revokeSession(ctx context.Context, ks authz.Keyspace, sid string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RedisTimeout*4)
	defer cancel()
	key := ks.SessionPrefix() + sid
	pipe := s.rdb.Pipeline()
	get := keyscan.GetCapped(ctx, pipe, key, s.cfg.MaxSessionBytes)
	pttl := pipe.PTTL(ctx, key)
	cmds, _ := pipe.Exec(ctx) // each command's own error: see ReadErr
	if err := keyscan.ReadErr(cmds...); err != nil {
		return false, fmt.Errorf("revoke session %s: %w", authz.SessionHash(sid), err)
	}
	var maxAge time.Duration
	if data, err := get.Bytes(); err == nil && len(data) > 0 && len(data) <= s.cfg.MaxSessionBytes {
		if sess, err := ks.Decode(data); err == nil {
			maxAge = sess.OriginalMaxAge
		}
	}
	return s.revoke(ctx, ks, []revocation{{sid: sid, pttl: pttl.Val(), maxAge: maxAge}})
}

// revokeUser ends every express session of user: it walks the tenant's
// session keys and revokes the user's sessions batch by batch. Its cost is
// one pass over all of the tenant's sessions.
func (s *Signoff) revokeUser(ctx context.Context, ks authz.Keyspace, user string) (int, error) {
	n := 0
	err := s.walker.Walk(ctx, ks.SessionPrefix(), func(ctx context.Context, batch []keyscan.Found) error {
		var rs []revocation
		for _, f := range batch {
			if len(f.Data) > s.cfg.MaxSessionBytes {
				continue
			}
			sess, err := ks.Decode(f.Data)
			if err != nil || sess.User != user {
				continue
			}
			rs = append(rs, revocation{sid: f.ID, pttl: f.TTL, maxAge: sess.OriginalMaxAge})
		}
		if len(rs) == 0 {
			return nil
		}
		if _, err := s.revoke(ctx, ks, rs); err != nil {
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

type revocation struct {
	sid    string
	pttl   time.Duration // -1: no TTL, -2: no key
	maxAge time.Duration
}

// revoke marks, then deletes, so that no session is deleted before its
// marker is written (authz's revoke.go says why the marker makes a logout
// stick). On a cluster that takes two round trips: one pipeline would not
// order them, as go-redis splits it by node and sends the parts
// concurrently (and MULTI cannot span the two keys' slots); a DEL that
// landed without its marker would let an app's late save revive the
// session.
//
// With RevokeWaitReplicas set (Sentinel), the DELs are followed by WAIT on
// the same connection, so the logout is on the replicas, which a failover
// promotes, before it is reported done. A master's replication offset
// covers every earlier write, so this covers the markers too.
func (s *Signoff) revoke(ctx context.Context, ks authz.Keyspace, rs []revocation) (bool, error) {
	pipe := s.rdb.Pipeline()
	for _, r := range rs {
		var ttl time.Duration // 0: the marker never expires
		if r.pttl != -1 {
			ttl = max(r.pttl, r.maxAge, s.cfg.StoreTTL)
		}
		pipe.Set(ctx, ks.RevokedKey(r.sid), "1", ttl)
	}
	// On one connection (a single node, Sentinel's master) a pipeline runs
	// in order: one round trip. Only a cluster needs the markers confirmed
	// before the DELs are sent.
	if s.cfg.Topology == authz.TopologyCluster {
		if _, err := pipe.Exec(ctx); err != nil {
			return false, fmt.Errorf("revoke %d sessions: write markers: %w", len(rs), err)
		}
		pipe = s.rdb.Pipeline()
	}
	dels := make([]*redis.IntCmd, len(rs))
	for i, r := range rs {
		dels[i] = pipe.Del(ctx, ks.SessionPrefix()+r.sid)
	}
	var wait *redis.Cmd
	if n := s.cfg.RevokeWaitReplicas; n > 0 {
		// Half the call timeout: the whole pipeline's answer must arrive
		// within it.
		wait = pipe.Do(ctx, "WAIT", n, max(1, (s.cfg.RedisTimeout/2).Milliseconds()))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return false, fmt.Errorf("revoke %d sessions: delete: %w", len(rs), err)
	}
	if wait != nil {
		if n, _ := wait.Int64(); n < int64(s.cfg.RevokeWaitReplicas) {
			s.log.Warn("logout written on the master but not yet confirmed by a replica; a failover right now could undo it",
				"sessions", len(rs), "replicas_acked", n, "wanted", s.cfg.RevokeWaitReplicas)
		}
	}
	found := false
	for _, d := range dels {
		found = found || d.Val() > 0
	}
	return found, nil
}
