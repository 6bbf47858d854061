package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/authz/authz/authz"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/pflag"
)

// redisFlags are shared by every command that talks to Redis. They select
// one of the three topologies go-redis serves through its UniversalClient:
// a single node (*redis.Client), Sentinel (redis.NewFailoverClient) or
// Cluster (*redis.ClusterClient). See docs/redis.md.
type redisFlags struct {
	url         string
	timeout     time.Duration
	dialTimeout time.Duration
	poolSize    int

	sentinelMaster   string
	sentinelAddrs    []string
	sentinelPassword string
	clusterAddrs     []string
}

func (f *redisFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.url, "redis-url", "redis://127.0.0.1:6379/0", "Redis holding the sessions: redis://[:password@]host:port/db (rediss:// for TLS); redis+sentinel:// or redis+cluster:// select a topology (docs/redis.md)")
	fs.DurationVar(&f.timeout, "redis-timeout", 250*time.Millisecond, "timeout of each Redis call")
	fs.DurationVar(&f.dialTimeout, "redis-dial-timeout", time.Second, "timeout to open a Redis connection")
	fs.IntVar(&f.poolSize, "redis-pool-size", 0, "Redis connections per authz process, per node on a cluster (0: 10 per CPU)")
	fs.StringVar(&f.sentinelMaster, "redis-sentinel-master", "", "Sentinel: the master name; --redis-url then gives the master's password, DB and TLS, not its address")
	fs.StringSliceVar(&f.sentinelAddrs, "redis-sentinel-addrs", nil, "Sentinel: the sentinels' host:port, comma-separated")
	fs.StringVar(&f.sentinelPassword, "redis-sentinel-password", "", "Sentinel: the sentinels' own password (requirepass in sentinel.conf), when they have one")
	fs.StringSliceVar(&f.clusterAddrs, "redis-cluster-addrs", nil, "Cluster: host:port of some cluster nodes, comma-separated; --redis-url then gives the password and TLS, not an address")
}

// redisTarget is the one topology the flags select: exactly one field is set.
type redisTarget struct {
	single   *redis.Options
	failover *redis.FailoverOptions
	cluster  *redis.ClusterOptions
}

// target parses --redis-url and applies the topology flags over it.
func (f *redisFlags) target() (*redisTarget, error) {
	t, err := parseRedisURL(f.url)
	if err != nil {
		return nil, err
	}
	sentinel := f.sentinelMaster != "" || len(f.sentinelAddrs) > 0
	cluster := len(f.clusterAddrs) > 0
	switch {
	case sentinel && cluster:
		return nil, errors.New("--redis-sentinel-* and --redis-cluster-addrs select different topologies: give one")
	case sentinel && t.cluster != nil:
		return nil, errors.New("--redis-url is a redis+cluster:// URL but --redis-sentinel-* flags are set")
	case cluster && t.failover != nil:
		return nil, errors.New("--redis-url is a redis+sentinel:// URL but --redis-cluster-addrs is set")
	}
	if sentinel {
		if t.single != nil {
			o := t.single
			t = &redisTarget{failover: &redis.FailoverOptions{
				Username: o.Username, Password: o.Password, DB: o.DB,
				TLSConfig: serverNameFromAddr(o),
			}}
		}
		if f.sentinelMaster != "" {
			t.failover.MasterName = f.sentinelMaster
		}
		if len(f.sentinelAddrs) > 0 {
			t.failover.SentinelAddrs = f.sentinelAddrs
		}
	}
	if f.sentinelPassword != "" {
		if t.failover == nil {
			return nil, errors.New("--redis-sentinel-password without Sentinel: set --redis-sentinel-master and --redis-sentinel-addrs")
		}
		t.failover.SentinelPassword = f.sentinelPassword
	}
	if cluster {
		if t.single != nil {
			o := t.single
			if o.DB != 0 {
				return nil, fmt.Errorf("--redis-url selects database %d, but Redis Cluster only has database 0", o.DB)
			}
			t = &redisTarget{cluster: &redis.ClusterOptions{
				Username: o.Username, Password: o.Password, TLSConfig: serverNameFromAddr(o),
			}}
		}
		t.cluster.Addrs = f.clusterAddrs
	}
	switch {
	case t.failover != nil && t.failover.MasterName == "":
		return nil, errors.New("Sentinel needs the master's name: --redis-sentinel-master or master_name= in --redis-url")
	case t.failover != nil && len(t.failover.SentinelAddrs) == 0:
		return nil, errors.New("Sentinel needs at least one sentinel address: --redis-sentinel-addrs")
	}
	return t, nil
}

// serverNameFromAddr is o's TLS config without the server name the URL's
// host gave it: with Sentinel and Cluster the nodes authz talks to are not
// that host, and an empty ServerName makes crypto/tls check each node's
// certificate against the address it dials.
func serverNameFromAddr(o *redis.Options) *tls.Config {
	if o.TLSConfig == nil {
		return nil
	}
	c := o.TLSConfig.Clone()
	c.ServerName = ""
	return c
}

// parseRedisURL reads --redis-url with go-redis's own parsers. The scheme
// picks the parser: redis:// and rediss:// a single node (redis.ParseURL),
// redis+sentinel:// redis.ParseFailoverURL, redis+cluster://
// redis.ParseClusterURL (each with an "s" for TLS). Sentinel and cluster
// URLs may list several hosts separated by commas, which become go-redis's
// addr= parameters.
func parseRedisURL(raw string) (*redisTarget, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return nil, errors.New("--redis-url is malformed: want redis://, rediss://, redis+sentinel:// or redis+cluster://")
	}
	base, topo, _ := strings.Cut(scheme, "+")
	if (base != "redis" && base != "rediss") || (topo != "" && topo != "sentinel" && topo != "cluster") {
		return nil, fmt.Errorf("--redis-url scheme %q: want redis, rediss, redis+sentinel, rediss+sentinel, redis+cluster or rediss+cluster", scheme)
	}
	u := base + "://" + rest
	var t redisTarget
	var err error
	switch topo {
	case "":
		t.single, err = redis.ParseURL(u)
	case "sentinel":
		t.failover, err = redis.ParseFailoverURL(hostListToAddrs(u))
	case "cluster":
		t.cluster, err = redis.ParseClusterURL(hostListToAddrs(u))
	}
	if err != nil {
		// The URL may hold a password, and the parser's messages quote
		// parts of it (a password with a "/" reads as a port): say what
		// is wrong in general terms only.
		var ue *url.Error
		if errors.As(err, &ue) {
			return nil, errors.New("--redis-url is malformed: it does not parse as a URL (percent-encode any of / ? # @ : % in the password)")
		}
		return nil, fmt.Errorf("--redis-url is malformed: %v", err)
	}
	return &t, nil
}

// hostListToAddrs turns scheme://[userinfo@]h1:p1,h2:p2/rest into
// scheme://[userinfo@]h1:p1/rest?addr=h2:p2, go-redis's spelling.
func hostListToAddrs(u string) string {
	scheme, rest, _ := strings.Cut(u, "://")
	auth, tail := rest, ""
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		auth, tail = rest[:i], rest[i:]
	}
	userinfo, hosts := "", auth
	if i := strings.LastIndex(auth, "@"); i >= 0 {
		userinfo, hosts = auth[:i+1], auth[i+1:]
	}
	list := strings.Split(hosts, ",")
	if len(list) < 2 {
		return u
	}
	var extra strings.Builder
	for _, h := range list[1:] {
		if h == "" {
			continue
		}
		if extra.Len() > 0 || strings.Contains(tail, "?") {
			extra.WriteByte('&')
		} else {
			extra.WriteByte('?')
		}
		extra.WriteString("addr=" + url.QueryEscape(h))
	}
	frag := ""
	if i := strings.IndexByte(tail, '#'); i >= 0 {
		tail, frag = tail[:i], tail[i:]
	}
	return scheme + "://" + userinfo + list[0] + tail + extra.String() + frag
}

// tuning is what authz sets on every connection, whatever the topology.
type tuning struct {
	dial, read, write time.Duration
	contextTimeout    bool
	maxRetries        int
	poolSize          int // 0: go-redis's default
	protocol          int // 0: go-redis's default (RESP3)
	onConnect         func(context.Context, *redis.Conn) error
}

func (t *redisTarget) tune(s tuning) {
	switch {
	case t.single != nil:
		o := t.single
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = s.dial, s.read, s.write
		o.ContextTimeoutEnabled, o.MaxRetries, o.OnConnect = s.contextTimeout, s.maxRetries, s.onConnect
		if s.poolSize > 0 {
			o.PoolSize = s.poolSize
		}
		if s.protocol > 0 {
			o.Protocol = s.protocol
		}
	case t.failover != nil:
		o := t.failover
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = s.dial, s.read, s.write
		o.ContextTimeoutEnabled, o.MaxRetries, o.OnConnect = s.contextTimeout, s.maxRetries, s.onConnect
		if s.poolSize > 0 {
			o.PoolSize = s.poolSize
		}
		if s.protocol > 0 {
			o.Protocol = s.protocol
		}
	case t.cluster != nil:
		o := t.cluster
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = s.dial, s.read, s.write
		o.ContextTimeoutEnabled, o.MaxRetries, o.OnConnect = s.contextTimeout, s.maxRetries, s.onConnect
		if s.poolSize > 0 {
			o.PoolSize = s.poolSize
		}
		if s.protocol > 0 {
			o.Protocol = s.protocol
		}
	}
}

// topology is the layout t selects, as authz.Config states it.
func (t *redisTarget) topology() authz.Topology {
	switch {
	case t.failover != nil:
		return authz.TopologySentinel
	case t.cluster != nil:
		return authz.TopologyCluster
	}
	return authz.TopologySingle
}

// newClient builds the go-redis client of t's topology and, on a cluster,
// returns it a second time as what it is (nil elsewhere): the cluster's
// masters authz.Config.Cluster and logout.ClusterTracking need.
func (t *redisTarget) newClient() (redis.UniversalClient, *redis.ClusterClient) {
	switch {
	case t.failover != nil:
		return redis.NewFailoverClient(t.failover), nil
	case t.cluster != nil:
		c := redis.NewClusterClient(t.cluster)
		return c, c
	}
	return redis.NewClient(t.single), nil
}

// String names the topology and its addresses, never a password, for logs
// and error messages.
func (t *redisTarget) String() string {
	switch {
	case t.failover != nil:
		return fmt.Sprintf("sentinel master %q via %s", t.failover.MasterName, strings.Join(t.failover.SentinelAddrs, ","))
	case t.cluster != nil:
		return "cluster " + strings.Join(t.cluster.Addrs, ",")
	}
	return t.single.Addr
}

// client returns the client commands use: each call bounded by
// --redis-timeout. On a cluster it is returned a second time as a
// *redis.ClusterClient (nil on any other topology).
func (f *redisFlags) client() (redis.UniversalClient, *redis.ClusterClient, error) {
	t, err := f.target()
	if err != nil {
		return nil, nil, err
	}
	t.tune(tuning{
		dial: f.dialTimeout, read: f.timeout, write: f.timeout, contextTimeout: true,
		// One retry replaces a pooled connection that died with a Redis
		// restart or a failover; more would only stack timeouts on a
		// Redis that is down.
		maxRetries: 1,
		poolSize:   f.poolSize,
	})
	rdb, cluster := t.newClient()
	return rdb, cluster, nil
}

// connect makes the client of cfg's topology (which config() took from
// these flags) and completes cfg with the cluster's masters on a cluster.
// The cluster client is returned a second time for what needs it as such
// (logout.ClusterTracking); nil on any other topology.
func (f *redisFlags) connect(cfg *authz.Config) (redis.UniversalClient, *redis.ClusterClient, error) {
	rdb, cc, err := f.client()
	if err != nil {
		return nil, nil, err
	}
	if cc != nil {
		cfg.Cluster = cc // never a nil *ClusterClient in the interface
	}
	return rdb, cc, nil
}

// nodeClient returns a client for one cluster node's invalidation
// connection (logout.ClusterTrackingConfig.NewNodeClient): the cluster's
// credentials and TLS, RESP2 so that invalidations arrive as pub/sub
// messages, and onConnect to arm tracking on it.
func (f *redisFlags) nodeClient(addr string, onConnect func(context.Context, *redis.Conn) error) *redis.Client {
	t, err := f.target()
	if err != nil || t.cluster == nil {
		// serve only asks on a cluster, whose flags already parsed.
		t = &redisTarget{cluster: &redis.ClusterOptions{}}
	}
	o := t.cluster
	return redis.NewClient(&redis.Options{
		Addr: addr, Username: o.Username, Password: o.Password, TLSConfig: o.TLSConfig,
		DialTimeout: f.dialTimeout, ReadTimeout: max(f.timeout, f.dialTimeout), WriteTimeout: f.timeout,
		MaxRetries: 1, PoolSize: 2, Protocol: 2, OnConnect: onConnect,
	})
}

// topology is the layout the flags select: what authz.Config.Topology
// states.
func (f *redisFlags) topology() (authz.Topology, error) {
	t, err := f.target()
	if err != nil {
		return 0, err
	}
	return t.topology(), nil
}

// waitReplicas is how many replicas a logout waits for
// (authz.Config.RevokeWaitReplicas): one on Sentinel, whose failover
// promotes a replica; none elsewhere (a single node may have no replica,
// and on a cluster go-redis would send a keyless WAIT to any node, not to
// the ones written).
func waitReplicas(t authz.Topology) int {
	if t == authz.TopologySentinel {
		return 1
	}
	return 0
}

// describe names what the flags point at, without credentials.
func (f *redisFlags) describe() string {
	t, err := f.target()
	if err != nil {
		return "(invalid --redis-url)"
	}
	return t.String()
}

// isCluster reports whether the flags select a Redis Cluster.
func (f *redisFlags) isCluster() bool {
	t, err := f.topology()
	return err == nil && t == authz.TopologyCluster
}

// isSentinel reports whether the flags select Sentinel.
func (f *redisFlags) isSentinel() bool {
	t, err := f.topology()
	return err == nil && t == authz.TopologySentinel
}

// subscriberClient returns the client the logout subscriber listens on:
// RESP2, so tracking invalidations arrive as pub/sub messages. onConnect,
// when not nil, arms CLIENT TRACKING on each of its connections. On Sentinel it also returns the options the subscriber
// watches the sentinels with (logout.SubscriberConfig.Sentinel): go-redis
// does not move a subscription to a new master by itself.
//
// Redis tracks keys per node. On a single node and on Sentinel the
// subscription lives on the master that holds every session key, so
// tracking sees every write (after a failover go-redis reconnects to the
// new master and onConnect runs again there). On a cluster the
// subscription is on one node, which holds only the sessions of its own
// slots: it carries logout events only, and each node gets an
// invalidation connection of its own (nodeClient, logout.ClusterTracking).
//
// dialCheck, when not nil, is asked before each connection on Sentinel
// (logout.Subscriber.DialCheck): it refuses a master the sentinels have
// since replaced.
func (f *redisFlags) subscriberClient(onConnect func(context.Context, *redis.Conn) error, dialCheck func(addr string) error) (redis.UniversalClient, *redis.FailoverOptions, error) {
	t, err := f.target()
	if err != nil {
		return nil, nil, err
	}
	// A finite read timeout: it bounds the handshake (HELLO, AUTH, the
	// tracking hook) and SUBSCRIBE on a Redis that accepts connections
	// but answers nothing, which would otherwise hang the subscriber, and
	// shutdown with it. Receiving sets its own (ReceiveTimeout).
	t.tune(tuning{
		dial: f.dialTimeout, read: max(f.timeout, f.dialTimeout), write: f.timeout,
		maxRetries: 1, poolSize: 2, protocol: 2, onConnect: onConnect,
	})
	if t.failover != nil && dialCheck != nil {
		o := t.failover
		d := &net.Dialer{Timeout: o.DialTimeout, KeepAlive: 5 * time.Minute}
		o.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if err := dialCheck(addr); err != nil {
				return nil, err
			}
			if o.TLSConfig != nil {
				return (&tls.Dialer{NetDialer: d, Config: o.TLSConfig}).DialContext(ctx, network, addr)
			}
			return d.DialContext(ctx, network, addr)
		}
	}
	c, _ := t.newClient()
	return c, t.failover, nil
}
