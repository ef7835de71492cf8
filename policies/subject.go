package policies

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// ASN.1 string tags seen in subjects. cryptobyte/asn1 names only some.
const (
	tagUTF8String      = cbasn1.Tag(12)
	tagPrintableString = cbasn1.Tag(19)
	tagT61String       = cbasn1.Tag(20)
	tagIA5String       = cbasn1.Tag(22)
	tagUniversalString = cbasn1.Tag(28)
	tagBMPString       = cbasn1.Tag(30)
)

func tagName(t cbasn1.Tag) string {
	switch t {
	case tagUTF8String:
		return "UTF8String"
	case tagPrintableString:
		return "PrintableString"
	case tagT61String:
		return "TeletexString"
	case tagIA5String:
		return "IA5String"
	case tagUniversalString:
		return "UniversalString"
	case tagBMPString:
		return "BMPString"
	}
	return fmt.Sprintf("ASN.1 tag 0x%02x", uint8(t))
}

// attrValue is one attribute of a subject. tag is 0 when the attribute
// came from a pkix.Name, which does not keep the encoding.
type attrValue struct {
	oid   asn1.ObjectIdentifier
	tag   cbasn1.Tag
	value string
}

func (a attrValue) describe() string {
	if t, ok := attributeByOID(a.oid); ok {
		return t.name
	}
	return a.oid.String()
}

// subjectAttributes returns the attributes Check validates: RawSubject
// when given (it is what gets copied into the certificate), else
// Subject.Names (every attribute as parsed), else the attributes the
// typed fields would encode. Whatever the source, anything else the
// request carries must agree with it, so that a CA which changed one
// representation after parsing cannot encode something unchecked.
func subjectAttributes(s pkix.Name, raw []byte) ([]attrValue, *Violation) {
	fromFields, v := pkixAttributes(s.ToRDNSequence())
	if v != nil {
		return nil, v
	}
	var list []attrValue
	switch {
	case len(raw) > 0:
		if list, v = parseRawSubject(raw); v != nil {
			return nil, v
		}
		if len(s.Names) > 0 {
			names, v := namesAttributes(s.Names)
			if v != nil {
				return nil, v
			}
			if !sameAttributes(list, names) {
				return nil, violation(RuleSubjectEncoding, "RawSubject and Subject.Names disagree")
			}
		}
	case len(s.Names) > 0:
		if list, v = namesAttributes(s.Names); v != nil {
			return nil, v
		}
	default:
		return fromFields, nil
	}
	for _, f := range fromFields {
		if !containsAttribute(list, f) {
			return nil, violation(RuleSubjectEncoding, "Subject field %s=%q is not in the subject being checked", f.describe(), f.value)
		}
	}
	return list, nil
}

func pkixAttributes(rdns pkix.RDNSequence) ([]attrValue, *Violation) {
	var out []attrValue
	for _, rdn := range rdns {
		more, v := namesAttributes(rdn)
		if v != nil {
			return nil, v
		}
		out = append(out, more...)
	}
	return out, nil
}

func namesAttributes(names []pkix.AttributeTypeAndValue) ([]attrValue, *Violation) {
	out := make([]attrValue, 0, len(names))
	for _, n := range names {
		s, ok := n.Value.(string)
		if !ok {
			return nil, violation(RuleSubjectValue, "attribute %s has a %T value, not a string", attrValue{oid: n.Type}.describe(), n.Value)
		}
		out = append(out, attrValue{oid: n.Type, value: s})
	}
	return out, nil
}

func sameAttributes(a, b []attrValue) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].matches(b[i]) {
			return false
		}
	}
	return true
}

func containsAttribute(list []attrValue, x attrValue) bool {
	for _, a := range list {
		if a.matches(x) {
			return true
		}
	}
	return false
}

// matches compares a (possibly raw) attribute with one from a pkix.Name.
// Values in encodings other than UTF8String, PrintableString and
// IA5String are decoded by pkix but kept raw here; they are refused later
// with a clearer error, so only their type is compared.
func (a attrValue) matches(b attrValue) bool {
	if !a.oid.Equal(b.oid) {
		return false
	}
	switch a.tag {
	case 0, tagUTF8String, tagPrintableString, tagIA5String:
		return a.value == b.value
	}
	return true
}

// parseRawSubject parses a DER Name (RFC 5280: SEQUENCE OF SET OF
// AttributeTypeAndValue) without interpreting values beyond their string
// encoding, which is checked later against the attribute's rules.
func parseRawSubject(raw []byte) ([]attrValue, *Violation) {
	bad := func(why string) *Violation {
		return violation(RuleSubjectEncoding, "RawSubject is not a DER Name: %s", why)
	}
	in := cryptobyte.String(raw)
	var rdns cryptobyte.String
	if !in.ReadASN1(&rdns, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, bad("malformed outer SEQUENCE")
	}
	var out []attrValue
	for !rdns.Empty() {
		var set cryptobyte.String
		if !rdns.ReadASN1(&set, cbasn1.SET) {
			return nil, bad("malformed RelativeDistinguishedName")
		}
		if set.Empty() {
			return nil, bad("empty RelativeDistinguishedName")
		}
		for !set.Empty() {
			var atv cryptobyte.String
			var a attrValue
			var val cryptobyte.String
			if !set.ReadASN1(&atv, cbasn1.SEQUENCE) ||
				!atv.ReadASN1ObjectIdentifier(&a.oid) ||
				!atv.ReadAnyASN1(&val, &a.tag) || !atv.Empty() {
				return nil, bad("malformed AttributeTypeAndValue")
			}
			a.value = string(val)
			out = append(out, a)
		}
	}
	return out, nil
}

// checkSubject validates every attribute and returns the CN values.
func (c *compiled) checkSubject(req Request) ([]string, *Violation) {
	attrs, v := subjectAttributes(req.Subject, req.RawSubject)
	if v != nil {
		return nil, v
	}
	seen := make(map[string]bool)
	var cns []string
	for _, a := range attrs {
		t, ok := attributeByOID(a.oid)
		if !ok {
			return nil, violation(RuleSubjectAttribute, "attribute type %s is not recognised", a.oid)
		}
		if !c.allowed[t.name] {
			return nil, violation(RuleSubjectAttribute, "attribute %s is not allowed by this profile", t.name)
		}
		if v := checkAttribute(t, a); v != nil {
			return nil, v
		}
		seen[t.name] = true
		if t.name == "CN" {
			cns = append(cns, a.value)
		}
	}
	for _, name := range c.required {
		if !seen[name] {
			return nil, violation(RuleSubjectRequired, "attribute %s is required", name)
		}
	}
	return cns, nil
}

// checkAttribute applies the encoding and value rules of attribute t.
func checkAttribute(t attribute, a attrValue) *Violation {
	bad := func(format string, args ...any) *Violation {
		return violation(RuleSubjectValue, "%s=%q: %s", t.name, a.value, fmt.Sprintf(format, args...))
	}
	if a.tag != 0 {
		ok := false
		switch t.kind {
		case directoryString:
			ok = a.tag == tagUTF8String || a.tag == tagPrintableString
		case printableOnly:
			ok = a.tag == tagPrintableString
		case ia5Only:
			ok = a.tag == tagIA5String
		}
		if !ok {
			return violation(RuleSubjectValue, "attribute %s is encoded as %s, which is not allowed for it", t.name, tagName(a.tag))
		}
	}
	v := a.value
	if !utf8.ValidString(v) {
		return violation(RuleSubjectValue, "attribute %s is not valid UTF-8", t.name)
	}
	if strings.TrimSpace(v) == "" {
		return bad("empty value")
	}
	if strings.TrimSpace(v) != v {
		// Otherwise "张三" and "张三 " would be two different names that
		// look the same.
		return bad("leading or trailing white space")
	}
	for _, r := range v {
		if unicode.IsControl(r) || isBidiControl(r) {
			return bad("contains control character U+%04X", r)
		}
	}
	if n := utf8.RuneCountInString(v); n > t.maxLen {
		return bad("%d characters, at most %d allowed", n, t.maxLen)
	}
	if (t.kind == printableOnly || a.tag == tagPrintableString) && !isPrintableString(v) {
		return bad("not a valid PrintableString")
	}
	if t.kind == ia5Only && !isASCII(v) {
		return bad("must be ASCII")
	}
	switch t.name {
	case "C":
		if len(v) != 2 || !isUpperAlpha(v[0]) || !isUpperAlpha(v[1]) {
			return bad("must be two upper-case letters (ISO 3166 code, e.g. CN)")
		}
	case "emailAddress":
		if err := checkEmail(v); err != nil {
			return bad("%v", err)
		}
	case "DC":
		if err := checkLabel(strings.ToLower(v)); err != nil {
			return bad("%v", err)
		}
	}
	return nil
}

// isBidiControl reports Unicode bidirectional formatting characters, which
// can make a name display differently from what it is (CVE-2021-42574).
func isBidiControl(r rune) bool {
	return (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069) || r == 0x200E || r == 0x200F || r == 0x061C
}

func isUpperAlpha(b byte) bool { return b >= 'A' && b <= 'Z' }

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// isPrintableString reports whether s uses only the X.680 PrintableString
// repertoire.
func isPrintableString(s string) bool {
	for i := 0; i < len(s); i++ {
		b := s[i]
		switch {
		case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9':
		case strings.IndexByte(" '()+,-./:=?", b) >= 0:
		default:
			return false
		}
	}
	return true
}
