package store

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jmoiron/sqlx"

	"github.com/gmtrust/gmtrust/internal/audit"
	"github.com/gmtrust/gmtrust/seal"
)

// Seals is the seal registry: it implements seal.Store (seals, their
// grants and the stamp log) and seal.Registry over a DB. The statements
// of the stamping hot path are prepared once: SQLite would otherwise parse
// them again for every stamp, in the single group-commit writer that every
// stamp waits for.
type Seals struct {
	d           *DB
	checkStamp  *sqlx.Stmt
	insertStamp *sqlx.Stmt
}

// NewSeals returns the seal registry of d. Close it before d.
func NewSeals(ctx context.Context, d *DB) (*Seals, error) {
	reg := &Seals{d: d}
	var err error
	// The check share-locks the rows it reads on PostgreSQL, so that a
	// concurrent suspension, revocation or withdrawal waits for the
	// stamp's commit; SQLite's write transactions exclude each other.
	if reg.checkStamp, err = d.db.PreparexContext(ctx, d.Rebind(`SELECT s.status AS seal_status, c.status AS cert_status
		FROM seals s
		JOIN certificates c ON c.ca_id = s.holder_ca_id AND c.serial = s.holder_cert_serial
		JOIN seal_grants g ON g.seal_id = s.id AND g.principal = ?
		WHERE s.id = ?`+d.lockClause("FOR SHARE OF s, c, g"))); err != nil {
		return nil, fmt.Errorf("store: prepare stamp check: %w", err)
	}
	if reg.insertStamp, err = d.db.PreparexContext(ctx, d.Rebind(`INSERT INTO stamps (`+stampColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)); err != nil {
		reg.checkStamp.Close()
		return nil, fmt.Errorf("store: prepare stamp insert: %w", err)
	}
	return reg, nil
}

// Close releases the prepared statements.
func (reg *Seals) Close() error {
	return errors.Join(reg.checkStamp.Close(), reg.insertStamp.Close())
}

const sealColumns = `id, esid, name, type, department, holder_ca_id, holder_cert_serial, holder_key_ref,
	maker_signer_id, der, picture_type, picture, width_mm, height_mm, valid_start, valid_end, status,
	revocation_reason, created_by, created_at, status_changed_at, status_changed_by`

// sealListColumns are sealColumns without the bytes (DER and picture),
// which listings do not return.
const sealListColumns = `id, esid, name, type, department, holder_ca_id, holder_cert_serial, holder_key_ref,
	maker_signer_id, picture_type, width_mm, height_mm, valid_start, valid_end, status,
	revocation_reason, created_by, created_at, status_changed_at, status_changed_by`

type sealRow struct {
	ID               string `db:"id"`
	ESID             string `db:"esid"`
	Name             string `db:"name"`
	Type             int    `db:"type"`
	Department       string `db:"department"`
	HolderCAID       string `db:"holder_ca_id"`
	HolderSerial     string `db:"holder_cert_serial"`
	HolderKeyRef     string `db:"holder_key_ref"`
	MakerSignerID    string `db:"maker_signer_id"`
	DER              []byte `db:"der"`
	PictureType      string `db:"picture_type"`
	Picture          []byte `db:"picture"`
	WidthMM          int    `db:"width_mm"`
	HeightMM         int    `db:"height_mm"`
	ValidStart       int64  `db:"valid_start"`
	ValidEnd         int64  `db:"valid_end"`
	Status           string `db:"status"`
	RevocationReason string `db:"revocation_reason"`
	CreatedBy        string `db:"created_by"`
	CreatedAt        int64  `db:"created_at"`
	StatusChangedAt  int64  `db:"status_changed_at"`
	StatusChangedBy  string `db:"status_changed_by"`
}

func (r *sealRow) record() (*seal.Record, error) {
	st, err := seal.ParseSealState(r.Status)
	if err != nil {
		return nil, fmt.Errorf("store: seal %s: bad status column: %w", r.ID, err)
	}
	return &seal.Record{
		ID: r.ID, ESID: r.ESID, Name: r.Name, Type: r.Type, Department: r.Department,
		HolderCAID: r.HolderCAID, HolderSerial: r.HolderSerial, HolderKeyRef: r.HolderKeyRef, MakerSignerID: r.MakerSignerID,
		DER: r.DER, PictureType: r.PictureType, Picture: r.Picture, WidthMM: r.WidthMM, HeightMM: r.HeightMM,
		ValidStart: fromUnixSec(r.ValidStart), ValidEnd: fromUnixSec(r.ValidEnd), Status: st,
		RevocationReason: r.RevocationReason, CreatedBy: r.CreatedBy, CreatedAt: fromUnixNano(r.CreatedAt),
		StatusChangedAt: fromUnixNano(r.StatusChangedAt), StatusChangedBy: r.StatusChangedBy,
	}, nil
}

// sealNotFound maps sql.ErrNoRows to seal.ErrNotFound.
func sealNotFound(err error, what string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("store: %s: %w", what, seal.ErrNotFound)
	}
	return fmt.Errorf("store: read %s: %w", what, err)
}

func checkSealRecord(r *seal.Record) error {
	switch {
	case r == nil:
		return fmt.Errorf("%w: nil seal", ErrInvalid)
	case r.ID == "" || r.ESID == "" || r.Name == "":
		return fmt.Errorf("%w: seal needs id, esID and name", ErrInvalid)
	case r.HolderCAID == "" || r.HolderKeyRef == "" || r.MakerSignerID == "":
		return fmt.Errorf("%w: seal %s needs its holder certificate, holder key and maker", ErrInvalid, r.ID)
	case len(r.DER) == 0 || len(r.Picture) == 0:
		return fmt.Errorf("%w: seal %s without DER or picture", ErrInvalid, r.ID)
	case r.ValidStart.IsZero() || r.ValidEnd.IsZero():
		return fmt.Errorf("%w: seal %s without validity", ErrInvalid, r.ID)
	case r.Status != seal.SealActive && r.Status != seal.SealSuspended && r.Status != seal.SealRevoked:
		return fmt.Errorf("%w: seal %s has status %s", ErrInvalid, r.ID, r.Status)
	}
	return checkSerial(r.HolderSerial)
}

// InsertSeal records a seal and its grants in one group-committed
// transaction. It returns seal.ErrDuplicate when the esID (or id) exists
// and ca.ErrNotFound when the holder certificate or the maker signer is
// not recorded. A zero CreatedAt is set to now.
func (reg *Seals) InsertSeal(ctx context.Context, r *seal.Record, grants []seal.Grant) error {
	d := reg.d
	if err := checkSealRecord(r); err != nil {
		return err
	}
	if r.CreatedAt.IsZero() {
		r.CreatedAt = d.now()
	}
	for i := range grants {
		if grants[i].SealID != r.ID || grants[i].Principal == "" {
			return fmt.Errorf("%w: grant %d is not for seal %s or has no principal", ErrInvalid, i, r.ID)
		}
		if grants[i].CreatedAt.IsZero() {
			grants[i].CreatedAt = r.CreatedAt
		}
	}
	return d.Write(ctx, func(ctx context.Context, tx *sqlx.Tx) error {
		if _, err := d.lockAuditHead(ctx, tx); err != nil { // audited: head lock first
			return err
		}
		_, err := tx.ExecContext(ctx, d.Rebind(`INSERT INTO seals (`+sealColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			r.ID, r.ESID, r.Name, r.Type, r.Department, r.HolderCAID, r.HolderSerial, r.HolderKeyRef,
			r.MakerSignerID, r.DER, r.PictureType, r.Picture, r.WidthMM, r.HeightMM, unixSec(r.ValidStart), unixSec(r.ValidEnd),
			r.Status.String(), r.RevocationReason, r.CreatedBy, r.CreatedAt.UnixNano(), unixNano(r.StatusChangedAt), r.StatusChangedBy)
		if err := mapInsertErr(err, "seal "+r.ID, seal.ErrDuplicate); err != nil {
			return err
		}
		granted := make([]string, 0, len(grants))
		for _, g := range grants {
			if err := d.insertGrant(ctx, tx, g); err != nil {
				return err
			}
			granted = append(granted, g.Principal)
		}
		return d.appendAudit(ctx, tx, "seal.create", "seal/"+r.ID, audit.OutcomeSuccess, map[string]any{
			"esid": r.ESID, "name": r.Name, "type": r.Type, "department": r.Department,
			"holder": certObject(r.HolderCAID, r.HolderSerial), "maker": r.MakerSignerID, "grants": granted,
			"valid_start": auditTime(r.ValidStart), "valid_end": auditTime(r.ValidEnd),
		})
	})
}

// Seal returns one seal or seal.ErrNotFound.
func (reg *Seals) Seal(ctx context.Context, id string) (*seal.Record, error) {
	d := reg.d
	var r sealRow
	if err := d.db.GetContext(ctx, &r, d.Rebind(`SELECT `+sealColumns+` FROM seals WHERE id = ?`), id); err != nil {
		return nil, sealNotFound(err, "seal "+id)
	}
	return r.record()
}

// SealByESID returns one seal or seal.ErrNotFound.
func (reg *Seals) SealByESID(ctx context.Context, esID string) (*seal.Record, error) {
	d := reg.d
	var r sealRow
	if err := d.db.GetContext(ctx, &r, d.Rebind(`SELECT `+sealColumns+` FROM seals WHERE esid = ?`), esID); err != nil {
		return nil, sealNotFound(err, "seal with esID "+esID)
	}
	return r.record()
}

// HolderKeyRef returns the key reference recorded for a holder
// certificate by the newest seal that names it, or seal.ErrNotFound.
func (reg *Seals) HolderKeyRef(ctx context.Context, caID, serial string) (string, error) {
	d := reg.d
	var ref string
	err := d.db.GetContext(ctx, &ref, d.Rebind(`SELECT holder_key_ref FROM seals
		WHERE holder_ca_id = ? AND holder_cert_serial = ? ORDER BY created_at DESC LIMIT 1`), caID, serial)
	if err != nil {
		return "", sealNotFound(err, "holder key of certificate "+caID+"/"+serial)
	}
	return ref, nil
}

// keyCursor is the position after the last row of a page ordered by
// (created_at, id) descending.
type keyCursor struct {
	CreatedAt int64  `json:"t"`
	ID        string `json:"i"`
}

func (c keyCursor) encode() string {
	b, _ := json.Marshal(c) // cannot fail: an int and a string
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeKeyCursor(s string) (keyCursor, error) {
	var c keyCursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return c, fmt.Errorf("%w: %v", ErrInvalidCursor, err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%w: %v", ErrInvalidCursor, err)
	}
	if c.ID == "" {
		return c, fmt.Errorf("%w: incomplete", ErrInvalidCursor)
	}
	return c, nil
}

func pageLimit(limit int) int {
	if limit <= 0 {
		return DefaultLimit
	}
	return min(limit, MaxLimit)
}

// Seals lists seals newest first, without their DER and picture. The
// returned cursor fetches the next page and is "" on the last one.
func (reg *Seals) Seals(ctx context.Context, f seal.Filter) ([]seal.Record, string, error) {
	d := reg.d
	limit := pageLimit(f.Limit)
	var where []string
	var args []any
	if f.Department != "" {
		where = append(where, "department = ?")
		args = append(args, f.Department)
	}
	if f.Status != 0 {
		where = append(where, "status = ?")
		args = append(args, f.Status.String())
	}
	if f.Cursor != "" {
		c, err := decodeKeyCursor(f.Cursor)
		if err != nil {
			return nil, "", fmt.Errorf("%w: %w", seal.ErrInvalidRequest, err)
		}
		where = append(where, "(created_at, id) < (?, ?)")
		args = append(args, c.CreatedAt, c.ID)
	}
	q := "SELECT " + sealListColumns + " FROM seals"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY created_at DESC, id DESC LIMIT ?"
	args = append(args, limit+1)
	var rows []sealRow
	if err := d.db.SelectContext(ctx, &rows, d.Rebind(q), args...); err != nil {
		return nil, "", fmt.Errorf("store: list seals: %w", err)
	}
	next := ""
	if len(rows) > limit {
		rows = rows[:limit]
		next = keyCursor{CreatedAt: rows[limit-1].CreatedAt, ID: rows[limit-1].ID}.encode()
	}
	out := make([]seal.Record, len(rows))
	for i := range rows {
		r, err := rows[i].record()
		if err != nil {
			return nil, "", err
		}
		out[i] = *r
	}
	return out, next, nil
}

// lockClause is the row-locking suffix of a read inside a write: PostgreSQL
// needs it to serialise concurrent changes of a row; SQLite's immediate
// transactions already exclude every other writer.
func (d *DB) lockClause(mode string) string {
	if d.dialect == DialectPostgres {
		return " " + mode
	}
	return ""
}

// SetSealStatus moves a seal to ch.To if its status is one of ch.From,
// and returns the seal as stored afterwards. Otherwise it changes nothing
// and returns the current seal with an error wrapping
// seal.ErrStateConflict. seal.ErrNotFound when there is no such seal.
func (reg *Seals) SetSealStatus(ctx context.Context, ch seal.StatusChange) (*seal.Record, error) {
	d := reg.d
	if ch.ID == "" || len(ch.From) == 0 {
		return nil, fmt.Errorf("%w: status change needs a seal id and the states it may leave", ErrInvalid)
	}
	if ch.At.IsZero() {
		ch.At = d.now()
	}
	var out *sealRow
	var conflict bool
	err := d.Write(ctx, func(ctx context.Context, tx *sqlx.Tx) error {
		out, conflict = nil, false
		if _, err := d.lockAuditHead(ctx, tx); err != nil { // audited: head lock first
			return err
		}
		var r sealRow
		if err := tx.GetContext(ctx, &r, d.Rebind(`SELECT `+sealColumns+` FROM seals WHERE id = ?`+d.lockClause("FOR UPDATE")), ch.ID); err != nil {
			return sealNotFound(err, "seal "+ch.ID)
		}
		out = &r
		allowed := false
		for _, s := range ch.From {
			if r.Status == s.String() {
				allowed = true
			}
		}
		if !allowed {
			// Not an error of the transaction: failing it would make the
			// group writer split its batch for nothing.
			conflict = true
			return nil
		}
		r.Status = ch.To.String()
		r.StatusChangedAt = ch.At.UnixNano()
		r.StatusChangedBy = ch.By
		if ch.To == seal.SealRevoked {
			r.RevocationReason = ch.Reason
		}
		_, err := tx.ExecContext(ctx, d.Rebind(`UPDATE seals SET status = ?, status_changed_at = ?, status_changed_by = ?,
			revocation_reason = ? WHERE id = ?`), r.Status, r.StatusChangedAt, r.StatusChangedBy, r.RevocationReason, r.ID)
		if err != nil {
			return fmt.Errorf("store: update seal %s: %w", r.ID, err)
		}
		action := map[seal.SealState]string{seal.SealActive: "seal.resume", seal.SealSuspended: "seal.suspend", seal.SealRevoked: "seal.revoke"}[ch.To]
		if action == "" {
			action = "seal.status"
		}
		return d.appendAudit(ctx, tx, action, "seal/"+r.ID, audit.OutcomeSuccess, map[string]any{
			"status": r.Status, "reason": ch.Reason, "by": ch.By,
		})
	})
	if err != nil {
		return nil, err
	}
	rec, err := out.record()
	if err != nil {
		return nil, err
	}
	if conflict {
		return rec, fmt.Errorf("store: seal %s is %s: %w", ch.ID, rec.Status, seal.ErrStateConflict)
	}
	return rec, nil
}

func (d *DB) insertGrant(ctx context.Context, tx *sqlx.Tx, g seal.Grant) error {
	// ON CONFLICT DO NOTHING is spelled the same in SQLite and PostgreSQL.
	_, err := tx.ExecContext(ctx, d.Rebind(`INSERT INTO seal_grants (seal_id, principal, granted_by, created_at)
		VALUES (?, ?, ?, ?) ON CONFLICT (seal_id, principal) DO NOTHING`),
		g.SealID, g.Principal, g.GrantedBy, g.CreatedAt.UnixNano())
	if isForeignKeyViolation(err) {
		return fmt.Errorf("store: grant on seal %s: %w", g.SealID, seal.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("store: grant on seal %s: %w", g.SealID, err)
	}
	return nil
}

// AddGrant lets a principal stamp with a seal; granting again changes
// nothing. seal.ErrNotFound when the seal does not exist.
func (reg *Seals) AddGrant(ctx context.Context, g seal.Grant) error {
	d := reg.d
	if g.SealID == "" || g.Principal == "" {
		return fmt.Errorf("%w: grant needs a seal and a principal", ErrInvalid)
	}
	if g.CreatedAt.IsZero() {
		g.CreatedAt = d.now()
	}
	return d.Write(ctx, func(ctx context.Context, tx *sqlx.Tx) error {
		if _, err := d.lockAuditHead(ctx, tx); err != nil { // audited: head lock first
			return err
		}
		var n int
		if err := tx.GetContext(ctx, &n, d.Rebind(`SELECT COUNT(*) FROM seal_grants WHERE seal_id = ? AND principal = ?`), g.SealID, g.Principal); err != nil {
			return fmt.Errorf("store: grant on seal %s: %w", g.SealID, err)
		}
		if n > 0 {
			return nil // granted already: nothing changes, nothing to audit
		}
		if err := d.insertGrant(ctx, tx, g); err != nil {
			return err
		}
		return d.appendAudit(ctx, tx, "seal.grant", "seal/"+g.SealID, audit.OutcomeSuccess, map[string]any{
			"principal": g.Principal, "by": g.GrantedBy,
		})
	})
}

// DeleteGrant withdraws a grant, or returns seal.ErrNotFound.
func (reg *Seals) DeleteGrant(ctx context.Context, sealID, principal string) error {
	d := reg.d
	return d.Write(ctx, func(ctx context.Context, tx *sqlx.Tx) error {
		if _, err := d.lockAuditHead(ctx, tx); err != nil { // audited: head lock first
			return err
		}
		res, err := tx.ExecContext(ctx, d.Rebind(`DELETE FROM seal_grants WHERE seal_id = ? AND principal = ?`), sealID, principal)
		if err != nil {
			return fmt.Errorf("store: delete grant: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("store: delete grant: %w", err)
		} else if n == 0 {
			return fmt.Errorf("store: grant of seal %s to %q: %w", sealID, principal, seal.ErrNotFound)
		}
		return d.appendAudit(ctx, tx, "seal.ungrant", "seal/"+sealID, audit.OutcomeSuccess, map[string]any{"principal": principal})
	})
}

// Grants lists a seal's grants, oldest first.
func (reg *Seals) Grants(ctx context.Context, sealID string) ([]seal.Grant, error) {
	d := reg.d
	var rows []struct {
		SealID    string `db:"seal_id"`
		Principal string `db:"principal"`
		GrantedBy string `db:"granted_by"`
		CreatedAt int64  `db:"created_at"`
	}
	if err := d.db.SelectContext(ctx, &rows, d.Rebind(`SELECT seal_id, principal, granted_by, created_at
		FROM seal_grants WHERE seal_id = ? ORDER BY created_at, principal`), sealID); err != nil {
		return nil, fmt.Errorf("store: grants of seal %s: %w", sealID, err)
	}
	out := make([]seal.Grant, len(rows))
	for i, r := range rows {
		out[i] = seal.Grant{SealID: r.SealID, Principal: r.Principal, GrantedBy: r.GrantedBy, CreatedAt: fromUnixNano(r.CreatedAt)}
	}
	return out, nil
}

// Granted reports whether principal may stamp with the seal.
func (reg *Seals) Granted(ctx context.Context, sealID, principal string) (bool, error) {
	d := reg.d
	var n int
	if err := d.db.GetContext(ctx, &n, d.Rebind(`SELECT COUNT(*) FROM seal_grants WHERE seal_id = ? AND principal = ?`), sealID, principal); err != nil {
		return false, fmt.Errorf("store: grant of seal %s: %w", sealID, err)
	}
	return n > 0, nil
}

const stampColumns = `id, seal_id, principal, at, data_hash, property_info, approval_ref, signature, created_at`

type stampRow struct {
	ID           string `db:"id"`
	SealID       string `db:"seal_id"`
	Principal    string `db:"principal"`
	At           int64  `db:"at"`
	DataHash     []byte `db:"data_hash"`
	PropertyInfo string `db:"property_info"`
	ApprovalRef  string `db:"approval_ref"`
	Signature    []byte `db:"signature"`
	CreatedAt    int64  `db:"created_at"`
}

func (r *stampRow) record() seal.StampRecord {
	return seal.StampRecord{
		ID: r.ID, SealID: r.SealID, Principal: r.Principal, At: fromUnixSec(r.At), DataHash: r.DataHash,
		PropertyInfo: r.PropertyInfo, ApprovalRef: r.ApprovalRef, Signature: r.Signature, CreatedAt: fromUnixNano(r.CreatedAt),
	}
}

// stampWrite is a stamp on its way through group commit.
type stampWrite struct {
	reg *Seals
	s   *seal.StampRecord
	// refused says why the checks refused the stamp, "" when it was
	// written. Whichever path runs the write sets it afresh, since the
	// writer may run a write more than once.
	refused string
}

// stampAudit is the entry of a recorded stamp.
func stampAudit(ctx context.Context, s *seal.StampRecord) auditRecord {
	return auditRecord{ctx: ctx, action: "seal.stamp", object: "stamp/" + s.ID, outcome: audit.OutcomeSuccess, details: map[string]any{
		"seal": s.SealID, "data_hash": hex.EncodeToString(s.DataHash), "property_info": s.PropertyInfo,
		"approval_ref": s.ApprovalRef, "at": auditTime(s.At),
	}}
}

// checkStampTx runs the stamp check for one seal and principal in tx and
// returns why a stamp is refused, or "".
func (reg *Seals) checkStampTx(ctx context.Context, tx *sqlx.Tx, sealID, principal string) (string, error) {
	var st struct {
		Seal string `db:"seal_status"`
		Cert string `db:"cert_status"`
	}
	err := tx.StmtxContext(ctx, reg.checkStamp).GetContext(ctx, &st, principal, sealID)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "no such seal, or no grant for " + principal, nil
	case err != nil:
		return "", fmt.Errorf("store: checking seal %s: %w", sealID, err)
	case st.Seal != seal.SealActive.String():
		return "seal is " + st.Seal, nil
	case st.Cert != "good":
		return "holder certificate is " + st.Cert, nil
	}
	return "", nil
}

func (reg *Seals) execInsertStamp(ctx context.Context, tx *sqlx.Tx, s *seal.StampRecord) error {
	_, err := tx.StmtxContext(ctx, reg.insertStamp).ExecContext(ctx, s.ID, s.SealID, s.Principal, unixSec(s.At), s.DataHash,
		s.PropertyInfo, s.ApprovalRef, s.Signature, s.CreatedAt.UnixNano())
	return mapInsertErr(err, "stamp "+s.ID, ErrDuplicate)
}

// InsertStamp records a stamp through group commit, in a transaction that
// first checks that the seal is active, its holder certificate good and
// the principal granted (on PostgreSQL it share-locks those rows, so a
// concurrent suspension, revocation or withdrawal waits for the stamp's
// commit, and a stamp never commits after one). When a check fails it
// writes nothing and returns an error wrapping seal.ErrStampRefused.
//
// Concurrent stamps that the writer batches are checked once per seal and
// principal and written together (recordStamps); this function's own
// write is what runs for a stamp alone, or again, one by one, when the
// combined write fails.
func (reg *Seals) InsertStamp(ctx context.Context, s *seal.StampRecord) error {
	d := reg.d
	switch {
	case s == nil:
		return fmt.Errorf("%w: nil stamp", ErrInvalid)
	case s.ID == "" || s.SealID == "" || s.Principal == "":
		return fmt.Errorf("%w: stamp needs id, seal and principal", ErrInvalid)
	case len(s.DataHash) == 0 || len(s.Signature) == 0 || s.At.IsZero():
		return fmt.Errorf("%w: stamp %s needs its data hash, signature and time", ErrInvalid, s.ID)
	}
	if s.CreatedAt.IsZero() {
		s.CreatedAt = d.now()
	}
	sw := &stampWrite{reg: reg, s: s}
	err := d.w.submitReq(ctx, &writeReq{stamp: sw, fn: func(ctx context.Context, tx *sqlx.Tx) error {
		sw.refused = ""
		// Audited: on PostgreSQL the head lock comes before the rows the
		// check locks. SQLite has no row locks to order (its write
		// transactions exclude each other), and this is the hot path: it
		// reads the head once, when appending.
		var head *audit.Head
		if d.dialect == DialectPostgres {
			h, err := d.lockAuditHead(ctx, tx)
			if err != nil {
				return err
			}
			head = &h
		}
		refused, err := reg.checkStampTx(ctx, tx, s.SealID, s.Principal)
		if err != nil {
			return err
		}
		if refused != "" {
			sw.refused = refused
			return nil // nothing written; not a failure of the batch
		}
		if err := reg.execInsertStamp(ctx, tx, s); err != nil {
			return err
		}
		recs := []auditRecord{stampAudit(ctx, s)}
		if head != nil {
			return d.appendAuditsAt(ctx, tx, *head, recs)
		}
		return d.appendAudits(ctx, tx, recs)
	}})
	if err != nil {
		return err
	}
	if sw.refused != "" {
		return fmt.Errorf("store: stamp with seal %s: %s: %w", s.SealID, sw.refused, seal.ErrStampRefused)
	}
	return nil
}

// recordStamps checks and inserts the stamps of a group-commit batch
// (reqs all carry one) inside tx and returns the audit entries of those
// it inserted, for the caller to append with the batch's others. It
// does what each stamp's own write would, with fewer statements: the
// check runs once per distinct (seal, principal), most batches having
// one; the rows go in with multi-row INSERTs on PostgreSQL (multiRow) and
// with the prepared single-row insert on SQLite. A refused stamp is
// marked so and written nowhere; an error fails the whole call, and the
// writer then runs each stamp's own write to find the culprit. On
// PostgreSQL it also returns the audit head it locked, for the caller's
// appendAuditsAt; nil on SQLite.
func (d *DB) recordStamps(ctx context.Context, tx *sqlx.Tx, reqs []*writeReq, multiRow bool) ([]auditRecord, *audit.Head, error) {
	var head *audit.Head
	if d.dialect == DialectPostgres {
		// Audited: the head lock before the rows the checks lock.
		h, err := d.lockAuditHead(ctx, tx)
		if err != nil {
			return nil, nil, err
		}
		head = &h
	}
	type pair struct{ sealID, principal string }
	verdicts := make(map[pair]string, 1)
	accepted := make([]*stampWrite, 0, len(reqs))
	audits := make([]auditRecord, 0, len(reqs))
	for _, r := range reqs {
		sw := r.stamp
		k := pair{sw.s.SealID, sw.s.Principal}
		refused, ok := verdicts[k]
		if !ok {
			var err error
			if refused, err = sw.reg.checkStampTx(ctx, tx, k.sealID, k.principal); err != nil {
				return nil, nil, err
			}
			verdicts[k] = refused
		}
		sw.refused = refused
		if refused == "" {
			accepted = append(accepted, sw)
			audits = append(audits, stampAudit(r.ctx, sw.s))
		}
	}
	if multiRow {
		if err := d.insertStampRows(ctx, tx, accepted); err != nil {
			return nil, nil, err
		}
		return audits, head, nil
	}
	for _, sw := range accepted {
		if err := sw.reg.execInsertStamp(ctx, tx, sw.s); err != nil {
			return nil, nil, err
		}
	}
	return audits, head, nil
}

// insertStampRows inserts stamps with multi-row INSERTs: one statement
// (one round trip to PostgreSQL) for a batch instead of one per stamp.
func (d *DB) insertStampRows(ctx context.Context, tx *sqlx.Tx, rows []*stampWrite) error {
	err := d.execMultiRow(ctx, tx, "stamps", stampColumns, 9, len(rows), func(i int, args []any) []any {
		s := rows[i].s
		return append(args, s.ID, s.SealID, s.Principal, unixSec(s.At), s.DataHash,
			s.PropertyInfo, s.ApprovalRef, s.Signature, s.CreatedAt.UnixNano())
	})
	return mapInsertErr(err, "stamps", ErrDuplicate)
}

// Stamps lists a seal's stamps newest first, all or one principal's, and
// the cursor of the next page ("" on the last one).
func (reg *Seals) Stamps(ctx context.Context, f seal.StampFilter) ([]seal.StampRecord, string, error) {
	d := reg.d
	limit := pageLimit(f.Limit)
	q := `SELECT ` + stampColumns + ` FROM stamps WHERE seal_id = ?`
	args := []any{f.SealID}
	if f.Principal != "" {
		q += " AND principal = ?"
		args = append(args, f.Principal)
	}
	if f.Cursor != "" {
		c, err := decodeKeyCursor(f.Cursor)
		if err != nil {
			return nil, "", fmt.Errorf("%w: %w", seal.ErrInvalidRequest, err)
		}
		q += " AND (created_at, id) < (?, ?)"
		args = append(args, c.CreatedAt, c.ID)
	}
	q += " ORDER BY created_at DESC, id DESC LIMIT ?"
	args = append(args, limit+1)
	var rows []stampRow
	if err := d.db.SelectContext(ctx, &rows, d.Rebind(q), args...); err != nil {
		return nil, "", fmt.Errorf("store: list stamps of seal %s: %w", f.SealID, err)
	}
	next := ""
	if len(rows) > limit {
		rows = rows[:limit]
		next = keyCursor{CreatedAt: rows[limit-1].CreatedAt, ID: rows[limit-1].ID}.encode()
	}
	out := make([]seal.StampRecord, len(rows))
	for i := range rows {
		out[i] = rows[i].record()
	}
	return out, next, nil
}

// StampBySignature finds a stamp by the signer's signature value, or
// returns seal.ErrNotFound.
func (reg *Seals) StampBySignature(ctx context.Context, value []byte) (*seal.StampRecord, error) {
	d := reg.d
	var r stampRow
	if err := d.db.GetContext(ctx, &r, d.Rebind(`SELECT `+stampColumns+` FROM stamps WHERE signature = ?`), value); err != nil {
		return nil, sealNotFound(err, "stamp")
	}
	rec := r.record()
	return &rec, nil
}

var (
	_ seal.Store    = (*Seals)(nil)
	_ seal.Registry = (*Seals)(nil)
)
