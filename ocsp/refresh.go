package ocsp

import (
	"context"
	"math/big"
	"runtime"
	"time"
)

// Refresh-ahead. A cached entry is served without asking the store until
// its cache age runs out (Config.CacheMaxAge after its status was read or,
// while the invalidation listener vouches for it, Config.VerifyMaxAge
// after: see Responder.servable); after that the request that finds it
// waits for a status read. Under load most entries are in use
// when their age runs out, and entries filled together (a warm-up, a
// restart) run out together, so that read would sit on the request path
// thousands of times a second: on PostgreSQL it is a network round trip
// per request.
//
// So an entry in its last quarter of cache age (refreshAt; a quarter of
// CacheMaxAge before VerifyMaxAge when vouched for) that is hit is
// queued for RunRefresher, which confirms the statuses of up to
// refreshBatch queued entries of a CA with one store query and renews
// those whose status is unchanged. Nothing is served longer than before:
// an entry that is not renewed in time still expires at its cache age and
// is then revalidated on the request path as before. A status that
// changed evicts the entry: the next request loads the right response.

const (
	// refreshQueue bounds the entries waiting for the refresher; a hit
	// that finds it full leaves its entry to be queued by a later hit.
	refreshQueue = 8192
	// refreshBatch is the most entries confirmed by one query. Batches
	// of 32 cost no more per status than batches of 500 (SQLite 10.7 µs,
	// PostgreSQL 7.9 µs, against 21.8 and 78 µs read one at a time:
	// BenchmarkCertificateStatuses in BENCHMARKS.md), and each burst of
	// refresher work stays well under a millisecond.
	refreshBatch = 32
)

// refreshJob is an entry queued for renewal under its cache key.
type refreshJob struct {
	e   *entry
	iss *issuerState
	h   HashAlg
	key slotKey
}

// queueRefresh asks the refresher to renew e, cached under key, once: the
// queued flag of its record stays set until the record is replaced. It
// never blocks.
func (r *Responder) queueRefresh(iss *issuerState, key []byte, e *entry) {
	if !r.refreshOn.Load() || !r.cache.markQueued(key, e.version) {
		return
	}
	j := refreshJob{e: e, iss: iss, h: HashAlg(key[1]), key: toSlotKey(key)}
	select {
	case r.refreshQ <- j:
	default:
		r.cache.unmarkQueued(key, e.version)
		r.metrics.refreshes[refreshDropped].Inc()
	}
}

// RunRefresher renews cached entries queued by hits near their cache age
// until ctx ends. Without it running, entries are revalidated on the
// request path once their cache age has passed.
func (r *Responder) RunRefresher(ctx context.Context) {
	r.refreshOn.Store(true)
	defer r.refreshOn.Store(false)
	batch := make([]refreshJob, 0, refreshBatch)
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return
		case j := <-r.refreshQ:
			batch = append(batch, j)
		}
	fill:
		for len(batch) < refreshBatch {
			select {
			case j := <-r.refreshQ:
				batch = append(batch, j)
			default:
				break fill
			}
		}
		r.refresh(ctx, batch)
		// Let waiting requests run before the next batch.
		runtime.Gosched()
	}
}

// refresh confirms the statuses of the queued entries, one query per CA,
// and renews, reloads or evicts each.
func (r *Responder) refresh(ctx context.Context, jobs []refreshJob) {
	serials := make([]string, 0, len(jobs))
	idx := make([]int, 0, len(jobs))
	for _, iss := range r.issuers {
		serials, idx = serials[:0], idx[:0]
		for i := range jobs {
			if jobs[i].iss == iss {
				key := jobs[i].key.bytes()
				serials = append(serials, new(big.Int).SetBytes(key[2:]).Text(16))
				idx = append(idx, i)
			}
		}
		if len(serials) == 0 {
			continue
		}
		// The statuses are read after now: an entry renewed from them
		// is never younger than what the store said.
		now := r.now()
		sts, err := r.store.CertificateStatuses(ctx, iss.id, serials)
		if err != nil {
			// The entries stay queued-marked: at their cache age the
			// request path revalidates them, or serves them stale.
			r.metrics.refreshes[refreshFailed].Add(float64(len(idx)))
			r.log.Warn("ocsp: renewing cached responses", "ca", iss.id, "entries", len(idx), "err", err)
			continue
		}
		for n, i := range idx {
			r.refreshOne(ctx, iss, &jobs[i], serials[n], sts, now)
		}
	}
}

func (r *Responder) refreshOne(ctx context.Context, iss *issuerState, j *refreshJob, serial string, sts map[string]CertStatus, now time.Time) {
	e, key := j.e, j.key.bytes()
	same := e.hasStatus(nil)
	if st, ok := sts[serial]; ok {
		same = e.hasStatus(&st)
	}
	switch {
	case !same:
		// Revoked, held or released by a process whose notice has not
		// arrived: the next request loads the right response.
		r.cache.evict(key)
		r.metrics.refreshes[refreshChanged].Inc()
	case instantOf(now) < e.revalidateUntil:
		if r.cache.replace(key, e, r.renewed(e, now)) {
			r.metrics.refreshes[refreshRenewed].Inc()
		}
	default:
		// Past half its validity the pre-signer has re-signed it.
		sr, err := r.store.Response(ctx, iss.id, serial, j.h)
		if err != nil || !now.Before(sr.NextUpdate) {
			// Left to the request path at its cache age.
			r.metrics.refreshes[refreshFailed].Inc()
			return
		}
		if r.cache.replace(key, e, r.storedEntry(sr, now)) {
			r.metrics.refreshes[refreshReloaded].Inc()
		}
	}
}

// refreshResult labels gmtrust_ocsp_cache_refreshes_total.
type refreshResult int

const (
	refreshRenewed  refreshResult = iota // status confirmed, cache age restarted
	refreshReloaded                      // replaced by the re-signed stored response
	refreshChanged                       // status changed: evicted
	refreshFailed                        // store error: left to the request path
	refreshDropped                       // queue full: left for a later hit
	refreshResultCount
)

func (k refreshResult) String() string {
	return [...]string{"renewed", "reloaded", "changed", "failed", "dropped"}[k]
}
