package sessionfmt

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync"
	"time"
)

// client-sessions 0.8 (npm client-sessions, lib/client-sessions.js).
//
// Cookie value: b64url(iv) "." b64url(ciphertext) "." createdAt "." duration
// "." b64url(hmac), base64url without padding, createdAt and duration in
// decimal milliseconds. Plaintext: cookieName "=" JSON.stringify(content),
// AES-CBC with PKCS#7 padding and a 16-byte IV. The MAC covers the decoded
// IV bytes, ".", the decoded ciphertext bytes, ".", String(createdAt), ".",
// String(duration).

// The library's key-derivation labels: each key is HMAC-SHA256(secret, label).
const (
	kdfEncryption = "cookiesession-encryption"
	kdfSignature  = "cookiesession-signature"
)

// DefaultClientSessionsCookie is the library's default cookieName. Apps that
// read the session as req.session set cookieName: 'session'.
const DefaultClientSessionsCookie = "session_state"

// ClientSessionsOptions mirror the options of the library's factory that
// decide how a cookie reads.
type ClientSessionsOptions struct {
	// CookieName is the library's cookieName: the cookie's name and the
	// label inside the plaintext. Empty means "session_state".
	CookieName string
	// Secret is the library's secret; both keys are derived from it unless
	// given below. Either Secret or both keys must be set.
	Secret string
	// EncryptionKey and SignatureKey are the library's explicit keys
	// (Buffers in Node). Each one set overrides the key derived from Secret.
	EncryptionKey []byte
	SignatureKey  []byte
	// EncryptionAlgorithm is aes128, aes192 or aes256 (CBC), the default;
	// case-insensitive as the library lowercases it.
	EncryptionAlgorithm string
	// SignatureAlgorithm is sha256 (the default), sha256-drop128, sha384,
	// sha384-drop192, sha512 or sha512-drop256 (HMAC, -dropN truncates the
	// MAC to its first N bits).
	SignatureAlgorithm string
	// MaxBytes bounds the cookie value; zero means DefaultMaxCookieBytes.
	MaxBytes int
}

// ClientSessions reads client-sessions cookies made with one configuration.
// It is safe for concurrent use.
type ClientSessions struct {
	name     string
	label    string // name + "=", the start of every plaintext
	maxBytes int
	block    cipher.Block
	macLen   int // MAC bytes compared, after any -dropN truncation
	pool     sync.Pool
}

// csScratch is per-call scratch space, pooled so Parse does not allocate.
type csScratch struct {
	mac hash.Hash
	ct  []byte
	tmp []byte
	iv  [aes.BlockSize]byte
	sum [sha512.Size]byte
	got [sha512.Size]byte
}

// ClientSession is what a client-sessions cookie carries.
type ClientSession struct {
	// Content is the session as JSON text, always a JSON object. It
	// aliases the buffer passed to Parse.
	Content []byte
	// CreatedAt is the cookie's createdAt. The library moves it forward
	// when it slides a session (activeDuration), so it is not the time of
	// sign-in and must not decide revocation.
	CreatedAt time.Time
	// Duration is the cookie's duration.
	Duration time.Duration
}

// ExpiresAt is createdAt + duration: the library resets the session once
// that instant is in the past.
func (s ClientSession) ExpiresAt() time.Time { return s.CreatedAt.Add(s.Duration) }

var encKeyLens = map[string]int{"aes128": 16, "aes192": 24, "aes256": 32}

type sigAlg struct {
	h      func() hash.Hash
	minKey int // the library's minimum signature-key length
	outLen int // MAC length after truncation
}

var sigAlgs = map[string]sigAlg{
	"sha256":         {sha256.New, 32, 32},
	"sha256-drop128": {sha256.New, 32, 16},
	"sha384":         {sha512.New384, 48, 48},
	"sha384-drop192": {sha512.New384, 48, 24},
	"sha512":         {sha512.New, 64, 64},
	"sha512-drop256": {sha512.New, 64, 32},
}

// NewClientSessions checks o the way the library's factory does (keys of the
// right length for the algorithms, the two keys different) and prepares
// the cipher and MAC. A configuration the library would refuse at start-up
// is refused here too: with only a secret, the derived 32-byte keys fit
// aes256 with sha256 or sha256-drop128, nothing else.
func NewClientSessions(o ClientSessionsOptions) (*ClientSessions, error) {
	name := o.CookieName
	if name == "" {
		name = DefaultClientSessionsCookie
	}
	if strings.Contains(name, "=") {
		return nil, errors.New("client-sessions: cookie name cannot include \"=\"")
	}
	if o.Secret == "" && (len(o.EncryptionKey) == 0 || len(o.SignatureKey) == 0) {
		return nil, errors.New("client-sessions: a secret or both an encryption key and a signature key are needed")
	}
	encAlg := strings.ToLower(o.EncryptionAlgorithm)
	if encAlg == "" {
		encAlg = "aes256"
	}
	wantEnc, ok := encKeyLens[encAlg]
	if !ok {
		return nil, fmt.Errorf("client-sessions: encryption algorithm %q: want aes128, aes192 or aes256", o.EncryptionAlgorithm)
	}
	sigName := strings.ToLower(o.SignatureAlgorithm)
	if sigName == "" {
		sigName = "sha256"
	}
	sa, ok := sigAlgs[sigName]
	if !ok {
		return nil, fmt.Errorf("client-sessions: signature algorithm %q: want sha256, sha256-drop128, sha384, sha384-drop192, sha512 or sha512-drop256", o.SignatureAlgorithm)
	}
	encKey, sigKey := o.EncryptionKey, o.SignatureKey
	if len(encKey) == 0 {
		encKey = deriveKey(o.Secret, kdfEncryption)
	}
	if len(sigKey) == 0 {
		sigKey = deriveKey(o.Secret, kdfSignature)
	}
	if subtle.ConstantTimeCompare(encKey, sigKey) == 1 {
		return nil, errors.New("client-sessions: encryption and signature keys must be different")
	}
	if len(encKey) != wantEnc {
		return nil, fmt.Errorf("client-sessions: the encryption key for %s must be exactly %d bytes, not %d", encAlg, wantEnc, len(encKey))
	}
	if len(sigKey) < sa.minKey {
		return nil, fmt.Errorf("client-sessions: the signature key for %s must be at least %d bytes, not %d", sigName, sa.minKey, len(sigKey))
	}
	block, err := aes.NewCipher(encKey)
	if err != nil {
		return nil, fmt.Errorf("client-sessions: %w", err)
	}
	c := &ClientSessions{
		name:     name,
		label:    name + "=",
		maxBytes: o.MaxBytes,
		block:    block,
		macLen:   sa.outLen,
	}
	if c.maxBytes <= 0 {
		c.maxBytes = DefaultMaxCookieBytes
	}
	key := append([]byte(nil), sigKey...)
	c.pool.New = func() any { return &csScratch{mac: hmac.New(sa.h, key)} }
	return c, nil
}

func deriveKey(secret, label string) []byte {
	h := hmac.New(sha256.New, []byte(secret))
	h.Write([]byte(label))
	return h.Sum(nil)
}

// CookieName is the name of the cookie, the library's cookieName.
func (c *ClientSessions) CookieName() string { return c.name }

// Lookup returns the cookie's value from the request's Cookie header lines
// as the library reads it (the cookies 0.7 package: first match, nothing
// trimmed, decoded or unquoted).
func (c *ClientSessions) Lookup(lines []string) (string, bool) {
	return findCookiesPkg(lines, c.name, false)
}

// Parse verifies value and decrypts it into dst, reused from its start
// (a dst with the capacity of the longest cookie makes Parse allocate
// nothing; a smaller one is replaced).
// The MAC is checked in constant time before anything is decrypted. With
// a non-zero now, a cookie whose createdAt + duration is before now is
// refused with ErrExpired (the session's times are still returned); a zero
// now skips that check, for tools that show a cookie. The library also
// slides a session near its end (activeDuration) by re-issuing the cookie;
// a reader that never re-issues sees the cookie expire at ExpiresAt.
//
// Stricter than the library: createdAt and duration must be canonical
// decimals below 2^53 (the library's parseInt reads "0123" and "123x" as
// 123 and MACs "123", so it accepts those changed cookies), base64 must be
// canonical, and the content must be a JSON object.
func (c *ClientSessions) Parse(dst []byte, value string, now time.Time) (ClientSession, error) {
	if len(value) > c.maxBytes {
		return ClientSession{}, ErrTooLarge
	}
	var parts [5]string
	rest := value
	for i := 0; i < 4; i++ {
		k := strings.IndexByte(rest, '.')
		if k < 0 {
			return ClientSession{}, ErrMalformed
		}
		parts[i], rest = rest[:k], rest[k+1:]
	}
	if strings.IndexByte(rest, '.') >= 0 {
		return ClientSession{}, ErrMalformed
	}
	parts[4] = rest
	createdAt, ok1 := jsInt(parts[2])
	duration, ok2 := jsInt(parts[3])
	if !ok1 || !ok2 {
		return ClientSession{}, ErrMalformed
	}
	if len(parts[0]) != encodedLen(aes.BlockSize) {
		return ClientSession{}, ErrMalformed
	}
	s := c.pool.Get().(*csScratch)
	defer c.pool.Put(s)
	iv := s.iv[:]
	if _, ok := decodeB64(iv[:0], parts[0], urlTable); !ok {
		return ClientSession{}, ErrMalformed
	}
	if len(parts[4]) != encodedLen(c.macLen) {
		return ClientSession{}, ErrBadSignature
	}
	if _, ok := decodeB64(s.got[:0], parts[4], urlTable); !ok {
		return ClientSession{}, ErrBadSignature
	}
	ct, ok := decodeB64(s.ct[:0], parts[1], urlTable)
	s.ct = ct[:0]
	if !ok || len(ct) == 0 || len(ct)%aes.BlockSize != 0 {
		return ClientSession{}, ErrMalformed
	}

	s.mac.Reset()
	s.mac.Write(iv)
	s.mac.Write(dot)
	s.mac.Write(ct)
	s.mac.Write(dot)
	writeString(s.mac, &s.tmp, parts[2])
	s.mac.Write(dot)
	writeString(s.mac, &s.tmp, parts[3])
	sum := s.mac.Sum(s.sum[:0])[:c.macLen]
	if subtle.ConstantTimeCompare(sum, s.got[:c.macLen]) != 1 {
		return ClientSession{}, ErrBadSignature
	}

	out := ClientSession{
		CreatedAt: time.UnixMilli(createdAt),
		Duration:  time.Duration(duration) * time.Millisecond,
	}
	if !now.IsZero() && createdAt+duration < now.UnixMilli() {
		return out, ErrExpired
	}

	// CBC by hand into dst: cipher.NewCBCDecrypter would allocate.
	dst = dst[:0]
	if cap(dst) < len(ct) {
		dst = make([]byte, len(ct))
	}
	dst = dst[:len(ct)]
	prev := iv
	for i := 0; i < len(ct); i += aes.BlockSize {
		blk := dst[i : i+aes.BlockSize]
		c.block.Decrypt(blk, ct[i:i+aes.BlockSize])
		subtle.XORBytes(blk, blk, prev)
		prev = ct[i : i+aes.BlockSize]
	}
	pad := int(dst[len(dst)-1])
	if pad == 0 || pad > aes.BlockSize {
		return out, ErrInvalidContent
	}
	for _, b := range dst[len(dst)-pad:] {
		if int(b) != pad {
			return out, ErrInvalidContent
		}
	}
	plain := dst[:len(dst)-pad]
	// The library compares the text before the first "=" with its
	// cookieName; the name holds no "=", so this prefix test is the same.
	if len(plain) < len(c.label) || string(plain[:len(c.label)]) != c.label {
		return out, ErrInvalidContent
	}
	content := plain[len(c.label):]
	if !jsonObject(content) {
		return out, ErrInvalidContent
	}
	out.Content = content
	return out, nil
}

var dot = []byte{'.'}

// writeString feeds s to h through tmp, a pooled buffer: converting s to
// a []byte for an interface call would allocate each time.
func writeString(h hash.Hash, tmp *[]byte, s string) {
	*tmp = append((*tmp)[:0], s...)
	h.Write(*tmp)
}

// jsInt parses a canonical non-negative decimal below 2^53: the only text
// for which String(parseInt(s, 10)) == s and the number is exact in
// JavaScript.
func jsInt(s string) (int64, bool) {
	if len(s) == 0 || len(s) > 16 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if n >= 1<<53 {
		return 0, false
	}
	return n, true
}
