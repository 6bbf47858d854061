package e2e

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/authz/authz/internal/testenv"
)

// TestLateSaveAfterLogoutEndsForEveryone: an Express request that loaded
// the session before a logout saves it back after (reproduced here by
// writing back, byte for byte, what Express stored, with a TTL past the
// marker's). node-reader, which reads the session itself, accepted the
// revived session; authz refused it only while the marker lived. Once authz
// sees the session next to its marker it deletes it again and makes the
// marker last as long as the key could, so node-reader sees it ended too.
func TestLateSaveAfterLogoutEndsForEveryone(t *testing.T) {
	t.Parallel()
	s := newNodeSite(t, testenv.SessionSecret)
	ctx := context.Background()
	cookie := s.signIn("alice")
	sid := sidOf(t, cookie)
	if st, _ := s.readerUser(cookie); st != 200 || s.get("/", cookie).status != 200 {
		t.Fatalf("before logout: node-reader %d, nginx %d; want 200s", st, s.get("/", cookie).status)
	}
	stored, err := s.rdb.Get(ctx, "sess:"+sid).Result()
	if err != nil {
		t.Fatal(err)
	}
	if r := send(t, "POST", s.nginx.URL("/logout"), cookie, nil); r.status != http.StatusSeeOther {
		t.Fatalf("POST /logout: %d, want 303", r.status)
	}
	testenv.WaitFor(t, 2*time.Second, "authz to deny the logged-out session", func() bool {
		return s.get("/", cookie).status == http.StatusFound
	})

	const late = 30 * 24 * time.Hour
	if err := s.rdb.Set(ctx, "sess:"+sid, stored, late).Err(); err != nil {
		t.Fatal(err)
	}
	// Nothing but authz looks at the marker: the next verify that reads
	// Redis (after authz's 1 s negative cache, unless tracking reported the
	// write) deletes the key again.
	testenv.WaitFor(t, 5*time.Second, "authz to end the revived session again", func() bool {
		if st := s.get("/", cookie).status; st != http.StatusFound {
			t.Fatalf("the revived session through nginx: %d, want 302", st)
		}
		return s.rdb.Exists(ctx, "sess:"+sid).Val() == 0
	})
	if st, _ := s.readerUser(cookie); st != http.StatusUnauthorized {
		t.Errorf("node-reader with the revived session: %d, want 401", st)
	}
	if d := s.rdb.PTTL(ctx, "authz:revoked:sess:"+sid).Val(); d < late-time.Minute {
		t.Errorf("the marker lives %v, less than the revived key could (%v)", d, late)
	}
	if m := metric(t, s.authz, "authz_sessions_ended_again_total"); m < 1 {
		t.Errorf("authz_sessions_ended_again_total = %v; want at least 1", m)
	}
}

// TestLateSaveEndedWithoutAnyVerify: the late save again, but nobody asks
// authz about the session afterwards, only apps that read it themselves
// (an attacker looping on the login app's own routes). authz, having heard
// the logout, reads the session once and again whenever Redis reports its
// key written, so it still ends the revived session for node-reader.
func TestLateSaveEndedWithoutAnyVerify(t *testing.T) {
	t.Parallel()
	s := newNodeSite(t, testenv.SessionSecret)
	ctx := context.Background()
	cookie := s.signIn("alice")
	sid := sidOf(t, cookie)
	if st, _ := s.readerUser(cookie); st != 200 {
		t.Fatalf("before logout: node-reader %d, want 200", st)
	}
	stored, err := s.rdb.Get(ctx, "sess:"+sid).Result()
	if err != nil {
		t.Fatal(err)
	}
	if r := send(t, "POST", s.nginx.URL("/logout"), cookie, nil); r.status != http.StatusSeeOther {
		t.Fatalf("POST /logout: %d, want 303", r.status)
	}
	testenv.WaitFor(t, 2*time.Second, "the logout's DEL", func() bool {
		return s.rdb.Exists(ctx, "sess:"+sid).Val() == 0
	})
	ended := metric(t, s.authz, "authz_sessions_ended_again_total")
	// Two late saves, the second after authz has read the key back once:
	// each is ended again with no request to authz in between.
	for i := range 2 {
		if err := s.rdb.Set(ctx, "sess:"+sid, stored, time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
		testenv.WaitFor(t, 3*time.Second, "authz to end late save "+strconv.Itoa(i+1)+" with nobody asking it", func() bool {
			return s.rdb.Exists(ctx, "sess:"+sid).Val() == 0
		})
	}
	if st, _ := s.readerUser(cookie); st != http.StatusUnauthorized {
		t.Errorf("node-reader with the revived session: %d, want 401", st)
	}
	if m := metric(t, s.authz, "authz_sessions_ended_again_total"); m < ended+2 {
		t.Errorf("authz_sessions_ended_again_total went from %v to %v; want two more", ended, m)
	}
}
