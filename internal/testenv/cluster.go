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

// Cluster is a Redis Cluster of three masters (no replicas) started for
// one test, every slot assigned.
type Cluster struct {
	Nodes []*Redis
	t     testing.TB
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
	dir := t.TempDir()
	c := &Cluster{t: t}
	var bus0 int
	for i := range 3 {
		bus := FreePort(t)
		if i == 0 {
			bus0 = bus
		}
		// The bus port is chosen too: port+10000, the default, may fall in
		// the kernel's ephemeral range (see FreePort).
		n := StartRedisArgs(t, append([]string{"--cluster-enabled", "yes", "--cluster-port", strconv.Itoa(bus),
			"--cluster-config-file", filepath.Join(dir, fmt.Sprintf("nodes-%d.conf", i)),
			"--cluster-node-timeout", "2000", "--dir", dir}, args...)...)
		c.Nodes = append(c.Nodes, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const slots = 16384
	for i, n := range c.Nodes {
		rc := redis.NewClient(&redis.Options{Addr: n.Addr})
		err := rc.ClusterAddSlotsRange(ctx, i*slots/3, (i+1)*slots/3-1).Err()
		if err == nil {
			// Distinct epochs, as redis-cli sets them, spare the nodes
			// resolving a collision first.
			err = rc.Do(ctx, "CLUSTER", "SET-CONFIG-EPOCH", i+1).Err()
		}
		if err == nil && i > 0 {
			// MEET names the bus port, which is not the default port+10000.
			host, port, _ := net.SplitHostPort(c.Nodes[0].Addr)
			err = rc.Do(ctx, "CLUSTER", "MEET", host, port, bus0).Err()
		}
		rc.Close()
		if err != nil {
			t.Fatalf("set up cluster node %s: %v", n.Addr, err)
		}
	}
	for _, n := range c.Nodes {
		WaitFor(t, 20*time.Second, "cluster_state:ok on "+n.Addr, func() bool {
			ci := clusterInfo(n.Addr)
			return strings.Contains(ci, "cluster_state:ok") && strings.Contains(ci, "cluster_known_nodes:3")
		})
	}
	return c
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
			for _, n := range c.Nodes {
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
