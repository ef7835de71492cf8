package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/gmtrust/gmtrust/ca"
)

func TestTokens(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		dsn := b.newDSN(t)
		// A long interval: only explicit flushes and Close write uses.
		db := openDB(t, dsn, Options{TouchInterval: time.Hour})
		ctx := context.Background()
		secret := sha256.Sum256([]byte("gmt_secret_token"))
		tok := &Token{ID: "t1", Principal: "alice", Hash: secret[:], ExpiresAt: testTime.AddDate(1, 0, 0)}
		if err := db.InsertToken(ctx, tok); err != nil {
			t.Fatal(err)
		}

		rejects := []struct {
			name string
			tok  *Token
			want error
		}{
			{"same id", &Token{ID: "t1", Principal: "bob", Hash: randBytes(32)}, ErrDuplicate},
			{"same hash", &Token{ID: "t2", Principal: "bob", Hash: secret[:]}, ErrDuplicate},
			{"short hash", &Token{ID: "t3", Principal: "bob", Hash: randBytes(16)}, ErrInvalid},
			{"no principal", &Token{ID: "t4", Hash: randBytes(32)}, ErrInvalid},
			{"nil", nil, ErrInvalid},
		}
		for _, tt := range rejects {
			if err := db.InsertToken(ctx, tt.tok); !errors.Is(err, tt.want) {
				t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
			}
		}

		got, err := db.TokenByHash(ctx, secret[:])
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != "t1" || got.Principal != "alice" || !got.CreatedAt.Equal(tok.CreatedAt) ||
			!got.ExpiresAt.Equal(tok.ExpiresAt) || !got.LastUsedAt.IsZero() || !got.RevokedAt.IsZero() {
			t.Fatalf("TokenByHash = %+v, want %+v", got, tok)
		}
		if !got.Valid(testTime) || got.Valid(testTime.AddDate(2, 0, 0)) {
			t.Fatal("Valid ignores expiry")
		}
		other := sha256.Sum256([]byte("other"))
		if _, err := db.TokenByHash(ctx, other[:]); !errors.Is(err, ca.ErrNotFound) {
			t.Fatalf("unknown hash: %v", err)
		}

		// Uses are coalesced in memory, visible at once, written on flush,
		// and never move backwards.
		used := testTime.Add(time.Hour)
		for _, at := range []time.Time{used.Add(-time.Minute), used, used.Add(-time.Second)} {
			if err := db.TouchToken(ctx, "t1", at); err != nil {
				t.Fatal(err)
			}
		}
		if n := countRows(t, db, "SELECT COUNT(*) FROM api_tokens WHERE last_used_at <> 0"); n != 0 {
			t.Fatal("TouchToken wrote to the database at once")
		}
		if got, _ := db.TokenByHash(ctx, secret[:]); !got.LastUsedAt.Equal(used) {
			t.Fatalf("pending last use = %v, want %v", got.LastUsedAt, used)
		}
		if err := db.FlushTokenUses(ctx); err != nil {
			t.Fatal(err)
		}
		if n := countRows(t, db, "SELECT COUNT(*) FROM api_tokens WHERE last_used_at = ?", used.UnixNano()); n != 1 {
			t.Fatal("flush did not write the last use")
		}
		db.TouchToken(ctx, "t1", used.Add(-time.Hour)) // older than stored
		db.FlushTokenUses(ctx)
		if got, _ := db.TokenByHash(ctx, secret[:]); !got.LastUsedAt.Equal(used) {
			t.Fatalf("last use went backwards to %v", got.LastUsedAt)
		}

		revokedAt := testTime.Add(2 * time.Hour)
		if err := db.RevokeToken(ctx, "t1", revokedAt); err != nil {
			t.Fatal(err)
		}
		if err := db.RevokeToken(ctx, "t1", revokedAt.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		got, _ = db.TokenByHash(ctx, secret[:])
		if !got.RevokedAt.Equal(revokedAt) || got.Valid(testTime) {
			t.Fatalf("after revoke: %+v", got)
		}
		if err := db.RevokeToken(ctx, "nope", time.Time{}); !errors.Is(err, ca.ErrNotFound) {
			t.Fatalf("RevokeToken(unknown) = %v", err)
		}

		// Close writes pending uses.
		last := used.Add(time.Hour)
		db.TouchToken(ctx, "t1", last)
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		db = openDB(t, dsn, Options{})
		if got, err := db.TokenByHash(ctx, secret[:]); err != nil || !got.LastUsedAt.Equal(last) {
			t.Fatalf("after Close: %+v, %v; want last use %v", got, err, last)
		}
	})
}

// TestTouchTokenPeriodicFlush checks the background flush.
func TestTouchTokenPeriodicFlush(t *testing.T) {
	db := openDB(t, sqliteBackend().newDSN(t), Options{TouchInterval: 20 * time.Millisecond})
	ctx := context.Background()
	h := sha256.Sum256([]byte("x"))
	if err := db.InsertToken(ctx, &Token{ID: "t", Principal: "p", Hash: h[:]}); err != nil {
		t.Fatal(err)
	}
	db.TouchToken(ctx, "t", testTime)
	deadline := time.Now().Add(5 * time.Second)
	for countRows(t, db, "SELECT COUNT(*) FROM api_tokens WHERE last_used_at <> 0") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("last use never written")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
