package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/logout"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// redisFlags are shared by every command that talks to Redis.
type redisFlags struct {
	url         string
	timeout     time.Duration
	dialTimeout time.Duration
	poolSize    int
}

func (f *redisFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.url, "redis-url", "redis://127.0.0.1:6379/0", "Redis holding the sessions: redis://[:password@]host:port/db or rediss:// for TLS")
	fs.DurationVar(&f.timeout, "redis-timeout", 250*time.Millisecond, "timeout of each Redis call")
	fs.DurationVar(&f.dialTimeout, "redis-dial-timeout", time.Second, "timeout to open a Redis connection")
	fs.IntVar(&f.poolSize, "redis-pool-size", 0, "Redis connections per authz process (0: 10 per CPU)")
}

func (f *redisFlags) client() (*redis.Client, error) {
	opts, err := f.options()
	if err != nil {
		return nil, err
	}
	return redis.NewClient(opts), nil
}

func (f *redisFlags) options() (*redis.Options, error) {
	opts, err := redis.ParseURL(f.url)
	if err != nil {
		// The URL may hold a password: name the problem, not the URL.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("--redis-url is malformed: %v", err)
	}
	opts.DialTimeout = f.dialTimeout
	opts.ReadTimeout = f.timeout
	opts.WriteTimeout = f.timeout
	opts.ContextTimeoutEnabled = true
	// One retry replaces a pooled connection that died with a Redis
	// restart; more would only stack timeouts on a Redis that is down.
	opts.MaxRetries = 1
	if f.poolSize > 0 {
		opts.PoolSize = f.poolSize
	}
	return opts, nil
}

// secretFlags are the cookie secrets, shared by serve and the session tools.
type secretFlags struct {
	secrets []string
	file    string
}

func (f *secretFlags) register(fs *pflag.FlagSet) {
	fs.StringArrayVar(&f.secrets, "session-secret", nil, "express-session secret; repeat to rotate: the first signs, all verify")
	fs.StringVar(&f.file, "session-secret-file", "", "file with one secret per line (first is current), e.g. a Docker or Kubernetes secret")
}

func (f *secretFlags) load() ([]string, error) {
	out := append([]string(nil), f.secrets...)
	if f.file != "" {
		b, err := os.ReadFile(f.file)
		if err != nil {
			return nil, fmt.Errorf("--session-secret-file: %w", err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if line = strings.TrimRight(line, "\r"); line != "" {
				out = append(out, line)
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no session secret: set --session-secret, --session-secret-file, AUTHZ_SESSION_SECRET or SESSION_SECRET")
	}
	return out, nil
}

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
	redis     redisFlags
	secrets   secretFlags
	log       logFlags
	cfg       authz.Config
	userPaths []string
	channel   string
}

func (f *sessionFlags) register(fs *pflag.FlagSet) {
	f.redis.register(fs)
	f.secrets.register(fs)
	c := &f.cfg
	fs.StringVar(&c.CookieName, "cookie-name", "connect.sid", "session cookie name (express-session's name option)")
	fs.StringVar(&c.KeyPrefix, "key-prefix", "sess:", "Redis key prefix (connect-redis's prefix option)")
	fs.StringVar(&c.RevokedPrefix, "revoked-prefix", "authz:revoked:", "Redis key prefix of the markers logouts leave so re-saved sessions stay dead")
	fs.StringVar(&f.channel, "logout-channel", logout.DefaultChannel, "Redis pub/sub channel of logout events")
	fs.DurationVar(&c.StoreTTL, "store-ttl", 86400*time.Second, "TTL of sessions whose cookie has no maxAge (connect-redis's ttl option)")
	fs.StringSliceVar(&f.userPaths, "user-path", []string{"passport.user", "user"}, "session paths tried in order for the identity; an object gives its id")
	fs.IntVar(&c.MaxSessionBytes, "max-session-bytes", 1<<20, "largest stored session read from Redis")
}

// config builds the authz.Config these flags describe.
func (f *sessionFlags) config() (authz.Config, error) {
	c := f.cfg
	var err error
	if c.Secrets, err = f.secrets.load(); err != nil {
		return c, err
	}
	if c.UserPaths, err = parsePaths("--user-path", f.userPaths); err != nil {
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
	return c, nil
}

type serveFlags struct {
	sessionFlags
	listen, metricsListen string
	rolePaths             []string
	headers               []string
	shutdownTimeout       time.Duration
	shutdownDelay         time.Duration
	tracking              bool
	stdlibHTTP            bool
	heartbeat             time.Duration
	logoutCfg             authz.LogoutConfig
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
			if err := applyEnv(cmd.Flags()); err != nil {
				return err
			}
			return serve(cmd.Context(), &f)
		},
	}
	fs := cmd.Flags()
	fs.SortFlags = false
	fs.StringVar(&f.listen, "listen", "127.0.0.1:9091", "address Nginx sends auth subrequests to")
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
	fs.StringSliceVar(&f.rolePaths, "roles-path", []string{"passport.user.roles", "user.roles"}, "session paths tried in order for the roles allow_roles checks")
	fs.StringVar(&c.UserHeader, "user-header", "X-Auth-User", "response header carrying the identity")
	fs.StringArrayVar(&f.headers, "header", nil, "extra identity header from a session path, e.g. X-Auth-Email=passport.user.email (repeatable)")
	fs.IntVar(&c.MaxCookieBytes, "max-cookie-bytes", 4096, "longest session cookie value accepted")
	fs.StringVar(&c.LoginURL, "login-url", "/login", "login page a 401 points to (X-Auth-Redirect)")
	fs.StringVar(&c.RedirectParam, "redirect-param", "rd", "query parameter carrying the original URI to the login page")
	fs.BoolVar(&f.tracking, "tracking", true, "Redis server-assisted invalidation (CLIENT TRACKING): sessions deleted or changed without an event leave the cache at once")
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
	if c.RolesPaths, err = parsePaths("--roles-path", f.rolePaths); err != nil {
		return c, err
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
	if c.CacheTTL <= 0 || c.CacheSize <= 0 || c.MaxCookieBytes <= 0 {
		return c, errors.New("--cache-ttl, --cache-size and --max-cookie-bytes must be positive")
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
	rdb, err := f.redis.client()
	if err != nil {
		return err
	}
	defer rdb.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	v, err := authz.New(cfg, rdb, reg, log)
	if err != nil {
		return err
	}
	pub, err := logout.NewPublisher(rdb, logout.PublisherConfig{Channel: f.channel, Origin: "authz"}, reg)
	if err != nil {
		return err
	}
	sub, subClient, err := f.subscriber(v, cfg, log, reg)
	if err != nil {
		return err
	}
	defer subClient.Close()

	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	var d drain
	mux := http.NewServeMux()
	mux.Handle("/", v.Handler())
	mux.Handle("/readyz", d.readyz(v.ReadyHandler()))
	mux.Handle("/logout", v.LogoutHandler(pub, f.logoutCfg))
	var front server = &authz.Server{Verifier: v, Fallback: mux, IdleTimeout: 5 * time.Minute, Log: log}
	if f.stdlibHTTP {
		// /verify is nearly every request: skip the mux's pattern matching.
		front = newServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/verify" {
				v.ServeHTTP(w, r)
				return
			}
			mux.ServeHTTP(w, r)
		}), log)
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
		servers = append(servers, newServer(mux, log))
		listeners = append(listeners, mln)
	}

	// The subscription outlives the signal: cached sessions must keep
	// hearing of logouts while the drain still answers from them.
	subCtx, subStop := context.WithCancel(ctx)
	defer subStop()
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	subDone := make(chan struct{})
	go func() { sub.Run(subCtx); close(subDone) }()
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
		"logout_channel", f.channel, "tracking", f.tracking)

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
	<-subDone
	log.Info("stopped")
	return nil
}

// subscriber wires the logout subscription to v. It gets a client of its
// own: RESP2, so tracking invalidations arrive as pub/sub messages, and
// with the tracking hook that re-arms CLIENT TRACKING on every reconnect.
func (f *serveFlags) subscriber(v *authz.Verifier, cfg authz.Config, log *slog.Logger, reg prometheus.Registerer) (*logout.Subscriber, *redis.Client, error) {
	opts, err := f.redis.options()
	if err != nil {
		return nil, nil, err
	}
	opts.Protocol = 2
	opts.PoolSize = 2
	// A subscription waits for messages far longer than a command does.
	opts.ReadTimeout = -1
	opts.ContextTimeoutEnabled = false
	if f.tracking {
		tr, err := logout.NewTracking([]string{cfg.KeyPrefix}, log, reg)
		if err != nil {
			return nil, nil, err
		}
		opts.OnConnect = tr.OnConnect
	}
	c := redis.NewClient(opts)
	sub, err := logout.NewSubscriber(c, v, logout.SubscriberConfig{
		Channel: f.channel, Heartbeat: f.heartbeat, Logger: log,
	}, reg)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return sub, c, nil
}

// server is an *http.Server or an *authz.Server.
type server interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	SetKeepAlivesEnabled(bool)
}

// newServer bounds what a slow or idle client can hold. No ReadTimeout or
// WriteTimeout: requests carry no body and answers are a few headers, and
// re-arming those deadlines on every request is a measurable part of the
// verify path's cost.
func newServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       5 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}
