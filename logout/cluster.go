package logout

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// ClusterTracking is reads-mode tracking (see Tracking) on a Redis Cluster.
// Redis tracks keys per node: a node reports only the keys read from it,
// and only to a connection on that same node. So each node gets its own
// invalidation connection (a Subscriber on InvalidateChannel alone, with
// its own Tracking), and every pipeline the cluster client sends to a node
// starts with CLIENT TRACKING ON REDIRECT <that node's invalidation
// connection id>.
//
// The cache is on only while tracking is whole: the logout subscription is
// live, the slot map has been read, and every master in it, and every node
// a read went to, has a live invalidation connection. A node's connection
// lost, a new master appearing (a failover, a node added) and a MOVED or
// ASK reply (a slot moving) are handled as a lost subscription is: the
// cache is emptied and, until every invalidation connection is live again,
// bypassed.
type ClusterTracking struct {
	rdb *redis.ClusterClient
	cfg ClusterTrackingConfig

	mu       sync.RWMutex
	h        Handler     // set by Wrap
	counts   *Subscriber // whose invalidation metrics the nodes add to (Count)
	nodes    map[string]*nodeTracker
	main     bool // the logout subscription is live
	mapped   bool // the slot map was read at least once
	reported bool // what h last heard through Subscribed
	ctx      context.Context
	wg       sync.WaitGroup
}

// ClusterTrackingConfig configures a ClusterTracking.
type ClusterTrackingConfig struct {
	// NewNodeClient returns a client for one node's invalidation
	// connection: RESP2, a small pool, onConnect as its
	// redis.Options.OnConnect.
	NewNodeClient func(addr string, onConnect func(context.Context, *redis.Conn) error) *redis.Client
	// Heartbeat: each node's subscription's (SubscriberConfig.Heartbeat),
	// and how often the slot map is read to find new masters (default 1s).
	Heartbeat  time.Duration
	MaxBackoff time.Duration
	// Timeout bounds each read of the slot map (default 1s).
	Timeout time.Duration
	Logger  *slog.Logger
}

// nodeTracker is one node's invalidation connection.
type nodeTracker struct {
	addr string
	tr   *Tracking
	live bool
	stop context.CancelFunc
}

// NewClusterTracking returns a ClusterTracking for rdb and installs its
// per-node hooks (rdb.OnNewNode): call it before rdb sends any command, so
// that no node is read from unarmed.
func NewClusterTracking(rdb *redis.ClusterClient, cfg ClusterTrackingConfig) *ClusterTracking {
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ct := &ClusterTracking{rdb: rdb, cfg: cfg, nodes: map[string]*nodeTracker{}}
	rdb.OnNewNode(func(c *redis.Client) { c.AddHook(nodeHook{ct, c.Options().Addr}) })
	return ct
}

// Wrap returns the Handler for the logout Subscriber: it passes events to h
// and tells h the subscription is live only while tracking is whole. All of
// ct's calls into h are made one at a time.
func (ct *ClusterTracking) Wrap(h Handler) Handler {
	ct.mu.Lock()
	ct.h = h
	ct.mu.Unlock()
	return clusterHandler{ct}
}

// Count makes the node connections count their invalidations in sub's
// metrics (authz_tracking_messages_total and the like), sub being the
// logout Subscriber. Call it before Run.
func (ct *ClusterTracking) Count(sub *Subscriber) {
	ct.mu.Lock()
	ct.counts = sub
	ct.mu.Unlock()
}

// Enabled reports whether tracking is whole: every node that matters has a
// live invalidation connection, and so does the logout subscription, and
// no node refused CLIENT TRACKING. Where one refused (an ACL without
// CLIENT), the cache still follows the subscriptions, as on a single node,
// and Enabled is false: sessions deleted there without an event stop
// passing within the cache TTL.
func (ct *ClusterTracking) Enabled() bool {
	ct.mu.RLock()
	defer ct.mu.RUnlock()
	if !ct.reported {
		return false
	}
	for _, n := range ct.nodes {
		if !n.tr.Enabled() {
			return false
		}
	}
	return true
}

// Run reads the slot map every Heartbeat, starting an invalidation
// connection for each new master and ending those of nodes that are gone,
// until ctx ends; then it waits for the node subscriptions to end. Start it
// with the logout Subscriber.
func (ct *ClusterTracking) Run(ctx context.Context) {
	ct.mu.Lock()
	ct.ctx = ctx
	ct.mu.Unlock()
	t := time.NewTicker(ct.cfg.Heartbeat)
	defer t.Stop()
	for {
		ct.checkReaders(ctx, ct.refresh(ctx))
		select {
		case <-ctx.Done():
			ct.mu.Lock()
			for _, n := range ct.nodes {
				n.stop()
			}
			ct.mu.Unlock()
			ct.wg.Wait()
			return
		case <-t.C:
		}
	}
}

// checkReaders runs each node's Tracking.CheckReaders over the cluster
// client's own connection to that master (not the node's invalidation
// client, whose OnConnect would take it for a new invalidation
// connection). Each check has five heartbeats, as on one Redis: one that
// times out costs go-redis the armed connection it ran on, which the next
// check would take for a loss.
func (ct *ClusterTracking) checkReaders(ctx context.Context, masters map[string]*redis.Client) {
	var wg sync.WaitGroup
	for addr, c := range masters {
		ct.mu.RLock()
		n := ct.nodes[addr]
		ct.mu.RUnlock()
		if n == nil || n.tr == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, 5*ct.cfg.Heartbeat)
			defer cancel()
			if err := n.tr.CheckReaders(cctx, c); err != nil && ctx.Err() == nil {
				n.tr.checkFailed(err)
			}
		}()
	}
	wg.Wait()
}

// refresh reads the slot map and brings the node set in line with it. It
// returns go-redis's client of each master (nil when the map could not be
// read), for checkReaders.
func (ct *ClusterTracking) refresh(ctx context.Context) map[string]*redis.Client {
	// ForEachMaster reloads go-redis's own slot map and names each master
	// by the address go-redis reaches it at (which may differ from what
	// CLUSTER SLOTS says: go-redis replaces a loopback host with the
	// seed's), so the hooks' addresses match these.
	var mu sync.Mutex
	masters := map[string]*redis.Client{}
	rctx, cancel := context.WithTimeout(ctx, ct.cfg.Timeout)
	err := ct.rdb.ForEachMaster(rctx, func(_ context.Context, c *redis.Client) error {
		mu.Lock()
		masters[c.Options().Addr] = c
		mu.Unlock()
		return nil
	})
	cancel()
	if err != nil || len(masters) == 0 {
		if ctx.Err() == nil {
			ct.cfg.Logger.Debug("read the cluster slot map", "err", err)
		}
		return nil
	}
	ct.mu.Lock()
	defer ct.mu.Unlock()
	for addr := range masters {
		ct.startLocked(addr)
	}
	for addr, n := range ct.nodes {
		// A node no master any more and not reachable (failed over,
		// removed) no longer holds the cache back; one still live
		// stays, harmless, in case it is promoted again.
		if masters[addr] == nil && !n.live {
			n.stop()
			delete(ct.nodes, addr)
			ct.cfg.Logger.Info("invalidation connection ended: the node is no longer a master", "node", addr)
		}
	}
	ct.mapped = true
	ct.updateLocked()
	return masters
}

// tracker returns addr's Tracking, starting its invalidation connection if
// there is none yet (a read going to a node the slot map did not name).
func (ct *ClusterTracking) tracker(addr string) *Tracking {
	ct.mu.RLock()
	n := ct.nodes[addr]
	ct.mu.RUnlock()
	if n != nil {
		return n.tr
	}
	ct.mu.Lock()
	defer ct.mu.Unlock()
	n = ct.startLocked(addr)
	ct.updateLocked()
	return n.tr
}

// startLocked starts addr's invalidation connection unless it has one. It
// only counts as live once subscribed, so a new node first turns the cache
// off. Before Run there is no context to run it under: it is recorded, not
// live, and started by Run's first refresh.
func (ct *ClusterTracking) startLocked(addr string) *nodeTracker {
	if n := ct.nodes[addr]; n != nil && (n.stop != nil || ct.ctx == nil) {
		return n
	}
	tr, _ := NewReadTracking("", ct.cfg.Logger.With("node", addr), nil)
	n := &nodeTracker{addr: addr, tr: tr}
	ct.nodes[addr] = n
	if ct.ctx == nil {
		return n
	}
	ctx, cancel := context.WithCancel(ct.ctx)
	n.stop = cancel
	c := ct.cfg.NewNodeClient(addr, tr.OnConnect)
	sub, _ := NewSubscriber(c, tr.Wrap(nodeHandler{ct, n}), SubscriberConfig{
		Heartbeat: ct.cfg.Heartbeat, MaxBackoff: ct.cfg.MaxBackoff,
		Logger: ct.cfg.Logger.With("node", addr), InvalidationsOnly: true,
	}, nil)
	if ct.counts != nil {
		m := &ct.counts.m
		sub.m.trackingMsgs, sub.m.invalidated, sub.m.flushes = m.trackingMsgs, m.invalidated, m.flushes
	}
	ct.wg.Add(1)
	go func() {
		defer ct.wg.Done()
		defer c.Close()
		sub.Run(ctx)
	}()
	ct.cfg.Logger.Info("invalidation connection started", "node", addr)
	return n
}

// updateLocked tells h whether tracking is whole, when that changed.
func (ct *ClusterTracking) updateLocked() {
	whole := ct.main && ct.mapped
	for _, n := range ct.nodes {
		whole = whole && n.live
	}
	if whole == ct.reported || ct.h == nil {
		return
	}
	ct.reported = whole
	ct.h.Subscribed(whole)
}

// flush empties the cache: a slot moved under a cached session.
func (ct *ClusterTracking) flush() {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	if ct.h != nil {
		ct.h.KeysChanged(nil)
	}
}

// clusterHandler is the logout Subscriber's Handler.
type clusterHandler struct{ ct *ClusterTracking }

func (h clusterHandler) Logout(e Event) {
	h.ct.mu.Lock()
	defer h.ct.mu.Unlock()
	h.ct.h.Logout(e)
}

func (h clusterHandler) KeysChanged(keys []string) {
	h.ct.mu.Lock()
	defer h.ct.mu.Unlock()
	h.ct.h.KeysChanged(keys)
}

func (h clusterHandler) Subscribed(live bool) {
	h.ct.mu.Lock()
	defer h.ct.mu.Unlock()
	h.ct.main = live
	if !live {
		// Report it even if tracking was not whole: Run's first call
		// tells h not to cache before anything is live.
		h.ct.reported = false
		h.ct.h.Subscribed(false)
		return
	}
	h.ct.updateLocked()
}

// nodeHandler is one node's invalidation Subscriber's Handler.
type nodeHandler struct {
	ct *ClusterTracking
	n  *nodeTracker
}

func (h nodeHandler) Logout(Event) {} // never subscribed to events

func (h nodeHandler) KeysChanged(keys []string) {
	h.ct.mu.Lock()
	defer h.ct.mu.Unlock()
	if h.ct.h != nil {
		h.ct.h.KeysChanged(keys)
	}
}

func (h nodeHandler) Subscribed(live bool) {
	h.ct.mu.Lock()
	defer h.ct.mu.Unlock()
	if h.ct.nodes[h.n.addr] != h.n {
		return // ended: no longer counts
	}
	h.n.live = live
	if !live && h.ct.reported {
		h.ct.cfg.Logger.Warn("a node's invalidation connection was lost; local cache flushed and bypassed until it is back", "node", h.n.addr)
	}
	h.ct.updateLocked()
}

// nodeHook arms every pipeline sent to one node (redis.Hook).
type nodeHook struct {
	ct   *ClusterTracking
	addr string
}

func (h nodeHook) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h nodeHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

// ProcessPipelineHook puts CLIENT TRACKING ON REDIRECT <this node's
// invalidation connection> before the pipeline (Tracking.ProcessPipelineHook),
// and empties the cache when a reply says a slot moved.
func (h nodeHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := h.ct.tracker(h.addr).ProcessPipelineHook(next)(ctx, cmds)
		for _, c := range cmds {
			if e := c.Err(); e != nil && (strings.HasPrefix(e.Error(), "MOVED ") || strings.HasPrefix(e.Error(), "ASK ")) {
				h.ct.flush()
				break
			}
		}
		return err
	}
}
