package sessionfmt

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync"
)

// cookie-session 2.x (npm cookie-session, with cookies 0.9 and keygrip 1.1).
//
// Two cookies: NAME holds base64(JSON.stringify(session)), standard alphabet
// with "=" padding (Buffer's 'base64'); NAME.sig holds keygrip's signature of
// the text "NAME=" + value: HMAC (sha1 unless the app passes its own
// Keygrip) in base64url without padding. Every key verifies, the first
// signs. There is no expiry in the format: the browser's cookie lifetime is
// all there is.

// DefaultCookieSessionName is cookie-session's default name option.
const DefaultCookieSessionName = "session"

// CookieSessionOptions mirror cookie-session's options that decide how a
// cookie reads.
type CookieSessionOptions struct {
	// Name is the cookie's name; empty means "session". The signature
	// cookie is Name + ".sig".
	Name string
	// Keys is keygrip's key list (cookie-session's keys, or [secret]): all
	// of them verify.
	Keys []string
	// Hash is keygrip's HMAC algorithm: sha1 (keygrip's default, used when
	// empty), sha256, sha384 or sha512.
	Hash string
	// MaxBytes bounds the session cookie's value; zero means
	// DefaultMaxCookieBytes.
	MaxBytes int
}

// CookieSession reads cookie-session cookies made with one configuration.
// It is safe for concurrent use.
type CookieSession struct {
	name, sigName string
	prefix        string // name + "=", the start of the signed text
	maxBytes      int
	sigLen        int // length of an encoded signature
	pool          sync.Pool
}

type ckScratch struct {
	macs []hash.Hash
	tmp  []byte
	sum  [sha512.Size]byte
	enc  [88]byte // base64 of the largest MAC
}

var keygripHashes = map[string]func() hash.Hash{
	"sha1":   sha1.New,
	"sha256": sha256.New,
	"sha384": sha512.New384,
	"sha512": sha512.New,
}

// NewCookieSession checks o and prepares one HMAC per key.
func NewCookieSession(o CookieSessionOptions) (*CookieSession, error) {
	name := o.Name
	if name == "" {
		name = DefaultCookieSessionName
	}
	if len(o.Keys) == 0 {
		return nil, errors.New("cookie-session: at least one key is needed (cookie-session's keys)")
	}
	for i, k := range o.Keys {
		if k == "" {
			return nil, fmt.Errorf("cookie-session: key %d is empty", i+1)
		}
	}
	hashName := strings.ToLower(o.Hash)
	if hashName == "" {
		hashName = "sha1"
	}
	newHash, ok := keygripHashes[hashName]
	if !ok {
		return nil, fmt.Errorf("cookie-session: hash %q: want sha1, sha256, sha384 or sha512", o.Hash)
	}
	c := &CookieSession{
		name:     name,
		sigName:  name + ".sig",
		prefix:   name + "=",
		maxBytes: o.MaxBytes,
		sigLen:   encodedLen(newHash().Size()),
	}
	if c.maxBytes <= 0 {
		c.maxBytes = DefaultMaxCookieBytes
	}
	keys := make([][]byte, len(o.Keys))
	for i, k := range o.Keys {
		keys[i] = []byte(k)
	}
	c.pool.New = func() any {
		s := &ckScratch{}
		for _, k := range keys {
			s.macs = append(s.macs, hmac.New(newHash, k))
		}
		return s
	}
	return c, nil
}

// Name is the session cookie's name; SigName the signature cookie's.
func (c *CookieSession) Name() string { return c.name }

// SigName is the name of the cookie that holds the signature.
func (c *CookieSession) SigName() string { return c.sigName }

// Lookup returns the session cookie's value and its signature from the
// request's Cookie header lines as cookies 0.9 reads them: the first match
// of each, nothing trimmed or decoded, a value starting with a double quote
// losing its first and last characters. ok is false when there is no
// session cookie; a missing signature comes back as "".
func (c *CookieSession) Lookup(lines []string) (value, sig string, ok bool) {
	value, ok = findCookiesPkg(lines, c.name, true)
	if !ok {
		return "", "", false
	}
	sig, _ = findCookiesPkg(lines, c.sigName, true)
	return value, sig, true
}

// Parse verifies sig over "NAME=" + value with every key, in constant time,
// and then decodes value into dst (reused from its start; with enough
// capacity nothing is allocated), returning the
// session as JSON text, always a JSON object. An empty value or signature
// is no session (ErrMalformed, ErrBadSignature), as cookie-session treats
// them.
//
// Stricter than the library: value must be canonical standard base64
// (padding optional) and hold a JSON object; cookie-session's Buffer
// decoder skips junk and it makes an empty session of other JSON values.
func (c *CookieSession) Parse(dst []byte, value, sig string) ([]byte, error) {
	if len(value) > c.maxBytes {
		return nil, ErrTooLarge
	}
	if value == "" {
		return nil, ErrMalformed
	}
	if len(sig) != c.sigLen {
		return nil, ErrBadSignature
	}
	s := c.pool.Get().(*ckScratch)
	defer c.pool.Put(s)
	match := 0
	for _, h := range s.macs {
		h.Reset()
		s.tmp = append(append(s.tmp[:0], c.prefix...), value...)
		h.Write(s.tmp)
		enc := encodeB64(s.enc[:], h.Sum(s.sum[:0]), urlAlphabet)
		match |= constantTimeEqualString(enc, sig)
	}
	if match != 1 {
		return nil, ErrBadSignature
	}
	return c.Decode(dst, value)
}

// Decode decodes the content of a value whose signature Parse has already
// verified, into dst as Parse does. It checks no signature: callers that
// cache what Parse accepted decode a value again with it.
func (c *CookieSession) Decode(dst []byte, value string) ([]byte, error) {
	if len(value) > c.maxBytes {
		return nil, ErrTooLarge
	}
	body := value
	for i := 0; i < 2 && len(body) > 0 && body[len(body)-1] == '='; i++ {
		body = body[:len(body)-1]
	}
	if len(body) != len(value) && len(value)%4 != 0 {
		return nil, ErrInvalidContent // padding that does not complete a quantum
	}
	out, ok := decodeB64(dst[:0], body, stdTable)
	if !ok || !jsonObject(out) {
		return nil, ErrInvalidContent
	}
	return out, nil
}

// constantTimeEqualString is subtle.ConstantTimeCompare for an encoded MAC
// held as bytes and a cookie's signature held as a string.
func constantTimeEqualString(b []byte, s string) int {
	if len(b) != len(s) {
		return 0
	}
	var v byte
	for i := 0; i < len(b); i++ {
		v |= b[i] ^ s[i]
	}
	return subtle.ConstantTimeByteEq(v, 0)
}
