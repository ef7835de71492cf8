package seal

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/pem"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Real files from other implementations; testdata/README.md says where each
// comes from and what a correct verifier must say about it.

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readPEMCert(t testing.TB, name string) []byte {
	t.Helper()
	block, _ := pem.Decode(readTestdata(t, name))
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("%s: no PEM certificate", name)
	}
	return block.Bytes
}

// at2021 lies inside the validity of every real seal.
func at2021() time.Time { return time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC) }

func wantResults(t *testing.T, r *Report, want map[string]string) {
	t.Helper()
	for name, result := range want {
		c, ok := r.Find(name)
		if !ok {
			t.Errorf("check %s missing", name)
			continue
		}
		if c.Result != result {
			t.Errorf("check %s = %s (%s), want %s", name, c.Result, c.Detail, result)
		}
	}
}

func TestRealKinggridSignature(t *testing.T) {
	der := readTestdata(t, "v4_kinggrid_999_SignedValue.dat")
	doc := readTestdata(t, "v4_kinggrid_999_Signature.xml")
	sig, err := ParseSignature(der)
	if err != nil {
		t.Fatal(err)
	}
	s := sig.Seal
	if sig.Version != VersionV4 || s.Header.Vid != "GOMAIN" || s.Picture.Type != "ofd" || sig.TimeStamp != nil {
		t.Errorf("version %d vid %q picture %q timestamp %v", sig.Version, s.Header.Vid, s.Picture.Type, sig.TimeStamp != nil)
	}
	if sig.PropertyInfo != "/Doc_0/Signs/Sign_0/Signature.xml" || !sig.TimeInfo.Equal(time.Date(2020, 8, 17, 11, 13, 29, 0, time.UTC)) {
		t.Errorf("propertyInfo %q time %v", sig.PropertyInfo, sig.TimeInfo)
	}
	// The README gives the SM3 of Signature.xml, computed independently.
	const readmeSM3 = "04de1f5f14983be0b6dee77b381543c57af679005238b2d3235a0066f79d23da"
	if got := hex.EncodeToString(sig.DataHash); got != readmeSM3 {
		t.Errorf("dataHash %s, README says %s", got, readmeSM3)
	}

	digest, _ := hex.DecodeString(readmeSM3)
	for _, opts := range []VerifyOptions{
		{Data: doc, Now: at2021},
		{Digest: digest, Now: at2021},
		{Data: doc, Digest: digest, Now: at2021},
	} {
		r := Verify(context.Background(), der, opts)
		wantResults(t, r, map[string]string{
			CheckStructure: ResultPass, CheckSealSignature: ResultPass, CheckSealValidity: ResultPass,
			CheckSignerInSeal: ResultPass, CheckSignature: ResultPass, CheckDataHash: ResultPass,
			CheckChain: ResultIndeterminate, CheckRevocation: ResultIndeterminate,
		})
		if r.Verdict != VerdictIndeterminate {
			t.Errorf("verdict %s, want indeterminate (tax test CA not trusted)", r.Verdict)
		}
		if _, ok := r.Find(CheckTimestamp); ok {
			t.Errorf("timestamp check present without a timeStamp")
		}
	}

	// Another document: data_hash fails and the verdict is invalid.
	other := append(bytes.Clone(doc), ' ')
	r := Verify(context.Background(), der, VerifyOptions{Data: other, Now: at2021})
	if r.Verdict != VerdictInvalid || strings.Join(failing(r), ",") != "data_hash,chain,revocation" {
		t.Errorf("other document: %s %v", r.Verdict, failing(r))
	}

	// A PoolTrust without the tax CA: untrusted root, still indeterminate.
	p := newTestPKI(t)
	r = Verify(context.Background(), der, VerifyOptions{Data: doc, Now: at2021, Trust: mustTrust(t, p.rootDER), Revocation: &fakeRevocation{}})
	if c, _ := r.Find(CheckChain); r.Verdict != VerdictIndeterminate || c.Result != ResultIndeterminate || !strings.Contains(c.Detail, "untrusted root") {
		t.Errorf("untrusted tax CA: %s %+v", r.Verdict, c)
	}
}

func TestRealOfdrwSeals(t *testing.T) {
	maker := readPEMCert(t, "ofdrw_SealBuilder.cert.pem")
	user := readPEMCert(t, "ofdrw_USER.cert.pem")
	for _, tt := range []struct {
		file    string
		version int
		signed  string
	}{
		{"v4_ofdrw_UserV4.esl", VersionV4, "DER(SES_SealInfo)"},
		{"v1_ofdrw_UserV1.esl", VersionV1, "DER(SEQUENCE{SES_SealInfo, cert, signatureAlgorithm})"},
	} {
		t.Run(tt.file, func(t *testing.T) {
			der := readTestdata(t, tt.file)
			s, err := ParseSeal(der)
			if err != nil {
				t.Fatal(err)
			}
			if s.Version != tt.version || s.Header.Vid != "OFDR&WTest" || s.Picture.Type != "PNG" || s.Picture.Width != 40 {
				t.Errorf("version %d vid %q picture %s %d", s.Version, s.Header.Vid, s.Picture.Type, s.Picture.Width)
			}
			if !bytes.Equal(s.MakerCert, maker) {
				t.Errorf("maker certificate differs from SealBuilder's")
			}
			if len(s.Certs) != 1 || !bytes.Equal(s.Certs[0], user) {
				t.Errorf("certList does not hold USER's certificate")
			}
			r := VerifySeal(context.Background(), der, VerifyOptions{Now: at2021})
			wantResults(t, r, map[string]string{
				CheckStructure: ResultPass, CheckSealSignature: ResultPass, CheckSealValidity: ResultPass,
				CheckChain: ResultIndeterminate, CheckRevocation: ResultIndeterminate,
			})
			if c, _ := r.Find(CheckSealSignature); !strings.Contains(c.Detail, tt.signed) {
				t.Errorf("seal_signature detail %q does not name %s", c.Detail, tt.signed)
			}
			if r.Verdict != VerdictIndeterminate {
				t.Errorf("verdict %s", r.Verdict)
			}
			// The seal expired in 2022.
			late := VerifySeal(context.Background(), der, VerifyOptions{Now: func() time.Time { return time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC) }})
			if late.Verdict != VerdictInvalid || !late.Failed(CheckSealValidity) {
				t.Errorf("expired seal: %s %v", late.Verdict, failing(late))
			}
		})
	}
}

// TestRealOfdrwPKCS12 checks that the committed PEM certificates are the
// ones in the .p12 files (re-deriving them needs openssl).
func TestRealOfdrwPKCS12(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("openssl not found; CI must have it")
		}
		t.Skip("openssl not found")
	}
	for _, name := range []string{"SealBuilder", "USER"} {
		out, err := exec.Command("openssl", "pkcs12", "-legacy", "-in", "testdata/ofdrw_"+name+".p12",
			"-passin", "pass:777777", "-nokeys", "-clcerts").Output()
		if err != nil {
			t.Fatalf("%s: openssl pkcs12: %v", name, err)
		}
		var block *pem.Block
		for rest := out; ; {
			block, rest = pem.Decode(rest)
			if block == nil || block.Type == "CERTIFICATE" {
				break
			}
		}
		if block == nil || !bytes.Equal(block.Bytes, readPEMCert(t, "ofdrw_"+name+".cert.pem")) {
			t.Errorf("%s: certificate in the .p12 differs from the committed PEM", name)
		}
	}
}

func TestRealHebeigedeSeal(t *testing.T) {
	der := readTestdata(t, "v4_hebeigede_SESealData.DER")
	s, err := ParseSeal(der)
	if err != nil {
		t.Fatal(err)
	}
	if s.Version != VersionV4 || s.Header.Vid != "Vid HebeiGede" || s.Type != 4 || s.Picture.Type != "GIF" ||
		s.Picture.Width != 42 || s.Picture.Height != 42 || len(s.Extensions) != 3 {
		t.Errorf("fields: v%d %q type %d %s %dx%d ext %d", s.Version, s.Header.Vid, s.Type, s.Picture.Type, s.Picture.Width, s.Picture.Height, len(s.Extensions))
	}
	if crit := []bool{s.Extensions[0].Critical, s.Extensions[1].Critical, s.Extensions[2].Critical}; crit[0] || !crit[1] || crit[2] {
		t.Errorf("critical flags %v, want false true false", crit)
	}
	if len(s.Deviations) != 2 {
		t.Errorf("deviations %v, want the two explicit critical FALSE", s.Deviations)
	}
	r := VerifySeal(context.Background(), der, VerifyOptions{Now: at2021})
	if r.Verdict != VerdictInvalid || !r.Failed(CheckSealSignature) {
		t.Errorf("verdict %s failing %v", r.Verdict, failing(r))
	}
	if c, _ := r.Find(CheckStructure); !c.OK {
		t.Errorf("structure should pass: %s", c.Detail)
	}
}

func TestRealDms360(t *testing.T) {
	sealDER := readTestdata(t, "v1_dms360_Seal.esl")
	s, err := ParseSeal(sealDER)
	if err != nil {
		t.Fatal(err)
	}
	if s.Version != VersionV1 || s.Picture.Type != "PNG" || s.Picture.Width != 33 || len(s.Certs) != 0 ||
		!s.ValidEnd.Equal(time.Date(2029, 12, 18, 12, 53, 46, 0, time.UTC)) {
		t.Errorf("fields: v%d %s %d certs %d end %v", s.Version, s.Picture.Type, s.Picture.Width, len(s.Certs), s.ValidEnd)
	}
	r := VerifySeal(context.Background(), sealDER, VerifyOptions{Now: at2021})
	if !mustFind(t, r, CheckSealSignature).OK {
		t.Errorf("maker signature should verify with the leniently read key: %+v", r.Checks)
	}
	// The self-signed maker certificate has malformed SANs: the chain
	// check reports it instead of crashing.
	if c := mustFind(t, r, CheckChain); c.OK || !strings.Contains(c.Detail, "strict") {
		t.Errorf("chain: %+v", c)
	}

	sigDER := readTestdata(t, "v1_dms360_SignedValue.dat")
	sig, err := ParseSignature(sigDER)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sig.Seal.Raw, sealDER) || !sig.TimeInfo.Equal(time.Date(2020, 1, 25, 7, 31, 56, 377e6, time.UTC)) {
		t.Errorf("embedded seal or timeInfo %v", sig.TimeInfo)
	}
	r = Verify(context.Background(), sigDER, VerifyOptions{Now: at2021})
	if r.Verdict != VerdictInvalid {
		t.Errorf("verdict %s", r.Verdict)
	}
	if !mustFind(t, r, CheckSealSignature).OK {
		t.Errorf("seal signature should verify")
	}
	if c := mustFind(t, r, CheckSignature); c.OK || !strings.Contains(c.Detail, "non-conforming") {
		t.Errorf("signature: %+v", c)
	}
}

func mustFind(t *testing.T, r *Report, name string) Check {
	t.Helper()
	c, ok := r.Find(name)
	if !ok {
		t.Fatalf("check %s missing: %+v", name, r.Checks)
	}
	return c
}
