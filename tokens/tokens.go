// Package tokens is authz's write side for API bearer tokens: it creates,
// lists and revokes them (authz token …). Verifying a token is the read
// path's, in package authz (docs/tokens.md): this package writes what that
// path reads, under the same tenants, prefixes and size caps, read through
// the authz.Verifier it is given. authz never imports it.
package tokens

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/internal/keyscan"

	"github.com/redis/go-redis/v9"
)

// Issuer creates, lists and revokes the API tokens of the tenants a
// Verifier serves.
type Issuer struct {
	v      *authz.Verifier
	cfg    authz.Config
	rdb    redis.UniversalClient
	walker keyscan.Walker
}

// New returns an Issuer for the tokens v verifies, through v's Redis
// client.
func New(v *authz.Verifier) *Issuer {
	cfg := v.Config()
	is := &Issuer{v: v, cfg: cfg, rdb: v.Client()}
	is.walker = keyscan.Walker{Client: is.rdb, Timeout: cfg.RedisTimeout * 4, MaxBytes: cfg.MaxSessionBytes}
	if cfg.Cluster != nil {
		is.walker.Cluster = cfg.Cluster
	}
	return is
}

// Info is what authz knows about a stored token; never the token.
type Info struct {
	// Hash is the token's id: hex SHA-256 of the token.
	Hash string
	// Name and Created come from the document's "token" object, as
	// `authz token create` writes it; empty when absent.
	Name    string
	Created time.Time
	// TTL is the key's remaining lifetime; negative when it never expires.
	TTL time.Duration
	// Session is the identity the token maps to, as a verify would see it;
	// nil with Err set when the document is unreadable.
	Session *authz.Session
	Err     error
}

// errNoUser means a token document names nobody: every request with the
// token would get 401.
var errNoUser = errors.New("no user at any user path")

// errTooLarge means a token document is over the size cap the read path
// applies (Config.MaxSessionBytes): every request with it would get 401.
var errTooLarge = errors.New("token document too large")

// meta is the "token" object `authz token create` stores alongside the
// identity.
type meta struct {
	Name    string    `json:"name,omitempty"`
	Created time.Time `json:"created"`
}

// info reads a stored token document as a verify would.
func (is *Issuer) info(ks authz.Keyspace, hash string, data []byte, ttl time.Duration) Info {
	ti := Info{Hash: hash, TTL: ttl}
	if len(data) > is.cfg.MaxSessionBytes {
		ti.Err = errTooLarge
		return ti
	}
	var doc struct {
		Token meta `json:"token"`
	}
	if json.Unmarshal(data, &doc) == nil {
		ti.Name, ti.Created = doc.Token.Name, doc.Token.Created
	}
	ti.Session, ti.Err = ks.Decode(data)
	if ti.Err == nil && ti.Session.User == "" {
		ti.Session, ti.Err = nil, errNoUser
	}
	return ti
}

// Create stores doc, a JSON object, under a new token that lives for ttl
// (0: until revoked) and returns the token; authz keeps only its hash.
// The document must name a user at one of the user paths, exactly as a
// session would, or the token is refused rather than stored useless. The
// token opens tenant's hosts only ("" without a tenant file).
func (is *Issuer) Create(ctx context.Context, tenant string, doc []byte, ttl time.Duration) (string, Info, error) {
	if ttl < 0 {
		return "", Info{}, errors.New("create token: negative TTL")
	}
	ks, err := is.v.Keyspace(tenant)
	if err != nil {
		return "", Info{}, fmt.Errorf("create token: %w", err)
	}
	token := authz.NewToken()
	hash := authz.TokenHash(token)
	ti := is.info(ks, hash, doc, ttl)
	if ti.Err != nil {
		return "", ti, fmt.Errorf("create token: the identity document: %w", ti.Err)
	}
	if ttl == 0 {
		ti.TTL = -1
	}
	ctx, cancel := context.WithTimeout(ctx, is.cfg.RedisTimeout*4)
	defer cancel()
	// NX: a token is never stored over another one (with 256 random bits
	// a clash cannot happen; NX makes it cannot matter).
	ok, err := is.rdb.SetNX(ctx, ks.TokenPrefix()+hash, doc, ttl).Result()
	if err != nil {
		return "", ti, fmt.Errorf("create token %s: %w", hash[:8], err)
	}
	if !ok {
		return "", ti, fmt.Errorf("create token %s: the key exists", hash[:8])
	}
	return token, ti, nil
}

// Revoke deletes a token, named by its hash; it reports whether the key
// existed. It does not publish; the caller does, so every instance drops
// its cached entry. No marker is needed, unlike for sessions: only
// `authz token create` writes token keys, and never the same one twice.
func (is *Issuer) Revoke(ctx context.Context, tenant, hash string) (bool, error) {
	if !authz.IsTokenHash(hash) {
		return false, errors.New("revoke token: not a token hash")
	}
	ks, err := is.v.Keyspace(tenant)
	if err != nil {
		return false, fmt.Errorf("revoke token: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, is.cfg.RedisTimeout*4)
	defer cancel()
	n, err := is.rdb.Del(ctx, ks.TokenPrefix()+hash).Result()
	if err != nil {
		return false, fmt.Errorf("revoke token %s: %w", hash[:8], err)
	}
	return n > 0, nil
}

// List calls fn for every stored token of tenant, one at a time, walking
// its token prefix with SCAN (every master of a cluster).
func (is *Issuer) List(ctx context.Context, tenant string, fn func(Info) error) error {
	ks, err := is.v.Keyspace(tenant)
	if err != nil {
		return fmt.Errorf("list tokens: %w", err)
	}
	err = is.walker.Walk(ctx, ks.TokenPrefix(), func(_ context.Context, batch []keyscan.Found) error {
		for _, f := range batch {
			if !authz.IsTokenHash(f.ID) {
				continue // not a token key
			}
			if err := fn(is.info(ks, f.ID, f.Data, f.TTL)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("list tokens: %w", err)
	}
	return nil
}
