package authz

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A huge value under a session or token key is refused as invalid without
// crossing the network: before, the 32 MiB were downloaded whole, the read
// timed out, the answer was 503 and the breaker counted an outage.
func TestHugeValueIsRefusedUnread(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.BreakerFailures = 1
		c.BreakerCooldown = time.Hour
		c.BearerTokens = true
	})
	ctx := context.Background()
	huge := `{"passport":{"user":"h"},"pad":"` + strings.Repeat("x", 32<<20) + `"}`
	_, cookie := f.session(huge, time.Hour)
	tok := TokenMark + strings.Repeat("A", 43)
	var key [tokenKeyLen]byte
	tokenKey(&key, tok)
	if err := f.rdb.Set(ctx, TokenPrefixDefault+string(key[1:]), huge, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	sid, wrongType := f.session(`x`, time.Hour)
	f.rdb.Del(ctx, "sess:"+sid)
	if err := f.rdb.HSet(ctx, "sess:"+sid, "passport", "alice").Err(); err != nil {
		t.Fatal(err)
	}
	_, alice := f.session(aliceJSON, time.Hour)

	before := f.redis.NetOutput()
	for range 3 {
		f.v.InvalidateAll()
		if w := f.verify(cookie, ""); w.Code != 401 {
			t.Fatalf("huge session: %d; want 401", w.Code)
		}
		if w := f.verify("", "", "Authorization", "Bearer "+tok); w.Code != 401 {
			t.Fatalf("huge token: %d; want 401", w.Code)
		}
		if w := f.verify(wrongType, ""); w.Code != 401 {
			t.Fatalf("session key holding a hash: %d; want 401", w.Code)
		}
	}
	if sent := f.redis.NetOutput() - before; sent > 16<<20 {
		t.Errorf("Redis sent %d bytes to refuse them: the values crossed the network", sent)
	}
	for r, want := range map[Reason]float64{ReasonSessionTooLarge: 3, ReasonInvalidToken: 3, ReasonInvalidSession: 3, ReasonStoreUnavailable: 0} {
		if got := testutil.ToFloat64(f.v.metrics.requests[r]); got != want {
			t.Errorf("%s answers = %v; want %v", r, got, want)
		}
	}
	if w := f.verify(alice, ""); w.Code != 200 {
		t.Errorf("another user after them: %d; want 200 (the breaker must not have opened)", w.Code)
	}
	if opens := f.v.breakers.opens(); opens != 0 {
		t.Errorf("the breaker opened %d times", opens)
	}
	// A user-wide logout skips the huge one unread too: signoff's
	// TestUserWalkSkipsAHugeValueUnread.
}
