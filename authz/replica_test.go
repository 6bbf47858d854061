package authz

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/authz/authz/internal/testenv"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRevokeWaitsForReplica: with RevokeWaitReplicas, a logout is on the
// replica (the marker and the DEL) when RevokeSession returns, so a
// failover right after it cannot undo it; with the replica frozen, it
// still returns, within the timeout, and warns.
func TestRevokeWaitsForReplica(t *testing.T) {
	master := testenv.StartRedisArgs(t, "--repl-diskless-sync-delay", "0")
	_, port, _ := net.SplitHostPort(master.Addr)
	replica := testenv.StartRedisArgs(t, "--replicaof", "127.0.0.1", port)
	rdb := redis.NewClient(&redis.Options{Addr: master.Addr, MaxRetries: 1, ContextTimeoutEnabled: true})
	defer rdb.Close()
	ctx := context.Background()
	testenv.WaitFor(t, 10*time.Second, "the replica to sync", func() bool {
		return rdb.Do(ctx, "WAIT", 1, 10).Val() == int64(1)
	})
	var logs syncBuffer
	// The replica that answers gets a timeout no loaded machine runs out
	// of (WAIT waits half of it); the frozen one a short one, to bound the
	// logout's wait.
	const timeout = 400 * time.Millisecond
	verifier := func(timeout time.Duration) *Verifier {
		v, err := New(Config{Secrets: []string{testSecret}, RedisTimeout: timeout, RevokeWaitReplicas: 1},
			rdb, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	rc := replica.Client()
	for i, sid := range []string{"replicatedreplicatedreplicated01", "replicatedreplicatedreplicated02"} {
		rdb.Set(ctx, "sess:"+sid, aliceJSON, time.Hour)
		frozen := i == 1
		v := verifier(10 * time.Second)
		if frozen {
			v = verifier(timeout)
		}
		if frozen {
			replica.Signal(syscall.SIGSTOP)
		}
		start := time.Now()
		if found, err := v.RevokeSession(ctx, "", sid); err != nil || !found {
			t.Fatalf("RevokeSession = %v, %v", found, err)
		}
		took := time.Since(start)
		if frozen {
			if took > 2*timeout {
				t.Errorf("with the replica frozen the logout took %v; want at most about %v", took, timeout/2)
			}
			if !strings.Contains(logs.String(), "not yet confirmed by a replica") {
				t.Errorf("no warning that the replica did not confirm the logout:\n%s", logs.String())
			}
			continue
		}
		// No waiting here: WAIT already did.
		if rc.Exists(ctx, "authz:revoked:sess:"+sid).Val() != 1 || rc.Exists(ctx, "sess:"+sid).Val() != 0 {
			t.Errorf("RevokeSession returned before the replica had the marker and the DEL")
		}
		if strings.Contains(logs.String(), "not yet confirmed") {
			t.Errorf("warned although the replica confirmed:\n%s", logs.String())
		}
	}
}
