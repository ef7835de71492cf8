package ca_test

import (
	"bytes"
	"context"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmtrust/gmtrust/ca"
	"github.com/gmtrust/gmtrust/hsm"
	"github.com/gmtrust/gmtrust/internal/app"
	"github.com/gmtrust/gmtrust/internal/testutil"
	"github.com/gmtrust/gmtrust/policies"
)

// newInstance initialises a throwaway instance and opens it.
func newInstance(t testing.TB, alg hsm.Algorithm, database string) *app.App {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	env := func(k string) string {
		if k == "GMTRUST_KEY_PASSPHRASE" {
			return "test passphrase"
		}
		return ""
	}
	ctx := context.Background()
	if _, err := app.Init(ctx, app.InitParams{Dir: dir, Name: "Test Province CA", Algorithm: alg, PublicURL: "http://127.0.0.1:8080", Database: database, Getenv: env}); err != nil {
		t.Fatalf("init: %v", err)
	}
	a, err := app.Open(ctx, dir, app.Options{Getenv: env})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func parseCert(t testing.TB, der []byte) *smx509.Certificate {
	t.Helper()
	c, err := smx509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestHierarchy(t *testing.T) {
	for _, alg := range []hsm.Algorithm{hsm.SM2, hsm.ECDSAP256, hsm.RSA3072} {
		t.Run(string(alg), func(t *testing.T) {
			a := newInstance(t, alg, "")
			cas := a.Authority.CAs()
			if len(cas) != 2 || cas[0].Role != ca.RoleRoot || cas[1].Role != ca.RoleIssuing {
				t.Fatalf("CAs = %+v", cas)
			}
			root, iss := parseCert(t, cas[0].DER), parseCert(t, cas[1].DER)
			if err := root.CheckSignatureFrom(root); err != nil {
				t.Errorf("root self-signature: %v", err)
			}
			if err := iss.CheckSignatureFrom(root); err != nil {
				t.Errorf("issuing CA signature: %v", err)
			}
			if !root.IsCA || root.MaxPathLen != 1 || !iss.IsCA || iss.MaxPathLen != 0 || !iss.MaxPathLenZero {
				t.Errorf("path lengths: root %d, issuing %d (zero=%v)", root.MaxPathLen, iss.MaxPathLen, iss.MaxPathLenZero)
			}
			if got := root.NotAfter.Sub(root.NotBefore); got < 20*365*24*time.Hour {
				t.Errorf("root validity %v, want 20 years", got)
			}
			if got := iss.NotAfter.Sub(iss.NotBefore); got < 10*365*24*time.Hour || got > 11*365*24*time.Hour {
				t.Errorf("issuing validity %v, want 10 years", got)
			}
			if !bytes.Equal(iss.AuthorityKeyId, root.SubjectKeyId) || len(root.SubjectKeyId) == 0 {
				t.Error("issuing AKI != root SKI")
			}
			signers, err := a.Store.Signers(context.Background(), ca.PurposeOCSP)
			if err != nil || len(signers) != 1 {
				t.Fatalf("OCSP signers: %v %v", signers, err)
			}
			oc := parseCert(t, signers[0].DER)
			if err := oc.CheckSignatureFrom(iss); err != nil {
				t.Errorf("OCSP signer signature: %v", err)
			}
			if len(oc.ExtKeyUsage) != 1 || oc.ExtKeyUsage[0] != smx509.ExtKeyUsageOCSPSigning {
				t.Errorf("OCSP signer EKU %v", oc.ExtKeyUsage)
			}
			var nocheck bool
			for _, e := range oc.Extensions {
				if e.Id.Equal(asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}) {
					nocheck = true
				}
			}
			if !nocheck {
				t.Error("OCSP signer lacks id-pkix-ocsp-nocheck")
			}
			if d := oc.NotAfter.Sub(oc.NotBefore); d > 31*24*time.Hour {
				t.Errorf("OCSP signer validity %v too long", d)
			}
			// The OCSP certificate is a real issued certificate.
			if _, err := a.Authority.Find(context.Background(), signers[0].Serial); err != nil {
				t.Errorf("OCSP certificate not recorded: %v", err)
			}
		})
	}
}

func TestIssueProfiles(t *testing.T) {
	a := newInstance(t, hsm.SM2, "")
	ctx := context.Background()
	root := parseCert(t, a.Authority.CAs()[0].DER)
	issCA := parseCert(t, a.Authority.CAs()[1].DER)
	pool := smx509.NewCertPool()
	pool.AddCert(root)
	inter := smx509.NewCertPool()
	inter.AddCert(issCA)
	tests := []struct {
		name    string
		keyAlg  string
		profile string
		csr     testutil.CSROptions
		eku     []smx509.ExtKeyUsage
		ku      smx509.KeyUsage
	}{
		{"sm2 staff-sign chinese", "sm2", "staff-sign",
			testutil.CSROptions{Subject: pkix.Name{CommonName: "张三", OrganizationalUnit: []string{"省财政厅"}, Country: []string{"CN"}}, Emails: []string{"zhangsan@czt.example.gov.cn"}},
			[]smx509.ExtKeyUsage{smx509.ExtKeyUsageClientAuth, smx509.ExtKeyUsageEmailProtection}, smx509.KeyUsageDigitalSignature | smx509.KeyUsageContentCommitment},
		{"ecdsa staff-sign", "ecdsa-p256", "staff-sign",
			testutil.CSROptions{Subject: pkix.Name{CommonName: "Li Si", Organization: []string{"Finance"}}},
			[]smx509.ExtKeyUsage{smx509.ExtKeyUsageClientAuth, smx509.ExtKeyUsageEmailProtection}, smx509.KeyUsageDigitalSignature | smx509.KeyUsageContentCommitment},
		{"rsa server-tls", "rsa-2048", "server-tls",
			testutil.CSROptions{Subject: pkix.Name{CommonName: "approvals.example.gov.cn"}, DNS: []string{"approvals.example.gov.cn"}, IPs: []net.IP{net.ParseIP("10.1.2.3")}},
			[]smx509.ExtKeyUsage{smx509.ExtKeyUsageServerAuth}, 0},
		{"sm2 seal-signer", "sm2", "seal-signer",
			testutil.CSROptions{Subject: pkix.Name{CommonName: "省财政厅电子印章", Organization: []string{"山东省财政厅"}}},
			nil, smx509.KeyUsageDigitalSignature | smx509.KeyUsageContentCommitment},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := testutil.NewKey(t, tt.keyAlg)
			// A CSR asking to be a CA: the extension must not be copied.
			bc, _ := asn1.Marshal(struct{ IsCA bool }{true})
			tt.csr.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: bc}}
			csr := testutil.NewCSR(t, key, tt.csr)
			out, err := a.Authority.Issue(ctx, ca.IssueRequest{CSR: csr, Profile: tt.profile, Department: "czt", RequestedBy: "test"})
			if err != nil {
				t.Fatalf("issue: %v", err)
			}
			c := parseCert(t, out.Certificate.DER)
			if c.IsCA {
				t.Error("CA flag copied from the CSR")
			}
			if _, err := c.Verify(smx509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []smx509.ExtKeyUsage{smx509.ExtKeyUsageAny}}); err != nil {
				t.Errorf("chain: %v", err)
			}
			if c.SerialNumber.BitLen() < 120 || c.SerialNumber.Sign() <= 0 {
				t.Errorf("serial %x too short", c.SerialNumber)
			}
			if ca.SerialFromBig(c.SerialNumber) != out.Certificate.Serial {
				t.Errorf("serial %s != recorded %s", c.SerialNumber.Text(16), out.Certificate.Serial)
			}
			if len(c.SubjectKeyId) != 20 || !bytes.Equal(c.AuthorityKeyId, issCA.SubjectKeyId) {
				t.Error("SKI/AKI wrong")
			}
			if len(c.CRLDistributionPoints) != 1 || c.CRLDistributionPoints[0] != "http://127.0.0.1:8080/crl/issuing.crl" {
				t.Errorf("CRLDP %v", c.CRLDistributionPoints)
			}
			if len(c.OCSPServer) != 1 || c.OCSPServer[0] != "http://127.0.0.1:8080/ocsp" || len(c.IssuingCertificateURL) != 1 {
				t.Errorf("AIA %v %v", c.OCSPServer, c.IssuingCertificateURL)
			}
			if !equalEKU(c.ExtKeyUsage, tt.eku) {
				t.Errorf("EKU %v, want %v", c.ExtKeyUsage, tt.eku)
			}
			if tt.ku != 0 && c.KeyUsage != tt.ku {
				t.Errorf("KU %b, want %b", c.KeyUsage, tt.ku)
			}
			if !bytes.Equal(c.RawSubject, mustCSR(t, csr).RawSubject) {
				t.Error("subject not copied byte for byte")
			}
			stored, err := a.Authority.Find(ctx, out.Certificate.Serial)
			if err != nil || !bytes.Equal(stored.DER, out.Certificate.DER) || stored.Department != "czt" || stored.Profile != tt.profile {
				t.Fatalf("stored = %+v, %v", stored, err)
			}
			if len(out.Chain) != 2 || !bytes.Equal(out.Chain[0], issCA.Raw) {
				t.Error("chain must start with the issuing CA")
			}
		})
	}
}

func equalEKU(a, b []smx509.ExtKeyUsage) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func mustCSR(t testing.TB, p []byte) *smx509.CertificateRequest {
	b, _ := pem.Decode(p)
	c, err := smx509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func countCerts(t testing.TB, a *app.App) int {
	t.Helper()
	n := 0
	f := ca.Filter{Limit: 500}
	for {
		items, next, err := a.Authority.List(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		n += len(items)
		if next == "" {
			return n
		}
		f.Cursor = next
	}
}

func TestIssueRejectsBadInput(t *testing.T) {
	a := newInstance(t, hsm.SM2, "")
	ctx := context.Background()
	sm2Key := testutil.NewKey(t, "sm2")
	good := testutil.NewCSR(t, sm2Key, testutil.CSROptions{Subject: pkix.Name{CommonName: "王五"}})
	block, _ := pem.Decode(good)
	flipped := append([]byte(nil), block.Bytes...)
	flipped[len(flipped)-5] ^= 0x01
	weak := testutil.NewCSR(t, testutil.NewKey(t, "ecdsa-p384"), testutil.CSROptions{Subject: pkix.Name{CommonName: "x"}})
	tests := []struct {
		name     string
		req      ca.IssueRequest
		wantType string
		wantRule string
	}{
		{"garbage", ca.IssueRequest{CSR: []byte("not a csr"), Profile: "staff-sign"}, ca.ProblemBadCSR, ""},
		{"wrong PEM type", ca.IssueRequest{CSR: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: block.Bytes}), Profile: "staff-sign"}, ca.ProblemBadCSR, ""},
		{"oversized", ca.IssueRequest{CSR: bytes.Repeat([]byte{'A'}, ca.MaxCSRSize+1), Profile: "staff-sign"}, ca.ProblemCSRTooLarge, ""},
		{"bad signature", ca.IssueRequest{CSR: flipped, Profile: "staff-sign"}, ca.ProblemCSRSignature, ""},
		{"unknown profile", ca.IssueRequest{CSR: good, Profile: "no-such"}, ca.ProblemUnknownProfile, ""},
		{"server-tls without SAN", ca.IssueRequest{CSR: good, Profile: "server-tls"}, ca.ProblemPolicy, policies.RuleSANRequired},
		{"forbidden attribute", ca.IssueRequest{CSR: testutil.NewCSR(t, sm2Key, testutil.CSROptions{Subject: pkix.Name{CommonName: "a", StreetAddress: []string{"1 Road"}}}), Profile: "staff-sign"}, ca.ProblemPolicy, policies.RuleSubjectAttribute},
		{"forbidden SAN type", ca.IssueRequest{CSR: testutil.NewCSR(t, sm2Key, testutil.CSROptions{Subject: pkix.Name{CommonName: "a"}, DNS: []string{"a.example"}}), Profile: "staff-sign"}, ca.ProblemPolicy, policies.RuleSANType},
		{"seal-signer refuses ECDSA", ca.IssueRequest{CSR: weak, Profile: "seal-signer"}, ca.ProblemPolicy, policies.RuleKeyAlgorithm},
		{"validity beyond profile", ca.IssueRequest{CSR: good, Profile: "staff-sign", Validity: 5 * 365 * 24 * time.Hour}, ca.ProblemPolicy, policies.RuleValidity},
		{"other department", ca.IssueRequest{CSR: good, Profile: "staff-sign", Department: "a", RequesterDepartment: "b"}, ca.ProblemPolicy, policies.RuleDepartment},
		{"unknown CA", ca.IssueRequest{CSR: good, Profile: "staff-sign", CAID: "nope"}, ca.ProblemUnknownCA, ""},
		{"root does not issue leaves", ca.IssueRequest{CSR: good, Profile: "staff-sign", CAID: "root"}, ca.ProblemUnknownCA, ""},
	}
	before := countCerts(t, a)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.Authority.Issue(ctx, tt.req)
			var re *ca.RequestError
			if !errors.As(err, &re) || re.Type != tt.wantType {
				t.Fatalf("err = %v, want problem %s", err, tt.wantType)
			}
			if !errors.Is(err, ca.ErrInvalidRequest) {
				t.Error("not marked as invalid request")
			}
			if tt.wantRule != "" {
				var v *policies.Violation
				if !errors.As(err, &v) || v.Rule != tt.wantRule {
					t.Fatalf("violation %v, want rule %s", err, tt.wantRule)
				}
			}
		})
	}
	if after := countCerts(t, a); after != before {
		t.Fatalf("rejected requests stored certificates: %d -> %d", before, after)
	}
}

func TestRevocationAndCRL(t *testing.T) {
	a := newInstance(t, hsm.SM2, "")
	ctx := context.Background()
	issCA := parseCert(t, a.Authority.CAs()[1].DER)
	var serials []string
	for i := 0; i < 4; i++ {
		csr := testutil.NewCSR(t, testutil.NewKey(t, "sm2"), testutil.CSROptions{Subject: pkix.Name{CommonName: "user"}})
		out, err := a.Authority.Issue(ctx, ca.IssueRequest{CSR: csr, Profile: "staff-sign"})
		if err != nil {
			t.Fatal(err)
		}
		serials = append(serials, out.Certificate.Serial)
	}
	inv := time.Now().Add(-48 * time.Hour).UTC().Truncate(time.Second)
	if _, err := a.Authority.Revoke(ctx, ca.RevokeRequest{Serial: serials[0], Reason: ca.ReasonKeyCompromise, InvalidityDate: inv}); err != nil {
		t.Fatal(err)
	}
	// Idempotent repeat.
	c, err := a.Authority.Revoke(ctx, ca.RevokeRequest{Serial: strings.ToUpper(serials[0]), Reason: ca.ReasonKeyCompromise})
	if err != nil || c.Status != ca.StatusRevoked {
		t.Fatalf("repeat revoke: %v %v", c, err)
	}
	if _, err := a.Authority.Revoke(ctx, ca.RevokeRequest{Serial: serials[0], Reason: ca.ReasonSuperseded}); !errors.Is(err, ca.ErrAlreadyRevoked) {
		t.Fatalf("revoke with another reason: %v", err)
	}
	if _, err := a.Authority.Revoke(ctx, ca.RevokeRequest{Serial: serials[1], Reason: ca.ReasonCertificateHold}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authority.Revoke(ctx, ca.RevokeRequest{Serial: serials[2], Reason: ca.ReasonCertificateHold}); err != nil {
		t.Fatal(err)
	}
	if c, err := a.Authority.Unhold(ctx, serials[2], "test"); err != nil || c.Status != ca.StatusGood {
		t.Fatalf("unhold: %v %v", c, err)
	}
	if _, err := a.Authority.Unhold(ctx, serials[3], "test"); !errors.Is(err, ca.ErrNotOnHold) {
		t.Fatalf("unhold of a good cert: %v", err)
	}
	if _, err := a.Authority.Revoke(ctx, ca.RevokeRequest{Serial: "4" + strings.Repeat("0", 31), Reason: 1}); !errors.Is(err, ca.ErrNotFound) {
		t.Fatalf("unknown serial: %v", err)
	}
	if _, err := a.Authority.Revoke(ctx, ca.RevokeRequest{Serial: serials[3], Reason: 7}); !errors.Is(err, ca.ErrInvalidRequest) {
		t.Fatalf("reason 7: %v", err)
	}

	crl1, err := a.Authority.GenerateCRL(ctx, ca.IssuingID)
	if err != nil {
		t.Fatal(err)
	}
	crl2, err := a.Authority.GenerateCRL(ctx, ca.IssuingID)
	if err != nil {
		t.Fatal(err)
	}
	if crl2.Number <= crl1.Number {
		t.Fatalf("CRL numbers %d then %d", crl1.Number, crl2.Number)
	}
	rl, err := smx509.ParseRevocationList(crl2.DER)
	if err != nil {
		t.Fatal(err)
	}
	if err := rl.CheckSignatureFrom(issCA); err != nil {
		t.Fatalf("CRL signature: %v", err)
	}
	if rl.Number.Int64() != crl2.Number || !bytes.Equal(rl.AuthorityKeyId, issCA.SubjectKeyId) {
		t.Errorf("CRL number %v AKI %x", rl.Number, rl.AuthorityKeyId)
	}
	if d := rl.NextUpdate.Sub(rl.ThisUpdate); d != 24*time.Hour {
		t.Errorf("CRL validity %v", d)
	}
	got := map[string]smx509.RevocationListEntry{}
	for _, e := range rl.RevokedCertificateEntries {
		got[e.SerialNumber.Text(16)] = e
	}
	if len(got) != 2 {
		t.Fatalf("CRL has %d entries, want 2: %v", len(got), got)
	}
	e0 := got[serials[0]]
	if e0.ReasonCode != ca.ReasonKeyCompromise {
		t.Errorf("reason %d", e0.ReasonCode)
	}
	var invFound bool
	for _, ext := range e0.Extensions {
		if ext.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 24}) {
			var gt time.Time
			if _, err := asn1.UnmarshalWithParams(ext.Value, &gt, "generalized"); err != nil || !gt.Equal(inv) {
				t.Errorf("invalidity date %v %v, want %v", gt, err, inv)
			}
			invFound = true
		}
	}
	if !invFound {
		t.Error("invalidity date missing")
	}
	if got[serials[1]].ReasonCode != ca.ReasonCertificateHold {
		t.Error("hold entry missing its reason")
	}
	if _, ok := got[serials[2]]; ok {
		t.Error("unheld certificate still listed")
	}
	latest, err := a.Authority.LatestCRL(ctx, ca.IssuingID)
	if err != nil || latest.Number != crl2.Number {
		t.Fatalf("latest CRL %v %v", latest, err)
	}
	_ = big.NewInt
}

// TestLargeCRLParallelScan builds a CRL big enough to be read in parallel
// notAfter slices and checks that every revoked certificate is in it
// exactly once.
func TestLargeCRLParallelScan(t *testing.T) {
	if testing.Short() {
		t.Skip("populates 60k rows")
	}
	a := newInstance(t, hsm.SM2, "")
	want := populateRevoked(t, a, 60_000)
	crl, err := a.Authority.GenerateCRL(context.Background(), ca.IssuingID)
	if err != nil {
		t.Fatal(err)
	}
	rl, err := smx509.ParseRevocationList(crl.DER)
	if err != nil {
		t.Fatal(err)
	}
	if err := rl.CheckSignatureFrom(parseCert(t, a.Authority.CAs()[1].DER)); err != nil {
		t.Fatal(err)
	}
	seen := make(map[string]bool, len(want))
	for _, e := range rl.RevokedCertificateEntries {
		s := e.SerialNumber.Text(16)
		if seen[s] {
			t.Fatalf("serial %s listed twice", s)
		}
		seen[s] = true
	}
	for _, s := range want {
		if !seen[s] {
			t.Fatalf("serial %s missing", s)
		}
	}
	if len(seen) != len(want) {
		t.Fatalf("%d entries, want %d", len(seen), len(want))
	}
}
