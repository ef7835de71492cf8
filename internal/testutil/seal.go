package testutil

import (
	"encoding/asn1"
	"testing"
)

// SignedPart is one signature inside an SES_Signature: the certificate of
// the key that made it, the exact bytes it covers and the signature value
// (DER SEQUENCE{r, s}).
type SignedPart struct {
	Name   string
	Cert   []byte
	Signed []byte
	Sig    []byte
}

// SealSignatureParts cuts the two signatures out of a GB/T 38540 v4
// SES_Signature with encoding/asn1 (not gmtrust's own parser), so that
// cross-checks with other implementations do not depend on our codec:
// the maker's over SES_SealInfo, then the signer's over TBS_Sign.
func SealSignatureParts(t testing.TB, sigDER []byte) (maker, signer SignedPart) {
	t.Helper()
	var outer struct {
		TBS  asn1.RawValue
		Cert []byte
		Alg  asn1.ObjectIdentifier
		Sig  asn1.BitString
	}
	if rest, err := asn1.Unmarshal(sigDER, &outer); err != nil || len(rest) != 0 {
		t.Fatalf("encoding/asn1 cannot read SES_Signature: %v", err)
	}
	var tbs struct {
		Version int
		Seal    struct {
			Info asn1.RawValue
			Cert []byte
			Alg  asn1.ObjectIdentifier
			Sig  asn1.BitString
		}
		// encoding/asn1 ignores the remaining TBS_Sign fields.
	}
	if _, err := asn1.Unmarshal(outer.TBS.FullBytes, &tbs); err != nil {
		t.Fatalf("encoding/asn1 cannot read TBS_Sign: %v", err)
	}
	return SignedPart{Name: "maker over SES_SealInfo", Cert: tbs.Seal.Cert, Signed: tbs.Seal.Info.FullBytes, Sig: tbs.Seal.Sig.Bytes},
		SignedPart{Name: "signer over TBS_Sign", Cert: outer.Cert, Signed: outer.TBS.FullBytes, Sig: outer.Sig.Bytes}
}
