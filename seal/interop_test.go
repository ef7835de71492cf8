package seal

import (
	"bytes"
	"context"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/emmansun/gmsm/smx509"
	tjsm2 "github.com/tjfoc/gmsm/sm2"
	tjx509 "github.com/tjfoc/gmsm/x509"

	"github.com/gmtrust/gmtrust/internal/testutil"
)

// signedPair is one signature made by our code with the bytes it covers.
type signedPair struct {
	name    string
	certDER []byte // certificate of the key that signed
	signed  []byte // exact bytes the signature covers
	sig     []byte // DER SEQUENCE{r, s}
}

// ourSignatures makes a seal and a stamp and returns the maker and signer
// signatures with the bytes they cover, as ParseSignature extracts them.
func ourSignatures(t *testing.T) []signedPair {
	p := newTestPKI(t)
	der := stampTest(t, p, makeTestSeal(t, p))
	sig, err := ParseSignature(der)
	if err != nil {
		t.Fatal(err)
	}
	// Cut the signed structures out with encoding/asn1 too, so the
	// cross-check does not depend on our own parser.
	maker, signer := testutil.SealSignatureParts(t, der)
	if !bytes.Equal(signer.Signed, sig.RawTBS) || !bytes.Equal(maker.Signed, sig.Seal.SignedBytes) ||
		!bytes.Equal(signer.Sig, sig.Value) || !bytes.Equal(maker.Sig, sig.Seal.SignedValue) {
		t.Fatal("our parser and encoding/asn1 disagree on the signed bytes")
	}
	return []signedPair{
		{"maker over SES_SealInfo", sig.Seal.MakerCert, sig.Seal.SignedBytes, sig.Seal.SignedValue},
		{"signer over TBS_Sign", sig.SignerCert, sig.RawTBS, sig.Value},
	}
}

// TestInteropTjfoc verifies our seal and stamp signatures with an
// independent SM2 implementation (tjfoc/gmsm) and the standard ID.
func TestInteropTjfoc(t *testing.T) {
	for _, sp := range ourSignatures(t) {
		t.Run(sp.name, func(t *testing.T) {
			if !tjfocVerify(t, sp.certDER, sp.signed, sp.sig) {
				t.Fatal("tjfoc/gmsm rejects the signature")
			}
			// And it must not verify over anything else.
			tampered := append([]byte(nil), sp.signed...)
			tampered[len(tampered)/2] ^= 1
			if tjfocVerify(t, sp.certDER, tampered, sp.sig) {
				t.Fatal("tjfoc/gmsm accepts the signature over tampered bytes")
			}
		})
	}
}

// tjfocVerify reports whether tjfoc/gmsm accepts sig (DER) over signed
// with the key of the certificate certDER and the standard ID; tjfoc
// reads the key from the certificate itself.
func tjfocVerify(t *testing.T, certDER, signed, sig []byte) bool {
	t.Helper()
	cert, err := tjx509.ParseCertificate(certDER)
	if err != nil {
		t.Fatal(err)
	}
	var spki struct {
		Algo pkix.AlgorithmIdentifier
		Key  asn1.BitString
	}
	if _, err := asn1.Unmarshal(cert.RawSubjectPublicKeyInfo, &spki); err != nil || len(spki.Key.Bytes) != 65 || spki.Key.Bytes[0] != 4 {
		t.Fatalf("SPKI is not an uncompressed P-256 point: %v", err)
	}
	pt := spki.Key.Bytes
	pub := &tjsm2.PublicKey{Curve: tjsm2.P256Sm2(), X: new(big.Int).SetBytes(pt[1:33]), Y: new(big.Int).SetBytes(pt[33:])}
	if !pub.IsOnCurve(pub.X, pub.Y) {
		t.Fatal("point not on the SM2 curve")
	}
	var rs struct{ R, S *big.Int }
	if rest, err := asn1.Unmarshal(sig, &rs); err != nil || len(rest) != 0 {
		t.Fatalf("signature is not DER SEQUENCE{r,s}: %v", err)
	}
	return tjsm2.Sm2Verify(pub, signed, []byte("1234567812345678"), rs.R, rs.S)
}

// TestInteropOpenSSL verifies the same signatures with the OpenSSL command
// line and the standard ID.
func TestInteropOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("openssl not found; CI must have it")
		}
		t.Skip("openssl not found")
	}
	for _, sp := range ourSignatures(t) {
		t.Run(sp.name, func(t *testing.T) {
			dir := t.TempDir()
			cert, err := smx509.ParseCertificate(sp.certDER)
			if err != nil {
				t.Fatal(err)
			}
			spki, err := smx509.MarshalPKIXPublicKey(cert.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			files := map[string][]byte{
				"pub.pem":    pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}),
				"sig.der":    sp.sig,
				"signed.der": sp.signed,
			}
			for name, b := range files {
				if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			run := func() ([]byte, error) {
				cmd := exec.Command("openssl", "dgst", "-sm3", "-verify", "pub.pem",
					"-sigopt", "distid:1234567812345678", "-signature", "sig.der", "signed.der")
				cmd.Dir = dir
				return cmd.CombinedOutput()
			}
			if out, err := run(); err != nil {
				t.Fatalf("openssl rejects the signature: %v\n%s", err, out)
			}
			// Control: OpenSSL must reject the same signature over other bytes.
			bad := append([]byte(nil), sp.signed...)
			bad[len(bad)/2] ^= 1
			if err := os.WriteFile(filepath.Join(dir, "signed.der"), bad, 0o600); err != nil {
				t.Fatal(err)
			}
			if out, err := run(); err == nil {
				t.Fatalf("openssl accepts the signature over tampered bytes:\n%s", out)
			}
		})
	}
}

// TestInteropOpenSSLChain checks that the SM2 certificate links PoolTrust
// accepts are standard-ID signatures by OpenSSL's reckoning too (one link
// at a time: openssl/openssl#23471 applies -vfyopt to the target only).
func TestInteropOpenSSLChain(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("openssl not found; CI must have it")
		}
		t.Skip("openssl not found")
	}
	p, other := newTestPKI(t), newTestPKI(t)
	dir := t.TempDir()
	write := func(name string, der []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("root.pem", p.rootDER)
	write("holder.pem", p.holderDER)
	write("stranger.pem", other.holderDER)
	verify := func(leaf string) error {
		cmd := exec.Command("openssl", "verify", "-no-CApath", "-no-CAstore", "-vfyopt", "distid:1234567812345678",
			"-partial_chain", "-CAfile", "root.pem", "-attime", fmt.Sprint(tSign.Unix()), leaf)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	if err := verify("holder.pem"); err != nil {
		t.Fatalf("openssl rejects a link PoolTrust accepts: %v", err)
	}
	if res, err := mustTrust(t, p.rootDER).VerifyChain(context.Background(), p.holderDER, tSign); err != nil || res.Status != ChainTrusted {
		t.Fatalf("PoolTrust: %+v %v", res, err)
	}
	if err := verify("stranger.pem"); err == nil {
		t.Fatal("openssl accepts a certificate of another root")
	}
}
