// Package ca is the certificate authority: it keeps the hierarchy, issues
// certificates under the profiles in policies/, revokes them and builds
// CRLs. It signs through the key manager (hsm) and persists through the
// Store interface, so neither key storage nor the database leaks in here.
package ca

import (
	"context"
	"crypto"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gmtrust/gmtrust/hsm"
	"github.com/gmtrust/gmtrust/internal/sigalg"
	"github.com/gmtrust/gmtrust/policies"
)

// MaxCSRSize bounds a CSR as received (PEM or DER); real ones are < 4 KiB.
const MaxCSRSize = 64 << 10

// Config holds the CA's tunables.
type Config struct {
	// PublicURL is where relying parties reach this service; CRL
	// distribution points and AIA URLs are built from it.
	PublicURL string
	// CRLValidity is nextUpdate - thisUpdate (default 24 h).
	CRLValidity time.Duration
	// Backdate moves notBefore into the past to tolerate relying parties
	// with slow clocks (default 1 minute).
	Backdate time.Duration
}

// Deps are the collaborators of an Authority.
type Deps struct {
	Store    Store
	Keys     hsm.KeyManager
	Profiles *policies.Set
	Now      func() time.Time
	Rand     io.Reader
	Logger   *slog.Logger
	Metrics  prometheus.Registerer
}

// RevocationListener is told about every change of a certificate's
// revocation status after it is durable and before the call that made it
// returns (the OCSP responder re-signs there).
type RevocationListener interface {
	CertificateStatusChanged(ctx context.Context, c *Certificate) error
}

// issuer is a loaded CA: its certificate, parsed once, and its signer.
type issuer struct {
	rec    CARecord
	cert   *smx509.Certificate
	ski    []byte
	signer crypto.Signer
	alg    sigalg.Alg
}

// Authority issues and revokes certificates.
type Authority struct {
	cfg      Config
	store    Store
	keys     hsm.KeyManager
	profiles *policies.Set
	now      func() time.Time
	rand     io.Reader
	log      *slog.Logger
	metrics  *metrics

	issuers   map[string]*issuer
	order     []string // CA ids, roots first
	defaultCA string

	mu        sync.Mutex
	listeners []RevocationListener
	crlKick   chan string
}

type metrics struct {
	issued      *prometheus.CounterVec
	rejected    *prometheus.CounterVec
	revoked     *prometheus.CounterVec
	crlSeconds  prometheus.Histogram
	crlEntries  *prometheus.GaugeVec
	issueLatSec prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		issued:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gmtrust_certificates_issued_total", Help: "Certificates issued, by CA and profile."}, []string{"ca", "profile"}),
		rejected:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gmtrust_certificate_requests_rejected_total", Help: "Rejected certificate requests, by problem type."}, []string{"type"}),
		revoked:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gmtrust_certificates_revoked_total", Help: "Revocations and holds, by reason."}, []string{"reason"}),
		crlSeconds:  prometheus.NewHistogram(prometheus.HistogramOpts{Name: "gmtrust_crl_generation_seconds", Help: "Time to build and sign a CRL.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)}),
		crlEntries:  prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "gmtrust_crl_entries", Help: "Entries in the latest CRL, by CA."}, []string{"ca"}),
		issueLatSec: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "gmtrust_issue_seconds", Help: "Time to issue one certificate, commit included.", Buckets: prometheus.ExponentialBuckets(0.0001, 3, 10)}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.issued, m.rejected, m.revoked, m.crlSeconds, m.crlEntries, m.issueLatSec} {
			_ = reg.Register(c)
		}
	}
	return m
}

// New loads the hierarchy from the store and a signer for every CA key.
// It fails when a CA key cannot be loaded, so a service that starts can
// sign.
func New(ctx context.Context, cfg Config, d Deps) (*Authority, error) {
	if d.Store == nil || d.Keys == nil || d.Profiles == nil {
		return nil, errors.New("ca: store, key manager and profiles are required")
	}
	if cfg.CRLValidity <= 0 {
		cfg.CRLValidity = 24 * time.Hour
	}
	if cfg.Backdate <= 0 {
		cfg.Backdate = time.Minute
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	a := &Authority{
		cfg: cfg, store: d.Store, keys: d.Keys, profiles: d.Profiles,
		now: d.Now, rand: d.Rand, log: d.Logger, metrics: newMetrics(d.Metrics),
		issuers: map[string]*issuer{}, crlKick: make(chan string, 16),
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.rand == nil {
		a.rand = rand.Reader
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	recs, err := d.Store.CAs(ctx)
	if err != nil {
		return nil, fmt.Errorf("ca: loading CAs: %w", err)
	}
	if len(recs) == 0 {
		return nil, errors.New("ca: no CA in the store (run gmtrust init)")
	}
	for _, r := range recs {
		iss, err := loadIssuer(ctx, d.Keys, r)
		if err != nil {
			return nil, err
		}
		a.issuers[r.ID] = iss
		a.order = append(a.order, r.ID)
		if r.Role == RoleIssuing && a.defaultCA == "" {
			a.defaultCA = r.ID
		}
	}
	if a.defaultCA == "" {
		return nil, errors.New("ca: no issuing CA in the store")
	}
	return a, nil
}

func loadIssuer(ctx context.Context, keys hsm.KeyManager, r CARecord) (*issuer, error) {
	cert, err := smx509.ParseCertificate(r.DER)
	if err != nil {
		return nil, fmt.Errorf("ca: CA %s certificate: %w", r.ID, err)
	}
	signer, err := keys.Signer(ctx, r.KeyRef)
	if err != nil {
		return nil, fmt.Errorf("ca: CA %s key %s: %w", r.ID, r.KeyRef, err)
	}
	if !publicKeysEqual(signer.Public(), cert.PublicKey) {
		return nil, fmt.Errorf("ca: CA %s: key %s does not match its certificate", r.ID, r.KeyRef)
	}
	alg, err := sigalg.ForPublicKey(signer.Public())
	if err != nil {
		return nil, fmt.Errorf("ca: CA %s: %w", r.ID, err)
	}
	ski := cert.SubjectKeyId
	if len(ski) == 0 {
		if ski, err = subjectKeyID(cert.RawSubjectPublicKeyInfo); err != nil {
			return nil, err
		}
	}
	return &issuer{rec: r, cert: cert, ski: ski, signer: signer, alg: alg}, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}

// AddListener registers a revocation listener.
func (a *Authority) AddListener(l RevocationListener) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.listeners = append(a.listeners, l)
}

// CAs returns the hierarchy, roots first.
func (a *Authority) CAs() []CARecord {
	out := make([]CARecord, 0, len(a.order))
	for _, id := range a.order {
		out = append(out, a.issuers[id].rec)
	}
	return out
}

// CA returns one CA's record.
func (a *Authority) CA(id string) (CARecord, bool) {
	iss, ok := a.issuers[id]
	if !ok {
		return CARecord{}, false
	}
	return iss.rec, true
}

// DefaultCA is the id of the issuing CA used when a request names none.
func (a *Authority) DefaultCA() string { return a.defaultCA }

// Chain returns the DER chain above a CA's leaf, issuing CA first, root
// last.
func (a *Authority) Chain(caID string) [][]byte {
	var chain [][]byte
	for id := caID; id != ""; {
		iss, ok := a.issuers[id]
		if !ok {
			break
		}
		chain = append(chain, iss.rec.DER)
		id = iss.rec.ParentID
	}
	return chain
}

// IssueRequest asks for a certificate from a CSR.
type IssueRequest struct {
	CSR        []byte // PEM or DER PKCS#10
	Profile    string
	Department string
	// RequesterDepartment is the department of whoever asks; "" for an
	// administrator, who may issue for any department.
	RequesterDepartment string
	RequestedBy         string
	CAID                string        // "" = the default issuing CA
	Validity            time.Duration // 0 = the profile's default
}

// ParseCSR decodes and checks a PKCS#10 request (PEM or DER) and its
// signature. SM2 CSRs are checked with the standard ID 1234567812345678.
func ParseCSR(in []byte) (*smx509.CertificateRequest, error) {
	if len(in) > MaxCSRSize {
		return nil, reqErr(ProblemCSRTooLarge, fmt.Sprintf("CSR is %d bytes; the limit is %d", len(in), MaxCSRSize), nil)
	}
	der := in
	if p, rest := pem.Decode(in); p != nil {
		if p.Type != "CERTIFICATE REQUEST" && p.Type != "NEW CERTIFICATE REQUEST" {
			return nil, reqErr(ProblemBadCSR, fmt.Sprintf("PEM block is %q, want CERTIFICATE REQUEST", p.Type), nil)
		}
		if len(strings.TrimSpace(string(rest))) != 0 {
			return nil, reqErr(ProblemBadCSR, "data after the PEM block", nil)
		}
		der = p.Bytes
	}
	csr, err := smx509.ParseCertificateRequest(der)
	if err != nil {
		return nil, reqErr(ProblemBadCSR, "cannot parse PKCS#10 request", err)
	}
	switch csr.SignatureAlgorithm {
	case smx509.SM2WithSM3, smx509.ECDSAWithSHA256, smx509.ECDSAWithSHA384, smx509.ECDSAWithSHA512,
		smx509.SHA256WithRSA, smx509.SHA384WithRSA, smx509.SHA512WithRSA,
		smx509.SHA256WithRSAPSS, smx509.SHA384WithRSAPSS, smx509.SHA512WithRSAPSS:
	default:
		return nil, reqErr(ProblemCSRSignature, fmt.Sprintf("CSR signature algorithm %s is not accepted", csr.SignatureAlgorithm), nil)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, reqErr(ProblemCSRSignature, "CSR signature does not verify (SM2 CSRs must be signed with the ID 1234567812345678)", err)
	}
	return csr, nil
}

func (a *Authority) issuerFor(id string) (*issuer, error) {
	if id == "" {
		id = a.defaultCA
	}
	iss, ok := a.issuers[id]
	if !ok {
		return nil, reqErr(ProblemUnknownCA, fmt.Sprintf("no CA %q", id), ErrNotFound)
	}
	if iss.rec.Role != RoleIssuing {
		return nil, reqErr(ProblemUnknownCA, fmt.Sprintf("CA %q does not issue end-entity certificates", id), nil)
	}
	return iss, nil
}

// Issued is a new certificate and its chain.
type Issued struct {
	Certificate *Certificate
	Chain       [][]byte // issuing CA first
}

// Issue checks a CSR against a profile, issues the certificate, and
// returns it only after it is durably recorded.
func (a *Authority) Issue(ctx context.Context, req IssueRequest) (*Issued, error) {
	start := a.now()
	out, err := a.issue(ctx, req)
	if err != nil {
		var re *RequestError
		if errors.As(err, &re) {
			a.metrics.rejected.WithLabelValues(re.Type).Inc()
		}
		return nil, err
	}
	a.metrics.issued.WithLabelValues(out.Certificate.CAID, out.Certificate.Profile).Inc()
	a.metrics.issueLatSec.Observe(a.now().Sub(start).Seconds())
	return out, nil
}

func (a *Authority) issue(ctx context.Context, req IssueRequest) (*Issued, error) {
	csr, err := ParseCSR(req.CSR)
	if err != nil {
		return nil, err
	}
	iss, err := a.issuerFor(req.CAID)
	if err != nil {
		return nil, err
	}
	prof, err := a.profiles.Get(req.Profile)
	if err != nil {
		return nil, reqErr(ProblemUnknownProfile, fmt.Sprintf("no profile %q", req.Profile), err)
	}
	dec, err := prof.Check(policies.Request{
		Subject:             csr.Subject,
		RawSubject:          csr.RawSubject,
		PublicKey:           csr.PublicKey,
		DNSNames:            csr.DNSNames,
		IPAddresses:         csr.IPAddresses,
		EmailAddresses:      csr.EmailAddresses,
		URIs:                csr.URIs,
		Department:          req.Department,
		RequesterDepartment: req.RequesterDepartment,
		Validity:            req.Validity,
	})
	if err != nil {
		return nil, reqErr(ProblemPolicy, fmt.Sprintf("profile %s", prof.Name), err)
	}
	uris := make([]string, len(csr.URIs))
	for i, u := range csr.URIs {
		uris[i] = u.String()
	}
	leaf := leafSpec{
		subject: csr.RawSubject, subjectName: csr.Subject.String(), spki: csr.RawSubjectPublicKeyInfo,
		pub: csr.PublicKey, dns: csr.DNSNames, emails: csr.EmailAddresses, ips: csr.IPAddresses, uris: uris,
		decision: dec, profile: prof.Name, department: req.Department, requestedBy: req.RequestedBy,
	}
	c, err := a.issueLeaf(ctx, iss, leaf)
	if err != nil {
		return nil, err
	}
	return &Issued{Certificate: c, Chain: a.Chain(iss.rec.ID)}, nil
}

// leafSpec is a checked request, ready to encode.
type leafSpec struct {
	subject     []byte // DER Name
	subjectName string
	spki        []byte
	pub         crypto.PublicKey
	dns         []string
	emails      []string
	ips         []net.IP
	uris        []string
	decision    policies.Decision
	profile     string
	department  string
	requestedBy string
}

// isEmptyName reports whether a DER Name is the empty SEQUENCE.
func isEmptyName(n []byte) bool { return len(n) == 2 && n[0] == 0x30 && n[1] == 0 }

func (a *Authority) issueLeaf(ctx context.Context, iss *issuer, l leafSpec) (*Certificate, error) {
	for attempt := 0; ; attempt++ {
		c, err := buildLeaf(iss, l, a.cfg, a.now(), a.rand)
		if err != nil {
			return nil, err
		}
		err = a.store.InsertCertificate(ctx, c)
		if errors.Is(err, ErrDuplicateSerial) && attempt < 3 {
			// 126 random bits make this practically impossible; the
			// database constraint is what guarantees uniqueness.
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("ca: recording certificate: %w", err)
		}
		return c, nil
	}
}

// buildLeaf encodes and signs an end-entity certificate. Every extension
// is decided here from the profile's decision and the CA's configuration.
func buildLeaf(iss *issuer, l leafSpec, cfg Config, nowT time.Time, rnd io.Reader) (*Certificate, error) {
	now := nowT.UTC().Truncate(time.Second)
	notBefore := now.Add(-cfg.Backdate)
	notAfter := now.Add(l.decision.Validity)
	if caEnd := iss.cert.NotAfter; notAfter.After(caEnd) {
		// A certificate must not outlive its issuer: cut it to the CA's end.
		notAfter = caEnd
	}
	if !notAfter.After(now) {
		return nil, fmt.Errorf("ca: CA %s has expired", iss.rec.ID)
	}
	ski, err := subjectKeyID(l.spki)
	if err != nil {
		return nil, reqErr(ProblemBadCSR, "subject public key", err)
	}
	exts := make([]extension, 0, 9)
	ku, err := keyUsageExt(l.decision.KeyUsage)
	if err != nil {
		return nil, err
	}
	exts = append(exts, ku)
	if len(l.decision.ExtKeyUsageOIDs) > 0 {
		exts = append(exts, extKeyUsageExt(l.decision.ExtKeyUsageOIDs))
	}
	exts = append(exts, basicConstraintsExt(false, -1), subjectKeyIDExt(ski), authorityKeyIDExt(iss.ski))
	var sans []string
	if len(l.dns)+len(l.emails)+len(l.ips)+len(l.uris) > 0 {
		exts = append(exts, sanExt(l.dns, l.emails, l.ips, l.uris, isEmptyName(l.subject)))
		sans = sanStrings(l.dns, l.emails, l.ips, l.uris)
	}
	if cfg.PublicURL != "" {
		exts = append(exts, crlDPExt(crlURL(cfg.PublicURL, iss.rec.ID)), aiaExt(cfg.PublicURL+"/ocsp", caCertURL(cfg.PublicURL, iss.rec.ID)))
	}
	if l.decision.OCSPNoCheck {
		exts = append(exts, ocspNoCheckExt())
	}
	serial, err := NewSerial(rnd)
	if err != nil {
		return nil, err
	}
	tbs := tbsCert{serial: serial, alg: iss.alg, issuer: iss.cert.RawSubject, notBefore: notBefore, notAfter: notAfter,
		subject: l.subject, spki: l.spki, exts: exts}
	der, err := signCert(&tbs, iss, rnd)
	if err != nil {
		return nil, err
	}
	return &Certificate{
		CAID: iss.rec.ID, Serial: SerialHex(serial), Profile: l.profile, Department: l.department,
		Subject: l.subjectName, SANs: sans, KeyAlgorithm: keyAlgorithmName(l.pub), NotBefore: notBefore, NotAfter: notAfter,
		Status: StatusGood, DER: der, RequestedBy: l.requestedBy, CreatedAt: nowT,
	}, nil
}

// sign encodes and signs a TBSCertificate and lints the result by parsing
// it back (structure only: the signature comes from our own key).
func signCert(t *tbsCert, iss *issuer, rnd io.Reader) ([]byte, error) {
	tbs, err := t.marshal()
	if err != nil {
		return nil, fmt.Errorf("ca: encoding certificate: %w", err)
	}
	sig, _, err := sigalg.SignWithRand(rnd, iss.signer, tbs)
	if err != nil {
		return nil, fmt.Errorf("ca: CA %s signing: %w", iss.rec.ID, err)
	}
	der, err := assembleSigned(tbs, iss.alg, sig)
	if err != nil {
		return nil, err
	}
	if _, err := smx509.ParseCertificate(der); err != nil {
		return nil, fmt.Errorf("ca: produced certificate does not parse: %w", err)
	}
	return der, nil
}

// CRLURL is the CRL distribution point of a CA.
func (a *Authority) CRLURL(caID string) string { return crlURL(a.cfg.PublicURL, caID) }

func crlURL(base, caID string) string { return base + "/crl/" + caID + ".crl" }

func caCertURL(base, caID string) string { return base + "/ca/" + caID + ".crt" }

// CACertURL is where a CA's certificate is served (AIA caIssuers).
func (a *Authority) CACertURL(caID string) string { return caCertURL(a.cfg.PublicURL, caID) }

func sanStrings(dns, emails []string, ips []net.IP, uris []string) []string {
	out := make([]string, 0, len(dns)+len(emails)+len(ips)+len(uris))
	for _, d := range dns {
		out = append(out, "DNS:"+d)
	}
	for _, ip := range ips {
		out = append(out, "IP:"+ip.String())
	}
	for _, e := range emails {
		out = append(out, "email:"+e)
	}
	for _, u := range uris {
		out = append(out, "URI:"+u)
	}
	return out
}
