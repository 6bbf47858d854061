// Package keyscan walks the Redis keys under a prefix, on every master of
// a cluster, reading their values and TTLs in batches: the pass over the
// keyspace a user-wide logout (package signoff) and a token listing
// (package tokens) make. It never runs on the verify path.
package keyscan

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Batch is how many keys one SCAN step asks for; each step's values are
// read in one pipelined round trip.
const Batch = 1000

// Masters is what a walk needs of a cluster client: every master (each
// holds only its own slots' keys). authz.ClusterNodes, and
// *redis.ClusterClient, are ones.
type Masters interface {
	ForEachMaster(ctx context.Context, fn func(ctx context.Context, client *redis.Client) error) error
}

// Walker walks keys through one client.
type Walker struct {
	// Client is the Redis client; Cluster, when set (a cluster topology),
	// is the same client's masters, each walked in turn.
	Client  redis.UniversalClient
	Cluster Masters
	// Timeout bounds each step (a SCAN, then its values' read).
	Timeout time.Duration
	// MaxBytes caps a value read: a longer one comes in truncated to
	// MaxBytes+1 bytes (see GetCapped), for the step to skip.
	MaxBytes int
}

// Found is a key a walk read: its name after the prefix, value and TTL
// (negative when the key has none).
type Found struct {
	ID   string
	Data []byte
	TTL  time.Duration
}

// Walk calls step with every batch of the keys under prefix that still
// exist, their values and TTLs read in one round trip per SCAN step (never
// KEYS, so Redis stays responsive). On a cluster it walks every master, in
// parallel, one step running at a time. step's ctx bounds its batch.
func (w *Walker) Walk(ctx context.Context, prefix string, step func(ctx context.Context, batch []Found) error) error {
	var mu sync.Mutex
	each := func(ctx context.Context, c redis.UniversalClient) error {
		var cursor uint64
		for {
			err := func() error {
				ctx, cancel := context.WithTimeout(ctx, w.Timeout)
				defer cancel()
				keys, next, err := c.Scan(ctx, cursor, GlobEscape(prefix)+"*", Batch).Result()
				if err != nil {
					return fmt.Errorf("scan %s*: %w", prefix, err)
				}
				cursor = next
				if len(keys) == 0 {
					return nil
				}
				pipe := c.Pipeline()
				gets := make([]*redis.StringCmd, len(keys))
				ttls := make([]*redis.DurationCmd, len(keys))
				for i, k := range keys {
					// Never more than the cap: a huge value is skipped
					// like any value over it, not downloaded.
					gets[i] = GetCapped(ctx, pipe, k, w.MaxBytes)
					ttls[i] = pipe.PTTL(ctx, k)
				}
				cmds, _ := pipe.Exec(ctx)
				if err := ReadErr(cmds...); err != nil {
					return fmt.Errorf("read %s*: %w", prefix, err)
				}
				batch := make([]Found, 0, len(keys))
				for i, k := range keys {
					if data, err := gets[i].Bytes(); err == nil && len(data) > 0 && ttls[i].Val() != -2 { // else gone since the SCAN, or no string
						batch = append(batch, Found{ID: k[len(prefix):], Data: data, TTL: ttls[i].Val()})
					}
				}
				mu.Lock()
				defer mu.Unlock()
				return step(ctx, batch)
			}()
			if err != nil || cursor == 0 {
				return err
			}
		}
	}
	if w.Cluster != nil {
		return w.Cluster.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return each(ctx, c) })
	}
	return each(ctx, w.Client)
}

// GetCapped queues a read of key's value that moves at most maxBytes+1
// bytes from Redis: a huge value must not cross the network (and time the
// call out, an outage) before the size cap refuses it. GETRANGE answers ""
// for a missing key. authz's read path reads the same way.
func GetCapped(ctx context.Context, p redis.Pipeliner, key string, maxBytes int) *redis.StringCmd {
	return p.GetRange(ctx, key, 0, int64(maxBytes))
}

// ReadErr returns the error of the first of a pipeline's reads that failed
// other than with WRONGTYPE (a key holding no string, which callers skip
// like a missing one). Exec reports only the first failed command: a
// WRONGTYPE there can hide a later command's network error, and a read
// taken for "nothing there" would skip a session (a user-wide logout
// reporting success with sessions left).
func ReadErr(cmds ...redis.Cmder) error {
	for _, c := range cmds {
		if err := c.Err(); err != nil && !redis.HasErrorPrefix(err, "WRONGTYPE") && !errors.Is(err, redis.Nil) {
			return err
		}
	}
	return nil
}

// GlobEscape quotes the glob characters SCAN MATCH would interpret in a
// key prefix, so "sessions:[acme]:" matches itself and nothing else.
func GlobEscape(s string) string {
	if !strings.ContainsAny(s, `*?[]\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
