package ocsp

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"
	tjsm3 "github.com/tjfoc/gmsm/sm3"
	tjx509 "github.com/tjfoc/gmsm/x509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
	xocsp "golang.org/x/crypto/ocsp"

	"github.com/gmtrust/gmtrust/internal/sigalg"
)

// testPKI is a CA with two leaves and a delegated OCSP responder, for one
// key algorithm. SM2 certificates are made with smx509, the others with
// crypto/x509. The PEM files are in dir for OpenSSL.
type testPKI struct {
	alg     string
	dir     string
	caKey   crypto.Signer
	ca      *smx509.Certificate
	leaves  []*smx509.Certificate
	respKey crypto.Signer
	resp    *smx509.Certificate
}

// newTestPKI makes a hierarchy valid around time.Now, since OpenSSL checks
// certificate validity against the real clock.
func newTestPKI(t testing.TB, alg string) *testPKI {
	t.Helper()
	p := &testPKI{alg: alg, dir: t.TempDir()}
	p.caKey = genKey(t, alg)
	p.ca = issue(t, alg, "gmtrust test CA "+alg, big.NewInt(1), p.caKey.Public(), p.caKey, nil, true, false)
	serials := []*big.Int{
		new(big.Int).SetUint64(0x1234567890abcdef),
		// 20 octets with the top bit clear: the longest RFC 5280 allows.
		new(big.Int).SetBytes(bytes.Repeat([]byte{0x7f}, 20)),
	}
	// Leaf keys play no part in OCSP; P-256 keeps RSA test setup fast.
	leafAlg := "ecdsa-p256"
	if alg == "sm2" {
		leafAlg = "sm2"
	}
	for i, sn := range serials {
		k := genKey(t, leafAlg)
		p.leaves = append(p.leaves, issue(t, alg, "leaf", sn, k.Public(), p.caKey, p.ca, false, false))
		p.writePEM(t, "leaf"+string(rune('1'+i))+".pem", p.leaves[i].Raw)
	}
	p.respKey = genKey(t, alg)
	p.resp = issue(t, alg, "gmtrust test OCSP responder", big.NewInt(99), p.respKey.Public(), p.caKey, p.ca, false, true)
	p.writePEM(t, "ca.pem", p.ca.Raw)
	p.writePEM(t, "resp.pem", p.resp.Raw)
	return p
}

func genKey(t testing.TB, alg string) crypto.Signer {
	t.Helper()
	k, err := sigalg.GenerateKey(rand.Reader, alg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// issue makes a certificate; parent nil means self-signed.
func issue(t testing.TB, alg, cn string, serial *big.Int, pub crypto.PublicKey, signer crypto.Signer, parent *smx509.Certificate, isCA, ocspSigning bool) *smx509.Certificate {
	t.Helper()
	now := time.Now()
	var der []byte
	var err error
	if alg == "sm2" {
		tmpl := &smx509.Certificate{
			SerialNumber:          serial,
			Subject:               pkix.Name{CommonName: cn, Organization: []string{"gmtrust"}},
			NotBefore:             now.Add(-time.Hour),
			NotAfter:              now.Add(24 * time.Hour),
			BasicConstraintsValid: true,
			IsCA:                  isCA,
			KeyUsage:              smx509.KeyUsageDigitalSignature,
		}
		if isCA {
			tmpl.KeyUsage |= smx509.KeyUsageCertSign | smx509.KeyUsageCRLSign
		}
		if ocspSigning {
			tmpl.ExtKeyUsage = []smx509.ExtKeyUsage{smx509.ExtKeyUsageOCSPSigning}
		}
		if parent == nil {
			parent = tmpl
		}
		der, err = smx509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	} else {
		tmpl := &x509.Certificate{
			SerialNumber:          serial,
			Subject:               pkix.Name{CommonName: cn, Organization: []string{"gmtrust"}},
			NotBefore:             now.Add(-time.Hour),
			NotAfter:              now.Add(24 * time.Hour),
			BasicConstraintsValid: true,
			IsCA:                  isCA,
			KeyUsage:              x509.KeyUsageDigitalSignature,
		}
		if isCA {
			tmpl.KeyUsage |= x509.KeyUsageCertSign | x509.KeyUsageCRLSign
		}
		if ocspSigning {
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}
		}
		xparent := tmpl
		if parent != nil {
			if xparent, err = x509.ParseCertificate(parent.Raw); err != nil {
				t.Fatal(err)
			}
		}
		der, err = x509.CreateCertificate(rand.Reader, tmpl, xparent, pub, signer)
	}
	if err != nil {
		t.Fatalf("creating %s certificate %q: %v", alg, cn, err)
	}
	c, err := smx509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (p *testPKI) writePEM(t testing.TB, name string, der []byte) {
	t.Helper()
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(filepath.Join(p.dir, name), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// x509Pair returns leaf i and the CA as *x509.Certificate for
// golang.org/x/crypto/ocsp. crypto/x509 cannot parse SM2 keys, but
// CreateRequest only reads the raw issuer fields and the serial number.
func (p *testPKI) x509Pair(t testing.TB, i int) (leaf, ca *x509.Certificate) {
	t.Helper()
	if p.alg == "sm2" {
		return &x509.Certificate{SerialNumber: p.leaves[i].SerialNumber},
			&x509.Certificate{RawSubject: p.ca.RawSubject, RawSubjectPublicKeyInfo: p.ca.RawSubjectPublicKeyInfo}
	}
	leaf, err := x509.ParseCertificate(p.leaves[i].Raw)
	if err != nil {
		t.Fatal(err)
	}
	ca, err = x509.ParseCertificate(p.ca.Raw)
	if err != nil {
		t.Fatal(err)
	}
	return leaf, ca
}

// certID computes the expected CertID of leaf i.
func (p *testPKI) certID(t testing.TB, h HashAlg, i int) CertID {
	t.Helper()
	id, err := NewCertID(h, p.ca.RawSubject, p.ca.RawSubjectPublicKeyInfo, p.leaves[i].SerialNumber)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func keyHash(t testing.TB, c *smx509.Certificate) []byte {
	t.Helper()
	bits, err := SubjectPublicKeyBits(c.RawSubjectPublicKeyInfo)
	if err != nil {
		t.Fatal(err)
	}
	return HashSHA1.Sum(bits)
}

// requireOpenSSL returns the openssl binary, skipping the test when it is
// missing unless CI=true.
func requireOpenSSL(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("openssl is required in CI: %v", err)
		}
		t.Skipf("openssl not found: %v", err)
	}
	return path
}

// runOpenSSL runs openssl in dir and returns its combined output.
func runOpenSSL(t testing.TB, bin, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// sameCertID compares what a CertID identifies (not RawHashAlgorithm).
func sameCertID(got, want CertID) bool {
	return got.HashAlgorithm == want.HashAlgorithm &&
		bytes.Equal(got.IssuerNameHash, want.IssuerNameHash) &&
		bytes.Equal(got.IssuerKeyHash, want.IssuerKeyHash) &&
		got.SerialNumber != nil && want.SerialNumber != nil &&
		got.SerialNumber.Cmp(want.SerialNumber) == 0
}

// The request builder below writes OCSPRequests field by field so tests
// can make every kind of malformed request. It does not share code with
// the package.

type extSpec struct {
	oid           asn1.ObjectIdentifier
	critical      bool
	explicitFalse bool // write critical FALSE explicitly
	value         []byte
}

type idSpec struct {
	rawAlg   []byte // replaces the AlgorithmIdentifier when set
	hashOID  asn1.ObjectIdentifier
	params   []byte // DER after the OID; nil for none
	nameHash []byte
	keyHash  []byte
	serial   []byte // INTEGER contents
	extra    []byte // DER appended inside CertID
	exts     []extSpec
}

type reqSpec struct {
	version   []byte // contents of an explicit version INTEGER
	requestor []byte // DER GeneralName
	listTag   cbasn1.Tag
	ids       []idSpec
	exts      []extSpec
	signature []byte // DER inside [0] optionalSignature
	trailing  []byte
}

var (
	oidSHA1Test   = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA256Test = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSM3Test    = asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 401}
	oidMD5Test    = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 5}
	oidNonceTest  = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}
	oidOtherTest  = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 7} // service locator
)

var derNULL = []byte{0x05, 0x00}

func testID(oid asn1.ObjectIdentifier, size int, serial ...byte) idSpec {
	return idSpec{
		hashOID:  oid,
		params:   derNULL,
		nameHash: bytes.Repeat([]byte{0xaa}, size),
		keyHash:  bytes.Repeat([]byte{0xbb}, size),
		serial:   serial,
	}
}

func octetString(b []byte) []byte {
	var bb cryptobyte.Builder
	bb.AddASN1OctetString(b)
	return bb.BytesOrPanic()
}

func (a idSpec) algDER() []byte {
	if a.rawAlg != nil {
		return a.rawAlg
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(a.hashOID)
		b.AddBytes(a.params)
	})
	return b.BytesOrPanic()
}

func addExtensions(b *cryptobyte.Builder, tag cbasn1.Tag, exts []extSpec) {
	if exts == nil {
		return
	}
	b.AddASN1(tag, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			for _, e := range exts {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(e.oid)
					if e.critical || e.explicitFalse {
						b.AddASN1Boolean(e.critical)
					}
					b.AddASN1OctetString(e.value)
				})
			}
		})
	})
}

func (r reqSpec) der() []byte {
	var b cryptobyte.Builder
	listTag := r.listTag
	if listTag == 0 {
		listTag = cbasn1.SEQUENCE
	}
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			if r.version != nil {
				b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.INTEGER, func(b *cryptobyte.Builder) { b.AddBytes(r.version) })
				})
			}
			if r.requestor != nil {
				b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					b.AddBytes(r.requestor)
				})
			}
			b.AddASN1(listTag, func(b *cryptobyte.Builder) {
				for _, id := range r.ids {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddBytes(id.algDER())
							b.AddASN1OctetString(id.nameHash)
							b.AddASN1OctetString(id.keyHash)
							b.AddASN1(cbasn1.INTEGER, func(b *cryptobyte.Builder) { b.AddBytes(id.serial) })
							b.AddBytes(id.extra)
						})
						addExtensions(b, cbasn1.Tag(0).Constructed().ContextSpecific(), id.exts)
					})
				}
			})
			addExtensions(b, cbasn1.Tag(2).Constructed().ContextSpecific(), r.exts)
		})
		if r.signature != nil {
			b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddBytes(r.signature)
			})
		}
	})
	return append(b.BytesOrPanic(), r.trailing...)
}

// algs are the responder key algorithms every round trip covers.
func algs() []string { return []string{"sm2", "ecdsa-p256", "rsa-2048"} }

// xStatus maps our statuses to golang.org/x/crypto/ocsp's.
func xStatus(s Status) int {
	switch s {
	case Good:
		return xocsp.Good
	case Revoked:
		return xocsp.Revoked
	case Unknown:
		return xocsp.Unknown
	}
	return -1
}

// cutResponse splits a response with encoding/asn1, independently of the
// package parser, into the signed bytes, the signature and its algorithm.
func cutResponse(t testing.TB, der []byte) (tbs, sig []byte, alg asn1.ObjectIdentifier) {
	t.Helper()
	var resp struct {
		Status asn1.Enumerated
		Bytes  struct {
			Type     asn1.ObjectIdentifier
			Response []byte
		} `asn1:"explicit,tag:0"`
	}
	if rest, err := asn1.Unmarshal(der, &resp); err != nil || len(rest) != 0 {
		t.Fatalf("encoding/asn1 cannot read the OCSPResponse: %v (%d trailing bytes)", err, len(rest))
	}
	var basic struct {
		TBS   asn1.RawValue
		Alg   pkix.AlgorithmIdentifier
		Sig   asn1.BitString
		Certs []asn1.RawValue `asn1:"optional,explicit,tag:0"`
	}
	if rest, err := asn1.Unmarshal(resp.Bytes.Response, &basic); err != nil || len(rest) != 0 {
		t.Fatalf("encoding/asn1 cannot read the BasicOCSPResponse: %v (%d trailing bytes)", err, len(rest))
	}
	return basic.TBS.FullBytes, basic.Sig.RightAlign(), basic.Alg.Algorithm
}

func TestXCryptoRequests(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	hashes := []struct {
		hash crypto.Hash
		want HashAlg
	}{
		{crypto.SHA1, HashSHA1},
		{crypto.SHA256, HashSHA256},
		{crypto.SHA384, HashSHA384},
		{crypto.SHA512, HashSHA512},
	}
	for _, alg := range algs() {
		p := newTestPKI(t, alg)
		for _, h := range hashes {
			t.Run(alg+"/"+h.want.String(), func(t *testing.T) {
				leaf, ca := p.x509Pair(t, 1)
				der, err := xocsp.CreateRequest(leaf, ca, &xocsp.RequestOptions{Hash: h.hash})
				if err != nil {
					t.Fatal(err)
				}
				req, err := ParseRequest(der)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(req.Raw, der) || req.HasNonce || req.Nonce != nil || req.Signed || req.RequestorName != nil {
					t.Errorf("request fields: %+v", req)
				}
				if len(req.CertIDs) != 1 || !sameCertID(req.CertIDs[0], p.certID(t, h.want, 1)) {
					t.Fatalf("CertIDs = %+v, want %+v", req.CertIDs, p.certID(t, h.want, 1))
				}

				resp, err := CreateResponse(ResponseTemplate{
					Singles:          []SingleResponse{{CertID: req.CertIDs[0], Status: Good, ThisUpdate: now, NextUpdate: now.Add(time.Hour)}},
					ProducedAt:       now,
					ResponderKeyHash: keyHash(t, p.ca),
				}, p.caKey)
				if err != nil {
					t.Fatal(err)
				}
				if alg == "sm2" {
					// x/crypto/ocsp cannot verify SM2; TestSM2ResponseIndependentVerify does.
					r, err := ParseResponse(resp)
					if err != nil {
						t.Fatal(err)
					}
					if err := r.CheckSignatureFrom(p.ca.PublicKey); err != nil {
						t.Fatal(err)
					}
					return
				}
				r, err := xocsp.ParseResponseForCert(resp, leaf, ca)
				if err != nil {
					t.Fatalf("x/crypto/ocsp rejects the response: %v", err)
				}
				if r.Status != xocsp.Good || r.SerialNumber.Cmp(leaf.SerialNumber) != 0 || r.IssuerHash != h.hash {
					t.Errorf("x/crypto/ocsp reads status %d serial %x hash %v", r.Status, r.SerialNumber, r.IssuerHash)
				}
			})
		}
	}
}

func TestStatusesWithXCrypto(t *testing.T) {
	cst := time.FixedZone("CST", 8*3600)
	// Local time with a fraction: the encoding must be UTC, whole seconds.
	this := time.Date(2025, 3, 1, 20, 4, 5, 999_000_000, cst)
	want := time.Date(2025, 3, 1, 12, 4, 5, 0, time.UTC)
	revokedAt := time.Date(2024, 12, 31, 23, 59, 59, 0, time.UTC)
	cases := []struct {
		name    string
		status  Status
		reason  int
		xreason int
	}{
		{"good", Good, -1, 0},
		{"revoked keyCompromise", Revoked, xocsp.KeyCompromise, xocsp.KeyCompromise},
		{"revoked unspecified", Revoked, xocsp.Unspecified, xocsp.Unspecified},
		{"revoked aACompromise", Revoked, xocsp.AACompromise, xocsp.AACompromise},
		{"revoked without reason", Revoked, -1, xocsp.Unspecified},
		{"unknown", Unknown, -1, 0},
	}
	for _, alg := range []string{"ecdsa-p256", "rsa-2048"} {
		p := newTestPKI(t, alg)
		_, ca := p.x509Pair(t, 0)
		responders := []struct {
			name  string
			key   crypto.Signer
			cert  *smx509.Certificate
			certs [][]byte
		}{
			{"ca", p.caKey, p.ca, nil},
			{"delegated", p.respKey, p.resp, [][]byte{p.resp.Raw}},
		}
		for _, rs := range responders {
			var singles []SingleResponse
			for i, c := range cases {
				id, err := NewCertID(HashSHA256, p.ca.RawSubject, p.ca.RawSubjectPublicKeyInfo, big.NewInt(int64(1000+i)))
				if err != nil {
					t.Fatal(err)
				}
				singles = append(singles, SingleResponse{
					CertID: id, Status: c.status, RevokedAt: revokedAt, RevocationReason: c.reason,
					ThisUpdate: this, NextUpdate: this.Add(48 * time.Hour),
				})
			}
			resp, err := CreateResponse(ResponseTemplate{
				Singles: singles, ProducedAt: this, ResponderKeyHash: keyHash(t, rs.cert), Certs: rs.certs,
			}, rs.key)
			if err != nil {
				t.Fatal(err)
			}
			ours, err := ParseResponse(resp)
			if err != nil {
				t.Fatal(err)
			}
			for i, c := range cases {
				t.Run(alg+"/"+rs.name+"/"+c.name, func(t *testing.T) {
					r, err := xocsp.ParseResponseForCert(resp, &x509.Certificate{SerialNumber: big.NewInt(int64(1000 + i))}, ca)
					if err != nil {
						t.Fatalf("x/crypto/ocsp rejects the response: %v", err)
					}
					if r.Status != xStatus(c.status) {
						t.Errorf("x/crypto status %d, want %d", r.Status, xStatus(c.status))
					}
					if c.status == Revoked && (!r.RevokedAt.Equal(revokedAt) || r.RevocationReason != c.xreason) {
						t.Errorf("x/crypto revocation %v reason %d, want %v reason %d", r.RevokedAt, r.RevocationReason, revokedAt, c.xreason)
					}
					if !r.ThisUpdate.Equal(want) || !r.NextUpdate.Equal(want.Add(48*time.Hour)) || !r.ProducedAt.Equal(want) {
						t.Errorf("x/crypto times this %v next %v produced %v, want %v", r.ThisUpdate, r.NextUpdate, r.ProducedAt, want)
					}
					if !bytes.Equal(r.ResponderKeyHash, keyHash(t, rs.cert)) {
						t.Errorf("x/crypto ResponderKeyHash %x", r.ResponderKeyHash)
					}
					s := ours.Singles[i]
					if s.Status != c.status || s.RevocationReason != c.reason && c.status == Revoked {
						t.Errorf("ParseResponse status %v reason %d, want %v reason %d", s.Status, s.RevocationReason, c.status, c.reason)
					}
				})
			}
		}
	}
}

func TestSM2ResponseIndependentVerify(t *testing.T) {
	p := newTestPKI(t, "sm2")
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	nonce := octetString(bytes.Repeat([]byte{0x5a}, 32))
	resp, err := CreateResponse(ResponseTemplate{
		Singles: []SingleResponse{
			{CertID: p.certID(t, HashSM3, 0), Status: Good, ThisUpdate: now, NextUpdate: now.Add(time.Hour)},
			{CertID: p.certID(t, HashSM3, 1), Status: Revoked, RevokedAt: now.Add(-time.Hour), RevocationReason: 4, ThisUpdate: now},
		},
		ProducedAt:       now,
		Nonce:            nonce,
		ResponderKeyHash: keyHash(t, p.resp),
		Certs:            [][]byte{p.resp.Raw},
	}, p.respKey)
	if err != nil {
		t.Fatal(err)
	}
	tbs, sig, alg := cutResponse(t, resp)
	if !alg.Equal(sigalg.OIDSM2WithSM3) {
		t.Fatalf("signatureAlgorithm %v, want SM2-with-SM3", alg)
	}
	tampered := bytes.Clone(tbs)
	tampered[len(tampered)-1] ^= 1

	t.Run("tjfoc", func(t *testing.T) {
		tpub, err := tjx509.ParseSm2PublicKey(p.resp.RawSubjectPublicKeyInfo)
		if err != nil {
			t.Fatal(err)
		}
		if !tpub.Verify(tbs, sig) {
			t.Error("tjfoc/gmsm rejects the signature over tbsResponseData")
		}
		if tpub.Verify(tampered, sig) {
			t.Error("tjfoc/gmsm accepts a tampered tbsResponseData")
		}
	})

	t.Run("openssl", func(t *testing.T) {
		bin := requireOpenSSL(t)
		dir := p.dir
		for name, b := range map[string][]byte{"resp.der": resp, "tbs.der": tbs, "sig.der": sig, "bad.der": tampered} {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		runOpenSSL(t, bin, dir, "x509", "-in", "resp.pem", "-pubkey", "-noout", "-out", "pub.pem")
		out := runOpenSSL(t, bin, dir, "dgst", "-sm3", "-verify", "pub.pem", "-sigopt", "distid:1234567812345678", "-signature", "sig.der", "tbs.der")
		if !strings.Contains(out, "Verified OK") {
			t.Errorf("openssl dgst: %s", out)
		}
		cmd := exec.Command(bin, "dgst", "-sm3", "-verify", "pub.pem", "-sigopt", "distid:1234567812345678", "-signature", "sig.der", "bad.der")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Errorf("openssl dgst accepts a tampered tbsResponseData: %s", out)
		}

		text := runOpenSSL(t, bin, dir, "ocsp", "-respin", "resp.der", "-resp_text", "-noverify")
		for _, want := range []string{
			"OCSP Response Status: successful (0x0)",
			"Cert Status: good",
			"Cert Status: revoked",
			"Revocation Reason: superseded (0x4)",
			"Signature Algorithm: SM2-with-SM3",
			strings.ToUpper(hex.EncodeToString(nonce)),
		} {
			if !strings.Contains(text, want) {
				t.Errorf("openssl -resp_text lacks %q:\n%s", want, text)
			}
		}
	})
}

// openSSLNonce reads the nonce extnValue of a request with openssl
// asn1parse, as an independent view of the bytes.
func openSSLNonce(t testing.TB, bin, dir, file string) []byte {
	t.Helper()
	out := runOpenSSL(t, bin, dir, "asn1parse", "-inform", "DER", "-in", file)
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if strings.HasSuffix(strings.TrimSpace(l), ":OCSP Nonce") && i+1 < len(lines) {
			_, h, ok := strings.Cut(lines[i+1], "[HEX DUMP]:")
			if !ok {
				break
			}
			b, err := hex.DecodeString(strings.TrimSpace(h))
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	t.Fatalf("no nonce in openssl asn1parse output:\n%s", out)
	return nil
}

func TestOpenSSLRoundTrip(t *testing.T) {
	bin := requireOpenSSL(t)
	now := time.Now()
	cases := []struct {
		name   string
		args   []string
		hash   HashAlg
		leaves []int
		nonce  bool
	}{
		{"sha1-nonce", []string{"-cert", "leaf1.pem"}, HashSHA1, []int{0}, true},
		{"sha1-no-nonce", []string{"-cert", "leaf1.pem", "-no_nonce"}, HashSHA1, []int{0}, false},
		{"sha256-two-certs", []string{"-sha256", "-cert", "leaf1.pem", "-cert", "leaf2.pem"}, HashSHA256, []int{0, 1}, true},
		{"sm3-no-nonce", []string{"-sm3", "-cert", "leaf1.pem", "-no_nonce"}, HashSM3, []int{0}, false},
		{"sm3-two-certs", []string{"-sm3", "-cert", "leaf2.pem", "-cert", "leaf1.pem"}, HashSM3, []int{1, 0}, true},
	}
	for _, alg := range algs() {
		p := newTestPKI(t, alg)
		for _, tc := range cases {
			t.Run(alg+"/"+tc.name, func(t *testing.T) {
				reqFile, respFile := tc.name+".req.der", tc.name+".resp.der"
				args := append(append([]string{"ocsp", "-issuer", "ca.pem"}, tc.args...), "-reqout", reqFile)
				runOpenSSL(t, bin, p.dir, args...)
				der, err := os.ReadFile(filepath.Join(p.dir, reqFile))
				if err != nil {
					t.Fatal(err)
				}
				req, err := ParseRequest(der)
				if err != nil {
					t.Fatal(err)
				}
				if len(req.CertIDs) != len(tc.leaves) {
					t.Fatalf("%d CertIDs, want %d", len(req.CertIDs), len(tc.leaves))
				}
				for i, leaf := range tc.leaves {
					if want := p.certID(t, tc.hash, leaf); !sameCertID(req.CertIDs[i], want) {
						t.Errorf("CertID %d = %+v, want %+v", i, req.CertIDs[i], want)
					}
				}
				if req.HasNonce != tc.nonce {
					t.Fatalf("HasNonce = %v, want %v", req.HasNonce, tc.nonce)
				}
				if tc.nonce {
					if want := openSSLNonce(t, bin, p.dir, reqFile); !bytes.Equal(req.Nonce, want) {
						t.Fatalf("Nonce = %x, openssl sees %x", req.Nonce, want)
					}
				}

				var singles []SingleResponse
				for i, leaf := range tc.leaves {
					s := SingleResponse{CertID: req.CertIDs[i], Status: Good, RevocationReason: -1, ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(time.Hour)}
					if leaf == 1 {
						s.Status, s.RevokedAt, s.RevocationReason = Revoked, now.Add(-time.Hour), 1
					}
					singles = append(singles, s)
				}
				resp, err := CreateResponse(ResponseTemplate{
					Singles: singles, ProducedAt: now, Nonce: req.Nonce,
					ResponderKeyHash: keyHash(t, p.ca), Certs: [][]byte{p.ca.Raw},
				}, p.caKey)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(p.dir, respFile), resp, 0o600); err != nil {
					t.Fatal(err)
				}

				text := runOpenSSL(t, bin, p.dir, "ocsp", "-respin", respFile, "-resp_text", "-noverify")
				if got := strings.Count(text, "Cert Status: good"); got != strings.Count(fmt.Sprint(tc.leaves), "0") {
					t.Errorf("%d good statuses in:\n%s", got, text)
				}
				if revoked := len(tc.leaves) > 1; revoked != strings.Contains(text, "Revocation Reason: keyCompromise (0x1)") {
					t.Errorf("revocation not shown right:\n%s", text)
				}
				if tc.nonce != strings.Contains(text, "OCSP Nonce") {
					t.Errorf("nonce presence wrong:\n%s", text)
				}
				if alg == "sm2" {
					// OpenSSL cannot verify standard-ID SM2 responses
					// (openssl/openssl#23471); TestSM2ResponseIndependentVerify
					// checks the signature with openssl dgst instead.
					return
				}
				out := runOpenSSL(t, bin, p.dir, "ocsp", "-reqin", reqFile, "-respin", respFile, "-CAfile", "ca.pem")
				if !strings.Contains(out, "Response verify OK") || strings.Contains(strings.ToLower(out), "nonce") {
					t.Errorf("openssl does not verify the response with its nonce:\n%s", out)
				}
			})
		}
	}
}

// TestParseOpenSSLResponse parses responses that OpenSSL signs (SM2 with
// the standard ID) and checks their signatures with CheckSignatureFrom.
func TestParseOpenSSLResponse(t *testing.T) {
	bin := requireOpenSSL(t)
	for _, alg := range algs() {
		t.Run(alg, func(t *testing.T) {
			p := newTestPKI(t, alg)
			key, err := smx509.MarshalPKCS8PrivateKey(p.caKey)
			if err != nil {
				t.Fatal(err)
			}
			revokedAt := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
			index := fmt.Sprintf("V\t301231000000Z\t\t%X\tunknown\t/CN=leaf\nR\t301231000000Z\t%s,keyCompromise\t%X\tunknown\t/CN=leaf\n",
				p.leaves[0].SerialNumber, revokedAt.Format("060102150405Z"), p.leaves[1].SerialNumber)
			files := map[string][]byte{
				"ca.key":    pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}),
				"index.txt": []byte(index),
			}
			for name, b := range files {
				if err := os.WriteFile(filepath.Join(p.dir, name), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			runOpenSSL(t, bin, p.dir, "ocsp", "-issuer", "ca.pem", "-cert", "leaf1.pem", "-cert", "leaf2.pem", "-reqout", "r.der")
			args := []string{"ocsp", "-index", "index.txt", "-CA", "ca.pem", "-rsigner", "ca.pem", "-rkey", "ca.key", "-reqin", "r.der", "-respout", "o.der", "-ndays", "1"}
			if alg == "sm2" {
				args = append(args, "-rmd", "sm3", "-rsigopt", "distid:1234567812345678")
			}
			runOpenSSL(t, bin, p.dir, args...)
			der, err := os.ReadFile(filepath.Join(p.dir, "o.der"))
			if err != nil {
				t.Fatal(err)
			}
			reqDER, err := os.ReadFile(filepath.Join(p.dir, "r.der"))
			if err != nil {
				t.Fatal(err)
			}
			req, err := ParseRequest(reqDER)
			if err != nil {
				t.Fatal(err)
			}
			r, err := ParseResponse(der)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.CheckSignatureFrom(p.ca.PublicKey); err != nil {
				t.Errorf("CheckSignatureFrom rejects OpenSSL's signature: %v", err)
			}
			if err := r.CheckSignatureFrom(p.respKey.Public()); err == nil {
				t.Error("CheckSignatureFrom accepts the wrong key")
			}
			if !r.HasNonce || !bytes.Equal(r.Nonce, req.Nonce) {
				t.Errorf("nonce %x, request had %x", r.Nonce, req.Nonce)
			}
			if len(r.Singles) != 2 || r.Singles[0].Status != Good || r.Singles[1].Status != Revoked ||
				!r.Singles[1].RevokedAt.Equal(revokedAt) || r.Singles[1].RevocationReason != 1 {
				t.Fatalf("singles %+v", r.Singles)
			}
			for i, s := range r.Singles {
				if !sameCertID(s.CertID, p.certID(t, HashSHA1, i)) {
					t.Errorf("single %d CertID %+v", i, s.CertID)
				}
			}
			if r.ResponderKeyHash == nil && r.RawResponderName == nil {
				t.Error("no responderID")
			}
		})
	}
}

func TestParseRequestTable(t *testing.T) {
	sha1ID := testID(oidSHA1Test, 20, 0x01, 0x02)
	nonce16 := octetString(bytes.Repeat([]byte{0x42}, 16))
	nonceExt := func(v []byte) extSpec { return extSpec{oid: oidNonceTest, value: v} }
	one := func(mod func(*reqSpec)) []byte {
		r := reqSpec{ids: []idSpec{sha1ID}}
		if mod != nil {
			mod(&r)
		}
		return r.der()
	}
	ids := func(n int) []idSpec {
		out := make([]idSpec, n)
		for i := range out {
			out[i] = testID(oidSHA1Test, 20, byte(i+1))
		}
		return out
	}
	exts := func(n int) []extSpec {
		out := make([]extSpec, n)
		for i := range out {
			out[i] = extSpec{oid: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, i + 1}, value: []byte{1}}
		}
		return out
	}
	valid := one(nil)
	sha256NoParams := testID(oidSHA256Test, 32, 0x03)
	sha256NoParams.params = nil
	md5 := testID(oidMD5Test, 16, 0x04)
	directoryName := []byte{0xa4, 0x0f, 0x30, 0x0d, 0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x02, 'h', 'i'}
	fakeSignature := []byte{0x30, 0x0a, 0x30, 0x03, 0x06, 0x01, 0x00, 0x03, 0x03, 0x00, 0x01, 0x02}
	bigExt := func(n int) func(*reqSpec) {
		return func(r *reqSpec) {
			r.ids[0].exts = []extSpec{{oid: oidOtherTest, value: make([]byte, n)}}
		}
	}

	good := []struct {
		name  string
		der   []byte
		check func(t *testing.T, r *Request)
	}{
		{"one SHA-1 CertID", valid, func(t *testing.T, r *Request) {
			id := r.CertIDs[0]
			if len(r.CertIDs) != 1 || id.HashAlgorithm != HashSHA1 || !bytes.Equal(id.IssuerNameHash, sha1ID.nameHash) ||
				!bytes.Equal(id.IssuerKeyHash, sha1ID.keyHash) || id.SerialNumber.Int64() != 0x0102 ||
				!bytes.Equal(id.RawHashAlgorithm, sha1ID.algDER()) {
				t.Errorf("CertID %+v", id)
			}
			if r.HasNonce || r.Nonce != nil || r.Signed || r.RequestorName != nil || !bytes.Equal(r.Raw, valid) {
				t.Errorf("request %+v", r)
			}
		}},
		{"several CertIDs and RFC 8954 nonce", one(func(r *reqSpec) {
			r.ids = []idSpec{sha1ID, sha256NoParams, testID(oidSM3Test, 32, 0x00, 0x80), md5}
			r.exts = []extSpec{nonceExt(nonce16)}
		}), func(t *testing.T, r *Request) {
			want := []HashAlg{HashSHA1, HashSHA256, HashSM3, HashUnknown}
			serials := []int64{0x0102, 3, 0x80, 4}
			if len(r.CertIDs) != len(want) {
				t.Fatalf("%d CertIDs", len(r.CertIDs))
			}
			for i, id := range r.CertIDs {
				if id.HashAlgorithm != want[i] || id.SerialNumber.Int64() != serials[i] {
					t.Errorf("CertID %d: %v serial %v", i, id.HashAlgorithm, id.SerialNumber)
				}
			}
			if !bytes.Equal(r.CertIDs[1].RawHashAlgorithm, sha256NoParams.algDER()) || !bytes.Equal(r.CertIDs[3].RawHashAlgorithm, md5.algDER()) {
				t.Error("RawHashAlgorithm not kept as received")
			}
			if !r.HasNonce || !bytes.Equal(r.Nonce, nonce16) {
				t.Errorf("nonce %x, want %x", r.Nonce, nonce16)
			}
		}},
		{"raw nonce", one(func(r *reqSpec) { r.exts = []extSpec{nonceExt([]byte("0123456789abcdef"))} }), func(t *testing.T, r *Request) {
			if !r.HasNonce || string(r.Nonce) != "0123456789abcdef" {
				t.Errorf("nonce %q", r.Nonce)
			}
		}},
		{"128-byte nonce", one(func(r *reqSpec) { r.exts = []extSpec{nonceExt(octetString(make([]byte, 128)))} }), func(t *testing.T, r *Request) {
			if len(r.Nonce) != 131 {
				t.Errorf("nonce of %d bytes", len(r.Nonce))
			}
		}},
		{"everything optional present", one(func(r *reqSpec) {
			r.version = []byte{0}
			r.requestor = directoryName
			r.signature = fakeSignature
			r.ids[0].exts = []extSpec{{oid: oidOtherTest, value: []byte{0x05, 0x00}}}
			r.exts = []extSpec{{oid: oidNonceTest, explicitFalse: true, value: nonce16}, {oid: oidOtherTest, value: []byte{1}}}
		}), func(t *testing.T, r *Request) {
			if !r.Signed || !bytes.Equal(r.RequestorName, directoryName) || !bytes.Equal(r.Nonce, nonce16) {
				t.Errorf("request %+v", r)
			}
		}},
		{"MaxCertIDs CertIDs", one(func(r *reqSpec) { r.ids = ids(MaxCertIDs) }), func(t *testing.T, r *Request) {
			if len(r.CertIDs) != MaxCertIDs || r.CertIDs[MaxCertIDs-1].SerialNumber.Int64() != MaxCertIDs {
				t.Errorf("%d CertIDs", len(r.CertIDs))
			}
		}},
		{"20-octet serial", one(func(r *reqSpec) { r.ids[0].serial = bytes.Repeat([]byte{0x7f}, 20) }), func(t *testing.T, r *Request) {
			if r.CertIDs[0].SerialNumber.BitLen() != 159 {
				t.Errorf("serial %x", r.CertIDs[0].SerialNumber)
			}
		}},
		{"serial zero", one(func(r *reqSpec) { r.ids[0].serial = []byte{0} }), func(t *testing.T, r *Request) {
			if r.CertIDs[0].SerialNumber.Sign() != 0 {
				t.Errorf("serial %v", r.CertIDs[0].SerialNumber)
			}
		}},
		{"16 extensions", one(func(r *reqSpec) { r.exts = exts(16) }), func(t *testing.T, r *Request) {}},
		{"just under MaxRequestSize", one(bigExt(MaxRequestSize - 200)), func(t *testing.T, r *Request) {}},
	}
	for _, tc := range good {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseRequest(tc.der)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, r)
		})
	}

	indefinite := append(append([]byte{0x30, 0x80}, valid[2:]...), 0, 0)
	longForm := append([]byte{0x30, 0x81}, valid[1:]...)
	bad := []struct {
		name, der, want string
	}{
		{"empty", "", "not a DER OCSPRequest"},
		{"garbage", "hello, world", "not a DER OCSPRequest"},
		{"OCTET STRING", "\x04\x01\x00", "not a DER OCSPRequest"},
		{"trailing data", string(valid) + "\x00", "trailing data"},
		{"indefinite length", string(indefinite), "not a DER OCSPRequest"},
		{"non-minimal length", string(longForm), "not a DER OCSPRequest"},
		{"oversized", string(one(bigExt(MaxRequestSize))), "exceeds"},
		{"too many CertIDs", string(one(func(r *reqSpec) { r.ids = ids(MaxCertIDs + 1) })), "more than 32 CertIDs"},
		{"no CertIDs", string(one(func(r *reqSpec) { r.ids = nil })), "empty requestList"},
		{"requestList is a SET", string(one(func(r *reqSpec) { r.listTag = cbasn1.SET })), "missing requestList"},
		{"negative serial", string(one(func(r *reqSpec) { r.ids[0].serial = []byte{0x80} })), "negative"},
		{"21-octet serial", string(one(func(r *reqSpec) { r.ids[0].serial = bytes.Repeat([]byte{1}, 21) })), "exceeds 20"},
		{"non-minimal serial", string(one(func(r *reqSpec) { r.ids[0].serial = []byte{0, 1} })), "not minimally encoded"},
		{"empty serial", string(one(func(r *reqSpec) { r.ids[0].serial = []byte{} })), "empty serialNumber"},
		{"short SHA-1 hash", string(one(func(r *reqSpec) { r.ids[0].nameHash = r.ids[0].nameHash[:19] })), "want 20"},
		{"SHA-256 hash in SHA-1 CertID", string(one(func(r *reqSpec) { r.ids[0].keyHash = make([]byte, 32) })), "want 20"},
		{"hash parameters", string(one(func(r *reqSpec) { r.ids[0].params = []byte{0x04, 0x00} })), "absent or NULL"},
		{"bad hash OID", string(one(func(r *reqSpec) { r.ids[0].rawAlg = []byte{0x30, 0x04, 0x06, 0x02, 0x80, 0x01} })), "bad hashAlgorithm"},
		{"unknown hash, empty hashes", string(one(func(r *reqSpec) {
			r.ids[0] = testID(oidMD5Test, 0, 1)
		})), "issuer hashes"},
		{"data after serial", string(one(func(r *reqSpec) { r.ids[0].extra = derNULL })), "after serialNumber"},
		{"version 2", string(one(func(r *reqSpec) { r.version = []byte{1} })), "unsupported version"},
		{"requestorName not a GeneralName", string(one(func(r *reqSpec) { r.requestor = []byte{0x0c, 0x01, 'a'} })), "not a GeneralName"},
		{"optionalSignature not a SEQUENCE", string(one(func(r *reqSpec) { r.signature = []byte{0x04, 0x00} })), "optionalSignature"},
		{"critical unknown request extension", string(one(func(r *reqSpec) {
			r.exts = []extSpec{{oid: oidOtherTest, critical: true, value: []byte{1}}}
		})), "unsupported critical request extension 1.3.6.1.5.5.7.48.1.7"},
		{"critical single extension", string(one(func(r *reqSpec) {
			r.ids[0].exts = []extSpec{{oid: oidOtherTest, critical: true, value: []byte{1}}}
		})), "unsupported critical extension"},
		{"duplicate nonce", string(one(func(r *reqSpec) { r.exts = []extSpec{nonceExt(nonce16), nonceExt(nonce16)} })), "duplicate extension"},
		{"17 extensions", string(one(func(r *reqSpec) { r.exts = exts(17) })), "more than 16 extensions"},
		{"empty raw nonce", string(one(func(r *reqSpec) { r.exts = []extSpec{nonceExt([]byte{})} })), "nonce of 0 octets"},
		{"empty wrapped nonce", string(one(func(r *reqSpec) { r.exts = []extSpec{nonceExt([]byte{0x04, 0x00})} })), "nonce of 0 octets"},
		{"129-byte nonce", string(one(func(r *reqSpec) { r.exts = []extSpec{nonceExt(octetString(make([]byte, 129)))} })), "nonce of 129 octets"},
		{"129-byte raw nonce", string(one(func(r *reqSpec) { r.exts = []extSpec{nonceExt(bytes.Repeat([]byte{1}, 129))} })), "nonce of 129 octets"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseRequest([]byte(tc.der))
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseRequest = %+v, %v; want ErrMalformed", r, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

func TestParseRequestTruncated(t *testing.T) {
	der := reqSpec{
		version:   []byte{0},
		requestor: []byte{0x82, 0x01, 'x'},
		ids:       []idSpec{testID(oidSHA1Test, 20, 1), testID(oidSM3Test, 32, 0x7f, 0xff)},
		exts:      []extSpec{{oid: oidNonceTest, value: octetString(make([]byte, 32))}},
	}.der()
	if _, err := ParseRequest(der); err != nil {
		t.Fatal(err)
	}
	for i := range der {
		if _, err := ParseRequest(der[:i]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("prefix of %d/%d bytes: %v, want ErrMalformed", i, len(der), err)
		}
	}
}

func TestParseRequestCopiesInput(t *testing.T) {
	nonce := octetString([]byte("fresh nonce 0123"))
	der := reqSpec{ids: []idSpec{testID(oidSHA1Test, 20, 9)}, exts: []extSpec{{oid: oidNonceTest, value: nonce}}}.der()
	r, err := ParseRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	for i := range der {
		der[i] = 0xff
	}
	if !bytes.Equal(r.Nonce, nonce) || !bytes.Equal(r.CertIDs[0].IssuerNameHash, bytes.Repeat([]byte{0xaa}, 20)) || r.Raw[0] != 0x30 {
		t.Error("Request shares memory with the caller's buffer")
	}
}

// TestUnknownHashEchoed shows the documented handling of an unsupported
// hash: the request parses and a response echoes the CertID as received.
func TestUnknownHashEchoed(t *testing.T) {
	md5 := testID(oidMD5Test, 16, 0x42)
	md5.params = nil
	r, err := ParseRequest(reqSpec{ids: []idSpec{md5}}.der())
	if err != nil {
		t.Fatal(err)
	}
	id := r.CertIDs[0]
	if id.HashAlgorithm != HashUnknown {
		t.Fatalf("HashAlgorithm %v", id.HashAlgorithm)
	}
	now := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	tbs, err := TBSResponseData(ResponseTemplate{
		Singles:          []SingleResponse{{CertID: id, Status: Unknown, ThisUpdate: now}},
		ProducedAt:       now,
		ResponderKeyHash: make([]byte, 20),
	})
	if err != nil {
		t.Fatal(err)
	}
	var resp Response
	if err := parseResponseData(tbs, &resp); err != nil {
		t.Fatal(err)
	}
	got := resp.Singles[0].CertID
	if !sameCertID(got, id) || !bytes.Equal(got.RawHashAlgorithm, md5.algDER()) || resp.Singles[0].Status != Unknown {
		t.Errorf("echoed CertID %+v, want %+v", got, id)
	}
	id.RawHashAlgorithm = nil
	if _, err := TBSResponseData(ResponseTemplate{
		Singles: []SingleResponse{{CertID: id, Status: Unknown, ThisUpdate: now}}, ProducedAt: now, ResponderKeyHash: make([]byte, 20),
	}); !errors.Is(err, ErrInvalidTemplate) {
		t.Errorf("unknown hash without RawHashAlgorithm: %v, want ErrInvalidTemplate", err)
	}
	if _, err := NewCertID(HashUnknown, []byte{0x30, 0}, nil, big.NewInt(1)); !errors.Is(err, ErrUnsupportedHash) {
		t.Errorf("NewCertID(HashUnknown): %v, want ErrUnsupportedHash", err)
	}
}

func TestTemplateErrors(t *testing.T) {
	now := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	id := CertID{HashAlgorithm: HashSHA1, IssuerNameHash: make([]byte, 20), IssuerKeyHash: make([]byte, 20), SerialNumber: big.NewInt(5)}
	base := func() ResponseTemplate {
		return ResponseTemplate{
			Singles:          []SingleResponse{{CertID: id, Status: Good, ThisUpdate: now, NextUpdate: now.Add(time.Hour)}},
			ProducedAt:       now,
			ResponderKeyHash: make([]byte, 20),
		}
	}
	withID := func(f func(*CertID)) func(*ResponseTemplate) {
		return func(r *ResponseTemplate) {
			c := id
			f(&c)
			r.Singles[0].CertID = c
		}
	}
	cases := []struct {
		name, want string
		mod        func(*ResponseTemplate)
	}{
		{"no key hash", "ResponderKeyHash", func(r *ResponseTemplate) { r.ResponderKeyHash = nil }},
		{"SHA-256 key hash", "ResponderKeyHash", func(r *ResponseTemplate) { r.ResponderKeyHash = make([]byte, 32) }},
		{"no ProducedAt", "ProducedAt is not set", func(r *ResponseTemplate) { r.ProducedAt = time.Time{} }},
		{"year 10000", "not encodable", func(r *ResponseTemplate) { r.ProducedAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"no singles", "no SingleResponse", func(r *ResponseTemplate) { r.Singles = nil }},
		{"status not set", "certificate status", func(r *ResponseTemplate) { r.Singles[0].Status = 0 }},
		{"no ThisUpdate", "ThisUpdate is not set", func(r *ResponseTemplate) { r.Singles[0].ThisUpdate = time.Time{} }},
		{"NextUpdate not after ThisUpdate", "not after", func(r *ResponseTemplate) { r.Singles[0].NextUpdate = now.Add(time.Millisecond) }},
		{"revoked without time", "RevokedAt is not set", func(r *ResponseTemplate) { r.Singles[0].Status = Revoked }},
		{"reason 7", "not a CRLReason", func(r *ResponseTemplate) {
			r.Singles[0].Status, r.Singles[0].RevokedAt, r.Singles[0].RevocationReason = Revoked, now, 7
		}},
		{"reason 11", "not a CRLReason", func(r *ResponseTemplate) {
			r.Singles[0].Status, r.Singles[0].RevokedAt, r.Singles[0].RevocationReason = Revoked, now, 11
		}},
		{"no serial", "serial number", withID(func(c *CertID) { c.SerialNumber = nil })},
		{"negative serial", "serial number", withID(func(c *CertID) { c.SerialNumber = big.NewInt(-1) })},
		{"21-octet serial", "exceeds 20", withID(func(c *CertID) { c.SerialNumber = new(big.Int).Lsh(big.NewInt(1), 159) })},
		{"short hash", "want 20", withID(func(c *CertID) { c.IssuerKeyHash = make([]byte, 19) })},
		{"no hashes", "empty", withID(func(c *CertID) { c.IssuerNameHash = nil })},
		{"bad RawHashAlgorithm", "RawHashAlgorithm", withID(func(c *CertID) { c.RawHashAlgorithm = []byte{0x30, 0x05, 0x06} })},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tmpl := base()
			tc.mod(&tmpl)
			dst := []byte("prefix")
			out, err := AppendTBSResponseData(dst, tmpl)
			if !errors.Is(err, ErrInvalidTemplate) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want ErrInvalidTemplate saying %q", err, tc.want)
			}
			if string(out) != "prefix" {
				t.Errorf("dst changed on error: %q", out)
			}
			if _, err := CreateResponse(tmpl, nil); !errors.Is(err, ErrInvalidTemplate) {
				t.Errorf("CreateResponse: %v", err)
			}
		})
	}
	if _, err := TBSResponseData(base()); err != nil {
		t.Fatalf("base template: %v", err)
	}
	// 2^159 needs a leading zero octet: 21 octets. 2^159-1 fits in 20.
	tmpl := base()
	tmpl.Singles[0].CertID.SerialNumber = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 159), big.NewInt(1))
	if _, err := TBSResponseData(tmpl); err != nil {
		t.Errorf("20-octet serial: %v", err)
	}
}

func TestSignRejectsBadInput(t *testing.T) {
	key := genKey(t, "ecdsa-p256")
	tbs := []byte{0x30, 0x00}
	cases := []struct {
		name  string
		tbs   []byte
		certs [][]byte
	}{
		{"tbs not DER", []byte{0x30, 0x05, 0x00}, nil},
		{"tbs with trailing data", []byte{0x30, 0x00, 0x00}, nil},
		{"tbs not a SEQUENCE", []byte{0x04, 0x00}, nil},
		{"certificate not a SEQUENCE", tbs, [][]byte{{0x04, 0x00}}},
		{"empty certificate", tbs, [][]byte{nil}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Sign(tc.tbs, key, tc.certs); !errors.Is(err, ErrInvalidTemplate) {
				t.Errorf("Sign: %v, want ErrInvalidTemplate", err)
			}
		})
	}
	if _, err := Sign(tbs, nil, nil); err == nil {
		t.Error("Sign with a nil signer succeeds")
	}
	if _, err := Sign(tbs, genKey(t, "ecdsa-p384"), nil); err != nil {
		t.Errorf("Sign with P-384: %v", err)
	}
}

func TestGeneralizedTimeEncoding(t *testing.T) {
	cases := []struct {
		in   time.Time
		want string
	}{
		{time.Date(2025, 3, 1, 20, 4, 5, 999_999_999, time.FixedZone("CST", 8*3600)), "20250301120405Z"},
		{time.Date(1999, 12, 31, 23, 59, 59, 0, time.UTC), "19991231235959Z"},
		{time.Date(2050, 1, 1, 0, 0, 0, 0, time.FixedZone("west", -5*3600)), "20500101050000Z"},
		{time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC), "99991231235959Z"},
		{time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC), "00010101000001Z"},
	}
	for _, tc := range cases {
		got := appendGeneralizedTime(nil, tc.in)
		want := append([]byte{0x18, 15}, tc.want...)
		if !bytes.Equal(got, want) {
			t.Errorf("%v: %q, want %q", tc.in, got, want)
		}
		s := cryptobyte.String(got)
		var parsed time.Time
		if !s.ReadASN1GeneralizedTime(&parsed) || !parsed.Equal(tc.in.Truncate(time.Second)) {
			t.Errorf("%v: cryptobyte reads %v", tc.in, parsed)
		}
	}
}

func TestLongFieldsEncodeWithLongLengths(t *testing.T) {
	// Long nonces and many singles push lengths past 127 and 255 bytes,
	// through every header size the builder writes.
	now := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	for _, n := range []int{1, 100, 200, 300, 70000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			var singles []SingleResponse
			for i := range n % 1000 {
				singles = append(singles, SingleResponse{
					CertID: CertID{HashAlgorithm: HashSHA512, IssuerNameHash: make([]byte, 64), IssuerKeyHash: make([]byte, 64), SerialNumber: big.NewInt(int64(i))},
					Status: Good, ThisUpdate: now,
				})
			}
			if len(singles) == 0 {
				singles = append(singles, SingleResponse{CertID: CertID{HashAlgorithm: HashSHA1, IssuerNameHash: make([]byte, 20), IssuerKeyHash: make([]byte, 20), SerialNumber: big.NewInt(1)}, Status: Unknown, ThisUpdate: now})
			}
			nonce := bytes.Repeat([]byte{7}, n)
			tbs, err := TBSResponseData(ResponseTemplate{Singles: singles, ProducedAt: now, Nonce: nonce, ResponderKeyHash: make([]byte, 20)})
			if err != nil {
				t.Fatal(err)
			}
			// encoding/asn1 checks every length independently.
			var raw asn1.RawValue
			if rest, err := asn1.Unmarshal(tbs, &raw); err != nil || len(rest) != 0 {
				t.Fatalf("encoding/asn1: %v", err)
			}
			var r Response
			if err := parseResponseData(tbs, &r); err != nil {
				t.Fatal(err)
			}
			if len(r.Singles) != len(singles) || !bytes.Equal(r.Nonce, nonce) {
				t.Errorf("%d singles, nonce of %d bytes", len(r.Singles), len(r.Nonce))
			}
		})
	}
}

func TestAppendTBSResponseDataAllocs(t *testing.T) {
	now := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	tmpl := ResponseTemplate{
		Singles: []SingleResponse{{
			CertID: CertID{HashAlgorithm: HashSM3, IssuerNameHash: make([]byte, 32), IssuerKeyHash: make([]byte, 32), SerialNumber: new(big.Int).SetBytes(bytes.Repeat([]byte{0xab}, 16))},
			Status: Revoked, RevokedAt: now, RevocationReason: 1, ThisUpdate: now, NextUpdate: now.Add(time.Hour),
		}},
		ProducedAt:       now,
		Nonce:            octetString(make([]byte, 32)),
		ResponderKeyHash: make([]byte, 20),
	}
	buf := make([]byte, 0, 1024)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := AppendTBSResponseData(buf[:0], tmpl); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("AppendTBSResponseData into a large enough buffer allocates %v times", allocs)
	}
}

func TestErrorResponse(t *testing.T) {
	cases := []struct {
		in, want ResponseStatus
	}{
		{MalformedRequest, MalformedRequest},
		{InternalError, InternalError},
		{TryLater, TryLater},
		{SigRequired, SigRequired},
		{Unauthorized, Unauthorized},
		{Successful, InternalError},
		{4, InternalError},
		{7, InternalError},
		{-1, InternalError},
	}
	for _, tc := range cases {
		t.Run(tc.in.String(), func(t *testing.T) {
			der := ErrorResponse(tc.in)
			_, err := xocsp.ParseResponse(der, nil)
			var re xocsp.ResponseError
			if !errors.As(err, &re) || int(re.Status) != int(tc.want) {
				t.Errorf("x/crypto/ocsp reads %v, want status %v", err, tc.want)
			}
			r, err := ParseResponse(der)
			if err != nil || r.Status != tc.want {
				t.Errorf("ParseResponse = %+v, %v", r, err)
			}
			if err := r.CheckSignatureFrom(nil); err == nil {
				t.Error("CheckSignatureFrom succeeds on an error response")
			}
		})
	}
}

func TestParseResponseRejects(t *testing.T) {
	key := genKey(t, "ecdsa-p256")
	now := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	resp, err := CreateResponse(ResponseTemplate{
		Singles: []SingleResponse{{
			CertID: CertID{HashAlgorithm: HashSHA1, IssuerNameHash: make([]byte, 20), IssuerKeyHash: make([]byte, 20), SerialNumber: big.NewInt(1)},
			Status: Good, ThisUpdate: now,
		}},
		ProducedAt: now, ResponderKeyHash: make([]byte, 20),
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseResponse(resp)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.CheckSignatureFrom(key.Public()); err != nil {
		t.Fatal(err)
	}
	if err := r.CheckSignatureFrom(genKey(t, "ecdsa-p256").Public()); !errors.Is(err, sigalg.ErrBadSignature) {
		t.Errorf("wrong key: %v, want ErrBadSignature", err)
	}
	for i := range resp {
		if _, err := ParseResponse(resp[:i]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("prefix of %d bytes: %v", i, err)
		}
	}
	if _, err := ParseResponse(append(bytes.Clone(resp), 0)); !errors.Is(err, ErrMalformed) {
		t.Errorf("trailing data: %v", err)
	}
	withBytes := []byte{0x30, 0x05, 0x0a, 0x01, 0x01, 0xa0, 0x00}
	if _, err := ParseResponse(withBytes); !errors.Is(err, ErrMalformed) {
		t.Errorf("error status with responseBytes: %v", err)
	}
}

func TestHashAlg(t *testing.T) {
	msg := []byte("abc")
	sm3abc, _ := hex.DecodeString("66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0")
	cases := []struct {
		h    HashAlg
		want []byte
	}{
		{HashSHA1, hashOf(crypto.SHA1, msg)},
		{HashSHA256, hashOf(crypto.SHA256, msg)},
		{HashSHA384, hashOf(crypto.SHA384, msg)},
		{HashSHA512, hashOf(crypto.SHA512, msg)},
		{HashSM3, tjsm3.Sm3Sum(msg)},
		{HashSM3, sm3abc},
	}
	for _, tc := range cases {
		t.Run(tc.h.String(), func(t *testing.T) {
			if got := tc.h.Sum(msg); !bytes.Equal(got, tc.want) || tc.h.Size() != len(tc.want) {
				t.Errorf("Sum = %x (Size %d), want %x", got, tc.h.Size(), tc.want)
			}
			// The hand-written DER must match the OID encoding/asn1 makes.
			oid, err := asn1.Marshal(tc.h.OID())
			if err != nil {
				t.Fatal(err)
			}
			alg := append(append([]byte{0x30, byte(len(oid) + 2)}, oid...), derNULL...)
			if got := tc.h.algorithmIdentifier(); got != string(alg) {
				t.Errorf("AlgorithmIdentifier %x, want %x", got, alg)
			}
			if hashFromOID(oid[2:]) != tc.h {
				t.Errorf("hashFromOID(%v) = %v", tc.h.OID(), hashFromOID(oid[2:]))
			}
		})
	}
	if HashUnknown.Sum(msg) != nil || HashUnknown.Size() != 0 || HashUnknown.OID() != nil || HashAlg(42).Size() != 0 {
		t.Error("HashUnknown is usable")
	}
}

func hashOf(h crypto.Hash, b []byte) []byte {
	hh := h.New()
	hh.Write(b)
	return hh.Sum(nil)
}

func TestSubjectPublicKeyBits(t *testing.T) {
	key := genKey(t, "ecdsa-p256")
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	bits, err := SubjectPublicKeyBits(spki)
	if err != nil {
		t.Fatal(err)
	}
	pub := key.Public().(*ecdsa.PublicKey)
	want, err := pub.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bits, want) {
		t.Errorf("bits %x, want the uncompressed point %x", bits, want)
	}
	for _, bad := range [][]byte{nil, spki[:len(spki)-1], append(bytes.Clone(spki), 0), {0x30, 0x00}} {
		if _, err := SubjectPublicKeyBits(bad); err == nil {
			t.Errorf("SubjectPublicKeyBits(%x) succeeds", bad)
		}
	}
	sum := sha256.Sum256(bits)
	id, err := NewCertID(HashSHA256, []byte{0x30, 0x00}, spki, big.NewInt(7))
	if err != nil || !bytes.Equal(id.IssuerKeyHash, sum[:]) {
		t.Errorf("NewCertID key hash %x, %v", id.IssuerKeyHash, err)
	}
}

// testdataCase describes a committed request; see testdata/README.md.
type testdataCase struct {
	file   string
	issuer string
	hash   HashAlg
	leaves []string
	nonce  bool
	signed bool
}

func testdataCases() []testdataCase {
	return []testdataCase{
		{"req-openssl-ecdsa-sha1-nonce.der", "ecdsa-ca.pem", HashSHA1, []string{"ecdsa-leaf1.pem"}, true, false},
		{"req-openssl-ecdsa-sha1-two.der", "ecdsa-ca.pem", HashSHA1, []string{"ecdsa-leaf1.pem", "ecdsa-leaf2.pem"}, true, false},
		{"req-openssl-ecdsa-sha256.der", "ecdsa-ca.pem", HashSHA256, []string{"ecdsa-leaf1.pem"}, false, false},
		{"req-openssl-ecdsa-sha512.der", "ecdsa-ca.pem", HashSHA512, []string{"ecdsa-leaf2.pem"}, false, false},
		{"req-openssl-ecdsa-signed.der", "ecdsa-ca.pem", HashSHA1, []string{"ecdsa-leaf1.pem"}, true, true},
		{"req-openssl-sm2-sm3-nonce.der", "sm2-ca.pem", HashSM3, []string{"sm2-leaf1.pem"}, true, false},
		{"req-openssl-sm2-sha1.der", "sm2-ca.pem", HashSHA1, []string{"sm2-leaf1.pem"}, false, false},
		{"req-xcrypto-ecdsa-sha1.der", "ecdsa-ca.pem", HashSHA1, []string{"ecdsa-leaf1.pem"}, false, false},
		{"req-xcrypto-ecdsa-sha256.der", "ecdsa-ca.pem", HashSHA256, []string{"ecdsa-leaf2.pem"}, false, false},
		{"req-xcrypto-sm2-sha1.der", "sm2-ca.pem", HashSHA1, []string{"sm2-leaf1.pem"}, false, false},
	}
}

func readCertFile(t testing.TB, name string) *smx509.Certificate {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	c, err := smx509.ParseCertificatePEM(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestTestdataRequests(t *testing.T) {
	for _, tc := range testdataCases() {
		t.Run(tc.file, func(t *testing.T) {
			der, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			req, err := ParseRequest(der)
			if err != nil {
				t.Fatal(err)
			}
			ca := readCertFile(t, tc.issuer)
			if len(req.CertIDs) != len(tc.leaves) {
				t.Fatalf("%d CertIDs, want %d", len(req.CertIDs), len(tc.leaves))
			}
			for i, name := range tc.leaves {
				want, err := NewCertID(tc.hash, ca.RawSubject, ca.RawSubjectPublicKeyInfo, readCertFile(t, name).SerialNumber)
				if err != nil {
					t.Fatal(err)
				}
				if !sameCertID(req.CertIDs[i], want) {
					t.Errorf("CertID %d = %+v, want %+v", i, req.CertIDs[i], want)
				}
			}
			// OpenSSL sends 16 random bytes in the RFC 8954 form.
			if tc.nonce != req.HasNonce || tc.nonce && (len(req.Nonce) != 18 || req.Nonce[0] != 0x04 || req.Nonce[1] != 16) {
				t.Errorf("nonce %x (present %v), want present %v", req.Nonce, req.HasNonce, tc.nonce)
			}
			if req.Signed != tc.signed {
				t.Errorf("Signed = %v", req.Signed)
			}
		})
	}
}

// TestWriteTestdata regenerates testdata when GMTRUST_WRITE_TESTDATA=1.
func TestWriteTestdata(t *testing.T) {
	if os.Getenv("GMTRUST_WRITE_TESTDATA") != "1" {
		t.Skip("set GMTRUST_WRITE_TESTDATA=1 to regenerate testdata")
	}
	bin := requireOpenSSL(t)
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for prefix, alg := range map[string]string{"ecdsa": "ecdsa-p256", "sm2": "sm2"} {
		p := newTestPKI(t, alg)
		write(prefix+"-ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.ca.Raw}))
		for i, l := range p.leaves {
			write(fmt.Sprintf("%s-leaf%d.pem", prefix, i+1), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: l.Raw}))
		}
		leaf, ca := p.x509Pair(t, 0)
		der, err := xocsp.CreateRequest(leaf, ca, nil)
		if err != nil {
			t.Fatal(err)
		}
		write("req-xcrypto-"+prefix+"-sha1.der", der)
		if prefix == "ecdsa" {
			leaf, ca := p.x509Pair(t, 1)
			der, err := xocsp.CreateRequest(leaf, ca, &xocsp.RequestOptions{Hash: crypto.SHA256})
			if err != nil {
				t.Fatal(err)
			}
			write("req-xcrypto-ecdsa-sha256.der", der)
		}
	}
	// The signer of the signed request needs a key file; it stays in a
	// temporary directory.
	tmp := t.TempDir()
	signer := genKey(t, "ecdsa-p256")
	pk, err := x509.MarshalPKCS8PrivateKey(signer)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "s.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), 0o600); err != nil {
		t.Fatal(err)
	}
	sc := issue(t, "ecdsa-p256", "requestor", big.NewInt(5), signer.Public(), signer, nil, false, false)
	if err := os.WriteFile(filepath.Join(tmp, "s.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: sc.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-issuer", "ecdsa-ca.pem", "-cert", "ecdsa-leaf1.pem", "-reqout", "req-openssl-ecdsa-sha1-nonce.der"},
		{"-issuer", "ecdsa-ca.pem", "-cert", "ecdsa-leaf1.pem", "-cert", "ecdsa-leaf2.pem", "-reqout", "req-openssl-ecdsa-sha1-two.der"},
		{"-issuer", "ecdsa-ca.pem", "-sha256", "-cert", "ecdsa-leaf1.pem", "-no_nonce", "-reqout", "req-openssl-ecdsa-sha256.der"},
		{"-issuer", "ecdsa-ca.pem", "-sha512", "-cert", "ecdsa-leaf2.pem", "-no_nonce", "-reqout", "req-openssl-ecdsa-sha512.der"},
		{"-issuer", "ecdsa-ca.pem", "-cert", "ecdsa-leaf1.pem", "-signer", filepath.Join(tmp, "s.pem"), "-signkey", filepath.Join(tmp, "s.key"), "-reqout", "req-openssl-ecdsa-signed.der"},
		{"-issuer", "sm2-ca.pem", "-sm3", "-cert", "sm2-leaf1.pem", "-reqout", "req-openssl-sm2-sm3-nonce.der"},
		{"-issuer", "sm2-ca.pem", "-cert", "sm2-leaf1.pem", "-no_nonce", "-reqout", "req-openssl-sm2-sha1.der"},
	} {
		runOpenSSL(t, bin, dir, append([]string{"ocsp"}, args...)...)
	}
}

func BenchmarkParseRequest(b *testing.B) {
	der, err := os.ReadFile(filepath.Join("testdata", "req-openssl-sm2-sm3-nonce.der"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(der)))
	for b.Loop() {
		if _, err := ParseRequest(der); err != nil {
			b.Fatal(err)
		}
	}
}

func benchTemplate() ResponseTemplate {
	now := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	return ResponseTemplate{
		Singles: []SingleResponse{{
			CertID: CertID{HashAlgorithm: HashSHA1, IssuerNameHash: make([]byte, 20), IssuerKeyHash: make([]byte, 20), SerialNumber: new(big.Int).SetBytes(bytes.Repeat([]byte{0x5c}, 16))},
			Status: Good, ThisUpdate: now, NextUpdate: now.Add(24 * time.Hour),
		}},
		ProducedAt:       now,
		Nonce:            octetString(make([]byte, 32)),
		ResponderKeyHash: make([]byte, 20),
	}
}

func benchmarkCreateResponse(b *testing.B, alg string) {
	key := genKey(b, alg)
	tmpl := benchTemplate()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := CreateResponse(tmpl, key); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCreateResponseSM2(b *testing.B)   { benchmarkCreateResponse(b, "sm2") }
func BenchmarkCreateResponseECDSA(b *testing.B) { benchmarkCreateResponse(b, "ecdsa-p256") }

// BenchmarkTBSResponseData measures the encoding alone, without signing.
func BenchmarkTBSResponseData(b *testing.B) {
	tmpl := benchTemplate()
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := AppendTBSResponseData(buf[:0], tmpl); err != nil {
			b.Fatal(err)
		}
	}
}
