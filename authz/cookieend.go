package authz

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// What a logout means for a format whose cookie carries the session
// (client-sessions, cookie-session): nothing in Redis can be deleted, so a
// logout writes what the read path checks beside the cookie. One cookie
// ends by a deny entry under its cookieID; all of a user's cookies end by
// moving the user's revision on (docs/formats.md).

// Format returns the session format of tenant ("" without a tenant file).
func (v *Verifier) Format(tenant string) (Format, error) {
	t, err := v.tenant(tenant)
	if err != nil {
		return "", err
	}
	return t.format.format(), nil
}

// CookieName returns the session cookie name of tenant.
func (v *Verifier) CookieName(tenant string) (string, error) {
	t, err := v.tenant(tenant)
	if err != nil {
		return "", err
	}
	return t.cookieName(), nil
}

// cookieName is the name of the cookie the tenant's sessions travel in.
func (t *tenant) cookieName() string {
	switch f := t.format.(type) {
	case expressFormat:
		return f.codec.name
	case fastifyFormat:
		return f.fs.CookieName()
	case *cookieFormat:
		if f.cs != nil {
			return f.cs.CookieName()
		}
		return f.ck.Name()
	}
	return ""
}

// clearCookies are the cookies a logout response clears: the session
// cookie, and cookie-session's signature cookie.
func (t *tenant) clearCookies() []string {
	if f, ok := t.format.(*cookieFormat); ok && f.ck != nil {
		return []string{f.ck.Name(), f.ck.SigName()}
	}
	return []string{t.cookieName()}
}

// requestSession returns what the request's session cookie names, checked
// as the read path checks it: a session id for a stored format, else the
// cookie id, with raw the cookie's value to open.
func (v *Verifier) requestSession(t *tenant, lines []string) (id, raw string, r Reason) {
	sc := v.scratch.Get().(*scratch)
	defer v.scratch.Put(sc)
	defer sc.release()
	key, raw, r := t.format.cookie(sc, lines)
	return string(key), raw, r
}

// openCookie decodes a cookie of t's format that carries its session.
func (v *Verifier) openCookie(t *tenant, value string) (*cookieFormat, *Session, error) {
	cf, ok := t.format.(*cookieFormat)
	if !ok {
		return nil, nil, fmt.Errorf("%s sessions are in Redis, not in their cookie", t.format.format())
	}
	s, err := cf.open(t, value, v.cfg.Now())
	if err != nil {
		return nil, nil, fmt.Errorf("session cookie: %w", err)
	}
	return cf, s, nil
}

// RevokeCookie ends one cookie of a format that carries its session: a
// deny entry under its cookie id, kept as long as the cookie could be
// presented (its remaining lifetime, at least StoreTTL; cookie-session
// cookies carry no expiry, so StoreTTL). The cookie must verify: nobody
// fills Redis with entries for cookies that were never issued. It returns
// the cookie id for the logout event and the session's user. It does not
// publish; the caller does.
func (v *Verifier) RevokeCookie(ctx context.Context, tenant, value string) (id, user string, err error) {
	t, err := v.tenant(tenant)
	if err != nil {
		return "", "", err
	}
	_, s, err := v.openCookie(t, value)
	if err != nil {
		return "", "", err
	}
	id = CookieID(value)
	if err := v.deny(ctx, t, id, s); err != nil {
		return "", "", err
	}
	return id, s.User, nil
}

func (v *Verifier) deny(ctx context.Context, t *tenant, id string, s *Session) error {
	ctx, cancel := context.WithTimeout(ctx, v.cfg.RedisTimeout*4)
	defer cancel()
	var left time.Duration
	if !s.Expires.IsZero() {
		left = s.Expires.Sub(v.cfg.Now()) + time.Second
	}
	// revoke's marker is the deny entry; the DEL beside it finds nothing.
	if _, err := v.revoke(ctx, t, []revocation{{sid: id, pttl: left, maxAge: left}}); err != nil {
		return fmt.Errorf("deny cookie %s: %w", shortHash(id), err)
	}
	return nil
}

// BumpRevision ends every cookie of user in a tenant whose format carries
// its session: it moves the user's revision on (INCR), so no cookie signed
// in before carries the current one. It returns the new revision. It does
// not publish; the caller does.
func (v *Verifier) BumpRevision(ctx context.Context, tenant, user string) (int64, error) {
	if user == "" {
		return 0, errors.New("bump revision: empty user id")
	}
	t, err := v.tenant(tenant)
	if err != nil {
		return 0, err
	}
	cf, ok := t.format.(*cookieFormat)
	if !ok {
		return 0, fmt.Errorf("%s sessions end when their key in Redis does: there is no revision to move", t.format.format())
	}
	if cf.revisionPath == nil {
		return 0, fmt.Errorf("no revision path (--revision-path) for %s sessions: a user-wide logout cannot end them", cf.f)
	}
	ctx, cancel := context.WithTimeout(ctx, v.cfg.RedisTimeout*4)
	defer cancel()
	key := t.revisionKey(user)
	pipe := v.rdb.Pipeline()
	incr := pipe.Incr(ctx, key)
	var wait *redis.Cmd
	if n := v.cfg.RevokeWaitReplicas; n > 0 {
		wait = pipe.Do(ctx, "WAIT", n, max(1, (v.cfg.RedisTimeout/2).Milliseconds()))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("bump revision of user %q: %w", user, err)
	}
	if wait != nil {
		if n, _ := wait.Int64(); n < int64(v.cfg.RevokeWaitReplicas) {
			v.log.Warn("logout written on the master but not yet confirmed by a replica; a failover right now could undo it",
				"revision", true, "replicas_acked", n, "wanted", v.cfg.RevokeWaitReplicas)
		}
	}
	return incr.Val(), nil
}

// Revision returns user's current revision in tenant (0 when none is
// stored), for session show.
func (v *Verifier) Revision(ctx context.Context, tenant, user string) (int64, error) {
	t, err := v.tenant(tenant)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, v.cfg.RedisTimeout)
	defer cancel()
	pipe := v.rdb.Pipeline()
	get := getCapped(ctx, pipe, t.revisionKey(user), maxRevisionBytes)
	_, _ = pipe.Exec(ctx)
	if err := readErr(get); err != nil {
		return 0, fmt.Errorf("read revision of %q: %w", user, err)
	}
	return readRevision(get)
}

// CookieSession decodes a cookie of tenant's format that carries its
// session, and reports what Redis holds against it, for session show:
// the session, its revision, and whether it is denied or its revision
// stale (stale_revision) — the reason the read path would refuse it, ""
// when it would not.
func (v *Verifier) CookieSession(ctx context.Context, tenant, value string) (s *Session, revision int64, r Reason, err error) {
	t, err := v.tenant(tenant)
	if err != nil {
		return nil, 0, "", err
	}
	cf, s, err := v.openCookie(t, value)
	var re *reasonError
	if errors.As(err, &re) {
		return nil, 0, re.r, nil
	}
	if err != nil {
		return nil, 0, "", err
	}
	if s.User == "" {
		return s, s.revision, ReasonAnonymous, nil
	}
	err = cf.read(ctx, t, CookieID(value), s)
	switch {
	case errors.Is(err, errRevoked):
		return s, s.revision, ReasonRevoked, nil
	case errors.Is(err, errStaleRevision):
		return s, s.revision, ReasonStaleRevision, nil
	case err != nil:
		return nil, 0, "", err
	}
	return s, s.revision, "", nil
}

// Revision is the session's revision (--revision-path), 0 for a format
// without one.
func (s *Session) Revision() int64 { return s.revision }

// revisionOwner returns the tenant and user of a revision key, for
// tracking: a revision that moved on ends the user's cached cookies.
func (ts *tenantSet) revisionOwner(key string) (*tenant, string, bool) {
	for _, t := range ts.list {
		if _, ok := t.format.(*cookieFormat); !ok {
			continue
		}
		p := t.revisionKey("")
		if len(key) > len(p) && key[:len(p)] == p {
			return t, key[len(p):], true
		}
	}
	return nil, "", false
}

// denyOwner returns the tenant and cookie id of a deny entry's key.
func (ts *tenantSet) denyOwner(key string) (*tenant, string, bool) {
	for _, t := range ts.list {
		if _, ok := t.format.(*cookieFormat); !ok {
			continue
		}
		p := t.store.revokedKey("")
		if len(key) == len(p)+cookieIDLen && key[:len(p)] == p {
			return t, key[len(p):], true
		}
	}
	return nil, "", false
}
