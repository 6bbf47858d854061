package sessionfmt

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync"
	"time"
)

// @fastify/session 11.x with @fastify/cookie 11 (signer.js, cookie 2.x).
//
// Cookie value: [cookiePrefix] sid "." MAC, MAC = HMAC (sha256 unless the
// app sets algorithm) of sid, standard base64 with the "=" padding removed
// ("+" and "/" kept); unsigning splits at the LAST "." and compares the
// encoded MACs. @fastify/cookie 11 percent-encodes only what is not a valid
// cookie octet, so "+" and "/" normally travel as they are; a "%" in the
// value is decoded first. The session itself is in the store under the
// unsigned sid: with connect-redis (the store @fastify/session's README
// suggests), the Redis key is the store's prefix ("sess:" by default) + sid
// and the value is the same JSON express-session stores.

// DefaultFastifyCookieName is @fastify/session's default cookieName.
const DefaultFastifyCookieName = "sessionId"

// DefaultStorePrefix is connect-redis's default key prefix: a session's
// Redis key is DefaultStorePrefix + sid.
const DefaultStorePrefix = "sess:"

// Session id bounds, as authz applies to express-session ids: the default
// generator makes 32 characters of base64url.
const (
	minSIDLen = 16
	maxSIDLen = 128
)

// FastifySessionOptions mirror @fastify/session's options that decide how a
// cookie reads.
type FastifySessionOptions struct {
	// CookieName is the cookie's name; empty means "sessionId".
	CookieName string
	// Secrets is the secret option as a list: all of them verify, the first
	// signs. (@fastify/session refuses a single string secret shorter than
	// 32 characters; a list has no such check.)
	Secrets []string
	// Algorithm is the HMAC algorithm, sha256 (the default), sha1, sha384
	// or sha512.
	Algorithm string
	// CookiePrefix is @fastify/session's cookiePrefix: text before the
	// signed id in the cookie ("s:" to share express-session's cookies).
	CookiePrefix string
	// MaxBytes bounds the cookie value; zero means DefaultMaxCookieBytes.
	MaxBytes int
}

// FastifySession reads @fastify/session cookies made with one configuration.
// It is safe for concurrent use.
type FastifySession struct {
	name     string
	prefix   string
	maxBytes int
	macLen   int // length of an encoded MAC
	pool     sync.Pool
}

type fsScratch struct {
	macs []hash.Hash
	buf  []byte
	tmp  []byte
	sum  [sha512.Size]byte
	enc  [88]byte
}

var fastifyHashes = map[string]func() hash.Hash{
	"sha1":   sha1.New,
	"sha256": sha256.New,
	"sha384": sha512.New384,
	"sha512": sha512.New,
}

// NewFastifySession checks o and prepares one HMAC per secret.
func NewFastifySession(o FastifySessionOptions) (*FastifySession, error) {
	name := o.CookieName
	if name == "" {
		name = DefaultFastifyCookieName
	}
	if len(o.Secrets) == 0 {
		return nil, errors.New("fastify-session: at least one secret is needed")
	}
	for i, k := range o.Secrets {
		if k == "" {
			return nil, fmt.Errorf("fastify-session: secret %d is empty", i+1)
		}
	}
	alg := strings.ToLower(o.Algorithm)
	if alg == "" {
		alg = "sha256"
	}
	newHash, ok := fastifyHashes[alg]
	if !ok {
		return nil, fmt.Errorf("fastify-session: algorithm %q: want sha256, sha1, sha384 or sha512", o.Algorithm)
	}
	f := &FastifySession{
		name:     name,
		prefix:   o.CookiePrefix,
		maxBytes: o.MaxBytes,
		macLen:   encodedLen(newHash().Size()),
	}
	if f.maxBytes <= 0 {
		f.maxBytes = DefaultMaxCookieBytes
	}
	keys := make([][]byte, len(o.Secrets))
	for i, k := range o.Secrets {
		keys[i] = []byte(k)
	}
	f.pool.New = func() any {
		s := &fsScratch{}
		for _, k := range keys {
			s.macs = append(s.macs, hmac.New(newHash, k))
		}
		return s
	}
	return f, nil
}

// CookieName is the name of the session cookie.
func (f *FastifySession) CookieName() string { return f.name }

// Lookup returns the cookie's value from the request's Cookie header lines
// as @fastify/cookie parses them (cookie 2.x: first match, trimmed, no
// quotes removed), still percent-encoded: Parse decodes it.
func (f *FastifySession) Lookup(lines []string) (string, bool) {
	return findCookiePkg(lines, f.name)
}

// Parse percent-decodes value as @fastify/cookie does, strips the
// cookiePrefix, verifies the MAC over the id with every secret in constant
// time and returns the session id, the key of the session in the store.
//
// Stricter than the library: the id must be 16 to 128 characters of
// base64url (the default generator's alphabet, also uuids); an id outside
// that is refused with ErrInvalidSessionID before the MAC is computed, as
// authz does for express-session ids.
func (f *FastifySession) Parse(value string) (string, error) {
	if len(value) > f.maxBytes {
		return "", ErrTooLarge
	}
	s := f.pool.Get().(*fsScratch)
	defer f.pool.Put(s)
	v := value
	if dec, ok := decodeCookiePkg(s.buf[:0], value); ok {
		s.buf = dec[:0]
		v = string(dec) // rare: @fastify/cookie 11 does not escape its own cookies
	}
	if !strings.HasPrefix(v, f.prefix) {
		return "", ErrMalformed
	}
	v = v[len(f.prefix):]
	dot := strings.LastIndexByte(v, '.')
	if dot < 0 || dot == len(v)-1 {
		return "", ErrMalformed
	}
	sid, mac := v[:dot], v[dot+1:]
	if !validSID(sid) {
		return "", ErrInvalidSessionID
	}
	if len(mac) != f.macLen {
		return "", ErrBadSignature
	}
	match := 0
	for _, h := range s.macs {
		h.Reset()
		writeString(h, &s.tmp, sid)
		enc := encodeB64(s.enc[:], h.Sum(s.sum[:0]), stdAlphabet)
		match |= constantTimeEqualString(enc, mac)
	}
	if match != 1 {
		return "", ErrBadSignature
	}
	return sid, nil
}

// validSID accepts base64url ids of a plausible length.
func validSID(s string) bool {
	if len(s) < minSIDLen || len(s) > maxSIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// FastifyExpired says whether @fastify/session would treat the stored
// session (the JSON connect-redis keeps) as expired at now. Unlike
// express-session, @fastify/session checks the stored cookie.expires on
// every load and regenerates the session when it is at or before now; a
// null or absent expires (a browser-session cookie) never expires this
// way. A session that is not a JSON object, or an expires that is not a
// date, is ErrInvalidContent.
func FastifyExpired(stored []byte, now time.Time) (bool, error) {
	var s struct {
		Cookie *struct {
			Expires *string `json:"expires"`
		} `json:"cookie"`
	}
	if !jsonObject(stored) {
		return false, ErrInvalidContent
	}
	if err := json.Unmarshal(stored, &s); err != nil {
		return false, ErrInvalidContent
	}
	if s.Cookie == nil || s.Cookie.Expires == nil {
		return false, nil
	}
	t, err := time.Parse(time.RFC3339Nano, *s.Cookie.Expires)
	if err != nil {
		return false, ErrInvalidContent
	}
	return !t.After(now), nil
}
