package seal

import (
	"bytes"
	"context"
	"testing"
	"time"
)

// Seeds are the real files; run e.g.
//
//	go test -run=^$ -fuzz=FuzzParseSignature -fuzztime=20s ./seal/

func FuzzParseSeal(f *testing.F) {
	for _, name := range []string{"v4_ofdrw_UserV4.esl", "v1_ofdrw_UserV1.esl", "v4_hebeigede_SESealData.DER", "v1_dms360_Seal.esl"} {
		f.Add(readTestdata(f, name))
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		s, err := ParseSeal(der)
		if err != nil {
			if s != nil {
				t.Fatal("error with a non-nil seal")
			}
			return
		}
		if s.Version != VersionV4 && s.Version != VersionV1 {
			t.Fatalf("version %d", s.Version)
		}
		if !bytes.Equal(s.Raw, der) || !bytes.Contains(s.Raw, s.RawSealInfo) {
			t.Fatal("raw bytes are not the input")
		}
		if s.Version == VersionV4 && !bytes.Equal(s.SignedBytes, s.RawSealInfo) {
			t.Fatal("v4 signed bytes are not SES_SealInfo")
		}
		sum, err := Inspect(der)
		if err != nil || sum.Kind != "seal" || sum.ESID != s.ESID {
			t.Fatalf("Inspect disagrees with ParseSeal: %v", err)
		}
		_ = sum.String()
	})
}

func FuzzParseSignature(f *testing.F) {
	for _, name := range []string{"v4_kinggrid_999_SignedValue.dat", "v1_dms360_SignedValue.dat"} {
		f.Add(readTestdata(f, name))
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		sig, err := ParseSignature(der)
		if err != nil {
			if sig != nil {
				t.Fatal("error with a non-nil signature")
			}
			return
		}
		if sig.Version != sig.Seal.Version || !bytes.Equal(sig.Raw, der) || !bytes.Contains(sig.RawTBS, sig.Seal.Raw) {
			t.Fatal("inconsistent signature")
		}
		sum, err := Inspect(der)
		if err != nil || sum.Kind != "signature" || sum.PropertyInfo != sig.PropertyInfo {
			t.Fatalf("Inspect disagrees with ParseSignature: %v", err)
		}
		_ = sum.String()
	})
}

// FuzzVerify runs the whole engine; it must never panic and never call a
// mutated real signature valid (there are no trust anchors, so valid is
// impossible anyway: it can only be invalid or indeterminate).
func FuzzVerify(f *testing.F) {
	for _, name := range []string{"v4_kinggrid_999_SignedValue.dat", "v1_dms360_SignedValue.dat"} {
		f.Add(readTestdata(f, name))
	}
	now := func() time.Time { return time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC) }
	f.Fuzz(func(t *testing.T, der []byte) {
		r := Verify(context.Background(), der, VerifyOptions{Now: now, Digest: make([]byte, 32)})
		if r == nil || r.Verdict == VerdictValid || len(r.Checks) == 0 {
			t.Fatalf("report %+v", r)
		}
	})
}
