// Command whoami is the demo app behind authz: it shows the identity headers
// Nginx passed on, as JSON for curl and as a small page for browsers.
//
// It also serves a stand-in login page, FOR THE DEMO ONLY: POST /login signs
// anyone in under whatever name they type, with no password, by writing a
// session to Redis the way connect-redis does and setting the signed
// connect.sid cookie the way express-session does. The real login service,
// an Express app with express-session, connect-redis and passport, arrives
// in examples/express-login. Signing out is authz's: Nginx routes
// POST /logout to it.
//
// Usage:
//
//	whoami --listen 127.0.0.1:8081 --redis-url redis://127.0.0.1:6379/0 --session-secret SECRET
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/authz/authz/authz"
	"github.com/redis/go-redis/v9"
)

// sessionMaxAge is the cookie's maxAge and the Redis key's TTL, as
// express-session and connect-redis tie them together.
const sessionMaxAge = 24 * time.Hour

// identityHeaders are the headers the shipped Nginx config passes on from
// authz (nginx/authz/proxy.conf).
var identityHeaders = []string{"X-Auth-User", "X-Auth-Email", "X-Auth-Roles", "X-Auth-Name"}

func main() {
	listen := flag.String("listen", "127.0.0.1:8081", "address to serve on")
	redisURL := flag.String("redis-url", "redis://127.0.0.1:6379/0", "Redis that authz reads sessions from")
	secret := flag.String("session-secret", os.Getenv("SESSION_SECRET"), "express-session secret, the one authz verifies with (default $SESSION_SECRET)")
	flag.Parse()
	if err := run(*listen, *redisURL, *secret); err != nil {
		fmt.Fprintln(os.Stderr, "whoami:", err)
		os.Exit(1)
	}
}

func run(listen, redisURL, secret string) error {
	if secret == "" {
		return errors.New("--session-secret is required")
	}
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		return fmt.Errorf("--redis-url: %w", err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()

	s := &server{rdb: rdb, secret: secret}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", s.loginForm)
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("/", s.whoami)
	srv := &http.Server{
		Addr:              listen,
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	slog.Info("whoami serving", "listen", listen)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

type server struct {
	rdb    *redis.Client
	secret string
}

// whoami answers every path Nginx protects with what it knows of the caller.
func (s *server) whoami(w http.ResponseWriter, r *http.Request) {
	id := struct {
		Method  string            `json:"method"`
		URI     string            `json:"uri"`
		Headers map[string]string `json:"headers"`
	}{Method: r.Method, URI: r.RequestURI, Headers: map[string]string{}}
	for _, h := range identityHeaders {
		if v := r.Header.Get(h); v != "" {
			id.Headers[h] = v
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	if !strings.Contains(r.Header.Get("Accept"), "text/html") {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(id)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	whoamiPage.Execute(w, id)
}

var whoamiPage = template.Must(template.New("whoami").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>whoami</title>
<style>body{font-family:sans-serif;margin:2em}td,th{padding:.2em 1em;text-align:left}</style>
</head><body>
<h1>whoami</h1>
<p>{{.Method}} <code>{{.URI}}</code></p>
{{with .Headers}}
<p>Nginx let this request through and passed on what authz said about you:</p>
<table>{{range $name, $value := .}}<tr><th>{{$name}}</th><td>{{$value}}</td></tr>{{end}}</table>
{{else}}
<p>No identity headers: this request did not come through Nginx and authz.</p>
{{end}}
<p><a href="/">/</a> · <a href="/admin/">/admin/</a> (admin role only) · <a href="/login">sign in as someone else</a></p>
<form method="post" action="/logout"><button>Sign out</button> (authz ends the session)</form>
</body></html>
`))

var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Sign in (demo)</title>
<style>body{font-family:sans-serif;margin:2em}</style>
</head><body>
<h1>Sign in</h1>
<p><strong>Demo only:</strong> any name signs in, no password asked.</p>
{{with .Error}}<p style="color:#b00">{{.}}</p>{{end}}
<form method="post" action="/login">
<input type="hidden" name="rd" value="{{.RD}}">
<p><label>Name <input name="user" value="{{.User}}" autofocus required maxlength="64"></label></p>
<p><label><input type="checkbox" name="admin"> give me the admin role (for /admin/)</label></p>
<p><button>Sign in</button></p>
</form>
</body></html>
`))

type loginData struct{ RD, User, Error string }

func (s *server) loginForm(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	loginPage.Execute(w, loginData{RD: r.FormValue("rd")})
}

// login creates the session an Express app with passport would create after
// a successful login, and sends the browser back where it was going.
func (s *server) login(w http.ResponseWriter, r *http.Request) {
	user := strings.TrimSpace(r.PostFormValue("user"))
	rd := r.PostFormValue("rd")
	if !validUser(user) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusBadRequest)
		loginPage.Execute(w, loginData{RD: rd, User: user,
			Error: "A name is 1 to 64 letters, digits, '.', '_', '@' or '-'."})
		return
	}
	roles := []string{"user"}
	if r.PostFormValue("admin") != "" {
		roles = append(roles, "admin")
	}
	sid, err := newSID()
	if err != nil {
		http.Error(w, "cannot make a session id", http.StatusInternalServerError)
		return
	}
	data, err := sessionJSON(user, roles, time.Now())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if err := s.rdb.Set(r.Context(), "sess:"+sid, data, sessionMaxAge).Err(); err != nil {
		slog.Error("store session", "err", err)
		http.Error(w, "session store unavailable", http.StatusServiceUnavailable)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name:     "connect.sid",
		Value:    authz.Sign(sid, s.secret),
		Path:     "/",
		Expires:  time.Now().Add(sessionMaxAge),
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	})
	if !localPath(rd) {
		rd = "/"
	}
	slog.Info("signed in", "user", user, "roles", roles)
	http.Redirect(w, r, rd, http.StatusSeeOther)
}

func validUser(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '.', c == '_', c == '@', c == '-':
		default:
			return false
		}
	}
	return true
}

// localPath reports whether p stays on this site: a path, not "//host" or
// "/\host" (browsers read both as another host), and no whitespace or
// control characters, which browsers strip from URLs ("/\t/host" is
// "//host" to them).
func localPath(p string) bool {
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.HasPrefix(p, `/\`) {
		return false
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// newSID makes a session id like uid-safe, express-session's generator:
// 24 random bytes, base64url, 32 characters.
func newSID() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// sessionJSON is the session as connect-redis stores it: express-session's
// cookie, and passport's serialized user.
func sessionJSON(user string, roles []string, now time.Time) ([]byte, error) {
	type cookie struct {
		OriginalMaxAge int64  `json:"originalMaxAge"`
		Expires        string `json:"expires"`
		HTTPOnly       bool   `json:"httpOnly"`
		Path           string `json:"path"`
		SameSite       string `json:"sameSite"`
	}
	type passportUser struct {
		ID    string   `json:"id"`
		Email string   `json:"email"`
		Roles []string `json:"roles"`
	}
	var sess struct {
		Cookie   cookie `json:"cookie"`
		Passport struct {
			User passportUser `json:"user"`
		} `json:"passport"`
	}
	sess.Cookie = cookie{
		OriginalMaxAge: sessionMaxAge.Milliseconds(),
		// Date's toJSON, as express-session writes it.
		Expires:  now.Add(sessionMaxAge).UTC().Format("2006-01-02T15:04:05.000Z"),
		HTTPOnly: true,
		Path:     "/",
		SameSite: "lax",
	}
	sess.Passport.User = passportUser{ID: user, Email: user + "@example.com", Roles: roles}
	return json.Marshal(sess)
}
