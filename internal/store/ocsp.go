package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/gmtrust/gmtrust/ca"
	"github.com/gmtrust/gmtrust/ocsp"
)

// OCSPChannel is the PostgreSQL NOTIFY channel on which responder
// processes tell each other that a certificate's responses changed; the
// payload is "<ca id>:<serial>".
const OCSPChannel = "gmtrust_ocsp"

// OCSPOptions tune an OCSP store.
type OCSPOptions struct {
	// DSN is the PostgreSQL DSN the invalidation listener connects with
	// (LISTEN needs a connection of its own); ignored for SQLite.
	DSN string
	// PollInterval is how often revocation_events is polled for status
	// changes made by processes that do not notify (any process on
	// SQLite); default 250ms, negative disables polling. It bounds how
	// long a running responder may still hand out a cached response after
	// another process changed the certificate's status (one indexed read
	// of the newest events per poll).
	PollInterval time.Duration
	// Logger receives listener events; the DB's logger when nil.
	Logger *slog.Logger
}

// OCSP persists pre-signed OCSP responses in ocsp_responses. It
// implements ocsp.ResponseStore and ocsp.PresignStore.
//
// Claims lock certificates rows: on PostgreSQL with SELECT ... FOR NO KEY
// UPDATE SKIP LOCKED (NO KEY so that inserting revocation events, whose
// foreign key takes KEY SHARE, is not blocked; a revocation's FOR UPDATE
// waits for the batch), then re-read the responses of the locked rows in a
// new statement, whose snapshot sees what another process committed before
// it released the lock: so each certificate is signed by one process per
// round. On SQLite the claim runs in an immediate transaction, which holds
// the database's single write lock.
type OCSP struct {
	d            *DB
	dsn          string
	pollInterval time.Duration
	log          *slog.Logger

	getResponse *sqlx.Stmt
	getStatus   *sqlx.Stmt
	getStatuses *sqlx.Stmt
	// queries holds the statements' SQL by name, for tests that check
	// their query plans.
	queries map[string]string
}

// NewOCSP prepares the OCSP statements of d.
func NewOCSP(ctx context.Context, d *DB, o OCSPOptions) (*OCSP, error) {
	s := &OCSP{d: d, dsn: o.DSN, pollInterval: o.PollInterval, log: o.Logger}
	if s.pollInterval == 0 {
		s.pollInterval = 250 * time.Millisecond
	}
	if s.log == nil {
		s.log = d.log
	}
	if d.dialect == DialectPostgres && s.dsn == "" {
		return nil, fmt.Errorf("%w: the OCSP store needs the PostgreSQL DSN for LISTEN", ErrInvalid)
	}
	var err error
	// Status reads go through the covering index certificates_status
	// (migration 00007), which SQLite must be told to use.
	byStatus := ""
	if d.dialect == DialectSQLite {
		byStatus = " INDEXED BY certificates_status"
	}
	s.queries = map[string]string{
		// The status columns are compared with the certificate's so that
		// a response left stale (a process died between recording a
		// revocation and re-signing) is never served.
		"response": d.Rebind(`SELECT r.status, r.reason, r.revoked_at,
		r.this_update, r.next_update, r.refresh_at, r.der
		FROM ocsp_responses r JOIN certificates c` + byStatus + ` ON c.ca_id = r.ca_id AND c.serial = r.serial
		WHERE r.ca_id = ? AND r.serial = ? AND r.hash_alg = ?
		AND c.status = r.status AND c.reason = r.reason AND c.revoked_at = r.revoked_at`),
		"status": d.Rebind(`SELECT status, reason, revoked_at, not_after
		FROM certificates` + byStatus + ` WHERE ca_id = ? AND serial = ?`),
		// Many serials in one statement with one parameter: a PostgreSQL
		// array, or a JSON array that SQLite's json_each unpacks; both
		// walk the index once per serial.
		"statuses": d.Rebind(`SELECT serial, status, reason, revoked_at, not_after FROM certificates` + byStatus + `
		WHERE ca_id = ? AND serial IN (SELECT value FROM json_each(?))`),
	}
	if d.dialect == DialectPostgres {
		s.queries["statuses"] = d.Rebind(`SELECT serial, status, reason, revoked_at, not_after FROM certificates
		WHERE ca_id = ? AND serial = ANY(?::text[])`)
	}
	if s.getResponse, err = d.db.PreparexContext(ctx, s.queries["response"]); err != nil {
		return nil, fmt.Errorf("store: prepare OCSP response query: %w", err)
	}
	if s.getStatus, err = d.db.PreparexContext(ctx, s.queries["status"]); err != nil {
		s.getResponse.Close()
		return nil, fmt.Errorf("store: prepare certificate status query: %w", err)
	}
	if s.getStatuses, err = d.db.PreparexContext(ctx, s.queries["statuses"]); err != nil {
		s.getResponse.Close()
		s.getStatus.Close()
		return nil, fmt.Errorf("store: prepare certificate statuses query: %w", err)
	}
	return s, nil
}

// Close releases the prepared statements.
func (s *OCSP) Close() error {
	return errors.Join(s.getResponse.Close(), s.getStatus.Close(), s.getStatuses.Close())
}

var (
	_ ocsp.ResponseStore = (*OCSP)(nil)
	_ ocsp.PresignStore  = (*OCSP)(nil)
)

type statusRow struct {
	Status    string `db:"status"`
	Reason    int    `db:"reason"`
	RevokedAt int64  `db:"revoked_at"`
	NotAfter  int64  `db:"not_after"`
}

// CertificateStatus implements ocsp.ResponseStore.
func (s *OCSP) CertificateStatus(ctx context.Context, caID, serial string) (ocsp.CertStatus, error) {
	var r statusRow
	if err := s.getStatus.GetContext(ctx, &r, caID, serial); err != nil {
		return ocsp.CertStatus{}, notFound(err, "certificate "+caID+"/"+serial)
	}
	return r.certStatus(caID, serial), nil
}

func (r *statusRow) certStatus(caID, serial string) ocsp.CertStatus {
	return ocsp.CertStatus{
		CAID: caID, Serial: serial, Status: ca.Status(r.Status), Reason: r.Reason,
		RevokedAt: fromUnixSec(r.RevokedAt), NotAfter: fromUnixSec(r.NotAfter),
	}
}

type serialStatusRow struct {
	Serial string `db:"serial"`
	statusRow
}

// MaxStatusBatch is the most serials CertificateStatuses takes at once.
const MaxStatusBatch = 1000

// CertificateStatuses implements ocsp.ResponseStore: the statuses of
// serials of one CA in one query, keyed by serial. A serial the CA never
// issued is absent from the map.
func (s *OCSP) CertificateStatuses(ctx context.Context, caID string, serials []string) (map[string]ocsp.CertStatus, error) {
	if len(serials) > MaxStatusBatch {
		return nil, fmt.Errorf("%w: %d serials in one status query (at most %d)", ErrInvalid, len(serials), MaxStatusBatch)
	}
	out := make(map[string]ocsp.CertStatus, len(serials))
	if len(serials) == 0 {
		return out, nil
	}
	var arg any
	if s.d.dialect == DialectPostgres {
		arg = pq.StringArray(serials)
	} else {
		js, err := json.Marshal(serials)
		if err != nil {
			return nil, fmt.Errorf("store: encode serials: %w", err)
		}
		arg = string(js)
	}
	rows, err := s.getStatuses.QueryxContext(ctx, caID, arg)
	if err != nil {
		return nil, fmt.Errorf("store: read certificate statuses of CA %s: %w", caID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var r serialStatusRow
		if err := rows.StructScan(&r); err != nil {
			return nil, fmt.Errorf("store: read certificate statuses of CA %s: %w", caID, err)
		}
		out[r.Serial] = r.certStatus(caID, r.Serial)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: read certificate statuses of CA %s: %w", caID, err)
	}
	return out, nil
}

type responseRow struct {
	Status     string `db:"status"`
	Reason     int    `db:"reason"`
	RevokedAt  int64  `db:"revoked_at"`
	ThisUpdate int64  `db:"this_update"`
	NextUpdate int64  `db:"next_update"`
	RefreshAt  int64  `db:"refresh_at"`
	DER        []byte `db:"der"`
}

// Response implements ocsp.ResponseStore: the stored response, only while
// the status it was signed for is still the certificate's.
func (s *OCSP) Response(ctx context.Context, caID, serial string, h ocsp.HashAlg) (*ocsp.StoredResponse, error) {
	name := ocsp.HashName(h)
	if name == "" {
		return nil, fmt.Errorf("%w: hash %v", ErrInvalid, h)
	}
	var r responseRow
	if err := s.getResponse.GetContext(ctx, &r, caID, serial, name); err != nil {
		return nil, notFound(err, "OCSP response "+caID+"/"+serial+"/"+name)
	}
	return &ocsp.StoredResponse{
		CAID: caID, Serial: serial, Hash: h, Status: ca.Status(r.Status), Reason: r.Reason, RevokedAt: fromUnixSec(r.RevokedAt),
		ThisUpdate: fromUnixSec(r.ThisUpdate), NextUpdate: fromUnixSec(r.NextUpdate), RefreshAt: fromUnixSec(r.RefreshAt), DER: r.DER,
	}, nil
}

// claimRow is a locked certificate.
type claimRow struct {
	CAID      string `db:"ca_id"`
	Serial    string `db:"serial"`
	Status    string `db:"status"`
	Reason    int    `db:"reason"`
	RevokedAt int64  `db:"revoked_at"`
	NotAfter  int64  `db:"not_after"`
	CreatedAt int64  `db:"created_at"`
}

const claimColumns = `c.ca_id, c.serial, c.status, c.reason, c.revoked_at, c.not_after, c.created_at`

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

func hashNames(hs []ocsp.HashAlg) ([]string, error) {
	if len(hs) == 0 {
		return nil, fmt.Errorf("%w: no hash algorithm", ErrInvalid)
	}
	out := make([]string, len(hs))
	for i, h := range hs {
		if out[i] = ocsp.HashName(h); out[i] == "" {
			return nil, fmt.Errorf("%w: hash %v", ErrInvalid, h)
		}
	}
	return out, nil
}

func appendStrings(args []any, ss []string) []any {
	for _, s := range ss {
		args = append(args, s)
	}
	return args
}

// ClaimBatch implements ocsp.ResponseStore and ocsp.PresignStore.
func (s *OCSP) ClaimBatch(ctx context.Context, c ocsp.Claim, sign ocsp.SignFunc) (ocsp.ClaimResult, error) {
	hashes, err := hashNames(c.Hashes)
	if err != nil {
		return ocsp.ClaimResult{}, err
	}
	if c.Limit <= 0 {
		return ocsp.ClaimResult{}, fmt.Errorf("%w: claim limit %d", ErrInvalid, c.Limit)
	}
	if c.Kind != ocsp.ClaimOne && len(c.CAIDs) == 0 {
		return ocsp.ClaimResult{}, fmt.Errorf("%w: claim without CAs", ErrInvalid)
	}
	pg := s.d.dialect == DialectPostgres
	var w scanWindow
	if c.Kind == ocsp.ClaimMissing {
		// The window is read outside the claiming transaction: it only
		// bounds the scan, what is claimed is decided under the locks.
		if w, err = s.window(ctx, s.d.db, c); err != nil {
			return ocsp.ClaimResult{}, err
		}
	}
	// next continues a missing scan after a claim that locked rows: after
	// the last of them when the claim was full (more may follow in the
	// window), else after the window.
	next := func(rows []claimRow) string {
		if c.Kind != ocsp.ClaimMissing {
			return ""
		}
		if len(rows) == c.Limit {
			last := rows[len(rows)-1]
			return scanPos{at: last.CreatedAt, serial: last.Serial, caID: last.CAID}.String()
		}
		if w.end != nil {
			return w.end.String()
		}
		return ""
	}
	// On SQLite the candidates are found before the write lock is taken,
	// so a scan does not hold up issuance; the transaction re-reads them
	// under the lock. PostgreSQL finds and locks them in the transaction.
	var candidates []claimRow
	if !pg && c.Kind != ocsp.ClaimOne {
		if candidates, err = s.claim(ctx, s.d.db, c, hashes, w); err != nil {
			return ocsp.ClaimResult{}, err
		}
		if len(candidates) == 0 {
			return ocsp.ClaimResult{Scanned: w.size, Next: next(nil)}, nil
		}
	}
	var res ocsp.ClaimResult
	err = s.d.InTx(ctx, func(ctx context.Context, tx *sqlx.Tx) error {
		res = ocsp.ClaimResult{}
		var rows []claimRow
		var err error
		if candidates != nil {
			rows = candidates
		} else if rows, err = s.claim(ctx, tx, c, hashes, w); err != nil {
			return err
		}
		res.Claimed, res.Scanned, res.Next = len(rows), w.size, next(rows)
		if candidates != nil {
			// The status read outside the lock may have changed since.
			if rows, err = s.reread(ctx, tx, rows); err != nil {
				return err
			}
		}
		if c.Kind != ocsp.ClaimOne {
			if rows, err = s.stillNeeded(ctx, tx, rows, hashes, c.Now); err != nil {
				return err
			}
		}
		if len(rows) == 0 {
			return nil
		}
		certs := make([]ocsp.CertStatus, len(rows))
		claimed := make(map[[2]string]bool, len(rows))
		for i, r := range rows {
			certs[i] = ocsp.CertStatus{
				CAID: r.CAID, Serial: r.Serial, Status: ca.Status(r.Status), Reason: r.Reason,
				RevokedAt: fromUnixSec(r.RevokedAt), NotAfter: fromUnixSec(r.NotAfter),
			}
			claimed[[2]string{r.CAID, r.Serial}] = true
		}
		resps, err := sign(ctx, certs)
		if err != nil {
			return err
		}
		for _, r := range resps {
			if !claimed[[2]string{r.CAID, r.Serial}] {
				return fmt.Errorf("%w: signed a response for %s/%s, which was not claimed", ErrInvalid, r.CAID, r.Serial)
			}
		}
		if err := s.upsert(ctx, tx, resps); err != nil {
			return err
		}
		if c.Notify {
			for _, r := range rows {
				if err := s.notify(ctx, tx, r.CAID, r.Serial); err != nil {
					return err
				}
			}
		}
		res.Signed = len(resps)
		return nil
	})
	return res, err
}

// reread reads the current state of rows inside tx.
func (s *OCSP) reread(ctx context.Context, tx *sqlx.Tx, rows []claimRow) ([]claimRow, error) {
	caIDs := map[string]bool{}
	serials := make([]string, len(rows))
	for i, r := range rows {
		caIDs[r.CAID] = true
		serials[i] = r.Serial
	}
	var args []any
	for id := range caIDs {
		args = append(args, id)
	}
	args = appendStrings(args, serials)
	var fresh []claimRow
	if err := tx.SelectContext(ctx, &fresh, s.d.Rebind(`SELECT `+claimColumns+` FROM certificates c
		WHERE c.ca_id IN (`+placeholders(len(caIDs))+`) AND c.serial IN (`+placeholders(len(serials))+`)`), args...); err != nil {
		return nil, fmt.Errorf("store: re-read claimed certificates: %w", err)
	}
	want := make(map[[2]string]bool, len(rows))
	for _, r := range rows {
		want[[2]string{r.CAID, r.Serial}] = true
	}
	out := fresh[:0]
	for _, r := range fresh {
		if want[[2]string{r.CAID, r.Serial}] {
			out = append(out, r)
		}
	}
	return out, nil
}

// scanPos is a position in the creation-order scan of certificates.
type scanPos struct {
	at     int64
	serial string
	caID   string
}

func (p scanPos) String() string {
	return strconv.FormatInt(p.at, 10) + "/" + p.serial + "/" + p.caID
}

func parseScanPos(s string) (*scanPos, error) {
	if s == "" {
		return nil, nil
	}
	t, rest, ok1 := strings.Cut(s, "/")
	serial, caID, ok2 := strings.Cut(rest, "/")
	at, err := strconv.ParseInt(t, 10, 64)
	if !ok1 || !ok2 || err != nil {
		return nil, fmt.Errorf("%w: OCSP scan position %q", ErrInvalidCursor, s)
	}
	return &scanPos{at: at, serial: serial, caID: caID}, nil
}

// scanWindow is the part of a ClaimMissing scan one claim examines: after
// after (nil: from the start) up to and including end (nil: to the end).
type scanWindow struct {
	after, end *scanPos
	size       int // certificates in the window; 0 for the last one
}

// window finds the window of a ClaimMissing claim: its end is the
// c.Window-th certificate after c.After, found by walking the index.
func (s *OCSP) window(ctx context.Context, q sqlx.QueryerContext, c ocsp.Claim) (scanWindow, error) {
	var w scanWindow
	var err error
	if w.after, err = parseScanPos(c.After); err != nil {
		return w, err
	}
	size := c.Window
	if size <= 0 {
		size = 2048
	}
	var sb strings.Builder
	args := appendStrings(nil, c.CAIDs)
	sb.WriteString("SELECT c.created_at, c.serial, c.ca_id FROM certificates c WHERE c.ca_id IN (" + placeholders(len(c.CAIDs)) + ") AND c.created_at >= ?")
	args = append(args, unixNano(c.Since))
	if w.after != nil {
		sb.WriteString(" AND (c.created_at, c.serial, c.ca_id) > (?, ?, ?)")
		args = append(args, w.after.at, w.after.serial, w.after.caID)
	}
	sb.WriteString(" ORDER BY c.created_at, c.serial, c.ca_id LIMIT 1 OFFSET ?")
	args = append(args, size-1)
	var end struct {
		At     int64  `db:"created_at"`
		Serial string `db:"serial"`
		CAID   string `db:"ca_id"`
	}
	err = sqlx.GetContext(ctx, q, &end, s.d.Rebind(sb.String()), args...)
	switch {
	case err == nil:
		w.end, w.size = &scanPos{at: end.At, serial: end.Serial, caID: end.CAID}, size
	case errors.Is(err, sql.ErrNoRows):
		// The last window: fewer than size certificates are left. Its
		// size only serves pacing, and the pass ends with it: leave it 0.
	default:
		return w, fmt.Errorf("store: OCSP scan window: %w", err)
	}
	return w, nil
}

// claim selects the certificates of a claim; inside a PostgreSQL
// transaction it also locks them.
func (s *OCSP) claim(ctx context.Context, q sqlx.QueryerContext, c ocsp.Claim, hashes []string, w scanWindow) ([]claimRow, error) {
	pg := s.d.dialect == DialectPostgres
	var sb strings.Builder
	var args []any
	sb.WriteString("SELECT " + claimColumns + " FROM certificates c WHERE ")
	switch c.Kind {
	case ocsp.ClaimOne:
		sb.WriteString("c.ca_id = ? AND c.serial = ?")
		args = append(args, c.CAID, c.Serial)
		if pg {
			// Wait for a pre-signer holding it: its batch may be signing
			// the old status, and ours must be stored after it.
			sb.WriteString(" FOR NO KEY UPDATE")
		}
	case ocsp.ClaimDue:
		// The inner query walks the refresh_at index from its oldest
		// end and stops after a few batches' worth, so a claim costs the
		// same however much is due. Expired certificates are not
		// refreshed.
		// The CA filter stays outside: inside, SQLite would pick the
		// primary key for it over the refresh_at index.
		now := c.Now.Unix()
		sb.WriteString(`(c.ca_id, c.serial) IN (SELECT r.ca_id, r.serial FROM ocsp_responses r
			JOIN certificates c2 ON c2.ca_id = r.ca_id AND c2.serial = r.serial
			WHERE r.refresh_at <= ? AND r.hash_alg IN (` + placeholders(len(hashes)) + `) AND c2.not_after >= ?
			ORDER BY r.refresh_at LIMIT ?) AND c.ca_id IN (` + placeholders(len(c.CAIDs)) + `) LIMIT ?`)
		args = append(args, now)
		args = appendStrings(args, hashes)
		args = append(args, now, c.Limit*len(hashes)*8)
		args = appendStrings(args, c.CAIDs)
		args = append(args, c.Limit)
		if pg {
			sb.WriteString(" FOR NO KEY UPDATE OF c SKIP LOCKED")
		}
	case ocsp.ClaimMissing:
		// A keyset scan in creation order (the certificates_created and
		// certificates_ca_created indexes) through windows of c.Window
		// certificates: each claim continues where the previous one
		// stopped and examines at most one window, so a pass costs one
		// look at each certificate and no query runs long.
		sb.WriteString("c.ca_id IN (" + placeholders(len(c.CAIDs)) + ") AND c.not_after >= ? AND c.created_at >= ?")
		args = appendStrings(args, c.CAIDs)
		args = append(args, c.Now.Unix(), unixNano(c.Since))
		if w.after != nil {
			sb.WriteString(" AND (c.created_at, c.serial, c.ca_id) > (?, ?, ?)")
			args = append(args, w.after.at, w.after.serial, w.after.caID)
		}
		if w.end != nil {
			sb.WriteString(" AND (c.created_at, c.serial, c.ca_id) <= (?, ?, ?)")
			args = append(args, w.end.at, w.end.serial, w.end.caID)
		}
		sb.WriteString(" AND (")
		for i, h := range hashes {
			if i > 0 {
				sb.WriteString(" OR ")
			}
			sb.WriteString("NOT EXISTS (SELECT 1 FROM ocsp_responses r WHERE r.ca_id = c.ca_id AND r.serial = c.serial AND r.hash_alg = ?)")
			args = append(args, h)
		}
		sb.WriteString(") ORDER BY c.created_at, c.serial, c.ca_id LIMIT ?")
		args = append(args, c.Limit)
		if pg {
			sb.WriteString(" FOR NO KEY UPDATE OF c SKIP LOCKED")
		}
	default:
		return nil, fmt.Errorf("%w: claim kind %d", ErrInvalid, c.Kind)
	}
	var rows []claimRow
	if err := sqlx.SelectContext(ctx, q, &rows, s.d.Rebind(sb.String()), args...); err != nil {
		return nil, fmt.Errorf("store: claim certificates for OCSP: %w", err)
	}
	if c.Kind == ocsp.ClaimOne && len(rows) == 0 {
		return nil, fmt.Errorf("store: certificate %s/%s: %w", c.CAID, c.Serial, ca.ErrNotFound)
	}
	return rows, nil
}

// stillNeeded keeps the locked certificates that lack a response for a
// hash or have one due at now. It runs as a statement of its own after
// the locks are held, so on PostgreSQL it sees what another process
// committed for them before releasing their locks.
func (s *OCSP) stillNeeded(ctx context.Context, tx *sqlx.Tx, rows []claimRow, hashes []string, now time.Time) ([]claimRow, error) {
	if len(rows) == 0 {
		return rows, nil
	}
	caIDs := map[string]bool{}
	serials := make([]string, len(rows))
	for i, r := range rows {
		caIDs[r.CAID] = true
		serials[i] = r.Serial
	}
	var args []any
	for id := range caIDs {
		args = append(args, id)
	}
	args = appendStrings(args, serials)
	args = appendStrings(args, hashes)
	var fresh []struct {
		CAID   string `db:"ca_id"`
		Serial string `db:"serial"`
	}
	if err := tx.SelectContext(ctx, &fresh, s.d.Rebind(`SELECT ca_id, serial FROM ocsp_responses
		WHERE ca_id IN (`+placeholders(len(caIDs))+`) AND serial IN (`+placeholders(len(serials))+`)
		AND hash_alg IN (`+placeholders(len(hashes))+`) AND refresh_at > ?`), append(args, now.Unix())...); err != nil {
		return nil, fmt.Errorf("store: re-check claimed OCSP responses: %w", err)
	}
	count := make(map[[2]string]int, len(fresh))
	for _, f := range fresh {
		count[[2]string{f.CAID, f.Serial}]++
	}
	out := rows[:0]
	for _, r := range rows {
		if count[[2]string{r.CAID, r.Serial}] < len(hashes) {
			out = append(out, r)
		}
	}
	return out, nil
}

// upsertChunk bounds the rows of one INSERT (10 parameters each) well
// below both databases' parameter limits.
const upsertChunk = 100

func (s *OCSP) upsert(ctx context.Context, tx *sqlx.Tx, rs []ocsp.StoredResponse) error {
	for len(rs) > 0 {
		n := min(len(rs), upsertChunk)
		chunk := rs[:n]
		rs = rs[n:]
		var q strings.Builder
		q.WriteString(`INSERT INTO ocsp_responses
			(ca_id, serial, hash_alg, status, reason, revoked_at, this_update, next_update, refresh_at, der) VALUES `)
		args := make([]any, 0, 10*n)
		for i, r := range chunk {
			name := ocsp.HashName(r.Hash)
			if name == "" {
				return fmt.Errorf("%w: response hash %v", ErrInvalid, r.Hash)
			}
			if err := checkStatus(r.Status); err != nil {
				return err
			}
			if len(r.DER) == 0 || r.ThisUpdate.IsZero() || r.NextUpdate.IsZero() {
				return fmt.Errorf("%w: incomplete OCSP response for %s/%s", ErrInvalid, r.CAID, r.Serial)
			}
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
			args = append(args, r.CAID, r.Serial, name, string(r.Status), r.Reason, unixSec(r.RevokedAt),
				r.ThisUpdate.Unix(), r.NextUpdate.Unix(), r.RefreshAt.Unix(), r.DER)
		}
		// ON CONFLICT ... DO UPDATE is spelled the same in both databases.
		q.WriteString(` ON CONFLICT (ca_id, serial, hash_alg) DO UPDATE SET
			status = excluded.status, reason = excluded.reason, revoked_at = excluded.revoked_at,
			this_update = excluded.this_update, next_update = excluded.next_update,
			refresh_at = excluded.refresh_at, der = excluded.der`)
		if _, err := tx.ExecContext(ctx, s.d.Rebind(q.String()), args...); err != nil {
			return mapInsertErr(err, "OCSP responses", ErrDuplicate)
		}
	}
	return nil
}

// notify queues a NOTIFY, which PostgreSQL delivers when tx commits.
func (s *OCSP) notify(ctx context.Context, tx *sqlx.Tx, caID, serial string) error {
	if s.d.dialect != DialectPostgres {
		return nil
	}
	if _, err := tx.ExecContext(ctx, "SELECT pg_notify($1, $2)", OCSPChannel, caID+":"+serial); err != nil {
		return fmt.Errorf("store: notify OCSP responders: %w", err)
	}
	return nil
}

// DeleteResponses implements ocsp.ResponseStore.
func (s *OCSP) DeleteResponses(ctx context.Context, caID, serial string) error {
	return s.d.InTx(ctx, func(ctx context.Context, tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, s.d.Rebind(`DELETE FROM ocsp_responses WHERE ca_id = ? AND serial = ?`), caID, serial); err != nil {
			return fmt.Errorf("store: delete OCSP responses of %s/%s: %w", caID, serial, err)
		}
		return s.notify(ctx, tx, caID, serial)
	})
}

// Reconcile implements ocsp.PresignStore. Revoked and held certificates
// are few, and both statements only visit those (through the partial
// indexes on status <> 'good', which SQLite uses only when the predicate
// is repeated literally): a response saying good for a certificate that
// no longer is, and a response saying revoked or held that no longer
// matches its certificate (lifted hold, changed reason).
func (s *OCSP) Reconcile(ctx context.Context) (int, error) {
	var n int64
	err := s.d.InTx(ctx, func(ctx context.Context, tx *sqlx.Tx) error {
		n = 0
		for _, q := range []string{
			`UPDATE ocsp_responses SET refresh_at = 0
			WHERE refresh_at <> 0 AND status = 'good'
			AND (ca_id, serial) IN (SELECT ca_id, serial FROM certificates WHERE status <> 'good')`,
			`UPDATE ocsp_responses SET refresh_at = 0
			WHERE refresh_at <> 0 AND status <> 'good'
			AND EXISTS (SELECT 1 FROM certificates c
				WHERE c.ca_id = ocsp_responses.ca_id AND c.serial = ocsp_responses.serial
				AND (c.status <> ocsp_responses.status OR c.reason <> ocsp_responses.reason
					OR c.revoked_at <> ocsp_responses.revoked_at))`,
		} {
			res, err := tx.ExecContext(ctx, q)
			if err != nil {
				return fmt.Errorf("store: reconcile OCSP responses: %w", err)
			}
			m, err := res.RowsAffected()
			if err != nil {
				return err
			}
			n += m
		}
		return nil
	})
	return int(n), err
}

// DeleteStale implements ocsp.PresignStore.
func (s *OCSP) DeleteStale(ctx context.Context, before time.Time) (int, error) {
	var n int64
	err := s.d.InTx(ctx, func(ctx context.Context, tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, s.d.Rebind(`DELETE FROM ocsp_responses WHERE next_update < ?`), before.Unix())
		if err != nil {
			return fmt.Errorf("store: delete stale OCSP responses: %w", err)
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}

// DueCount implements ocsp.PresignStore: a range of the refresh_at index.
func (s *OCSP) DueCount(ctx context.Context, hs []ocsp.HashAlg, now time.Time) (int, error) {
	hashes, err := hashNames(hs)
	if err != nil {
		return 0, err
	}
	args := appendStrings([]any{now.Unix()}, hashes)
	var n int
	if err := s.d.db.GetContext(ctx, &n, s.d.Rebind(`SELECT COUNT(*) FROM ocsp_responses
		WHERE refresh_at <= ? AND hash_alg IN (`+placeholders(len(hashes))+`)`), args...); err != nil {
		return 0, fmt.Errorf("store: count due OCSP responses: %w", err)
	}
	return n, nil
}

// Instance settings that hold the pre-signer's scan state.
const (
	settingOCSPLastPass = "ocsp_scan_last_pass"
	settingOCSPLastFull = "ocsp_scan_last_full"
)

// ScanState implements ocsp.PresignStore.
func (s *OCSP) ScanState(ctx context.Context) (ocsp.ScanState, error) {
	var st ocsp.ScanState
	for key, dst := range map[string]*time.Time{settingOCSPLastPass: &st.LastPass, settingOCSPLastFull: &st.LastFull} {
		v, err := s.d.GetSetting(ctx, key)
		if errors.Is(err, ca.ErrNotFound) {
			continue
		}
		if err != nil {
			return st, err
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return st, fmt.Errorf("store: setting %s: %w", key, err)
		}
		*dst = fromUnixNano(n)
	}
	return st, nil
}

// SaveScanState implements ocsp.PresignStore. Times only move forward:
// a process that started its pass earlier does not set them back. Each
// is one conditional upsert, so two processes saving at once neither set
// a time back nor wait on each other's rows in opposite orders (they did
// when the keys came from ranging over a map: PostgreSQL found the
// deadlock).
func (s *OCSP) SaveScanState(ctx context.Context, st ocsp.ScanState) error {
	return s.d.InTx(ctx, func(ctx context.Context, tx *sqlx.Tx) error {
		for _, kv := range []struct {
			key string
			t   time.Time
		}{{settingOCSPLastPass, st.LastPass}, {settingOCSPLastFull, st.LastFull}} {
			if kv.t.IsZero() {
				continue
			}
			if _, err := tx.ExecContext(ctx, s.d.Rebind(`INSERT INTO instance (key, value) VALUES (?, ?)
				ON CONFLICT (key) DO UPDATE SET value = excluded.value
				WHERE CAST(instance.value AS BIGINT) < CAST(excluded.value AS BIGINT)`),
				kv.key, strconv.FormatInt(kv.t.UnixNano(), 10)); err != nil {
				return fmt.Errorf("store: set %s: %w", kv.key, err)
			}
		}
		return nil
	})
}

// ResponseCount counts stored responses (for tests and tooling).
func (s *OCSP) ResponseCount(ctx context.Context) (int, error) {
	var n int
	if err := s.d.db.GetContext(ctx, &n, `SELECT COUNT(*) FROM ocsp_responses`); err != nil {
		return 0, fmt.Errorf("store: count OCSP responses: %w", err)
	}
	return n, nil
}

// ListenInvalidations calls evict for every certificate whose status or
// responses another process changed, until ctx ends; reset when notices
// may have been lost, meaning every cached response must go.
//
// On PostgreSQL it LISTENs on OCSPChannel (a dedicated connection, with
// reconnection; reset is called on every (re)connection). On both
// databases it also polls revocation_events every PollInterval, which
// catches revocations by processes that do not notify (the CLI, and any
// process on SQLite). After each complete poll it calls applied (when not
// nil) with the time it began polling and the time that poll started:
// every status change committed in between has been passed to evict (see
// ocsp.Responder.InvalidationsApplied). It returns nil when ctx ends.
func (s *OCSP) ListenInvalidations(ctx context.Context, evict func(caID, serial string), reset func(), applied func(since, through time.Time)) error {
	errc := make(chan error, 2)
	n := 0
	if s.d.dialect == DialectPostgres {
		n++
		go func() { errc <- s.listen(ctx, evict, reset) }()
	}
	if s.pollInterval > 0 {
		n++
		go func() { errc <- s.poll(ctx, evict, applied) }()
	}
	var err error
	for range n {
		err = errors.Join(err, <-errc)
	}
	return err
}

func (s *OCSP) listen(ctx context.Context, evict func(caID, serial string), reset func()) error {
	l := pq.NewListener(s.dsn, 100*time.Millisecond, 10*time.Second, func(ev pq.ListenerEventType, err error) {
		switch ev {
		case pq.ListenerEventConnected, pq.ListenerEventReconnected:
			// Whatever was filled while no LISTEN was active may be stale.
			reset()
		case pq.ListenerEventDisconnected, pq.ListenerEventConnectionAttemptFailed:
			s.log.Warn("store: OCSP invalidation listener lost its connection", "event", ev.String(), "err", err)
		}
	})
	stop := context.AfterFunc(ctx, func() { _ = l.Close() })
	defer stop()
	defer l.Close()
	// lib/pq's Listen returns net.ErrClosed when it had to wait for the
	// first connection, though the channel is registered and LISTENed on
	// connect; only a closed listener (ctx done) is a real failure.
	if err := l.Listen(OCSPChannel); err != nil && !errors.Is(err, pq.ErrChannelAlreadyOpen) {
		if ctx.Err() != nil {
			return nil
		}
		if !errors.Is(err, net.ErrClosed) {
			return fmt.Errorf("store: LISTEN %s: %w", OCSPChannel, err)
		}
	}
	// The LISTEN is active now: drop what was cached before it was.
	reset()
	ping := time.NewTicker(30 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case n, ok := <-l.Notify:
			if !ok {
				return nil
			}
			if n == nil {
				// lib/pq's "reconnected, notices may be lost".
				reset()
				continue
			}
			i := strings.LastIndexByte(n.Extra, ':')
			if i <= 0 {
				continue
			}
			evict(n.Extra[:i], n.Extra[i+1:])
		case <-ping.C:
			// A half-open connection would otherwise go unnoticed; a
			// failed ping makes lib/pq reconnect (and reset).
			go func() { _ = l.Ping() }()
		}
	}
}

// pollOverlap re-reads revocation events this far back: created_at is
// taken before the event's transaction commits.
const pollOverlap = 5 * time.Second

func (s *OCSP) poll(ctx context.Context, evict func(caID, serial string), applied func(since, through time.Time)) error {
	var mark int64
	var since time.Time
	for {
		// Events committed from here on are read by the polls below
		// (within pollOverlap), so the polls vouch for changes since.
		since = s.d.now()
		if err := s.d.db.GetContext(ctx, &mark, `SELECT COALESCE(MAX(created_at), 0) FROM revocation_events`); err == nil {
			break
		} else if ctx.Err() != nil {
			return nil
		} else {
			s.log.Warn("store: polling revocation events", "err", err)
		}
		if !sleepCtx(ctx, s.pollInterval) {
			return nil
		}
	}
	for sleepCtx(ctx, s.pollInterval) {
		var evs []struct {
			CAID      string `db:"ca_id"`
			Serial    string `db:"serial"`
			CreatedAt int64  `db:"created_at"`
		}
		// The poll sees every event committed before it starts.
		through := s.d.now()
		if err := s.d.db.SelectContext(ctx, &evs, s.d.Rebind(`SELECT ca_id, serial, created_at FROM revocation_events
			WHERE created_at > ?`), mark-pollOverlap.Nanoseconds()); err != nil {
			if ctx.Err() == nil {
				s.log.Warn("store: polling revocation events", "err", err)
			}
			continue
		}
		for _, e := range evs {
			evict(e.CAID, e.Serial)
			mark = max(mark, e.CreatedAt)
		}
		if applied != nil {
			applied(since, through)
		}
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
