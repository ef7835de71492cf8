package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gmtrust/gmtrust/ca"
	"github.com/gmtrust/gmtrust/ocsp"
)

var testHashes = []ocsp.HashAlg{ocsp.HashSHA1, ocsp.HashSHA256, ocsp.HashSM3}

func newOCSPStore(t testing.TB, db *DB, dsn string) *OCSP {
	t.Helper()
	s, err := NewOCSP(context.Background(), db, OCSPOptions{DSN: dsn, PollInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// openOCSP opens a new database of backend b and its OCSP store.
func openOCSP(t testing.TB, b backend) (*DB, *OCSP) {
	t.Helper()
	dsn := b.newDSN(t)
	db := openDB(t, dsn, Options{})
	return db, newOCSPStore(t, db, dsn)
}

// fakeSigner returns a SignFunc that "signs" every claimed certificate
// for every hash at now (DER is a label), recording what it saw.
type fakeSigner struct {
	mu      sync.Mutex
	now     time.Time
	refresh time.Duration
	seen    []ocsp.CertStatus
	err     error
}

func (f *fakeSigner) sign(_ context.Context, certs []ocsp.CertStatus) ([]ocsp.StoredResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	var out []ocsp.StoredResponse
	for _, c := range certs {
		f.seen = append(f.seen, c)
		for _, h := range testHashes {
			out = append(out, ocsp.StoredResponse{
				CAID: c.CAID, Serial: c.Serial, Hash: h, Status: c.Status, Reason: c.Reason, RevokedAt: c.RevokedAt,
				ThisUpdate: f.now, NextUpdate: f.now.Add(24 * time.Hour), RefreshAt: f.now.Add(f.refresh),
				DER: fmt.Appendf(nil, "%s/%s/%v/%s", c.CAID, c.Serial, h, c.Status),
			})
		}
	}
	return out, nil
}

func (f *fakeSigner) serials() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, len(f.seen))
	for i, c := range f.seen {
		out[i] = c.Serial
	}
	slices.Sort(out)
	return out
}

// claimAll runs claims of one kind until none is left and returns the
// total claimed and signed.
func claimAll(t testing.TB, s *OCSP, c ocsp.Claim, sign ocsp.SignFunc) (claimed, signed int) {
	t.Helper()
	for range 1000 {
		res, err := s.ClaimBatch(context.Background(), c, sign)
		if err != nil {
			t.Fatalf("ClaimBatch: %v", err)
		}
		claimed += res.Claimed
		signed += res.Signed
		switch c.Kind {
		case ocsp.ClaimMissing:
			if res.Next == "" {
				return
			}
			c.After = res.Next
		default:
			if res.Claimed == 0 {
				return
			}
		}
	}
	t.Fatal("claims never ran out")
	return
}

func TestOCSPClaims(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		db, s := openOCSP(t, b)
		ctx := context.Background()
		mustInsertCA(t, db, "root")
		mustInsertCA(t, db, "issuing")
		now := testTime.Add(30 * 24 * time.Hour)

		var live []string
		live = append(live, mustInsertCerts(t, db, "issuing", 7)...)
		expired := testCert("issuing")
		expired.NotAfter = now.Add(-time.Hour)
		mustInsertCert(t, db, expired)
		other := testCert("root") // a CA not served
		mustInsertCert(t, db, other)
		slices.Sort(live)

		f := &fakeSigner{now: now, refresh: 12 * time.Hour}
		base := ocsp.Claim{CAIDs: []string{"issuing"}, Hashes: testHashes, Now: now, Limit: 3}

		missing := base
		missing.Kind = ocsp.ClaimMissing
		claimed, signed := claimAll(t, s, missing, f.sign)
		if claimed != len(live) || signed != len(live)*len(testHashes) || !slices.Equal(f.serials(), live) {
			t.Fatalf("first pass claimed %d, signed %d, saw %v; want the %d live certificates", claimed, signed, f.serials(), len(live))
		}
		if claimed, _ := claimAll(t, s, missing, f.sign); claimed != 0 {
			t.Fatalf("second pass claimed %d", claimed)
		}
		due := base
		due.Kind = ocsp.ClaimDue
		if claimed, _ := claimAll(t, s, due, f.sign); claimed != 0 {
			t.Fatalf("nothing is due yet, claimed %d", claimed)
		}
		if n, err := s.DueCount(ctx, testHashes, now); err != nil || n != 0 {
			t.Fatalf("DueCount %d, %v", n, err)
		}
		if n, err := s.ResponseCount(ctx); err != nil || n != len(live)*len(testHashes) {
			t.Fatalf("ResponseCount %d, %v", n, err)
		}

		// A hash added to the configuration makes every certificate
		// missing again.
		moreHashes := append(slices.Clone(testHashes), ocsp.HashSHA512)
		m2 := missing
		m2.Hashes = moreHashes
		f.seen = nil
		if claimed, _ := claimAll(t, s, m2, func(ctx context.Context, cs []ocsp.CertStatus) ([]ocsp.StoredResponse, error) {
			f.mu.Lock()
			f.seen = append(f.seen, cs...)
			f.mu.Unlock()
			return nil, nil
		}); claimed != len(live) {
			t.Fatalf("with SHA-512 added, claimed %d", claimed)
		}

		// Later, everything is due once.
		later := now.Add(13 * time.Hour)
		due.Now = later
		f.now, f.seen = later, nil
		if n, err := s.DueCount(ctx, testHashes, later); err != nil || n != len(live)*len(testHashes) {
			t.Fatalf("DueCount %d, %v", n, err)
		}
		claimed, signed = claimAll(t, s, due, f.sign)
		if claimed != len(live) || signed != len(live)*len(testHashes) {
			t.Fatalf("due pass claimed %d signed %d", claimed, signed)
		}
		if claimed, _ := claimAll(t, s, due, f.sign); claimed != 0 {
			t.Fatalf("second due pass claimed %d", claimed)
		}
		r, err := s.Response(ctx, "issuing", live[0], ocsp.HashSM3)
		if err != nil {
			t.Fatal(err)
		}
		if !r.ThisUpdate.Equal(later) || !r.RefreshAt.Equal(later.Add(12*time.Hour)) || r.Status != ca.StatusGood ||
			string(r.DER) != fmt.Sprintf("issuing/%s/SM3/good", live[0]) {
			t.Fatalf("stored %+v", r)
		}
		if _, err := s.Response(ctx, "issuing", expired.Serial, ocsp.HashSHA1); !errors.Is(err, ca.ErrNotFound) {
			t.Errorf("expired certificate pre-signed: %v", err)
		}
		if _, err := s.Response(ctx, "issuing", live[0], ocsp.HashSHA512); !errors.Is(err, ca.ErrNotFound) {
			t.Errorf("SHA-512: %v", err)
		}

		// A revocation makes the stored responses unservable, Reconcile
		// marks them due, and ClaimOne re-signs with the new status.
		if _, err := db.Revoke(ctx, ca.Revocation{CAID: "issuing", Serial: live[1], Reason: 1, At: later}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Response(ctx, "issuing", live[1], ocsp.HashSHA1); !errors.Is(err, ca.ErrNotFound) {
			t.Fatalf("response for a status that changed: %v", err)
		}
		if n, err := s.Reconcile(ctx); err != nil || n != len(testHashes) {
			t.Fatalf("Reconcile %d, %v", n, err)
		}
		if n, err := s.Reconcile(ctx); err != nil || n != 0 {
			t.Fatalf("second Reconcile %d, %v", n, err)
		}
		if n, err := s.DueCount(ctx, testHashes, later); err != nil || n != len(testHashes) {
			t.Fatalf("DueCount after reconcile %d, %v", n, err)
		}
		one := ocsp.Claim{Kind: ocsp.ClaimOne, CAID: "issuing", Serial: live[1], Hashes: testHashes, Now: later, Limit: 1}
		f.seen = nil
		res, err := s.ClaimBatch(ctx, one, f.sign)
		if err != nil || res.Claimed != 1 || res.Signed != len(testHashes) {
			t.Fatalf("ClaimOne %+v, %v", res, err)
		}
		if f.seen[0].Status != ca.StatusRevoked || f.seen[0].Reason != 1 || !f.seen[0].RevokedAt.Equal(later) {
			t.Fatalf("ClaimOne saw %+v", f.seen[0])
		}
		r, err = s.Response(ctx, "issuing", live[1], ocsp.HashSHA1)
		if err != nil || r.Status != ca.StatusRevoked || r.Reason != 1 {
			t.Fatalf("after ClaimOne: %+v, %v", r, err)
		}
		// ClaimOne takes expired certificates too, and reports unknown ones.
		one.Serial = expired.Serial
		if res, err := s.ClaimBatch(ctx, one, f.sign); err != nil || res.Claimed != 1 {
			t.Fatalf("ClaimOne of an expired certificate: %+v, %v", res, err)
		}
		one.Serial = "7e57"
		if _, err := s.ClaimBatch(ctx, one, f.sign); !errors.Is(err, ca.ErrNotFound) {
			t.Fatalf("ClaimOne of an unknown certificate: %v", err)
		}

		// A failing signer stores nothing; a signer answering for another
		// certificate is refused.
		failing := &fakeSigner{now: later, err: errors.New("HSM down")}
		one.Serial = live[2]
		before, _ := s.Response(ctx, "issuing", live[2], ocsp.HashSHA1)
		if _, err := s.ClaimBatch(ctx, one, failing.sign); err == nil {
			t.Fatal("no error from a failing signer")
		}
		after, _ := s.Response(ctx, "issuing", live[2], ocsp.HashSHA1)
		if !after.ThisUpdate.Equal(before.ThisUpdate) {
			t.Fatal("a failed claim changed the stored response")
		}
		if _, err := s.ClaimBatch(ctx, one, func(ctx context.Context, cs []ocsp.CertStatus) ([]ocsp.StoredResponse, error) {
			out, err := f.sign(ctx, cs)
			out[0].Serial = live[3]
			return out, err
		}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("response for an unclaimed certificate: %v", err)
		}

		// Clean-up.
		if err := s.DeleteResponses(ctx, "issuing", live[4]); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Response(ctx, "issuing", live[4], ocsp.HashSHA1); !errors.Is(err, ca.ErrNotFound) {
			t.Fatalf("after DeleteResponses: %v", err)
		}
		n, err := s.DeleteStale(ctx, later.Add(25*time.Hour))
		if err != nil || n == 0 {
			t.Fatalf("DeleteStale %d, %v", n, err)
		}
		if n, err := s.ResponseCount(ctx); err != nil || n != 0 {
			t.Fatalf("%d responses left, %v", n, err)
		}

		// Bad claims.
		for _, c := range []ocsp.Claim{
			{Kind: ocsp.ClaimDue, CAIDs: []string{"issuing"}, Now: now, Limit: 1},
			{Kind: ocsp.ClaimDue, Hashes: testHashes, Now: now, Limit: 1},
			{Kind: ocsp.ClaimMissing, CAIDs: []string{"issuing"}, Hashes: testHashes, Now: now, Limit: 0},
			{Kind: ocsp.ClaimMissing, CAIDs: []string{"issuing"}, Hashes: testHashes, Now: now, Limit: 1, After: "garbage"},
			{Kind: 99, CAIDs: []string{"issuing"}, Hashes: testHashes, Now: now, Limit: 1},
		} {
			if _, err := s.ClaimBatch(ctx, c, f.sign); !errors.Is(err, ErrInvalid) {
				t.Errorf("claim %+v: %v", c, err)
			}
		}
	})
}

// TestOCSPClaimsConcurrent: several processes (database handles) claiming
// at once sign every certificate exactly once per round.
func TestOCSPClaimsConcurrent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		dsn := b.newDSN(t)
		db := openDB(t, dsn, Options{})
		mustInsertCA(t, db, "issuing")
		var all []string
		all = append(all, mustInsertCerts(t, db, "issuing", 300)...)
		slices.Sort(all)
		now := testTime.Add(time.Hour)
		stores := []*OCSP{newOCSPStore(t, db, dsn)}
		for range 2 {
			stores = append(stores, newOCSPStore(t, openDB(t, dsn, Options{}), dsn))
		}
		for round, kind := range []ocsp.ClaimKind{ocsp.ClaimMissing, ocsp.ClaimDue} {
			f := &fakeSigner{now: now, refresh: time.Hour}
			c := ocsp.Claim{Kind: kind, CAIDs: []string{"issuing"}, Hashes: testHashes, Now: now, Limit: 16}
			var wg sync.WaitGroup
			for _, s := range stores {
				wg.Go(func() { claimAll(t, s, c, f.sign) })
			}
			wg.Wait()
			if got := f.serials(); !slices.Equal(got, all) {
				t.Fatalf("round %d: %d certificates signed for %d (each must be signed once)", round, len(got), len(all))
			}
			now = now.Add(2 * time.Hour)
		}
	})
}

// TestOCSPInvalidations: a NOTIFY claim reaches another handle's listener
// (PostgreSQL), and the revocation_events poll reports revocations made
// without one (both databases), before it reports the span of time it has
// applied to include them.
func TestOCSPInvalidations(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		dsn := b.newDSN(t)
		db := openDB(t, dsn, Options{})
		mustInsertCA(t, db, "issuing")
		c1, c2 := testCert("issuing"), testCert("issuing")
		mustInsertCert(t, db, c1)
		mustInsertCert(t, db, c2)
		listener, err := NewOCSP(context.Background(), openDB(t, dsn, Options{}), OCSPOptions{DSN: dsn, PollInterval: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer listener.Close()
		ctx, cancel := context.WithCancel(context.Background())
		// One channel for evictions and applied spans keeps their order.
		type event struct {
			evicted        string // "" for an applied span
			since, through time.Time
		}
		events := make(chan event, 4096)
		resets := make(chan struct{}, 64)
		done := make(chan error, 1)
		go func() {
			done <- listener.ListenInvalidations(ctx,
				func(caID, serial string) { events <- event{evicted: caID + ":" + serial} },
				func() { resets <- struct{}{} },
				func(since, through time.Time) { events <- event{since: since, through: through} })
		}()
		var since time.Time
		// next returns the next event, checking the applied spans: since
		// stays the same, and through is later.
		next := func(deadline <-chan time.Time) event {
			t.Helper()
			select {
			case ev := <-events:
				if ev.evicted == "" {
					if since.IsZero() {
						since = ev.since
					}
					if !ev.since.Equal(since) || ev.through.Before(ev.since) {
						t.Fatalf("applied span %v..%v, first since %v", ev.since, ev.through, since)
					}
				}
				return ev
			case <-deadline:
				t.Fatal("timed out waiting for the listener")
			}
			return event{}
		}
		wait := func(want string) {
			t.Helper()
			deadline := time.After(20 * time.Second)
			for next(deadline).evicted != want {
			}
		}
		if b.name == DialectPostgres {
			for range 2 { // connected, then LISTEN active
				select {
				case <-resets:
				case <-time.After(20 * time.Second):
					t.Fatal("no reset on connect")
				}
			}
			s := newOCSPStore(t, db, dsn)
			f := &fakeSigner{now: testTime}
			if _, err := s.ClaimBatch(ctx, ocsp.Claim{Kind: ocsp.ClaimOne, CAID: "issuing", Serial: c1.Serial, Hashes: testHashes, Now: testTime, Limit: 1, Notify: true}, f.sign); err != nil {
				t.Fatal(err)
			}
			wait("issuing:" + c1.Serial)
			if err := s.DeleteResponses(ctx, "issuing", c1.Serial); err != nil {
				t.Fatal(err)
			}
			wait("issuing:" + c1.Serial)
		}
		time.Sleep(100 * time.Millisecond) // the poller reads its starting mark
		// Wait for one applied span, so that the revocation below is
		// committed after since.
		deadline := time.After(20 * time.Second)
		for next(deadline).evicted != "" {
		}
		if _, err := db.Revoke(ctx, ca.Revocation{CAID: "issuing", Serial: c2.Serial, Reason: 1}); err != nil {
			t.Fatal(err)
		}
		committed := time.Now()
		// The eviction comes before any span that covers the commit.
		for evicted := false; ; {
			ev := next(deadline)
			if ev.evicted == "issuing:"+c2.Serial {
				evicted = true
			}
			if ev.evicted == "" && ev.through.After(committed) {
				if !evicted {
					t.Fatalf("span through %v reported before the revocation committed at %v was evicted", ev.through, committed)
				}
				break
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("ListenInvalidations: %v", err)
		}
	})
}

func TestNewOCSPNeedsDSNForPostgres(t *testing.T) {
	pg, ok := postgresBackend(t)
	if !ok {
		t.Skip("GMTRUST_TEST_POSTGRES not set")
	}
	db := openDB(t, pg.newDSN(t), Options{})
	if _, err := NewOCSP(context.Background(), db, OCSPOptions{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("err %v", err)
	}
}

// TestOCSPMissingScanWindows: whatever the window and claim sizes, a pass
// claims every certificate lacking a response exactly once, and skips the
// expired and the complete ones.
func TestOCSPMissingScanWindows(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		db, s := openOCSP(t, b)
		ctx := context.Background()
		mustInsertCA(t, db, "issuing")
		now := testTime.Add(time.Hour)
		var want []string
		var complete []ocsp.CertStatus
		for i := range 23 {
			c := testCert("issuing")
			switch i % 5 {
			case 1:
				c.NotAfter = now.Add(-time.Second) // expired
			case 3:
				complete = append(complete, ocsp.CertStatus{CAID: c.CAID, Serial: c.Serial, Status: ca.StatusGood})
			default:
				want = append(want, c.Serial)
			}
			mustInsertCert(t, db, c)
		}
		slices.Sort(want)
		f := &fakeSigner{now: now, refresh: time.Hour}
		for _, c := range complete {
			if _, err := s.ClaimBatch(ctx, ocsp.Claim{Kind: ocsp.ClaimOne, CAID: c.CAID, Serial: c.Serial, Hashes: testHashes, Now: now, Limit: 1}, f.sign); err != nil {
				t.Fatal(err)
			}
		}
		for _, tc := range []struct{ window, limit int }{{1, 1}, {1, 5}, {2, 1}, {3, 2}, {4, 4}, {7, 3}, {100, 2}, {0, 100}} {
			t.Run(fmt.Sprintf("window=%d,limit=%d", tc.window, tc.limit), func(t *testing.T) {
				var got []string
				scanned := 0
				c := ocsp.Claim{Kind: ocsp.ClaimMissing, CAIDs: []string{"issuing"}, Hashes: testHashes, Now: now, Limit: tc.limit, Window: tc.window}
				for range 200 {
					// Sign nothing: every pass must find the same certificates.
					res, err := s.ClaimBatch(ctx, c, func(_ context.Context, cs []ocsp.CertStatus) ([]ocsp.StoredResponse, error) {
						for _, x := range cs {
							got = append(got, x.Serial)
						}
						return nil, nil
					})
					if err != nil {
						t.Fatal(err)
					}
					if tc.window > 0 && res.Claimed > 0 && res.Scanned > tc.window {
						t.Fatalf("claim scanned %d with a window of %d", res.Scanned, tc.window)
					}
					scanned += res.Scanned
					if res.Next == "" {
						break
					}
					c.After = res.Next
				}
				slices.Sort(got)
				if !slices.Equal(got, want) {
					t.Fatalf("claimed %v\nwant    %v", got, want)
				}
				if tc.window > 0 && scanned < 23-tc.window {
					t.Errorf("reported %d scanned of 23", scanned)
				}
			})
		}
	})
}

func TestOCSPScanState(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		_, s := openOCSP(t, b)
		ctx := context.Background()
		if st, err := s.ScanState(ctx); err != nil || !st.LastPass.IsZero() || !st.LastFull.IsZero() {
			t.Fatalf("fresh state %+v, %v", st, err)
		}
		t1, t2 := testTime, testTime.Add(time.Hour)
		for _, save := range []ocsp.ScanState{{LastPass: t2, LastFull: t1}, {LastPass: t1}, {LastFull: t2}} {
			if err := s.SaveScanState(ctx, save); err != nil {
				t.Fatal(err)
			}
		}
		// Times only move forward.
		st, err := s.ScanState(ctx)
		if err != nil || !st.LastPass.Equal(t2) || !st.LastFull.Equal(t2) {
			t.Fatalf("state %+v, %v", st, err)
		}
	})
}

// TestOCSPScanStateConcurrent: pre-signers saving their scan state at
// once (two processes on PostgreSQL) neither fail nor set a time back.
func TestOCSPScanStateConcurrent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		dsn := b.newDSN(t)
		_ = openDB(t, dsn, Options{})
		stores := []*OCSP{newOCSPStore(t, openDB(t, dsn, Options{}), dsn), newOCSPStore(t, openDB(t, dsn, Options{}), dsn)}
		ctx := context.Background()
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 20 {
					pass, full := testTime.Add(time.Duration(g*20+i)*time.Second), testTime.Add(time.Duration(159-g*20-i)*time.Second)
					if err := stores[g%2].SaveScanState(ctx, ocsp.ScanState{LastPass: pass, LastFull: full}); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		st, err := stores[0].ScanState(ctx)
		if err != nil || !st.LastPass.Equal(testTime.Add(159*time.Second)) || !st.LastFull.Equal(testTime.Add(159*time.Second)) {
			t.Fatalf("state %+v, %v; want both at +159s", st, err)
		}
	})
}

// TestOCSPCertificateStatuses: the batched status read answers for the
// serials of the CA asked, revoked ones with their reason and time, and
// leaves out serials of other CAs and serials never issued; a batch over
// the limit is refused.
func TestOCSPCertificateStatuses(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		db, s := openOCSP(t, b)
		ctx := context.Background()
		mustInsertCA(t, db, "root")
		mustInsertCA(t, db, "issuing")
		var serials []string
		serials = append(serials, mustInsertCerts(t, db, "issuing", 5)...)
		other := testCert("root")
		mustInsertCert(t, db, other)
		revokedAt := testTime.Add(time.Hour)
		if _, err := db.Revoke(ctx, ca.Revocation{CAID: "issuing", Serial: serials[2], Reason: ca.ReasonKeyCompromise, At: revokedAt}); err != nil {
			t.Fatal(err)
		}

		ask := append(slices.Clone(serials), other.Serial, randSerial())
		got, err := s.CertificateStatuses(ctx, "issuing", ask)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(serials) {
			t.Fatalf("%d statuses, want %d (only the issuing CA's): %v", len(got), len(serials), got)
		}
		for _, sn := range serials {
			st, ok := got[sn]
			one, err := s.CertificateStatus(ctx, "issuing", sn)
			if !ok || err != nil || st != one {
				t.Errorf("%s: batched %+v (%v), single %+v (%v)", sn, st, ok, one, err)
			}
		}
		if st := got[serials[2]]; st.Status != ca.StatusRevoked || st.Reason != ca.ReasonKeyCompromise || !st.RevokedAt.Equal(revokedAt) {
			t.Errorf("revoked certificate: %+v", st)
		}
		if st := got[serials[0]]; st.Status != ca.StatusGood {
			t.Errorf("good certificate: %+v", st)
		}

		if got, err := s.CertificateStatuses(ctx, "issuing", nil); err != nil || len(got) != 0 {
			t.Errorf("no serials: %v, %v", got, err)
		}
		if _, err := s.CertificateStatuses(ctx, "issuing", make([]string, MaxStatusBatch+1)); !errors.Is(err, ErrInvalid) {
			t.Errorf("oversized batch: %v, want ErrInvalid", err)
		}
	})
}

// TestOCSPStatusReadsAreIndexOnly checks that SQLite answers the
// responder's status reads from the covering index certificates_status
// (migration 00007), never from the certificate rows with their DER.
func TestOCSPStatusReadsAreIndexOnly(t *testing.T) {
	_, s := openOCSP(t, sqliteBackend())
	for _, q := range []struct {
		name string
		args []any
	}{
		{"status", []any{"ca", "01"}},
		{"statuses", []any{"ca", `["01","02"]`}},
		{"response", []any{"ca", "01", 1}},
	} {
		joined := checkPlan(t, s.d, "certificates_status", s.queries[q.name], q.args...)
		if !strings.Contains(joined, "COVERING INDEX certificates_status") {
			t.Errorf("%s query plan does not read statuses from the covering index: %s", q.name, joined)
		}
	}
}
