package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelMaster is the master name StartSentinel's sentinels monitor.
const SentinelMaster = "mymaster"

// Sentinel is a Redis Sentinel deployment started for one test: one
// master, one replica and three sentinels with a quorum of two, tuned so
// that a failover takes a second or two rather than the default half
// minute.
type Sentinel struct {
	// Nodes are the data nodes; Nodes[0] is the master at start.
	Nodes []*Redis
	// Addrs are the sentinels' host:port.
	Addrs     []string
	sentinels []*Process
	t         testing.TB
}

// StartSentinel starts the master, its replica and three sentinels, and
// waits until every sentinel knows the replica and the other two
// sentinels (without that, a failover finds no replica to promote or no
// majority to authorise it).
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	// Redis delays a full sync by 5 s by default, waiting for more replicas
	// to share it; here there is one, and the old master syncs from the new
	// one after a failover.
	noDelay := []string{"--repl-diskless-sync-delay", "0"}
	master := StartRedisArgs(t, noDelay...)
	_, port, _ := net.SplitHostPort(master.Addr)
	replica := StartRedisArgs(t, append(noDelay, "--replicaof", "127.0.0.1", port)...)
	s := &Sentinel{Nodes: []*Redis{master, replica}, t: t}
	WaitFor(t, 10*time.Second, "the replica to sync with the master", func() bool {
		return strings.Contains(info(replica.Addr, "replication"), "master_link_status:up")
	})

	// Each sentinel is told of the replica and of the other sentinels
	// (known-replica, known-sentinel, with ids set by myid) rather than
	// left to discover them through hello messages, which takes seconds.
	dir := t.TempDir()
	ports := make([]int, 3)
	ids := make([]string, 3)
	for i := range ports {
		ports[i] = FreePort(t)
		ids[i] = fmt.Sprintf("%040x", i+1)
		s.Addrs = append(s.Addrs, net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[i])))
	}
	_, rport, _ := net.SplitHostPort(replica.Addr)
	for i := range ports {
		m := SentinelMaster
		var b strings.Builder
		fmt.Fprintf(&b, "port %d\nbind 127.0.0.1\nprotected-mode no\ndir %s\nsentinel myid %s\n", ports[i], dir, ids[i])
		fmt.Fprintf(&b, "sentinel monitor %s 127.0.0.1 %s 2\n", m, port)
		fmt.Fprintf(&b, "sentinel down-after-milliseconds %s 1000\nsentinel failover-timeout %s 5000\nsentinel parallel-syncs %s 1\n", m, m, m)
		fmt.Fprintf(&b, "sentinel known-replica %s 127.0.0.1 %s\n", m, rport)
		for j := range ports {
			if j != i {
				fmt.Fprintf(&b, "sentinel known-sentinel %s 127.0.0.1 %d %s\n", m, ports[j], ids[j])
			}
		}
		// Sentinel rewrites its config file as it learns, so each gets
		// its own, writable one.
		conf := filepath.Join(dir, fmt.Sprintf("sentinel-%d.conf", i))
		if err := os.WriteFile(conf, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		s.sentinels = append(s.sentinels, Start(t, "redis-server", conf, "--sentinel"))
	}
	for i, addr := range s.Addrs {
		WaitFor(t, 20*time.Second, "sentinel "+addr+" to know the replica and the other sentinels", func() bool {
			if s.sentinels[i].Exited() {
				t.Fatalf("sentinel %s exited: %v\n%s", addr, s.sentinels[i].Wait(), s.sentinels[i].Output())
			}
			m := sentinelMaster(addr)
			return m["num-slaves"] == "1" && m["num-other-sentinels"] == "2" && m["flags"] == "master"
		})
	}
	return s
}

// URL is the redis+sentinel:// URL authz takes for this deployment.
func (s *Sentinel) URL() string {
	return fmt.Sprintf("redis+sentinel://%s/0?master_name=%s", strings.Join(s.Addrs, ","), SentinelMaster)
}

// MasterAddr is the master's address as the first sentinel that answers
// sees it.
func (s *Sentinel) MasterAddr() string {
	for _, addr := range s.Addrs {
		if m := sentinelMaster(addr); m["ip"] != "" {
			return net.JoinHostPort(m["ip"], m["port"])
		}
	}
	return ""
}

// Master is the data node that is master now.
func (s *Sentinel) Master() *Redis {
	s.t.Helper()
	addr := s.MasterAddr()
	for _, n := range s.Nodes {
		if n.Addr == addr {
			return n
		}
	}
	s.t.Fatalf("no data node at the master address %q", addr)
	return nil
}

// Client returns a go-redis Sentinel client for the deployment, closed
// with the test.
func (s *Sentinel) Client() *redis.Client {
	c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: SentinelMaster, SentinelAddrs: s.Addrs})
	s.t.Cleanup(func() { c.Close() })
	return c
}

// Failover asks a sentinel for a failover (SENTINEL FAILOVER, which needs
// no agreement) and returns once every sentinel names the new master and
// it accepts writes. It returns the old and the new master's addresses.
func (s *Sentinel) Failover() (old, now string) {
	s.t.Helper()
	old = s.MasterAddr()
	c := redis.NewClient(&redis.Options{Addr: s.Addrs[0]})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Do(ctx, "SENTINEL", "FAILOVER", SentinelMaster).Err(); err != nil {
		s.t.Fatalf("SENTINEL FAILOVER: %v", err)
	}
	s.WaitMasterMoved(old, 20*time.Second)
	return old, s.MasterAddr()
}

// WaitMasterMoved waits until every sentinel names a master other than old
// and that master answers as one.
func (s *Sentinel) WaitMasterMoved(old string, within time.Duration) {
	s.t.Helper()
	WaitFor(s.t, within, "every sentinel to name a new master", func() bool {
		for _, addr := range s.Addrs {
			m := sentinelMaster(addr)
			if m["ip"] == "" || net.JoinHostPort(m["ip"], m["port"]) == old {
				return false
			}
		}
		return strings.Contains(info(s.MasterAddr(), "replication"), "role:master")
	})
}

// sentinelMaster is SENTINEL MASTER mymaster as a map; empty when the
// sentinel does not answer.
func sentinelMaster(addr string) map[string]string {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, Protocol: 2})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	v, err := c.Do(ctx, "SENTINEL", "MASTER", SentinelMaster).Slice()
	if err != nil {
		return nil
	}
	m := map[string]string{}
	for i := 0; i+1 < len(v); i += 2 {
		m[fmt.Sprint(v[i])] = fmt.Sprint(v[i+1])
	}
	return m
}

// info is INFO section of the Redis at addr; empty when it does not answer.
func info(addr, section string) string {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s, _ := c.Info(ctx, section).Result()
	return s
}

// StopSentinels stops the three sentinels, leaving master and replica up.
func (s *Sentinel) StopSentinels() {
	for _, p := range s.sentinels {
		p.Stop()
	}
}
