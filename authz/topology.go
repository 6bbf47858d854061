package authz

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Topology is how the Redis holding the sessions is laid out. It is part of
// the configuration, stated by whoever builds the client (cmd/authz knows
// which flags it was given), never guessed from the client's type. It
// decides how writes that must land in order are sent (one pipeline on one
// connection, or a confirmed round trip per step across a cluster's
// masters), which circuit breaker a key answers to, and how a walk covers
// the keyspace.
type Topology int

const (
	// TopologySingle is one Redis server (the zero value).
	TopologySingle Topology = iota
	// TopologySentinel is a master the sentinels watch and may replace:
	// every key is on the one master, as with TopologySingle, but a
	// failover promotes a replica (see Config.RevokeWaitReplicas).
	TopologySentinel
	// TopologyCluster is a Redis Cluster: keys are spread over masters by
	// hash slot, so a session and its logout marker may be on two of
	// them. Config.Cluster must be set.
	TopologyCluster
)

// String names the topology as docs/redis.md does.
func (t Topology) String() string {
	switch t {
	case TopologySingle:
		return "single"
	case TopologySentinel:
		return "sentinel"
	case TopologyCluster:
		return "cluster"
	}
	return fmt.Sprintf("Topology(%d)", int(t))
}

// ClusterNodes is what a TopologyCluster needs of its client besides
// redis.UniversalClient: the master serving a key (one circuit breaker per
// master) and every master (a walk SCANs each). *redis.ClusterClient is
// one.
type ClusterNodes interface {
	MasterForKey(ctx context.Context, key string) (*redis.Client, error)
	ForEachMaster(ctx context.Context, fn func(ctx context.Context, client *redis.Client) error) error
}

// checkTopology refuses a configuration whose topology the client cannot
// serve. What is cheap to check, is: a cluster needs its masters, and a
// cluster client under another topology would have its ordered writes
// split across masters and sent concurrently. A Sentinel client cannot be
// told from a single node's, and needs no telling: both hold every key on
// one connection.
func checkTopology(c *Config, rdb redis.UniversalClient) error {
	clusterClient, isCluster := rdb.(ClusterNodes)
	switch c.Topology {
	case TopologySingle, TopologySentinel:
		if c.Cluster != nil {
			return fmt.Errorf("redis topology %s: Config.Cluster is for TopologyCluster only", c.Topology)
		}
		if isCluster {
			return fmt.Errorf("redis topology %s, but the client is a cluster client: set TopologyCluster and Config.Cluster", c.Topology)
		}
	case TopologyCluster:
		if c.Cluster == nil {
			return errors.New("redis topology cluster needs Config.Cluster: the cluster client itself")
		}
		if isCluster && clusterClient != c.Cluster {
			return errors.New("redis topology cluster: Config.Cluster is not the client the Verifier was given")
		}
	default:
		return fmt.Errorf("redis topology %d: want TopologySingle, TopologySentinel or TopologyCluster", int(c.Topology))
	}
	return nil
}
