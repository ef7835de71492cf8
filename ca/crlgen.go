package ca

import (
	"context"
	"fmt"
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
		der, err := encodeCRL(p, func(add func(RevokedEntry) error) error {
			return a.store.RevokedEntries(ctx, caID, now, func(e RevokedEntry) error {
				entries++
				return add(e)
			})
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
