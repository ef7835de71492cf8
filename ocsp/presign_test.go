package ocsp_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/gmtrust/gmtrust/ca"
	"github.com/gmtrust/gmtrust/hsm"
	"github.com/gmtrust/gmtrust/internal/testutil"
	"github.com/gmtrust/gmtrust/ocsp"
)

// TestPresignRounds: one round signs every unexpired certificate once per
// configured hash; the next finds nothing to do; once the refresh times
// have passed, every response is re-signed once, and its refresh time
// falls in [validity/4, validity/2) after thisUpdate.
func TestPresignRounds(t *testing.T) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			dsn := ""
			if db == "postgres" {
				dsn = testutil.PostgresDSN(t)
			}
			e := newEnv(t, hsm.SM2, dsn, envConfig{cfg: ocsp.Config{Validity: 8 * time.Hour}})
			ctx := context.Background()
			const n = 40
			serials := e.insertFake(t, n, e.clock.Now().Add(365*24*time.Hour))
			e.insertFake(t, 3, e.clock.Now().Add(-time.Minute)) // expired: not pre-signed
			revoked := serials[0]
			e.revoke(t, revoked, ca.ReasonKeyCompromise) // signs its 3 responses
			// The OCSP signer's own certificate is one of the CA's too.
			const live = n + 1
			hashes := len(ocsp.DefaultHashes())
			p := ocsp.NewPresigner(e.resp, e.store, e.app.Store, ocsp.PresignConfig{Rate: -1, BatchSize: 7})

			before := e.keys.n.Load()
			st, err := p.RunOnce(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got := e.keys.n.Load() - before; got != (live-1)*int64(hashes) || st.Missing != live-1 || st.Responses != (live-1)*hashes || !st.FullScan {
				t.Fatalf("first round: %d signatures, %+v; want %d", got, st, (live-1)*hashes)
			}
			before = e.keys.n.Load()
			if st, err := p.RunOnce(ctx); err != nil || st.Responses != 0 || e.keys.n.Load() != before {
				t.Fatalf("second round: %+v, %v", st, err)
			}
			for _, h := range ocsp.DefaultHashes() {
				sr, err := e.store.Response(ctx, ca.IssuingID, revoked, h)
				if err != nil || sr.Status != ca.StatusRevoked {
					t.Fatalf("revoked certificate's %v response: %+v, %v", h, sr, err)
				}
				if s := e.single(t, sr.DER); s.Status != ocsp.Revoked || s.RevocationReason != ca.ReasonKeyCompromise {
					t.Fatalf("stored DER says %v", s.Status)
				}
				for _, serial := range serials[1:] {
					sr, err := e.store.Response(ctx, ca.IssuingID, serial, h)
					if err != nil {
						t.Fatal(err)
					}
					if sr.NextUpdate.Sub(sr.ThisUpdate) != 8*time.Hour {
						t.Fatalf("validity %v", sr.NextUpdate.Sub(sr.ThisUpdate))
					}
					if d := sr.RefreshAt.Sub(sr.ThisUpdate); d < 2*time.Hour || d > 4*time.Hour {
						t.Fatalf("refresh %v after thisUpdate, want within [2h, 4h]", d)
					}
				}
			}

			// Past every refresh time (at most half of 8 h): all due once.
			e.clock.Advance(4*time.Hour + time.Second)
			before = e.keys.n.Load()
			st, err = p.RunOnce(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got := e.keys.n.Load() - before; got != live*int64(hashes) || st.Due != live {
				t.Fatalf("refresh round: %d signatures, %+v; want %d", got, st, live*hashes)
			}
			if st, err := p.RunOnce(ctx); err != nil || st.Responses != 0 {
				t.Fatalf("after refresh: %+v, %v", st, err)
			}
		})
	}
}

// TestPresignJitter: responses signed together come due spread over the
// window, not all at the same second.
func TestPresignJitter(t *testing.T) {
	e := newEnv(t, hsm.ECDSAP256, "", envConfig{})
	ctx := context.Background()
	serials := e.insertFake(t, 50, e.clock.Now().Add(365*24*time.Hour))
	if _, err := ocsp.NewPresigner(e.resp, e.store, e.app.Store, ocsp.PresignConfig{Rate: -1}).RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	distinct := map[time.Time]bool{}
	for _, s := range serials {
		sr, err := e.store.Response(ctx, ca.IssuingID, s, ocsp.HashSHA1)
		if err != nil {
			t.Fatal(err)
		}
		distinct[sr.RefreshAt] = true
	}
	// 50 draws over six hours of seconds: collisions are rare.
	if len(distinct) < 40 {
		t.Errorf("only %d distinct refresh times for 50 responses", len(distinct))
	}
}

// TestPresignTwoProcesses: two pre-signers on one PostgreSQL database,
// running at the same time, sign each certificate exactly once per round:
// the signatures made by both add up to one per certificate and hash.
func TestPresignTwoProcesses(t *testing.T) {
	dsn := testutil.PostgresDSN(t)
	dir := initInstance(t, hsm.SM2, dsn)
	clk := newTestClock()
	a, b := openEnv(t, dir, clk, envConfig{}), openEnv(t, dir, clk, envConfig{})
	ctx := context.Background()
	const n = 200
	a.insertFake(t, n, clk.Now().Add(365*24*time.Hour))
	const live = n + 1 // and the OCSP signer's certificate
	hashes := int64(len(ocsp.DefaultHashes()))
	cfg := ocsp.PresignConfig{Rate: -1, BatchSize: 16}
	pa := ocsp.NewPresigner(a.resp, a.store, a.app.Store, cfg)
	pb := ocsp.NewPresigner(b.resp, b.store, b.app.Store, cfg)

	for round := range 2 { // all missing, then all due
		na, nb := a.keys.n.Load(), b.keys.n.Load()
		var wg sync.WaitGroup
		var sa, sb ocsp.PresignStats
		wg.Go(func() {
			var err error
			if sa, err = pa.RunOnce(ctx); err != nil {
				t.Error(err)
			}
		})
		wg.Go(func() {
			var err error
			if sb, err = pb.RunOnce(ctx); err != nil {
				t.Error(err)
			}
		})
		wg.Wait()
		da, db := a.keys.n.Load()-na, b.keys.n.Load()-nb
		if da+db != live*hashes {
			t.Fatalf("round %d: %d + %d signatures, want %d in all", round, da, db, live*hashes)
		}
		if int64(sa.Responses+sb.Responses) != live*hashes {
			t.Fatalf("round %d: stats %+v %+v", round, sa, sb)
		}
		t.Logf("round %d: process A signed %d, B %d", round, da, db)
		clk.Advance(12*time.Hour + time.Second)
	}
}

// TestPresignScanState: a restarted pre-signer (or another process)
// carries on from the scan state in the store instead of scanning every
// certificate again, still finds certificates issued meanwhile, and makes
// the next full scan when the interval has passed since the last one made
// by anyone.
func TestPresignScanState(t *testing.T) {
	e := newEnv(t, hsm.ECDSAP256, "", envConfig{})
	ctx := context.Background()
	e.insertFake(t, 5, e.clock.Now().Add(365*24*time.Hour))
	cfg := ocsp.PresignConfig{Rate: -1, ScanRate: -1, ScanWindow: 2, BatchSize: 2, FullScanInterval: 6 * time.Hour}
	first := ocsp.NewPresigner(e.resp, e.store, e.app.Store, cfg)
	st, err := first.RunOnce(ctx)
	if err != nil || !st.FullScan || st.Missing != 6 {
		t.Fatalf("first round %+v, %v", st, err)
	}
	e.clock.Advance(time.Hour)
	e.insertFake(t, 2, e.clock.Now().Add(365*24*time.Hour))

	restarted := ocsp.NewPresigner(e.resp, e.store, e.app.Store, cfg)
	st, err = restarted.RunOnce(ctx)
	if err != nil || st.FullScan || st.Missing != 2 {
		t.Fatalf("after a restart: %+v, %v; want an incremental scan finding the 2 new certificates", st, err)
	}
	e.clock.Advance(5*time.Hour + time.Minute)
	if st, err := first.RunOnce(ctx); err != nil || !st.FullScan {
		t.Fatalf("6 h after the last full scan: %+v, %v", st, err)
	}
	if st, err := restarted.RunOnce(ctx); err != nil || st.FullScan {
		t.Fatalf("another process just made the full scan: %+v, %v", st, err)
	}
}
