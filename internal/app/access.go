package app

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmtrust/gmtrust/ca"
	"github.com/gmtrust/gmtrust/hsm"
	"github.com/gmtrust/gmtrust/internal/api"
	"github.com/gmtrust/gmtrust/internal/audit"
	"github.com/gmtrust/gmtrust/internal/store"
	"github.com/gmtrust/gmtrust/policies"
)

// Access control settings.
const (
	// PurposeAudit marks the delegated signer of audit checkpoints.
	PurposeAudit = "audit"
	// ProfileAuditSigner is its certificate profile.
	ProfileAuditSigner = "audit-signer"
	// DefaultTokenTTL is the lifetime of a token created without --ttl.
	DefaultTokenTTL = 720 * time.Hour
	// MaxTokenTTL caps token lifetimes: a token that never expires is a
	// password that is never changed.
	MaxTokenTTL = 5 * 365 * 24 * time.Hour
	// ClientAuthProfile is the profile of certificates accepted for mTLS.
	ClientAuthProfile = "staff-sign"
	// AdminPrincipal owns the token gmtrust init writes.
	AdminPrincipal = "admin"
)

// ErrInvalidAccess wraps refusals of malformed principal and token
// requests (unknown role, bad TTL); the API answers them with 400.
var ErrInvalidAccess = api.ErrInvalidAccessRequest

// AccessAdmin administers principals, tokens, certificate bindings and
// the audit log for the CLI and the API (api.AccessAdmin): the store's
// operations plus the checks that need the policy.
type AccessAdmin struct {
	Store  *store.DB
	Policy *policies.Authz
	// Checkpointer signs audit checkpoints; nil refuses Checkpoint.
	Checkpointer *audit.Checkpointer
	Now          func() time.Time
}

// NewAccessAdmin returns the administration of an opened instance, with
// the shipped authorization policy.
func (a *App) NewAccessAdmin() (*AccessAdmin, error) {
	pol, err := policies.DefaultAuthz()
	if err != nil {
		return nil, err
	}
	return &AccessAdmin{Store: a.Store, Policy: pol, Checkpointer: a.NewCheckpointer(), Now: a.Now}, nil
}

// Principals implements api.AccessAdmin.
func (x *AccessAdmin) Principals(ctx context.Context) ([]store.Principal, error) {
	return x.Store.Principals(ctx)
}

// Principal implements api.AccessAdmin.
func (x *AccessAdmin) Principal(ctx context.Context, name string) (*store.Principal, error) {
	return x.Store.Principal(ctx, name)
}

// CreatePrincipal checks the roles against the policy and stores p.
func (x *AccessAdmin) CreatePrincipal(ctx context.Context, p *store.Principal) error {
	if err := x.Policy.CheckRoles(p.Roles); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidAccess, err)
	}
	if p.Kind == "" {
		p.Kind = store.KindPerson
	}
	return x.Store.InsertPrincipal(ctx, p)
}

// UpdatePrincipal checks new roles against the policy and applies u.
func (x *AccessAdmin) UpdatePrincipal(ctx context.Context, name string, u store.PrincipalUpdate) (*store.Principal, error) {
	if u.Roles != nil {
		if err := x.Policy.CheckRoles(u.Roles); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidAccess, err)
		}
	}
	return x.Store.UpdatePrincipal(ctx, name, u)
}

// CertBindings implements api.AccessAdmin.
func (x *AccessAdmin) CertBindings(ctx context.Context, principal string) ([]store.CertBinding, error) {
	return x.Store.CertBindings(ctx, principal)
}

// BindCertificate implements api.AccessAdmin.
func (x *AccessAdmin) BindCertificate(ctx context.Context, b store.CertBinding) (*store.CertBinding, error) {
	return x.Store.BindCertificate(ctx, b)
}

// UnbindCertificate removes a binding of principal; ca.ErrNotFound when
// that principal has no such binding.
func (x *AccessAdmin) UnbindCertificate(ctx context.Context, principal, kind, value string) error {
	bs, err := x.Store.CertBindings(ctx, principal)
	if err != nil {
		return err
	}
	for _, b := range bs {
		if b.Kind == kind && (b.Value == value || (kind == store.BindSerial && strings.EqualFold(strings.TrimLeft(value, "0"), b.Value))) {
			return x.Store.UnbindCertificate(ctx, kind, b.Value)
		}
	}
	return fmt.Errorf("binding %s %q of %s: %w", kind, value, principal, ca.ErrNotFound)
}

// Tokens implements api.AccessAdmin.
func (x *AccessAdmin) Tokens(ctx context.Context, principal string) ([]store.Token, error) {
	return x.Store.Tokens(ctx, principal)
}

// CreateToken makes a token for an existing principal and returns the
// secret, which exists nowhere else afterwards. ttl 0 means
// DefaultTokenTTL.
func (x *AccessAdmin) CreateToken(ctx context.Context, principal string, ttl time.Duration) (string, *store.Token, error) {
	if ttl == 0 {
		ttl = DefaultTokenTTL
	}
	if ttl < time.Minute || ttl > MaxTokenTTL {
		return "", nil, fmt.Errorf("%w: token lifetime %s: want between 1m and %s", ErrInvalidAccess, ttl, MaxTokenTTL)
	}
	secret, hash, err := NewToken()
	if err != nil {
		return "", nil, err
	}
	now := x.Now()
	id, err := tokenID(principal, now)
	if err != nil {
		return "", nil, err
	}
	t := &store.Token{ID: id, Principal: principal, Hash: hash, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	if err := x.Store.CreateToken(ctx, t); err != nil {
		return "", nil, err
	}
	return secret, t, nil
}

// tokenID names a token: its principal, when, and a random suffix, so
// that an id in a log says whose token it is.
func tokenID(principal string, now time.Time) (string, error) {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return principal + "-" + now.UTC().Format("20060102T150405") + "-" + hex.EncodeToString(b), nil
}

// RevokeToken implements api.AccessAdmin.
func (x *AccessAdmin) RevokeToken(ctx context.Context, id string) error {
	return x.Store.RevokeToken(ctx, id, x.Now())
}

// ListAudit implements api.AccessAdmin.
func (x *AccessAdmin) ListAudit(ctx context.Context, f store.AuditFilter) ([]audit.Entry, int64, error) {
	return x.Store.ListAudit(ctx, f)
}

// Checkpoint signs the audit head now; nil when there is nothing new.
func (x *AccessAdmin) Checkpoint(ctx context.Context) (*audit.Checkpoint, error) {
	if x.Checkpointer == nil {
		return nil, errors.New("audit checkpoints are not configured")
	}
	return x.Checkpointer.Checkpoint(ctx)
}

// TokenAuth authenticates bearer tokens against the database: the token
// must be known, unexpired and unrevoked, and its principal must exist and
// be enabled. Roles and department are read with the token, on every
// request, so a change to a principal applies at once.
type TokenAuth struct {
	Store *store.DB
	Now   func() time.Time
}

// Authenticate implements api.Authenticator.
func (t *TokenAuth) Authenticate(ctx context.Context, token string) (*api.Principal, error) {
	if !strings.HasPrefix(token, TokenPrefix) || len(token) > 200 {
		return nil, fmt.Errorf("%w: not a gmtrust token", api.ErrUnauthenticated)
	}
	tok, p, err := t.Store.TokenPrincipal(ctx, HashToken(token))
	if errors.Is(err, ca.ErrNotFound) {
		return nil, fmt.Errorf("%w: unknown token", api.ErrUnauthenticated)
	}
	if err != nil {
		return nil, err
	}
	who := &api.Principal{Name: tok.Principal, Credential: "token/" + tok.ID}
	now := t.Now()
	switch {
	case !tok.RevokedAt.IsZero():
		return who, fmt.Errorf("%w: token %s is revoked", api.ErrUnauthenticated, tok.ID)
	case !tok.ExpiresAt.IsZero() && !now.Before(tok.ExpiresAt):
		return who, fmt.Errorf("%w: token %s expired at %s", api.ErrUnauthenticated, tok.ID, tok.ExpiresAt.UTC().Format(time.RFC3339))
	case p == nil:
		return who, fmt.Errorf("%w: token %s belongs to no principal", api.ErrUnauthenticated, tok.ID)
	case p.Disabled:
		return who, fmt.Errorf("%w: principal %s is disabled", api.ErrUnauthenticated, p.Name)
	}
	_ = t.Store.TouchToken(ctx, tok.ID, now) // best effort: last-use times are advisory
	who.Department, who.Roles = p.Department, p.Roles
	return who, nil
}

// certRecords is what CertAuth reads.
type certRecords interface {
	Certificate(ctx context.Context, caID, serial string) (*ca.Certificate, error)
	PrincipalForCertificate(ctx context.Context, serial, subject string) (*store.Principal, error)
}

// CertAuth authenticates TLS client certificates (mTLS) against this
// instance's own records, on every request and without a cache, so that
// a revocation refuses the next request:
//
//   - the certificate was issued by one of our CAs (its signature checks
//     out with our own SM2/ECDSA/RSA code, whatever crypto/tls could
//     verify) and is, byte for byte, the one we recorded;
//   - under the client-authentication profile (staff-sign);
//   - good (not revoked, not on hold) and within its validity;
//   - bound to an enabled principal by its serial or its subject.
type CertAuth struct {
	Store certRecords
	CAs   []ca.CARecord
	Now   func() time.Time
	// Profiles accepted; nil means ClientAuthProfile only.
	Profiles []string

	issuers []*caCert
}

type caCert struct {
	id   string
	cert *smx509.Certificate
}

// NewCertAuth returns the client-certificate authenticator of an instance.
func NewCertAuth(db certRecords, cas []ca.CARecord, now func() time.Time) (*CertAuth, error) {
	c := &CertAuth{Store: db, CAs: cas, Now: now}
	for _, r := range cas {
		cert, err := smx509.ParseCertificate(r.DER)
		if err != nil {
			return nil, fmt.Errorf("CA %s certificate: %w", r.ID, err)
		}
		c.issuers = append(c.issuers, &caCert{id: r.ID, cert: cert})
	}
	return c, nil
}

// AuthenticateCert implements api.CertAuthenticator.
func (c *CertAuth) AuthenticateCert(ctx context.Context, der []byte) (*api.Principal, error) {
	cert, err := smx509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: unparsable certificate", api.ErrUnauthenticated)
	}
	serial := ca.SerialFromBig(cert.SerialNumber)
	var issuer *caCert
	for _, iss := range c.issuers {
		if bytes.Equal(iss.cert.RawSubject, cert.RawIssuer) && cert.CheckSignatureFrom(iss.cert) == nil {
			issuer = iss
			break
		}
	}
	if issuer == nil {
		return nil, fmt.Errorf("%w: certificate %s was not issued by this CA", api.ErrUnauthenticated, serial)
	}
	rec, err := c.Store.Certificate(ctx, issuer.id, serial)
	if errors.Is(err, ca.ErrNotFound) {
		return nil, fmt.Errorf("%w: certificate %s is not in our records", api.ErrUnauthenticated, serial)
	}
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(rec.DER, der) {
		return nil, fmt.Errorf("%w: certificate %s differs from the one we issued", api.ErrUnauthenticated, serial)
	}
	p, err := c.Store.PrincipalForCertificate(ctx, rec.Serial, rec.Subject)
	if errors.Is(err, ca.ErrNotFound) {
		return nil, fmt.Errorf("%w: certificate %s (%s) is bound to no principal", api.ErrUnauthenticated, serial, rec.Subject)
	}
	if err != nil {
		return nil, err
	}
	who := &api.Principal{Name: p.Name, Credential: "certificate/" + serial}
	profiles := c.Profiles
	if profiles == nil {
		profiles = []string{ClientAuthProfile}
	}
	now := c.Now()
	switch {
	case rec.Status != ca.StatusGood:
		return who, fmt.Errorf("%w: certificate %s is %s", api.ErrUnauthenticated, serial, rec.Status)
	case now.Before(rec.NotBefore) || now.After(rec.NotAfter):
		return who, fmt.Errorf("%w: certificate %s is not valid now (%s to %s)", api.ErrUnauthenticated, serial,
			rec.NotBefore.UTC().Format(time.RFC3339), rec.NotAfter.UTC().Format(time.RFC3339))
	case !slices.Contains(profiles, rec.Profile):
		return who, fmt.Errorf("%w: certificate %s has profile %s, not one for client authentication", api.ErrUnauthenticated, serial, rec.Profile)
	case p.Disabled:
		return who, fmt.Errorf("%w: principal %s is disabled", api.ErrUnauthenticated, p.Name)
	}
	who.Department, who.Roles = p.Department, p.Roles
	return who, nil
}

// NewCheckpointer returns the audit checkpointer of an instance: it signs
// with the audit key (AuditKey).
func (a *App) NewCheckpointer() *audit.Checkpointer {
	return audit.NewCheckpointer(a.Store, a.AuditKey, a.Now, a.Logger)
}

// auditRenewBefore is how long before its certificate expires the audit
// key is replaced.
const auditRenewBefore = 30 * 24 * time.Hour

// AuditKey returns the audit signer and its certificate, making them
// (a key in the key manager, a certificate from the issuing CA under the
// audit-signer profile, a signer record of purpose "audit") when there
// is none that is good for another 30 days. Implements audit.KeySource.
func (a *App) AuditKey(ctx context.Context) (crypto.Signer, []byte, error) {
	signers, err := a.Store.Signers(ctx, PurposeAudit)
	if err != nil {
		return nil, nil, err
	}
	now := a.Now()
	for _, s := range signers {
		if now.Add(auditRenewBefore).After(s.NotAfter) {
			continue
		}
		c, err := a.Store.Certificate(ctx, s.CAID, s.Serial)
		if err != nil || c.Status != ca.StatusGood {
			continue
		}
		signer, err := a.Keys.Signer(ctx, s.KeyRef)
		if err != nil {
			return nil, nil, fmt.Errorf("audit key %s: %w", s.KeyRef, err)
		}
		return signer, s.DER, nil
	}
	return a.newAuditKey(ctx)
}

func (a *App) newAuditKey(ctx context.Context) (crypto.Signer, []byte, error) {
	caID := a.Authority.DefaultCA()
	rec, ok := a.Authority.CA(caID)
	if !ok {
		return nil, nil, fmt.Errorf("no issuing CA %q", caID)
	}
	sfx := make([]byte, 4)
	if _, err := io.ReadFull(rand.Reader, sfx); err != nil {
		return nil, nil, err
	}
	label := "audit-signer-" + hex.EncodeToString(sfx)
	ref, pub, err := a.Keys.CreateKey(ctx, label, hsm.Algorithm(rec.Algorithm))
	if err != nil {
		return nil, nil, fmt.Errorf("audit key: %w", err)
	}
	org := rec.Name
	if iss, ok := a.Authority.Issuer(caID); ok && len(iss.Subject.Organization) > 0 {
		org = iss.Subject.Organization[0]
	}
	issued, err := a.Authority.IssueForKey(ctx, ca.KeyIssueRequest{
		PublicKey: pub, Subject: pkix.Name{CommonName: org + " Audit Log Signer", Organization: []string{org}, Country: []string{"CN"}},
		Profile: ProfileAuditSigner, RequestedBy: "system:" + PurposeAudit, CAID: caID,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("audit certificate: %w", err)
	}
	c := issued.Certificate
	if err := a.Store.InsertSigner(ctx, &ca.SignerRecord{
		ID: label, CAID: c.CAID, Purpose: PurposeAudit, KeyRef: ref, DER: c.DER, Serial: c.Serial,
		NotBefore: c.NotBefore, NotAfter: c.NotAfter,
	}); err != nil {
		return nil, nil, fmt.Errorf("recording the audit signer: %w", err)
	}
	signer, err := a.Keys.Signer(ctx, ref)
	if err != nil {
		return nil, nil, err
	}
	a.Logger.Info("audit signer created", "serial", c.Serial, "not_after", c.NotAfter)
	return signer, c.DER, nil
}

// auditRecords is what the checkpoint verifier reads.
type auditRecords interface {
	CAs(ctx context.Context) ([]ca.CARecord, error)
	Signers(ctx context.Context, purpose string) ([]ca.SignerRecord, error)
	Certificate(ctx context.Context, caID, serial string) (*ca.Certificate, error)
}

// AuditVerifier checks audit checkpoints against the instance's CAs, plus
// extra trust anchors (DER) given on the command line: the signer's
// certificate must chain to a root, be registered as an audit signer, and
// have been issued under the audit-signer profile.
func AuditVerifier(ctx context.Context, db auditRecords, extraRoots [][]byte) (*audit.CertVerifier, error) {
	cas, err := db.CAs(ctx)
	if err != nil {
		return nil, err
	}
	v := &audit.CertVerifier{}
	for _, r := range cas {
		c, err := smx509.ParseCertificate(r.DER)
		if err != nil {
			return nil, fmt.Errorf("CA %s: %w", r.ID, err)
		}
		if r.Role == ca.RoleRoot {
			v.Roots = append(v.Roots, c)
		} else {
			v.Intermediates = append(v.Intermediates, c)
		}
	}
	for i, der := range extraRoots {
		c, err := smx509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("trust anchor %d: %w", i+1, err)
		}
		v.Roots = append(v.Roots, c)
	}
	signers, err := db.Signers(ctx, PurposeAudit)
	if err != nil {
		return nil, err
	}
	v.Authorized = func(cert *smx509.Certificate) error {
		serial := ca.SerialFromBig(cert.SerialNumber)
		for _, s := range signers {
			if s.Serial != serial || !bytes.Equal(s.DER, cert.Raw) {
				continue
			}
			c, err := db.Certificate(ctx, s.CAID, s.Serial)
			if err != nil {
				return fmt.Errorf("audit signer %s: %w", serial, err)
			}
			if c.Profile != ProfileAuditSigner {
				return fmt.Errorf("certificate %s has profile %s, not %s", serial, c.Profile, ProfileAuditSigner)
			}
			return nil
		}
		return fmt.Errorf("certificate %s (%s) is not a registered audit signer", serial, cert.Subject.String())
	}
	return v, nil
}

// DefaultCheckpointInterval is how often `gmtrust serve` signs the audit
// head: the longest stretch of entries that someone able to rewrite the
// database, but without the audit key, could rewrite unnoticed (the hash
// chain alone catches any rewrite that does not recompute the hashes).
const DefaultCheckpointInterval = 10 * time.Minute

// CheckpointIntervalFromEnv reads GMTRUST_AUDIT_CHECKPOINT_INTERVAL (a
// duration such as 10m).
func CheckpointIntervalFromEnv(getenv func(string) string) (time.Duration, error) {
	v := getenv("GMTRUST_AUDIT_CHECKPOINT_INTERVAL")
	if v == "" {
		return DefaultCheckpointInterval, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < time.Second {
		return 0, fmt.Errorf("GMTRUST_AUDIT_CHECKPOINT_INTERVAL: want a duration of at least 1s such as 10m, got %q", v)
	}
	return d, nil
}

// AccessService is the access control of a serving instance: the policy,
// the authenticators, the administration endpoints and the checkpointer.
type AccessService struct {
	Admin    *AccessAdmin
	Tokens   *TokenAuth
	Certs    *CertAuth
	Interval time.Duration
}

// NewAccessService wires access control for `gmtrust serve`.
func (a *App) NewAccessService(getenv func(string) string) (*AccessService, error) {
	every, err := CheckpointIntervalFromEnv(getenv)
	if err != nil {
		return nil, err
	}
	admin, err := a.NewAccessAdmin()
	if err != nil {
		return nil, err
	}
	certs, err := NewCertAuth(a.Store, a.Authority.CAs(), a.Now)
	if err != nil {
		return nil, err
	}
	return &AccessService{Admin: admin, Tokens: &TokenAuth{Store: a.Store, Now: a.Now}, Certs: certs, Interval: every}, nil
}

// Deps fills the access-control fields of the API's dependencies.
func (s *AccessService) Deps(d api.Deps, st *store.DB) api.Deps {
	d.Auth, d.Authz, d.Audit, d.CertAuth = s.Tokens, s.Admin.Policy, st, s.Certs
	return d
}

// Run signs audit checkpoints until ctx ends; with several processes on
// one PostgreSQL, one of them at a time does it.
func (s *AccessService) Run(ctx context.Context, lock audit.Locker) {
	s.Admin.Checkpointer.Run(ctx, s.Interval, lock)
}
