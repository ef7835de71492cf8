package seal

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func TestInspect(t *testing.T) {
	p := newTestPKI(t)
	sealDER := makeTestSeal(t, p)
	sigDER := stampTest(t, p, sealDER)

	s, err := Inspect(sealDER)
	if err != nil {
		t.Fatal(err)
	}
	if s.Kind != "seal" || s.Version != 4 || s.Name != "测试单位 公章" || len(s.Holders) != 1 ||
		s.Holders[0].Subject == "" || s.Maker.Subject == "" || s.Picture.Width != 40 || s.Signer != nil {
		t.Errorf("seal summary %+v", s)
	}
	if !strings.Contains(s.Holders[0].Subject, "seal holder") || !strings.Contains(s.Maker.Subject, "seal maker") {
		t.Errorf("subjects %q %q", s.Holders[0].Subject, s.Maker.Subject)
	}

	g, err := Inspect(sigDER)
	if err != nil {
		t.Fatal(err)
	}
	if g.Kind != "signature" || g.Signer == nil || !strings.Contains(g.Signer.Subject, "seal holder") ||
		g.DataHash != hex.EncodeToString(docHash(testDocument)) || !g.Time.Equal(tSign) || g.SignAlg != "SM2-with-SM3" {
		t.Errorf("signature summary %+v", g)
	}
	text := g.String()
	for _, want := range []string{"signature v4 (GB/T 38540-2020)", "测试单位 公章", "44030000000001", "SM2-with-SM3", "PNG 40x40 mm", "(claimed)"} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}

	for _, tt := range []struct {
		file, kind string
		version    int
	}{
		{"v4_kinggrid_999_SignedValue.dat", "signature", 4},
		{"v1_dms360_SignedValue.dat", "signature", 1},
		{"v4_ofdrw_UserV4.esl", "seal", 4},
		{"v1_ofdrw_UserV1.esl", "seal", 1},
		{"v4_hebeigede_SESealData.DER", "seal", 4},
		{"v1_dms360_Seal.esl", "seal", 1},
	} {
		sum, err := Inspect(readTestdata(t, tt.file))
		if err != nil || sum.Kind != tt.kind || sum.Version != tt.version {
			t.Errorf("%s: %v %+v", tt.file, err, sum)
		}
	}
	// The dms360 certificate is read leniently and says so.
	sum, _ := Inspect(readTestdata(t, "v1_dms360_Seal.esl"))
	if !strings.Contains(sum.Maker.Subject, "dms360") || !strings.Contains(sum.Maker.Error, "strict") {
		t.Errorf("dms360 maker %+v", sum.Maker)
	}

	if _, err := Inspect([]byte{0x30, 0x00}); !errors.Is(err, ErrMalformed) {
		t.Errorf("garbage: %v", err)
	}
}
