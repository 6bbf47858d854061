package main

import (
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/authz/authz/authz"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
)

func newFlagSet() *pflag.FlagSet { return pflag.NewFlagSet("test", pflag.ContinueOnError) }

// TestRedisTopology checks which go-redis client each documented form of
// --redis-url and the topology flags selects, with which addresses and
// credentials.
func TestRedisTopology(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		check func(t *testing.T, rt *redisTarget)
	}{
		{"single", []string{"--redis-url", "redis://:pw@r1:6380/2"}, func(t *testing.T, rt *redisTarget) {
			if rt.single == nil || rt.single.Addr != "r1:6380" || rt.single.Password != "pw" || rt.single.DB != 2 {
				t.Errorf("got %+v", rt)
			}
		}},
		{"sentinel URL", []string{"--redis-url", "redis+sentinel://:spw@s1:26379,s2:26379,s3:26379/1?master_name=mymaster&password=mpw"}, func(t *testing.T, rt *redisTarget) {
			f := rt.failover
			if f == nil || f.MasterName != "mymaster" || f.SentinelPassword != "spw" || f.Password != "mpw" || f.DB != 1 ||
				!slices.Equal(f.SentinelAddrs, []string{"s1:26379", "s2:26379", "s3:26379"}) {
				t.Errorf("got %+v", f)
			}
		}},
		{"sentinel flags", []string{"--redis-url", "rediss://:mpw@ignored:6379/3", "--redis-sentinel-master", "m",
			"--redis-sentinel-addrs", "s1:26379,s2:26379", "--redis-sentinel-password", "spw"}, func(t *testing.T, rt *redisTarget) {
			f := rt.failover
			if f == nil || f.MasterName != "m" || f.SentinelPassword != "spw" || f.Password != "mpw" || f.DB != 3 ||
				!slices.Equal(f.SentinelAddrs, []string{"s1:26379", "s2:26379"}) {
				t.Fatalf("got %+v", f)
			}
			if f.TLSConfig == nil || f.TLSConfig.ServerName != "" {
				t.Errorf("TLS must stay on, checked against each dialled node: %+v", f.TLSConfig)
			}
		}},
		{"cluster URL", []string{"--redis-url", "redis+cluster://:pw@n1:7000,n2:7001?addr=n3:7002"}, func(t *testing.T, rt *redisTarget) {
			c := rt.cluster
			if c == nil || c.Password != "pw" || !slices.Equal(c.Addrs, []string{"n1:7000", "n3:7002", "n2:7001"}) {
				t.Errorf("got %+v", c)
			}
		}},
		{"cluster flags", []string{"--redis-url", "redis://:pw@ignored/0", "--redis-cluster-addrs", "n1:7000,n2:7001"}, func(t *testing.T, rt *redisTarget) {
			c := rt.cluster
			if c == nil || c.Password != "pw" || !slices.Equal(c.Addrs, []string{"n1:7000", "n2:7001"}) {
				t.Errorf("got %+v", c)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var f redisFlags
			fs := newFlagSet()
			f.register(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			rt, err := f.target()
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, rt)
		})
	}
}

func TestRedisTopologyRefused(t *testing.T) {
	for args, want := range map[string]string{
		"--redis-url http://x":                  "scheme",
		"--redis-url redis+mesh://x":            "scheme",
		"--redis-url redis+sentinel://s1:26379": "master",
		"--redis-sentinel-master m":             "sentinel address",
		"--redis-sentinel-password p":           "without Sentinel",
		"--redis-sentinel-master m --redis-sentinel-addrs s:1 --redis-cluster-addrs n:1": "one",
		"--redis-url redis+cluster://n1:1 --redis-sentinel-master m":                     "cluster",
		"--redis-url redis://h/2 --redis-cluster-addrs n:1":                              "database",
		"--redis-url redis://:hunter2@h:6379/x":                                          "malformed",
		"--redis-url redis://:hunter2/x@h:6379/0":                                        "percent-encode",
		"--redis-url redis://:hunter2%zz@h:6379/0":                                       "percent-encode",
	} {
		var f redisFlags
		fs := newFlagSet()
		f.register(fs)
		if err := fs.Parse(strings.Fields(args)); err != nil {
			t.Fatal(err)
		}
		_, err := f.target()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want one mentioning %q", args, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: the error shows the password: %v", args, err)
		}
	}
}

// TestRedisFlagsStateTheTopology: each way of choosing a topology on the
// command line states it in authz.Config (with the waits and the cluster
// client that go with it), and authz.New accepts the client the flags
// make for it. No connection is made: go-redis dials lazily.
func TestRedisFlagsStateTheTopology(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want authz.Topology
	}{
		{nil, authz.TopologySingle},
		{[]string{"--redis-url", "redis://:pw@r1:6380/2"}, authz.TopologySingle},
		{[]string{"--redis-url", "rediss://r1:6380/0"}, authz.TopologySingle},
		{[]string{"--redis-url", "redis+sentinel://s1:26379,s2:26379/0?master_name=m"}, authz.TopologySentinel},
		{[]string{"--redis-url", "rediss+sentinel://s1:26379/0?master_name=m"}, authz.TopologySentinel},
		{[]string{"--redis-sentinel-master", "m", "--redis-sentinel-addrs", "s1:26379"}, authz.TopologySentinel},
		{[]string{"--redis-url", "redis://:pw@ignored:6379/0", "--redis-sentinel-master", "m", "--redis-sentinel-addrs", "s1:26379,s2:26379"}, authz.TopologySentinel},
		{[]string{"--redis-url", "redis+sentinel://s1:26379/0", "--redis-sentinel-master", "m"}, authz.TopologySentinel},
		{[]string{"--redis-url", "redis+cluster://n1:7000,n2:7001"}, authz.TopologyCluster},
		{[]string{"--redis-url", "rediss+cluster://n1:7000"}, authz.TopologyCluster},
		{[]string{"--redis-cluster-addrs", "n1:7000,n2:7001"}, authz.TopologyCluster},
		{[]string{"--redis-url", "redis://:pw@ignored/0", "--redis-cluster-addrs", "n1:7000"}, authz.TopologyCluster},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var f sessionFlags
			fs := newFlagSet()
			f.register(fs)
			if err := fs.Parse(append([]string{"--session-secret", "s"}, tc.args...)); err != nil {
				t.Fatal(err)
			}
			cfg, err := f.config()
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Topology != tc.want {
				t.Fatalf("Topology = %s; want %s", cfg.Topology, tc.want)
			}
			if want := map[authz.Topology]int{authz.TopologySentinel: 1}[tc.want]; cfg.RevokeWaitReplicas != want {
				t.Errorf("RevokeWaitReplicas = %d; want %d", cfg.RevokeWaitReplicas, want)
			}
			rdb, cc, err := f.redis.connect(&cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer rdb.Close()
			if (cc != nil) != (tc.want == authz.TopologyCluster) || (cfg.Cluster != nil) != (cc != nil) {
				t.Errorf("cluster client %v, Config.Cluster %v; want both on a cluster only", cc != nil, cfg.Cluster != nil)
			}
			if _, err := authz.New(cfg, rdb, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
				t.Errorf("authz.New refuses the client the flags made: %v", err)
			}
		})
	}
}
