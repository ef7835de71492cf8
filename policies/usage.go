package policies

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
)

// Extended key usage object identifiers (RFC 5280 section 4.2.1.12).
var (
	OIDExtKeyUsageServerAuth      = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 1}
	OIDExtKeyUsageClientAuth      = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 2}
	OIDExtKeyUsageCodeSigning     = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 3}
	OIDExtKeyUsageEmailProtection = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 4}
	OIDExtKeyUsageTimeStamping    = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 8}
	OIDExtKeyUsageOCSPSigning     = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 9}
)

// OIDOCSPNoCheck is id-pkix-ocsp-nocheck (RFC 6960 section 4.2.2.2.1).
// When Decision.OCSPNoCheck is set the encoder adds a non-critical
// extension with this OID whose value is the DER NULL (0x05 0x00).
var OIDOCSPNoCheck = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}

// ErrUnknownKeyUsage and ErrUnknownExtKeyUsage are returned (wrapped) by
// ParseKeyUsage and ParseExtKeyUsage for names they do not know.
var (
	ErrUnknownKeyUsage    = errors.New("policies: unknown key usage")
	ErrUnknownExtKeyUsage = errors.New("policies: unknown extended key usage")
)

// keyUsageNames lists the key usages an end-entity profile may assert.
// keyCertSign, cRLSign, encipherOnly and decipherOnly are deliberately
// absent: profiles describe leaf certificates only, and the two *Only
// bits have no use with the algorithms gmtrust issues for.
var keyUsageNames = []struct {
	name string
	bit  x509.KeyUsage
}{
	{"digitalSignature", x509.KeyUsageDigitalSignature},
	{"nonRepudiation", x509.KeyUsageContentCommitment},
	// contentCommitment is the X.509 (2008) name of the same bit.
	{"contentCommitment", x509.KeyUsageContentCommitment},
	{"keyEncipherment", x509.KeyUsageKeyEncipherment},
	{"dataEncipherment", x509.KeyUsageDataEncipherment},
	{"keyAgreement", x509.KeyUsageKeyAgreement},
}

var extKeyUsageNames = []struct {
	name string
	eku  x509.ExtKeyUsage
	oid  asn1.ObjectIdentifier
}{
	{"serverAuth", x509.ExtKeyUsageServerAuth, OIDExtKeyUsageServerAuth},
	{"clientAuth", x509.ExtKeyUsageClientAuth, OIDExtKeyUsageClientAuth},
	{"emailProtection", x509.ExtKeyUsageEmailProtection, OIDExtKeyUsageEmailProtection},
	{"codeSigning", x509.ExtKeyUsageCodeSigning, OIDExtKeyUsageCodeSigning},
	{"timeStamping", x509.ExtKeyUsageTimeStamping, OIDExtKeyUsageTimeStamping},
	{"OCSPSigning", x509.ExtKeyUsageOCSPSigning, OIDExtKeyUsageOCSPSigning},
}

// ParseKeyUsage returns the key usage bit named by s: digitalSignature,
// nonRepudiation (or its newer name contentCommitment), keyEncipherment,
// dataEncipherment or keyAgreement. Names are case-sensitive, as in
// RFC 5280.
func ParseKeyUsage(s string) (x509.KeyUsage, error) {
	for _, k := range keyUsageNames {
		if k.name == s {
			return k.bit, nil
		}
	}
	return 0, fmt.Errorf("%w %q", ErrUnknownKeyUsage, s)
}

// ParseExtKeyUsage returns the object identifier of the extended key usage
// named by s: serverAuth, clientAuth, emailProtection, codeSigning,
// timeStamping or OCSPSigning.
func ParseExtKeyUsage(s string) (asn1.ObjectIdentifier, error) {
	_, oid, err := parseExtKeyUsage(s)
	return oid, err
}

func parseExtKeyUsage(s string) (x509.ExtKeyUsage, asn1.ObjectIdentifier, error) {
	for _, e := range extKeyUsageNames {
		if e.name == s {
			// Copy so callers cannot alter the table through the result.
			return e.eku, append(asn1.ObjectIdentifier(nil), e.oid...), nil
		}
	}
	return 0, nil, fmt.Errorf("%w %q", ErrUnknownExtKeyUsage, s)
}
