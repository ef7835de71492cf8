package store

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/gmtrust/gmtrust/ca"
	"github.com/gmtrust/gmtrust/internal/audit"
)

// Token is an API token as stored: only the SHA-256 of the secret is
// kept. Zero times mean never (ExpiresAt, LastUsedAt, RevokedAt).
type Token struct {
	ID         string
	Principal  string
	Hash       []byte // SHA-256 of the token
	CreatedAt  time.Time
	ExpiresAt  time.Time
	LastUsedAt time.Time
	RevokedAt  time.Time
}

// Valid reports whether the token may be used at now: not revoked and not
// expired.
func (t *Token) Valid(now time.Time) bool {
	return t.RevokedAt.IsZero() && (t.ExpiresAt.IsZero() || now.Before(t.ExpiresAt))
}

type tokenRow struct {
	ID         string `db:"id"`
	Principal  string `db:"principal"`
	Hash       []byte `db:"hash"`
	CreatedAt  int64  `db:"created_at"`
	ExpiresAt  int64  `db:"expires_at"`
	LastUsedAt int64  `db:"last_used_at"`
	RevokedAt  int64  `db:"revoked_at"`
}

// InsertToken stores a new token through group commit; ErrDuplicate when
// its id or hash exists. A zero CreatedAt is set to now.
func (d *DB) InsertToken(ctx context.Context, t *Token) error {
	if err := d.prepareToken(t); err != nil {
		return err
	}
	return d.writeAuth(ctx, func(ctx context.Context, tx *sqlx.Tx) error {
		return d.insertToken(ctx, tx, t)
	})
}

// InsertTokenTx is InsertToken inside a transaction of InTx or Write.
func (d *DB) InsertTokenTx(ctx context.Context, tx *sqlx.Tx, t *Token) error {
	if err := d.prepareToken(t); err != nil {
		return err
	}
	defer d.auth.invalidate() // early, as in InsertPrincipalTx
	return d.insertToken(ctx, tx, t)
}

func (d *DB) prepareToken(t *Token) error {
	switch {
	case t == nil:
		return fmt.Errorf("%w: nil token", ErrInvalid)
	case t.ID == "" || t.Principal == "":
		return fmt.Errorf("%w: token needs id and principal", ErrInvalid)
	case len(t.Hash) != sha256.Size:
		return fmt.Errorf("%w: token hash must be a SHA-256 (%d bytes), got %d bytes", ErrInvalid, sha256.Size, len(t.Hash))
	}
	if t.CreatedAt.IsZero() {
		t.CreatedAt = d.now()
	}
	return nil
}

func (d *DB) insertToken(ctx context.Context, tx *sqlx.Tx, t *Token) error {
	_, err := tx.ExecContext(ctx, d.Rebind(`INSERT INTO api_tokens
		(id, principal, hash, created_at, expires_at, last_used_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?)`),
		t.ID, t.Principal, t.Hash, unixNano(t.CreatedAt), unixNano(t.ExpiresAt), unixNano(t.LastUsedAt), unixNano(t.RevokedAt))
	if err := mapInsertErr(err, "token "+t.ID, ErrDuplicate); err != nil {
		return err
	}
	if err := d.bumpAuthEpoch(ctx, tx); err != nil {
		return err
	}
	// The hash is not logged: the id names the token.
	return d.appendAudit(ctx, tx, "token.create", "token/"+t.ID, audit.OutcomeSuccess,
		map[string]any{"principal": t.Principal, "expires_at": auditTime(t.ExpiresAt)})
}

// TokenByHash returns the token with the given SHA-256, revoked or expired
// ones included (see Token.Valid), or ca.ErrNotFound. LastUsedAt includes
// uses recorded by TouchToken and not yet written.
func (d *DB) TokenByHash(ctx context.Context, hash []byte) (*Token, error) {
	var r tokenRow
	err := d.db.GetContext(ctx, &r, d.Rebind(`SELECT id, principal, hash, created_at, expires_at, last_used_at, revoked_at
		FROM api_tokens WHERE hash = ?`), hash)
	if err != nil {
		return nil, notFound(err, "token")
	}
	t := &Token{
		ID: r.ID, Principal: r.Principal, Hash: r.Hash, CreatedAt: fromUnixNano(r.CreatedAt),
		ExpiresAt: fromUnixNano(r.ExpiresAt), LastUsedAt: fromUnixNano(r.LastUsedAt), RevokedAt: fromUnixNano(r.RevokedAt),
	}
	d.withPendingUse(t)
	return t, nil
}

// TouchToken records that a token was used at at. It only updates memory:
// uses are written in one batch every Options.TouchInterval and on Close,
// so authentication does not cost a durable write per request. A crash
// can lose the last interval's last-use times, which are informational.
func (d *DB) TouchToken(ctx context.Context, id string, at time.Time) error {
	if id == "" {
		return fmt.Errorf("%w: empty token id", ErrInvalid)
	}
	d.touch.record(id, at)
	return nil
}

// FlushTokenUses writes the last-use times recorded by TouchToken now.
func (d *DB) FlushTokenUses(ctx context.Context) error {
	return d.touch.flush(ctx)
}

// RevokeToken revokes a token at at (zero: now); ca.ErrNotFound when there
// is no such token. Revoking a revoked token keeps its first revocation
// time and succeeds.
func (d *DB) RevokeToken(ctx context.Context, id string, at time.Time) error {
	if at.IsZero() {
		at = d.now()
	}
	return d.writeAuth(ctx, func(ctx context.Context, tx *sqlx.Tx) error {
		// The audit head is locked before the token row, as every audited
		// write does, so that two writes cannot deadlock on the pair.
		if _, err := d.lockAuditHead(ctx, tx); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, d.Rebind(`UPDATE api_tokens
			SET revoked_at = CASE WHEN revoked_at = 0 THEN ? ELSE revoked_at END WHERE id = ?`),
			at.UnixNano(), id)
		if err != nil {
			return fmt.Errorf("store: revoke token %s: %w", id, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("store: revoke token %s: %w", id, err)
		} else if n == 0 {
			return fmt.Errorf("store: token %s: %w", id, ca.ErrNotFound)
		}
		if err := d.bumpAuthEpoch(ctx, tx); err != nil {
			return err
		}
		return d.appendAudit(ctx, tx, "token.revoke", "token/"+id, audit.OutcomeSuccess, nil)
	})
}

// toucher coalesces token last-use times in memory and writes them
// periodically.
type toucher struct {
	d       *DB
	mu      sync.Mutex
	pending map[string]time.Time
	stop    chan struct{}
	done    chan struct{}
}

func newToucher(d *DB, every time.Duration) *toucher {
	t := &toucher{
		d:       d,
		pending: make(map[string]time.Time),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go t.loop(every)
	return t
}

func (t *toucher) record(id string, at time.Time) {
	t.mu.Lock()
	if prev, ok := t.pending[id]; !ok || at.After(prev) {
		t.pending[id] = at
	}
	t.mu.Unlock()
}

func (t *toucher) pendingAt(id string) (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	at, ok := t.pending[id]
	return at, ok
}

func (t *toucher) loop(every time.Duration) {
	defer close(t.done)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if err := t.flush(context.Background()); err != nil {
				t.d.log.Warn("store: writing token last-use times", "err", err)
			}
		case <-t.stop:
			return
		}
	}
}

// close stops the loop and writes what is pending; it runs before the
// writer closes.
func (t *toucher) close() {
	close(t.stop)
	<-t.done
	if err := t.flush(context.Background()); err != nil {
		t.d.log.Warn("store: writing token last-use times", "err", err)
	}
}

func (t *toucher) flush(ctx context.Context) error {
	t.mu.Lock()
	batch := t.pending
	t.pending = make(map[string]time.Time)
	t.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	// A fixed order keeps concurrent PostgreSQL writers from deadlocking
	// on the same rows.
	ids := make([]string, 0, len(batch))
	for id := range batch {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	err := t.d.Write(ctx, func(ctx context.Context, tx *sqlx.Tx) error {
		q := t.d.Rebind(`UPDATE api_tokens SET last_used_at = ? WHERE id = ? AND last_used_at < ?`)
		for _, id := range ids {
			at := batch[id].UnixNano()
			if _, err := tx.ExecContext(ctx, q, at, id, at); err != nil {
				return fmt.Errorf("store: touch token %s: %w", id, err)
			}
		}
		return nil
	})
	if err != nil {
		// Put the times back (unless newer ones arrived) for the next try.
		for id, at := range batch {
			t.record(id, at)
		}
	}
	return err
}
