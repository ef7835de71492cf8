package seal

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// flipAt returns a copy of b with one bit flipped at index i.
func flipAt(t *testing.T, b []byte, i int) []byte {
	t.Helper()
	if i < 0 || i >= len(b) {
		t.Fatalf("flip index %d outside %d bytes", i, len(b))
	}
	out := bytes.Clone(b)
	out[i] ^= 0x01
	return out
}

// indexOf finds the first occurrence of part in b.
func indexOf(t *testing.T, b, part []byte) int {
	t.Helper()
	i := bytes.Index(b, part)
	if i < 0 {
		t.Fatal("part not found")
	}
	return i
}

func TestTampering(t *testing.T) {
	p := newTestPKI(t)
	der := stampTest(t, p, makeTestSeal(t, p))
	sig, err := ParseSignature(der)
	if err != nil {
		t.Fatal(err)
	}
	// Everything below locates fields by content; the seal (and so the
	// certList) comes before the outer signer certificate.
	picture := indexOf(t, der, sig.Seal.Picture.Data) + len(sig.Seal.Picture.Data)/2
	validEnd := indexOf(t, der, []byte("20270101000000Z")) + 3 // "2027" -> "2026"
	certList := indexOf(t, der, p.holderDER) + len(p.holderDER) - 10
	makerSig := indexOf(t, der, sig.Seal.SignedValue) + len(sig.Seal.SignedValue) - 1
	signerSig := len(der) - 1
	if certList > len(sig.RawTBS) {
		t.Fatal("certList occurrence is not inside TBS_Sign")
	}

	tests := []struct {
		name     string
		der      []byte
		data     []byte
		wantFail []string
	}{
		{"untouched", der, testDocument, nil},
		{"document", der, flipAt(t, testDocument, 5), []string{CheckDataHash}},
		{"picture", flipAt(t, der, picture), testDocument, []string{CheckSealSignature, CheckSignature}},
		{"validEnd date", flipAt(t, der, validEnd), testDocument, []string{CheckSealSignature, CheckSignature}},
		{"cert list", flipAt(t, der, certList), testDocument, []string{CheckSealSignature, CheckSignerInSeal, CheckSignature}},
		{"maker signature", flipAt(t, der, makerSig), testDocument, []string{CheckSealSignature, CheckSignature}},
		{"signer signature", flipAt(t, der, signerSig), testDocument, []string{CheckSignature}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := fullOptions(t, p)
			opts.Data = tt.data
			r := Verify(context.Background(), tt.der, opts)
			if got := failing(r); !slices.Equal(got, tt.wantFail) {
				t.Fatalf("failing checks %v, want %v: %+v", got, tt.wantFail, r.Checks)
			}
			wantVerdict := VerdictValid
			if tt.wantFail != nil {
				wantVerdict = VerdictInvalid
				if !strings.Contains(r.Reason, tt.wantFail[0]) {
					t.Errorf("reason %q does not name %s", r.Reason, tt.wantFail[0])
				}
			}
			if r.Verdict != wantVerdict {
				t.Errorf("verdict %s, want %s", r.Verdict, wantVerdict)
			}
		})
	}
}

func TestVerifyPolicy(t *testing.T) {
	p := newTestPKI(t)
	sealDER := makeTestSeal(t, p)
	der := stampTest(t, p, sealDER)
	holder, maker := sha256.Sum256(p.holderDER), sha256.Sum256(p.makerDER)
	late, err := stampUnchecked(sealDER, p.holderDER, p.holderKey, docHash(testDocument), "p", tValidEnd.AddDate(0, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	other := newTestPKI(t)

	tests := []struct {
		name        string
		der         []byte
		modify      func(*VerifyOptions)
		wantVerdict string
		wantCheck   string // the check that decides, with its result
		wantResult  string
	}{
		{"all good", der, nil, VerdictValid, CheckChain, ResultPass},
		{"seal used after validEnd", late, func(o *VerifyOptions) {
			o.Now = func() time.Time { return tValidEnd.AddDate(0, 1, 0) }
		}, VerdictInvalid, CheckSealValidity, ResultFail},
		{"signing time in the future", der, func(o *VerifyOptions) {
			o.Now = func() time.Time { return tSign.Add(-time.Hour) }
		}, VerdictInvalid, CheckSealValidity, ResultFail},
		{"signer revoked before signing", der, func(o *VerifyOptions) {
			o.Revocation = &fakeRevocation{revoked: map[[32]byte]RevocationResult{
				holder: {Status: RevocationRevoked, RevokedAt: tSign.AddDate(0, 0, -1), Reason: 4}}}
		}, VerdictInvalid, CheckRevocation, ResultFail},
		{"maker revoked before signing", der, func(o *VerifyOptions) {
			o.Revocation = &fakeRevocation{revoked: map[[32]byte]RevocationResult{
				maker: {Status: RevocationRevoked, RevokedAt: tSign.AddDate(0, 0, -1)}}}
		}, VerdictInvalid, CheckRevocation, ResultFail},
		{"signer key compromised after claimed time", der, func(o *VerifyOptions) {
			o.Revocation = &fakeRevocation{revoked: map[[32]byte]RevocationResult{
				holder: {Status: RevocationRevoked, RevokedAt: tSign.AddDate(0, 0, 1), Reason: ReasonKeyCompromise}}}
		}, VerdictInvalid, CheckRevocation, ResultFail},
		{"signer superseded after claimed time", der, func(o *VerifyOptions) {
			o.Revocation = &fakeRevocation{revoked: map[[32]byte]RevocationResult{
				holder: {Status: RevocationRevoked, RevokedAt: tSign.AddDate(0, 0, 1), Reason: 4}}}
		}, VerdictIndeterminate, CheckRevocation, ResultIndeterminate},
		{"no revocation info", der, func(o *VerifyOptions) {
			o.Revocation = &fakeRevocation{revoked: map[[32]byte]RevocationResult{holder: {Status: RevocationUnknown}}}
		}, VerdictIndeterminate, CheckRevocation, ResultIndeterminate},
		{"revocation checker down", der, func(o *VerifyOptions) {
			o.Revocation = &fakeRevocation{err: errors.New("OCSP responder unreachable")}
		}, VerdictIndeterminate, CheckRevocation, ResultIndeterminate},
		{"no revocation checker", der, func(o *VerifyOptions) { o.Revocation = nil }, VerdictIndeterminate, CheckRevocation, ResultIndeterminate},
		{"untrusted root", der, func(o *VerifyOptions) { o.Trust = mustTrust(t, other.rootDER) }, VerdictIndeterminate, CheckChain, ResultIndeterminate},
		{"no trust anchors", der, func(o *VerifyOptions) { o.Trust = nil }, VerdictIndeterminate, CheckChain, ResultIndeterminate},
		{"seal active", der, func(o *VerifyOptions) { o.SealStatus = fakeRegistry{"44030000000001": SealActive} }, VerdictValid, CheckSealStatus, ResultPass},
		{"seal suspended", der, func(o *VerifyOptions) { o.SealStatus = fakeRegistry{"44030000000001": SealSuspended} }, VerdictInvalid, CheckSealStatus, ResultFail},
		{"seal revoked", der, func(o *VerifyOptions) { o.SealStatus = fakeRegistry{"44030000000001": SealRevoked} }, VerdictInvalid, CheckSealStatus, ResultFail},
		{"seal unknown to registry", der, func(o *VerifyOptions) { o.SealStatus = fakeRegistry{} }, VerdictIndeterminate, CheckSealStatus, ResultIndeterminate},
		{"digest matches", der, func(o *VerifyOptions) { o.Data, o.Digest = nil, docHash(testDocument) }, VerdictValid, CheckDataHash, ResultPass},
		{"digest differs", der, func(o *VerifyOptions) { o.Data, o.Digest = nil, docHash([]byte("x")) }, VerdictInvalid, CheckDataHash, ResultFail},
		{"data and digest disagree", der, func(o *VerifyOptions) { o.Digest = docHash([]byte("x")) }, VerdictInvalid, CheckDataHash, ResultFail},
		{"garbage", []byte("not a seal"), nil, VerdictInvalid, CheckStructure, ResultFail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := fullOptions(t, p)
			if tt.modify != nil {
				tt.modify(&opts)
			}
			r := Verify(context.Background(), tt.der, opts)
			c, ok := r.Find(tt.wantCheck)
			if !ok || c.Result != tt.wantResult || c.OK != (tt.wantResult == ResultPass) {
				t.Fatalf("check %s = %+v, want %s", tt.wantCheck, c, tt.wantResult)
			}
			if r.Verdict != tt.wantVerdict {
				t.Fatalf("verdict %s (%s), want %s", r.Verdict, r.Reason, tt.wantVerdict)
			}
			// Only the deciding check may be off: the rest of the
			// signature is fine in every case.
			for _, other := range r.Checks {
				if other.Name != tt.wantCheck && !other.OK && tt.wantCheck != CheckStructure {
					t.Errorf("unexpected %s %s: %s", other.Name, other.Result, other.Detail)
				}
			}
		})
	}
}

// addTimeStamp appends a [0] EXPLICIT BIT STRING timeStamp to a v4
// SES_Signature; it lies outside TBS_Sign, so the signature still holds.
func addTimeStamp(t *testing.T, der, ts []byte) []byte {
	t.Helper()
	in := cryptobyte.String(der)
	var body cryptobyte.String
	if !in.ReadASN1(&body, cbasn1.SEQUENCE) {
		t.Fatal("not a SEQUENCE")
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(body)
		b.AddASN1(tagContext0, func(b *cryptobyte.Builder) { b.AddASN1BitString(ts) })
	})
	return b.BytesOrPanic()
}

func TestTimeStampReportedNotVerified(t *testing.T) {
	p := newTestPKI(t)
	der := addTimeStamp(t, stampTest(t, p, makeTestSeal(t, p)), []byte("opaque RFC 3161 token"))
	sig, err := ParseSignature(der)
	if err != nil {
		t.Fatal(err)
	}
	if string(sig.TimeStamp) != "opaque RFC 3161 token" {
		t.Fatalf("timeStamp %q", sig.TimeStamp)
	}
	r := Verify(context.Background(), der, fullOptions(t, p))
	c := r.Checks[len(r.Checks)-1]
	if c.Name != CheckTimestamp || c.OK || c.Result != ResultNotChecked || !strings.Contains(c.Detail, "not verified") {
		t.Fatalf("last check %+v", c)
	}
	if r.Verdict != VerdictValid {
		t.Fatalf("an unverified timestamp must not change the verdict: %s %s", r.Verdict, r.Reason)
	}
}

func TestVerifySealBare(t *testing.T) {
	p := newTestPKI(t)
	sealDER := makeTestSeal(t, p)
	opts := fullOptions(t, p)
	opts.SealStatus = fakeRegistry{"44030000000001": SealActive}
	r := VerifySeal(context.Background(), sealDER, opts)
	want := []string{CheckStructure, CheckSealSignature, CheckSealValidity, CheckChain, CheckRevocation, CheckSealStatus}
	var names []string
	for _, c := range r.Checks {
		names = append(names, c.Name)
	}
	if r.Verdict != VerdictValid || !slices.Equal(names, want) {
		t.Fatalf("verdict %s checks %v: %+v", r.Verdict, names, r.Checks)
	}
	if r.Signer != "" || !r.Time.IsZero() {
		t.Errorf("bare seal report has signer or time")
	}
	opts.Now = func() time.Time { return tValidEnd.Add(time.Second) }
	if r := VerifySeal(context.Background(), sealDER, opts); r.Verdict != VerdictInvalid || !r.Failed(CheckSealValidity) {
		t.Errorf("expired seal: %s %v", r.Verdict, failing(r))
	}
	if r := VerifySeal(context.Background(), flipAt(t, sealDER, len(sealDER)/2), opts); r.Verdict != VerdictInvalid || !r.Failed(CheckSealSignature) {
		t.Errorf("tampered seal: %s %v", r.Verdict, failing(r))
	}
}

func TestVerifyWithCache(t *testing.T) {
	p := newTestPKI(t)
	der := stampTest(t, p, makeTestSeal(t, p))
	opts := fullOptions(t, p)
	opts.Cache = NewCache(8)
	for i := 0; i < 3; i++ {
		if r := Verify(context.Background(), der, opts); r.Verdict != VerdictValid {
			t.Fatalf("round %d: %s %+v", i, r.Verdict, r.Checks)
		}
	}
	if n := opts.Cache.seals.len(); n != 1 {
		t.Errorf("%d cached seals, want 1", n)
	}
	if n := opts.Cache.certs.len(); n != 2 {
		t.Errorf("%d cached certificates, want 2", n)
	}
	// A cached seal must not make a tampered copy pass.
	sig, _ := ParseSignature(der)
	bad := flipAt(t, der, indexOf(t, der, sig.Seal.SignedValue)+5)
	if r := Verify(context.Background(), bad, opts); !r.Failed(CheckSealSignature) {
		t.Errorf("tampered seal passed with a warm cache")
	}
	// Bounded: more certificates than the size evict old ones.
	small := NewCache(2)
	for _, c := range [][]byte{p.rootDER, p.makerDER, p.holderDER, p.otherDER} {
		if _, err := small.certInfo(c); err != nil {
			t.Fatal(err)
		}
	}
	if n := small.certs.len(); n != 2 {
		t.Errorf("cache holds %d entries, bound is 2", n)
	}
}

func TestReportJSON(t *testing.T) {
	p := newTestPKI(t)
	der := stampTest(t, p, makeTestSeal(t, p))
	r := Verify(context.Background(), der, fullOptions(t, p))
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"verdict", "version", "seal", "signer", "time", "property_info", "checks"} {
		if _, ok := got[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, b)
		}
	}
	seal := got["seal"].(map[string]any)
	for _, k := range []string{"name", "esid", "type", "valid_start", "valid_end", "maker"} {
		if _, ok := seal[k]; !ok {
			t.Errorf("JSON seal lacks %q", k)
		}
	}
	check := got["checks"].([]any)[0].(map[string]any)
	if check["name"] != CheckStructure || check["ok"] != true || check["detail"] == "" {
		t.Errorf("first check %v", check)
	}
}
