package authz

import (
	"context"
	"encoding/json"
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
	// storeTTL is connect-redis's ttl: what a late save of a session
	// without maxAge gives its key (see endAgain).
	storeTTL time.Duration
	// onEndAgain is told how each endAgain went (nil: ended).
	onEndAgain func(error)
	// cluster: the topology is a cluster, where a session's key and its
	// marker may be on two masters, so writes that must land in order
	// take a round trip each.
	cluster bool
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
	_, _ = pipe.Exec(ctx) // each command's own error is read below
	// Name the key that failed: on a cluster the marker may be on another
	// master than the session (see breakers).
	if err := readErr(get, ttl); err != nil {
		return nil, 0, fmt.Errorf("load session %s: %w", shortHash(sid), &keyError{key: key, err: err})
	}
	if err := readErr(revoked); err != nil {
		return nil, 0, fmt.Errorf("load session %s: %w", shortHash(sid), &keyError{key: s.revokedKey(sid), err: err})
	}
	data, err := capped(get, s.maxBytes)
	if revoked.Val() > 0 {
		if d := ttl.Val(); d != -2 && !errors.Is(err, errNotFound) {
			// The key is back after its logout: an app saved it late.
			// Its own deadline: the read may have used most of ctx's.
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
			err := s.endAgain(ctx, sid, d, data)
			cancel()
			if s.onEndAgain != nil {
				s.onEndAgain(err) // refused either way: the answer stays "revoked"
			}
		}
		return nil, 0, errRevoked
	}
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

// endAgain ends a session found together with its revocation marker: an
// Express request in flight during the logout saved it back. authz refuses
// it already, but apps reading the session themselves would not, and the
// key's TTL, reset by the save and slid by later touches, could outlive the
// marker, whose TTL was fixed at logout. So the marker is first made to
// last at least as long as the key could (its remaining TTL, the cookie's
// maxAge or the store TTL a further late save would give it; forever for
// a key without TTL), then the key is deleted, as the logout did.
//
// Marker and key are in different hash slots on a cluster, so no script
// can do both atomically; none is needed. A marked id is dead for good
// (session ids are never reused), so deleting its key is right whenever a
// marker was seen, even if the marker expired since; and extending the
// marker before the DEL (in order: one pipeline on one connection, two
// round trips on a cluster, as revoke does) means no save after the DEL can
// outlive it. The extension only ever lengthens the marker (lengthenScript,
// or SET NX then PERSIST): two instances doing this at once agree. The DEL
// does not depend on it: if the extension fails, the key is still better
// gone (the error is still reported).
func (s *store) endAgain(ctx context.Context, sid string, pttl time.Duration, data []byte) error {
	var maxAge time.Duration
	if root, err := parseJSON(data); err == nil {
		if c, ok := root["cookie"].(map[string]any); ok {
			if n, ok := c["originalMaxAge"].(json.Number); ok {
				if ms, err := n.Int64(); err == nil && ms > 0 {
					maxAge = time.Duration(ms) * time.Millisecond
				}
			}
		}
	}
	marker := s.revokedKey(sid)
	pipe := s.rdb.Pipeline()
	var lengthen []redis.Cmder
	if pttl == -1 {
		lengthen = append(lengthen, pipe.SetNX(ctx, marker, "1", 0), pipe.Persist(ctx, marker))
	} else {
		// A whole second more than the key: PEXPIRE's clock and the
		// key's are the same, but the key may be saved again right now.
		ttl := max(pttl, maxAge, s.storeTTL) + time.Second
		lengthen = append(lengthen, pipe.Eval(ctx, lengthenScript, []string{marker}, ttl.Milliseconds()))
	}
	if s.cluster {
		// The DEL goes on even if lengthening failed: the key of a
		// marked id is better gone in any case.
		_, _ = pipe.Exec(ctx)
		pipe = s.rdb.Pipeline()
	}
	del := pipe.Del(ctx, s.prefix+sid)
	_, _ = pipe.Exec(ctx) // each command's own error is read below
	if err := del.Err(); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	for _, c := range lengthen {
		if err := c.Err(); err != nil {
			return fmt.Errorf("extend marker (the key is deleted): %w", err)
		}
	}
	return nil
}

// lengthenScript sets the marker KEYS[1] to expire in ARGV[1] ms unless it
// already lasts longer (or forever), creating it if it expired: PEXPIRE GT
// with SET NX, which Redis 6 lacks. One key, so any cluster node that owns
// it runs it.
const lengthenScript = `local t = redis.call('PTTL', KEYS[1])
if t == -2 then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
elseif t >= 0 and t < tonumber(ARGV[1]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return 1`

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

// readErr returns the error of the first of a pipeline's reads that failed
// other than with WRONGTYPE (a key holding no string, which callers skip
// like a missing one). Exec reports only the first failed command: a
// WRONGTYPE there can hide a later command's network error, and a read
// taken for "nothing there" would skip a session (a user-wide logout
// reporting success with sessions left).
func readErr(cmds ...redis.Cmder) error {
	for _, c := range cmds {
		if err := c.Err(); err != nil && !isWrongType(err) && !errors.Is(err, redis.Nil) {
			return err
		}
	}
	return nil
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
