package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/gmtrust/gmtrust/ca"
)

func TestRevokedEntries(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		db, _ := newDB(t, b)
		ctx := context.Background()
		mustInsertCA(t, db, "root")
		mustInsertCA(t, db, "issuing")
		now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

		type fixture struct {
			caID     string
			status   ca.Status
			reason   int
			notAfter time.Time
			want     bool
		}
		fixtures := []fixture{
			{"root", ca.StatusGood, 0, now.AddDate(1, 0, 0), false},
			{"root", ca.StatusRevoked, 1, now.AddDate(1, 0, 0), true},
			{"root", ca.StatusHold, 6, now.AddDate(0, 0, 1), true},
			{"root", ca.StatusRevoked, 4, now, true},                    // valid through its last second
			{"root", ca.StatusRevoked, 4, now.Add(-time.Second), false}, // expired
			{"root", ca.StatusHold, 6, now.AddDate(-1, 0, 0), false},    // expired
			{"issuing", ca.StatusRevoked, 1, now.AddDate(1, 0, 0), false},
		}
		want := map[string]ca.RevokedEntry{}
		for i, f := range fixtures {
			c := testCert(f.caID)
			c.NotAfter = f.notAfter
			mustInsertCert(t, db, c)
			if f.status != ca.StatusGood {
				r := ca.Revocation{CAID: f.caID, Serial: c.Serial, Reason: f.reason, At: now.Add(-time.Duration(i) * time.Hour)}
				if i == 1 {
					r.InvalidityDate = now.Add(-48 * time.Hour)
				}
				if _, err := db.Revoke(ctx, r); err != nil {
					t.Fatal(err)
				}
				if f.want {
					want[c.Serial] = ca.RevokedEntry{Serial: c.Serial, RevokedAt: r.At, Reason: r.Reason, InvalidityDate: r.InvalidityDate}
				}
			}
		}
		got := map[string]ca.RevokedEntry{}
		err := db.RevokedEntries(ctx, "root", now, func(e ca.RevokedEntry) error {
			if _, dup := got[e.Serial]; dup {
				t.Errorf("entry %s twice", e.Serial)
			}
			got[e.Serial] = e
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%d entries, want %d: %+v", len(got), len(want), got)
		}
		for s, w := range want {
			g := got[s]
			if g.Serial != w.Serial || g.Reason != w.Reason || !g.RevokedAt.Equal(w.RevokedAt) || !g.InvalidityDate.Equal(w.InvalidityDate) {
				t.Errorf("entry %s = %+v, want %+v", s, g, w)
			}
		}

		errStop := errors.New("stop")
		calls := 0
		err = db.RevokedEntries(ctx, "root", now, func(ca.RevokedEntry) error { calls++; return errStop })
		if !errors.Is(err, errStop) || calls != 1 {
			t.Fatalf("callback error: %v after %d calls", err, calls)
		}
	})
}

// TestRevokedEntriesLarge streams 1M entries and checks that the heap does
// not grow with them. It takes minutes, so it only runs when
// GMTRUST_STORE_LARGE=1.
func TestRevokedEntriesLarge(t *testing.T) {
	if os.Getenv("GMTRUST_STORE_LARGE") != "1" {
		t.Skip("set GMTRUST_STORE_LARGE=1 to stream 1M CRL entries")
	}
	forEachBackend(t, func(t *testing.T, b backend) {
		db, _ := newDB(t, b)
		ctx := context.Background()
		mustInsertCA(t, db, "root")
		const n = 1_000_000
		const chunk = 20_000
		notAfter := testTime.AddDate(5, 0, 0).Unix()
		for start := 0; start < n; start += chunk {
			rows := make([]*certRow, chunk)
			for i := range rows {
				rows[i] = &certRow{CAID: "root", Serial: fmt.Sprintf("%x", 0x100000+start+i), SANs: "[]", NotAfter: notAfter,
					Status: "revoked", Reason: 1, RevokedAt: 1, DER: []byte{0x30}, CreatedAt: int64(start + i + 1)}
			}
			err := db.InTx(ctx, func(ctx context.Context, tx *sqlx.Tx) error { return db.insertCertRows(ctx, tx, rows) })
			if err != nil {
				t.Fatal(err)
			}
		}
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		base, peak := ms.HeapInuse, ms.HeapInuse
		count := 0
		err := db.RevokedEntries(ctx, "root", testTime, func(e ca.RevokedEntry) error {
			count++
			if count%100_000 == 0 {
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapInuse)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if count != n {
			t.Fatalf("%d entries, want %d", count, n)
		}
		grew := int64(peak) - int64(base)
		t.Logf("heap in use grew by %d KiB while streaming %d entries", grew/1024, n)
		// Holding the entries would take well over 64 MiB (1M × ~100 bytes).
		if grew > 32<<20 {
			t.Fatalf("heap grew by %d MiB: entries are being accumulated", grew>>20)
		}
	})
}

func testCRL(der string) func(n int64) (*ca.CRLRecord, error) {
	return func(n int64) (*ca.CRLRecord, error) {
		return &ca.CRLRecord{ThisUpdate: testTime, NextUpdate: testTime.Add(24 * time.Hour), DER: []byte(der)}, nil
	}
}

func TestNextCRL(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		db, _ := newDB(t, b)
		ctx := context.Background()
		mustInsertCA(t, db, "root")
		mustInsertCA(t, db, "issuing")

		if _, err := db.LatestCRL(ctx, "root"); !errors.Is(err, ca.ErrNotFound) {
			t.Fatalf("LatestCRL before any: %v", err)
		}
		for want := int64(1); want <= 3; want++ {
			rec, err := db.NextCRL(ctx, "root", testCRL(fmt.Sprint("crl", want)))
			if err != nil {
				t.Fatal(err)
			}
			if rec.Number != want || rec.CAID != "root" || rec.CreatedAt.IsZero() {
				t.Fatalf("NextCRL = %+v, want number %d", rec, want)
			}
		}
		// Numbers are per CA.
		if rec, err := db.NextCRL(ctx, "issuing", testCRL("i1")); err != nil || rec.Number != 1 {
			t.Fatalf("first CRL of another CA: %+v, %v", rec, err)
		}

		errBuild := errors.New("signing failed")
		badBuilds := []struct {
			name  string
			build func(int64) (*ca.CRLRecord, error)
			want  error
		}{
			{"build error", func(int64) (*ca.CRLRecord, error) { return nil, errBuild }, errBuild},
			{"nil record", func(int64) (*ca.CRLRecord, error) { return nil, nil }, ErrInvalid},
			{"wrong number", func(n int64) (*ca.CRLRecord, error) {
				return &ca.CRLRecord{Number: n + 1, ThisUpdate: testTime, DER: []byte{1}}, nil
			}, ErrInvalid},
			{"wrong CA", func(int64) (*ca.CRLRecord, error) {
				return &ca.CRLRecord{CAID: "issuing", ThisUpdate: testTime, DER: []byte{1}}, nil
			}, ErrInvalid},
			{"no DER", func(int64) (*ca.CRLRecord, error) { return &ca.CRLRecord{ThisUpdate: testTime}, nil }, ErrInvalid},
		}
		for _, tt := range badBuilds {
			if _, err := db.NextCRL(ctx, "root", tt.build); !errors.Is(err, tt.want) {
				t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
			}
		}
		latest, err := db.LatestCRL(ctx, "root")
		if err != nil {
			t.Fatal(err)
		}
		if latest.Number != 3 || string(latest.DER) != "crl3" || !latest.ThisUpdate.Equal(testTime) ||
			!latest.NextUpdate.Equal(testTime.Add(24*time.Hour)) {
			t.Fatalf("LatestCRL = %+v", latest)
		}
		// A failed build must not use up a number.
		if rec, err := db.NextCRL(ctx, "root", testCRL("crl4")); err != nil || rec.Number != 4 {
			t.Fatalf("after failures: %+v, %v", rec, err)
		}
	})
}

// TestNextCRLConcurrentHandles generates CRLs for one CA from two DB
// handles at once, as two processes sharing the database would: every
// number is used once, with no gap.
func TestNextCRLConcurrentHandles(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		dsn := b.newDSN(t)
		db1 := openDB(t, dsn, Options{})
		db2 := openDB(t, dsn, Options{})
		mustInsertCA(t, db1, "root")
		ctx := context.Background()

		const perWorker = 8
		var mu sync.Mutex
		var numbers []int64
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for w := range 8 {
			db := []*DB{db1, db2}[w%2]
			wg.Go(func() {
				for range perWorker {
					var built int64
					rec, err := db.NextCRL(ctx, "root", func(n int64) (*ca.CRLRecord, error) {
						built = n
						time.Sleep(time.Millisecond) // widen the race window
						return &ca.CRLRecord{ThisUpdate: testTime, DER: []byte{byte(n)}}, nil
					})
					if err != nil {
						errs <- err
						return
					}
					if rec.Number != built {
						errs <- fmt.Errorf("stored %d, built %d", rec.Number, built)
						return
					}
					mu.Lock()
					numbers = append(numbers, rec.Number)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		slices.Sort(numbers)
		for i, n := range numbers {
			if n != int64(i+1) {
				t.Fatalf("numbers %v: not 1..%d each once", numbers, 8*perWorker)
			}
		}
		if len(numbers) != 8*perWorker {
			t.Fatalf("%d CRLs, want %d", len(numbers), 8*perWorker)
		}
	})
}

func TestTryLock(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		dsn := b.newDSN(t)
		db1 := openDB(t, dsn, Options{})
		// On PostgreSQL the lock excludes other processes (here: another
		// handle); on SQLite it is per process, so contend on one handle.
		db2 := db1
		if b.name == DialectPostgres {
			db2 = openDB(t, dsn, Options{})
		}
		ctx := context.Background()
		inside := make(chan struct{})
		leave := make(chan struct{})
		result := make(chan error, 1)
		go func() {
			ran, err := db1.TryLock(ctx, "crl-job", func(ctx context.Context) error {
				close(inside)
				<-leave
				return nil
			})
			if err == nil && !ran {
				err = errors.New("first TryLock did not run")
			}
			result <- err
		}()
		<-inside
		for _, db := range []*DB{db1, db2} {
			ran, err := db.TryLock(ctx, "crl-job", func(context.Context) error {
				t.Error("ran while the lock was held")
				return nil
			})
			if err != nil || ran {
				t.Fatalf("TryLock while held: ran=%v err=%v", ran, err)
			}
		}
		// Another name is independent.
		if ran, err := db2.TryLock(ctx, "other-job", func(context.Context) error { return nil }); err != nil || !ran {
			t.Fatalf("TryLock(other) = %v, %v", ran, err)
		}
		close(leave)
		if err := <-result; err != nil {
			t.Fatal(err)
		}
		errJob := errors.New("job failed")
		ran, err := db2.TryLock(ctx, "crl-job", func(context.Context) error { return errJob })
		if !ran || !errors.Is(err, errJob) {
			t.Fatalf("TryLock after release = %v, %v", ran, err)
		}
	})
}

// TestNextCRLPrunes: a new CRL deletes the CA's superseded CRLs that have
// expired and are older than CRLRetention, and nothing else: not the
// latest, not one still valid or recent, not another CA's.
func TestNextCRLPrunes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		now := testTime
		db := openDB(t, b.newDSN(t), Options{Now: func() time.Time { return now }})
		ctx := context.Background()
		mustInsertCA(t, db, "root")
		mustInsertCA(t, db, "issuing")
		crl := func(caID string, validity time.Duration) int64 {
			t.Helper()
			rec, err := db.NextCRL(ctx, caID, func(int64) (*ca.CRLRecord, error) {
				return &ca.CRLRecord{ThisUpdate: now, NextUpdate: now.Add(validity), DER: []byte("crl")}, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			return rec.Number
		}
		numbers := func(caID string) []int64 {
			t.Helper()
			var out []int64
			if err := db.db.SelectContext(ctx, &out, db.Rebind(`SELECT number FROM crls WHERE ca_id = ? ORDER BY number`), caID); err != nil {
				t.Fatal(err)
			}
			return out
		}
		crl("root", 24*time.Hour)    // 1: expired and old by the end
		crl("root", 30*24*time.Hour) // 2: old but still valid
		crl("issuing", 24*time.Hour) // another CA's: untouched
		now = now.Add(CRLRetention + 2*24*time.Hour)
		crl("root", time.Hour) // 3: recent, expires soon
		now = now.Add(2 * time.Hour)
		if got := crl("root", 24*time.Hour); got != 4 {
			t.Fatalf("number %d after pruning, want 4", got)
		}
		if got, want := numbers("root"), []int64{2, 3, 4}; !slices.Equal(got, want) {
			t.Errorf("root CRLs %v, want %v", got, want)
		}
		if got := numbers("issuing"); !slices.Equal(got, []int64{1}) {
			t.Errorf("issuing CRLs %v, want [1]", got)
		}
		// Pruned down to the latest alone, numbering goes on.
		now = now.Add(60 * 24 * time.Hour)
		if got := crl("root", 24*time.Hour); got != 5 {
			t.Fatalf("number %d, want 5", got)
		}
		if got := numbers("root"); !slices.Equal(got, []int64{5}) {
			t.Errorf("root CRLs %v, want [5]", got)
		}
		if got := crl("root", 24*time.Hour); got != 6 {
			t.Fatalf("number %d, want 6", got)
		}
	})
}
