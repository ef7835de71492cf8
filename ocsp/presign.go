package ocsp

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/gmtrust/gmtrust/ca"
)

// PresignStore is what the pre-signer needs from persistence.
type PresignStore interface {
	// ClaimBatch: see ResponseStore. Several processes may claim at once;
	// the store guarantees that a certificate is claimed by one of them
	// at a time and that a claim re-checks, under the lock, that the
	// certificate still needs signing.
	ClaimBatch(ctx context.Context, c Claim, sign SignFunc) (ClaimResult, error)
	// Reconcile marks for re-signing (RefreshAt zero) every response whose
	// recorded status no longer matches its certificate's, and returns
	// how many it marked.
	Reconcile(ctx context.Context) (int, error)
	// DeleteStale removes responses whose nextUpdate is before t; they
	// can never be served.
	DeleteStale(ctx context.Context, before time.Time) (int, error)
	// DueCount counts the responses for the hashes due at now.
	DueCount(ctx context.Context, hashes []HashAlg, now time.Time) (int, error)
	// ScanState and SaveScanState keep the pre-signer's scan state where
	// every process sharing the store sees it, so that a restart does not
	// scan every certificate again and processes take turns at full
	// scans.
	ScanState(ctx context.Context) (ScanState, error)
	SaveScanState(ctx context.Context, s ScanState) error
}

// ScanState is when the last scan for certificates without responses
// started (LastPass) and when the last full one did (LastFull).
type ScanState struct {
	LastPass, LastFull time.Time
}

// Pre-signer defaults.
const (
	DefaultPresignBatch    = 128
	DefaultPresignRate     = 2000
	DefaultPresignInterval = time.Minute
	DefaultFullScan        = 6 * time.Hour
	DefaultScanOverlap     = 10 * time.Minute
	DefaultMaintenance     = 10 * time.Minute
	DefaultScanWindow      = 2048
	DefaultScanRate        = 10000
)

// PresignConfig tunes a Presigner. Zero values select the defaults.
type PresignConfig struct {
	// BatchSize is how many certificates one transaction claims.
	BatchSize int
	// Rate caps signatures per second (DefaultPresignRate) so that a bulk
	// of work (the first start after importing a million certificates)
	// never starves request handling; negative means unlimited.
	Rate float64
	// Interval is the pause between rounds.
	Interval time.Duration
	// FullScanInterval is how often (across every process sharing the
	// store) a round looks for certificates without responses across the
	// whole table (default 6 h). Other rounds look only at certificates
	// created since the previous round minus ScanOverlap, which covers
	// clock skew between processes and late commits. Such a full scan is
	// a safety net: certificates lacking a response are answered anyway,
	// signed on demand.
	FullScanInterval time.Duration
	ScanOverlap      time.Duration
	// ScanWindow is how many certificates one claim of a scan examines
	// (DefaultScanWindow), ScanRate how many per second a scan examines
	// at most (DefaultScanRate; negative: unlimited).
	ScanWindow int
	ScanRate   float64
	// MaintenanceInterval is how often stale responses are deleted and
	// statuses reconciled (by one process of several).
	MaintenanceInterval time.Duration
}

func (c *PresignConfig) defaults() {
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultPresignBatch
	}
	if c.Rate == 0 {
		c.Rate = DefaultPresignRate
	}
	if c.Interval <= 0 {
		c.Interval = DefaultPresignInterval
	}
	if c.FullScanInterval <= 0 {
		c.FullScanInterval = DefaultFullScan
	}
	if c.ScanOverlap <= 0 {
		c.ScanOverlap = DefaultScanOverlap
	}
	if c.MaintenanceInterval <= 0 {
		c.MaintenanceInterval = DefaultMaintenance
	}
	if c.ScanWindow <= 0 {
		c.ScanWindow = DefaultScanWindow
	}
	if c.ScanRate == 0 {
		c.ScanRate = DefaultScanRate
	}
}

func defaultWorkers() int { return max(1, runtime.GOMAXPROCS(0)/2) }

// Presigner keeps a signed response ready, in the store, for every
// unexpired certificate of the responder's CAs and every configured hash,
// and re-signs each before half its validity has passed.
type Presigner struct {
	r      *Responder
	store  PresignStore
	locker ca.Locker
	cfg    PresignConfig

	// mu serialises rounds; the fields below are the scan state.
	mu        sync.Mutex
	scan      ScanState
	lastMaint time.Time
}

// NewPresigner returns a pre-signer for r's CAs. With a Locker, the
// periodic maintenance runs in one process of several at a time; the
// signing itself is shared out by the store's claims.
func NewPresigner(r *Responder, store PresignStore, locker ca.Locker, cfg PresignConfig) *Presigner {
	cfg.defaults()
	return &Presigner{r: r, store: store, locker: locker, cfg: cfg}
}

// PresignStats says what one round did.
type PresignStats struct {
	// Due and Missing count certificates re-signed because their
	// responses came due or did not exist; Responses the responses signed.
	Due, Missing, Responses int
	// FullScan reports whether the round scanned every certificate.
	FullScan bool
	// Reconciled counts responses found out of step with their
	// certificate and marked due; Deleted stale responses removed.
	Reconciled, Deleted int
}

// RunOnce runs one round: maintenance when due, then every due response,
// then a scan for certificates without responses. It returns when no work
// is left that this process could claim.
func (p *Presigner) RunOnce(ctx context.Context) (PresignStats, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var st PresignStats
	if p.r.ReadOnly() {
		return st, ErrReadOnly
	}
	now := p.r.now()
	if now.Sub(p.lastMaint) >= p.cfg.MaintenanceInterval {
		if err := p.maintain(ctx, now, &st); err != nil {
			return st, err
		}
		p.lastMaint = now
	}
	cas, hashes := p.r.CAIDs(), p.r.cfg.Hashes
	due, err := p.store.DueCount(ctx, hashes, now)
	if err != nil {
		return st, fmt.Errorf("ocsp: counting due responses: %w", err)
	}
	sign := func(ctx context.Context, certs []CertStatus) ([]StoredResponse, error) {
		out, err := p.r.signResponses(ctx, certs, p.r.now(), signPresign)
		if err == nil {
			p.r.metrics.presigned.Add(float64(len(out)))
		}
		return out, err
	}

	for {
		start := time.Now()
		res, err := p.store.ClaimBatch(ctx, Claim{Kind: ClaimDue, CAIDs: cas, Hashes: hashes, Now: now, Limit: p.cfg.BatchSize}, sign)
		if err != nil {
			return st, p.failed(fmt.Errorf("ocsp: re-signing due responses: %w", err))
		}
		if res.Claimed == 0 {
			break
		}
		st.Due += res.Signed / len(hashes)
		st.Responses += res.Signed
		if err := p.pace(ctx, res.Signed, 0, start); err != nil {
			return st, err
		}
	}

	// Another process may have made a full scan since we last looked.
	shared, err := p.store.ScanState(ctx)
	if err != nil {
		return st, fmt.Errorf("ocsp: reading the scan state: %w", err)
	}
	if shared.LastFull.After(p.scan.LastFull) {
		p.scan.LastFull = shared.LastFull
	}
	if p.scan.LastPass.IsZero() {
		// A restart carries on from the last pass any process made.
		p.scan.LastPass = shared.LastPass
	}
	var since time.Time
	st.FullScan = p.scan.LastFull.IsZero() || now.Sub(p.scan.LastFull) >= p.cfg.FullScanInterval
	if !st.FullScan {
		since = p.scan.LastPass
		if since.IsZero() || p.scan.LastFull.After(since) {
			since = p.scan.LastFull
		}
		since = since.Add(-p.cfg.ScanOverlap)
	}
	after := ""
	for {
		start := time.Now()
		res, err := p.store.ClaimBatch(ctx, Claim{
			Kind: ClaimMissing, CAIDs: cas, Hashes: hashes, Now: now, Limit: p.cfg.BatchSize,
			Since: since, After: after, Window: p.cfg.ScanWindow,
		}, sign)
		if err != nil {
			return st, p.failed(fmt.Errorf("ocsp: signing missing responses: %w", err))
		}
		st.Missing += res.Signed / len(hashes)
		st.Responses += res.Signed
		if res.Next == "" {
			break
		}
		after = res.Next
		if err := p.pace(ctx, res.Signed, res.Scanned, start); err != nil {
			return st, err
		}
	}
	p.scan.LastPass = now
	if st.FullScan {
		p.scan.LastFull = now
	}
	if err := p.store.SaveScanState(ctx, p.scan); err != nil {
		return st, fmt.Errorf("ocsp: saving the scan state: %w", err)
	}
	p.r.metrics.backlog.Set(float64(due + st.Missing*len(hashes)))
	return st, nil
}

func (p *Presigner) failed(err error) error {
	p.r.metrics.presignErrs.Inc()
	return err
}

// maintain deletes responses past their nextUpdate and marks due those
// whose status disagrees with their certificate (left behind if a process
// died between a revocation and its re-signing; never served, since the
// store checks the status on every read, but worth re-signing).
func (p *Presigner) maintain(ctx context.Context, now time.Time, st *PresignStats) error {
	run := func(ctx context.Context) error {
		n, err := p.store.DeleteStale(ctx, now)
		if err != nil {
			return fmt.Errorf("ocsp: deleting stale responses: %w", err)
		}
		st.Deleted = n
		if st.Reconciled, err = p.store.Reconcile(ctx); err != nil {
			return fmt.Errorf("ocsp: reconciling response statuses: %w", err)
		}
		if st.Reconciled > 0 {
			p.r.log.Warn("ocsp: responses out of step with their certificates marked for re-signing", "count", st.Reconciled)
		}
		return nil
	}
	if p.locker == nil {
		return run(ctx)
	}
	_, err := p.locker.TryLock(ctx, "ocsp-maintenance", run)
	return err
}

// pace sleeps as long as signing signed responses and examining scanned
// certificates should take at the configured rates, minus what the batch
// already took.
func (p *Presigner) pace(ctx context.Context, signed, scanned int, start time.Time) error {
	var want float64
	if p.cfg.Rate > 0 {
		want += float64(signed) / p.cfg.Rate
	}
	if p.cfg.ScanRate > 0 {
		want += float64(scanned) / p.cfg.ScanRate
	}
	wait := time.Duration(want*float64(time.Second)) - time.Since(start)
	if wait <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Run runs rounds every Interval until ctx ends, logging failures.
func (p *Presigner) Run(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st, err := p.RunOnce(ctx)
		switch {
		case errors.Is(err, ErrReadOnly):
			return
		case err != nil && ctx.Err() == nil:
			p.r.log.Error("ocsp: pre-signing round failed", "err", err)
		case st.Responses > 0:
			p.r.log.Info("ocsp: pre-signed responses", "due", st.Due, "missing", st.Missing, "responses", st.Responses, "full_scan", st.FullScan)
		}
		t.Reset(p.cfg.Interval)
	}
}

// RunSignerRenewal checks the OCSP signer every interval until ctx ends:
// it renews it when it nears expiry and picks up signers renewed by other
// processes.
func (r *Responder) RunSignerRenewal(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = 10 * time.Minute
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := r.RenewSigners(ctx); err != nil && ctx.Err() == nil {
			r.log.Error("ocsp: OCSP signer renewal failed", "err", err)
		}
		t.Reset(interval)
	}
}
