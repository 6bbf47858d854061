package authz

import (
	"context"
	"sync"
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
	// maxRevivedWatched bounds the keys watched: beyond it the watch
	// nearest its end makes room.
	maxRevivedWatched = 10000
	// revivedReaders is how many reads of watched keys run at once; more
	// wait their turn, each key read once however often it was asked for.
	revivedReaders = 8
)

// revivedWatch is the set of session keys watched after their logout.
type revivedWatch struct {
	mu      sync.Mutex
	until   map[string]revivedKey // session key → its watch
	pending map[string]revivedKey // keys to read, each once
	readers int
}

type revivedKey struct {
	t   *tenant
	sid string
	end int64 // end of the watch, unix ns
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
	w := &v.revived
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, t := range list {
		if f := t.format.format(); f != FormatExpressSession && f != FormatFastifySession {
			continue
		}
		key := t.store.prefix + sid
		if w.until == nil {
			w.until = map[string]revivedKey{}
		}
		if _, ok := w.until[key]; !ok && len(w.until) >= maxRevivedWatched {
			w.makeRoomLocked(now)
		}
		rk := revivedKey{t: t, sid: sid, end: now + int64(revivedWatchFor)}
		w.until[key] = rk
		v.readRevivedLocked(key, rk)
	}
}

// makeRoomLocked drops the ended watches, or else the one nearest its end.
func (w *revivedWatch) makeRoomLocked(now int64) {
	nearest, end := "", int64(0)
	for k, rk := range w.until {
		if rk.end <= now {
			delete(w.until, k)
		} else if nearest == "" || rk.end < end {
			nearest, end = k, rk.end
		}
	}
	if len(w.until) >= maxRevivedWatched {
		delete(w.until, nearest)
	}
}

// keyWritten reads a watched session key again: Redis reported it written.
func (v *Verifier) keyWritten(key string) {
	w := &v.revived
	w.mu.Lock()
	defer w.mu.Unlock()
	rk, ok := w.until[key]
	if !ok {
		return
	}
	if rk.end <= v.cfg.Now().UnixNano() {
		delete(w.until, key)
		return
	}
	v.readRevivedLocked(key, rk)
}

// rearmRevived reads every watched key again: tracking was lost or
// replaced (a new invalidation connection, a reading connection gone,
// FLUSHALL), and Redis reports a key's writes only after a read on the
// tracking it has now.
func (v *Verifier) rearmRevived() {
	w := &v.revived
	now := v.cfg.Now().UnixNano()
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, rk := range w.until {
		if rk.end <= now {
			delete(w.until, k)
			continue
		}
		v.readRevivedLocked(k, rk)
	}
}

// readRevivedLocked queues key for a read as a cache miss would do it, not
// caching it: store.load ends a session found beside its marker, and with
// reads-mode tracking the read arms tracking for the key's next write.
func (v *Verifier) readRevivedLocked(key string, rk revivedKey) {
	w := &v.revived
	if w.pending == nil {
		w.pending = map[string]revivedKey{}
	}
	w.pending[key] = rk
	if w.readers < revivedReaders {
		w.readers++
		go v.revivedReader()
	}
}

func (v *Verifier) revivedReader() {
	w := &v.revived
	for {
		w.mu.Lock()
		var rk revivedKey
		found := false
		for k, p := range w.pending {
			delete(w.pending, k)
			rk, found = p, true
			break
		}
		if !found {
			w.readers--
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
		_, _, _ = rk.t.store.load(context.Background(), rk.sid) // bounded by the store's timeout
	}
}
