package sessionfmt

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/authz/authz/internal/testenv"

	"github.com/authz/authz/internal/fmtvectors"
)

// class names a Parse outcome as the vectors do.
func class(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrTooLarge):
		return "too_large"
	case errors.Is(err, ErrMalformed):
		return "malformed"
	case errors.Is(err, ErrBadSignature):
		return "bad_signature"
	case errors.Is(err, ErrExpired):
		return "expired"
	case errors.Is(err, ErrInvalidContent):
		return "invalid_content"
	case errors.Is(err, ErrInvalidSessionID):
		return "invalid_session_id"
	}
	return "unexpected: " + err.Error()
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func csCodec(t testing.TB, v *fmtvectors.ClientSessions) *ClientSessions {
	t.Helper()
	c, err := NewClientSessions(ClientSessionsOptions{
		CookieName:          v.Config.CookieName,
		Secret:              v.Config.Secret,
		EncryptionKey:       mustHex(t, v.Config.EncryptionKey),
		SignatureKey:        mustHex(t, v.Config.SignatureKey),
		EncryptionAlgorithm: v.Config.EncryptionAlgorithm,
		SignatureAlgorithm:  v.Config.SignatureAlgorithm,
	})
	if err != nil {
		t.Fatalf("%s: %v", v.Name, err)
	}
	return c
}

func ckCodec(t testing.TB, v *fmtvectors.CookieSession) *CookieSession {
	t.Helper()
	c, err := NewCookieSession(CookieSessionOptions{Name: v.Config.Name, Keys: v.Config.Keys, Hash: v.Config.Hash})
	if err != nil {
		t.Fatalf("%s: %v", v.Name, err)
	}
	return c
}

func fsCodec(t testing.TB, v *fmtvectors.FastifySession) *FastifySession {
	t.Helper()
	c, err := NewFastifySession(FastifySessionOptions{
		CookieName: v.Config.CookieName, Secrets: v.Config.Secrets,
		Algorithm: v.Config.Algorithm, CookiePrefix: v.Config.CookiePrefix,
	})
	if err != nil {
		t.Fatalf("%s: %v", v.Name, err)
	}
	return c
}

func jsonEqual(t testing.TB, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("json %q: %v", a, err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("json %q: %v", b, err)
	}
	return reflect.DeepEqual(x, y)
}

func isNull(b json.RawMessage) bool {
	b = bytes.TrimSpace(b)
	return len(b) == 0 || string(b) == "null"
}

// checkVectors holds sessionfmt to every vector: the outcome it wants, and
// agreement with what the Node package itself decided, except where the
// vector marks sessionfmt as deliberately stricter.
func checkVectors(t *testing.T, v *fmtvectors.Vectors) {
	now := time.UnixMilli(v.NowMS)
	for _, tc := range v.ClientSessions {
		t.Run("client-sessions/"+tc.Name, func(t *testing.T) {
			c := csCodec(t, &tc)
			got, ok := c.Lookup([]string{"other=1; " + c.CookieName() + "=" + tc.Cookie})
			if !ok || got != tc.Cookie {
				t.Fatalf("Lookup = %q, %v", got, ok)
			}
			s, err := c.Parse(nil, tc.Cookie, now)
			if class(err) != tc.Want {
				t.Fatalf("Parse: %v, want %s", err, tc.Want)
			}
			nodeAccepted := tc.Node.Decoded && tc.Node.Error == ""
			switch {
			case tc.Want == "ok":
				if !nodeAccepted {
					t.Fatalf("sessionfmt accepts a cookie client-sessions refused")
				}
				if !jsonEqual(t, s.Content, tc.Content) {
					t.Fatalf("content %s, want %s", s.Content, tc.Content)
				}
			case tc.GoStricter:
				if !nodeAccepted {
					t.Fatalf("marked stricter, but client-sessions refuses it too")
				}
			case tc.Want == "expired":
				// util.decode takes it; the middleware resets it.
				if !isNull(tc.Node.Session) {
					t.Fatalf("the middleware kept an expired session: %s", tc.Node.Session)
				}
			default:
				if !isNull(tc.Node.Session) {
					t.Fatalf("client-sessions accepted what sessionfmt refuses: %s", tc.Node.Session)
				}
			}
			// A session near its end is slid forward by the middleware:
			// the re-issued cookie reads too, with a later createdAt.
			if tc.Want == "ok" && tc.Node.Reissued != "" {
				r, err := c.Parse(nil, tc.Node.Reissued, now)
				if err != nil {
					t.Fatalf("re-issued cookie: %v", err)
				}
				if !r.CreatedAt.After(s.CreatedAt) || !r.ExpiresAt().After(s.ExpiresAt()) {
					t.Fatalf("re-issued createdAt %v, expires %v; original %v, %v", r.CreatedAt, r.ExpiresAt(), s.CreatedAt, s.ExpiresAt())
				}
			}
		})
	}
	for _, tc := range v.CookieSession {
		t.Run("cookie-session/"+tc.Name, func(t *testing.T) {
			c := ckCodec(t, &tc)
			value, sig, ok := c.Lookup([]string{tc.Header})
			if !ok || value != tc.Value || sig != tc.Sig {
				t.Fatalf("Lookup = %q, %q, %v; want %q, %q", value, sig, ok, tc.Value, tc.Sig)
			}
			content, err := c.Parse(nil, value, sig)
			if class(err) != tc.Want {
				t.Fatalf("Parse: %v, want %s", err, tc.Want)
			}
			switch {
			case tc.Want == "ok":
				if !jsonEqual(t, content, tc.Content) || !jsonEqual(t, tc.Node.Session, tc.Content) {
					t.Fatalf("content %s, node %s, want %s", content, tc.Node.Session, tc.Content)
				}
			case tc.GoStricter:
				if isNull(tc.Node.Session) {
					t.Fatalf("marked stricter, but cookie-session refuses it too")
				}
			default:
				if !isNull(tc.Node.Session) {
					t.Fatalf("cookie-session accepted what sessionfmt refuses: %s", tc.Node.Session)
				}
			}
		})
	}
	for _, tc := range v.FastifySession {
		t.Run("fastify-session/"+tc.Name, func(t *testing.T) {
			c := fsCodec(t, &tc)
			value, ok := c.Lookup([]string{tc.Header})
			if !ok {
				t.Fatal("Lookup found no cookie")
			}
			sid, err := c.Parse(value)
			if class(err) != tc.Want {
				t.Fatalf("Parse: %v, want %s", err, tc.Want)
			}
			switch {
			case tc.Want == "ok":
				if sid != tc.SID || tc.Node.SessionID != sid || tc.Node.Username == nil {
					t.Fatalf("sid %q, want %q; node %+v", sid, tc.SID, tc.Node)
				}
			case tc.GoStricter:
				// Node unsigned it but found no session for the odd id;
				// nothing to compare.
			default:
				if tc.Node.Username != nil {
					t.Fatalf("@fastify/session found a session for what sessionfmt refuses")
				}
			}
		})
	}
}

// TestVectors checks the committed vectors: no Node needed.
func TestVectors(t *testing.T) {
	checkVectors(t, fmtvectors.Committed(t))
}

// TestVectorsFromNode makes fresh vectors with the real npm packages
// (installed from testdata/gen/package-lock.json as the e2e tests install
// theirs) and checks them: new IVs, ids and timestamps every run, and the
// packages' own verdicts as they are today.
func TestVectorsFromNode(t *testing.T) {
	if testing.Short() {
		t.Skip("runs npm ci and node")
	}
	dir, err := filepath.Abs(filepath.Join("testdata", "gen"))
	if err != nil {
		t.Fatal(err)
	}
	testenv.NpmCI(t, dir)
	cmd := exec.Command("node", "gen.js")
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node gen.js: %v\n%s", err, stderr.Bytes())
	}
	v := fmtvectors.Parse(t, out)
	committed := fmtvectors.Committed(t)
	// Node's own version may differ from the one that made the committed
	// file; the packages' must not.
	delete(v.Versions, "node")
	delete(committed.Versions, "node")
	if !reflect.DeepEqual(v.Versions, committed.Versions) {
		t.Errorf("package versions %v, committed vectors were made with %v: regenerate testdata/vectors.json (node gen.js > ../vectors.json)", v.Versions, committed.Versions)
	}
	if len(v.ClientSessions) != len(committed.ClientSessions) || len(v.CookieSession) != len(committed.CookieSession) || len(v.FastifySession) != len(committed.FastifySession) {
		t.Errorf("gen.js makes other vectors than testdata/vectors.json holds: regenerate it")
	}
	checkVectors(t, v)
}
