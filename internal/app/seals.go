package app

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmtrust/gmtrust/ca"
	"github.com/gmtrust/gmtrust/internal/api"
	"github.com/gmtrust/gmtrust/internal/config"
	"github.com/gmtrust/gmtrust/internal/store"
	"github.com/gmtrust/gmtrust/seal"
)

// SealOptions configure an instance's seal service. config.yaml has no
// seals section yet; SealOptionsFromEnv reads GMTRUST_SEAL_* variables.
type SealOptions struct {
	Service seal.Config
	// StatusTTL bounds how long verification reuses a certificate's
	// revocation status and a seal's registry state (default 5 s).
	// Changes made in this process take effect at once.
	StatusTTL time.Duration
}

// SealOptionsFromEnv reads the seal settings from the environment:
//
//	GMTRUST_SEAL_ESID_PREFIX  first characters of every esID, typically the
//	                          administrative division code (000000)
//	GMTRUST_SEAL_VID          SES_Header.Vid of new seals (gmtrust)
//	GMTRUST_SEAL_STATUS_TTL   verification status cache (5s)
func SealOptionsFromEnv(getenv func(string) string) (SealOptions, error) {
	o := SealOptions{}
	o.Service.ESIDPrefix = getenv("GMTRUST_SEAL_ESID_PREFIX")
	o.Service.Vid = getenv("GMTRUST_SEAL_VID")
	if v := getenv("GMTRUST_SEAL_STATUS_TTL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return o, fmt.Errorf("GMTRUST_SEAL_STATUS_TTL: want a positive duration such as 5s, got %q", v)
		}
		o.StatusTTL = d
	}
	return o, nil
}

// Seals is a wired seal service: the service, the verifier it shares with
// the public verification endpoint, and the revocation checker over this
// instance's certificates.
type Seals struct {
	Service  *seal.Service
	Verifier *seal.Verifier
	Status   *CertStatus
	Store    *store.Seals
}

// NewSeals wires the seal service of an opened instance: the store as
// seal registry, the CA for holder certificates and seal makers, the key
// manager, trust in the instance's CAs only, and revocation from its own
// certificates table. The revocation checker is registered as the
// Authority's listener so a revocation here is seen at once. Close it
// before the App.
func (a *App) NewSeals(ctx context.Context, o SealOptions) (*Seals, error) {
	trust, err := NewSealTrust(a.Authority.CAs(), nil)
	if err != nil {
		return nil, err
	}
	status, err := NewCertStatus(a.Store, a.Authority.CAs(), a.Now, o.StatusTTL)
	if err != nil {
		return nil, err
	}
	reg, err := store.NewSeals(ctx, a.Store)
	if err != nil {
		return nil, err
	}
	v := seal.NewVerifier(seal.VerifierOptions{
		Registry: reg, Trust: trust, Revocation: status, Now: a.Now, StatusTTL: o.StatusTTL,
	})
	cfg := o.Service
	if iss, ok := a.Authority.Issuer(a.Authority.DefaultCA()); ok && cfg.Organization == "" && len(iss.Subject.Organization) > 0 {
		cfg.Organization = iss.Subject.Organization[0]
	}
	svc, err := seal.NewService(cfg, seal.Deps{
		Store: reg, Authority: a.Authority, Signers: a.Store, Keys: a.Keys, Verifier: v, Now: a.Now,
	})
	if err != nil {
		reg.Close()
		return nil, err
	}
	a.Authority.AddListener(status)
	return &Seals{Service: svc, Verifier: v, Status: status, Store: reg}, nil
}

// Close releases the registry's prepared statements; close it before the
// App.
func (s *Seals) Close() error { return s.Store.Close() }

// Mount serves the seal endpoints on the API server.
func (s *Seals) Mount(srv *api.Server) { srv.MountSeals(s.Service) }

// NewSealTrust is the trust checker for seal verification: the instance's
// CAs (roots as anchors, the others as intermediates) plus extra DER
// certificates (`gmtrust seal verify --trust`).
func NewSealTrust(cas []ca.CARecord, extra [][]byte) (*seal.PoolTrust, error) {
	certs := make([][]byte, 0, len(cas)+len(extra))
	for _, c := range cas {
		certs = append(certs, c.DER)
	}
	certs = append(certs, extra...)
	t, err := seal.NewPoolTrust(certs)
	if err != nil {
		return nil, fmt.Errorf("seal trust anchors: %w", err)
	}
	return t, nil
}

// CertLookup reads one issued certificate (store.DB does).
type CertLookup interface {
	Certificate(ctx context.Context, caID, serial string) (*ca.Certificate, error)
}

// CertStatus answers seal verification's revocation questions from this
// instance's own certificate status: a certificate one of our CAs issued
// is good, or revoked (or on hold) since revoked_at, as the certificates
// table says; for any other certificate there is no information (the
// verdict becomes indeterminate, never valid). Safe for concurrent use.
//
// Answers are cached: which CA issued a certificate (it never changes)
// and its status for the TTL; CertificateStatusChanged (the Authority's
// listener hook) drops a status at once.
type CertStatus struct {
	db  CertLookup
	cas []issuerCert
	now func() time.Time
	ttl time.Duration

	mu     sync.Mutex
	owners map[[32]byte]certOwner
	status map[certOwner]statusEntry
}

type issuerCert struct {
	id   string
	cert *smx509.Certificate
}

// certOwner identifies one of our certificates; caID "" means not ours.
type certOwner struct {
	caID, serial string
	why          string // when not ours
}

type statusEntry struct {
	res     seal.RevocationResult
	fetched time.Time
}

// maxStatusEntries bounds each cache; beyond it a cache starts afresh.
const maxStatusEntries = 100000

// NewCertStatus returns a checker over db for certificates issued by cas.
// ttl <= 0 means 5 s.
func NewCertStatus(db CertLookup, cas []ca.CARecord, now func() time.Time, ttl time.Duration) (*CertStatus, error) {
	if ttl <= 0 {
		ttl = 5 * time.Second
	}
	if now == nil {
		now = time.Now
	}
	c := &CertStatus{db: db, now: now, ttl: ttl, owners: map[[32]byte]certOwner{}, status: map[certOwner]statusEntry{}}
	for _, r := range cas {
		cert, err := smx509.ParseCertificate(r.DER)
		if err != nil {
			return nil, fmt.Errorf("CA %s certificate: %w", r.ID, err)
		}
		c.cas = append(c.cas, issuerCert{id: r.ID, cert: cert})
	}
	return c, nil
}

// Status implements seal.RevocationChecker. It reports the certificate's
// current revocation state with its revocation time; the verifier judges
// that time against the signing time.
func (c *CertStatus) Status(ctx context.Context, certDER []byte, at time.Time) (seal.RevocationResult, error) {
	o := c.owner(certDER)
	if o.caID == "" {
		return seal.RevocationResult{Status: seal.RevocationUnknown, Detail: o.why}, nil
	}
	now := c.now()
	c.mu.Lock()
	e, ok := c.status[o]
	c.mu.Unlock()
	if ok && now.Sub(e.fetched) < c.ttl {
		return e.res, nil
	}
	res, err := c.lookup(ctx, o, certDER)
	if err != nil {
		return seal.RevocationResult{}, err
	}
	c.mu.Lock()
	if len(c.status) >= maxStatusEntries {
		clear(c.status)
	}
	c.status[o] = statusEntry{res: res, fetched: now}
	c.mu.Unlock()
	return res, nil
}

func (c *CertStatus) lookup(ctx context.Context, o certOwner, certDER []byte) (seal.RevocationResult, error) {
	rec, err := c.db.Certificate(ctx, o.caID, o.serial)
	if errors.Is(err, ca.ErrNotFound) {
		return seal.RevocationResult{Status: seal.RevocationUnknown,
			Detail: fmt.Sprintf("signed by CA %s but serial %s is not in its registry", o.caID, o.serial)}, nil
	}
	if err != nil {
		return seal.RevocationResult{}, err
	}
	if !bytes.Equal(rec.DER, certDER) {
		return seal.RevocationResult{Status: seal.RevocationUnknown,
			Detail: fmt.Sprintf("CA %s registered a different certificate under serial %s", o.caID, o.serial)}, nil
	}
	switch rec.Status {
	case ca.StatusGood:
		return seal.RevocationResult{Status: seal.RevocationGood}, nil
	case ca.StatusRevoked, ca.StatusHold:
		return seal.RevocationResult{Status: seal.RevocationRevoked, RevokedAt: rec.RevokedAt, Reason: rec.Reason,
			Detail: "(" + ca.ReasonName(rec.Reason) + ", CA " + o.caID + ")"}, nil
	}
	return seal.RevocationResult{Status: seal.RevocationUnknown, Detail: fmt.Sprintf("unexpected status %q", rec.Status)}, nil
}

// owner tells which of our CAs issued certDER, by issuer name and
// signature, through the cache.
func (c *CertStatus) owner(certDER []byte) certOwner {
	key := sha256.Sum256(certDER)
	c.mu.Lock()
	o, ok := c.owners[key]
	c.mu.Unlock()
	if ok {
		return o
	}
	o = certOwner{why: "not issued by this instance's CAs"}
	if cert, err := smx509.ParseCertificate(certDER); err != nil {
		o.why = "certificate does not parse: " + err.Error()
	} else {
		for _, iss := range c.cas {
			if bytes.Equal(cert.RawIssuer, iss.cert.RawSubject) && cert.CheckSignatureFrom(iss.cert) == nil {
				o = certOwner{caID: iss.id, serial: ca.SerialFromBig(cert.SerialNumber)}
				break
			}
		}
	}
	c.mu.Lock()
	if len(c.owners) >= maxStatusEntries {
		clear(c.owners)
	}
	c.owners[key] = o
	c.mu.Unlock()
	return o
}

// CertificateStatusChanged implements ca.RevocationListener: it forgets
// the cached status of a certificate whose revocation state changed.
func (c *CertStatus) CertificateStatusChanged(_ context.Context, cert *ca.Certificate) error {
	c.mu.Lock()
	delete(c.status, certOwner{caID: cert.CAID, serial: cert.Serial})
	c.mu.Unlock()
	return nil
}

// SealVerifier is what `gmtrust seal verify` uses: a verifier over an
// instance's CAs, certificate status and seal registry when a data
// directory is given, plus extra trust anchors.
type SealVerifier struct {
	Verifier *seal.Verifier
	close    func() error
}

// Close releases the database, if one was opened.
func (v *SealVerifier) Close() error {
	if v.close == nil {
		return nil
	}
	return v.close()
}

// OpenSealVerifier builds a verifier. With dir it opens the instance's
// database directly (no keys are needed to verify) for its CAs, the
// status of its certificates and its seal registry. extra are DER trust
// certificates. With neither, chains and revocation stay undecided.
func OpenSealVerifier(ctx context.Context, dir string, extra [][]byte, opts Options) (*SealVerifier, error) {
	opts.defaults()
	o := seal.VerifierOptions{Now: opts.Now}
	if dir == "" {
		if len(extra) > 0 {
			t, err := seal.NewPoolTrust(extra)
			if err != nil {
				return nil, fmt.Errorf("--trust: %w", err)
			}
			o.Trust = t
		}
		return &SealVerifier{Verifier: seal.NewVerifier(o)}, nil
	}
	cfg, err := config.Load(dir, opts.Getenv)
	if err != nil {
		return nil, err
	}
	db, err := store.Open(ctx, cfg.DatabaseDSN(dir), store.Options{Now: opts.Now, Logger: opts.Logger})
	if err != nil {
		return nil, err
	}
	cas, err := db.CAs(ctx)
	if err == nil && len(cas) == 0 {
		err = errors.New("the instance has no CA")
	}
	if err == nil {
		o.Trust, err = NewSealTrust(cas, extra)
	}
	if err == nil {
		o.Revocation, err = NewCertStatus(db, cas, opts.Now, 0)
	}
	var reg *store.Seals
	if err == nil {
		reg, err = store.NewSeals(ctx, db)
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	o.Registry = reg
	return &SealVerifier{Verifier: seal.NewVerifier(o), close: func() error { return errors.Join(reg.Close(), db.Close()) }}, nil
}

var _ ca.RevocationListener = (*CertStatus)(nil)
