package policies

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/emmansun/gmsm/sm2"
)

// ErrPolicy is matched (errors.Is) by every *Violation.
var ErrPolicy = errors.New("policies: request violates profile")

// Stable machine names of the rules Check enforces (Violation.Rule).
const (
	RuleKeyAlgorithm     = "key-algorithm"     // key type not allowed by the profile
	RuleKeyCurve         = "key-curve"         // ECDSA curve not allowed
	RuleKeySize          = "key-size"          // RSA modulus too small or too large
	RuleKeyExponent      = "key-exponent"      // RSA public exponent is not 65537
	RuleSubjectEncoding  = "subject-encoding"  // RawSubject is not a valid Name or disagrees with Subject
	RuleSubjectAttribute = "subject-attribute" // attribute type unknown or not allowed
	RuleSubjectRequired  = "subject-required"  // required attribute missing
	RuleSubjectValue     = "subject-value"     // attribute value malformed or too long
	RuleCommonName       = "common-name"       // CN not among the SANs (common_name_in_sans)
	RuleSANType          = "san-type"          // SAN type not allowed by the profile
	RuleSANRequired      = "san-required"      // no SAN although one is required
	RuleSANCount         = "san-count"         // more SANs than max_count
	RuleSANValue         = "san-value"         // SAN malformed
	RuleWildcard         = "wildcard"          // wildcard not allowed or misplaced
	RuleDepartment       = "department"        // requester may not ask for another department
	RuleValidity         = "validity"          // requested validity negative or above the maximum
)

// maxRSABits bounds RSA moduli: larger keys add nothing but make every
// verification of the certificate's signatures slow.
const maxRSABits = 8192

// Violation explains why a request is refused. It matches ErrPolicy.
type Violation struct {
	Profile string // the profile checked
	Rule    string // one of the Rule* constants
	Detail  string // human-readable, names the offending value
}

func (v *Violation) Error() string {
	if v.Profile == "" {
		return fmt.Sprintf("policies: %s: %s", v.Rule, v.Detail)
	}
	return fmt.Sprintf("policies: profile %q: %s: %s", v.Profile, v.Rule, v.Detail)
}

// Is makes every Violation match ErrPolicy.
func (v *Violation) Is(target error) bool { return target == ErrPolicy }

func violation(rule, format string, args ...any) *Violation {
	return &Violation{Rule: rule, Detail: fmt.Sprintf(format, args...)}
}

// Request is what a certificate request asks for, as the CA parsed it.
type Request struct {
	// Subject is the requested subject; Names must hold every attribute
	// as parsed from the CSR (smx509/x509 ParseCertificateRequest does
	// this), because the typed fields omit unknown attribute types.
	Subject pkix.Name
	// RawSubject is the DER subject from the CSR. When set it is what
	// Check validates, and the encoder must copy it verbatim into the
	// certificate.
	RawSubject []byte
	PublicKey  crypto.PublicKey

	DNSNames       []string
	IPAddresses    []net.IP
	EmailAddresses []string
	URIs           []*url.URL

	// Department is the department the certificate is for.
	Department string
	// RequesterDepartment is the department of the operator asking; ""
	// means an administrator, who is not restricted to one department.
	RequesterDepartment string
	// Validity is the requested lifetime; 0 means the profile default.
	Validity time.Duration
}

// Decision is what the certificate must contain.
type Decision struct {
	// KeyAlgorithm is the subject key's algorithm: "sm2", "ecdsa", "rsa".
	KeyAlgorithm string
	// Validity is the lifetime to encode (NotAfter = NotBefore + Validity).
	Validity time.Duration
	// KeyUsage is the keyUsage extension (critical), adjusted to the key
	// type as described in the package documentation.
	KeyUsage x509.KeyUsage
	// ExtKeyUsage and ExtKeyUsageOIDs are the same extended key usages in
	// both forms, in profile order; empty means no extension.
	ExtKeyUsage     []x509.ExtKeyUsage
	ExtKeyUsageOIDs []asn1.ObjectIdentifier
	// OCSPNoCheck asks for the id-pkix-ocsp-nocheck extension
	// (OIDOCSPNoCheck, value NULL).
	OCSPNoCheck bool
}

// Check decides whether req may be issued under p. A refusal is a
// *Violation (errors.Is(err, ErrPolicy)); a profile that does not validate
// gives a *FieldError instead.
func (p *Profile) Check(req Request) (Decision, error) {
	c, err := p.compile()
	if err != nil {
		return Decision{}, err
	}
	alg, v := c.checkKey(req.PublicKey)
	var cns []string
	if v == nil {
		cns, v = c.checkSubject(req)
	}
	if v == nil {
		v = c.checkSANs(p, req, cns)
	}
	if v == nil && p.SameDepartment && req.RequesterDepartment != "" && req.Department != req.RequesterDepartment {
		v = violation(RuleDepartment, "operator of department %q may not request a certificate for department %q", req.RequesterDepartment, req.Department)
	}
	var validity time.Duration
	if v == nil {
		validity, v = p.validity(req.Validity)
	}
	if v != nil {
		v.Profile = p.Name
		return Decision{}, v
	}
	return Decision{
		KeyAlgorithm:    alg,
		Validity:        validity,
		KeyUsage:        keyUsageFor(c.keyUsage, alg),
		ExtKeyUsage:     slices.Clone(c.eku),
		ExtKeyUsageOIDs: slices.Clone(c.ekuOIDs),
		OCSPNoCheck:     p.OCSPNoCheck,
	}, nil
}

// curveName names the curves gmtrust knows by identity, never by the name
// a Curve reports about itself: a look-alike curve calling itself "P-256"
// must not pass as P-256.
func curveName(c elliptic.Curve) string {
	switch c {
	case elliptic.P256():
		return "P-256"
	case elliptic.P384():
		return "P-384"
	case elliptic.P224():
		return "P-224"
	case elliptic.P521():
		return "P-521"
	}
	if p := c.Params(); p != nil && p.Name != "" {
		return fmt.Sprintf("unrecognised curve calling itself %q", p.Name)
	}
	return "unrecognised curve"
}

func (c *compiled) allowedAlgorithms() string {
	var algs []string
	for _, a := range []string{AlgorithmSM2, AlgorithmECDSA, AlgorithmRSA} {
		if _, ok := c.keys[a]; ok {
			algs = append(algs, a)
		}
	}
	return strings.Join(algs, ", ")
}

func (c *compiled) checkKey(pub crypto.PublicKey) (string, *Violation) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k == nil || k.Curve == nil {
			return "", violation(RuleKeyAlgorithm, "empty EC public key")
		}
		if sm2.IsSM2PublicKey(k) {
			if _, ok := c.keys[AlgorithmSM2]; !ok {
				return "", violation(RuleKeyAlgorithm, "sm2 keys are not allowed (allowed: %s)", c.allowedAlgorithms())
			}
			return AlgorithmSM2, nil
		}
		rule, ok := c.keys[AlgorithmECDSA]
		if !ok {
			return "", violation(RuleKeyAlgorithm, "ecdsa keys are not allowed (allowed: %s)", c.allowedAlgorithms())
		}
		name := curveName(k.Curve)
		if !slices.Contains(rule.Curves, name) {
			return "", violation(RuleKeyCurve, "ECDSA curve %s is not allowed (allowed: %s)", name, strings.Join(rule.Curves, ", "))
		}
		return AlgorithmECDSA, nil
	case *rsa.PublicKey:
		if k == nil || k.N == nil {
			return "", violation(RuleKeyAlgorithm, "empty RSA public key")
		}
		rule, ok := c.keys[AlgorithmRSA]
		if !ok {
			return "", violation(RuleKeyAlgorithm, "rsa keys are not allowed (allowed: %s)", c.allowedAlgorithms())
		}
		bits := k.N.BitLen()
		if bits < rule.MinBits {
			return "", violation(RuleKeySize, "RSA key has %d bits, at least %d required", bits, rule.MinBits)
		}
		if bits > maxRSABits {
			return "", violation(RuleKeySize, "RSA key has %d bits, at most %d accepted", bits, maxRSABits)
		}
		// 65537 is the only exponent interoperable everywhere; small
		// exponents have a history of padding attacks.
		if k.E != 65537 {
			return "", violation(RuleKeyExponent, "RSA public exponent is %d, must be 65537", k.E)
		}
		return AlgorithmRSA, nil
	case nil:
		return "", violation(RuleKeyAlgorithm, "no public key")
	}
	return "", violation(RuleKeyAlgorithm, "unsupported key type %T (allowed: %s)", pub, c.allowedAlgorithms())
}
