package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/gmtrust/gmtrust/ca"
)

// TestAuthCache checks that cached token lookups follow every change:
// at once when it is made through the same DB, within AuthRecheck when
// another process (here a second DB on the same database) makes it.
func TestAuthCache(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		dsn := b.newDSN(t)
		ctx := context.Background()
		// server trusts an epoch read for an hour: only its own writes, or
		// a lapse of that hour, make it look again.
		server := openDB(t, dsn, Options{AuthRecheck: time.Hour})
		cli := openDB(t, dsn, Options{AuthRecheck: -1})

		if err := server.InsertPrincipal(ctx, &Principal{Name: "oa", Kind: KindService, Department: "czt", Roles: []string{"approval-system"}}); err != nil {
			t.Fatal(err)
		}
		secret := sha256.Sum256([]byte("gmt_oa"))
		if err := server.CreateToken(ctx, &Token{ID: "tok-oa", Principal: "oa", Hash: secret[:]}); err != nil {
			t.Fatal(err)
		}
		lookup := func(db *DB) (*Token, *Principal) {
			t.Helper()
			tok, p, err := db.TokenPrincipal(ctx, secret[:])
			if err != nil {
				t.Fatal(err)
			}
			return tok, p
		}
		if tok, p := lookup(server); tok.ID != "tok-oa" || p == nil || p.Department != "czt" || len(p.Roles) != 1 {
			t.Fatalf("first lookup = %+v, %+v", tok, p)
		}

		// Results handed out are copies: changing one changes nothing
		// cached.
		_, p := lookup(server)
		p.Roles[0], p.Disabled = "admin", true
		if _, p := lookup(server); p.Roles[0] != "approval-system" || p.Disabled {
			t.Fatalf("a caller's change reached the cache: %+v", p)
		}

		// Another process disables the principal: the server, trusting
		// its epoch for an hour, still answers from memory (this is what
		// shows the cache is used at all) ...
		disabled := true
		if _, err := cli.UpdatePrincipal(ctx, "oa", PrincipalUpdate{Disabled: &disabled}); err != nil {
			t.Fatal(err)
		}
		if _, p := lookup(server); p.Disabled {
			t.Fatal("lookup was not served from the cache")
		}
		// ... and sees the change once it reads the epoch again.
		server.auth.mu.Lock()
		server.auth.readAt = server.auth.readAt.Add(-2 * time.Hour)
		server.auth.mu.Unlock()
		if _, p := lookup(server); !p.Disabled {
			t.Fatal("another process's change not seen after AuthRecheck")
		}

		// Changes through the same DB apply to the next lookup.
		enabled := false
		roles := []string{"auditor", "ra-officer"}
		if _, err := server.UpdatePrincipal(ctx, "oa", PrincipalUpdate{Disabled: &enabled, Roles: roles}); err != nil {
			t.Fatal(err)
		}
		if _, p := lookup(server); p.Disabled || len(p.Roles) != 2 || p.Roles[0] != "auditor" {
			t.Fatalf("after update through this DB: %+v", p)
		}
		revokedAt := testTime.Add(time.Minute)
		if err := server.RevokeToken(ctx, "tok-oa", revokedAt); err != nil {
			t.Fatal(err)
		}
		if tok, _ := lookup(server); !tok.RevokedAt.Equal(revokedAt) {
			t.Fatalf("revocation through this DB not seen: %+v", tok)
		}

		// Unknown tokens are not remembered: one created elsewhere works
		// at once.
		fresh := sha256.Sum256([]byte("gmt_fresh"))
		if _, _, err := server.TokenPrincipal(ctx, fresh[:]); !errors.Is(err, ca.ErrNotFound) {
			t.Fatalf("unknown token: %v", err)
		}
		if err := cli.CreateToken(ctx, &Token{ID: "tok-fresh", Principal: "oa", Hash: fresh[:]}); err != nil {
			t.Fatal(err)
		}
		if tok, _, err := server.TokenPrincipal(ctx, fresh[:]); err != nil || tok.ID != "tok-fresh" {
			t.Fatalf("token created by another process: %v, %v", tok, err)
		}
	})
}

// TestAuthCacheRecheck runs the cross-process case with a short
// AuthRecheck and the real clock: the change must show within it.
func TestAuthCacheRecheck(t *testing.T) {
	dsn := sqliteBackend().newDSN(t)
	ctx := context.Background()
	server := openDB(t, dsn, Options{AuthRecheck: 20 * time.Millisecond})
	cli := openDB(t, dsn, Options{AuthRecheck: -1})
	secret := sha256.Sum256([]byte("gmt_x"))
	if err := server.InsertPrincipal(ctx, &Principal{Name: "x", Kind: KindPerson, Roles: []string{"admin"}}); err != nil {
		t.Fatal(err)
	}
	if err := server.CreateToken(ctx, &Token{ID: "tok-x", Principal: "x", Hash: secret[:]}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := server.TokenPrincipal(ctx, secret[:]); err != nil {
		t.Fatal(err)
	}
	if err := cli.RevokeToken(ctx, "tok-x", testTime); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		tok, _, err := server.TokenPrincipal(ctx, secret[:])
		if err != nil {
			t.Fatal(err)
		}
		if !tok.RevokedAt.IsZero() {
			break
		}
		// Generous bound for a loaded CI machine; the point is that it
		// ends, not how fast.
		if time.Since(start) > 5*time.Second {
			t.Fatal("revocation by another process never seen")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestAuthCacheConcurrent races lookups against changes (run with -race):
// once a revocation has returned, no lookup that starts afterwards may
// see the token unrevoked.
func TestAuthCacheConcurrent(t *testing.T) {
	db := openDB(t, sqliteBackend().newDSN(t), Options{AuthRecheck: time.Hour})
	ctx := context.Background()
	if err := db.InsertPrincipal(ctx, &Principal{Name: "p", Kind: KindPerson, Roles: []string{"admin"}}); err != nil {
		t.Fatal(err)
	}
	const n = 8
	hashes := make([][]byte, n)
	for i := range hashes {
		h := sha256.Sum256([]byte{byte(i)})
		hashes[i] = h[:]
		if err := db.CreateToken(ctx, &Token{ID: "t" + string(rune('a'+i)), Principal: "p", Hash: h[:]}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, _, err := db.TokenPrincipal(ctx, hashes[(g+i)%n]); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for i := range n {
		id := "t" + string(rune('a'+i))
		if err := db.RevokeToken(ctx, id, testTime); err != nil {
			t.Fatal(err)
		}
		tok, _, err := db.TokenPrincipal(ctx, hashes[i])
		if err != nil {
			t.Fatal(err)
		}
		if tok.RevokedAt.IsZero() {
			t.Fatalf("token %s unrevoked right after its revocation returned", id)
		}
	}
	close(stop)
	wg.Wait()
}
