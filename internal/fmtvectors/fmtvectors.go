// Package fmtvectors reads sessionfmt/testdata/vectors.json: cookies of
// client-sessions, cookie-session and @fastify/session that the real npm
// packages made (sessionfmt/testdata/gen/gen.js), with the outcome each
// must have and what the package itself made of it. sessionfmt's tests
// hold the codecs to them; authz's and signoff's send them through the
// read and write paths.
package fmtvectors

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/authz/authz/internal/testenv"
)

// Vectors is the whole file.
type Vectors struct {
	NowMS          int64            `json:"now_ms"`   // the clock the vectors were made at, in ms
	Versions       map[string]any   `json:"versions"` // node's and the packages' versions
	ClientSessions []ClientSessions `json:"client_sessions"`
	CookieSession  []CookieSession  `json:"cookie_session"`
	FastifySession []FastifySession `json:"fastify_session"`
}

// ClientSessions is a client-sessions cookie, the options it was made
// with (keys in hex) and what the package's middleware decoded.
type ClientSessions struct {
	Name   string `json:"name"`
	Config struct {
		CookieName          string `json:"cookieName"`
		Secret              string `json:"secret"`
		EncryptionKey       string `json:"encryptionKey"`
		SignatureKey        string `json:"signatureKey"`
		EncryptionAlgorithm string `json:"encryptionAlgorithm"`
		SignatureAlgorithm  string `json:"signatureAlgorithm"`
	} `json:"config"`
	Cookie     string          `json:"cookie"`
	Want       string          `json:"want"`    // the outcome class sessionfmt must give
	Content    json.RawMessage `json:"content"` // the session it carries, where Want is "ok"
	GoStricter bool            `json:"go_stricter"`
	Node       struct {
		Session  json.RawMessage `json:"session"`
		Error    string          `json:"error"`
		Decoded  bool            `json:"decoded"`
		Reissued string          `json:"reissued"`
	} `json:"node"`
}

// CookieSession is a cookie-session Cookie header (value and .sig), the
// keygrip keys that signed it, and what the package's middleware read.
type CookieSession struct {
	Name   string `json:"name"`
	Config struct {
		Name string   `json:"name"`
		Keys []string `json:"keys"`
		Hash string   `json:"hash"`
	} `json:"config"`
	Header     string          `json:"header"`
	Value      string          `json:"value"`
	Sig        string          `json:"sig"`
	Want       string          `json:"want"`
	Content    json.RawMessage `json:"content"`
	GoStricter bool            `json:"go_stricter"`
	Node       struct {
		Session json.RawMessage `json:"session"`
	} `json:"node"`
}

// FastifySession is a @fastify/session Cookie header, the options that
// signed it, the session id it names and what the plugin made of it.
type FastifySession struct {
	Name   string `json:"name"`
	Config struct {
		CookieName   string   `json:"cookieName"`
		Secrets      []string `json:"secrets"`
		Algorithm    string   `json:"algorithm"`
		CookiePrefix string   `json:"cookiePrefix"`
	} `json:"config"`
	Header     string `json:"header"`
	Want       string `json:"want"`
	SID        string `json:"sid"`
	GoStricter bool   `json:"go_stricter"`
	Node       struct {
		Username  *string `json:"username"`
		SessionID string  `json:"sessionId"`
	} `json:"node"`
}

// Committed is the repository's sessionfmt/testdata/vectors.json.
func Committed(t testing.TB) *Vectors {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "sessionfmt", "testdata", "vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	return Parse(t, data)
}

// Parse reads vectors as gen.js writes them; every format must have some.
func Parse(t testing.TB, data []byte) *Vectors {
	t.Helper()
	var v Vectors
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("vectors: %v", err)
	}
	if len(v.ClientSessions) == 0 || len(v.CookieSession) == 0 || len(v.FastifySession) == 0 {
		t.Fatal("vectors: a format has no vectors")
	}
	return &v
}
