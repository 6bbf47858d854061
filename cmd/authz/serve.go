package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/frontdoor"
	"github.com/authz/authz/logout"
	"github.com/authz/authz/signoff"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// secretFlags are the cookie secrets, shared by serve and the session tools.
type secretFlags struct {
	secrets []string
	file    string
}

func (f *secretFlags) register(fs *pflag.FlagSet) {
	fs.StringArrayVar(&f.secrets, "session-secret", nil, "the apps' session secret (express-session's and @fastify/session's secret, cookie-session's keys, client-sessions' one secret); repeat to rotate: the first signs, all verify")
	fs.StringVar(&f.file, "session-secret-file", "", "file with one secret per line (first is current), e.g. a Docker or Kubernetes secret")
}

func (f *secretFlags) load() ([]string, error) {
	out := append([]string(nil), f.secrets...)
	if f.file != "" {
		s, err := authz.ReadSecretsFile(f.file)
		if err != nil {
			return nil, fmt.Errorf("--session-secret-file: %w", err)
		}
		out = append(out, s...)
	}
	return out, nil
}

// keyFlags are client-sessions' explicit keys, base64 as apps usually
// keep them (Buffer.from(key, 'base64')).
type keyFlags struct {
	enc, sig, encFile, sigFile string
}

func (f *keyFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.enc, "encryption-key", "", "client-sessions' encryptionKey, base64 (instead of deriving it from the secret)")
	fs.StringVar(&f.sig, "signature-key", "", "client-sessions' signatureKey, base64 (instead of deriving it from the secret)")
	fs.StringVar(&f.encFile, "encryption-key-file", "", "file holding --encryption-key")
	fs.StringVar(&f.sigFile, "signature-key-file", "", "file holding --signature-key")
}

func (f *keyFlags) load() (enc, sig []byte, err error) {
	if enc, err = authz.ReadKey(f.enc, f.encFile); err != nil {
		return nil, nil, fmt.Errorf("--encryption-key: %w", err)
	}
	if sig, err = authz.ReadKey(f.sig, f.sigFile); err != nil {
		return nil, nil, fmt.Errorf("--signature-key: %w", err)
	}
	return enc, sig, nil
}

var errNoSecret = errors.New("no session secret: set --session-secret, --session-secret-file, AUTHZ_SESSION_SECRET or SESSION_SECRET")

type logFlags struct{ level, format string }

func (f *logFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.level, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.format, "log-format", "text", "text or json")
}

func (f *logFlags) logger() (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(f.level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", f.level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch f.format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", f.format)
}

// sessionFlags say where sessions live and how to read them; serve and the
// session tools share them.
type sessionFlags struct {
	redis       redisFlags
	secrets     secretFlags
	format      string
	keys        keyFlags
	revision    string
	log         logFlags
	cfg         authz.Config
	userPaths   []string
	rolePaths   []string
	channel     string
	tenantsFile string
	tenant      string
}

func (f *sessionFlags) register(fs *pflag.FlagSet) {
	f.redis.register(fs)
	f.secrets.register(fs)
	c := &f.cfg
	fs.StringVar(&f.format, "session-format", string(authz.FormatExpressSession), "how the apps keep sessions: express-session, client-sessions, cookie-session or fastify-session (see docs/formats.md)")
	fs.StringVar(&c.CookieName, "cookie-name", "", "session cookie name (the library's name or cookieName option); default: the format's, connect.sid, session_state, session or sessionId")
	f.keys.register(fs)
	fs.StringVar(&c.EncryptionAlgorithm, "encryption-algorithm", "", "client-sessions' encryptionAlgorithm: aes256 (default), aes192 or aes128")
	fs.StringVar(&c.SignatureAlgorithm, "signature-algorithm", "", "the format's MAC: client-sessions' signatureAlgorithm (default sha256), cookie-session's keygrip hash (default sha1), @fastify/cookie's algorithm (default sha256)")
	fs.StringVar(&f.revision, "revision-path", "", "session path of the revision a client-sessions or cookie-session login copies from Redis; a cookie whose revision is not its user's current one is refused")
	fs.StringVar(&c.RevisionPrefix, "revision-prefix", "authz:rev:", "Redis key prefix of users' current revisions (with tenants, then the tenant's name and \":\")")
	fs.StringVar(&c.KeyPrefix, "key-prefix", "sess:", "Redis key prefix (connect-redis's prefix option)")
	fs.StringVar(&c.RevokedPrefix, "revoked-prefix", "authz:revoked:", "Redis key prefix of the markers logouts leave so re-saved sessions stay dead")
	fs.StringVar(&f.channel, "logout-channel", logout.DefaultChannel, "Redis pub/sub channel of logout events")
	fs.DurationVar(&c.StoreTTL, "store-ttl", 86400*time.Second, "TTL of sessions whose cookie has no maxAge (connect-redis's ttl option)")
	fs.StringSliceVar(&f.rolePaths, "roles-path", []string{"passport.user.roles", "user.roles"}, "session paths tried in order for the roles allow_roles checks")
	fs.StringSliceVar(&f.userPaths, "user-path", []string{"passport.user", "user"}, "session paths tried in order for the identity; an object gives its id")
	fs.IntVar(&c.MaxSessionBytes, "max-session-bytes", 1<<20, "largest stored session read from Redis")
	fs.StringVar(&f.tenantsFile, "tenants", "", "tenant file (YAML) mapping hosts to tenants, each with its own key prefix, cookie and secrets; reloaded on SIGHUP (see docs/tenants.md)")
}

// config builds the authz.Config these flags describe.
func (f *sessionFlags) config() (authz.Config, error) {
	c := f.cfg
	var err error
	if c.Format, err = authz.ParseFormat(f.format); err != nil {
		return c, fmt.Errorf("--session-format: %w", err)
	}
	if c.Secrets, err = f.secrets.load(); err != nil {
		return c, err
	}
	if c.EncryptionKey, c.SignatureKey, err = f.keys.load(); err != nil {
		return c, err
	}
	if f.revision != "" {
		if c.RevisionPath, err = authz.ParsePath(f.revision); err != nil {
			return c, fmt.Errorf("--revision-path: %w", err)
		}
	}
	if f.tenantsFile != "" {
		// Tenants may each bring their own secrets; one without fails
		// to load if there is no global one.
		if c.Tenants, err = authz.LoadTenants(f.tenantsFile); err != nil {
			return c, err
		}
	} else if len(c.Secrets) == 0 && (c.EncryptionKey == nil || c.SignatureKey == nil) {
		return c, errNoSecret
	}
	if c.UserPaths, err = parsePaths("--user-path", f.userPaths); err != nil {
		return c, err
	}
	if c.RolesPaths, err = parsePaths("--roles-path", f.rolePaths); err != nil {
		return c, err
	}
	if f.redis.timeout <= 0 {
		return c, errors.New("--redis-timeout must be positive")
	}
	// authz.Config reads 0 as "the default"; on the command line it would
	// be a surprise, so refuse it.
	if c.MaxSessionBytes <= 0 || c.StoreTTL <= 0 {
		return c, errors.New("--max-session-bytes and --store-ttl must be positive")
	}
	c.RedisTimeout = f.redis.timeout
	// The topology is stated, from the flags that chose it; the cluster
	// client itself joins the Config when it is made (connect).
	if c.Topology, err = f.redis.topology(); err != nil {
		return c, err
	}
	c.RevokeWaitReplicas = waitReplicas(c.Topology)
	return c, nil
}

type serveFlags struct {
	sessionFlags
	listen, metricsListen string
	accessTokenPaths      []string
	headers               []string
	shutdownTimeout       time.Duration
	maxRequestHeaderBytes int
	readHeaderTimeout     time.Duration
	writeTimeout          time.Duration
	maxConns              int
	shutdownDelay         time.Duration
	tracking              bool
	trackingMode          string
	stdlibHTTP            bool
	heartbeat             time.Duration
	logoutCfg             signoff.EndpointConfig
}

func newServe() *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Answer Nginx auth_request subrequests",
		Long: "Answer Nginx auth_request subrequests on --listen (/verify, /logout, /healthz, /readyz)\n" +
			"and serve Prometheus metrics on --metrics-listen (/metrics, /healthz, /readyz).\n" +
			"Every flag can also be set as AUTHZ_<FLAG> (e.g. AUTHZ_CACHE_TTL=5s).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serve(cmd.Context(), &f)
		},
	}
	fs := cmd.Flags()
	fs.SortFlags = false
	fs.StringVar(&f.listen, "listen", "127.0.0.1:9091", "address Nginx sends auth subrequests to: host:port, or unix:/path for a Unix socket (mode 0660; a stale socket file is replaced)")
	fs.StringVar(&f.metricsListen, "metrics-listen", "127.0.0.1:9092", "address for /metrics (empty: off)")
	f.sessionFlags.register(fs)
	c := &f.cfg
	fs.IntVar(&c.CacheSize, "cache-size", 100000, "most sessions kept in the local cache")
	fs.DurationVar(&c.CacheTTL, "cache-ttl", 5*time.Second, "how long a session is served from the local cache")
	fs.DurationVar(&c.NegativeCacheTTL, "negative-cache-ttl", time.Second, "how long an unknown or anonymous session is remembered (0: off)")
	fs.DurationVar(&c.TouchInterval, "touch-interval", 60*time.Second, "extend a session's TTL at most this often when it is used (sliding expiry; 0: off)")
	fs.IntVar(&c.BreakerFailures, "redis-breaker-failures", 5, "consecutive Redis failures that open the circuit: requests then get 503 at once instead of after --redis-timeout (0: off)")
	fs.DurationVar(&c.BreakerCooldown, "redis-breaker-cooldown", time.Second, "how long the Redis circuit stays open before requests try Redis again")
	fs.BoolVar(&c.EnforceExpires, "enforce-expires", false, "also reject sessions whose cookie.expires has passed (for stores written without a TTL)")
	fs.BoolVar(&c.BearerTokens, "bearer-tokens", false, "accept Authorization: Bearer <token> from API clients, looked up under --token-prefix (see authz token)")
	fs.StringVar(&c.TokenPrefix, "token-prefix", authz.TokenPrefixDefault, "Redis key prefix of API tokens (each stored as the hex SHA-256 of the token)")
	fs.StringSliceVar(&f.accessTokenPaths, "access-token-path", nil, "session paths tried in order for the access token that locations with access_token= in their verify URL relay to their service, e.g. passport.user.accessToken (none: no relay)")
	fs.StringVar(&c.UserHeader, "user-header", "X-Auth-User", "response header carrying the identity")
	fs.StringVar(&c.HostHeader, "host-header", authz.HostFromForwardedHost, "where the host that picks the tenant is read: x-forwarded-host (nginx/, Caddy, Traefik), x-original-url (ingress-nginx) or host; it must be a header the front proxy sets itself")
	fs.StringArrayVar(&f.headers, "header", nil, "extra identity header from a session path, e.g. X-Auth-Email=passport.user.email (repeatable)")
	fs.IntVar(&c.MaxCookieBytes, "max-cookie-bytes", 4096, "longest session cookie value accepted")
	fs.IntVar(&c.MaxIdentityHeaderBytes, "max-identity-header-bytes", 2048, "longest identity header value sent to Nginx (at most 8192): a longer identity is an invalid session, a longer --header is left out")
	fs.IntVar(&c.MaxAnswerHeaderBytes, "max-answer-header-bytes", 4096, "largest head of a /verify answer, to fit the proxy's buffer for upstream headers (Nginx's proxy_buffer_size): past it --header values are left out and a 401 points to the plain --login-url")
	fs.IntVar(&f.maxRequestHeaderBytes, "max-request-header-bytes", 64<<10, "largest request line and header accepted on --listen (431 beyond)")
	fs.DurationVar(&f.readHeaderTimeout, "read-header-timeout", 5*time.Second, "how long a request on --listen may take from its first byte to the end of its header and body (and a new connection to send its first request); past it the connection is closed")
	fs.DurationVar(&f.writeTimeout, "write-timeout", 10*time.Second, "how long writing answers on --listen may block on a client that does not read them; past it the connection is closed")
	fs.IntVar(&f.maxConns, "max-connections", 10000, "connections open at once on --listen; one more takes the place of the one waiting longest for a request (idle or half-sent), and is closed only when every open one is being answered")
	fs.IntVar(&c.MaxPendingLoads, "max-pending-loads", 1000, "distinct Redis reads in flight at most; a cache miss beyond answers 503 at once")
	fs.DurationVar(&c.StaleIfError, "stale-if-error", 0, "when Redis cannot be read, keep allowing a cached session this long past --cache-ttl, only while the logout subscription is live (0: off, fail closed)")
	fs.StringVar(&c.LoginURL, "login-url", "/login", "login page a 401 points to (X-Auth-Redirect)")
	fs.StringVar(&c.RedirectParam, "redirect-param", "rd", "query parameter carrying the original URI to the login page")
	fs.BoolVar(&f.tracking, "tracking", true, "Redis server-assisted invalidation (CLIENT TRACKING): sessions deleted or changed without an event leave the cache at once")
	fs.StringVar(&f.trackingMode, "tracking-mode", "reads", "reads: Redis reports to each instance only the sessions it read (messages grow with its cache misses); bcast: every write of every session key to every instance (docs/scale.md)")
	fs.DurationVar(&f.heartbeat, "subscribe-heartbeat", time.Second, "ping the logout subscription when silent this long; no answer within another and it counts as lost")
	fs.StringVar(&f.logoutCfg.Redirect, "logout-redirect", "/login", "where POST /logout sends the browser")
	fs.StringVar(&f.logoutCfg.CookieDomain, "cookie-domain", "", "the session cookie's Domain attribute, to expire it on logout")
	fs.StringVar(&f.logoutCfg.CookiePath, "cookie-path", "/", "the session cookie's Path attribute, to expire it on logout")
	fs.BoolVar(&f.logoutCfg.Secure, "cookie-secure", false, "mark the expiring cookie Secure (when the site is served over HTTPS)")
	fs.BoolVar(&f.stdlibHTTP, "stdlib-http", false, "serve --listen with Go's net/http instead of authz's lean HTTP/1.1 server for Nginx")
	fs.DurationVar(&f.shutdownDelay, "shutdown-delay", 0, "after SIGTERM, keep serving this long with /readyz failing and keep-alive off before refusing connections (the time a balancer needs to notice)")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long SIGTERM waits for in-flight requests")
	f.log.register(fs)
	return cmd
}

func (f *serveFlags) config() (authz.Config, error) {
	c, err := f.sessionFlags.config()
	if err != nil {
		return c, err
	}
	if len(f.accessTokenPaths) > 0 {
		if c.AccessTokenPaths, err = parsePaths("--access-token-path", f.accessTokenPaths); err != nil {
			return c, err
		}
	}
	for _, h := range f.headers {
		m, err := authz.ParseHeaderMapping(h)
		if err != nil {
			return c, fmt.Errorf("--header: %w", err)
		}
		c.Headers = append(c.Headers, m)
	}
	// Flags give 0 a meaning ("off") that Config reserves for defaults.
	for _, d := range []*time.Duration{&c.NegativeCacheTTL, &c.TouchInterval} {
		if *d == 0 {
			*d = -1
		}
	}
	if c.BreakerFailures == 0 {
		c.BreakerFailures = -1
	}
	if c.BreakerCooldown <= 0 {
		return c, errors.New("--redis-breaker-cooldown must be positive")
	}
	if c.CacheTTL <= 0 || c.CacheSize <= 0 || c.MaxCookieBytes <= 0 || c.MaxPendingLoads <= 0 || c.MaxIdentityHeaderBytes <= 0 || c.MaxAnswerHeaderBytes <= 0 || f.maxRequestHeaderBytes <= 0 {
		return c, errors.New("--cache-ttl, --cache-size, --max-cookie-bytes, --max-pending-loads, --max-identity-header-bytes, --max-answer-header-bytes and --max-request-header-bytes must be positive")
	}
	if f.readHeaderTimeout <= 0 || f.writeTimeout <= 0 || f.maxConns <= 0 {
		return c, errors.New("--read-header-timeout, --write-timeout and --max-connections must be positive")
	}
	if c.StaleIfError < 0 {
		return c, errors.New("--stale-if-error must not be negative")
	}
	if f.trackingMode != "reads" && f.trackingMode != "bcast" {
		return c, fmt.Errorf("--tracking-mode %q: want reads or bcast", f.trackingMode)
	}
	return c, nil
}

func parsePaths(flag string, ss []string) ([][]string, error) {
	var out [][]string
	for _, s := range ss {
		p, err := authz.ParsePath(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", flag, err)
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: at least one path is needed", flag)
	}
	return out, nil
}

func serve(ctx context.Context, f *serveFlags) error {
	log, err := f.log.logger()
	if err != nil {
		return err
	}
	cfg, err := f.config()
	if err != nil {
		return err
	}
	// go-redis reports reconnections and Sentinel's master changes through
	// its own logger, to stderr in its own format: into the log instead.
	redis.SetLogger(goRedisLog{log})
	if cfg.StaleIfError > 0 && !f.trackingOn() {
		return errors.New("--stale-if-error needs --tracking (on a cluster, --tracking-mode=reads): only tracking reports a session an app deletes without a logout event")
	}
	// SIGHUP reloads the tenant file. Caught from the start: its default
	// action would end the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	rdb, cc, err := f.redis.connect(&cfg)
	if err != nil {
		return err
	}
	defer rdb.Close()
	// On a cluster, each node's connections are armed by a hook installed
	// as go-redis makes the node: before anything is read.
	var ct *logout.ClusterTracking
	if cc != nil && f.trackingOn() {
		ct = logout.NewClusterTracking(cc, logout.ClusterTrackingConfig{
			NewNodeClient: f.redis.nodeClient, Heartbeat: f.heartbeat,
			Timeout: max(f.redis.timeout, f.redis.dialTimeout), Logger: log,
		})
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	v, err := authz.New(cfg, rdb, reg, log)
	if err != nil {
		return err
	}
	// No cache until sub.Run (started just before serving) says the
	// subscription and tracking are live: a read before would go untracked.
	v.Subscribed(false)
	if ct != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "authz_tracking_enabled", Help: "1 when Redis server-assisted invalidation is on for the logout subscription.",
		}, func() float64 {
			if ct.Enabled() {
				return 1
			}
			return 0
		}))
	}
	if f.tenantsFile != "" {
		log.Info("tenants loaded", "file", f.tenantsFile, "tenants", len(cfg.Tenants))
	}
	pub, err := logout.NewPublisher(rdb, logout.PublisherConfig{Channel: f.channel, Origin: "authz"}, reg)
	if err != nil {
		return err
	}
	// The write side: /logout, over the Verifier's tenants and client.
	off, err := signoff.New(v, reg, log)
	if err != nil {
		return err
	}
	sub, subClient, tr, err := f.subscriber(v, ct, log, reg)
	if err != nil {
		return err
	}
	defer subClient.Close()
	var tracked []string // what BCAST tracking watches; none when it is off
	switch {
	case ct != nil:
		v.SetStaleGuard(func(string) bool { return ct.Enabled() })
	case tr != nil && tr.Reads():
		// Every pipeline the verifier sends arms tracking first.
		rdb.AddHook(tr)
		v.SetStaleGuard(func(string) bool { return tr.Enabled() })
	case tr != nil:
		tracked = tr.Prefixes()
		v.SetStaleGuard(func(prefix string) bool { return tr.Enabled() && covered(tracked, prefix) })
	}

	fm, err := frontdoor.NewMetrics(reg, v.BoundCounter)
	if err != nil {
		return fmt.Errorf("front door metrics: %w", err)
	}
	ln, err := listen(f.listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	var d drain
	mux := http.NewServeMux()
	mux.Handle("/", v.Handler())
	mux.Handle("/readyz", d.readyz(v.ReadyHandler()))
	mux.Handle("/logout", off.Endpoint(pub, f.logoutCfg))
	var front server = frontdoor.New(frontdoor.Config{
		IdleTimeout:       5 * time.Minute,
		ReadHeaderTimeout: f.readHeaderTimeout,
		WriteTimeout:      f.writeTimeout,
		MaxConns:          f.maxConns,
		MaxHeaderBytes:    f.maxRequestHeaderBytes,
	}, v, mux, fm, log)
	if f.stdlibHTTP {
		// /verify is nearly every request: skip the mux's pattern matching.
		front = newServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/verify" {
				v.ServeHTTP(w, r)
				return
			}
			mux.ServeHTTP(w, r)
		}), log)
		hs := front.(*http.Server)
		hs.MaxHeaderBytes = f.maxRequestHeaderBytes
		hs.ReadHeaderTimeout = f.readHeaderTimeout
		// The body too (a request whose header came whole and whose body
		// never does is otherwise held for good): the same bound, from
		// the request's first byte, as authz's own server. net/http
		// re-arms the read deadline after every header anyway, so it
		// costs nothing, and its background read during the handler has
		// no deadline, so a long /logout is not cut.
		hs.ReadTimeout = f.readHeaderTimeout
		hs.WriteTimeout = f.writeTimeout
		hs.ConnState = frontdoor.ConnState(f.maxConns, fm)
	}
	servers := []server{front}
	listeners := []net.Listener{ln}
	if f.metricsListen != "" {
		mln, err := net.Listen("tcp", f.metricsListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("--metrics-listen: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("/healthz", authz.Healthz)
		mux.Handle("/readyz", d.readyz(v.ReadyHandler()))
		servers = append(servers, newMetricsServer(mux, log))
		listeners = append(listeners, mln)
	}

	// The subscription outlives the signal: cached sessions must keep
	// hearing of logouts while the drain still answers from them.
	subCtx, subStop := context.WithCancel(ctx)
	defer subStop()
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go f.reloadOnHUP(ctx, hup, v, tracked, log)
	subDone := make(chan struct{})
	go func() {
		// On a cluster the nodes' invalidation connections end with the
		// logout subscription, and shutdown waits for both.
		ctDone := make(chan struct{})
		switch {
		case ct != nil:
			go func() { ct.Run(subCtx); close(ctDone) }()
		case tr != nil && tr.Reads():
			// A reading connection that closes takes what it read
			// out of Redis's tracking: this empties the cache then.
			// A check that times out costs go-redis the (armed)
			// connection it ran on, which the next check would take
			// for a loss: give it several heartbeats.
			go func() { tr.WatchReaders(subCtx, rdb, f.heartbeat, 5*f.heartbeat); close(ctDone) }()
		default:
			close(ctDone)
		}
		sub.Run(subCtx)
		<-ctDone
		close(subDone)
	}()
	errc := make(chan error, len(servers))
	for i, s := range servers {
		go func() {
			if err := s.Serve(listeners[i]); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	if err := v.Ready(ctx); err != nil {
		log.Warn("redis not reachable yet; answering 503 until it is", "err", err)
	}
	log.Info("authz serving", "listen", ln.Addr().String(), "metrics", f.metricsListen,
		"cookie", cfg.CookieName, "prefix", cfg.KeyPrefix, "secrets", len(cfg.Secrets),
		"logout_channel", f.channel, "tracking", f.trackingOn(), "tracking_mode", f.trackingMode)

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	stop() // a second signal ends the process at once
	if err := d.run(log, servers, f.shutdownDelay, f.shutdownTimeout); err != nil {
		return err
	}
	subStop()
	select {
	case <-subDone:
	case <-time.After(f.shutdownTimeout):
		log.Warn("the logout subscription did not end within --shutdown-timeout; exiting anyway")
	}
	if tr != nil && tr.FenceKey() != "" {
		// The fence key is this process's alone; leave no litter. A
		// crash leaves it, which is harmless.
		dctx, cancel := context.WithTimeout(context.Background(), f.redis.timeout)
		rdb.Del(dctx, tr.FenceKey())
		cancel()
	}
	log.Info("stopped")
	return nil
}

// reloadOnHUP reloads the tenant file on every SIGHUP. Requests keep being
// answered throughout: the new tenants replace the old in one step, and a
// file that does not load leaves the old ones in place.
func (f *serveFlags) reloadOnHUP(ctx context.Context, hup <-chan os.Signal, v *authz.Verifier, tracked []string, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		if f.tenantsFile == "" {
			log.Info("SIGHUP: nothing to reload without --tenants")
			continue
		}
		n, err := v.ReloadTenants(f.tenantsFile)
		if err != nil {
			log.Error("tenant file not reloaded; the previous tenants stay in use", "err", err)
			continue
		}
		log.Info("tenants reloaded", "file", f.tenantsFile, "tenants", n)
		if len(tracked) > 0 {
			for _, p := range v.KeyPrefixes() {
				if !covered(tracked, p) {
					log.Warn("tracking does not cover a new key prefix until restart: its sessions leave the cache on logout events and after --cache-ttl (and get no --stale-if-error)", "prefix", p)
				}
			}
		}
	}
}

// trackedPrefixes is what CLIENT TRACKING watches for these session key
// prefixes: their longest common prefix when they have one, so tenants
// added later under the same template ("sessions:{tenant}:…") are covered
// without re-arming tracking; else each of them.
func trackedPrefixes(ps []string) []string {
	if len(ps) <= 1 {
		return ps
	}
	lcp := ps[0]
	for _, p := range ps[1:] {
		n := 0
		for n < len(lcp) && n < len(p) && lcp[n] == p[n] {
			n++
		}
		lcp = lcp[:n]
	}
	if lcp != "" {
		return []string{lcp}
	}
	return ps
}

func covered(tracked []string, p string) bool {
	for _, t := range tracked {
		if strings.HasPrefix(p, t) {
			return true
		}
	}
	return false
}

// subscriber wires the logout subscription to v. It gets a client of its
// own (see redisFlags.subscriberClient), with the tracking hook that
// re-arms CLIENT TRACKING on every reconnect.
// The Tracking is nil when tracking is off (by flag, or BCAST on a
// cluster) and on a cluster, where ct (not nil with tracking) tracks per
// node and the subscription carries logout events only.
func (f *serveFlags) subscriber(v *authz.Verifier, ct *logout.ClusterTracking, log *slog.Logger, reg prometheus.Registerer) (*logout.Subscriber, redis.UniversalClient, *logout.Tracking, error) {
	var onConnect func(context.Context, *redis.Conn) error
	var tr *logout.Tracking
	if f.tracking && f.redis.isCluster() {
		if ct == nil {
			log.Warn("--tracking-mode=bcast is not available on Redis Cluster, so tracking is off: sessions deleted without a logout event stop passing within --cache-ttl; use --tracking-mode=reads")
		}
	} else if f.tracking && f.trackingMode == "reads" {
		// On Sentinel, reads must also prove they reach the master the
		// subscription is on (docs/redis.md, "Failover").
		fence := ""
		if f.redis.isSentinel() {
			var b [8]byte
			rand.Read(b[:])
			fence = "authz:fence:" + hex.EncodeToString(b[:])
		}
		var err error
		if tr, err = logout.NewReadTracking(fence, log, reg); err != nil {
			return nil, nil, nil, err
		}
		onConnect = tr.OnConnect
	} else if f.tracking {
		var err error
		if tr, err = logout.NewTracking(trackedPrefixes(v.KeyPrefixes()), log, reg); err != nil {
			return nil, nil, nil, err
		}
		onConnect = tr.OnConnect
	}
	// The client is made before the Subscriber whose DialCheck its
	// dialer asks; no dial happens before Run.
	var sub *logout.Subscriber
	c, sentinel, err := f.redis.subscriberClient(onConnect, func(addr string) error { return sub.DialCheck(addr) })
	if err != nil {
		return nil, nil, nil, err
	}
	var h logout.Handler = v
	switch {
	case ct != nil:
		h = ct.Wrap(v)
	case tr != nil:
		h = tr.Wrap(v)
	}
	sub, err = logout.NewSubscriber(c, h, logout.SubscriberConfig{
		Channel: f.channel, Heartbeat: f.heartbeat, Logger: log, Sentinel: sentinel,
	}, reg)
	if err != nil {
		c.Close()
		return nil, nil, nil, err
	}
	if ct != nil {
		ct.Count(sub)
	}
	return sub, c, tr, nil
}

// trackingOn reports whether tracking is on: by flag, and on a cluster
// only in reads mode (per node, logout.ClusterTracking).
func (f *serveFlags) trackingOn() bool {
	return f.tracking && (!f.redis.isCluster() || f.trackingMode == "reads")
}

// listen opens --listen: host:port, or unix:/path for a Unix socket.
func listen(addr string) (net.Listener, error) {
	path, ok := strings.CutPrefix(addr, "unix:")
	if !ok {
		return net.Listen("tcp", addr)
	}
	if path == "" {
		return nil, errors.New("unix: needs a path")
	}
	// A socket file left by a process that could not remove it (SIGKILL,
	// a crash) makes the bind fail: remove it, unless it is not a socket
	// or something still answers on it.
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: another process is listening on it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	// Mode 0660: authz's user and group may connect (put Nginx's user in
	// authz's group), nobody else. Set through the umask, so the socket
	// never exists with wider permissions; nothing else creates files
	// while serve starts. Closing the listener (shutdown) removes the file.
	old := syscall.Umask(0o117)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	return ln, err
}

// server is an *http.Server or a *frontdoor.Server.
type server interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	SetKeepAlivesEnabled(bool)
}

// newServer bounds what a slow or idle client can hold: a request's header
// and an idle connection. The caller sets the rest (--listen's come from
// flags).
func newServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       5 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// newMetricsServer is the --metrics-listen server: newServer's bounds, and
// whole requests (none has a body) within 5 s and each answer written
// within 30 s (a /metrics page is written in milliseconds; a Prometheus
// scrape times out after 10 s by default), so a client that stops reading
// or sending holds no connection and goroutine for good.
func newMetricsServer(h http.Handler, log *slog.Logger) *http.Server {
	hs := newServer(h, log)
	hs.ReadTimeout = 5 * time.Second
	hs.WriteTimeout = 30 * time.Second
	return hs
}

// goRedisLog writes go-redis's messages to the log.
type goRedisLog struct{ log *slog.Logger }

func (l goRedisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.Info(strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: "), "component", "go-redis")
}
