package e2e

import (
	"crypto/ecdsa"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"

	tjsm2 "github.com/tjfoc/gmsm/sm2"
	tjx509 "github.com/tjfoc/gmsm/x509"

	"github.com/gmtrust/gmtrust/internal/testutil"
)

// TestTjfocCrossVerify checks the SM2 hierarchy and its CRLs with a second,
// independent SM2 implementation (tjfoc/gmsm), so that a mistake shared by
// gmtrust's signer and emmansun/gmsm's verifier (say, the wrong ZA) cannot
// hide. Everything goes through the binary's CLI.
func TestTjfocCrossVerify(t *testing.T) {
	in := newInstance(t, initOptions{algorithm: "sm2"})
	dir := t.TempDir()
	csrFile := filepath.Join(dir, "leaf.csr")
	csr := testutil.NewCSR(t, testutil.NewKey(t, "sm2"), testutil.CSROptions{Subject: pkix.Name{CommonName: "李四", OrganizationalUnit: []string{"省财政厅"}}})
	if err := os.WriteFile(csrFile, csr, 0o600); err != nil {
		t.Fatal(err)
	}
	var res struct {
		Serial      string   `json:"serial"`
		Certificate string   `json:"certificate"`
		Chain       []string `json:"chain"`
	}
	out := in.must("cert", "issue", "--csr", csrFile, "--profile", "staff-sign", "--department", "czt", "--json")
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Chain) != 2 {
		t.Fatalf("cert issue --json: %v %s", err, out)
	}
	in.must("cert", "revoke", res.Serial, "--reason", "keyCompromise")
	crls := map[string][]byte{}
	for _, id := range []string{"issuing", "root"} {
		f := filepath.Join(dir, id+".crl")
		in.must("crl", "generate", "--ca", id, "--out", f)
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		crls[id] = b
	}

	leaf := tjParse(t, res.Certificate)
	issuing := tjParse(t, res.Chain[0])
	root := tjParse(t, res.Chain[1])
	if leaf.SignatureAlgorithm != tjx509.SM2WithSM3 || issuing.SignatureAlgorithm != tjx509.SM2WithSM3 || root.SignatureAlgorithm != tjx509.SM2WithSM3 {
		t.Fatalf("signature algorithms %v %v %v, want SM2-SM3", leaf.SignatureAlgorithm, issuing.SignatureAlgorithm, root.SignatureAlgorithm)
	}

	chain := []struct {
		name          string
		child, parent *tjx509.Certificate
	}{
		{"leaf by issuing CA", leaf, issuing},
		{"issuing CA by root", issuing, root},
		{"root by itself", root, root},
	}
	for _, c := range chain {
		if err := c.child.CheckSignatureFrom(c.parent); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		// Negative control: the same check over a tampered TBS fails.
		tbs := append([]byte(nil), c.child.RawTBSCertificate...)
		tbs[len(tbs)/2] ^= 0x01
		if err := c.parent.CheckSignature(c.child.SignatureAlgorithm, tbs, c.child.Signature); err == nil {
			t.Errorf("%s: tampered certificate verified", c.name)
		}
	}
	if leaf.SerialNumber.Text(16) != res.Serial {
		t.Errorf("tjfoc reads serial %x, gmtrust says %s", leaf.SerialNumber, res.Serial)
	}

	for id, signer := range map[string]*tjx509.Certificate{"issuing": issuing, "root": root} {
		crl, err := tjx509.ParseDERCRL(crls[id])
		if err != nil {
			t.Fatalf("%s CRL: %v", id, err)
		}
		pub := sm2Pub(t, signer)
		tbs := crl.TBSCertList.Raw
		if !tjVerify(t, pub, tbs, crl.SignatureValue.RightAlign()) {
			t.Errorf("%s CRL signature does not verify with tjfoc (default uid)", id)
		}
		tampered := append([]byte(nil), tbs...)
		tampered[len(tampered)/2] ^= 0x01
		if tjVerify(t, pub, tampered, crl.SignatureValue.RightAlign()) {
			t.Errorf("%s CRL: tampered TBSCertList verified", id)
		}
		var listed bool
		for _, rc := range crl.TBSCertList.RevokedCertificates {
			listed = listed || rc.SerialNumber.Text(16) == res.Serial
		}
		if want := id == "issuing"; listed != want {
			t.Errorf("%s CRL lists the revoked leaf: %v, want %v", id, listed, want)
		}
	}
}

func tjParse(t *testing.T, p string) *tjx509.Certificate {
	t.Helper()
	b, _ := pem.Decode([]byte(p))
	if b == nil {
		t.Fatalf("no PEM in %q", p)
	}
	c, err := tjx509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatalf("tjfoc cannot parse: %v", err)
	}
	return c
}

// sm2Pub returns the SM2 public key of a certificate tjfoc parsed.
func sm2Pub(t *testing.T, c *tjx509.Certificate) *tjsm2.PublicKey {
	t.Helper()
	if k, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != tjsm2.P256Sm2() {
		t.Fatalf("tjfoc parsed a %T key, want one on the SM2 curve", c.PublicKey)
	}
	pub, err := tjx509.ParseSm2PublicKey(c.RawSubjectPublicKeyInfo)
	if err != nil {
		t.Fatalf("tjfoc SM2 public key: %v", err)
	}
	return pub
}

// tjVerify checks a DER SEQUENCE{r, s} SM2 signature with tjfoc, uid nil
// meaning its default 1234567812345678.
func tjVerify(t *testing.T, pub *tjsm2.PublicKey, msg, sig []byte) bool {
	t.Helper()
	var rs struct{ R, S *big.Int }
	if rest, err := asn1.Unmarshal(sig, &rs); err != nil || len(rest) != 0 {
		t.Fatalf("signature is not DER SEQUENCE{r, s}: %v", err)
	}
	return tjsm2.Sm2Verify(pub, msg, nil, rs.R, rs.S)
}
