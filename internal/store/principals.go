package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/gmtrust/gmtrust/ca"
	"github.com/gmtrust/gmtrust/internal/audit"
	"github.com/gmtrust/gmtrust/policies"
)

// Principal kinds.
const (
	KindPerson  = "person"
	KindService = "service"
)

// Client certificate binding kinds.
const (
	BindSerial  = "serial"
	BindSubject = "subject"
)

// MaxPrincipalName bounds a principal's name.
const MaxPrincipalName = policies.MaxPrincipalName

// Principal is a person or a service that authenticates to the API.
// Which roles exist is decided by policies/authz.yaml; the store only
// keeps the names.
type Principal struct {
	Name       string
	Kind       string // KindPerson or KindService
	Department string
	Roles      []string // sorted
	Disabled   bool
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// CheckPrincipalName enforces the form of principal names
// (policies.CheckPrincipalName); "system", the actor of background work
// in the audit log, is reserved besides.
func CheckPrincipalName(name string) error {
	if err := policies.CheckPrincipalName(name); err != nil {
		return fmt.Errorf("%w: principal name: %v", ErrInvalid, err)
	}
	if name == audit.SystemPrincipal {
		return fmt.Errorf("%w: principal name %q is reserved", ErrInvalid, name)
	}
	return nil
}

func checkPrincipal(p *Principal) error {
	if p == nil {
		return fmt.Errorf("%w: nil principal", ErrInvalid)
	}
	if err := CheckPrincipalName(p.Name); err != nil {
		return err
	}
	if p.Kind != KindPerson && p.Kind != KindService {
		return fmt.Errorf("%w: principal kind %q: want %s or %s", ErrInvalid, p.Kind, KindPerson, KindService)
	}
	if len(p.Department) > MaxPrincipalName || strings.ContainsRune(p.Department, 0) {
		return fmt.Errorf("%w: department %q", ErrInvalid, p.Department)
	}
	for _, r := range p.Roles {
		if r == "" || len(r) > MaxPrincipalName {
			return fmt.Errorf("%w: role %q", ErrInvalid, r)
		}
	}
	return nil
}

func principalObject(name string) string { return "principal/" + name }

// InsertPrincipal creates a principal with its roles; ErrDuplicate when
// the name is taken. It is audited as principal.create.
func (d *DB) InsertPrincipal(ctx context.Context, p *Principal) error {
	if err := checkPrincipal(p); err != nil {
		return err
	}
	return d.writeAuth(ctx, func(ctx context.Context, tx *sqlx.Tx) error {
		return d.insertPrincipal(ctx, tx, p)
	})
}

// InsertPrincipalTx is InsertPrincipal inside a transaction of InTx or
// Write (gmtrust init creates the first administrator with its token).
func (d *DB) InsertPrincipalTx(ctx context.Context, tx *sqlx.Tx, p *Principal) error {
	if err := checkPrincipal(p); err != nil {
		return err
	}
	// The cache is forgotten before the commit: a lookup in between may
	// trust the old epoch for up to Options.AuthRecheck, which only init
	// and tests, with no server running on this DB, do.
	defer d.auth.invalidate()
	return d.insertPrincipal(ctx, tx, p)
}

func (d *DB) insertPrincipal(ctx context.Context, tx *sqlx.Tx, p *Principal) error {
	now := d.now()
	if p.CreatedAt.IsZero() {
		p.CreatedAt = now
	}
	p.UpdatedAt = p.CreatedAt
	p.Roles = normRoles(p.Roles)
	if _, err := d.lockAuditHead(ctx, tx); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, d.Rebind(`INSERT INTO principals (name, kind, department, disabled, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?)`), p.Name, p.Kind, p.Department, boolInt(p.Disabled), p.CreatedAt.UnixNano(), p.UpdatedAt.UnixNano())
	if err := mapInsertErr(err, "principal "+p.Name, ErrDuplicate); err != nil {
		return err
	}
	if err := d.insertRoles(ctx, tx, p.Name, p.Roles); err != nil {
		return err
	}
	if err := d.bumpAuthEpoch(ctx, tx); err != nil {
		return err
	}
	return d.appendAudit(ctx, tx, "principal.create", principalObject(p.Name), audit.OutcomeSuccess, map[string]any{
		"kind": p.Kind, "department": p.Department, "roles": p.Roles, "disabled": p.Disabled,
	})
}

func (d *DB) insertRoles(ctx context.Context, tx *sqlx.Tx, name string, roles []string) error {
	for _, r := range roles {
		if _, err := tx.ExecContext(ctx, d.Rebind(`INSERT INTO principal_roles (principal, role) VALUES (?, ?)`), name, r); err != nil {
			return fmt.Errorf("store: role %s of %s: %w", r, name, err)
		}
	}
	return nil
}

func normRoles(roles []string) []string {
	out := slices.Clone(roles)
	slices.Sort(out)
	out = slices.Compact(out)
	if out == nil {
		out = []string{}
	}
	return out
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

type principalRow struct {
	Name       string `db:"name"`
	Kind       string `db:"kind"`
	Department string `db:"department"`
	Disabled   int    `db:"disabled"`
	CreatedAt  int64  `db:"created_at"`
	UpdatedAt  int64  `db:"updated_at"`
}

func (r *principalRow) principal(roles []string) *Principal {
	if roles == nil {
		roles = []string{}
	}
	return &Principal{Name: r.Name, Kind: r.Kind, Department: r.Department, Roles: roles, Disabled: r.Disabled != 0,
		CreatedAt: fromUnixNano(r.CreatedAt), UpdatedAt: fromUnixNano(r.UpdatedAt)}
}

// Principal returns one principal or ca.ErrNotFound.
func (d *DB) Principal(ctx context.Context, name string) (*Principal, error) {
	var r principalRow
	if err := d.db.GetContext(ctx, &r, d.Rebind(`SELECT name, kind, department, disabled, created_at, updated_at
		FROM principals WHERE name = ?`), name); err != nil {
		return nil, notFound(err, "principal "+name)
	}
	var roles []string
	if err := d.db.SelectContext(ctx, &roles, d.Rebind(`SELECT role FROM principal_roles WHERE principal = ? ORDER BY role`), name); err != nil {
		return nil, fmt.Errorf("store: roles of %s: %w", name, err)
	}
	return r.principal(roles), nil
}

// Principals returns every principal, by name. Deployments have tens to
// hundreds of them, so there is no paging.
func (d *DB) Principals(ctx context.Context) ([]Principal, error) {
	var rows []principalRow
	if err := d.db.SelectContext(ctx, &rows, `SELECT name, kind, department, disabled, created_at, updated_at
		FROM principals ORDER BY name`); err != nil {
		return nil, fmt.Errorf("store: list principals: %w", err)
	}
	var roles []struct {
		Principal string `db:"principal"`
		Role      string `db:"role"`
	}
	if err := d.db.SelectContext(ctx, &roles, `SELECT principal, role FROM principal_roles ORDER BY principal, role`); err != nil {
		return nil, fmt.Errorf("store: list roles: %w", err)
	}
	byName := map[string][]string{}
	for _, r := range roles {
		byName[r.Principal] = append(byName[r.Principal], r.Role)
	}
	out := make([]Principal, len(rows))
	for i := range rows {
		out[i] = *rows[i].principal(byName[rows[i].Name])
	}
	return out, nil
}

// PrincipalUpdate changes some attributes of a principal; nil fields are
// left as they are.
type PrincipalUpdate struct {
	Department *string
	Roles      []string // nil: unchanged; empty: no roles
	Disabled   *bool
}

// UpdatePrincipal applies u and returns the principal as stored
// afterwards; ca.ErrNotFound when there is none. It is audited as
// principal.update (principal.disable and principal.enable when only the
// flag changes), with the old and new values.
func (d *DB) UpdatePrincipal(ctx context.Context, name string, u PrincipalUpdate) (*Principal, error) {
	var out *Principal
	err := d.writeAuth(ctx, func(ctx context.Context, tx *sqlx.Tx) error {
		out = nil
		if _, err := d.lockAuditHead(ctx, tx); err != nil {
			return err
		}
		var r principalRow
		if err := tx.GetContext(ctx, &r, d.Rebind(`SELECT name, kind, department, disabled, created_at, updated_at
			FROM principals WHERE name = ?`), name); err != nil {
			return notFound(err, "principal "+name)
		}
		var roles []string
		if err := tx.SelectContext(ctx, &roles, d.Rebind(`SELECT role FROM principal_roles WHERE principal = ? ORDER BY role`), name); err != nil {
			return fmt.Errorf("store: roles of %s: %w", name, err)
		}
		old := r.principal(roles)
		p := *old
		if u.Department != nil {
			p.Department = *u.Department
		}
		if u.Roles != nil {
			p.Roles = normRoles(u.Roles)
		}
		if u.Disabled != nil {
			p.Disabled = *u.Disabled
		}
		if err := checkPrincipal(&p); err != nil {
			return err
		}
		p.UpdatedAt = d.now()
		if _, err := tx.ExecContext(ctx, d.Rebind(`UPDATE principals SET department = ?, disabled = ?, updated_at = ? WHERE name = ?`),
			p.Department, boolInt(p.Disabled), p.UpdatedAt.UnixNano(), name); err != nil {
			return fmt.Errorf("store: update principal %s: %w", name, err)
		}
		if u.Roles != nil {
			if _, err := tx.ExecContext(ctx, d.Rebind(`DELETE FROM principal_roles WHERE principal = ?`), name); err != nil {
				return fmt.Errorf("store: roles of %s: %w", name, err)
			}
			if err := d.insertRoles(ctx, tx, name, p.Roles); err != nil {
				return err
			}
		}
		action := "principal.update"
		if u.Department == nil && u.Roles == nil && u.Disabled != nil {
			action = "principal.enable"
			if *u.Disabled {
				action = "principal.disable"
			}
		}
		det := map[string]any{}
		if old.Department != p.Department {
			det["department"] = map[string]string{"old": old.Department, "new": p.Department}
		}
		if !slices.Equal(old.Roles, p.Roles) {
			det["roles"] = map[string][]string{"old": old.Roles, "new": p.Roles}
		}
		if old.Disabled != p.Disabled {
			det["disabled"] = map[string]bool{"old": old.Disabled, "new": p.Disabled}
		}
		if err := d.bumpAuthEpoch(ctx, tx); err != nil {
			return err
		}
		if err := d.appendAudit(ctx, tx, action, principalObject(name), audit.OutcomeSuccess, det); err != nil {
			return err
		}
		out = &p
		return nil
	})
	return out, err
}

// CertBinding maps a client certificate to a principal.
type CertBinding struct {
	Kind      string // BindSerial or BindSubject
	Value     string
	Principal string
	CreatedAt time.Time
}

func checkBinding(kind, value string) (string, error) {
	switch kind {
	case BindSerial:
		s, err := ca.NormalizeSerial(value)
		if err != nil {
			return "", fmt.Errorf("%w: serial binding: %v", ErrInvalid, err)
		}
		return s, nil
	case BindSubject:
		if value == "" || len(value) > 1024 || strings.ContainsRune(value, 0) {
			return "", fmt.Errorf("%w: subject binding must be a distinguished name", ErrInvalid)
		}
		return value, nil
	}
	return "", fmt.Errorf("%w: binding kind %q: want %s or %s", ErrInvalid, kind, BindSerial, BindSubject)
}

// BindCertificate maps client certificates with a serial or subject to a
// principal; ErrDuplicate when that serial or subject is already bound,
// ca.ErrNotFound when the principal does not exist. Audited as
// principal.bind.
func (d *DB) BindCertificate(ctx context.Context, b CertBinding) (*CertBinding, error) {
	v, err := checkBinding(b.Kind, b.Value)
	if err != nil {
		return nil, err
	}
	b.Value = v
	if b.CreatedAt.IsZero() {
		b.CreatedAt = d.now()
	}
	err = d.Write(ctx, func(ctx context.Context, tx *sqlx.Tx) error {
		if _, err := d.lockAuditHead(ctx, tx); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, d.Rebind(`INSERT INTO client_cert_bindings (kind, value, principal, created_at) VALUES (?, ?, ?, ?)`),
			b.Kind, b.Value, b.Principal, b.CreatedAt.UnixNano())
		if err := mapInsertErr(err, "certificate binding", ErrDuplicate); err != nil {
			return err
		}
		return d.appendAudit(ctx, tx, "principal.bind", principalObject(b.Principal), audit.OutcomeSuccess,
			map[string]any{"kind": b.Kind, "value": b.Value})
	})
	if err != nil {
		return nil, err
	}
	return &b, nil
}

// UnbindCertificate removes a binding; ca.ErrNotFound when there is none.
// Audited as principal.unbind.
func (d *DB) UnbindCertificate(ctx context.Context, kind, value string) error {
	v, err := checkBinding(kind, value)
	if err != nil {
		return err
	}
	return d.Write(ctx, func(ctx context.Context, tx *sqlx.Tx) error {
		if _, err := d.lockAuditHead(ctx, tx); err != nil {
			return err
		}
		var principal string
		if err := tx.GetContext(ctx, &principal, d.Rebind(`SELECT principal FROM client_cert_bindings WHERE kind = ? AND value = ?`), kind, v); err != nil {
			return notFound(err, "certificate binding "+kind+" "+v)
		}
		if _, err := tx.ExecContext(ctx, d.Rebind(`DELETE FROM client_cert_bindings WHERE kind = ? AND value = ?`), kind, v); err != nil {
			return fmt.Errorf("store: unbind: %w", err)
		}
		return d.appendAudit(ctx, tx, "principal.unbind", principalObject(principal), audit.OutcomeSuccess,
			map[string]any{"kind": kind, "value": v})
	})
}

// CertBindings returns the bindings of a principal ("" for all).
func (d *DB) CertBindings(ctx context.Context, principal string) ([]CertBinding, error) {
	q := `SELECT kind, value, principal, created_at FROM client_cert_bindings`
	var args []any
	if principal != "" {
		q += ` WHERE principal = ?`
		args = append(args, principal)
	}
	q += ` ORDER BY principal, kind, value`
	var rows []struct {
		Kind      string `db:"kind"`
		Value     string `db:"value"`
		Principal string `db:"principal"`
		CreatedAt int64  `db:"created_at"`
	}
	if err := d.db.SelectContext(ctx, &rows, d.Rebind(q), args...); err != nil {
		return nil, fmt.Errorf("store: certificate bindings: %w", err)
	}
	out := make([]CertBinding, len(rows))
	for i, r := range rows {
		out[i] = CertBinding{Kind: r.Kind, Value: r.Value, Principal: r.Principal, CreatedAt: fromUnixNano(r.CreatedAt)}
	}
	return out, nil
}

// PrincipalForCertificate returns the principal a client certificate with
// this serial and subject is bound to (a serial binding wins over a
// subject one), or ca.ErrNotFound.
func (d *DB) PrincipalForCertificate(ctx context.Context, serial, subject string) (*Principal, error) {
	var names []string
	if err := d.db.SelectContext(ctx, &names, d.Rebind(`SELECT principal FROM client_cert_bindings
		WHERE (kind = 'serial' AND value = ?) OR (kind = 'subject' AND value = ?)
		ORDER BY CASE kind WHEN 'serial' THEN 0 ELSE 1 END LIMIT 1`), serial, subject); err != nil {
		return nil, fmt.Errorf("store: certificate binding: %w", err)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("store: no principal bound to certificate %s: %w", serial, ca.ErrNotFound)
	}
	return d.Principal(ctx, names[0])
}

// CreateToken is InsertToken for an existing principal: ca.ErrNotFound
// when the principal does not exist.
func (d *DB) CreateToken(ctx context.Context, t *Token) error {
	if err := d.prepareToken(t); err != nil {
		return err
	}
	return d.writeAuth(ctx, func(ctx context.Context, tx *sqlx.Tx) error {
		if _, err := d.lockAuditHead(ctx, tx); err != nil {
			return err
		}
		var n int
		if err := tx.GetContext(ctx, &n, d.Rebind(`SELECT COUNT(*) FROM principals WHERE name = ?`), t.Principal); err != nil {
			return fmt.Errorf("store: principal %s: %w", t.Principal, err)
		}
		if n == 0 {
			return fmt.Errorf("store: principal %s: %w", t.Principal, ca.ErrNotFound)
		}
		return d.insertToken(ctx, tx, t) // audits token.create
	})
}

// Tokens returns the tokens of a principal ("" for all), newest first,
// revoked and expired ones included.
func (d *DB) Tokens(ctx context.Context, principal string) ([]Token, error) {
	q := `SELECT id, principal, hash, created_at, expires_at, last_used_at, revoked_at FROM api_tokens`
	var args []any
	if principal != "" {
		q += ` WHERE principal = ?`
		args = append(args, principal)
	}
	q += ` ORDER BY created_at DESC, id`
	var rows []tokenRow
	if err := d.db.SelectContext(ctx, &rows, d.Rebind(q), args...); err != nil {
		return nil, fmt.Errorf("store: list tokens: %w", err)
	}
	out := make([]Token, len(rows))
	for i, r := range rows {
		out[i] = Token{ID: r.ID, Principal: r.Principal, Hash: r.Hash, CreatedAt: fromUnixNano(r.CreatedAt),
			ExpiresAt: fromUnixNano(r.ExpiresAt), LastUsedAt: fromUnixNano(r.LastUsedAt), RevokedAt: fromUnixNano(r.RevokedAt)}
		d.withPendingUse(&out[i])
	}
	return out, nil
}

// TokenByID returns one token or ca.ErrNotFound.
func (d *DB) TokenByID(ctx context.Context, id string) (*Token, error) {
	var r tokenRow
	if err := d.db.GetContext(ctx, &r, d.Rebind(`SELECT id, principal, hash, created_at, expires_at, last_used_at, revoked_at
		FROM api_tokens WHERE id = ?`), id); err != nil {
		return nil, notFound(err, "token "+id)
	}
	return &Token{ID: r.ID, Principal: r.Principal, Hash: r.Hash, CreatedAt: fromUnixNano(r.CreatedAt),
		ExpiresAt: fromUnixNano(r.ExpiresAt), LastUsedAt: fromUnixNano(r.LastUsedAt), RevokedAt: fromUnixNano(r.RevokedAt)}, nil
}

// TokenPrincipal returns the token with the given SHA-256 and, in the
// same query, its principal with roles (nil when no principal of that
// name exists). Revoked and expired tokens are returned too (see
// Token.Valid); ca.ErrNotFound when no token has that hash. It runs for
// every authenticated request, so found results are kept in memory while
// the authentication epoch stands (see authcache.go): a change through
// this DB applies to the next call, one by another process within
// Options.AuthRecheck.
func (d *DB) TokenPrincipal(ctx context.Context, hash []byte) (*Token, *Principal, error) {
	if d.auth == nil || len(hash) != sha256.Size {
		return d.tokenPrincipal(ctx, hash)
	}
	key := [sha256.Size]byte(hash)
	epoch, trusted, err := d.auth.current(ctx, d.db)
	if err != nil {
		return nil, nil, err
	}
	if trusted {
		if t, p, ok := d.auth.get(key, epoch); ok {
			d.withPendingUse(t)
			return t, p, nil
		}
	}
	t, p, err := d.tokenPrincipal(ctx, hash)
	if err != nil {
		return nil, nil, err // unknown tokens are not remembered
	}
	if trusted {
		d.auth.put(key, epoch, t, p)
	}
	return t, p, nil
}

// withPendingUse sets t.LastUsedAt to a use recorded by TouchToken and not
// yet written, when that is later.
func (d *DB) withPendingUse(t *Token) {
	if at, ok := d.touch.pendingAt(t.ID); ok && at.After(t.LastUsedAt) {
		t.LastUsedAt = at
	}
}

// tokenPrincipal is TokenPrincipal without the cache.
func (d *DB) tokenPrincipal(ctx context.Context, hash []byte) (*Token, *Principal, error) {
	rows, err := d.db.QueryxContext(ctx, d.Rebind(`SELECT t.id, t.principal, t.created_at, t.expires_at, t.last_used_at, t.revoked_at,
		p.kind, p.department, p.disabled, p.created_at, p.updated_at, r.role
		FROM api_tokens t
		LEFT JOIN principals p ON p.name = t.principal
		LEFT JOIN principal_roles r ON r.principal = p.name
		WHERE t.hash = ? ORDER BY r.role`), hash)
	if err != nil {
		return nil, nil, fmt.Errorf("store: token lookup: %w", err)
	}
	defer rows.Close()
	var (
		t *Token
		p *Principal
	)
	for rows.Next() {
		var (
			tr               tokenRow
			kind, dept, role sql.NullString
			disabled, pc, pu sql.NullInt64
		)
		if err := rows.Scan(&tr.ID, &tr.Principal, &tr.CreatedAt, &tr.ExpiresAt, &tr.LastUsedAt, &tr.RevokedAt,
			&kind, &dept, &disabled, &pc, &pu, &role); err != nil {
			return nil, nil, fmt.Errorf("store: token lookup: %w", err)
		}
		if t == nil {
			t = &Token{ID: tr.ID, Principal: tr.Principal, Hash: hash, CreatedAt: fromUnixNano(tr.CreatedAt),
				ExpiresAt: fromUnixNano(tr.ExpiresAt), LastUsedAt: fromUnixNano(tr.LastUsedAt), RevokedAt: fromUnixNano(tr.RevokedAt)}
			if kind.Valid {
				p = &Principal{Name: tr.Principal, Kind: kind.String, Department: dept.String, Roles: []string{},
					Disabled: disabled.Int64 != 0, CreatedAt: fromUnixNano(pc.Int64), UpdatedAt: fromUnixNano(pu.Int64)}
			}
		}
		if p != nil && role.Valid {
			p.Roles = append(p.Roles, role.String)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("store: token lookup: %w", err)
	}
	if t == nil {
		return nil, nil, fmt.Errorf("store: token: %w", ca.ErrNotFound)
	}
	d.withPendingUse(t)
	return t, p, nil
}
