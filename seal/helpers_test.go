package seal

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509/pkix"
	"image"
	"image/color"
	"image/png"
	"math/big"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"
)

// Reference times of the test PKI and seal.
var (
	tCA       = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	tCreate   = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	tValidEnd = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	tSign     = time.Date(2025, 6, 1, 8, 30, 0, 0, time.UTC)
	tNow      = time.Date(2025, 6, 2, 0, 0, 0, 0, time.UTC)
)

func fixedNow() time.Time { return tNow }

// testPKI is a tiny SM2 hierarchy: a root, a seal maker and two holders.
type testPKI struct {
	rootDER, makerDER, holderDER, otherDER []byte
	rootKey, makerKey, holderKey, otherKey *sm2.PrivateKey
}

// newTestPKI builds a fresh hierarchy; keys are random on every call.
func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	p := &testPKI{}
	var err error
	gen := func() *sm2.PrivateKey {
		k, err := sm2.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	p.rootKey, p.makerKey, p.holderKey, p.otherKey = gen(), gen(), gen(), gen()
	root := &smx509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "gmtrust test root", Country: []string{"CN"}},
		NotBefore:             tCA,
		NotAfter:              tCA.AddDate(15, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              smx509.KeyUsageCertSign | smx509.KeyUsageCRLSign,
		SubjectKeyId:          []byte{1, 2, 3, 4},
	}
	if p.rootDER, err = smx509.CreateCertificate(rand.Reader, root, root, p.rootKey.Public(), p.rootKey); err != nil {
		t.Fatal(err)
	}
	rootCert, err := smx509.ParseCertificate(p.rootDER)
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(serial int64, cn string, key *sm2.PrivateKey) []byte {
		tmpl := &smx509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn, Organization: []string{"测试单位"}, Country: []string{"CN"}},
			NotBefore:    tCA,
			NotAfter:     tCA.AddDate(6, 0, 0),
			KeyUsage:     smx509.KeyUsageDigitalSignature | smx509.KeyUsageContentCommitment,
			SubjectKeyId: []byte{byte(serial), 9, 9, 9},
		}
		der, err := smx509.CreateCertificate(rand.Reader, tmpl, rootCert, key.Public(), p.rootKey)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	p.makerDER = leaf(2, "seal maker", p.makerKey)
	p.holderDER = leaf(3, "seal holder", p.holderKey)
	p.otherDER = leaf(4, "someone else", p.otherKey)
	return p
}

// testPNG returns a small real PNG.
func testPNG(t testing.TB) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, 16, 16))
	for i := 0; i < 16; i++ {
		img.Set(i, i, color.NRGBA{R: 200, A: 255})
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func testSpec(t testing.TB, p *testPKI) SealSpec {
	return SealSpec{
		ESID:       "44030000000001",
		Vid:        "gmtrust",
		Type:       TypeOrganization,
		Name:       "测试单位 公章",
		Certs:      [][]byte{p.holderDER},
		CreateDate: tCreate,
		ValidStart: tCreate,
		ValidEnd:   tValidEnd,
		Picture:    Picture{Type: "PNG", Data: testPNG(t), Width: 40, Height: 40},
		Extensions: []ExtData{{ID: []int{1, 2, 156, 999, 1}, Value: []byte("ext")}},
	}
}

func makeTestSeal(t testing.TB, p *testPKI) []byte {
	t.Helper()
	der, err := MakeSeal(context.Background(), testSpec(t, p), p.makerDER, p.makerKey)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

var testDocument = []byte("<ofd:Signature>the protected bytes</ofd:Signature>")

func docHash(doc []byte) []byte {
	h := sm3.Sum(doc)
	return h[:]
}

func stampTest(t testing.TB, p *testPKI, sealDER []byte) []byte {
	t.Helper()
	der, err := Stamp(context.Background(), sealDER, p.holderDER, p.holderKey, docHash(testDocument), "/Doc_0/Signs/Sign_0/Signature.xml", tSign)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// fakeRevocation answers from a map keyed by the SHA-256 of a
// certificate; unknown certificates are good.
type fakeRevocation struct {
	revoked map[[32]byte]RevocationResult
	err     error
}

func (f *fakeRevocation) Status(_ context.Context, certDER []byte, _ time.Time) (RevocationResult, error) {
	if f.err != nil {
		return RevocationResult{}, f.err
	}
	if r, ok := f.revoked[sha256.Sum256(certDER)]; ok {
		return r, nil
	}
	return RevocationResult{Status: RevocationGood}, nil
}

type fakeRegistry map[string]SealState

func (f fakeRegistry) SealStatus(_ context.Context, esID string) (SealState, error) {
	if s, ok := f[esID]; ok {
		return s, nil
	}
	return SealUnknown, nil
}

func mustTrust(t testing.TB, certs ...[]byte) *PoolTrust {
	t.Helper()
	pt, err := NewPoolTrust(certs)
	if err != nil {
		t.Fatal(err)
	}
	return pt
}

// fullOptions verifies against the test root with everything good.
func fullOptions(t testing.TB, p *testPKI) VerifyOptions {
	return VerifyOptions{
		Data:       testDocument,
		Trust:      mustTrust(t, p.rootDER),
		Revocation: &fakeRevocation{},
		Now:        fixedNow,
	}
}

// failing lists the checks of r that are not OK, in order.
func failing(r *Report) []string {
	var out []string
	for _, c := range r.Checks {
		if !c.OK {
			out = append(out, c.Name)
		}
	}
	return out
}
