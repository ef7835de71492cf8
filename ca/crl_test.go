package ca

import (
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmtrust/gmtrust/internal/sigalg"
)

// TestEncodeCRLSizes checks the single-buffer encoder at every length
// form of the outer headers: no entries (revokedCertificates absent), a
// few, and enough for 3- and 4-octet lengths.
func TestEncodeCRLSizes(t *testing.T) {
	key, err := sigalg.GenerateKey(rand.Reader, "sm2")
	if err != nil {
		t.Fatal(err)
	}
	name, _ := caName("Test CRL CA", "Test")
	certDER, err := buildCA(caSpec{subject: name, issuerName: name, pub: key.Public(), signer: key, pathLen: 0,
		notBefore: time.Now().Add(-time.Hour), notAfter: time.Now().Add(time.Hour)}, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := smx509.ParseCertificate(certDER)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	for _, n := range []int{0, 1, 3, 2000, 300000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			p := crlParams{alg: sigalg.SM2WithSM3, issuer: caCert.RawSubject, aki: caCert.SubjectKeyId, number: int64(n + 1), thisUpdate: now, nextUpdate: now.Add(time.Hour)}
			der, err := encodeCRL(p, func(app *entryAppender) error {
				add := app.add
				for i := 0; i < n; i++ {
					e := RevokedEntry{Serial: fmt.Sprintf("4%031x", i+1), RevokedAt: now.Add(-time.Minute), Reason: i % 7}
					if e.Reason == 6 {
						e.InvalidityDate = now.Add(-time.Hour)
					}
					if err := add(e); err != nil {
						return err
					}
				}
				return nil
			}, func(tbs []byte) ([]byte, error) {
				sig, _, err := sigalg.Sign(key, tbs)
				return sig, err
			})
			if err != nil {
				t.Fatal(err)
			}
			rl, err := smx509.ParseRevocationList(der)
			if err != nil {
				t.Fatal(err)
			}
			if err := rl.CheckSignatureFrom(caCert); err != nil {
				t.Fatalf("signature: %v", err)
			}
			if len(rl.RevokedCertificateEntries) != n || rl.Number.Int64() != int64(n+1) {
				t.Fatalf("%d entries, number %v", len(rl.RevokedCertificateEntries), rl.Number)
			}
			for i, e := range rl.RevokedCertificateEntries {
				if e.ReasonCode != i%7 || e.SerialNumber.Text(16) != fmt.Sprintf("4%031x", i+1) {
					t.Fatalf("entry %d: serial %x reason %d", i, e.SerialNumber, e.ReasonCode)
				}
			}
		})
	}
}
