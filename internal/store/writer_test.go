package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/gmtrust/gmtrust/ca"
)

// TestGroupCommitConcurrent issues certificates from 64 goroutines: all
// succeed, all are stored, and they shared transactions.
func TestGroupCommitConcurrent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		db, _ := newDB(t, b)
		mustInsertCA(t, db, "root")
		ctx := context.Background()
		const writers, each = 64, 20
		before := db.WriteStats()
		var wg sync.WaitGroup
		var failed atomic.Int64
		for range writers {
			wg.Go(func() {
				for range each {
					if err := db.InsertCertificate(ctx, testCert("root")); err != nil {
						t.Error(err)
						failed.Add(1)
						return
					}
				}
			})
		}
		wg.Wait()
		if failed.Load() > 0 {
			t.FailNow()
		}
		if n := countRows(t, db, "SELECT COUNT(*) FROM certificates"); n != writers*each {
			t.Fatalf("%d certificates stored, want %d", n, writers*each)
		}
		st := db.WriteStats()
		batches, writes := st.Batches-before.Batches, st.Writes-before.Writes
		t.Logf("%d writes in %d transactions (%.1f per commit)", writes, batches, float64(writes)/float64(batches))
		if writes != writers*each {
			t.Fatalf("stats count %d writes, want %d", writes, writers*each)
		}
		if batches >= writes/2 {
			t.Fatalf("%d commits for %d writes: no group commit", batches, writes)
		}
	})
}

// TestWriteCancelledBeforeRun: a write whose caller gives up while it is
// queued is never run.
func TestWriteCancelledBeforeRun(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		db := openDB(t, b.newDSN(t), Options{Writers: 1})
		release := blockWriter(t, db)
		ctx, cancel := context.WithCancel(context.Background())
		var ran atomic.Bool
		result := make(chan error, 1)
		go func() {
			result <- db.Write(ctx, func(context.Context, *sqlx.Tx) error {
				ran.Store(true)
				return nil
			})
		}()
		waitQueued(t, db, 1)
		cancel()
		select {
		case err := <-result:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Write = %v, want context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("cancelled Write did not return while the writer was busy")
		}
		release()
		// A later write proves the writer went past the abandoned one.
		if err := db.SetSetting(context.Background(), "k", "v"); err != nil {
			t.Fatal(err)
		}
		if ran.Load() {
			t.Fatal("abandoned write ran")
		}
		if err := db.Write(ctx, func(context.Context, *sqlx.Tx) error { return nil }); !errors.Is(err, context.Canceled) {
			t.Fatalf("Write with a done context = %v", err)
		}
	})
}

// TestWriteCancelledWhileRunning: once a write has started, cancelling its
// caller does not undo it, and Write reports the commit.
func TestWriteCancelledWhileRunning(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		db, _ := newDB(t, b)
		ctx, cancel := context.WithCancel(context.Background())
		err := db.Write(ctx, func(fctx context.Context, tx *sqlx.Tx) error {
			cancel()
			if fctx.Err() != nil {
				t.Error("the write's context was cancelled with its caller's")
			}
			return db.SetSettingTx(fctx, tx, "k", "kept")
		})
		if err != nil {
			t.Fatalf("Write = %v, want nil: it had started", err)
		}
		if v, err := db.GetSetting(context.Background(), "k"); err != nil || v != "kept" {
			t.Fatalf("setting = %q, %v", v, err)
		}
	})
}

// TestWriteFailuresIsolated mixes failing, panicking and good writes in
// one batch: each caller gets its own outcome and only good writes stick.
func TestWriteFailuresIsolated(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		db := openDB(t, b.newDSN(t), Options{Writers: 1})
		ctx := context.Background()
		errBad := errors.New("bad write")
		kinds := []string{"ok", "fail", "ok", "panic", "ok", "ok", "fail", "ok"}
		release := blockWriter(t, db)
		errs := make([]error, len(kinds))
		var wg sync.WaitGroup
		for i, kind := range kinds {
			key := "k" + string(rune('a'+i))
			wg.Go(func() {
				errs[i] = db.Write(ctx, func(ctx context.Context, tx *sqlx.Tx) error {
					// Write first, so a failure must really be rolled back.
					if err := db.SetSettingTx(ctx, tx, key, kind); err != nil {
						return err
					}
					switch kind {
					case "fail":
						return errBad
					case "panic":
						panic("boom")
					}
					return nil
				})
			})
		}
		waitQueued(t, db, len(kinds))
		release()
		wg.Wait()
		for i, kind := range kinds {
			key := "k" + string(rune('a'+i))
			_, gerr := db.GetSetting(ctx, key)
			switch kind {
			case "ok":
				if errs[i] != nil || gerr != nil {
					t.Errorf("write %d (ok): %v, read: %v", i, errs[i], gerr)
				}
			case "fail":
				if !errors.Is(errs[i], errBad) || !errors.Is(gerr, ca.ErrNotFound) {
					t.Errorf("write %d (fail): %v, read: %v", i, errs[i], gerr)
				}
			case "panic":
				if errs[i] == nil || !strings.Contains(errs[i].Error(), "panicked") || !errors.Is(gerr, ca.ErrNotFound) {
					t.Errorf("write %d (panic): %v, read: %v", i, errs[i], gerr)
				}
			}
		}
	})
}

// TestCloseDrains closes the store while writes are queued: every write
// accepted before Close commits, later ones get ErrClosed.
func TestCloseDrains(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		dsn := b.newDSN(t)
		db := openDB(t, dsn, Options{Writers: 1})
		mustInsertCA(t, db, "root")
		ctx := context.Background()
		release := blockWriter(t, db)
		const n = 20
		errs := make(chan error, n)
		for range n {
			go func() { errs <- db.InsertCertificate(ctx, testCert("root")) }()
		}
		waitQueued(t, db, n)
		closed := make(chan error, 1)
		go func() { closed <- db.Close() }()
		release()
		if err := <-closed; err != nil {
			t.Fatal(err)
		}
		for range n {
			if err := <-errs; err != nil {
				t.Fatalf("queued write: %v", err)
			}
		}
		if err := db.InsertCertificate(ctx, testCert("root")); !errors.Is(err, ErrClosed) {
			t.Fatalf("write after Close = %v, want ErrClosed", err)
		}
		db = openDB(t, dsn, Options{})
		if got := countRows(t, db, "SELECT COUNT(*) FROM certificates"); got != n {
			t.Fatalf("%d certificates after Close, want %d", got, n)
		}
	})
}

// TestNestedWrite: a write that calls Write or InTx with its own context
// gets ErrNestedWrite instead of waiting forever for itself (SQLite has a
// single writer).
func TestNestedWrite(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		db, _ := newDB(t, b)
		ctx := context.Background()
		nested := func(ctx context.Context) error {
			if err := db.SetSetting(ctx, "inner", "x"); !errors.Is(err, ErrNestedWrite) {
				return fmt.Errorf("nested Write = %v, want ErrNestedWrite", err)
			}
			if err := db.InTx(ctx, func(context.Context, *sqlx.Tx) error { return nil }); !errors.Is(err, ErrNestedWrite) {
				return fmt.Errorf("nested InTx = %v, want ErrNestedWrite", err)
			}
			return nil
		}
		done := make(chan error, 2)
		go func() {
			done <- db.Write(ctx, func(ctx context.Context, tx *sqlx.Tx) error { return nested(ctx) })
		}()
		go func() {
			done <- db.InTx(ctx, func(ctx context.Context, tx *sqlx.Tx) error { return nested(ctx) })
		}()
		for range 2 {
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("nested write deadlocked")
			}
		}
	})
}
