package seal

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
)

func TestMakeSealParsesBack(t *testing.T) {
	p := newTestPKI(t)
	spec := testSpec(t, p)
	der, err := MakeSeal(context.Background(), spec, p.makerDER, p.makerKey)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseSeal(der)
	if err != nil {
		t.Fatal(err)
	}
	if s.Version != VersionV4 || s.Header != (Header{ID: "ES", Version: 4, Vid: spec.Vid}) {
		t.Errorf("version %d header %+v", s.Version, s.Header)
	}
	if s.ESID != spec.ESID || s.Type != spec.Type || s.Name != spec.Name || s.CertListType != CertListCertificates {
		t.Errorf("identity: got %q %d %q %d", s.ESID, s.Type, s.Name, s.CertListType)
	}
	if len(s.Certs) != 1 || !bytes.Equal(s.Certs[0], p.holderDER) {
		t.Errorf("certList does not hold the holder certificate")
	}
	if !s.CreateDate.Equal(spec.CreateDate) || !s.ValidStart.Equal(spec.ValidStart) || !s.ValidEnd.Equal(spec.ValidEnd) {
		t.Errorf("dates: %v %v %v", s.CreateDate, s.ValidStart, s.ValidEnd)
	}
	if s.Picture.Type != "PNG" || !bytes.Equal(s.Picture.Data, spec.Picture.Data) || s.Picture.Width != 40 || s.Picture.Height != 40 {
		t.Errorf("picture: %s %dx%d", s.Picture.Type, s.Picture.Width, s.Picture.Height)
	}
	if len(s.Extensions) != 1 || !s.Extensions[0].ID.Equal(spec.Extensions[0].ID) || s.Extensions[0].Critical ||
		string(s.Extensions[0].Value) != "ext" {
		t.Errorf("extensions: %+v", s.Extensions)
	}
	if !bytes.Equal(s.MakerCert, p.makerDER) || !bytes.Equal(s.SignedBytes, s.RawSealInfo) {
		t.Errorf("maker cert or signed bytes wrong")
	}
	if len(s.Deviations) != 0 {
		t.Errorf("our own seal has deviations: %v", s.Deviations)
	}
	// The maker signed exactly RawSealInfo, which is a prefix element of Raw.
	if !bytes.Contains(der, s.RawSealInfo) {
		t.Errorf("RawSealInfo is not a substring of the seal")
	}
}

func TestStampParsesBack(t *testing.T) {
	p := newTestPKI(t)
	sealDER := makeTestSeal(t, p)
	hash := docHash(testDocument)
	der, err := Stamp(context.Background(), sealDER, p.holderDER, p.holderKey, hash, "/Doc_0/Signs/Sign_0/Signature.xml", tSign.Add(700*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	sig, err := ParseSignature(der)
	if err != nil {
		t.Fatal(err)
	}
	if sig.Version != VersionV4 || !bytes.Equal(sig.Seal.Raw, sealDER) {
		t.Errorf("version %d or embedded seal differs", sig.Version)
	}
	if !sig.TimeInfo.Equal(tSign) {
		t.Errorf("timeInfo %v, want %v (whole seconds)", sig.TimeInfo, tSign)
	}
	if !bytes.Equal(sig.DataHash, hash) || sig.PropertyInfo != "/Doc_0/Signs/Sign_0/Signature.xml" {
		t.Errorf("dataHash/propertyInfo wrong")
	}
	if !bytes.Equal(sig.SignerCert, p.holderDER) || sig.TimeStamp != nil || len(sig.Extensions) != 0 {
		t.Errorf("signer cert, timestamp or extensions wrong")
	}
}

func TestRoundTripVerifiesValid(t *testing.T) {
	p := newTestPKI(t)
	der := stampTest(t, p, makeTestSeal(t, p))
	opts := fullOptions(t, p)
	opts.SealStatus = fakeRegistry{"44030000000001": SealActive}
	r := Verify(context.Background(), der, opts)
	if r.Verdict != VerdictValid {
		t.Fatalf("verdict %s (%s): %+v", r.Verdict, r.Reason, r.Checks)
	}
	want := []string{CheckStructure, CheckSealSignature, CheckSealValidity, CheckSignerInSeal, CheckSignature, CheckDataHash, CheckChain, CheckRevocation, CheckSealStatus}
	if len(r.Checks) != len(want) {
		t.Fatalf("checks %+v", r.Checks)
	}
	for i, c := range r.Checks {
		if c.Name != want[i] || !c.OK || c.Result != ResultPass {
			t.Errorf("check %d = %+v, want %s passing", i, c, want[i])
		}
	}
	if r.Version != 4 || r.Seal.ESID != "44030000000001" || r.Seal.Maker == "" || r.Signer == "" || !r.Time.Equal(tSign) {
		t.Errorf("report header: %+v %+v", r, r.Seal)
	}
}

func TestCertDigestSeal(t *testing.T) {
	p := newTestPKI(t)
	h := sm3.Sum(p.holderDER)
	spec := testSpec(t, p)
	spec.Certs = nil
	spec.CertDigests = []CertDigest{{Type: "sm3", Value: h[:]}}
	sealDER, err := MakeSeal(context.Background(), spec, p.makerDER, p.makerKey)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseSeal(sealDER)
	if err != nil || s.CertListType != CertListDigests || len(s.CertDigests) != 1 {
		t.Fatalf("parse: %v %+v", err, s)
	}
	der := stampTest(t, p, sealDER)
	if r := Verify(context.Background(), der, fullOptions(t, p)); r.Verdict != VerdictValid {
		t.Fatalf("verdict %s: %+v", r.Verdict, r.Checks)
	}
	if _, err := Stamp(context.Background(), sealDER, p.otherDER, p.otherKey, docHash(nil), "x", tSign); !errors.Is(err, ErrSignerNotInSeal) {
		t.Fatalf("other signer: err %v", err)
	}
}

func TestMakeSealRefuses(t *testing.T) {
	p := newTestPKI(t)
	gif := []byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;")
	tests := []struct {
		name   string
		modify func(*SealSpec)
		maker  func() ([]byte, *sm2.PrivateKey)
	}{
		{"empty esID", func(s *SealSpec) { s.ESID = "" }, nil},
		{"non-ASCII esID", func(s *SealSpec) { s.ESID = "印章1" }, nil},
		{"zero type", func(s *SealSpec) { s.Type = 0 }, nil},
		{"empty name", func(s *SealSpec) { s.Name = "" }, nil},
		{"no holders", func(s *SealSpec) { s.Certs = nil }, nil},
		{"certs and digests", func(s *SealSpec) { s.CertDigests = []CertDigest{{Type: "sm3", Value: make([]byte, 32)}} }, nil},
		{"holder not a certificate", func(s *SealSpec) { s.Certs = [][]byte{{0x30, 0x00}} }, nil},
		{"bad digest type", func(s *SealSpec) { s.Certs = nil; s.CertDigests = []CertDigest{{Type: "md5", Value: make([]byte, 16)}} }, nil},
		{"short digest", func(s *SealSpec) { s.Certs = nil; s.CertDigests = []CertDigest{{Type: "sm3", Value: make([]byte, 20)}} }, nil},
		{"validity reversed", func(s *SealSpec) { s.ValidStart, s.ValidEnd = s.ValidEnd, s.ValidStart }, nil},
		{"no createDate", func(s *SealSpec) { s.CreateDate = time.Time{} }, nil},
		{"unknown picture type", func(s *SealSpec) { s.Picture.Type = "bmp" }, nil},
		{"picture not what it says", func(s *SealSpec) { s.Picture.Type = "gif" }, nil},
		{"empty picture", func(s *SealSpec) { s.Picture.Data = nil }, nil},
		{"zero width", func(s *SealSpec) { s.Picture = Picture{Type: "GIF", Data: gif, Width: 0, Height: 40} }, nil},
		{"createDate outside maker cert", func(s *SealSpec) { s.CreateDate = tCA.AddDate(-1, 0, 0) }, nil},
		{"maker key not the cert's", nil, func() ([]byte, *sm2.PrivateKey) { return p.makerDER, p.otherKey }},
		{"maker cert garbage", nil, func() ([]byte, *sm2.PrivateKey) { return []byte("nope"), p.makerKey }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := testSpec(t, p)
			if tt.modify != nil {
				tt.modify(&spec)
			}
			certDER, key := p.makerDER, p.makerKey
			if tt.maker != nil {
				certDER, key = tt.maker()
			}
			_, err := MakeSeal(context.Background(), spec, certDER, key)
			if !errors.Is(err, ErrInvalidSpec) && !errors.Is(err, ErrKeyMismatch) {
				t.Fatalf("err %v, want ErrInvalidSpec or ErrKeyMismatch", err)
			}
		})
	}
	// The GIF picture above is fine once its size is.
	spec := testSpec(t, p)
	spec.Picture = Picture{Type: "GIF", Data: gif, Width: 42, Height: 42}
	if _, err := MakeSeal(context.Background(), spec, p.makerDER, p.makerKey); err != nil {
		t.Fatalf("valid GIF seal refused: %v", err)
	}
}

func TestStampRefuses(t *testing.T) {
	p := newTestPKI(t)
	sealDER := makeTestSeal(t, p)
	v1, err := os.ReadFile("testdata/v1_ofdrw_UserV1.esl")
	if err != nil {
		t.Fatal(err)
	}
	hash := docHash(testDocument)
	tests := []struct {
		name    string
		seal    []byte
		cert    []byte
		key     *sm2.PrivateKey
		hash    []byte
		prop    string
		at      time.Time
		wantErr error
	}{
		{"v1 seal", v1, p.holderDER, p.holderKey, hash, "p", tSign, ErrUnsupportedVersion},
		{"signer not in certList", sealDER, p.otherDER, p.otherKey, hash, "p", tSign, ErrSignerNotInSeal},
		{"before validStart", sealDER, p.holderDER, p.holderKey, hash, "p", tCreate.Add(-time.Second), ErrSealNotValid},
		{"after validEnd", sealDER, p.holderDER, p.holderKey, hash, "p", tValidEnd.Add(time.Second), ErrSealNotValid},
		{"31-byte hash", sealDER, p.holderDER, p.holderKey, hash[:31], "p", tSign, ErrBadDataHash},
		{"no hash", sealDER, p.holderDER, p.holderKey, nil, "p", tSign, ErrBadDataHash},
		{"key not the cert's", sealDER, p.holderDER, p.otherKey, hash, "p", tSign, ErrKeyMismatch},
		{"seal garbage", []byte{0x30, 0x03, 1, 2}, p.holderDER, p.holderKey, hash, "p", tSign, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Stamp(context.Background(), tt.seal, tt.cert, tt.key, tt.hash, tt.prop, tt.at)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err %v, want %v", err, tt.wantErr)
			}
		})
	}
	// The validity bounds themselves are inside the period.
	for _, at := range []time.Time{tCreate, tValidEnd} {
		if _, err := Stamp(context.Background(), sealDER, p.holderDER, p.holderKey, hash, "p", at); err != nil {
			t.Errorf("stamp at %v: %v", at, err)
		}
	}
	if _, err := Stamp(context.Background(), sealDER, p.holderDER, p.holderKey, hash, "非ASCII", tSign); err == nil {
		t.Errorf("non-ASCII propertyInfo accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Stamp(ctx, sealDER, p.holderDER, p.holderKey, hash, "p", tSign); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
}
