package authz

import (
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// New takes the topology from the configuration and refuses a client that
// cannot serve it, before any request: a cluster client taken for a single
// node would have a logout's marker and DEL sent to two masters at once,
// in any order.
func TestNewChecksTopologyAgainstTheClient(t *testing.T) {
	// No connection is made: go-redis dials lazily.
	single := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	cluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}})
	other := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:2"}})
	t.Cleanup(func() { single.Close(); cluster.Close(); other.Close() })
	for _, tc := range []struct {
		name    string
		rdb     redis.UniversalClient
		topo    Topology
		nodes   ClusterNodes
		wantErr string
	}{
		{"single", single, TopologySingle, nil, ""},
		{"sentinel", single, TopologySentinel, nil, ""},
		{"cluster", cluster, TopologyCluster, cluster, ""},
		{"cluster client, topology unsaid", cluster, TopologySingle, nil, "cluster client"},
		{"cluster client under sentinel", cluster, TopologySentinel, nil, "cluster client"},
		{"cluster without its masters", cluster, TopologyCluster, nil, "needs Config.Cluster"},
		{"cluster masters of another client", cluster, TopologyCluster, other, "not the client"},
		{"masters under a single node", single, TopologySingle, cluster, "TopologyCluster only"},
		{"unknown topology", single, Topology(7), nil, "want TopologySingle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Secrets: []string{testSecret}, Topology: tc.topo, Cluster: tc.nodes}
			v, err := New(cfg, tc.rdb, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("New = %v; want an error mentioning %q", err, tc.wantErr)
			case tc.wantErr == "" && (v.breakers.cluster != nil) != (tc.topo == TopologyCluster):
				t.Errorf("per-master breakers: %v; want them on a cluster only", v.breakers.cluster != nil)
			}
		})
	}
}
