package ca

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/gmtrust/gmtrust/internal/sigalg"
)

// GenerateCRL builds, signs and stores a new CRL for a CA. The store
// serialises generation so CRL numbers strictly increase across processes.
func (a *Authority) GenerateCRL(ctx context.Context, caID string) (*CRLRecord, error) {
	iss, ok := a.issuers[caID]
	if !ok {
		return nil, reqErr(ProblemUnknownCA, fmt.Sprintf("no CA %q", caID), ErrNotFound)
	}
	start := a.now()
	var entries int
	rec, err := a.store.NextCRL(ctx, caID, func(number int64) (*CRLRecord, error) {
		now := a.now().UTC().Truncate(time.Second)
		p := crlParams{alg: iss.alg, issuer: iss.cert.RawSubject, aki: iss.ski, number: number,
			thisUpdate: now, nextUpdate: now.Add(a.cfg.CRLValidity)}
		der, err := encodeCRL(p, func(app *entryAppender) error {
			n, err := a.collectEntries(ctx, caID, now, app)
			entries = n
			return err
		}, func(tbs []byte) ([]byte, error) {
			sig, _, err := sigalg.SignWithRand(a.rand, iss.signer, tbs)
			return sig, err
		})
		if err != nil {
			return nil, fmt.Errorf("ca: building CRL: %w", err)
		}
		return &CRLRecord{CAID: caID, Number: number, ThisUpdate: p.thisUpdate, NextUpdate: p.nextUpdate, DER: der, CreatedAt: a.now()}, nil
	})
	if err != nil {
		return nil, err
	}
	a.metrics.crlSeconds.Observe(a.now().Sub(start).Seconds())
	a.metrics.crlEntries.WithLabelValues(caID).Set(float64(entries))
	return rec, nil
}

// parallelCRLThreshold is the entry count from which a CRL is read in
// parallel slices: below it one scan is faster than the coordination.
const parallelCRLThreshold = 50_000

// collectEntries adds the CRL entries of a CA to app. A large CRL is read
// as several disjoint notAfter ranges on separate connections at once, one
// per core: reading and encoding rows is most of the cost of a big CRL,
// and every entry falls in exactly one range because notAfter never
// changes.
func (a *Authority) collectEntries(ctx context.Context, caID string, now time.Time, app *entryAppender) (int, error) {
	n, lo, hi, err := a.store.RevokedSpan(ctx, caID, now)
	if err != nil {
		return 0, err
	}
	parts := min(runtime.GOMAXPROCS(0), 8)
	if n < parallelCRLThreshold || parts < 2 {
		count := 0
		err := a.store.RevokedEntries(ctx, caID, now, func(e RevokedEntry) error {
			count++
			return app.add(e)
		})
		return count, err
	}
	start, end := now.Unix(), hi.Unix()+1
	if l := lo.Unix(); l > start {
		start = l
	}
	step := (end - start + int64(parts) - 1) / int64(parts)
	apps := make([]entryAppender, parts)
	counts := make([]int, parts)
	errs := make([]error, parts)
	var wg sync.WaitGroup
	for i := range parts {
		from := start + int64(i)*step
		to := from + step
		if i == parts-1 {
			to = end
		}
		apps[i].buf = make([]byte, 0, int(n)/parts*48)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = a.store.RevokedEntriesBetween(ctx, caID, time.Unix(from, 0), time.Unix(to, 0), func(e RevokedEntry) error {
				counts[i]++
				return apps[i].add(e)
			})
		}()
	}
	wg.Wait()
	total := 0
	for i := range parts {
		if errs[i] != nil {
			return 0, errs[i]
		}
		total += counts[i]
	}
	grow := 0
	for i := range apps {
		grow += len(apps[i].buf)
	}
	app.buf = slices.Grow(app.buf, grow)
	for i := range apps {
		app.buf = append(app.buf, apps[i].buf...)
		apps[i].buf = nil
	}
	return total, nil
}

// LatestCRL returns the newest stored CRL of a CA.
func (a *Authority) LatestCRL(ctx context.Context, caID string) (*CRLRecord, error) {
	if _, ok := a.issuers[caID]; !ok {
		return nil, fmt.Errorf("CA %q: %w", caID, ErrNotFound)
	}
	return a.store.LatestCRL(ctx, caID)
}

// KickCRL asks the CRL loop to regenerate a CA's CRL soon. It never
// blocks: a pending request for the same CA already covers this one.
func (a *Authority) KickCRL(caID string) {
	select {
	case a.crlKick <- caID:
	default:
	}
}

// Locker runs fn only if no other process holds the named lock.
type Locker interface {
	TryLock(ctx context.Context, name string, fn func(ctx context.Context) error) (bool, error)
}

// RunCRLs keeps every CA's CRL fresh until ctx ends: it regenerates a CRL
// after revocations (coalescing bursts) and when half its validity has
// passed. With a Locker, only one of several processes sharing a database
// does the periodic work at a time.
func (a *Authority) RunCRLs(ctx context.Context, lock Locker, tick time.Duration) {
	if tick <= 0 {
		tick = time.Minute
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	a.refreshCRLs(ctx, lock, false)
	for {
		select {
		case <-ctx.Done():
			return
		case id := <-a.crlKick:
			// Coalesce: take every kick queued right now, then generate once
			// per CA.
			pending := map[string]bool{id: true}
		drain:
			for {
				select {
				case id := <-a.crlKick:
					pending[id] = true
				default:
					break drain
				}
			}
			for id := range pending {
				if _, err := a.GenerateCRL(ctx, id); err != nil && ctx.Err() == nil {
					a.log.Error("CRL generation after revocation failed", "ca", id, "err", err)
				}
			}
		case <-t.C:
			a.refreshCRLs(ctx, lock, true)
		}
	}
}

func (a *Authority) refreshCRLs(ctx context.Context, lock Locker, onlyStale bool) {
	run := func(ctx context.Context) error {
		for _, id := range a.order {
			latest, err := a.store.LatestCRL(ctx, id)
			if err == nil && onlyStale {
				half := latest.ThisUpdate.Add(latest.NextUpdate.Sub(latest.ThisUpdate) / 2)
				if a.now().Before(half) {
					continue
				}
			} else if err == nil && !onlyStale && a.now().Before(latest.NextUpdate.Add(-latest.NextUpdate.Sub(latest.ThisUpdate)/2)) {
				continue
			}
			if _, err := a.GenerateCRL(ctx, id); err != nil {
				a.log.Error("periodic CRL generation failed", "ca", id, "err", err)
			}
		}
		return nil
	}
	if lock == nil {
		_ = run(ctx)
		return
	}
	if _, err := lock.TryLock(ctx, "crl-refresh", run); err != nil && ctx.Err() == nil {
		a.log.Error("CRL refresh lock", "err", err)
	}
}
