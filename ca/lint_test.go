package ca_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"
	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"

	"github.com/gmtrust/gmtrust/ca"
	"github.com/gmtrust/gmtrust/hsm"
	"github.com/gmtrust/gmtrust/internal/app"
	"github.com/gmtrust/gmtrust/internal/testutil"
	"github.com/gmtrust/gmtrust/policies"
)

// lintSources are the zlint sources that apply to a private government
// PKI: the IETF profiles and zlint's own community checks. The CA/Browser
// Forum (TLS, S/MIME, code signing, EV), ETSI and root-store (Mozilla,
// Apple, Chrome) lints are left out: they encode membership rules of the
// public web PKI (policy OIDs, CT, audited names, S/MIME mailbox
// validation) that a provincial CA outside those programmes does not
// follow, so their findings would not be defects of this encoder.
var lintSources = lint.SourceList{lint.RFC3279, lint.RFC5280, lint.RFC5480, lint.RFC5891, lint.RFC8813, lint.Community}

func lintRegistry(t *testing.T) lint.Registry {
	t.Helper()
	reg, err := lint.GlobalRegistry().Filter(lint.FilterOptions{IncludeSources: lintSources})
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// lintCert runs the registry on a DER certificate and fails on any
// warning, error or fatal result. It logs which lints applied.
func lintCert(t *testing.T, reg lint.Registry, name string, der []byte) {
	t.Helper()
	findings, applied, total := lintFindings(t, reg, der)
	for _, f := range findings {
		t.Errorf("%s: %s", name, f)
	}
	if len(applied) == 0 {
		t.Errorf("%s: no lint applied", name)
	}
	t.Logf("%s: %d of %d lints applied and passed: %s", name, len(applied), total, strings.Join(applied, " "))
}

// lintFindings returns the warnings, errors and fatals of zlint on a DER
// certificate, the names of the lints that applied, and how many ran.
func lintFindings(t *testing.T, reg lint.Registry, der []byte) (findings, applied []string, total int) {
	t.Helper()
	c, err := zx509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("zcrypto cannot parse: %v", err)
	}
	res := zlint.LintCertificateEx(c, reg)
	for name, r := range res.Results {
		switch {
		case r.Status >= lint.Warn:
			findings = append(findings, fmt.Sprintf("%s %s: %s (%s)", r.Status, name, r.Details, lintDescription(reg, name)))
		case r.Status == lint.Pass:
			applied = append(applied, name)
		case r.Status == lint.Notice:
			applied = append(applied, name)
			t.Logf("notice %s: %s", name, r.Details)
		}
	}
	sort.Strings(findings)
	sort.Strings(applied)
	return findings, applied, len(res.Results)
}

// TestZlintCatchesDefects is the control for the lint tests: with the same
// registry, certificates with known defects must be reported, so a passing
// TestZlintProfiles means something.
func TestZlintCatchesDefects(t *testing.T) {
	reg := lintRegistry(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	base := x509.Certificate{
		SerialNumber: big.NewInt(0x1234567), Subject: pkix.Name{CommonName: "defective"},
		NotBefore: now, NotAfter: now.Add(24 * time.Hour), BasicConstraintsValid: true,
		SubjectKeyId: []byte{1, 2, 3, 4}, AuthorityKeyId: []byte{1, 2, 3, 4},
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	tests := []struct {
		name   string
		modify func(*x509.Certificate)
		lint   string
	}{
		// RFC 5480 3: an EC key cannot encipher.
		{"ECDSA key with keyEncipherment", func(c *x509.Certificate) { c.KeyUsage |= x509.KeyUsageKeyEncipherment }, "e_ecdsa_allowed_ku"},
		// RFC 5280 4.2.1.3: keyCertSign only with cA asserted.
		{"end entity with keyCertSign", func(c *x509.Certificate) { c.KeyUsage |= x509.KeyUsageCertSign }, "e_ext_key_usage_cert_sign_without_ca"},
		// RFC 5280 4.2.1.2: the subject key identifier is never critical.
		{"critical subject key identifier", func(c *x509.Certificate) {
			c.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 14}, Critical: true, Value: []byte{4, 4, 1, 2, 3, 4}}}
		}, "e_ext_subject_key_identifier_critical"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl := base
			tt.modify(&tmpl)
			der, err := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, key.Public(), key)
			if err != nil {
				t.Fatal(err)
			}
			findings, _, _ := lintFindings(t, reg, der)
			var found bool
			for _, f := range findings {
				found = found || strings.Contains(f, " "+tt.lint+":")
			}
			if !found {
				t.Errorf("%s not reported; findings: %v", tt.lint, findings)
			}
		})
	}
}

func lintDescription(reg lint.Registry, name string) string {
	if l := reg.ByName(name); l != nil {
		return l.Description
	}
	return ""
}

// newProfiledInstance initialises an instance whose config names a
// profiles directory (profiles_dir), as an operator would to adapt the
// shipped profiles, and opens it.
func newProfiledInstance(t *testing.T, alg hsm.Algorithm, profilesDir string) *app.App {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	env := func(k string) string {
		if k == "GMTRUST_KEY_PASSPHRASE" {
			return "lint passphrase"
		}
		return ""
	}
	ctx := context.Background()
	if _, err := app.Init(ctx, app.InitParams{Dir: dir, Name: "Lint CA", Algorithm: alg, PublicURL: "http://ca.example.gov.cn", Getenv: env}); err != nil {
		t.Fatalf("init: %v", err)
	}
	if profilesDir != "" {
		f, err := os.OpenFile(filepath.Join(dir, "config.yaml"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fmt.Fprintf(f, "profiles_dir: %s\n", profilesDir); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	a, err := app.Open(ctx, dir, app.Options{Getenv: env})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// sealProfilesForECDSA writes copies of the shipped seal-* profiles that
// also accept P-256 keys (and change nothing else), because zlint cannot
// parse SM2 keys and the shipped seal profiles accept nothing else.
func sealProfilesForECDSA(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	const sm2Only = "keys:\n  - algorithm: sm2\n"
	for _, name := range []string{"seal-signer", "seal-maker"} {
		b, err := os.ReadFile(filepath.Join("..", "policies", "profiles", name+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Count(string(b), sm2Only) != 1 {
			t.Fatalf("%s.yaml no longer has an SM2-only key list; update this test", name)
		}
		y := strings.Replace(string(b), sm2Only, sm2Only+"  - algorithm: ecdsa\n    curves: [P-256]\n", 1)
		if err := os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// extShape is what must be equal between the SM2 certificate of a profile
// and the ECDSA stand-in that is linted for it.
func extShape(c *smx509.Certificate) string {
	var exts []string
	for _, e := range c.Extensions {
		exts = append(exts, fmt.Sprintf("%s critical=%v", e.Id, e.Critical))
	}
	sort.Strings(exts)
	return fmt.Sprintf("exts=%v ku=%b eku=%v unknownEKU=%v isCA=%v", exts, c.KeyUsage, c.ExtKeyUsage, c.UnknownExtKeyUsage, c.IsCA)
}

// TestZlintProfiles lints, with zlint v3, a certificate of every shipped
// profile and the CA certificates, all made by the real issuance path.
// zlint cannot parse SM2 keys, so the certificates are ECDSA P-256 (and
// RSA): the encoder is shared, only the key and signature differ.
func TestZlintProfiles(t *testing.T) {
	reg := lintRegistry(t)
	t.Logf("zlint sources %v: %d certificate lints", lintSources, len(reg.CertificateLints().Lints()))
	ctx := context.Background()
	ecdsaCA := newProfiledInstance(t, hsm.ECDSAP256, sealProfilesForECDSA(t))
	sm2CA := newInstance(t, hsm.SM2, "")

	shipped, err := policies.Default()
	if err != nil {
		t.Fatal(err)
	}
	requests := map[string]testutil.CSROptions{
		"staff-sign": {Subject: pkix.Name{CommonName: "Zhang San", Organization: []string{"Provincial Government"}, OrganizationalUnit: []string{"Finance Department"}, Country: []string{"CN"}},
			Emails: []string{"zhangsan@czt.example.gov.cn"}},
		"staff-enc": {Subject: pkix.Name{CommonName: "Zhang San", Organization: []string{"Provincial Government"}, Country: []string{"CN"}},
			Emails: []string{"zhangsan@czt.example.gov.cn"}},
		"server-tls": {Subject: pkix.Name{CommonName: "approvals.example.gov.cn", Organization: []string{"Provincial Government"}, Country: []string{"CN"}},
			DNS: []string{"approvals.example.gov.cn", "www.approvals.example.gov.cn"}, IPs: []net.IP{net.ParseIP("10.1.2.3")}},
		"seal-signer":  {Subject: pkix.Name{CommonName: "Finance Department Seal", Organization: []string{"Provincial Finance Department"}, Country: []string{"CN"}, SerialNumber: "11370000MB28449201"}},
		"seal-maker":   {Subject: pkix.Name{CommonName: "Seal Making System", Organization: []string{"Provincial Government"}, Country: []string{"CN"}}},
		"ocsp-signer":  {Subject: pkix.Name{CommonName: "OCSP Responder", Organization: []string{"Provincial Government"}, Country: []string{"CN"}}},
		"audit-signer": {Subject: pkix.Name{CommonName: "Audit Log Signer", Organization: []string{"Provincial Government"}, Country: []string{"CN"}}},
	}
	// Every shipped profile must be covered: a new one breaks this test
	// until it is linted too.
	if names := shipped.Names(); len(names) != len(requests) {
		t.Fatalf("shipped profiles %v, linted %d", names, len(requests))
	}
	for _, name := range shipped.Names() {
		o, ok := requests[name]
		if !ok {
			t.Fatalf("profile %s has no lint request", name)
		}
		t.Run(name, func(t *testing.T) {
			key := testutil.NewKey(t, "ecdsa-p256")
			out, err := ecdsaCA.Authority.Issue(ctx, ca.IssueRequest{CSR: testutil.NewCSR(t, key, o), Profile: name, Department: "czt", RequestedBy: "lint"})
			if err != nil {
				t.Fatalf("issue: %v", err)
			}
			lintCert(t, reg, name, out.Certificate.DER)

			if !strings.HasPrefix(name, "seal-") {
				return
			}
			// The shipped seal profile, on an SM2 CA with an SM2 key, must
			// make a certificate of the same shape as the one linted.
			sm2Out, err := sm2CA.Authority.Issue(ctx, ca.IssueRequest{CSR: testutil.NewCSR(t, testutil.NewKey(t, "sm2"), o), Profile: name, Department: "czt", RequestedBy: "lint"})
			if err != nil {
				t.Fatalf("SM2 issue: %v", err)
			}
			if got, want := extShape(parseCert(t, sm2Out.Certificate.DER)), extShape(parseCert(t, out.Certificate.DER)); got != want {
				t.Errorf("SM2 certificate differs from the linted ECDSA one:\nSM2   %s\nECDSA %s", got, want)
			}
		})
	}

	// The CA certificates and the OCSP signer made by init, on both an
	// ECDSA and an RSA hierarchy (RSA has its own encoding rules: NULL
	// parameters, key usage without keyAgreement).
	rsaCA := newInstance(t, hsm.RSA3072, "")
	for alg, a := range map[string]*app.App{"ecdsa-p256": ecdsaCA, "rsa-3072": rsaCA} {
		for _, c := range a.Authority.CAs() {
			lintCert(t, reg, alg+" "+string(c.Role)+" CA", c.DER)
		}
		signers, err := a.Store.Signers(ctx, ca.PurposeOCSP)
		if err != nil || len(signers) == 0 {
			t.Fatalf("%s OCSP signers: %v %v", alg, signers, err)
		}
		lintCert(t, reg, alg+" OCSP signer from init", signers[0].DER)
	}
	for _, name := range []string{"staff-sign", "staff-enc", "server-tls"} {
		out, err := rsaCA.Authority.Issue(ctx, ca.IssueRequest{CSR: testutil.NewCSR(t, testutil.NewKey(t, "rsa-2048"), requests[name]), Profile: name, Department: "czt", RequestedBy: "lint"})
		if err != nil {
			t.Fatalf("RSA %s: %v", name, err)
		}
		lintCert(t, reg, "rsa "+name, out.Certificate.DER)
	}
}

// TestZlintCRL lints a CRL with entries (reason, hold, invalidity date).
func TestZlintCRL(t *testing.T) {
	reg := lintRegistry(t)
	ctx := context.Background()
	a := newInstance(t, hsm.ECDSAP256, "")
	var serials []string
	for range 3 {
		out, err := a.Authority.Issue(ctx, ca.IssueRequest{CSR: testutil.NewCSR(t, testutil.NewKey(t, "ecdsa-p256"), testutil.CSROptions{Subject: pkix.Name{CommonName: "crl entry"}}), Profile: "staff-sign"})
		if err != nil {
			t.Fatal(err)
		}
		serials = append(serials, out.Certificate.Serial)
	}
	for i, reason := range []int{ca.ReasonKeyCompromise, ca.ReasonCertificateHold, ca.ReasonUnspecified} {
		if _, err := a.Authority.Revoke(ctx, ca.RevokeRequest{Serial: serials[i], Reason: reason}); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{ca.IssuingID, ca.RootID} {
		crl, err := a.Authority.GenerateCRL(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		rl, err := zx509.ParseRevocationList(crl.DER)
		if err != nil {
			t.Fatalf("zcrypto cannot parse the %s CRL: %v", id, err)
		}
		if id == ca.IssuingID && len(rl.RevokedCertificates) != len(serials) {
			t.Fatalf("issuing CRL has %d entries, want %d", len(rl.RevokedCertificates), len(serials))
		}
		res := zlint.LintRevocationListEx(rl, reg)
		var applied []string
		for name, r := range res.Results {
			if r.Status >= lint.Warn {
				t.Errorf("%s CRL: %s %s: %s", id, r.Status, name, r.Details)
			}
			if r.Status == lint.Pass || r.Status == lint.Notice {
				applied = append(applied, name)
			}
		}
		slices.Sort(applied)
		if len(applied) == 0 {
			t.Errorf("%s CRL: no lint applied", id)
		}
		t.Logf("%s CRL: %d lints applied and passed: %s", id, len(applied), strings.Join(applied, " "))
	}
}
