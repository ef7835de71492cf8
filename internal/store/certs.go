package store

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/gmtrust/gmtrust/ca"
	"github.com/gmtrust/gmtrust/internal/audit"
)

// Listing limits of Certificates.
const (
	DefaultLimit = 50
	MaxLimit     = 500
)

// RFC 5280 CRLReason values the store treats specially.
const (
	reasonCertificateHold = 6
	reasonRemoveFromCRL   = 8 // recorded on unhold events: what it means in a delta CRL
)

const certColumns = `ca_id, serial, profile, department, subject, sans, key_algorithm,
	not_before, not_after, status, reason, revoked_at, invalidity_date, der, requested_by, created_at`

// certRow is a certificates row as stored.
type certRow struct {
	CAID           string `db:"ca_id"`
	Serial         string `db:"serial"`
	Profile        string `db:"profile"`
	Department     string `db:"department"`
	Subject        string `db:"subject"`
	SANs           string `db:"sans"`
	KeyAlgorithm   string `db:"key_algorithm"`
	NotBefore      int64  `db:"not_before"`
	NotAfter       int64  `db:"not_after"`
	Status         string `db:"status"`
	Reason         int    `db:"reason"`
	RevokedAt      int64  `db:"revoked_at"`
	InvalidityDate int64  `db:"invalidity_date"`
	DER            []byte `db:"der"`
	RequestedBy    string `db:"requested_by"`
	CreatedAt      int64  `db:"created_at"`
}

func (r *certRow) cert() (*ca.Certificate, error) {
	var sans []string
	if r.SANs != "" {
		if err := json.Unmarshal([]byte(r.SANs), &sans); err != nil {
			return nil, fmt.Errorf("store: certificate %s/%s: bad sans column: %w", r.CAID, r.Serial, err)
		}
	}
	if len(sans) == 0 {
		sans = nil
	}
	return &ca.Certificate{
		CAID:           r.CAID,
		Serial:         r.Serial,
		Profile:        r.Profile,
		Department:     r.Department,
		Subject:        r.Subject,
		SANs:           sans,
		KeyAlgorithm:   r.KeyAlgorithm,
		NotBefore:      fromUnixSec(r.NotBefore),
		NotAfter:       fromUnixSec(r.NotAfter),
		Status:         ca.Status(r.Status),
		Reason:         r.Reason,
		RevokedAt:      fromUnixSec(r.RevokedAt),
		InvalidityDate: fromUnixSec(r.InvalidityDate),
		DER:            r.DER,
		RequestedBy:    r.RequestedBy,
		CreatedAt:      fromUnixNano(r.CreatedAt),
	}, nil
}

// checkSerial enforces the canonical serial form. Serials are keys, so
// "0A" and "a" must not be able to coexist as different certificates.
func checkSerial(s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty serial", ErrInvalid)
	}
	if len(s) > 1 && s[0] == '0' {
		return fmt.Errorf("%w: serial %q has a leading zero", ErrInvalid, s)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return fmt.Errorf("%w: serial %q is not lower-case hex", ErrInvalid, s)
		}
	}
	return nil
}

func checkStatus(s ca.Status) error {
	switch s {
	case ca.StatusGood, ca.StatusRevoked, ca.StatusHold:
		return nil
	}
	return fmt.Errorf("%w: unknown status %q", ErrInvalid, s)
}

// checkReason accepts the RFC 5280 CRLReason values that revoke: 0-10
// except the unassigned 7 and removeFromCRL (8), which only undoes a hold.
func checkReason(r int) error {
	if r < 0 || r > 10 || r == 7 || r == reasonRemoveFromCRL {
		return fmt.Errorf("%w: CRL reason %d cannot revoke", ErrInvalid, r)
	}
	return nil
}

// newCertRow validates c and converts it. A zero CreatedAt is set to now
// (in c too) and an empty Status to good.
func (d *DB) newCertRow(c *ca.Certificate) (*certRow, error) {
	if c == nil {
		return nil, fmt.Errorf("%w: nil certificate", ErrInvalid)
	}
	if c.CAID == "" {
		return nil, fmt.Errorf("%w: certificate without CA id", ErrInvalid)
	}
	if err := checkSerial(c.Serial); err != nil {
		return nil, err
	}
	if len(c.DER) == 0 {
		return nil, fmt.Errorf("%w: certificate %s without DER", ErrInvalid, c.Serial)
	}
	if c.NotBefore.IsZero() || c.NotAfter.IsZero() {
		return nil, fmt.Errorf("%w: certificate %s without validity", ErrInvalid, c.Serial)
	}
	if c.Status == "" {
		c.Status = ca.StatusGood
	}
	if err := checkStatus(c.Status); err != nil {
		return nil, err
	}
	if c.CreatedAt.IsZero() {
		c.CreatedAt = d.now()
	}
	sans := c.SANs
	if sans == nil {
		sans = []string{}
	}
	sj, err := json.Marshal(sans)
	if err != nil {
		return nil, fmt.Errorf("store: encode sans: %w", err)
	}
	return &certRow{
		CAID:           c.CAID,
		Serial:         c.Serial,
		Profile:        c.Profile,
		Department:     c.Department,
		Subject:        c.Subject,
		SANs:           string(sj),
		KeyAlgorithm:   c.KeyAlgorithm,
		NotBefore:      c.NotBefore.Unix(),
		NotAfter:       c.NotAfter.Unix(),
		Status:         string(c.Status),
		Reason:         c.Reason,
		RevokedAt:      unixSec(c.RevokedAt),
		InvalidityDate: unixSec(c.InvalidityDate),
		DER:            c.DER,
		RequestedBy:    c.RequestedBy,
		CreatedAt:      c.CreatedAt.UnixNano(),
	}, nil
}

const insertCertSQL = `INSERT INTO certificates (` + certColumns + `)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// insertCertRow inserts one certificate and its audit entry.
func (d *DB) insertCertRow(ctx context.Context, tx *sqlx.Tx, r *certRow) error {
	if err := d.execInsertCert(ctx, tx, r); err != nil {
		return err
	}
	return d.appendAudits(ctx, tx, []auditRecord{certIssueAudit(ctx, r)})
}

// execInsertCert inserts the certificates row alone.
func (d *DB) execInsertCert(ctx context.Context, tx *sqlx.Tx, r *certRow) error {
	// The statement is prepared once per connection: parsing it again for
	// every certificate was a quarter of the insert cost.
	_, err := tx.StmtxContext(ctx, d.insertCert).ExecContext(ctx,
		r.CAID, r.Serial, r.Profile, r.Department, r.Subject, r.SANs, r.KeyAlgorithm,
		r.NotBefore, r.NotAfter, r.Status, r.Reason, r.RevokedAt, r.InvalidityDate, r.DER, r.RequestedBy, r.CreatedAt)
	return mapInsertErr(err, "certificate "+r.CAID+"/"+r.Serial, ca.ErrDuplicateSerial)
}

// InsertCertificate stores a newly issued certificate through group
// commit. It returns ca.ErrDuplicateSerial when (CAID, Serial) exists and
// ca.ErrNotFound when the CA does not. A zero CreatedAt is set to now.
func (d *DB) InsertCertificate(ctx context.Context, c *ca.Certificate) error {
	row, err := d.newCertRow(c)
	if err != nil {
		return err
	}
	return d.w.submit(ctx, func(ctx context.Context, tx *sqlx.Tx) error {
		return d.insertCertRow(ctx, tx, row)
	}, row)
}

// insertCertRows inserts rows with multi-row INSERTs: one statement (one
// round trip to PostgreSQL) for a whole batch instead of one per row.
func (d *DB) insertCertRows(ctx context.Context, tx *sqlx.Tx, rows []*certRow) error {
	return d.execMultiRow(ctx, tx, "certificates", certColumns, 16, len(rows), func(i int, args []any) []any {
		r := rows[i]
		return append(args, r.CAID, r.Serial, r.Profile, r.Department, r.Subject, r.SANs, r.KeyAlgorithm,
			r.NotBefore, r.NotAfter, r.Status, r.Reason, r.RevokedAt, r.InvalidityDate, r.DER, r.RequestedBy, r.CreatedAt)
	})
}

// InsertCertificateTx is InsertCertificate inside a transaction of InTx or
// Write.
func (d *DB) InsertCertificateTx(ctx context.Context, tx *sqlx.Tx, c *ca.Certificate) error {
	row, err := d.newCertRow(c)
	if err != nil {
		return err
	}
	return d.insertCertRow(ctx, tx, row)
}

// Certificate returns one certificate or ca.ErrNotFound.
func (d *DB) Certificate(ctx context.Context, caID, serial string) (*ca.Certificate, error) {
	var r certRow
	err := d.db.GetContext(ctx, &r, d.Rebind(`SELECT `+certColumns+` FROM certificates WHERE ca_id = ? AND serial = ?`), caID, serial)
	if err != nil {
		return nil, notFound(err, "certificate "+caID+"/"+serial)
	}
	return r.cert()
}

// notFound maps sql.ErrNoRows to ca.ErrNotFound.
func notFound(err error, what string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("store: %s: %w", what, ca.ErrNotFound)
	}
	return fmt.Errorf("store: read %s: %w", what, err)
}

// cursor is the position after the last row of a page, in the listing
// order (created_at, serial, ca_id) descending.
type cursor struct {
	CreatedAt int64  `json:"t"`
	Serial    string `json:"s"`
	CAID      string `json:"c"`
}

func (c cursor) encode() string {
	b, _ := json.Marshal(c) // cannot fail: fixed struct of ints and strings
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string) (cursor, error) {
	var c cursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return c, fmt.Errorf("%w: %v", ErrInvalidCursor, err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%w: %v", ErrInvalidCursor, err)
	}
	if c.Serial == "" || c.CAID == "" {
		return c, fmt.Errorf("%w: incomplete", ErrInvalidCursor)
	}
	return c, nil
}

// Certificates lists certificates newest first. Limit defaults to
// DefaultLimit and is capped at MaxLimit. The returned cursor fetches the
// next page and is "" on the last one. Pages are keyset-paginated, so a
// page costs the same however deep it is and insertions between calls
// neither skip nor repeat rows.
func (d *DB) Certificates(ctx context.Context, f ca.Filter) ([]ca.Certificate, string, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)

	q, args, err := d.listQuery(f, limit)
	if err != nil {
		return nil, "", err
	}
	var rows []certRow
	if err := d.db.SelectContext(ctx, &rows, q, args...); err != nil {
		return nil, "", fmt.Errorf("store: list certificates: %w", err)
	}
	next := ""
	if len(rows) > limit {
		rows = rows[:limit]
		last := rows[limit-1]
		next = cursor{CreatedAt: last.CreatedAt, Serial: last.Serial, CAID: last.CAID}.encode()
	}
	out := make([]ca.Certificate, len(rows))
	for i := range rows {
		c, err := rows[i].cert()
		if err != nil {
			return nil, "", err
		}
		out[i] = *c
	}
	return out, next, nil
}

// listQuery builds the query of one page of Certificates: limit+1 rows,
// the extra one telling whether there is a next page.
func (d *DB) listQuery(f ca.Filter, limit int) (string, []any, error) {
	var where []string
	var args []any
	if f.CAID != "" {
		where = append(where, "ca_id = ?")
		args = append(args, f.CAID)
	}
	if f.Status != "" {
		if err := checkStatus(f.Status); err != nil {
			return "", nil, err
		}
		where = append(where, "status = ?")
		args = append(args, string(f.Status))
		if f.Status != ca.StatusGood {
			where = append(where, "status <> 'good'") // selects the partial index
		}
	}
	if f.Department != "" {
		where = append(where, "department = ?")
		args = append(args, f.Department)
	}
	if f.Profile != "" {
		where = append(where, "profile = ?")
		args = append(args, f.Profile)
	}
	if f.Cursor != "" {
		c, err := decodeCursor(f.Cursor)
		if err != nil {
			return "", nil, err
		}
		where = append(where, "(created_at, serial, ca_id) < (?, ?, ?)")
		args = append(args, c.CreatedAt, c.Serial, c.CAID)
	}
	var q strings.Builder
	q.WriteString("SELECT " + certColumns + " FROM certificates")
	if len(where) > 0 {
		q.WriteString(" WHERE " + strings.Join(where, " AND "))
	}
	q.WriteString(" ORDER BY created_at DESC, serial DESC, ca_id DESC LIMIT ?")
	args = append(args, limit+1)
	return d.Rebind(q.String()), args, nil
}

// certForUpdate reads a certificate inside tx, locking its row on
// PostgreSQL so that concurrent revocations of it serialise. (SQLite's
// immediate transaction already excludes every other writer.)
func (d *DB) certForUpdate(ctx context.Context, tx *sqlx.Tx, caID, serial string) (*certRow, error) {
	// The change will be audited: take the audit head's lock before the
	// row's, as every audited write does, so that two cannot deadlock.
	if _, err := d.lockAuditHead(ctx, tx); err != nil {
		return nil, err
	}
	q := `SELECT ` + certColumns + ` FROM certificates WHERE ca_id = ? AND serial = ?`
	if d.dialect == DialectPostgres {
		q += " FOR UPDATE"
	}
	var r certRow
	if err := tx.GetContext(ctx, &r, d.Rebind(q), caID, serial); err != nil {
		return nil, notFound(err, "certificate "+caID+"/"+serial)
	}
	return &r, nil
}

// revocationEvent is one revocation_events row.
type revocationEvent struct {
	action         string // "revoke", "hold" or "unhold"
	reason         int
	at             int64 // unix seconds
	invalidityDate int64
	by             string
}

// setRevocation writes the new state of r and records ev.
func (d *DB) setRevocation(ctx context.Context, tx *sqlx.Tx, r *certRow, ev revocationEvent) error {
	if _, err := tx.ExecContext(ctx, d.Rebind(`UPDATE certificates
		SET status = ?, reason = ?, revoked_at = ?, invalidity_date = ?
		WHERE ca_id = ? AND serial = ?`),
		r.Status, r.Reason, r.RevokedAt, r.InvalidityDate, r.CAID, r.Serial); err != nil {
		return fmt.Errorf("store: update certificate %s/%s: %w", r.CAID, r.Serial, err)
	}
	// The row lock taken by certForUpdate makes max+1 race-free.
	var seq int64
	if err := tx.GetContext(ctx, &seq, d.Rebind(`SELECT COALESCE(MAX(seq), 0) + 1 FROM revocation_events WHERE ca_id = ? AND serial = ?`),
		r.CAID, r.Serial); err != nil {
		return fmt.Errorf("store: revocation events of %s/%s: %w", r.CAID, r.Serial, err)
	}
	if _, err := tx.ExecContext(ctx, d.Rebind(`INSERT INTO revocation_events
		(ca_id, serial, seq, action, reason, at, invalidity_date, by, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		r.CAID, r.Serial, seq, ev.action, ev.reason, ev.at, ev.invalidityDate, ev.by, d.now().UnixNano()); err != nil {
		return fmt.Errorf("store: revocation event of %s/%s: %w", r.CAID, r.Serial, err)
	}
	return d.appendAudit(ctx, tx, "certificate."+ev.action, certObject(r.CAID, r.Serial), audit.OutcomeSuccess, map[string]any{
		"reason": ca.ReasonName(ev.reason), "at": auditTime(fromUnixSec(ev.at)), "invalidity_date": auditTime(fromUnixSec(ev.invalidityDate)), "by": ev.by,
	})
}

// Revoke marks a certificate revoked, or on hold when Reason is
// certificateHold (6), and returns it as stored afterwards. Repeating a
// revocation with the same reason changes nothing and succeeds; a held
// certificate may be revoked for another reason (its revocation time
// becomes r.At); a revoked one may not (ca.ErrAlreadyRevoked). A zero r.At
// means now. Exactly one revocation_events row is written per change.
func (d *DB) Revoke(ctx context.Context, r ca.Revocation) (*ca.Certificate, error) {
	if r.CAID == "" {
		return nil, fmt.Errorf("%w: revocation without CA id", ErrInvalid)
	}
	if err := checkSerial(r.Serial); err != nil {
		return nil, err
	}
	if err := checkReason(r.Reason); err != nil {
		return nil, err
	}
	at := r.At
	if at.IsZero() {
		at = d.now()
	}
	status, action := ca.StatusRevoked, "revoke"
	if r.Reason == reasonCertificateHold {
		status, action = ca.StatusHold, "hold"
	}
	var out *certRow
	err := d.Write(ctx, func(ctx context.Context, tx *sqlx.Tx) error {
		out = nil
		c, err := d.certForUpdate(ctx, tx, r.CAID, r.Serial)
		if err != nil {
			return err
		}
		switch ca.Status(c.Status) {
		case ca.StatusHold:
			if status == ca.StatusHold {
				out = c // already held: nothing to do
				return nil
			}
		case ca.StatusRevoked:
			if c.Reason == r.Reason {
				out = c
				return nil
			}
			return fmt.Errorf("store: revoke %s/%s (reason %d, asked %d): %w", r.CAID, r.Serial, c.Reason, r.Reason, ca.ErrAlreadyRevoked)
		}
		c.Status = string(status)
		c.Reason = r.Reason
		c.RevokedAt = unixSec(at)
		c.InvalidityDate = unixSec(r.InvalidityDate)
		if err := d.setRevocation(ctx, tx, c, revocationEvent{
			action: action, reason: r.Reason, at: c.RevokedAt, invalidityDate: c.InvalidityDate, by: r.By,
		}); err != nil {
			return err
		}
		out = c
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out.cert()
}

// Unhold lifts a certificateHold, making the certificate good again, and
// returns it as stored afterwards; ca.ErrNotOnHold when it is not on hold.
// A zero at means now.
func (d *DB) Unhold(ctx context.Context, caID, serial, by string, at time.Time) (*ca.Certificate, error) {
	if caID == "" {
		return nil, fmt.Errorf("%w: unhold without CA id", ErrInvalid)
	}
	if err := checkSerial(serial); err != nil {
		return nil, err
	}
	if at.IsZero() {
		at = d.now()
	}
	var out *certRow
	err := d.Write(ctx, func(ctx context.Context, tx *sqlx.Tx) error {
		out = nil
		c, err := d.certForUpdate(ctx, tx, caID, serial)
		if err != nil {
			return err
		}
		if ca.Status(c.Status) != ca.StatusHold {
			return fmt.Errorf("store: unhold %s/%s (status %s): %w", caID, serial, c.Status, ca.ErrNotOnHold)
		}
		c.Status = string(ca.StatusGood)
		c.Reason, c.RevokedAt, c.InvalidityDate = 0, 0, 0
		if err := d.setRevocation(ctx, tx, c, revocationEvent{
			action: "unhold", reason: reasonRemoveFromCRL, at: unixSec(at), by: by,
		}); err != nil {
			return err
		}
		out = c
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out.cert()
}

// RevocationEvent is one recorded change of a certificate's revocation
// state.
type RevocationEvent struct {
	Seq            int64
	Action         string // "revoke", "hold" or "unhold"
	Reason         int    // 8 (removeFromCRL) for unhold
	At             time.Time
	InvalidityDate time.Time
	By             string
	CreatedAt      time.Time
}

// RevocationEvents returns the revocation history of a certificate, oldest
// first.
func (d *DB) RevocationEvents(ctx context.Context, caID, serial string) ([]RevocationEvent, error) {
	var rows []struct {
		Seq            int64  `db:"seq"`
		Action         string `db:"action"`
		Reason         int    `db:"reason"`
		At             int64  `db:"at"`
		InvalidityDate int64  `db:"invalidity_date"`
		By             string `db:"by"`
		CreatedAt      int64  `db:"created_at"`
	}
	if err := d.db.SelectContext(ctx, &rows, d.Rebind(`SELECT seq, action, reason, at, invalidity_date, by, created_at
		FROM revocation_events WHERE ca_id = ? AND serial = ? ORDER BY seq`), caID, serial); err != nil {
		return nil, fmt.Errorf("store: revocation events of %s/%s: %w", caID, serial, err)
	}
	out := make([]RevocationEvent, len(rows))
	for i, r := range rows {
		out[i] = RevocationEvent{
			Seq: r.Seq, Action: r.Action, Reason: r.Reason, At: fromUnixSec(r.At),
			InvalidityDate: fromUnixSec(r.InvalidityDate), By: r.By, CreatedAt: fromUnixNano(r.CreatedAt),
		}
	}
	return out, nil
}
