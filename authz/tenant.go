package authz

import (
	"cmp"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Tenant is one customer of a shared deployment: the hosts it answers for
// and how its sessions are read. Empty fields take the Verifier's Config, so
// a tenant usually names only its hosts, key prefix and secrets.
type Tenant struct {
	// Name identifies the tenant in logout events, logs and the CLI.
	Name string
	// Hosts are exact host names ("shop.acme.example") or wildcards
	// ("*.acme.example", any depth below, as Nginx's server_name reads it).
	Hosts []string
	// KeyPrefix is where the tenant's sessions live in Redis. Prefixes of
	// two tenants may not overlap: a user-wide logout scans its tenant's
	// prefix and must never see another tenant's sessions.
	KeyPrefix string
	// Format is how the tenant's sessions are carried; empty: the
	// Config's. A tenant of a format of its own without a CookieName gets
	// that format's default name.
	Format     Format
	CookieName string
	// Secrets verify the tenant's cookies. Tenants may share them (one
	// express-session secret for every customer is common): what keeps
	// tenants apart is the key prefix, since a cookie's session id is only
	// ever looked up under the tenant its host picked. Secrets of their own
	// add a second wall (docs/tenants.md says what each choice guarantees).
	Secrets []string
	// EncryptionKey, SignatureKey, EncryptionAlgorithm, SignatureAlgorithm
	// and RevisionPath are as in Config; unset, the Config's.
	EncryptionKey, SignatureKey             []byte
	EncryptionAlgorithm, SignatureAlgorithm string
	RevisionPath                            []string
	UserPaths                               [][]string
	RolesPaths                              [][]string
	// AccessTokenPaths locate the access token locations may relay
	// (access_token= in the verify URL).
	AccessTokenPaths [][]string
	Headers          []HeaderMapping
	LoginURL         string
	// Line is where the tenant is defined in its file, for error messages
	// (0: not from a file).
	Line int
}

// tenant is a Tenant ready for the request path.
type tenant struct {
	name string
	// id is unique per Verifier and per build, so a cache entry or a
	// Redis read started under a tenant's old definition is never used
	// for its new one after a reload.
	id string
	// format reads the tenant's cookies and says how their sessions load.
	format   sessionFormat
	decoder  decoder
	store    store
	loginURL string
	// requests counts the tenant's decisions by outcome
	// (authz_session_format_requests_total).
	requests map[string]prometheus.Counter
	// now is the Verifier's clock, for the write side's reads of cookies.
	now func() time.Time
	// revisionPrefix holds users' current revisions (revisionKey).
	revisionPrefix string
	// tokenPrefix holds the tenant's API tokens: TokenPrefix, plus the
	// tenant's name and ":" when there are tenants.
	tokenPrefix string
}

// tenantSet is an immutable routing table from host to tenant, swapped
// whole on reload so a request sees either the old table or the new.
type tenantSet struct {
	// single serves every host: the deployment without a tenant file.
	single *tenant
	exact  map[string]*tenant
	// wild maps "example.com" to the tenant of "*.example.com".
	wild     map[string]*tenant
	byName   map[string]*tenant
	byPrefix map[string]*tenant
	// byTokenPrefix finds the tenant of a token key (with BearerTokens).
	byTokenPrefix map[string]*tenant
	list          []*tenant
}

// maxHostLen bounds a host name (RFC 1035's 253, plus room for a port).
const maxHostLen = 260

// lookup returns the tenant serving host, nil if none does. It does not
// allocate: the normalised name lives on the stack and map lookups with a
// converted []byte do not copy it.
func (ts *tenantSet) lookup(host string) *tenant {
	if ts.single != nil {
		return ts.single
	}
	var buf [maxHostLen]byte
	n, ok := normalizeHost(&buf, host)
	if !ok {
		return nil
	}
	h := buf[:n]
	if t := ts.exact[string(h)]; t != nil {
		return t
	}
	// The longest matching wildcard wins: try the suffixes after each dot,
	// longest first.
	for i, c := range h {
		if c == '.' {
			if t := ts.wild[string(h[i+1:])]; t != nil {
				return t
			}
		}
	}
	return nil
}

// normalizeHost writes host into buf lower-cased, without its port or a
// trailing dot, and reports whether it is a plausible host name at all.
func normalizeHost(buf *[maxHostLen]byte, host string) (int, bool) {
	if len(host) == 0 || len(host) > maxHostLen {
		return 0, false
	}
	if host[0] == '[' {
		// An IPv6 literal: keep the brackets, drop the port.
		end := strings.IndexByte(host, ']')
		if end < 0 {
			return 0, false
		}
		host = host[:end+1]
	} else if i := strings.LastIndexByte(host, ':'); i >= 0 {
		for _, c := range host[i+1:] {
			if c < '0' || c > '9' {
				return 0, false
			}
		}
		host = host[:i]
	}
	host = strings.TrimSuffix(host, ".")
	if host == "" || host[0] == '.' || strings.Contains(host, "..") {
		return 0, false // an empty label
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '.', c == '_',
			c == '[', c == ']', c == ':':
		default:
			return 0, false
		}
		buf[i] = c
	}
	return len(host), true
}

// tenantName is what a tenant may be called: it goes into log lines,
// events and metric-free places, and must be easy to type in the CLI.
func validTenantName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// buildTenant turns t, completed from cfg, into a request-path tenant.
func (v *Verifier) buildTenant(t Tenant) (*tenant, error) {
	cfg := v.cfg
	if t.KeyPrefix == "" {
		t.KeyPrefix = cfg.KeyPrefix
	}
	if t.CookieName == "" {
		if t.Format != "" && t.Format != cfg.Format {
			t.CookieName = t.Format.DefaultCookieName()
		} else {
			t.CookieName = cfg.CookieName
		}
	}
	if t.Format == "" {
		t.Format = cfg.Format
	}
	if t.Secrets == nil {
		t.Secrets = cfg.Secrets
	}
	if t.EncryptionKey == nil {
		t.EncryptionKey = cfg.EncryptionKey
	}
	if t.SignatureKey == nil {
		t.SignatureKey = cfg.SignatureKey
	}
	if t.EncryptionAlgorithm == "" {
		t.EncryptionAlgorithm = cfg.EncryptionAlgorithm
	}
	if t.SignatureAlgorithm == "" {
		t.SignatureAlgorithm = cfg.SignatureAlgorithm
	}
	if t.RevisionPath == nil {
		t.RevisionPath = cfg.RevisionPath
	}
	if t.UserPaths == nil {
		t.UserPaths = cfg.UserPaths
	}
	if t.RolesPaths == nil {
		t.RolesPaths = cfg.RolesPaths
	}
	if t.Headers == nil {
		t.Headers = cfg.Headers
	}
	if t.AccessTokenPaths == nil {
		t.AccessTokenPaths = cfg.AccessTokenPaths
	}
	if t.LoginURL == "" {
		t.LoginURL = cfg.LoginURL
	}
	if len(t.Secrets) == 0 && !(t.Format == FormatClientSessions && len(t.EncryptionKey) > 0 && len(t.SignatureKey) > 0) {
		return nil, errors.New("no session secret: set at least one")
	}
	if t.RevisionPath != nil && t.Format.Stored() {
		return nil, fmt.Errorf("a revision path is for formats whose cookie carries the session; %s sessions end when their key in Redis does", t.Format)
	}
	c := cfg
	c.CookieName, c.Secrets, c.LoginURL = t.CookieName, t.Secrets, t.LoginURL
	if err := c.validate(); err != nil {
		return nil, err
	}
	tokenPrefix := cfg.TokenPrefix
	if t.Name != "" {
		tokenPrefix += t.Name + ":"
	}
	if cfg.BearerTokens && (strings.HasPrefix(tokenPrefix, t.KeyPrefix) || strings.HasPrefix(t.KeyPrefix, tokenPrefix)) {
		return nil, fmt.Errorf("token prefix %q and key prefix %q overlap: tokens would be read as sessions", tokenPrefix, t.KeyPrefix)
	}
	for _, h := range t.Headers {
		if !validHeaderName(h.Header) {
			return nil, fmt.Errorf("header %q is not a valid header name", h.Header)
		}
	}
	format, err := newFormat(t, &cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.Format, err)
	}
	return &tenant{
		name:     t.Name,
		id:       strconv.FormatUint(v.tenantSeq.Add(1), 36),
		format:   format,
		requests: v.metrics.formatCounters(t.Format),
		decoder: decoder{
			userPaths:        t.UserPaths,
			rolesPaths:       t.RolesPaths,
			headers:          t.Headers,
			accessTokenPaths: t.AccessTokenPaths,
			enforceExpires:   cfg.EnforceExpires,
			maxHeader:        cfg.MaxIdentityHeaderBytes,
			overCap:          func() { v.metrics.bound("identity_header") },
			userHeader:       cfg.UserHeader,
			maxLines:         c.answerBudget(),
			overAnswer:       func() { v.metrics.bound("answer_header") },
		},
		store: store{rdb: v.rdb, prefix: t.KeyPrefix, timeout: cfg.RedisTimeout,
			maxBytes: cfg.MaxSessionBytes, revokedPrefix: cfg.RevokedPrefix,
			storeTTL: cfg.StoreTTL, onEndAgain: v.endedAgain,
			cluster: cfg.Topology == TopologyCluster},
		loginURL:       t.LoginURL,
		revisionPrefix: cfg.RevisionPrefix,
		now:            cfg.Now,
		tokenPrefix:    tokenPrefix,
	}, nil
}

// where names a tenant in an error: its name, and its line in the file.
func (t *Tenant) where() string {
	if t.Line > 0 {
		return fmt.Sprintf("line %d: tenant %q", t.Line, t.Name)
	}
	return fmt.Sprintf("tenant %q", t.Name)
}

// buildTenants checks ts as a whole and builds their routing table. Every
// rule here closes a way one tenant's cookie or logout could reach another:
// a host picks exactly one tenant, and no tenant's key prefix (or token
// prefix) overlaps another's, so a session id is read, and a user-wide
// logout scans, under one tenant's keys only.
func (v *Verifier) buildTenants(ts []Tenant) (*tenantSet, error) {
	if len(ts) == 0 {
		return nil, errors.New("no tenants")
	}
	set := &tenantSet{
		exact:         make(map[string]*tenant),
		wild:          make(map[string]*tenant),
		byName:        make(map[string]*tenant),
		byPrefix:      make(map[string]*tenant),
		byTokenPrefix: make(map[string]*tenant),
	}
	hostOwner := make(map[string]*Tenant)
	prefixOwner := make(map[string]*Tenant)
	// keyOwner: for formats whose cookie carries the session, the tenant
	// that verifies with each secret (or client-sessions signature key).
	keyOwner := make(map[string]*Tenant)
	for i := range ts {
		t := &ts[i]
		if !validTenantName(t.Name) {
			return nil, fmt.Errorf("%s: a name is 1-64 characters of [A-Za-z0-9._-]", t.where())
		}
		if _, dup := set.byName[t.Name]; dup {
			return nil, fmt.Errorf("%s: defined twice", t.where())
		}
		if len(t.Hosts) == 0 {
			return nil, fmt.Errorf("%s: no hosts", t.where())
		}
		bt, err := v.buildTenant(*t)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", t.where(), err)
		}
		for _, h := range t.Hosts {
			name, wildcard := strings.CutPrefix(h, "*.")
			var buf [maxHostLen]byte
			n, ok := normalizeHost(&buf, name)
			if !ok || strings.ContainsAny(name, ":*[]") || strings.HasPrefix(name, ".") {
				return nil, fmt.Errorf("%s: host %q: want a host name (no port) or *.domain", t.where(), h)
			}
			key := string(buf[:n])
			if wildcard {
				key = "*." + key
			}
			if o := hostOwner[key]; o != nil {
				return nil, fmt.Errorf("%s: host %q is also %s's", t.where(), h, o.where())
			}
			hostOwner[key] = t
			if wildcard {
				set.wild[key[2:]] = bt
			} else {
				set.exact[key] = bt
			}
		}
		// A cookie that carries its session (client-sessions,
		// cookie-session) is looked up nowhere: its signature is the only
		// thing tying it to a tenant. Under a shared key, A's cookie would
		// pass on B's host as B's user of the same id, and a user logged
		// out in A (A's revision) would walk into B. So such tenants of one
		// format verify with keys of their own.
		if f := cmp.Or(t.Format, v.cfg.Format); !f.Stored() {
			keys := t.Secrets
			if keys == nil {
				keys = v.cfg.Secrets
			}
			if f == FormatClientSessions {
				if sk := cmp.Or(string(t.SignatureKey), string(v.cfg.SignatureKey)); sk != "" {
					// An explicit signature key decides the MAC, whatever
					// the secret.
					keys = []string{"\x00signature key\x00" + sk}
				}
			}
			for _, k := range keys {
				id := string(f) + "\x00" + k
				if o := keyOwner[id]; o != nil && o != t {
					return nil, fmt.Errorf("%s: shares a %s secret with %s: a cookie carrying its session is tied to its tenant by its signature alone, so one tenant's cookies would pass as the other's users; give each tenant its own secret", t.where(), f, o.where())
				}
				keyOwner[id] = t
			}
		}
		// Secrets and cookie names may otherwise be shared: a cookie only
		// names a session id, looked up under this tenant's prefix alone,
		// so the prefixes below are what must not overlap.
		prefix := bt.store.prefix
		mine := []string{prefix}
		if v.cfg.BearerTokens {
			mine = append(mine, bt.tokenPrefix)
		}
		for _, m := range mine {
			for p, o := range prefixOwner {
				if strings.HasPrefix(p, m) || strings.HasPrefix(m, p) {
					return nil, fmt.Errorf("%s: key prefix %q overlaps %s's %q: a user-wide logout in one would scan the other's sessions", t.where(), m, o.where(), p)
				}
			}
		}
		for _, m := range mine {
			prefixOwner[m] = t
		}
		set.byName[t.Name] = bt
		set.byPrefix[prefix] = bt
		set.byTokenPrefix[bt.tokenPrefix] = bt
		set.list = append(set.list, bt)
	}
	return set, nil
}

// SetTenants replaces the tenants, atomically: a request in flight finishes
// with the table it started with. With nil, every host is served by the
// Config alone, as without a tenant file. On error the old tenants stay.
func (v *Verifier) SetTenants(ts []Tenant) error {
	set, err := v.tenantSetFor(ts)
	if err != nil {
		return err
	}
	v.tenants.Store(set)
	v.metrics.tenants.Set(float64(len(set.list)))
	return nil
}

func (v *Verifier) tenantSetFor(ts []Tenant) (*tenantSet, error) {
	if ts != nil {
		return v.buildTenants(ts)
	}
	t, err := v.buildTenant(Tenant{})
	if err != nil {
		return nil, err
	}
	return &tenantSet{
		single:        t,
		byName:        map[string]*tenant{"": t},
		byPrefix:      map[string]*tenant{t.store.prefix: t},
		byTokenPrefix: map[string]*tenant{t.tokenPrefix: t},
		list:          []*tenant{t},
	}, nil
}

// tenant returns the tenant called name; "" is the only tenant of a
// deployment without a tenant file.
func (v *Verifier) tenant(name string) (*tenant, error) {
	ts := v.tenants.Load()
	if t := ts.byName[name]; t != nil {
		return t, nil
	}
	if name == "" {
		return nil, errors.New("several tenants are configured: name one")
	}
	return nil, fmt.Errorf("no tenant %q", name)
}

// tenantOfKey returns the tenant whose key prefix key starts with, and the
// session id after it. Session ids are 16-128 characters of
// [A-Za-z0-9_-], so only the prefixes ending where such a suffix could
// begin need looking up.
func (ts *tenantSet) tenantOfKey(key string) (*tenant, string, bool) {
	return keyOwner(ts.byPrefix, key)
}

func keyOwner(byPrefix map[string]*tenant, key string) (*tenant, string, bool) {
	start := len(key)
	for start > 0 && sidByte(key[start-1]) {
		start--
	}
	for i := len(key) - minSIDLen; i >= start && i >= len(key)-maxSIDLen; i-- {
		if t := byPrefix[key[:i]]; t != nil {
			return t, key[i:], true
		}
	}
	return nil, "", false
}

func sidByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// KeyPrefixes returns every tenant's session key prefix, and token prefix
// with BearerTokens, for CLIENT TRACKING.
func (v *Verifier) KeyPrefixes() []string {
	var out []string
	for _, t := range v.tenants.Load().list {
		out = append(out, t.store.prefix)
		if !t.format.format().Stored() {
			// What ends a cookie that carries its session: a user's
			// revision, a deny entry.
			out = append(out, t.revisionKey(""), t.store.revokedKey(""))
		}
		if v.cfg.BearerTokens {
			out = append(out, t.tokenPrefix)
		}
	}
	return out
}
