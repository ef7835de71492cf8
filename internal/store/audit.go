package store

import (
	"context"
	"encoding/asn1"
	"encoding/json"
	"fmt"
	"iter"
	"strconv"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/gmtrust/gmtrust/internal/audit"
)

// Audit entries are appended by the write methods themselves, inside the
// transaction of the change they record (appendAudit), so a change and its
// entry commit or roll back together. The actor comes from the context
// (audit.WithActor); writes without one are the system's.

// auditPage is how many entries or checkpoints one query of a walk reads.
const auditPage = 1000

// auditRecord is an entry to append before it is numbered and hashed.
type auditRecord struct {
	ctx     context.Context // carries the actor
	action  string
	object  string
	outcome string
	details map[string]any
}

// appendAudit appends one entry to the chain inside tx. It reads the head
// under a row lock (PostgreSQL; SQLite's write lock already excludes every
// other writer), so concurrent appenders in any process queue up and
// sequence numbers have no gaps.
func (d *DB) appendAudit(ctx context.Context, tx *sqlx.Tx, action, object, outcome string, details map[string]any) error {
	return d.appendAudits(ctx, tx, []auditRecord{{ctx: ctx, action: action, object: object, outcome: outcome, details: details}})
}

// appendAudits appends several entries, in order, with one head read, one
// multi-row INSERT and one head update: the group-commit path for
// batches of issued certificates.
func (d *DB) appendAudits(ctx context.Context, tx *sqlx.Tx, recs []auditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	head, err := d.lockAuditHead(ctx, tx)
	if err != nil {
		return err
	}
	return d.appendAuditsAt(ctx, tx, head, recs)
}

// appendAuditsAt is appendAudits for a transaction that already holds the
// audit head (lockAuditHead) and has not moved it since: it saves reading
// and locking the head a second time, a round trip on PostgreSQL.
func (d *DB) appendAuditsAt(ctx context.Context, tx *sqlx.Tx, head audit.Head, recs []auditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	prev := head.Hash
	if head.Seq == 0 {
		prev = audit.GenesisHash()
	}
	entries := make([]audit.Entry, len(recs))
	for i, r := range recs {
		actor, _ := audit.ActorFrom(r.ctx)
		det := r.details
		if actor.Source != "" {
			det = make(map[string]any, len(r.details)+1)
			for k, v := range r.details {
				det[k] = v
			}
			det["source"] = actor.Source
		}
		dj := "{}"
		if len(det) > 0 {
			b, err := json.Marshal(det)
			if err != nil {
				return fmt.Errorf("store: audit details of %s: %w", r.action, err)
			}
			dj = string(b)
		}
		e := &entries[i]
		*e = audit.Entry{
			Seq: head.Seq + int64(i) + 1, Time: d.now(), Principal: actor.Principal, Action: r.action,
			Object: r.object, Outcome: r.outcome, RequestID: actor.RequestID, Details: dj,
		}
		if err := e.Seal(prev); err != nil {
			return fmt.Errorf("store: audit %s: %w", r.action, err)
		}
		prev = e.Hash
	}
	if d.insertAudit != nil {
		stmt := tx.StmtxContext(ctx, d.insertAudit)
		for i := range entries {
			e := &entries[i]
			if _, err := stmt.ExecContext(ctx, e.Seq, e.Time.UnixNano(), e.Principal, e.Action, e.Object, e.Outcome, e.RequestID, e.Details, e.PrevHash, e.Hash); err != nil {
				return fmt.Errorf("store: append audit entry %d: %w", e.Seq, err)
			}
		}
		return d.moveAuditHead(ctx, tx, &entries[len(entries)-1])
	}
	err := d.execMultiRow(ctx, tx, "audit_log", auditColumns, 10, len(entries), func(i int, args []any) []any {
		e := &entries[i]
		return append(args, e.Seq, e.Time.UnixNano(), e.Principal, e.Action, e.Object, e.Outcome, e.RequestID, e.Details, e.PrevHash, e.Hash)
	})
	if err != nil {
		return fmt.Errorf("store: append audit entries: %w", err)
	}
	return d.moveAuditHead(ctx, tx, &entries[len(entries)-1])
}

const insertAuditSQL = `INSERT INTO audit_log (` + auditColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// moveAuditHead records last as the end of the chain.
func (d *DB) moveAuditHead(ctx context.Context, tx *sqlx.Tx, last *audit.Entry) error {
	if _, err := tx.ExecContext(ctx, d.Rebind(`UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1`), last.Seq, last.Hash); err != nil {
		return fmt.Errorf("store: move audit head: %w", err)
	}
	return nil
}

// certObject names a certificate in the audit log.
func certObject(caID, serial string) string { return "certificate/" + caID + "/" + serial }

// certIssueAudit is the entry of an issued certificate.
func certIssueAudit(ctx context.Context, r *certRow) auditRecord {
	return auditRecord{ctx: ctx, action: "certificate.issue", object: certObject(r.CAID, r.Serial), outcome: audit.OutcomeSuccess,
		details: map[string]any{"profile": r.Profile, "department": r.Department, "subject": r.Subject, "requested_by": r.RequestedBy}}
}

// auditTime formats a time for entry details; nil for the zero time.
func auditTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// lockAuditHead reads the chain head inside tx, locking its row on
// PostgreSQL until tx ends. A write that locks other rows before it knows
// what to audit calls this first, so that every audited transaction takes
// the head lock before any other row lock and two of them cannot deadlock.
func (d *DB) lockAuditHead(ctx context.Context, tx *sqlx.Tx) (audit.Head, error) {
	q := `SELECT seq, hash FROM audit_head WHERE id = 1`
	if d.dialect == DialectPostgres {
		q += " FOR UPDATE"
	}
	var h audit.Head
	if err := tx.QueryRowxContext(ctx, q).Scan(&h.Seq, &h.Hash); err != nil {
		return h, fmt.Errorf("store: read audit head: %w", err)
	}
	return h, nil
}

// AppendAudit records an event that changes nothing else, such as a failed
// authentication or a refused request, in a write of its own.
func (d *DB) AppendAudit(ctx context.Context, action, object, outcome string, details map[string]any) error {
	return d.Write(ctx, func(ctx context.Context, tx *sqlx.Tx) error {
		return d.appendAudit(ctx, tx, action, object, outcome, details)
	})
}

// AuditHead returns the end of the chain; Seq 0 for an empty log.
func (d *DB) AuditHead(ctx context.Context) (audit.Head, error) {
	var h audit.Head
	if err := d.db.QueryRowxContext(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`).Scan(&h.Seq, &h.Hash); err != nil {
		return h, fmt.Errorf("store: read audit head: %w", err)
	}
	if len(h.Hash) == 0 {
		h.Hash = nil
	}
	return h, nil
}

const auditColumns = `seq, at, principal, action, object, outcome, request_id, details, prev_hash, hash`

type auditRow struct {
	Seq       int64  `db:"seq"`
	At        int64  `db:"at"`
	Principal string `db:"principal"`
	Action    string `db:"action"`
	Object    string `db:"object"`
	Outcome   string `db:"outcome"`
	RequestID string `db:"request_id"`
	Details   string `db:"details"`
	PrevHash  []byte `db:"prev_hash"`
	Hash      []byte `db:"hash"`
}

func (r *auditRow) entry() audit.Entry {
	return audit.Entry{
		Seq: r.Seq, Time: time.Unix(0, r.At).UTC(), Principal: r.Principal, Action: r.Action, Object: r.Object,
		Outcome: r.Outcome, RequestID: r.RequestID, Details: r.Details, PrevHash: r.PrevHash, Hash: r.Hash,
	}
}

// AuditEntries yields the entries with seq > after in ascending order,
// reading them a page at a time so that memory stays bounded however
// long the chain is. It implements audit.Source.
func (d *DB) AuditEntries(ctx context.Context, after int64) iter.Seq2[*audit.Entry, error] {
	return func(yield func(*audit.Entry, error) bool) {
		q := d.Rebind(`SELECT ` + auditColumns + ` FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?`)
		for {
			var rows []auditRow
			if err := d.db.SelectContext(ctx, &rows, q, after, auditPage); err != nil {
				yield(nil, fmt.Errorf("store: read audit log after %d: %w", after, err))
				return
			}
			for i := range rows {
				e := rows[i].entry()
				if !yield(&e, nil) {
					return
				}
			}
			if len(rows) < auditPage {
				return
			}
			after = rows[len(rows)-1].Seq
		}
	}
}

// AuditFilter selects entries for ListAudit. Empty fields do not filter.
type AuditFilter struct {
	Principal string
	// Action is an exact action, or a prefix ending in "." (e.g.
	// "certificate.") for a family of actions.
	Action  string
	Object  string
	Outcome string
	Since   time.Time // inclusive
	Until   time.Time // exclusive
	// Before is the cursor: only entries with seq < Before (0 = from the
	// newest).
	Before int64
	Limit  int
}

// ListAudit returns entries newest first and the cursor (Before) of the
// next page, 0 on the last one.
func (d *DB) ListAudit(ctx context.Context, f AuditFilter) ([]audit.Entry, int64, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	var where []string
	var args []any
	eq := func(col, v string) {
		if v != "" {
			where = append(where, col+" = ?")
			args = append(args, v)
		}
	}
	eq("principal", f.Principal)
	eq("object", f.Object)
	eq("outcome", f.Outcome)
	if prefix, ok := strings.CutSuffix(f.Action, "."); ok && prefix != "" {
		// A range instead of LIKE: it uses the index in both databases
		// ('/' is the character after '.').
		where = append(where, "action >= ? AND action < ?")
		args = append(args, prefix+".", prefix+"/")
	} else {
		eq("action", f.Action)
	}
	if !f.Since.IsZero() {
		where = append(where, "at >= ?")
		args = append(args, f.Since.UnixNano())
	}
	if !f.Until.IsZero() {
		where = append(where, "at < ?")
		args = append(args, f.Until.UnixNano())
	}
	if f.Before > 0 {
		where = append(where, "seq < ?")
		args = append(args, f.Before)
	}
	q := `SELECT ` + auditColumns + ` FROM audit_log`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY seq DESC LIMIT ?"
	args = append(args, limit+1)
	var rows []auditRow
	if err := d.db.SelectContext(ctx, &rows, d.Rebind(q), args...); err != nil {
		return nil, 0, fmt.Errorf("store: list audit log: %w", err)
	}
	var next int64
	if len(rows) > limit {
		rows = rows[:limit]
		next = rows[limit-1].Seq
	}
	out := make([]audit.Entry, len(rows))
	for i := range rows {
		out[i] = rows[i].entry()
	}
	return out, next, nil
}

type checkpointRow struct {
	Seq       int64  `db:"seq"`
	Hash      []byte `db:"hash"`
	At        int64  `db:"at"`
	CertDER   []byte `db:"cert_der"`
	Algorithm string `db:"algorithm"`
	Signature []byte `db:"signature"`
}

func (r *checkpointRow) checkpoint() (*audit.Checkpoint, error) {
	cp := &audit.Checkpoint{Seq: r.Seq, Hash: r.Hash, Time: time.Unix(0, r.At).UTC(), Certificate: r.CertDER, Signature: r.Signature}
	// An unparsable algorithm leaves the OID empty: the verifier then
	// reports the checkpoint as bad instead of the walk failing.
	cp.Algorithm, _ = parseOID(r.Algorithm)
	return cp, nil
}

// parseOID parses a dotted object identifier ("1.2.156.10197.1.501").
func parseOID(s string) (asn1.ObjectIdentifier, error) {
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return nil, fmt.Errorf("%w: object identifier %q", ErrInvalid, s)
	}
	oid := make(asn1.ObjectIdentifier, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%w: object identifier %q", ErrInvalid, s)
		}
		oid[i] = n
	}
	return oid, nil
}

// InsertCheckpoint stores a signed checkpoint; audit.ErrCheckpointExists
// when one of the same entry exists.
func (d *DB) InsertCheckpoint(ctx context.Context, cp *audit.Checkpoint) error {
	if cp == nil || cp.Seq < 1 || len(cp.Hash) != audit.HashSize || len(cp.Signature) == 0 || len(cp.Certificate) == 0 {
		return fmt.Errorf("%w: incomplete audit checkpoint", ErrInvalid)
	}
	return d.Write(ctx, func(ctx context.Context, tx *sqlx.Tx) error {
		_, err := tx.ExecContext(ctx, d.Rebind(`INSERT INTO audit_checkpoints (seq, hash, at, cert_der, algorithm, signature)
			VALUES (?, ?, ?, ?, ?, ?)`), cp.Seq, cp.Hash, cp.Time.UnixNano(), cp.Certificate, cp.Algorithm.String(), cp.Signature)
		return mapInsertErr(err, fmt.Sprintf("audit checkpoint %d", cp.Seq), audit.ErrCheckpointExists)
	})
}

// LatestCheckpoint returns the checkpoint of the highest entry, or nil.
func (d *DB) LatestCheckpoint(ctx context.Context) (*audit.Checkpoint, error) {
	var rows []checkpointRow
	if err := d.db.SelectContext(ctx, &rows, `SELECT seq, hash, at, cert_der, algorithm, signature
		FROM audit_checkpoints ORDER BY seq DESC LIMIT 1`); err != nil {
		return nil, fmt.Errorf("store: latest audit checkpoint: %w", err)
	}
	if len(rows) == 0 {
		return nil, nil
	}
	return rows[0].checkpoint()
}

// AuditCheckpoints yields every checkpoint in ascending order, a page at
// a time. It implements audit.Source.
func (d *DB) AuditCheckpoints(ctx context.Context) iter.Seq2[*audit.Checkpoint, error] {
	return func(yield func(*audit.Checkpoint, error) bool) {
		q := d.Rebind(`SELECT seq, hash, at, cert_der, algorithm, signature
			FROM audit_checkpoints WHERE seq > ? ORDER BY seq LIMIT ?`)
		var after int64
		for {
			var rows []checkpointRow
			if err := d.db.SelectContext(ctx, &rows, q, after, auditPage); err != nil {
				yield(nil, fmt.Errorf("store: read audit checkpoints: %w", err))
				return
			}
			for i := range rows {
				cp, err := rows[i].checkpoint()
				if !yield(cp, err) {
					return
				}
			}
			if len(rows) < auditPage {
				return
			}
			after = rows[len(rows)-1].Seq
		}
	}
}

var (
	_ audit.Source          = (*DB)(nil)
	_ audit.CheckpointStore = (*DB)(nil)
)
