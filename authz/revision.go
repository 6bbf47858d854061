package authz

import (
	"context"
	"errors"
	"fmt"
)

// What ends a session its cookie carries (client-sessions, cookie-session),
// as the read path sees it: nothing in Redis can be deleted, so a logout
// (package signoff) writes what /verify checks beside the cookie. One
// cookie ends by a deny entry under its cookieID; all of a user's cookies
// end by the user's revision moving on (docs/formats.md).

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
func openCookie(t *tenant, value string) (*cookieFormat, *Session, error) {
	cf, ok := t.format.(*cookieFormat)
	if !ok {
		return nil, nil, fmt.Errorf("%s sessions are in Redis, not in their cookie", t.format.format())
	}
	s, err := cf.open(t, value, t.now())
	if err != nil {
		return nil, nil, fmt.Errorf("session cookie: %w", err)
	}
	return cf, s, nil
}

// Revision returns user's current revision in the tenant (0 when none is
// stored), for session show.
func (k Keyspace) Revision(ctx context.Context, user string) (int64, error) {
	t := k.t
	ctx, cancel := context.WithTimeout(ctx, t.store.timeout)
	defer cancel()
	pipe := t.store.rdb.Pipeline()
	get := getCapped(ctx, pipe, t.revisionKey(user), maxRevisionBytes)
	_, _ = pipe.Exec(ctx)
	if err := readErr(get); err != nil {
		return 0, fmt.Errorf("read revision of %q: %w", user, err)
	}
	return readRevision(get)
}

// CookieSession decodes a cookie of the tenant's format that carries its
// session, and reports what Redis holds against it, for session show:
// the session, its revision, and whether it is denied or its revision
// stale (stale_revision) — the reason the read path would refuse it, ""
// when it would not.
func (k Keyspace) CookieSession(ctx context.Context, value string) (s *Session, revision int64, r Reason, err error) {
	t := k.t
	cf, s, err := openCookie(t, value)
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
