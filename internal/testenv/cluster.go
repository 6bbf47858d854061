package testenv

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster of three masters started for one test, every
// slot assigned; with StartClusterReplicas, one replica for each.
type Cluster struct {
	// Nodes are the masters as started (after a Failover, Nodes[i] may be
	// the replica of Replicas[i]).
	Nodes []*Redis
	// Replicas[i] replicates Nodes[i]; empty without StartClusterReplicas.
	Replicas []*Redis
	t        testing.TB
}

// StartCluster starts three redis-server nodes in cluster mode, gives each
// a third of the 16384 slots (CLUSTER ADDSLOTSRANGE), introduces them to
// each other (CLUSTER MEET), and waits until every node reports
// cluster_state:ok. It does by hand what redis-cli --cluster create does,
// without its one-second polling.
func StartCluster(t testing.TB) *Cluster { return StartClusterArgs(t) }

// StartClusterArgs is StartCluster with more redis-server arguments for
// every node (e.g. --rename-command to take a command away).
func StartClusterArgs(t testing.TB, args ...string) *Cluster {
	t.Helper()
	return startCluster(t, false, args)
}

// StartClusterReplicas is StartCluster with one replica for each master
// (CLUSTER REPLICATE), each in sync with its master when it returns: six
// nodes, for failover stories (Failover).
func StartClusterReplicas(t testing.TB) *Cluster {
	t.Helper()
	return startCluster(t, true, nil)
}

func startCluster(t testing.TB, replicas bool, args []string) *Cluster {
	dir := t.TempDir()
	c := &Cluster{t: t}
	n := 3
	if replicas {
		n = 6
	}
	var bus0 int
	var all []*Redis
	for i := range n {
		bus := FreePort(t)
		if i == 0 {
			bus0 = bus
		}
		// The bus port is chosen too: port+10000, the default, may fall in
		// the kernel's ephemeral range (see FreePort). No diskless sync
		// delay: a replica is in sync at once.
		r := StartRedisArgs(t, append([]string{"--cluster-enabled", "yes", "--cluster-port", strconv.Itoa(bus),
			"--cluster-config-file", filepath.Join(dir, fmt.Sprintf("nodes-%d.conf", i)),
			"--cluster-node-timeout", "2000", "--dir", dir, "--repl-diskless-sync-delay", "0"}, args...)...)
		all = append(all, r)
	}
	c.Nodes = all[:3]
	c.Replicas = all[3:]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const slots = 16384
	for i, r := range all {
		rc := redis.NewClient(&redis.Options{Addr: r.Addr})
		var err error
		if i < 3 {
			err = rc.ClusterAddSlotsRange(ctx, i*slots/3, (i+1)*slots/3-1).Err()
			if err == nil {
				// Distinct epochs, as redis-cli sets them, spare the
				// nodes resolving a collision first.
				err = rc.Do(ctx, "CLUSTER", "SET-CONFIG-EPOCH", i+1).Err()
			}
		}
		if err == nil && i > 0 {
			// MEET names the bus port, which is not the default port+10000.
			host, port, _ := net.SplitHostPort(all[0].Addr)
			err = rc.Do(ctx, "CLUSTER", "MEET", host, port, bus0).Err()
		}
		rc.Close()
		if err != nil {
			t.Fatalf("set up cluster node %s: %v", r.Addr, err)
		}
	}
	known := fmt.Sprintf("cluster_known_nodes:%d", n)
	for _, r := range all {
		WaitFor(t, 20*time.Second, "cluster_state:ok on "+r.Addr, func() bool {
			ci := clusterInfo(r.Addr)
			return strings.Contains(ci, "cluster_state:ok") && strings.Contains(ci, known)
		})
	}
	for i, r := range c.Replicas {
		m := c.Nodes[i]
		id := nodeID(t, m)
		rc := redis.NewClient(&redis.Options{Addr: r.Addr})
		// The replica must know the master's id first: MEET spreads by
		// gossip, which WaitFor above saw complete.
		WaitFor(t, 10*time.Second, r.Addr+" to replicate "+m.Addr, func() bool {
			return rc.Do(ctx, "CLUSTER", "REPLICATE", id).Err() == nil
		})
		rc.Close()
		WaitFor(t, 20*time.Second, r.Addr+" in sync with "+m.Addr, func() bool {
			return strings.Contains(info(r.Addr, "replication"), "master_link_status:up")
		})
	}
	for _, r := range all {
		WaitFor(t, 20*time.Second, "every node to see the replicas on "+r.Addr, func() bool {
			return strings.Count(clusterNodes(r.Addr), "slave") == len(c.Replicas) &&
				strings.Contains(clusterInfo(r.Addr), "cluster_state:ok")
		})
	}
	return c
}

// ReplicaOf is the replica started for master Nodes[i] (StartClusterReplicas).
func (c *Cluster) ReplicaOf(master *Redis) *Redis {
	c.t.Helper()
	for i, n := range c.Nodes {
		if n == master && i < len(c.Replicas) {
			return c.Replicas[i]
		}
	}
	c.t.Fatalf("no replica of %s", master.Addr)
	return nil
}

// Failover promotes replica with CLUSTER FAILOVER, the manual failover
// of maintenance: its master stops taking writes, waits until the replica
// has caught up, and the replica takes over its slots. It returns once the
// replica answers as a master (ROLE) and takes writes for its slots.
func (c *Cluster) Failover(replica *Redis) {
	c.t.Helper()
	rc := redis.NewClient(&redis.Options{Addr: replica.Addr})
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rc.Do(ctx, "CLUSTER", "FAILOVER").Err(); err != nil {
		c.t.Fatalf("CLUSTER FAILOVER on %s: %v", replica.Addr, err)
	}
	WaitFor(c.t, 10*time.Second, replica.Addr+" to be a master", func() bool {
		role, err := rc.Do(ctx, "ROLE").Slice()
		return err == nil && len(role) > 0 && role[0] == "master"
	})
}

func nodeID(t testing.TB, r *Redis) string {
	t.Helper()
	rc := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	id, err := rc.Do(ctx, "CLUSTER", "MYID").Text()
	if err != nil {
		t.Fatalf("CLUSTER MYID on %s: %v", r.Addr, err)
	}
	return id
}

func clusterNodes(addr string) string {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s, _ := c.ClusterNodes(ctx).Result()
	return s
}

// Addrs are the nodes' host:port.
func (c *Cluster) Addrs() []string {
	var out []string
	for _, n := range c.Nodes {
		out = append(out, n.Addr)
	}
	return out
}

// URL is the redis+cluster:// URL authz takes for this cluster.
func (c *Cluster) URL() string { return "redis+cluster://" + strings.Join(c.Addrs(), ",") }

// Client returns a go-redis cluster client, closed with the test.
func (c *Cluster) Client() *redis.ClusterClient {
	rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	c.t.Cleanup(func() { rc.Close() })
	return rc
}

// NodeOf is the node holding key.
func (c *Cluster) NodeOf(key string) *Redis {
	c.t.Helper()
	rc := redis.NewClient(&redis.Options{Addr: c.Nodes[0].Addr})
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	slot, err := rc.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		c.t.Fatalf("CLUSTER KEYSLOT %s: %v", key, err)
	}
	slots, err := rc.ClusterSlots(ctx).Result()
	if err != nil {
		c.t.Fatalf("CLUSTER SLOTS: %v", err)
	}
	for _, s := range slots {
		if int64(s.Start) <= slot && slot <= int64(s.End) && len(s.Nodes) > 0 {
			for _, n := range append(c.Nodes[:len(c.Nodes):len(c.Nodes)], c.Replicas...) {
				if n.Addr == s.Nodes[0].Addr {
					return n
				}
			}
		}
	}
	c.t.Fatalf("no node serves slot %d of %s", slot, key)
	return nil
}

func clusterInfo(addr string) string {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s, _ := c.ClusterInfo(ctx).Result()
	return s
}

// MoveSlot moves the slot of key, and the keys in it, to node to, the way
// redis-cli --cluster reshard does: IMPORTING on the target, MIGRATING on
// the source, MIGRATE the keys, then every node is told the new owner.
// between runs after the first two steps, so a test can check clients
// meanwhile (they get ASK, then MOVED, redirects).
func (c *Cluster) MoveSlot(key string, to *Redis, between func(step string)) {
	c.t.Helper()
	from := c.NodeOf(key)
	if from == to {
		c.t.Fatalf("MoveSlot: %s is already on %s", key, to.Addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	do := func(n *Redis, args ...any) *redis.Cmd {
		rc := redis.NewClient(&redis.Options{Addr: n.Addr})
		defer rc.Close()
		cmd := rc.Do(ctx, args...)
		if err := cmd.Err(); err != nil {
			c.t.Fatalf("%s on %s: %v", fmt.Sprint(args...), n.Addr, err)
		}
		return cmd
	}
	id := func(n *Redis) string { s, _ := do(n, "CLUSTER", "MYID").Text(); return s }
	slot, _ := do(from, "CLUSTER", "KEYSLOT", key).Int64()
	fromID, toID := id(from), id(to)
	do(to, "CLUSTER", "SETSLOT", slot, "IMPORTING", fromID)
	do(from, "CLUSTER", "SETSLOT", slot, "MIGRATING", toID)
	between("migrating")
	keys, _ := do(from, "CLUSTER", "GETKEYSINSLOT", slot, 1000).StringSlice()
	if len(keys) > 0 {
		host, port, _ := net.SplitHostPort(to.Addr)
		args := []any{"MIGRATE", host, port, "", 0, 5000, "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		do(from, args...)
	}
	between("keys moved")
	for _, n := range c.Nodes {
		do(n, "CLUSTER", "SETSLOT", slot, "NODE", toID)
	}
	if got := c.NodeOf(key); got != to {
		c.t.Fatalf("MoveSlot: %s still on %s", key, got.Addr)
	}
}
