package signoff

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/authz/authz/authz"
	"github.com/redis/go-redis/v9"
)

// cookieSession is client-sessions or cookie-session: the whole session is
// in the cookie, so nothing in Redis can be deleted. A logout writes what
// /verify checks beside the cookie (docs/formats.md): one cookie ends by a
// deny entry under its cookie id (the key a session marker would have), a
// user's cookies by the user's revision moving on.
var cookieSession = format{
	ref: func(s *Signoff, ks authz.Keyspace, ref string) (session, error) {
		// The cookie must verify: nobody fills Redis with entries for
		// cookies that were never issued.
		id, raw, err := ks.ParseCookieRef(ref)
		return session{id: id, raw: raw}, err
	},
	owner: func(s *Signoff, ctx context.Context, ks authz.Keyspace, x session) (string, error) {
		if _, err := ks.OpenCookie(x.raw); err != nil {
			return "", nil // expired or unreadable: nobody to log out
		}
		// A cookie already over (denied, or its revision moved on) names
		// nobody either: else a kept copy of an ended cookie-session
		// cookie, which never expires, could sign its user out
		// everywhere again and again.
		sess, ended, err := ks.LiveCookie(ctx, x.raw)
		if err != nil {
			return "", fmt.Errorf("read what ends cookie %s: %w", authz.SessionHash(x.id), err)
		}
		if ended {
			return "", nil
		}
		return sess.User, nil
	},
	endSession: (*Signoff).denyCookie,
	endUser:    (*Signoff).bumpRevision,
}

// denyCookie writes the deny entry of one cookie, kept as long as the
// cookie could be presented: its remaining lifetime, and at least
// StoreTTL (cookie-session cookies carry no expiry: StoreTTL). The entry
// is revoke's marker, so it is written the same way (replica waits
// included); the DEL beside it finds nothing. It reports false for a
// cookie that no longer reads (expired, tampered): nothing to end.
func (s *Signoff) denyCookie(ctx context.Context, ks authz.Keyspace, x session) (bool, error) {
	if x.raw == "" {
		return false, errors.New("a session its cookie carries is ended by the cookie's value, not its id")
	}
	sess, err := ks.OpenCookie(x.raw)
	if err != nil {
		return false, nil
	}
	var left time.Duration
	if !sess.Expires.IsZero() {
		left = sess.Expires.Sub(s.cfg.Now()) + time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RedisTimeout*4)
	defer cancel()
	if _, err := s.revoke(ctx, ks, []revocation{{sid: x.id, pttl: left, maxAge: left}}); err != nil {
		return false, fmt.Errorf("deny cookie %s: %w", authz.SessionHash(x.id), err)
	}
	return true, nil
}

// bumpRevision ends every cookie of user: it moves the user's revision on
// (INCR), so no cookie signed in before carries the current one. It
// reports 1, the one revision moved.
func (s *Signoff) bumpRevision(ctx context.Context, ks authz.Keyspace, user string) (int, error) {
	key := ks.RevisionKey(user)
	if key == "" {
		return 0, fmt.Errorf("no revision path (--revision-path) for %s sessions: a user-wide logout cannot end them", ks.Format())
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RedisTimeout*4)
	defer cancel()
	pipe := s.rdb.Pipeline()
	pipe.Incr(ctx, key)
	var wait *redis.Cmd
	if n := s.cfg.RevokeWaitReplicas; n > 0 {
		wait = pipe.Do(ctx, "WAIT", n, max(1, (s.cfg.RedisTimeout/2).Milliseconds()))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("move the revision of user %q on: %w", user, err)
	}
	if wait != nil {
		if n, _ := wait.Int64(); n < int64(s.cfg.RevokeWaitReplicas) {
			s.log.Warn("logout written on the master but not yet confirmed by a replica; a failover right now could undo it",
				"revision", true, "replicas_acked", n, "wanted", s.cfg.RevokeWaitReplicas)
		}
	}
	return 1, nil
}
