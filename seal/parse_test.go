package seal

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// replaceOnce returns b with the first occurrence of old replaced by new.
func replaceOnce(t *testing.T, b []byte, old, new string) []byte {
	t.Helper()
	if !bytes.Contains(b, []byte(old)) {
		t.Fatalf("pattern %q not found", old)
	}
	return bytes.Replace(b, []byte(old), []byte(new), 1)
}

// appendElement re-encodes the outer SEQUENCE of der with one more element.
func appendElement(t *testing.T, der []byte, elem []byte) []byte {
	t.Helper()
	in := cryptobyte.String(der)
	var body cryptobyte.String
	if !in.ReadASN1(&body, cbasn1.SEQUENCE) {
		t.Fatal("not a SEQUENCE")
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(body)
		b.AddBytes(elem)
	})
	return b.BytesOrPanic()
}

func TestParseBadInput(t *testing.T) {
	p := newTestPKI(t)
	sealDER := makeTestSeal(t, p)
	sigDER := stampTest(t, p, sealDER)
	s, err := ParseSeal(sealDER)
	if err != nil {
		t.Fatal(err)
	}
	padding := indexOf(t, sealDER, s.SignedValue) - 1 // the BIT STRING's unused-bits octet
	certListType := indexOf(t, sealDER, []byte(s.Name)) + len(s.Name)

	seals := []struct {
		name string
		der  []byte
		msg  string
	}{
		{"empty", nil, "empty input"},
		{"one byte", []byte{0x30}, "not a DER SEQUENCE"},
		{"truncated by one", sealDER[:len(sealDER)-1], "not a DER SEQUENCE"},
		{"truncated by half", sealDER[:len(sealDER)/2], "not a DER SEQUENCE"},
		{"trailing garbage", append(bytes.Clone(sealDER), 0), "trailing data"},
		{"trailing element", appendElement(t, sealDER, []byte{0x05, 0x00}), "unexpected trailing element"},
		{"wrong outer tag", append([]byte{0x31}, sealDER[1:]...), "not a DER SEQUENCE"},
		{"huge length", []byte{0x30, 0x84, 0x7f, 0xff, 0xff, 0xff, 0x30, 0x00}, "not a DER SEQUENCE"},
		{"length of 5 octets", []byte{0x30, 0x85, 0x01, 0x00, 0x00, 0x00, 0x00}, "not a DER SEQUENCE"},
		{"indefinite length (BER)", []byte{0x30, 0x80, 0x30, 0x00, 0x00, 0x00}, "not a DER SEQUENCE"},
		{"non-minimal length", []byte{0x30, 0x81, 0x02, 0x05, 0x00}, "not a DER SEQUENCE"},
		{"too large", make([]byte, MaxInputSize+1), "too large"},
		{"header ID not ES", replaceOnce(t, sealDER, "\x16\x02ES", "\x16\x02EX"), `ID is "EX"`},
		{"header version 5", replaceOnce(t, sealDER, "\x16\x02ES\x02\x01\x04", "\x16\x02ES\x02\x01\x05"), "version 5"},
		{"v4 layout with header version 1", replaceOnce(t, sealDER, "\x16\x02ES\x02\x01\x04", "\x16\x02ES\x02\x01\x01"), "certList"},
		{"certListType 3", append(append(bytes.Clone(sealDER[:certListType]), 0x02, 0x01, 0x03), sealDER[certListType+3:]...), "certListType 3"},
		{"UTCTime in v4", replaceOnce(t, sealDER, "\x18\x0f20250101000000Z", "\x17\x0f20250101000000Z"), "UTCTime where GB/T 38540 requires GeneralizedTime"},
		{"time without Z", replaceOnce(t, sealDER, "\x18\x0f20250101000000Z", "\x18\x0f202501010000000"), "is not YYYYMMDDHHMMSS"},
		{"non-ASCII esID", replaceOnce(t, sealDER, "44030000000001", "4403000000000\xff"), "non-ASCII"},
		{"negative width", replaceOnce(t, sealDER, "\x02\x01\x28\x02\x01\x28", "\x02\x01\xd8\x02\x01\x28"), "negative"},
		{"signedValue with unused bits", flipAt(t, sealDER, padding), "signedValue"},
	}
	for _, tt := range seals {
		t.Run("seal/"+tt.name, func(t *testing.T) {
			_, err := ParseSeal(tt.der)
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err %v, want ErrMalformed saying %q", err, tt.msg)
			}
			r := VerifySeal(context.Background(), tt.der, VerifyOptions{})
			if r.Verdict != VerdictInvalid || len(r.Checks) != 1 || r.Checks[0].Name != CheckStructure {
				t.Fatalf("report %+v", r)
			}
		})
	}
	if _, err := ParseSeal(make([]byte, MaxInputSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("too large: %v", err)
	}

	sigs := []struct {
		name string
		der  []byte
		msg  string
	}{
		{"empty", []byte{}, "empty input"},
		{"truncated by one", sigDER[:len(sigDER)-1], "not a DER SEQUENCE"},
		{"trailing garbage", append(bytes.Clone(sigDER), 0, 0), "trailing data"},
		{"seal instead of signature", sealDER, "TBS_Sign.version"},
		{"TBS version differs from seal", replaceOnce(t, sigDER, "\x02\x01\x04\x30", "\x02\x01\x01\x30"), "differs from the seal's version"},
		{"timeStamp not a BIT STRING", appendElement(t, sigDER, []byte{0xa0, 0x02, 0x05, 0x00}), "timeStamp"},
		{"two timeStamps", appendElement(t, appendElement(t, sigDER, []byte{0xa0, 0x03, 0x03, 0x01, 0x00}), []byte{0xa0, 0x03, 0x03, 0x01, 0x00}), "unexpected trailing element"},
		{"trailing element", appendElement(t, sigDER, []byte{0x05, 0x00}), "unexpected trailing element"},
	}
	for _, tt := range sigs {
		t.Run("signature/"+tt.name, func(t *testing.T) {
			_, err := ParseSignature(tt.der)
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err %v, want ErrMalformed saying %q", err, tt.msg)
			}
			r := Verify(context.Background(), tt.der, VerifyOptions{})
			if r.Verdict != VerdictInvalid || len(r.Checks) != 1 || r.Checks[0].Name != CheckStructure || r.Checks[0].OK {
				t.Fatalf("report %+v", r)
			}
		})
	}
}

// TestParseEveryTruncation cuts real files at every length: each prefix
// must be rejected, never crash.
func TestParseEveryTruncation(t *testing.T) {
	sig := readTestdata(t, "v4_kinggrid_999_SignedValue.dat")
	for n := 0; n < len(sig); n++ {
		if _, err := ParseSignature(sig[:n]); err == nil {
			t.Fatalf("signature prefix of %d bytes parsed", n)
		}
	}
	seal := readTestdata(t, "v4_hebeigede_SESealData.DER")
	for n := 0; n < len(seal); n++ {
		if _, err := ParseSeal(seal[:n]); err == nil {
			t.Fatalf("seal prefix of %d bytes parsed", n)
		}
	}
}

// TestVerifyEveryBitFlip flips one bit in each byte of a real signature:
// Verify must never report it valid or indeterminate, and never crash.
func TestVerifyEveryBitFlip(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	der := readTestdata(t, "v4_kinggrid_999_SignedValue.dat")
	doc := readTestdata(t, "v4_kinggrid_999_Signature.xml")
	opts := VerifyOptions{Data: doc, Now: at2021, Cache: NewCache(64)}
	for i := range der {
		bad := bytes.Clone(der)
		bad[i] ^= 0x01
		if r := Verify(context.Background(), bad, opts); r.Verdict != VerdictInvalid {
			t.Fatalf("flip at %d: verdict %s: %+v", i, r.Verdict, r.Checks)
		}
	}
}

func TestParseV1Time(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		want     time.Time
		deviates bool
		wantErr  bool
	}{
		{"DER UTCTime", "\x17\x0d200125073156Z", time.Date(2020, 1, 25, 7, 31, 56, 0, time.UTC), false, false},
		{"DER GeneralizedTime", "\x18\x0f20200125073156Z", time.Date(2020, 1, 25, 7, 31, 56, 0, time.UTC), false, false},
		{"ISO text with millis", "2020-01-25T07:31:56.377Z", time.Date(2020, 1, 25, 7, 31, 56, 377e6, time.UTC), true, false},
		{"text with space", "2020-01-25 07:31:56", time.Date(2020, 1, 25, 7, 31, 56, 0, time.UTC), true, false},
		{"GeneralizedTime text", "20200125073156Z", time.Date(2020, 1, 25, 7, 31, 56, 0, time.UTC), true, false},
		{"garbage", "yesterday", time.Time{}, false, true},
		{"binary", "\x00\x01\x02", time.Time{}, false, true},
		{"DER UTCTime with trailing byte", "\x17\x0d200125073156Z!", time.Time{}, false, true},
		{"empty", "", time.Time{}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sig := &Signature{}
			got, err := sig.parseV1Time([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v", err)
			}
			if !got.Equal(tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			if (len(sig.Deviations) > 0) != tt.deviates {
				t.Errorf("deviations %v", sig.Deviations)
			}
		})
	}
}

func TestParseKeepsOriginalBytes(t *testing.T) {
	// The kinggrid seal encodes critical FALSE; a DER re-encoder would
	// drop it and break the maker signature. Parsing must keep it.
	der := readTestdata(t, "v4_kinggrid_999_SignedValue.dat")
	sig, err := ParseSignature(der)
	if err != nil {
		t.Fatal(err)
	}
	ext := "\x30\x14\x06\x0a\x2a\x81\x1c\xcf\x55\x06\x07\x02\x02\x01\x01\x01\x00\x04\x03" + "2.1"
	if !bytes.Contains(sig.Seal.RawSealInfo, []byte(ext)) {
		t.Fatal("RawSealInfo lost the explicit critical FALSE")
	}
	if !bytes.Equal(sig.RawTBS, der[4:4+len(sig.RawTBS)]) || !bytes.Equal(sig.Raw, der) {
		t.Fatal("RawTBS/Raw are not the received bytes")
	}
	// The result does not alias the caller's buffer.
	der[10] ^= 0xff
	if sig.Raw[10] == der[10] {
		t.Fatal("Signature aliases the input")
	}
	if !strings.Contains(strings.Join(sig.Deviations, ";"), "critical FALSE") {
		t.Errorf("deviation not reported: %v", sig.Deviations)
	}
}
