package store

import (
	"context"
	"fmt"

	"github.com/jmoiron/sqlx"

	"github.com/gmtrust/gmtrust/ca"
	"github.com/gmtrust/gmtrust/internal/audit"
)

type caRow struct {
	ID        string `db:"id"`
	Name      string `db:"name"`
	Algorithm string `db:"algorithm"`
	ParentID  string `db:"parent_id"`
	Role      string `db:"role"`
	KeyRef    string `db:"key_ref"`
	DER       []byte `db:"cert_der"`
	NotBefore int64  `db:"not_before"`
	NotAfter  int64  `db:"not_after"`
	CreatedAt int64  `db:"created_at"`
}

// InsertCA records a CA through group commit; ErrDuplicate when its id
// exists. A zero CreatedAt is set to now.
func (d *DB) InsertCA(ctx context.Context, r *ca.CARecord) error {
	if err := d.prepareCA(r); err != nil {
		return err
	}
	return d.Write(ctx, func(ctx context.Context, tx *sqlx.Tx) error {
		return d.insertCA(ctx, tx, r)
	})
}

// InsertCATx is InsertCA inside a transaction of InTx or Write.
func (d *DB) InsertCATx(ctx context.Context, tx *sqlx.Tx, r *ca.CARecord) error {
	if err := d.prepareCA(r); err != nil {
		return err
	}
	return d.insertCA(ctx, tx, r)
}

func (d *DB) prepareCA(r *ca.CARecord) error {
	switch {
	case r == nil:
		return fmt.Errorf("%w: nil CA record", ErrInvalid)
	case r.ID == "":
		return fmt.Errorf("%w: CA without id", ErrInvalid)
	case r.Role != ca.RoleRoot && r.Role != ca.RoleIssuing:
		return fmt.Errorf("%w: CA %s has unknown role %q", ErrInvalid, r.ID, r.Role)
	case len(r.DER) == 0:
		return fmt.Errorf("%w: CA %s without certificate", ErrInvalid, r.ID)
	case r.NotBefore.IsZero() || r.NotAfter.IsZero():
		return fmt.Errorf("%w: CA %s without validity", ErrInvalid, r.ID)
	}
	if r.CreatedAt.IsZero() {
		r.CreatedAt = d.now()
	}
	return nil
}

func (d *DB) insertCA(ctx context.Context, tx *sqlx.Tx, r *ca.CARecord) error {
	_, err := tx.ExecContext(ctx, d.Rebind(`INSERT INTO cas
		(id, name, algorithm, parent_id, role, key_ref, cert_der, not_before, not_after, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		r.ID, r.Name, r.Algorithm, r.ParentID, string(r.Role), r.KeyRef, r.DER,
		r.NotBefore.Unix(), r.NotAfter.Unix(), r.CreatedAt.UnixNano())
	if err := mapInsertErr(err, "CA "+r.ID, ErrDuplicate); err != nil {
		return err
	}
	return d.appendAudit(ctx, tx, "ca.create", "ca/"+r.ID, audit.OutcomeSuccess, map[string]any{
		"name": r.Name, "role": string(r.Role), "algorithm": r.Algorithm, "parent": r.ParentID, "key_ref": r.KeyRef,
	})
}

// CAs returns every CA, roots first, then in creation order.
func (d *DB) CAs(ctx context.Context) ([]ca.CARecord, error) {
	var rows []caRow
	if err := d.db.SelectContext(ctx, &rows, `SELECT id, name, algorithm, parent_id, role, key_ref, cert_der,
		not_before, not_after, created_at FROM cas
		ORDER BY CASE role WHEN 'root' THEN 0 ELSE 1 END, created_at, id`); err != nil {
		return nil, fmt.Errorf("store: list CAs: %w", err)
	}
	out := make([]ca.CARecord, len(rows))
	for i, r := range rows {
		out[i] = ca.CARecord{
			ID: r.ID, Name: r.Name, Algorithm: r.Algorithm, ParentID: r.ParentID, Role: ca.Role(r.Role),
			KeyRef: r.KeyRef, DER: r.DER, NotBefore: fromUnixSec(r.NotBefore), NotAfter: fromUnixSec(r.NotAfter),
			CreatedAt: fromUnixNano(r.CreatedAt),
		}
	}
	return out, nil
}

type signerRow struct {
	ID        string `db:"id"`
	CAID      string `db:"ca_id"`
	Purpose   string `db:"purpose"`
	KeyRef    string `db:"key_ref"`
	DER       []byte `db:"cert_der"`
	Serial    string `db:"serial"`
	NotBefore int64  `db:"not_before"`
	NotAfter  int64  `db:"not_after"`
	CreatedAt int64  `db:"created_at"`
}

// InsertSigner records a delegated signer through group commit;
// ErrDuplicate when its id exists, ca.ErrNotFound when its CA does not.
// A zero CreatedAt is set to now.
func (d *DB) InsertSigner(ctx context.Context, s *ca.SignerRecord) error {
	if err := d.prepareSigner(s); err != nil {
		return err
	}
	return d.Write(ctx, func(ctx context.Context, tx *sqlx.Tx) error {
		return d.insertSigner(ctx, tx, s)
	})
}

// InsertSignerTx is InsertSigner inside a transaction of InTx or Write.
func (d *DB) InsertSignerTx(ctx context.Context, tx *sqlx.Tx, s *ca.SignerRecord) error {
	if err := d.prepareSigner(s); err != nil {
		return err
	}
	return d.insertSigner(ctx, tx, s)
}

func (d *DB) prepareSigner(s *ca.SignerRecord) error {
	switch {
	case s == nil:
		return fmt.Errorf("%w: nil signer record", ErrInvalid)
	case s.ID == "" || s.CAID == "" || s.Purpose == "":
		return fmt.Errorf("%w: signer needs id, CA id and purpose", ErrInvalid)
	case len(s.DER) == 0:
		return fmt.Errorf("%w: signer %s without certificate", ErrInvalid, s.ID)
	case s.NotBefore.IsZero() || s.NotAfter.IsZero():
		return fmt.Errorf("%w: signer %s without validity", ErrInvalid, s.ID)
	}
	if err := checkSerial(s.Serial); err != nil {
		return err
	}
	if s.CreatedAt.IsZero() {
		s.CreatedAt = d.now()
	}
	return nil
}

func (d *DB) insertSigner(ctx context.Context, tx *sqlx.Tx, s *ca.SignerRecord) error {
	_, err := tx.ExecContext(ctx, d.Rebind(`INSERT INTO signers
		(id, ca_id, purpose, key_ref, cert_der, serial, not_before, not_after, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		s.ID, s.CAID, s.Purpose, s.KeyRef, s.DER, s.Serial, s.NotBefore.Unix(), s.NotAfter.Unix(), s.CreatedAt.UnixNano())
	if err := mapInsertErr(err, "signer "+s.ID, ErrDuplicate); err != nil {
		return err
	}
	return d.appendAudit(ctx, tx, "signer.create", "signer/"+s.ID, audit.OutcomeSuccess, map[string]any{
		"purpose": s.Purpose, "certificate": certObject(s.CAID, s.Serial), "key_ref": s.KeyRef,
	})
}

// Signers returns the delegated signers of a purpose, newest first.
func (d *DB) Signers(ctx context.Context, purpose string) ([]ca.SignerRecord, error) {
	var rows []signerRow
	if err := d.db.SelectContext(ctx, &rows, d.Rebind(`SELECT id, ca_id, purpose, key_ref, cert_der, serial,
		not_before, not_after, created_at FROM signers WHERE purpose = ?
		ORDER BY created_at DESC, id DESC`), purpose); err != nil {
		return nil, fmt.Errorf("store: list signers: %w", err)
	}
	out := make([]ca.SignerRecord, len(rows))
	for i, r := range rows {
		out[i] = ca.SignerRecord{
			ID: r.ID, CAID: r.CAID, Purpose: r.Purpose, KeyRef: r.KeyRef, DER: r.DER, Serial: r.Serial,
			NotBefore: fromUnixSec(r.NotBefore), NotAfter: fromUnixSec(r.NotAfter), CreatedAt: fromUnixNano(r.CreatedAt),
		}
	}
	return out, nil
}
