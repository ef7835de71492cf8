package policies

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"math/big"
	"testing"
	"time"
)

func TestParseKeyUsage(t *testing.T) {
	tests := []struct {
		in   string
		want x509.KeyUsage
	}{
		{"digitalSignature", x509.KeyUsageDigitalSignature},
		{"nonRepudiation", x509.KeyUsageContentCommitment},
		{"contentCommitment", x509.KeyUsageContentCommitment},
		{"keyEncipherment", x509.KeyUsageKeyEncipherment},
		{"dataEncipherment", x509.KeyUsageDataEncipherment},
		{"keyAgreement", x509.KeyUsageKeyAgreement},
		// Not for end-entity profiles, or misspelt.
		{"keyCertSign", 0},
		{"cRLSign", 0},
		{"DigitalSignature", 0},
		{"", 0},
	}
	for _, tt := range tests {
		got, err := ParseKeyUsage(tt.in)
		if tt.want == 0 {
			if !errors.Is(err, ErrUnknownKeyUsage) {
				t.Errorf("ParseKeyUsage(%q) = %v, %v; want ErrUnknownKeyUsage", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseKeyUsage(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

// TestParseExtKeyUsage checks each OID against crypto/x509's own table:
// a certificate carrying the OID as an unknown EKU must parse back as the
// matching x509.ExtKeyUsage, which is what Decision.ExtKeyUsage holds.
func TestParseExtKeyUsage(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"serverAuth", "clientAuth", "emailProtection", "codeSigning", "timeStamping", "OCSPSigning"} {
		oid, err := ParseExtKeyUsage(name)
		if err != nil {
			t.Fatalf("ParseExtKeyUsage(%q): %v", name, err)
		}
		eku, oid2, _ := parseExtKeyUsage(name)
		if !oid.Equal(oid2) {
			t.Fatalf("%s: OIDs differ", name)
		}
		tmpl := &x509.Certificate{
			SerialNumber:       big.NewInt(1),
			NotBefore:          time.Unix(0, 0),
			NotAfter:           time.Unix(3600, 0),
			UnknownExtKeyUsage: []asn1.ObjectIdentifier{oid},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		if len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != eku || len(cert.UnknownExtKeyUsage) != 0 {
			t.Errorf("%s: OID %v parses as %v / %v, want %v", name, oid, cert.ExtKeyUsage, cert.UnknownExtKeyUsage, eku)
		}
	}
	for _, bad := range []string{"anyExtendedKeyUsage", "ocspSigning", ""} {
		if _, err := ParseExtKeyUsage(bad); !errors.Is(err, ErrUnknownExtKeyUsage) {
			t.Errorf("ParseExtKeyUsage(%q) error = %v", bad, err)
		}
	}
	// The result is a copy: changing it must not change later results.
	oid, _ := ParseExtKeyUsage("serverAuth")
	oid[0] = 99
	if again, _ := ParseExtKeyUsage("serverAuth"); again[0] != 1 {
		t.Fatal("ParseExtKeyUsage returned the shared table entry")
	}
}
