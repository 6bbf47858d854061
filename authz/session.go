package authz

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Session is what authz keeps of a stored session: only what decisions and
// response headers need, extracted once when the session is loaded.
type Session struct {
	// User is the identity, exactly as the session stores it (numbers keep
	// their literal text). Empty means anonymous.
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

// decode parses a stored session. It fails only on data that cannot be a
// session; an anonymous session decodes with an empty User.
func (d *decoder) decode(data []byte) (*Session, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // keep numeric ids exactly as written
	var root map[string]any
	if err := dec.Decode(&root); err != nil {
		return nil, fmt.Errorf("decode session JSON: %w", err)
	}
	if root == nil {
		return nil, fmt.Errorf("decode session JSON: null")
	}
	if dec.More() {
		return nil, fmt.Errorf("decode session JSON: trailing data")
	}
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
	for _, m := range d.headers {
		v, ok := lookup(root, m.Path)
		if !ok {
			continue
		}
		val := strings.Join(list(v), ",")
		if val == "" || !validHeaderValue(val) || d.over(len(val)) {
			continue
		}
		s.Headers = append(s.Headers, Header{Name: m.Header, Value: []string{val}})
	}
	for _, p := range d.accessTokenPaths {
		v, ok := lookup(root, p)
		if !ok {
			continue
		}
		// A string or nothing: an object or a number is no bearer token.
		// Like an extra header, a value that cannot be sent is left out,
		// and access_token=require refuses the session then.
		if tok, ok := v.(string); ok && tok != "" && validHeaderValue(tok) && !d.over(len(tok)) {
			s.accessToken = tok
		}
		break
	}
	return s, nil
}

// identity turns a user value into an id the way passport sees it: a string
// or number is the id, an object carries it in "id"; null, false and "" are
// nobody. Anything else cannot be named safely in a header and is an error.
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
		return x, nil
	case json.Number:
		return string(x), nil
	}
	return "", fmt.Errorf("user id has type %T", v)
}

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

func scalar(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return string(x), true
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
