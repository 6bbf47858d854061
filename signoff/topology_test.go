package signoff

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/internal/testenv"
	"github.com/redis/go-redis/v9"
)

// On a cluster whose Redis cannot lengthen the marker (Redis 6 has no
// PEXPIRE GT; here the commands are taken away), a session saved back after
// its logout is still deleted: before, the failed lengthening returned
// before the DEL, and apps reading the session themselves found it alive.
func TestClusterLateSaveDeletedEvenIfMarkerCannotBeLengthened(t *testing.T) {
	c := testenv.StartClusterArgs(t, "--rename-command", "EVAL", "EVAL_taken_away", "--rename-command", "PEXPIRE", "PEXPIRE_taken_away")
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	v, s, reg := build(t, authz.Config{Secrets: []string{testSecret}, RedisTimeout: time.Second, StoreTTL: time.Hour,
		Topology: authz.TopologyCluster, Cluster: rdb}, rdb, io.Discard)
	ctx := context.Background()
	sid := fmt.Sprintf("cluster%025d", 1)
	if err := rdb.Set(ctx, "sess:"+sid, aliceJSON, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeSession(ctx, "", sid); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(ctx, "sess:"+sid, aliceJSON, 30*24*time.Hour).Err(); err != nil { // the late save
		t.Fatal(err)
	}
	v.InvalidateAll()
	req := httptest.NewRequest(http.MethodGet, "/verify", nil)
	req.Header.Set("Cookie", "connect.sid="+authz.Sign(sid, testSecret))
	w := httptest.NewRecorder()
	v.ServeHTTP(w, req)
	if w.Code != 401 {
		t.Fatalf("late-saved session after logout: %d; want 401", w.Code)
	}
	testenv.WaitFor(t, 5*time.Second, "the late-saved key to be deleted", func() bool {
		return rdb.Exists(ctx, "sess:"+sid).Val() == 0
	})
	if got := counter(t, reg, "authz_sessions_ended_again_total", "error"); got != 1 {
		t.Errorf("authz_sessions_ended_again_total{result=error} = %v; want 1 (the marker was not lengthened)", got)
	}
}

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
	signoff := func(timeout time.Duration) *Signoff {
		_, s, _ := build(t, authz.Config{Secrets: []string{testSecret}, RedisTimeout: timeout, RevokeWaitReplicas: 1}, rdb, &logs)
		return s
	}
	rc := replica.Client()
	for i, sid := range []string{"replicatedreplicatedreplicated01", "replicatedreplicatedreplicated02"} {
		rdb.Set(ctx, "sess:"+sid, aliceJSON, time.Hour)
		frozen := i == 1
		s := signoff(10 * time.Second)
		if frozen {
			s = signoff(timeout)
		}
		if frozen {
			replica.Signal(syscall.SIGSTOP)
		}
		start := time.Now()
		if found, err := s.RevokeSession(ctx, "", sid); err != nil || !found {
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
