package authz

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/authz/authz/internal/jsnum"
)

// Session is what authz keeps of a stored session: only what decisions and
// response headers need, extracted once when the session is loaded.
type Session struct {
	// User is the identity as the app reads it (a number as JavaScript's
	// String() writes it). Empty means anonymous.
	User string
	// Roles are read from the configured roles path.
	Roles []string
	// Headers are the extra identity headers, values already checked.
	Headers []Header
	// OriginalMaxAge is cookie.originalMaxAge; zero when null (a browser-session
	// cookie).
	OriginalMaxAge time.Duration
	// Expires is cookie.expires; zero when null or absent.
	Expires time.Time

	userValue []string // User as a header value, built once
	// accessToken is the token read from Config.AccessTokenPaths, checked
	// like an identity header value. Unexported, so no log line or %v of a
	// Session can show it; only a location with access_token= gets it.
	accessToken string
	// revision is the session's revision (--revision-path), for formats
	// whose cookie carries the session.
	revision int64
}

// Header is one identity header sent back to Nginx. Value is a one-element
// slice so it can go into an http.Header without allocating.
type Header struct {
	Name  string
	Value []string
}

// HeaderMapping maps a session path (dot-separated, e.g. "passport.user.email")
// to a response header.
type HeaderMapping struct {
	Header string
	Path   []string
}

// ParseHeaderMapping parses "X-Auth-Email=passport.user.email".
func ParseHeaderMapping(s string) (HeaderMapping, error) {
	name, path, ok := strings.Cut(s, "=")
	if !ok || name == "" || path == "" {
		return HeaderMapping{}, fmt.Errorf("header mapping %q: want Header-Name=session.path", s)
	}
	if !validHeaderName(name) {
		return HeaderMapping{}, fmt.Errorf("header mapping %q: %q is not a valid header name", s, name)
	}
	p, err := ParsePath(path)
	if err != nil {
		return HeaderMapping{}, fmt.Errorf("header mapping %q: %w", s, err)
	}
	return HeaderMapping{Header: http.CanonicalHeaderKey(name), Path: p}, nil
}

// ParsePath splits a dot-separated session path, refusing empty segments.
func ParsePath(s string) ([]string, error) {
	p := strings.Split(s, ".")
	for _, seg := range p {
		if seg == "" {
			return nil, fmt.Errorf("session path %q has an empty segment", s)
		}
	}
	return p, nil
}

// decoder turns connect-redis JSON into a Session.
type decoder struct {
	userPaths  [][]string
	rolesPaths [][]string
	headers    []HeaderMapping
	// accessTokenPaths are tried in order for the access token to relay.
	accessTokenPaths [][]string
	// enforceExpires makes cookie.expires authoritative, for stores written
	// without a Redis TTL. Off, a malformed expires is ignored like
	// express-session ignores it.
	enforceExpires bool
	// maxHeader caps each identity header value (the identity and the
	// --header mappings); overCap is told when a value is dropped for it.
	maxHeader int
	overCap   func()
	// maxLines caps the identity header lines together, the identity's
	// (named userHeader) first, so that a 200 fits the answer cap
	// (Config.MaxAnswerHeaderBytes); --header values that would go past it
	// are left out and overAnswer is told. 0: no cap.
	userHeader string
	maxLines   int
	overAnswer func()
}

// maxHeaderValue is the ceiling of --max-identity-header-bytes. Nginx's
// default proxy buffer is 4 KiB for all upstream headers together; larger
// buffers are possible, values past 8 KiB are not sensible.
const maxHeaderValue = 8192

// over reports whether a value of n bytes is over the identity header cap,
// and tells overCap when it is.
func (d *decoder) over(n int) bool {
	if d.maxHeader > 0 && n > d.maxHeader {
		if d.overCap != nil {
			d.overCap()
		}
		return true
	}
	return false
}

// decode parses a stored value the way JSON.parse does (see parseJSON). It
// fails only on data that cannot be a session; an anonymous session decodes
// with an empty User. Tokens are decoded with it; sessions with
// decodeSession, which also refuses what express-session cannot load.
func (d *decoder) decode(data []byte) (*Session, error) {
	root, err := parseJSON(data)
	if err != nil {
		return nil, err
	}
	return d.session(root)
}

// decodeSession is decode for a session an Express app reads too: what
// express-session fails to load (its store's createSession throws, so the
// app sees no session at all) must not be a session authz allows.
func (d *decoder) decodeSession(data []byte) (*Session, error) {
	root, err := parseJSON(data)
	if err != nil {
		return nil, err
	}
	if err := expressLoads(root); err != nil {
		return nil, err
	}
	return d.session(root)
}

// parseJSON parses a stored value as Node's JSON.parse would, or refuses
// it. Where the two could disagree, refusing is the safe side: the
// value must be one JSON object with nothing but JSON whitespace around it
// (JSON.parse throws on trailing data, and on a byte order mark, which is
// not JSON whitespace; json.Decoder alone would stop after the object).
// Duplicate keys keep the last value in both. Nesting past
// encoding/json's depth limit (10000) is refused.
func parseJSON(data []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // keep numbers exact until formatted the way JavaScript does
	var root map[string]any
	if err := dec.Decode(&root); err != nil {
		return nil, fmt.Errorf("decode session JSON: %w", err)
	}
	if root == nil {
		return nil, fmt.Errorf("decode session JSON: null")
	}
	for _, c := range data[dec.InputOffset():] {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return nil, fmt.Errorf("decode session JSON: trailing data after the object")
		}
	}
	return root, nil
}

// expressLoads reports why express-session's Store.createSession would
// throw on root: it reads sess.cookie.expires (cookie must be an object or
// array, not null, absent or a scalar) and builds a Cookie from it, whose
// maxAge setter refuses a truthy value that is not a number.
func expressLoads(root map[string]any) error {
	switch c := root["cookie"].(type) {
	case []any:
	case map[string]any:
		if m, ok := c["maxAge"]; ok {
			switch x := m.(type) {
			case nil, json.Number:
			case bool:
				if x {
					return fmt.Errorf("cookie.maxAge is true: express-session cannot load the session")
				}
			case string:
				if x != "" {
					return fmt.Errorf("cookie.maxAge is a string: express-session cannot load the session")
				}
			default:
				return fmt.Errorf("cookie.maxAge has type %T: express-session cannot load the session", x)
			}
		}
	default:
		return fmt.Errorf("cookie is %T, not an object: express-session cannot load the session", c)
	}
	return nil
}

// session extracts what authz keeps from a parsed value.
func (d *decoder) session(root map[string]any) (*Session, error) {
	s := &Session{}
	if c, ok := root["cookie"].(map[string]any); ok {
		if n, ok := c["originalMaxAge"].(json.Number); ok {
			if ms, err := n.Int64(); err == nil && ms > 0 {
				s.OriginalMaxAge = time.Duration(ms) * time.Millisecond
			}
		}
		switch e := c["expires"].(type) {
		case string:
			t, err := time.Parse(time.RFC3339Nano, e)
			if err != nil && d.enforceExpires {
				return nil, fmt.Errorf("cookie.expires %q: %w", e, err)
			}
			s.Expires = t
		case nil:
		default:
			if d.enforceExpires {
				return nil, fmt.Errorf("cookie.expires has type %T", e)
			}
		}
	} else if d.enforceExpires && root["cookie"] != nil {
		return nil, fmt.Errorf("cookie has type %T", root["cookie"])
	}

	for _, p := range d.userPaths {
		v, ok := lookup(root, p)
		if !ok {
			continue
		}
		u, err := identity(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", strings.Join(p, "."), err)
		}
		if d.over(len(u)) {
			return nil, fmt.Errorf("%s: the user id is %d bytes, over the identity header cap", strings.Join(p, "."), len(u))
		}
		s.User = u
		break
	}
	if s.User == "" {
		return s, nil
	}
	for _, p := range d.rolesPaths {
		if v, ok := lookup(root, p); ok {
			s.Roles = list(v)
			break
		}
	}
	lines := headerLineLen(d.userHeader, len(s.User))
	// The access token is counted before the --header values: a location
	// that relays it needs it, where an extra header is a convenience.
	for _, p := range d.accessTokenPaths {
		v, ok := lookup(root, p)
		if !ok {
			continue
		}
		// A string or nothing: an object or a number is no bearer token.
		// Like an extra header, a value that cannot be sent is left out,
		// and access_token=require refuses the session then.
		tok, ok := v.(string)
		if !ok || tok == "" || !validHeaderValue(tok) || d.over(len(tok)) {
			break
		}
		n := headerLineLen(AccessTokenHeader, len(tok))
		if d.maxLines > 0 && lines+n > d.maxLines {
			if d.overAnswer != nil {
				d.overAnswer()
			}
			break
		}
		lines += n
		s.accessToken = tok
		break
	}
	for _, m := range d.headers {
		v, ok := lookup(root, m.Path)
		if !ok {
			continue
		}
		val := strings.Join(list(v), ",")
		if val == "" || !validHeaderValue(val) || d.over(len(val)) {
			continue
		}
		n := headerLineLen(m.Header, len(val))
		if d.maxLines > 0 && lines+n > d.maxLines {
			if d.overAnswer != nil {
				d.overAnswer()
			}
			continue
		}
		lines += n
		s.Headers = append(s.Headers, Header{Name: m.Header, Value: []string{val}})
	}
	return s, nil
}

// identity turns a user value into an id the way passport sees it: a string
// or number is the id, an object carries it in "id"; null, false and "" are
// nobody. Anything else cannot be named safely in a header and is an error.
// A number is written as JavaScript's String() writes it, which is the id
// the app sees (1e2 is 100; 12345678901234567890 is 12345678901234567000).
func identity(v any) (string, error) {
	if m, ok := v.(map[string]any); ok {
		id, ok := m["id"]
		if !ok {
			return "", fmt.Errorf("user object has no id")
		}
		v = id
	}
	switch x := v.(type) {
	case nil:
		return "", nil
	case bool:
		if !x {
			return "", nil
		}
		return "", fmt.Errorf("user is a boolean")
	case string:
		if x != "" && !validHeaderValue(x) {
			return "", fmt.Errorf("user id has control characters, spaces around it, or is too long")
		}
		if strings.ContainsRune(x, utf8.RuneError) {
			return "", errReplaced
		}
		return x, nil
	case json.Number:
		s, ok := jsnum.Format(x)
		if !ok {
			return "", fmt.Errorf("user id %s is not a finite number", x)
		}
		return s, nil
	}
	return "", fmt.Errorf("user id has type %T", v)
}

// errReplaced refuses a string holding U+FFFD: encoding/json puts it where
// the stored bytes had invalid UTF-8 or a lone surrogate escape ("\ud800"),
// and Node reads those differently (a lone surrogate stays one; a broken
// sequence may give fewer U+FFFD), so authz cannot know the id the app sees,
// and two different ids could read the same here.
var errReplaced = errors.New("user id holds invalid UTF-8 or a lone surrogate (U+FFFD after decoding)")

// lookup walks a dot path through nested objects.
func lookup(root map[string]any, path []string) (any, bool) {
	var cur any = root
	for _, seg := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[seg]; !ok {
			return nil, false
		}
	}
	return cur, cur != nil
}

// list reads a scalar or an array of scalars; a string is split at commas so
// "admin,ops" and ["admin","ops"] mean the same. Objects are ignored.
func list(v any) []string {
	var out []string
	add := func(s string) {
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			if s, ok := scalar(e); ok {
				add(s)
			}
		}
	default:
		if s, ok := scalar(x); ok {
			add(s)
		}
	}
	return out
}

// scalar writes a role or header value as the app sees it; a string
// holding U+FFFD (see errReplaced) is left out.
func scalar(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, !strings.ContainsRune(x, utf8.RuneError)
	case json.Number:
		return jsnum.Format(x)
	case bool:
		if x {
			return "true", true
		}
		return "false", true
	}
	return "", false
}

// validHeaderValue refuses control characters (CR and LF above all: header
// injection), oversized values, and spaces or tabs at either end: Nginx
// trims those, so "admin " would reach a service as "admin".
func validHeaderValue(s string) bool {
	if len(s) > maxHeaderValue {
		return false
	}
	if n := len(s); n > 0 && (s[0] == ' ' || s[0] == '\t' || s[n-1] == ' ' || s[n-1] == '\t') {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-':
		default:
			// Underscores are legal HTTP but Nginx drops them by default.
			return false
		}
	}
	return true
}
