package policies

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"strings"
	"testing"

	"github.com/emmansun/gmsm/sm2"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// at is one subject attribute for test names: type short name or dotted
// OID, value, and optionally an explicit ASN.1 string tag.
type at struct {
	typ   string
	value string
	tag   cbasn1.Tag // 0: the tag a conforming encoder would choose
}

func (a at) oid(t testing.TB) asn1.ObjectIdentifier {
	t.Helper()
	if def, ok := attributeByName(a.typ); ok {
		return def.oid
	}
	var oid asn1.ObjectIdentifier
	for _, part := range strings.Split(a.typ, ".") {
		n := 0
		for _, c := range part {
			if c < '0' || c > '9' {
				t.Fatalf("bad attribute type %q", a.typ)
			}
			n = n*10 + int(c-'0')
		}
		oid = append(oid, n)
	}
	return oid
}

func (a at) encodingTag() cbasn1.Tag {
	if a.tag != 0 {
		return a.tag
	}
	if def, ok := attributeByName(a.typ); ok {
		switch def.kind {
		case printableOnly:
			return tagPrintableString
		case ia5Only:
			return tagIA5String
		}
	}
	if isPrintableString(a.value) {
		return tagPrintableString
	}
	return tagUTF8String
}

// rawName encodes attrs as a DER Name, one attribute per RDN, with the
// given tags, independently of encoding/asn1's string type choices.
func rawName(t testing.TB, attrs ...at) []byte {
	t.Helper()
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, a := range attrs {
			b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(a.oid(t))
					b.AddASN1(a.encodingTag(), func(b *cryptobyte.Builder) {
						b.AddBytes([]byte(a.value))
					})
				})
			})
		}
	})
	der, err := b.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// parseName parses a DER Name the way crypto/x509 and smx509 do for CSRs.
func parseName(t *testing.T, der []byte) pkix.Name {
	t.Helper()
	n, ok := tryParseName(der)
	if !ok {
		t.Fatal("test name does not parse")
	}
	return n
}

func tryParseName(der []byte) (pkix.Name, bool) {
	var rdns pkix.RDNSequence
	if rest, err := asn1.Unmarshal(der, &rdns); err != nil || len(rest) != 0 {
		return pkix.Name{}, false
	}
	var n pkix.Name
	n.FillFromRDNSequence(&rdns)
	return n, true
}

// withSubject sets RawSubject and, when encoding/asn1 can parse it, also
// Subject, as a CSR parser would. Names that encoding/asn1 refuses (bad
// UTF-8, characters outside PrintableString) could not come from a parsed
// CSR, but Check must still refuse them in RawSubject.
func withSubject(t *testing.T, req Request, attrs ...at) Request {
	t.Helper()
	req.RawSubject = rawName(t, attrs...)
	req.Subject, _ = tryParseName(req.RawSubject)
	return req
}

func sm2Key(t testing.TB) crypto.PublicKey {
	t.Helper()
	k, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k.Public()
}

func ecKey(t testing.TB, c elliptic.Curve) crypto.PublicKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k.Public()
}

func defaultSet(t testing.TB) *Set {
	t.Helper()
	s, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func profile(t testing.TB, name string) *Profile {
	t.Helper()
	p, err := defaultSet(t).Get(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// wantRule checks that err is a Violation of rule ("" = no error).
func wantRule(t *testing.T, err error, rule string) {
	t.Helper()
	if rule == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("accepted, want violation %q", rule)
	}
	var v *Violation
	if !errors.As(err, &v) || !errors.Is(err, ErrPolicy) {
		t.Fatalf("error %v is not a policy violation", err)
	}
	if v.Rule != rule {
		t.Fatalf("violation %q (%v), want %q", v.Rule, err, rule)
	}
}
