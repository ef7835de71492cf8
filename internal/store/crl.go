package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/gmtrust/gmtrust/ca"
	"github.com/gmtrust/gmtrust/internal/audit"
)

// crlEntriesSQL selects the CRL entries of a CA whose notAfter lies in a
// range. "status <> 'good'" is the predicate of the partial index
// certificates_crl, spelled the same; the index carries every selected
// column, so this is an index-only range scan.
const crlEntriesSQL = `SELECT serial, revoked_at, reason, invalidity_date
	FROM certificates WHERE ca_id = ? AND status <> 'good' AND not_after >= ? AND not_after < ?`

// RevokedEntries streams the CRL entries of a CA: its revoked and held
// certificates that have not expired at now (a certificate is valid
// through the second of its notAfter). Rows are read one at a time, so
// memory does not grow with the number of entries. An error from fn stops
// the scan and is returned.
func (d *DB) RevokedEntries(ctx context.Context, caID string, now time.Time, fn func(ca.RevokedEntry) error) error {
	return d.RevokedEntriesBetween(ctx, caID, now, time.Time{}, fn)
}

// RevokedEntriesBetween streams the CRL entries of a CA whose notAfter is
// at or after from and before to (zero to: no upper bound). Disjoint
// ranges can be scanned concurrently on separate connections.
func (d *DB) RevokedEntriesBetween(ctx context.Context, caID string, from, to time.Time, fn func(ca.RevokedEntry) error) error {
	hi := int64(1<<63 - 1)
	if !to.IsZero() {
		hi = to.Unix()
	}
	rows, err := d.db.QueryContext(ctx, d.Rebind(crlEntriesSQL), caID, from.Unix(), hi)
	if err != nil {
		return fmt.Errorf("store: revoked entries of %s: %w", caID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			e                     ca.RevokedEntry
			revokedAt, invalidity int64
		)
		if err := rows.Scan(&e.Serial, &revokedAt, &e.Reason, &invalidity); err != nil {
			return fmt.Errorf("store: revoked entries of %s: %w", caID, err)
		}
		e.RevokedAt = fromUnixSec(revokedAt)
		e.InvalidityDate = fromUnixSec(invalidity)
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: revoked entries of %s: %w", caID, err)
	}
	return nil
}

// RevokedSpan counts the CRL entries of a CA at now and returns the range
// of their notAfter times, so a large CRL can be read in parallel slices.
func (d *DB) RevokedSpan(ctx context.Context, caID string, now time.Time) (int64, time.Time, time.Time, error) {
	var n, lo, hi sql.NullInt64
	err := d.db.QueryRowContext(ctx, d.Rebind(`SELECT COUNT(*), MIN(not_after), MAX(not_after)
		FROM certificates WHERE ca_id = ? AND status <> 'good' AND not_after >= ?`), caID, now.Unix()).Scan(&n, &lo, &hi)
	if err != nil {
		return 0, time.Time{}, time.Time{}, fmt.Errorf("store: revoked span of %s: %w", caID, err)
	}
	if n.Int64 == 0 {
		return 0, time.Time{}, time.Time{}, nil
	}
	return n.Int64, fromUnixSec(lo.Int64), fromUnixSec(hi.Int64), nil
}

// NextCRL runs build with the next CRL number of the CA and stores the
// CRL it returns, all in one transaction that holds a lock: a PostgreSQL
// transaction-scoped advisory lock per CA (other CAs and issuance go on),
// or SQLite's write lock (which does pause issuance while build runs).
// Numbers therefore strictly increase even across processes. build may
// leave CAID, Number and CreatedAt zero; set, they must match.
func (d *DB) NextCRL(ctx context.Context, caID string, build func(number int64) (*ca.CRLRecord, error)) (*ca.CRLRecord, error) {
	if caID == "" {
		return nil, fmt.Errorf("%w: CRL without CA id", ErrInvalid)
	}
	var out *ca.CRLRecord
	err := d.InTx(ctx, func(ctx context.Context, tx *sqlx.Tx) error {
		if d.dialect == DialectPostgres {
			if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", d.lockKey("crl:"+caID)); err != nil {
				return fmt.Errorf("store: CRL lock of %s: %w", caID, err)
			}
		}
		var last int64
		if err := tx.GetContext(ctx, &last, d.Rebind(`SELECT COALESCE(MAX(number), 0) FROM crls WHERE ca_id = ?`), caID); err != nil {
			return fmt.Errorf("store: last CRL number of %s: %w", caID, err)
		}
		n := last + 1
		rec, err := build(n)
		if err != nil {
			return fmt.Errorf("store: build CRL %d of %s: %w", n, caID, err)
		}
		switch {
		case rec == nil:
			return fmt.Errorf("%w: CRL build returned nothing", ErrInvalid)
		case rec.CAID != "" && rec.CAID != caID:
			return fmt.Errorf("%w: CRL built for CA %s, not %s", ErrInvalid, rec.CAID, caID)
		case rec.Number != 0 && rec.Number != n:
			return fmt.Errorf("%w: CRL built with number %d, not %d", ErrInvalid, rec.Number, n)
		case len(rec.DER) == 0:
			return fmt.Errorf("%w: CRL %d without DER", ErrInvalid, n)
		case rec.ThisUpdate.IsZero():
			return fmt.Errorf("%w: CRL %d without thisUpdate", ErrInvalid, n)
		}
		rec.CAID, rec.Number = caID, n
		if rec.CreatedAt.IsZero() {
			rec.CreatedAt = d.now()
		}
		_, err = tx.ExecContext(ctx, d.Rebind(`INSERT INTO crls (ca_id, number, this_update, next_update, der, created_at)
			VALUES (?, ?, ?, ?, ?, ?)`),
			rec.CAID, rec.Number, rec.ThisUpdate.Unix(), unixSec(rec.NextUpdate), rec.DER, rec.CreatedAt.UnixNano())
		if err := mapInsertErr(err, fmt.Sprintf("CRL %d of %s", n, caID), ErrDuplicate); err != nil {
			return err
		}
		// Superseded CRLs go once they have expired and are older than
		// CRLRetention: only the latest is served, and the revocations
		// they listed stay in certificates and revocation_events. Without
		// this every refresh and every revocation would add a CRL, up to
		// tens of MB each, for good.
		now := d.now()
		res, err := tx.ExecContext(ctx, d.Rebind(`DELETE FROM crls
			WHERE ca_id = ? AND number < ? AND next_update < ? AND created_at < ?`),
			caID, n, now.Unix(), now.Add(-CRLRetention).UnixNano())
		if err != nil {
			return fmt.Errorf("store: prune CRLs of %s: %w", caID, err)
		}
		pruned, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("store: prune CRLs of %s: %w", caID, err)
		}
		if err := d.appendAudit(ctx, tx, "crl.generate", fmt.Sprintf("crl/%s/%d", caID, n), audit.OutcomeSuccess, map[string]any{
			"this_update": auditTime(rec.ThisUpdate), "next_update": auditTime(rec.NextUpdate), "size": len(rec.DER),
			"pruned": pruned,
		}); err != nil {
			return err
		}
		out = rec
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// CRLRetention is how long a superseded CRL is kept after it was made
// (and at least until its nextUpdate); NextCRL deletes older ones.
const CRLRetention = 7 * 24 * time.Hour

// LatestCRL returns the CRL with the highest number of a CA, or
// ca.ErrNotFound.
func (d *DB) LatestCRL(ctx context.Context, caID string) (*ca.CRLRecord, error) {
	var r struct {
		CAID       string `db:"ca_id"`
		Number     int64  `db:"number"`
		ThisUpdate int64  `db:"this_update"`
		NextUpdate int64  `db:"next_update"`
		DER        []byte `db:"der"`
		CreatedAt  int64  `db:"created_at"`
	}
	err := d.db.GetContext(ctx, &r, d.Rebind(`SELECT ca_id, number, this_update, next_update, der, created_at
		FROM crls WHERE ca_id = ? ORDER BY number DESC LIMIT 1`), caID)
	if err != nil {
		return nil, notFound(err, "CRL of "+caID)
	}
	return &ca.CRLRecord{
		CAID: r.CAID, Number: r.Number, ThisUpdate: fromUnixSec(r.ThisUpdate), NextUpdate: fromUnixSec(r.NextUpdate),
		DER: r.DER, CreatedAt: fromUnixNano(r.CreatedAt),
	}, nil
}
