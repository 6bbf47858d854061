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

// CookieState is what session show says of a cookie that carries its
// session.
type CookieState struct {
	// ID is the cookie's id (CookieID): what its deny entry and logout
	// event name.
	ID string
	// Session is what the cookie holds; nil when it does not read.
	Session *Session
	// Reason is why /verify would refuse the cookie, "" when it would not.
	Reason Reason
}

// CookieSession decodes a cookie of the tenant's format that carries its
// session (ref as ParseCookieRef takes it) and reports what Redis holds
// against it, for session show: whether it is denied or its revision stale.
func (k Keyspace) CookieSession(ctx context.Context, ref string) (CookieState, error) {
	t := k.t
	var st CookieState
	var value string
	if cf, ok := t.format.(*cookieFormat); ok && cf.ck != nil {
		var r Reason
		if st.ID, value, r = k.RequestSession([]string{ref}); r != "" {
			st.Reason = r
			return st, nil
		}
	} else {
		st.ID, value = CookieID(ref), ref
	}
	cf, s, err := openCookie(t, value)
	var re *reasonError
	if errors.As(err, &re) {
		st.Reason = re.r
		return st, nil
	}
	if err != nil {
		return st, err
	}
	st.Session = s
	if s.User == "" {
		st.Reason = ReasonAnonymous
		return st, nil
	}
	err = cf.read(ctx, t, st.ID, s)
	switch {
	case errors.Is(err, errRevoked):
		st.Reason = ReasonRevoked
	case errors.Is(err, errStaleRevision):
		st.Reason = ReasonStaleRevision
	case err != nil:
		return st, err
	}
	return st, nil
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
