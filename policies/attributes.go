package policies

import (
	"encoding/asn1"
	"strings"
)

// stringKind is the ASN.1 string syntax an attribute value must use.
type stringKind int

const (
	// directoryString values are UTF8String or PrintableString: RFC 5280
	// section 4.1.2.6 lets new certificates use only those two encodings.
	directoryString stringKind = iota
	// printableOnly values are PrintableString (C, serialNumber).
	printableOnly
	// ia5Only values are IA5String (emailAddress, DC).
	ia5Only
)

// attribute describes one subject attribute type a profile may name.
type attribute struct {
	name   string // the short name used in profiles
	oid    asn1.ObjectIdentifier
	maxLen int // in characters
	kind   stringKind
}

// attributes is the closed list of subject attribute types gmtrust knows.
// Any other OID in a request is rejected, so that nothing unreviewed ends
// up in a certificate. Upper bounds are RFC 5280 Appendix A's where it has
// one; where it does not (or its bound is absurd for a certificate, like
// ub-name = 32768 for personal names) the comment gives the reason.
var attributes = []attribute{
	{"CN", asn1.ObjectIdentifier{2, 5, 4, 3}, 64, directoryString},                        // ub-common-name
	{"surname", asn1.ObjectIdentifier{2, 5, 4, 4}, 64, directoryString},                   // ub-name is 32768; 64 fits any real surname
	{"serialNumber", asn1.ObjectIdentifier{2, 5, 4, 5}, 64, printableOnly},                // ub-serial-number
	{"C", asn1.ObjectIdentifier{2, 5, 4, 6}, 2, printableOnly},                            // ub-country-name-alpha-length
	{"L", asn1.ObjectIdentifier{2, 5, 4, 7}, 128, directoryString},                        // ub-locality-name
	{"ST", asn1.ObjectIdentifier{2, 5, 4, 8}, 128, directoryString},                       // ub-state-name
	{"STREET", asn1.ObjectIdentifier{2, 5, 4, 9}, 128, directoryString},                   // no RFC 5280 bound; same as L
	{"O", asn1.ObjectIdentifier{2, 5, 4, 10}, 64, directoryString},                        // ub-organization-name
	{"OU", asn1.ObjectIdentifier{2, 5, 4, 11}, 64, directoryString},                       // ub-organizational-unit-name
	{"title", asn1.ObjectIdentifier{2, 5, 4, 12}, 64, directoryString},                    // ub-title
	{"postalCode", asn1.ObjectIdentifier{2, 5, 4, 17}, 40, directoryString},               // ub-postal-code (X.520)
	{"givenName", asn1.ObjectIdentifier{2, 5, 4, 42}, 64, directoryString},                // ub-name is 32768; 64 fits any real name
	{"pseudonym", asn1.ObjectIdentifier{2, 5, 4, 65}, 128, directoryString},               // ub-pseudonym
	{"organizationIdentifier", asn1.ObjectIdentifier{2, 5, 4, 97}, 64, directoryString},   // no bound; an 18-character unified social credit code fits
	{"emailAddress", asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}, 255, ia5Only},     // ub-emailaddress-length
	{"UID", asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}, 256, directoryString}, // RFC 4519 sets no bound
	{"DC", asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}, 63, ia5Only},          // one DNS label (RFC 4519)
}

func attributeByName(name string) (attribute, bool) {
	for _, a := range attributes {
		if a.name == name {
			return a, true
		}
	}
	return attribute{}, false
}

func attributeByOID(oid asn1.ObjectIdentifier) (attribute, bool) {
	for _, a := range attributes {
		if a.oid.Equal(oid) {
			return a, true
		}
	}
	return attribute{}, false
}

func attributeNameList() string {
	names := make([]string, len(attributes))
	for i, a := range attributes {
		names[i] = a.name
	}
	return strings.Join(names, ", ")
}
