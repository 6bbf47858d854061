package authz

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// An Express request that loaded a session before its logout may save it
// back after it (a late save, docs/logout.md). A read through authz finds
// the key beside its revocation marker and ends it again (store.load), but
// an attacker who keeps asking only the apps that read the session
// themselves (node-reader, the login app's own routes) sends authz nothing
// to read, and those apps keep the revived session alive. So when an
// instance hears a session's logout it reads the session once, through
// the tracked read path, and again each time Redis reports its key written,
// for revivedWatchFor: a late save is ended again within an invalidation's
// round trip, and the read arms tracking for the next one.
const (
	revivedWatchFor = time.Minute
	// maxRevivedWatched bounds the keys watched: beyond it a logout is
	// not watched (a read through authz still ends a revival).
	maxRevivedWatched = 10000
	// maxRevivedReads bounds the reads in flight; one over it is skipped,
	// and the next write of the key asks again.
	maxRevivedReads = 8
)

// revivedWatch is the set of session keys watched after their logout.
type revivedWatch struct {
	mu    sync.Mutex
	until map[string]int64 // session key → end of its watch, unix ns
	reads atomic.Int32
}

// watchRevived starts watching sid's key in the named tenant (every
// tenant with a stored session format when the name is unknown: reading
// too much costs a read, too little a revival) and reads it once.
func (v *Verifier) watchRevived(tenantName, sid string) {
	if sid == "" {
		return
	}
	ts := v.tenants.Load()
	var list []*tenant
	if t := ts.byName[tenantName]; t != nil {
		list = []*tenant{t}
	} else if ts.single != nil {
		list = []*tenant{ts.single}
	} else {
		for _, t := range ts.byPrefix {
			list = append(list, t)
		}
	}
	now := v.cfg.Now().UnixNano()
	for _, t := range list {
		if f := t.format.format(); f != FormatExpressSession && f != FormatFastifySession {
			continue
		}
		key := t.store.prefix + sid
		w := &v.revived
		w.mu.Lock()
		if w.until == nil {
			w.until = map[string]int64{}
		}
		if len(w.until) >= maxRevivedWatched {
			for k, end := range w.until {
				if end <= now {
					delete(w.until, k)
				}
			}
		}
		watched := len(w.until) < maxRevivedWatched
		if watched {
			w.until[key] = now + int64(revivedWatchFor)
		}
		w.mu.Unlock()
		if watched {
			v.readRevived(t, sid)
		}
	}
}

// keyWritten reads a watched session key again: Redis reported it written.
func (v *Verifier) keyWritten(t *tenant, key, sid string) {
	w := &v.revived
	w.mu.Lock()
	end, ok := w.until[key]
	if ok && end <= v.cfg.Now().UnixNano() {
		delete(w.until, key)
		ok = false
	}
	w.mu.Unlock()
	if ok {
		v.readRevived(t, sid)
	}
}

// readRevived reads sid as a cache miss would, not caching it: store.load
// ends a session found beside its marker, and with reads-mode tracking
// the read arms tracking for the key's next write.
func (v *Verifier) readRevived(t *tenant, sid string) {
	w := &v.revived
	if w.reads.Add(1) > maxRevivedReads {
		w.reads.Add(-1)
		return
	}
	go func() {
		defer w.reads.Add(-1)
		_, _, _ = t.store.load(context.Background(), sid) // load bounds itself by the store's timeout
	}()
}
