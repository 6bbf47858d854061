package authz

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// API clients (services calling services, scripts) authenticate with
// "Authorization: Bearer <token>" when Config.BearerTokens is on. A token is
// stored in Redis under TokenPrefix + hex(SHA-256(token)): Redis, its
// backups and its replicas only ever hold the hash, which cannot be turned
// back into a token. The value is a JSON document read by the same decoder
// as a session (user paths, roles paths, header mappings), so a token and a
// session of the same identity answer with the same headers and pass the
// same rules.
//
// A token is random (256 bits), so SHA-256 needs no salt or stretching:
// there is nothing to guess. It is looked up like a session: local cache,
// then one Redis round trip, shared by concurrent misses. Revoking (package
// tokens, the write side) deletes the key and publishes a token event;
// every instance drops its cached entry at once.

// TokenPrefixDefault is the default Config.TokenPrefix.
const TokenPrefixDefault = "authz:token:"

// TokenMark starts every token authz creates. It tells a token apart in
// logs, secret scanners and Nginx (which strips these before a request
// reaches a service), and from the tokens apps use for themselves.
const TokenMark = "azt_"

const (
	// minTokenLen and maxTokenLen bound a bearer token accepted on
	// /verify. Tokens authz makes are 47 characters; the bound leaves room
	// for longer ones without letting a client make authz hash kilobytes.
	minTokenLen = 16
	maxTokenLen = 256
	// tokenKeyLen is a token's cache key: '~' and 64 hex digits. '~' is
	// never in a session id ([A-Za-z0-9_-]), so the two cannot collide in
	// the cache they share.
	tokenKeyLen = 1 + 2*sha256.Size
)

// isBearer reports whether an Authorization header uses the Bearer scheme
// (case-insensitive, RFC 9110), whatever follows.
//
// Only authz's own tokens (TokenMark, "azt_") count: a service's own bearer
// token, a JWT say, is none of authz's business; the cookie decides and the
// header reaches the service, as Nginx's config lets it.
func isBearer(auth string) bool {
	if len(auth) < 7 || !strings.EqualFold(auth[:6], "bearer") || (auth[6] != ' ' && auth[6] != '\t') {
		return false
	}
	return strings.HasPrefix(strings.TrimLeft(auth[6:], " \t"), TokenMark)
}

// bearerToken returns the credentials of a Bearer Authorization header and
// whether they are a plausible token: RFC 6750's b64token alphabet, within
// the length bounds. Anything else (spaces, commas, quotes, control
// characters, a second parameter) is refused before any hashing.
func bearerToken(auth string) (string, bool) {
	tok := strings.TrimLeft(auth[6:], " \t")
	if len(tok) < minTokenLen || len(tok) > maxTokenLen {
		return "", false
	}
	i := 0
	for ; i < len(tok) && b64tokenChar(tok[i]); i++ {
	}
	for j := i; j < len(tok); j++ {
		if tok[j] != '=' { // only trailing '=' padding
			return "", false
		}
	}
	return tok, i > 0
}

func b64tokenChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/'
}

// tokenKey writes tok's cache key into k without allocating: the token is
// copied to a stack buffer (hashing a string converted to []byte would
// allocate for anything over 32 bytes).
func tokenKey(k *[tokenKeyLen]byte, tok string) {
	var buf [maxTokenLen]byte
	n := copy(buf[:], tok)
	sum := sha256.Sum256(buf[:n])
	k[0] = '~'
	hex.Encode(k[1:], sum[:])
}

// tokenHashOf returns the hash part of a token cache key.
func tokenHashOf(key []byte) string { return string(key[1:]) }

// bearer reports whether r denies a bearer token, so the answer carries a
// Bearer challenge instead of a login redirect: an API client has no use
// for a login page.
func (r Reason) bearer() bool {
	return r == ReasonBadToken || r == ReasonTokenNotFound || r == ReasonInvalidToken
}

// bearerChallenge is the WWW-Authenticate value of a 401 for a token
// (RFC 6750). Nginx's config answers the client 401 with it.
const bearerChallenge = `Bearer realm="authz", error="invalid_token"`

var bearerChallengeValue = []string{bearerChallenge}

// decideBearer is decide for a request carrying a Bearer Authorization
// header: the token replaces the cookie, and nothing falls back to the
// cookie when the token fails (see docs/tokens.md).
//
// Tokens belong to a tenant like sessions do: each tenant's live under its
// own prefix (TokenPrefix + name + ":"), and a cached token is only its
// tenant's answer.
func (v *Verifier) decideBearer(ctx context.Context, t *tenant, auth string, rules *Rules, now time.Time) (Reason, *Session) {
	tok, ok := bearerToken(auth)
	if !ok {
		return ReasonBadToken, nil
	}
	var key [tokenKeyLen]byte
	tokenKey(&key, tok)
	e := v.lookup(ctx, t, key[:], "", tokenKind, now.UnixNano())
	if e == nil {
		return ReasonStoreUnavailable, nil
	}
	if e.sess == nil {
		return e.reason, nil
	}
	if rules != nil {
		if reason := rules.check(e.sess); reason != "" {
			return reason, e.sess
		}
	}
	return ReasonOK, e.sess
}

// tokenKind reads API tokens for lookup: the key is "~" and the token's
// hash; a document that names nobody, or is too large, is invalid_token.
var tokenKind = &entryKind{
	label: "token", doc: "token document",
	read: func(v *Verifier, ctx context.Context, t *tenant, key string, _ *Session) ([]byte, time.Duration, error) {
		return v.readToken(ctx, t, key[1:])
	},
	prefixes: func(t *tenant) []string { return []string{t.tokenPrefix} },
	logID:    func(key string) string { return key[1:9] },
	notFound: ReasonTokenNotFound, tooLarge: ReasonInvalidToken,
	invalid: ReasonInvalidToken, anonymous: ReasonInvalidToken,
	noUser: errNoTokenUser,
	decode: func(d *decoder, data []byte, _ time.Time) (*Session, error) { return d.decode(data) },
	redisKeys: func(t *tenant, key string, _ *Session) []string {
		return []string{t.tokenPrefix + key[1:]}
	},
}

// readToken returns the document stored for a token hash and the key's
// remaining TTL (negative when it has none), in one round trip.
func (v *Verifier) readToken(ctx context.Context, t *tenant, hash string) ([]byte, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, v.cfg.RedisTimeout)
	defer cancel()
	key := t.tokenPrefix + hash
	pipe := v.rdb.Pipeline()
	get := getCapped(ctx, pipe, key, v.cfg.MaxSessionBytes)
	pttl := pipe.PTTL(ctx, key)
	cmds, _ := pipe.Exec(ctx) // each command's own error: see readErr
	if err := readErr(cmds...); err != nil {
		return nil, 0, fmt.Errorf("load token %s: %w", hash[:8], err)
	}
	data, err := capped(get, v.cfg.MaxSessionBytes)
	if err != nil {
		return nil, 0, fmt.Errorf("load token %s: %w", hash[:8], err)
	}
	if d := pttl.Val(); d != -2 {
		return data, d, nil
	}
	return nil, 0, errNotFound // expired between the read and PTTL
}

// InvalidateToken drops one token, named by its hash, from the cache; it
// reports whether it was cached.
func (v *Verifier) InvalidateToken(hash string) bool { return v.Invalidate("~" + hash) }

// validateTokens refuses prefixes under which tokens and sessions could be
// mistaken for each other: a user-wide logout scans KeyPrefix, and must
// never read token documents as sessions.
func (c *Config) validateTokens() error {
	if !c.BearerTokens {
		return nil
	}
	if strings.HasPrefix(c.TokenPrefix, c.KeyPrefix) || strings.HasPrefix(c.KeyPrefix, c.TokenPrefix) {
		return fmt.Errorf("token prefix %q and key prefix %q overlap: tokens would be read as sessions", c.TokenPrefix, c.KeyPrefix)
	}
	return nil
}

// NewToken returns a new random token: TokenMark and 256 random bits,
// base64url-encoded (47 characters).
func NewToken() string {
	var b [32]byte
	rand.Read(b[:]) // never fails (crypto/rand since Go 1.24)
	return TokenMark + base64.RawURLEncoding.EncodeToString(b[:])
}

// TokenHash returns the id a token is stored and revoked under: the hex
// SHA-256 of the token.
func TokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// IsTokenHash reports whether s is a token hash as TokenHash writes it.
func IsTokenHash(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// ParseTokenRef turns what an operator pastes into a token hash: a hash is
// taken as it is, anything else is a token and is hashed.
func ParseTokenRef(ref string) (string, error) {
	if IsTokenHash(ref) {
		return ref, nil
	}
	if _, ok := bearerToken("Bearer " + ref); !ok {
		return "", errors.New("neither a token hash (64 hex digits) nor a token (16-256 characters of [A-Za-z0-9-._~+/])")
	}
	return TokenHash(ref), nil
}

// errNoTokenUser means a token document names nobody: every request with
// the token would get 401.
var errNoTokenUser = errors.New("no user at any user path")
