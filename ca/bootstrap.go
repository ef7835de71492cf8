package ca

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmtrust/gmtrust/hsm"
	"github.com/gmtrust/gmtrust/internal/sigalg"
	"github.com/gmtrust/gmtrust/policies"
)

// Fixed CA identifiers of a hierarchy made by Bootstrap; they appear in
// URLs (/crl/issuing.crl, /ca/root.crt).
const (
	RootID    = "root"
	IssuingID = "issuing"
)

// Purposes of delegated signers.
const (
	// PurposeOCSP marks the delegated OCSP signing certificate.
	PurposeOCSP = "ocsp"
	// PurposeSealMaker marks the seal-making system's certificate, which
	// signs SES_SealInfo when a seal is made (GB/T 38540: always SM2).
	PurposeSealMaker = "seal-maker"
)

// BootstrapParams describe a new hierarchy.
type BootstrapParams struct {
	Name            string // e.g. "Shandong Government CA"
	Algorithm       hsm.Algorithm
	PublicURL       string
	RootValidity    time.Duration // default 20 years
	IssuingValidity time.Duration // default 10 years
	Now             func() time.Time
	Rand            io.Reader
}

// Hierarchy is what Bootstrap makes: nothing of it is stored yet.
type Hierarchy struct {
	Root     CARecord
	Issuing  CARecord
	OCSP     SignerRecord
	OCSPCert Certificate
}

// Bootstrap creates the keys and certificates of a new hierarchy: a
// self-signed root (pathlen 1), an issuing CA under it (pathlen 0) and a
// delegated OCSP signing certificate from the issuing CA. The caller
// stores the result in one transaction.
func Bootstrap(ctx context.Context, keys hsm.KeyManager, profiles *policies.Set, p BootstrapParams) (*Hierarchy, error) {
	if strings.TrimSpace(p.Name) == "" {
		return nil, errors.New("ca: a CA name is required")
	}
	if p.Algorithm == "" {
		p.Algorithm = hsm.SM2
	}
	if p.RootValidity <= 0 {
		p.RootValidity = 20 * 365 * 24 * time.Hour
	}
	if p.IssuingValidity <= 0 {
		p.IssuingValidity = 10 * 365 * 24 * time.Hour
	}
	if p.Now == nil {
		p.Now = time.Now
	}
	if p.Rand == nil {
		p.Rand = rand.Reader
	}
	base := strings.TrimRight(p.PublicURL, "/")
	now := p.Now().UTC().Truncate(time.Second)
	// A random suffix keeps key labels unique, so a failed init that left
	// keys behind never blocks the next one.
	sfx := make([]byte, 4)
	if _, err := io.ReadFull(p.Rand, sfx); err != nil {
		return nil, err
	}
	suffix := hex.EncodeToString(sfx)

	rootRef, rootPub, err := keys.CreateKey(ctx, "root-ca-"+suffix, p.Algorithm)
	if err != nil {
		return nil, fmt.Errorf("ca: root key: %w", err)
	}
	rootSigner, err := keys.Signer(ctx, rootRef)
	if err != nil {
		return nil, err
	}
	rootName, err := caName(p.Name+" Root CA", p.Name)
	if err != nil {
		return nil, err
	}
	rootDER, err := buildCA(caSpec{
		subject: rootName, issuerName: rootName, pub: rootPub, signer: rootSigner, pathLen: 1,
		notBefore: now.Add(-time.Minute), notAfter: now.Add(p.RootValidity),
	}, p.Rand)
	if err != nil {
		return nil, fmt.Errorf("ca: root certificate: %w", err)
	}
	root := CARecord{ID: RootID, Name: p.Name + " Root CA", Algorithm: string(p.Algorithm), Role: RoleRoot, KeyRef: rootRef, DER: rootDER, CreatedAt: now}
	rootIss, err := issuerFromSigner(root, rootSigner)
	if err != nil {
		return nil, err
	}

	issRef, issPub, err := keys.CreateKey(ctx, "issuing-ca-"+suffix, p.Algorithm)
	if err != nil {
		return nil, fmt.Errorf("ca: issuing key: %w", err)
	}
	issSigner, err := keys.Signer(ctx, issRef)
	if err != nil {
		return nil, err
	}
	issName, err := caName(p.Name+" Issuing CA 1", p.Name)
	if err != nil {
		return nil, err
	}
	issDER, err := buildCA(caSpec{
		subject: issName, issuerName: rootIss.cert.RawSubject, pub: issPub, signer: rootSigner, aki: rootIss.ski, pathLen: 0,
		notBefore: now.Add(-time.Minute), notAfter: now.Add(p.IssuingValidity),
		crlURL: optURL(base, crlURL(base, RootID)), caIssuersURL: optURL(base, caCertURL(base, RootID)),
	}, p.Rand)
	if err != nil {
		return nil, fmt.Errorf("ca: issuing certificate: %w", err)
	}
	issuing := CARecord{ID: IssuingID, Name: p.Name + " Issuing CA 1", Algorithm: string(p.Algorithm), ParentID: RootID, Role: RoleIssuing, KeyRef: issRef, DER: issDER, CreatedAt: now}
	issIss, err := issuerFromSigner(issuing, issSigner)
	if err != nil {
		return nil, err
	}
	for _, r := range []*CARecord{&root, &issuing} {
		c, _ := smx509.ParseCertificate(r.DER)
		r.NotBefore, r.NotAfter = c.NotBefore, c.NotAfter
	}

	signer, cert, err := NewDelegatedSigner(ctx, keys, profiles, issIss, DelegatedParams{
		Purpose: PurposeOCSP, Label: "ocsp-signer-" + suffix, Algorithm: p.Algorithm,
		CommonName: p.Name + " OCSP Responder", Organization: p.Name, PublicURL: base, Now: now, Rand: p.Rand,
	})
	if err != nil {
		return nil, err
	}
	return &Hierarchy{Root: root, Issuing: issuing, OCSP: *signer, OCSPCert: *cert}, nil
}

func optURL(base, u string) string {
	if base == "" {
		return ""
	}
	return u
}

// DelegatedParams describe a delegated signer (e.g. the OCSP responder).
type DelegatedParams struct {
	Purpose      string
	Label        string
	Algorithm    hsm.Algorithm
	CommonName   string
	Organization string
	PublicURL    string
	Now          time.Time
	Rand         io.Reader
}

// profileForPurpose maps a delegated signer's purpose to its profile.
func profileForPurpose(purpose string) (string, error) {
	switch purpose {
	case PurposeOCSP:
		return "ocsp-signer", nil
	case PurposeSealMaker:
		return "seal-maker", nil
	}
	return "", fmt.Errorf("ca: unknown signer purpose %q", purpose)
}

// NewDelegatedSigner creates a key and a certificate for it from the
// issuing CA, under the purpose's profile.
func NewDelegatedSigner(ctx context.Context, keys hsm.KeyManager, profiles *policies.Set, iss *issuer, p DelegatedParams) (*SignerRecord, *Certificate, error) {
	profName, err := profileForPurpose(p.Purpose)
	if err != nil {
		return nil, nil, err
	}
	prof, err := profiles.Get(profName)
	if err != nil {
		return nil, nil, err
	}
	ref, pub, err := keys.CreateKey(ctx, p.Label, p.Algorithm)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: %s key: %w", p.Purpose, err)
	}
	name := pkix.Name{CommonName: p.CommonName, Organization: []string{p.Organization}, Country: []string{"CN"}}
	subject, err := asn1.Marshal(name.ToRDNSequence())
	if err != nil {
		return nil, nil, err
	}
	parsedName, err := parseName(subject)
	if err != nil {
		return nil, nil, err
	}
	spki, err := smx509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, nil, err
	}
	dec, err := prof.Check(policies.Request{Subject: parsedName, RawSubject: subject, PublicKey: pub})
	if err != nil {
		return nil, nil, fmt.Errorf("ca: %s certificate against profile %s: %w", p.Purpose, profName, err)
	}
	rnd := p.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	cert, err := buildLeaf(iss, leafSpec{
		subject: subject, subjectName: parsedName.String(), spki: spki, pub: pub,
		decision: dec, profile: profName, requestedBy: "system:" + p.Purpose,
	}, Config{PublicURL: p.PublicURL, Backdate: time.Minute}, p.Now, rnd)
	if err != nil {
		return nil, nil, err
	}
	rec := &SignerRecord{
		ID: p.Label, CAID: iss.rec.ID, Purpose: p.Purpose, KeyRef: ref, DER: cert.DER, Serial: cert.Serial,
		NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, CreatedAt: p.Now,
	}
	return rec, cert, nil
}

func parseName(der []byte) (pkix.Name, error) {
	var rdn pkix.RDNSequence
	if rest, err := asn1.Unmarshal(der, &rdn); err != nil || len(rest) != 0 {
		return pkix.Name{}, fmt.Errorf("ca: bad name encoding: %v", err)
	}
	var n pkix.Name
	n.FillFromRDNSequence(&rdn)
	return n, nil
}

func caName(cn, org string) ([]byte, error) {
	n := pkix.Name{CommonName: cn, Organization: []string{org}, Country: []string{"CN"}}
	return asn1.Marshal(n.ToRDNSequence())
}

type caSpec struct {
	subject, issuerName []byte
	pub                 crypto.PublicKey
	signer              crypto.Signer
	aki                 []byte // nil for a root
	pathLen             int
	notBefore, notAfter time.Time
	crlURL              string
	caIssuersURL        string
}

func buildCA(s caSpec, rnd io.Reader) ([]byte, error) {
	spki, err := smx509.MarshalPKIXPublicKey(s.pub)
	if err != nil {
		return nil, err
	}
	ski, err := subjectKeyID(spki)
	if err != nil {
		return nil, err
	}
	alg, err := sigalg.ForPublicKey(s.signer.Public())
	if err != nil {
		return nil, err
	}
	ku, err := keyUsageExt(x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature)
	if err != nil {
		return nil, err
	}
	exts := []extension{basicConstraintsExt(true, s.pathLen), ku, subjectKeyIDExt(ski)}
	if s.aki != nil {
		exts = append(exts, authorityKeyIDExt(s.aki))
	}
	if s.crlURL != "" {
		exts = append(exts, crlDPExt(s.crlURL))
	}
	if s.caIssuersURL != "" {
		exts = append(exts, aiaExt("", s.caIssuersURL))
	}
	serial, err := NewSerial(rnd)
	if err != nil {
		return nil, err
	}
	t := tbsCert{serial: serial, alg: alg, issuer: s.issuerName, notBefore: s.notBefore, notAfter: s.notAfter,
		subject: s.subject, spki: spki, exts: exts}
	tbs, err := t.marshal()
	if err != nil {
		return nil, err
	}
	sig, _, err := sigalg.SignWithRand(rnd, s.signer, tbs)
	if err != nil {
		return nil, err
	}
	return assembleSigned(tbs, alg, sig)
}

func issuerFromSigner(r CARecord, signer crypto.Signer) (*issuer, error) {
	cert, err := smx509.ParseCertificate(r.DER)
	if err != nil {
		return nil, err
	}
	alg, err := sigalg.ForPublicKey(signer.Public())
	if err != nil {
		return nil, err
	}
	return &issuer{rec: r, cert: cert, ski: cert.SubjectKeyId, signer: signer, alg: alg}, nil
}

// RenewDelegatedSigner makes a new key and certificate for a delegated
// signer of the default issuing CA (e.g. the OCSP responder before its
// certificate expires) and records both. The old one stays valid until it
// expires, so responses it signed keep verifying.
func (a *Authority) RenewDelegatedSigner(ctx context.Context, purpose string) (*SignerRecord, *Certificate, error) {
	iss, err := a.issuerFor("")
	if err != nil {
		return nil, nil, err
	}
	sfx := make([]byte, 4)
	if _, err := io.ReadFull(a.rand, sfx); err != nil {
		return nil, nil, err
	}
	now := a.now()
	org := iss.cert.Subject.Organization
	if len(org) == 0 {
		org = []string{iss.rec.Name}
	}
	alg, cn := hsm.Algorithm(iss.rec.Algorithm), org[0]+" OCSP Responder"
	if purpose == PurposeSealMaker {
		// Seals are SM2 whatever the CA's own algorithm is.
		alg, cn = hsm.SM2, org[0]+" Seal Maker"
	}
	rec, cert, err := NewDelegatedSigner(ctx, a.keys, a.profiles, iss, DelegatedParams{
		Purpose: purpose, Label: purpose + "-signer-" + hex.EncodeToString(sfx), Algorithm: alg,
		CommonName: cn, Organization: org[0], PublicURL: a.cfg.PublicURL, Now: now, Rand: a.rand,
	})
	if err != nil {
		return nil, nil, err
	}
	if err := a.store.InsertCertificate(ctx, cert); err != nil {
		return nil, nil, fmt.Errorf("ca: recording %s certificate: %w", purpose, err)
	}
	if err := a.store.InsertSigner(ctx, rec); err != nil {
		return nil, nil, fmt.Errorf("ca: recording %s signer: %w", purpose, err)
	}
	return rec, cert, nil
}

// Issuer returns the parsed certificate of a CA, for components (such as
// the OCSP responder) that match requests against it.
func (a *Authority) Issuer(id string) (*smx509.Certificate, bool) {
	iss, ok := a.issuers[id]
	if !ok {
		return nil, false
	}
	return iss.cert, true
}
