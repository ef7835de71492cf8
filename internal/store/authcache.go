package store

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
)

// Bearer-token authentication reads a token, its principal and the
// principal's roles on every request. On PostgreSQL that query was the
// only per-request round trip of certificate issuance and cost the server
// process more CPU than the group-committed insert of the certificate
// itself, so its results are kept in memory, tagged with the
// authentication epoch (migration 00006): a counter that every change to
// tokens, principals and roles increments in the same transaction.
//
// A cached result is used only while the epoch it was read under is
// still the current one, and the current epoch is re-read from the
// database once it is older than Options.AuthRecheck (default 250 ms).
// So a change made through this DB applies to the next request (the
// writer forgets the epoch once the change has committed), and a change
// made by another process on the same database (the CLI, another
// replica) within AuthRecheck. Expiry is not cached away: the token's
// expiry time is part of the result and is checked against the clock on
// every request.

// defaultAuthRecheck is how long a read of the epoch is trusted.
const defaultAuthRecheck = 250 * time.Millisecond

// authCacheMax bounds the remembered tokens; the cache starts afresh when
// it is full (tokens of a live instance number in the hundreds).
const authCacheMax = 10000

type authCache struct {
	recheck time.Duration
	// since measures how long ago the epoch was read; a monotonic clock
	// (time.Since) in production.
	since func(time.Time) time.Duration

	mu      sync.Mutex
	epoch   int64
	readAt  time.Time // zero: the epoch must be read before anything is trusted
	gen     uint64    // bumped by invalidate; an epoch read that straddles it is not trusted
	entries map[[sha256.Size]byte]authEntry

	// reading admits one epoch read at a time; requests arriving while it
	// runs go to the database instead of queueing behind it.
	reading sync.Mutex
}

type authEntry struct {
	epoch int64
	tok   Token
	p     *Principal // nil: the token has no principal
}

func newAuthCache(recheck time.Duration) *authCache {
	if recheck < 0 {
		return nil
	}
	if recheck == 0 {
		recheck = defaultAuthRecheck
	}
	return &authCache{recheck: recheck, since: time.Since, entries: make(map[[sha256.Size]byte]authEntry)}
}

// current returns the epoch to trust and true, or false when it cannot
// be trusted now (another request is reading it): the caller then reads
// from the database without the cache.
func (c *authCache) current(ctx context.Context, db *sqlx.DB) (int64, bool, error) {
	c.mu.Lock()
	if !c.readAt.IsZero() && c.since(c.readAt) < c.recheck {
		e := c.epoch
		c.mu.Unlock()
		return e, true, nil
	}
	gen := c.gen
	c.mu.Unlock()
	if !c.reading.TryLock() {
		return 0, false, nil
	}
	defer c.reading.Unlock()
	start := time.Now()
	var n int64
	if err := db.GetContext(ctx, &n, `SELECT n FROM auth_epoch WHERE id = 1`); err != nil {
		return 0, false, fmt.Errorf("store: read the authentication epoch: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		// A change committed here while the epoch was read: the value may
		// predate it.
		return 0, false, nil
	}
	if n != c.epoch {
		clear(c.entries)
		c.epoch = n
	}
	c.readAt = start
	return n, true, nil
}

func (c *authCache) get(key [sha256.Size]byte, epoch int64) (*Token, *Principal, bool) {
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if !ok || e.epoch != epoch {
		return nil, nil, false
	}
	tok, p := e.copies()
	return tok, p, true
}

func (c *authCache) put(key [sha256.Size]byte, epoch int64, tok *Token, p *Principal) {
	e := authEntry{epoch: epoch, tok: *tok}
	e.tok.Hash = slices.Clone(tok.Hash)
	if p != nil {
		pc := *p
		pc.Roles = slices.Clone(p.Roles)
		e.p = &pc
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if epoch != c.epoch {
		return // read under an epoch that has passed
	}
	if len(c.entries) >= authCacheMax {
		clear(c.entries)
	}
	c.entries[key] = e
}

// invalidate forgets the epoch and every entry: called once a change to
// tokens or principals made through this DB has committed (or failed;
// forgetting is always safe).
func (c *authCache) invalidate() {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.gen++
	c.readAt = time.Time{}
	clear(c.entries)
	c.mu.Unlock()
}

// copies returns values the caller may change without touching the cache.
func (e *authEntry) copies() (*Token, *Principal) {
	tok := e.tok
	tok.Hash = slices.Clone(e.tok.Hash)
	if e.p == nil {
		return &tok, nil
	}
	p := *e.p
	p.Roles = slices.Clone(e.p.Roles)
	return &tok, &p
}

// bumpAuthEpoch increments the authentication epoch inside tx: every
// write that changes a token, a principal or its roles calls it.
func (d *DB) bumpAuthEpoch(ctx context.Context, tx *sqlx.Tx) error {
	if _, err := tx.ExecContext(ctx, `UPDATE auth_epoch SET n = n + 1 WHERE id = 1`); err != nil {
		return fmt.Errorf("store: move the authentication epoch: %w", err)
	}
	return nil
}

// writeAuth is Write for changes to tokens and principals (fn moves the
// epoch): this process forgets what it cached once the outcome is known.
func (d *DB) writeAuth(ctx context.Context, fn WriteFunc) error {
	err := d.Write(ctx, fn)
	d.auth.invalidate()
	return err
}
