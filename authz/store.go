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
// when the key has none). GET, PTTL and the revocation check go in one round
// trip.
func (s *store) load(ctx context.Context, sid string) ([]byte, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	key := s.prefix + sid
	pipe := s.rdb.Pipeline()
	get := pipe.Get(ctx, key)
	ttl := pipe.PTTL(ctx, key)
	revoked := pipe.Exists(ctx, s.revokedKey(sid))
	_, err := pipe.Exec(ctx)
	if errors.Is(err, redis.Nil) {
		return nil, 0, errNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("load session %s: %w", shortHash(sid), err)
	}
	if revoked.Val() > 0 {
		return nil, 0, errRevoked
	}
	data, _ := get.Bytes()
	if len(data) > s.maxBytes {
		return nil, 0, fmt.Errorf("load session %s: %d bytes: %w", shortHash(sid), len(data), errTooLarge)
	}
	d := ttl.Val()
	if d == -2 {
		// Expired between GET and PTTL.
		return nil, 0, errNotFound
	}
	return data, d, nil
}

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
