package authz

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/authz/authz/sessionfmt"
	"github.com/redis/go-redis/v9"
)

// Format is how a tenant's sessions are carried: the Node library whose
// cookies (and store) authz reads.
type Format string

// The formats authz reads (docs/formats.md).
const (
	// FormatExpressSession: express-session's signed session id in the
	// cookie, the session in Redis as connect-redis writes it.
	FormatExpressSession Format = "express-session"
	// FormatClientSessions: client-sessions 0.8, the whole session
	// encrypted and signed in the cookie.
	FormatClientSessions Format = "client-sessions"
	// FormatCookieSession: cookie-session 2.x, base64 JSON in one cookie
	// and its keygrip signature in a second.
	FormatCookieSession Format = "cookie-session"
	// FormatFastifySession: @fastify/session 11.x, a session id signed as
	// @fastify/cookie signs it, the session in Redis through connect-redis.
	FormatFastifySession Format = "fastify-session"
)

// Formats lists every Format, in the order the docs give them.
var Formats = []Format{FormatExpressSession, FormatClientSessions, FormatCookieSession, FormatFastifySession}

// ParseFormat returns the Format called s ("" is express-session).
func ParseFormat(s string) (Format, error) {
	if s == "" {
		return FormatExpressSession, nil
	}
	for _, f := range Formats {
		if string(f) == s {
			return f, nil
		}
	}
	return "", fmt.Errorf("session format %q: want one of express-session, client-sessions, cookie-session, fastify-session", s)
}

// DefaultCookieName is the cookie name the format's library uses when the
// app names none.
func (f Format) DefaultCookieName() string {
	switch f {
	case FormatClientSessions:
		return sessionfmt.DefaultClientSessionsCookie
	case FormatCookieSession:
		return sessionfmt.DefaultCookieSessionName
	case FormatFastifySession:
		return "sessionId"
	}
	return "connect.sid"
}

// Stored reports whether the format keeps its sessions in Redis, under the
// tenant's key prefix. The others carry the session in the cookie: for
// them a logout is a revision that moved on or a deny entry for one cookie.
func (f Format) Stored() bool { return f == FormatExpressSession || f == FormatFastifySession }

// sessionFormat is the read path's seam for one session format, built per
// tenant from its configuration. cookie finds and checks the format's
// cookie; kind says how a cache miss reads the session it names (open:
// decode a session the cookie carries; read: what Redis holds about it)
// and so what "this session is over" means for the format.
type sessionFormat interface {
	format() Format
	// cookie finds the format's cookie among the request's Cookie header
	// lines and checks what is cheap to check on every request. key is
	// the cache key of the session it names (a session id, or cookieID of
	// a cookie that carries its session) and may alias sc until sc is
	// released; raw is what kind.open decodes on a miss.
	cookie(sc *scratch, lines []string) (key []byte, raw string, r Reason)
	kind() *entryKind
}

// scratch is a request's buffers for reading its cookie, pooled by the
// Verifier so the hot path does not allocate.
type scratch struct {
	buf []byte
	id  [cookieIDLen]byte
	// sg and codec: an express-session cookie's signer, back to its pool
	// on release (the session id aliases it).
	sg    *signer
	codec *cookieCodec
}

func (sc *scratch) release() {
	if sc.sg != nil {
		sc.codec.put(sc.sg)
		sc.sg, sc.codec = nil, nil
	}
}

// cookieIDLen is the length of a cookie id: "c" and the unpadded base64url
// SHA-256 of the cookie's value.
const cookieIDLen = 1 + 43

// cookieID names a cookie that carries its session (client-sessions,
// cookie-session) wherever a session id would go: the cache key, the
// deny entry under the tenant's revoked prefix, the logout event. It is
// a hash, so neither Redis nor an event ever holds the cookie.
func cookieID(dst *[cookieIDLen]byte, value string) []byte {
	return cookieIDOf(dst, nil, value)
}

// cookieIDOf is cookieID with buf to copy value into first, so that hashing
// a string does not allocate on the request path.
func cookieIDOf(dst *[cookieIDLen]byte, buf []byte, value string) []byte {
	sum := sha256.Sum256(append(buf[:0], value...))
	dst[0] = 'c'
	base64.RawURLEncoding.Encode(dst[1:], sum[:])
	return dst[:]
}

// CookieID returns cookieID of value: what `authz logout --session` and
// POST /logout deny for a cookie that carries its session.
func CookieID(value string) string {
	var id [cookieIDLen]byte
	return string(cookieID(&id, value))
}

// expressFormat reads express-session cookies (cookie.go) and
// connect-redis sessions (store.go): a session is over when its key is
// gone or a logout left a marker beside it.
type expressFormat struct{ codec *cookieCodec }

func (expressFormat) format() Format   { return FormatExpressSession }
func (expressFormat) kind() *entryKind { return sessionKind }
func (f expressFormat) cookie(sc *scratch, lines []string) ([]byte, string, Reason) {
	value, ok := findCookie(lines, f.codec.name)
	if !ok {
		return nil, "", ReasonNoCookie
	}
	sc.sg, sc.codec = f.codec.get(), f.codec
	sid, r := f.codec.unsign(sc.sg, value)
	return sid, "", r
}

// fmtReason maps a sessionfmt refusal to its reason.
func fmtReason(err error) Reason {
	switch {
	case errors.Is(err, sessionfmt.ErrTooLarge):
		return ReasonCookieTooLarge
	case errors.Is(err, sessionfmt.ErrMalformed):
		return ReasonMalformedCookie
	case errors.Is(err, sessionfmt.ErrBadSignature):
		return ReasonBadSignature
	case errors.Is(err, sessionfmt.ErrExpired):
		return ReasonExpired
	case errors.Is(err, sessionfmt.ErrInvalidSessionID):
		return ReasonInvalidSessionID
	}
	return ReasonInvalidSession
}

// fastifyFormat reads @fastify/session: its own cookie signing, the
// session in Redis exactly as connect-redis keeps express sessions, so a
// session is over the same ways. @fastify/session checks the stored
// cookie.expires on every load, so authz does too.
type fastifyFormat struct{ fs *sessionfmt.FastifySession }

func (fastifyFormat) format() Format   { return FormatFastifySession }
func (fastifyFormat) kind() *entryKind { return fastifyKind }
func (f fastifyFormat) cookie(sc *scratch, lines []string) ([]byte, string, Reason) {
	value, ok := f.fs.Lookup(lines)
	if !ok || value == "" {
		return nil, "", ReasonNoCookie
	}
	sid, err := f.fs.Parse(value)
	if err != nil {
		return nil, "", fmtReason(err)
	}
	sc.buf = append(sc.buf[:0], sid...)
	return sc.buf, "", ""
}

var fastifyKind = func() *entryKind {
	k := *sessionKind
	k.touch = false // @fastify/session has no store touch; authz slides nothing the app does not
	k.hardExpires = true
	k.decode = func(d *decoder, data []byte, now time.Time) (*Session, error) {
		s, err := d.decodeSession(data)
		if err != nil {
			return nil, err
		}
		expired, err := sessionfmt.FastifyExpired(data, now)
		if err != nil {
			return nil, fmt.Errorf("cookie.expires: %w", err)
		}
		if expired {
			return nil, errExpired
		}
		return s, nil
	}
	return &k
}()

// cookieFormat is what client-sessions and cookie-session share: the
// session is in the cookie, so "over" is what Redis holds beside it, the
// user's revision (revision.go) and a deny entry for the one cookie.
type cookieFormat struct {
	f            Format
	cs           *sessionfmt.ClientSessions
	ck           *sessionfmt.CookieSession
	revisionPath []string
	k            *entryKind
}

func (f *cookieFormat) format() Format   { return f.f }
func (f *cookieFormat) kind() *entryKind { return f.k }

func (f *cookieFormat) cookie(sc *scratch, lines []string) ([]byte, string, Reason) {
	if f.cs != nil {
		// A hit needs no MAC: the cache holds only cookies that passed
		// one, and the key is the hash of the whole value.
		value, ok := f.cs.Lookup(lines)
		if !ok || value == "" {
			return nil, "", ReasonNoCookie
		}
		if len(value) > cap(sc.buf) {
			return nil, "", ReasonCookieTooLarge
		}
		return cookieIDOf(&sc.id, sc.buf, value), value, ""
	}
	// cookie-session's signature is a second cookie: it is checked on
	// every request, so a cached session never answers for a value
	// under another signature.
	value, sig, ok := f.ck.Lookup(lines)
	if !ok || value == "" {
		return nil, "", ReasonNoCookie
	}
	if _, err := f.ck.Parse(sc.buf[:0], value, sig); err != nil {
		return nil, "", fmtReason(err)
	}
	return cookieIDOf(&sc.id, sc.buf, value), value, ""
}

// open decodes the session a cookie carries: MAC (or signature) and
// decryption, expiry, identity and revision.
func (f *cookieFormat) open(t *tenant, raw string, now time.Time) (*Session, error) {
	var content []byte
	var expires time.Time
	if f.cs != nil {
		cs, err := f.cs.Parse(nil, raw, now)
		if err != nil {
			return nil, &reasonError{fmtReason(err), err}
		}
		content, expires = cs.Content, cs.ExpiresAt()
	} else {
		var err error
		if content, err = f.ck.Decode(nil, raw); err != nil {
			return nil, &reasonError{fmtReason(err), err}
		}
	}
	s, err := t.decoder.decode(content)
	if err != nil {
		return nil, err
	}
	s.Expires = expires
	if f.revisionPath != nil {
		if s.revision, err = sessionfmt.Revision(content, f.revisionPath); err != nil {
			return nil, fmt.Errorf("revision at %s: %w", strings.Join(f.revisionPath, "."), err)
		}
	}
	return s, nil
}

// read reads what ends a cookie's session, in one round trip: a deny entry
// for the cookie, and the user's current revision.
func (f *cookieFormat) read(ctx context.Context, t *tenant, id string, s *Session) error {
	ctx, cancel := context.WithTimeout(ctx, t.store.timeout)
	defer cancel()
	pipe := t.store.rdb.Pipeline()
	deny := t.store.revokedKey(id)
	denied := pipe.Exists(ctx, deny)
	var rev *redis.StringCmd
	var revKey string
	if f.revisionPath != nil {
		revKey = t.revisionKey(s.User)
		rev = getCapped(ctx, pipe, revKey, maxRevisionBytes)
	}
	_, _ = pipe.Exec(ctx) // each command's own error is read below
	if err := readErr(denied); err != nil {
		return fmt.Errorf("read deny entry of cookie %s: %w", shortHash(id), &keyError{key: deny, err: err})
	}
	if rev != nil {
		if err := readErr(rev); err != nil {
			return fmt.Errorf("read revision of cookie %s: %w", shortHash(id), &keyError{key: revKey, err: err})
		}
	}
	if denied.Val() > 0 {
		return errRevoked
	}
	if rev == nil {
		return nil
	}
	cur, err := readRevision(rev)
	if err != nil {
		return fmt.Errorf("revision of cookie %s's user: %w", shortHash(id), err)
	}
	if cur != s.revision {
		return errStaleRevision
	}
	return nil
}

// maxRevisionBytes bounds a revision read from Redis: 2^53 has 16 digits.
const maxRevisionBytes = 20

// readRevision returns the revision getCapped read: 0 when the key is
// absent, errWrongType for anything but a decimal integer (fail closed: no
// session of the user passes until it is fixed).
func readRevision(get *redis.StringCmd) (int64, error) {
	b, err := capped(get, maxRevisionBytes)
	switch {
	case errors.Is(err, errNotFound):
		return 0, nil
	case errors.Is(err, errTooLarge):
		return 0, fmt.Errorf("not an integer: %w", errWrongType)
	case err != nil:
		return 0, err
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a revision: %w", b, errWrongType)
	}
	return n, nil
}

// errStaleRevision means the cookie's revision is not its user's current
// one: a logout of the user moved it on.
var errStaleRevision = errors.New("session revision is not the user's current one")

// errExpired means the stored session's own expiry has passed.
var errExpired = errors.New("session expired")

// reasonError is a refusal whose reason the format knows (a cookie that
// fails its MAC, has expired, …), negatively cached under the cookie's id.
type reasonError struct {
	r   Reason
	err error
}

func (e *reasonError) Error() string { return string(e.r) + ": " + e.err.Error() }
func (e *reasonError) Unwrap() error { return e.err }

// newFormat builds the reader of t's format, t completed from cfg.
func newFormat(t Tenant, cfg *Config) (sessionFormat, error) {
	switch t.Format {
	case FormatExpressSession:
		return expressFormat{newCookieCodec(t.CookieName, t.Secrets, cfg.MaxCookieBytes)}, nil
	case FormatFastifySession:
		fs, err := sessionfmt.NewFastifySession(sessionfmt.FastifySessionOptions{
			CookieName: t.CookieName, Secrets: t.Secrets, Algorithm: t.SignatureAlgorithm, MaxBytes: cfg.MaxCookieBytes,
		})
		if err != nil {
			return nil, err
		}
		return fastifyFormat{fs}, nil
	case FormatClientSessions, FormatCookieSession:
		return newCookieFormat(t.Format, t, cfg)
	}
	return nil, fmt.Errorf("unknown session format %q", t.Format)
}

func newCookieFormat(f Format, t Tenant, cfg *Config) (*cookieFormat, error) {
	cf := &cookieFormat{f: f, revisionPath: t.RevisionPath}
	switch f {
	case FormatClientSessions:
		if len(t.Secrets) > 1 {
			return nil, errors.New("client-sessions takes one secret (or an encryption key and a signature key), not a list")
		}
		o := sessionfmt.ClientSessionsOptions{
			CookieName:          t.CookieName,
			EncryptionKey:       t.EncryptionKey,
			SignatureKey:        t.SignatureKey,
			EncryptionAlgorithm: t.EncryptionAlgorithm,
			SignatureAlgorithm:  t.SignatureAlgorithm,
			MaxBytes:            cfg.MaxCookieBytes,
		}
		if len(t.Secrets) == 1 {
			o.Secret = t.Secrets[0]
		}
		cs, err := sessionfmt.NewClientSessions(o)
		if err != nil {
			return nil, err
		}
		cf.cs = cs
	case FormatCookieSession:
		ck, err := sessionfmt.NewCookieSession(sessionfmt.CookieSessionOptions{
			Name: t.CookieName, Keys: t.Secrets, Hash: t.SignatureAlgorithm, MaxBytes: cfg.MaxCookieBytes,
		})
		if err != nil {
			return nil, err
		}
		cf.ck = ck
	}
	k := &entryKind{
		label: "cookie", doc: "session cookie",
		open: cf.open,
		read: func(_ *Verifier, ctx context.Context, t *tenant, id string, s *Session) ([]byte, time.Duration, error) {
			return nil, 0, cf.read(ctx, t, id, s)
		},
		// The deny entry ends one cookie, the revision all of a user's:
		// a stale allow must hear both.
		prefixes: func(t *tenant) []string {
			if cf.revisionPath == nil {
				return []string{t.store.revokedKey("")}
			}
			return []string{t.store.revokedKey(""), t.revisionKey("")}
		},
		logID:    shortHash,
		notFound: ReasonNotFound, tooLarge: ReasonSessionTooLarge,
		invalid: ReasonInvalidSession, anonymous: ReasonAnonymous,
		hardExpires: true,
		redisKeys: func(t *tenant, id string, s *Session) []string {
			ks := []string{t.store.revokedKey(id)}
			if cf.revisionPath != nil && s != nil {
				ks = append(ks, t.revisionKey(s.User))
			}
			return ks
		},
	}
	cf.k = k
	return cf, nil
}

// revisionKey is where user's current revision lives: RevisionPrefix,
// the tenant's name and ":" when there are tenants, and the user.
func (t *tenant) revisionKey(user string) string {
	if t.name == "" {
		return t.revisionPrefix + user
	}
	return t.revisionPrefix + t.name + ":" + user
}
