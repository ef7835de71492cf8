package policies

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"
)

// TestDecisionsLint encodes certificates from Check's decisions with
// ECDSA and RSA keys (zlint cannot parse SM2) and runs zlint on them, as
// an independent check of the key usage per key type, the EKUs and the
// SAN handling. Only errors from lints about what a profile decides are
// considered; the rest (AIA, policies, ...) is the CA encoder's business.
// staff-enc is left out: without an EKU zlint judges it by the TLS
// Baseline Requirements, which do not apply to encryption certificates.
func TestDecisionsLint(t *testing.T) {
	if testing.Short() {
		t.Skip("zlint run")
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "gmtrust test CA", Country: []string{"CN"}, Organization: []string{"某省人民政府"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * day),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	keys := map[string]crypto.PublicKey{"p256": ecKey(t, elliptic.P256()), "rsa2048": &rsaKey.PublicKey}
	set := defaultSet(t)
	for _, profileName := range []string{"server-tls", "staff-sign", "ocsp-signer"} {
		for keyName, pub := range keys {
			t.Run(profileName+"/"+keyName, func(t *testing.T) {
				p, _ := set.Get(profileName)
				req := validRequest(t, profileName, pub)
				switch profileName {
				case "server-tls":
					// A public address: zlint applies the public-TLS rule
					// against reserved ranges, which server-tls, for a
					// private PKI, does not.
					req.IPAddresses = []net.IP{net.ParseIP("202.96.128.86")}
					req = withSubject(t, req, at{typ: "CN", value: "202.96.128.86"}, at{typ: "O", value: "某省财政厅"})
				case "staff-sign":
					req.EmailAddresses = []string{"zhangsan@czt.example.gov.cn"}
				}
				d, err := p.Check(req)
				if err != nil {
					t.Fatal(err)
				}
				tmpl := &x509.Certificate{
					SerialNumber:          big.NewInt(0x1234567890),
					RawSubject:            req.RawSubject,
					NotBefore:             time.Now(),
					NotAfter:              time.Now().Add(d.Validity),
					KeyUsage:              d.KeyUsage,
					ExtKeyUsage:           d.ExtKeyUsage,
					BasicConstraintsValid: true,
					DNSNames:              req.DNSNames,
					IPAddresses:           req.IPAddresses,
					EmailAddresses:        req.EmailAddresses,
				}
				if d.OCSPNoCheck {
					tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: OIDOCSPNoCheck, Value: []byte{0x05, 0x00}})
				}
				der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caKey)
				if err != nil {
					t.Fatal(err)
				}
				cert, err := zx509.ParseCertificate(der)
				if err != nil {
					t.Fatal(err)
				}
				nocheck := false
				for _, e := range cert.Extensions {
					nocheck = nocheck || e.Id.String() == "1.3.6.1.5.5.7.48.1.5"
				}
				if d.OCSPNoCheck != nocheck {
					t.Errorf("OCSPNoCheck: decision %v, id-pkix-ocsp-nocheck present %v", d.OCSPNoCheck, nocheck)
				}
				results := zlint.LintCertificate(cert)
				for name, r := range results.Results {
					if r.Status < lint.Error || !relevantLint(name) {
						continue
					}
					t.Errorf("%s: %s %s", name, r.Status, r.Details)
				}
			})
		}
	}
}

// relevantLint selects lints about key usage, EKU and SAN/subject names.
func relevantLint(name string) bool {
	for _, s := range []string{"key_usage", "_ku", "eku", "san", "dns", "subject_common_name", "ip_address", "ext_key_usage", "keyagreement", "key_agreement"} {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}
