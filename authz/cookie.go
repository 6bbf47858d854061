package authz

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"hash"
	"strings"
	"sync"
)

// Session id bounds. uid-safe (express-session's default generator) makes
// 32 characters; other generators (uuid, longer random ids) stay well inside.
const (
	minSIDLen = 16
	maxSIDLen = 128
)

// macLen is the length of an unpadded base64 HMAC-SHA256, as cookie-signature
// writes it.
const macLen = 43

// signer holds per-request scratch space: one HMAC per secret and a buffer
// for the unescaped cookie. Pooled so the hot path does not allocate.
type signer struct {
	macs []hash.Hash
	buf  []byte
	sum  [sha256.Size]byte
	enc  [macLen]byte
}

// cookieCodec reads express-session's signed cookies.
type cookieCodec struct {
	name     string
	maxBytes int
	pool     sync.Pool
}

func newCookieCodec(name string, secrets []string, maxBytes int) *cookieCodec {
	c := &cookieCodec{name: name, maxBytes: maxBytes}
	keys := make([][]byte, len(secrets))
	for i, s := range secrets {
		keys[i] = []byte(s)
	}
	c.pool.New = func() any {
		s := &signer{buf: make([]byte, 0, maxBytes)}
		for _, k := range keys {
			s.macs = append(s.macs, hmac.New(sha256.New, k))
		}
		return s
	}
	return c
}

func (c *cookieCodec) get() *signer  { return c.pool.Get().(*signer) }
func (c *cookieCodec) put(s *signer) { c.pool.Put(s) }

// findCookie returns the first cookie called name in the request's Cookie
// header lines, as the "cookie" npm package (and so express-session) does:
// later duplicates are ignored. The value is returned still percent-encoded.
func findCookie(lines []string, name string) (string, bool) {
	for _, line := range lines {
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimLeft(part, " \t")
			k, v, ok := strings.Cut(part, "=")
			if !ok || strings.TrimRight(k, " \t") != name {
				continue
			}
			v = strings.Trim(v, " \t")
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v, true
		}
	}
	return "", false
}

// unsign checks a cookie value (still percent-encoded) against every secret
// and returns the session id it carries. The id aliases s.buf, so it is only
// valid until s goes back to the pool.
func (c *cookieCodec) unsign(s *signer, value string) ([]byte, Reason) {
	if len(value) > c.maxBytes {
		return nil, ReasonCookieTooLarge
	}
	if value == "" {
		return nil, ReasonNoCookie
	}
	raw, ok := unescape(s.buf[:0], value)
	if !ok {
		return nil, ReasonMalformedCookie
	}
	s.buf = raw[:0]
	if len(raw) < 2 || raw[0] != 's' || raw[1] != ':' {
		// express-session treats an unsigned value as no session at all.
		return nil, ReasonMalformedCookie
	}
	raw = raw[2:]
	dot := lastDot(raw)
	if dot < 0 {
		return nil, ReasonMalformedCookie
	}
	sid, mac := raw[:dot], raw[dot+1:]
	if !validSID(sid) {
		return nil, ReasonInvalidSessionID
	}
	if len(mac) != macLen {
		return nil, ReasonBadSignature
	}
	// Compare encoded MACs, as cookie-signature does, so non-canonical
	// base64 that decodes to the same bytes is still refused.
	match := 0
	for _, h := range s.macs {
		h.Reset()
		h.Write(sid)
		base64.RawStdEncoding.Encode(s.enc[:], h.Sum(s.sum[:0]))
		match |= subtle.ConstantTimeCompare(s.enc[:], mac)
	}
	if match != 1 {
		return nil, ReasonBadSignature
	}
	return sid, ""
}

func lastDot(b []byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '.' {
			return i
		}
	}
	return -1
}

// validSID accepts base64url ids of a plausible length: uid-safe's alphabet,
// which also covers uuids.
func validSID(b []byte) bool {
	if len(b) < minSIDLen || len(b) > maxSIDLen {
		return false
	}
	for _, c := range b {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// unescape appends the percent-decoding of s to dst, like decodeURIComponent.
// A malformed escape makes the whole value unreadable.
func unescape(dst []byte, s string) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			dst = append(dst, c)
			continue
		}
		if i+2 >= len(s) {
			return dst, false
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return dst, false
		}
		dst = append(dst, hi<<4|lo)
		i += 2
	}
	return dst, true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// Sign returns the cookie value express-session would set for sid with
// secret, percent-encoded as it is sent. Tests and the CLI use it.
func Sign(sid, secret string) string {
	h := hmac.New(sha256.New, []byte(secret))
	h.Write([]byte(sid))
	mac := base64.RawStdEncoding.EncodeToString(h.Sum(nil))
	r := strings.NewReplacer("+", "%2B", "/", "%2F")
	return "s%3A" + sid + "." + r.Replace(mac)
}
