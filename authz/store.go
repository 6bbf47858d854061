package authz

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// errNotFound means the session key does not exist (never written, destroyed,
// or expired by its TTL).
var errNotFound = errors.New("session not found")

// errTooLarge means the stored session is bigger than the configured cap.
var errTooLarge = errors.New("session too large")

// errRevoked means a logout through authz ended this session; an app that
// saved it again afterwards must not bring it back.
var errRevoked = errors.New("session revoked")

// store reads sessions the way connect-redis writes them. It never writes a
// session; touch only extends the TTL of a key that still exists.
type store struct {
	rdb      redis.UniversalClient
	prefix   string
	timeout  time.Duration
	maxBytes int
	// revokedPrefix + prefix + sid marks a session a logout ended.
	revokedPrefix string
}

func (s *store) revokedKey(sid string) string { return s.revokedPrefix + s.prefix + sid }

// load returns the stored JSON for sid and the key's remaining TTL (negative
// when the key has none). The read, PTTL and the revocation check go in one
// round trip.
func (s *store) load(ctx context.Context, sid string) ([]byte, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	key := s.prefix + sid
	pipe := s.rdb.Pipeline()
	get := getCapped(ctx, pipe, key, s.maxBytes)
	ttl := pipe.PTTL(ctx, key)
	revoked := pipe.Exists(ctx, s.revokedKey(sid))
	if _, err := pipe.Exec(ctx); err != nil && !isWrongType(err) {
		return nil, 0, fmt.Errorf("load session %s: %w", shortHash(sid), err)
	}
	if revoked.Val() > 0 {
		return nil, 0, errRevoked
	}
	data, err := capped(get, s.maxBytes)
	if err != nil {
		return nil, 0, fmt.Errorf("load session %s: %w", shortHash(sid), err)
	}
	d := ttl.Val()
	if d == -2 {
		// Expired between the read and PTTL.
		return nil, 0, errNotFound
	}
	return data, d, nil
}

// getCapped queues a read of key's value that moves at most maxBytes+1
// bytes from Redis: a huge value must not cross the network (and time the
// call out, an outage) before the size cap refuses it. GETRANGE costs what
// GET costs; unlike GET it answers "" for a missing key (see capped).
func getCapped(ctx context.Context, p redis.Pipeliner, key string, maxBytes int) *redis.StringCmd {
	return p.GetRange(ctx, key, 0, int64(maxBytes))
}

// capped returns the value getCapped read: errNotFound for a missing key
// (or an empty value, which no session or token can be), errTooLarge past
// maxBytes, errWrongType when the key holds no string.
func capped(get *redis.StringCmd, maxBytes int) ([]byte, error) {
	data, err := get.Bytes()
	switch {
	case isWrongType(err):
		return nil, errWrongType
	case err != nil:
		return nil, err
	case len(data) == 0:
		return nil, errNotFound
	case len(data) > maxBytes:
		return nil, fmt.Errorf("over %d bytes: %w", maxBytes, errTooLarge)
	}
	return data, nil
}

// errWrongType means the key holds a hash, list or other non-string: not
// something connect-redis wrote, so an invalid session, not an outage.
var errWrongType = errors.New("key holds no string value")

func isWrongType(err error) bool { return err != nil && redis.HasErrorPrefix(err, "WRONGTYPE") }

// touch extends the key's TTL like connect-redis's touch (EXPIRE, the JSON
// untouched). EXPIRE on a missing key does nothing, so a destroyed session
// cannot come back.
func (s *store) touch(ctx context.Context, sid string, ttl time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.rdb.Expire(ctx, s.prefix+sid, ttl).Err(); err != nil {
		return fmt.Errorf("touch session %s: %w", shortHash(sid), err)
	}
	return nil
}

func (s *store) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ping redis: %w", err)
	}
	return nil
}
