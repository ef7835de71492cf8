// Package policies loads certificate profiles from YAML and decides, for a
// certificate request, what the issued certificate may contain.
//
// A profile names the key usages, extended key usages, validity, key
// algorithms, subject attributes and subject alternative names allowed in
// one kind of end-entity certificate. The CA asks Profile.Check whether a
// request is acceptable and receives a Decision with everything it must
// encode; the CA encodes the certificate itself.
//
// # Profiles
//
// Profiles are YAML files, one per file, named after the profile
// (staff-sign.yaml holds "name: staff-sign"). The shipped ones are
// embedded (Default); LoadDir overlays a directory on them. Fields:
//
//	name: staff-sign                  # required, [a-z0-9-], = file name
//	description: ...
//	key_usage: [digitalSignature, nonRepudiation]   # see ParseKeyUsage
//	ext_key_usage: [clientAuth]       # see ParseExtKeyUsage; may be empty
//	default_validity: 365d            # "d" = 24h, or Go syntax ("8760h")
//	max_validity: 731d
//	keys:                             # at least one
//	  - algorithm: sm2
//	  - algorithm: ecdsa
//	    curves: [P-256, P-384]
//	  - algorithm: rsa
//	    min_bits: 2048                # 2048 or more
//	subject:
//	  required: [CN]
//	  allowed: [O, OU, C]
//	  common_name_in_sans: false      # CN must repeat a DNS/IP SAN
//	sans:
//	  allowed: [email]                # dns, ip, email, uri
//	  required: false                 # at least one SAN
//	  max_count: 5                    # 0 = no limit
//	  allow_wildcard: false           # "*" as whole left-most DNS label
//	same_department: true
//	ocsp_nocheck: false               # needs ext_key_usage OCSPSigning
//
// Unknown fields are errors, so a misspelt rule cannot silently turn
// into a permissive default.
//
// # Subject
//
// Check validates Request.RawSubject when it is set, attribute by
// attribute with its ASN.1 string type, because that is what the CA
// copies into the certificate; otherwise Subject.Names, otherwise the
// attributes Subject's fields would encode. The other representations
// present must agree with the one checked, so that a subject changed after
// parsing is caught (rule "subject-encoding").
//
// # Key usage by key type
//
// A profile lists the key usages the certificate kind may have; Check then
// keeps only those that make sense for the requester's key:
//
//   - RSA keys can sign and encrypt but cannot agree keys, so keyAgreement
//     is dropped.
//   - ECDSA keys (P-256, P-384) sign and agree keys (ECDH) but cannot
//     encrypt, and RFC 5480 section 3 forbids keyEncipherment and
//     dataEncipherment for them, so those two are dropped.
//   - SM2 can sign, encrypt (GB/T 32918.4, used for the SM4 key of a
//     GM/T 0010 digital envelope) and agree keys (GB/T 32918.3). Chinese
//     practice (GM/T 0015, GB/T 38636 TLCP) keeps SM2 signing and
//     encryption keys in separate certificates, so when a profile asserts a
//     signature bit (digitalSignature or nonRepudiation) an SM2 certificate
//     gets only the signature bits; an encryption-only profile such as
//     staff-enc gives SM2 keyEncipherment, dataEncipherment and keyAgreement.
//
// So staff-enc yields keyEncipherment+dataEncipherment for RSA,
// keyAgreement for ECDSA and all three for SM2, and server-tls yields
// digitalSignature+keyEncipherment for RSA and digitalSignature otherwise.
// Loading fails if a profile would leave some allowed key type with no key
// usage at all.
package policies

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"
)

// Profile is one certificate profile, as written in YAML. A Profile
// obtained from a Set is a copy; changing it affects nothing else.
type Profile struct {
	// Name identifies the profile; in a file it must equal the file name
	// without its extension.
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	// KeyUsage names key usage bits (see ParseKeyUsage); Check adjusts
	// them per key type as described in the package documentation.
	KeyUsage []string `yaml:"key_usage"`
	// ExtKeyUsage names extended key usages (see ParseExtKeyUsage); empty
	// means the certificate carries no extended key usage extension.
	ExtKeyUsage []string `yaml:"ext_key_usage"`
	// DefaultValidity is used when a request does not ask for a validity;
	// a request may ask for at most MaxValidity.
	DefaultValidity Duration `yaml:"default_validity"`
	MaxValidity     Duration `yaml:"max_validity"`
	// Keys lists the acceptable subject public keys.
	Keys    []KeyRule    `yaml:"keys"`
	Subject SubjectRules `yaml:"subject"`
	SANs    SANRules     `yaml:"sans"`
	// SameDepartment restricts a department operator to requests for
	// their own department (administrators have no department).
	SameDepartment bool `yaml:"same_department"`
	// OCSPNoCheck asks for the id-pkix-ocsp-nocheck extension; it requires
	// the OCSPSigning extended key usage.
	OCSPNoCheck bool `yaml:"ocsp_nocheck"`
}

// KeyRule accepts one key algorithm.
type KeyRule struct {
	// Algorithm is "sm2", "ecdsa" or "rsa".
	Algorithm string `yaml:"algorithm"`
	// Curves lists the ECDSA curves accepted ("P-256", "P-384"); required
	// for ecdsa, forbidden otherwise.
	Curves []string `yaml:"curves"`
	// MinBits is the smallest RSA modulus accepted; required for rsa and
	// never below 2048, forbidden otherwise.
	MinBits int `yaml:"min_bits"`
}

// SubjectRules constrains the subject distinguished name. Attribute names
// are CN, O, OU, C, ST, L, STREET, emailAddress, serialNumber, title,
// givenName, surname, UID, DC, postalCode, pseudonym and
// organizationIdentifier.
type SubjectRules struct {
	// Required attributes must appear at least once.
	Required []string `yaml:"required"`
	// Allowed attributes may appear; Required ones are allowed implicitly.
	Allowed []string `yaml:"allowed"`
	// CommonNameInSANs requires every CN to equal one of the DNS names
	// (case-insensitively) or IP addresses in the request, as TLS clients
	// that still look at the CN expect.
	CommonNameInSANs bool `yaml:"common_name_in_sans"`
}

// SANRules constrains the subject alternative names.
type SANRules struct {
	// Allowed lists the permitted SAN types: "dns", "ip", "email", "uri".
	Allowed []string `yaml:"allowed"`
	// Required demands at least one SAN.
	Required bool `yaml:"required"`
	// MaxCount caps the number of SANs of all types; 0 means no cap.
	MaxCount int `yaml:"max_count"`
	// AllowWildcard permits "*" as the whole left-most label of DNS names.
	AllowWildcard bool `yaml:"allow_wildcard"`
}

// Key algorithm names used in KeyRule and Decision.
const (
	AlgorithmSM2   = "sm2"
	AlgorithmECDSA = "ecdsa"
	AlgorithmRSA   = "rsa"
)

// SAN type names used in SANRules.
const (
	SANDNS   = "dns"
	SANIP    = "ip"
	SANEmail = "email"
	SANURI   = "uri"
)

// minRSABits is the floor no profile can lower.
const minRSABits = 2048

// ErrInvalidProfile is matched (errors.Is) by every *FieldError.
var ErrInvalidProfile = errors.New("policies: invalid profile")

// FieldError reports a profile that cannot be used.
type FieldError struct {
	// File is the file the profile came from, if any.
	File string
	// Field is the YAML path of the offending field, e.g.
	// "keys[1].min_bits", or "" for errors about the whole file.
	Field string
	Err   error
}

func (e *FieldError) Error() string {
	s := "policies: "
	if e.File != "" {
		s += e.File + ": "
	}
	if e.Field != "" {
		s += e.Field + ": "
	}
	return s + e.Err.Error()
}

func (e *FieldError) Unwrap() error { return e.Err }

// Is makes every FieldError match ErrInvalidProfile.
func (e *FieldError) Is(target error) bool { return target == ErrInvalidProfile }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}

// namePattern keeps profile names usable as file names and URL segments.
var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// compiled is a Profile turned into the values Check works with.
type compiled struct {
	keyUsage x509.KeyUsage
	eku      []x509.ExtKeyUsage
	ekuOIDs  []asn1.ObjectIdentifier
	keys     map[string]KeyRule
	allowed  map[string]bool // attribute names, Required included
	required []string
	sans     map[string]bool
}

// Validate reports the first problem that makes p unusable, as a
// *FieldError.
func (p *Profile) Validate() error {
	_, err := p.compile()
	return err
}

func (p *Profile) compile() (*compiled, error) {
	c := &compiled{
		keys:    make(map[string]KeyRule),
		allowed: make(map[string]bool),
		sans:    make(map[string]bool),
	}
	if p.Name == "" {
		return nil, fieldErr("name", "missing")
	}
	if !namePattern.MatchString(p.Name) {
		return nil, fieldErr("name", "%q must be 1-63 lower-case letters, digits or hyphens", p.Name)
	}

	if len(p.KeyUsage) == 0 {
		return nil, fieldErr("key_usage", "missing")
	}
	for i, s := range p.KeyUsage {
		bit, err := ParseKeyUsage(s)
		if err != nil {
			return nil, fieldErr(fmt.Sprintf("key_usage[%d]", i), "unknown key usage %q (known: digitalSignature, nonRepudiation, contentCommitment, keyEncipherment, dataEncipherment, keyAgreement)", s)
		}
		if c.keyUsage&bit != 0 {
			return nil, fieldErr(fmt.Sprintf("key_usage[%d]", i), "%q listed twice", s)
		}
		c.keyUsage |= bit
	}
	for i, s := range p.ExtKeyUsage {
		eku, oid, err := parseExtKeyUsage(s)
		if err != nil {
			return nil, fieldErr(fmt.Sprintf("ext_key_usage[%d]", i), "unknown extended key usage %q (known: serverAuth, clientAuth, emailProtection, codeSigning, timeStamping, OCSPSigning)", s)
		}
		if slices.Contains(c.eku, eku) {
			return nil, fieldErr(fmt.Sprintf("ext_key_usage[%d]", i), "%q listed twice", s)
		}
		c.eku = append(c.eku, eku)
		c.ekuOIDs = append(c.ekuOIDs, oid)
	}
	if p.OCSPNoCheck && !slices.Contains(c.eku, x509.ExtKeyUsageOCSPSigning) {
		// RFC 6960 4.2.2.2.1: the extension belongs only in responder
		// certificates; elsewhere it would exempt a key from revocation.
		return nil, fieldErr("ocsp_nocheck", "requires ext_key_usage OCSPSigning")
	}

	if p.DefaultValidity <= 0 {
		return nil, fieldErr("default_validity", "must be positive")
	}
	if p.MaxValidity <= 0 {
		return nil, fieldErr("max_validity", "must be positive")
	}
	if p.MaxValidity < p.DefaultValidity {
		return nil, fieldErr("max_validity", "%s is shorter than default_validity %s", p.MaxValidity, p.DefaultValidity)
	}

	if len(p.Keys) == 0 {
		return nil, fieldErr("keys", "missing")
	}
	for i, k := range p.Keys {
		// Field names are formatted only on error: Check compiles the
		// profile on every call.
		field := func(sub string) string { return fmt.Sprintf("keys[%d]%s", i, sub) }
		if _, dup := c.keys[k.Algorithm]; dup {
			return nil, fieldErr(field(".algorithm"), "%q listed twice", k.Algorithm)
		}
		switch k.Algorithm {
		case AlgorithmSM2:
			if len(k.Curves) > 0 {
				return nil, fieldErr(field(".curves"), "not allowed for sm2 (its curve is fixed)")
			}
			if k.MinBits != 0 {
				return nil, fieldErr(field(".min_bits"), "only allowed for rsa")
			}
		case AlgorithmECDSA:
			if len(k.Curves) == 0 {
				return nil, fieldErr(field(".curves"), "missing (P-256, P-384)")
			}
			for j, cv := range k.Curves {
				if cv != "P-256" && cv != "P-384" {
					return nil, fieldErr(field(fmt.Sprintf(".curves[%d]", j)), "unsupported curve %q (P-256, P-384)", cv)
				}
				if slices.Contains(k.Curves[:j], cv) {
					return nil, fieldErr(field(fmt.Sprintf(".curves[%d]", j)), "%q listed twice", cv)
				}
			}
			if k.MinBits != 0 {
				return nil, fieldErr(field(".min_bits"), "only allowed for rsa")
			}
		case AlgorithmRSA:
			if k.MinBits < minRSABits {
				return nil, fieldErr(field(".min_bits"), "must be at least %d, got %d", minRSABits, k.MinBits)
			}
			if k.MinBits > maxRSABits {
				return nil, fieldErr(field(".min_bits"), "must be at most %d, got %d", maxRSABits, k.MinBits)
			}
			if len(k.Curves) > 0 {
				return nil, fieldErr(field(".curves"), "only allowed for ecdsa")
			}
		case "":
			return nil, fieldErr(field(".algorithm"), "missing (sm2, ecdsa, rsa)")
		default:
			return nil, fieldErr(field(".algorithm"), "unknown algorithm %q (sm2, ecdsa, rsa)", k.Algorithm)
		}
		if keyUsageFor(c.keyUsage, k.Algorithm) == 0 {
			return nil, fieldErr(field(".algorithm"), "key_usage leaves nothing for %s keys", k.Algorithm)
		}
		c.keys[k.Algorithm] = k
	}

	for _, list := range []struct {
		field    string
		names    []string
		required bool
	}{
		{"subject.required", p.Subject.Required, true},
		{"subject.allowed", p.Subject.Allowed, false},
	} {
		for i, name := range list.names {
			if _, ok := attributeByName(name); !ok {
				return nil, fieldErr(fmt.Sprintf("%s[%d]", list.field, i), "unknown attribute %q (known: %s)", name, attributeNameList())
			}
			if slices.Contains(list.names[:i], name) {
				return nil, fieldErr(fmt.Sprintf("%s[%d]", list.field, i), "%q listed twice", name)
			}
			c.allowed[name] = true
			if list.required {
				c.required = append(c.required, name)
			}
		}
	}

	for i, t := range p.SANs.Allowed {
		switch t {
		case SANDNS, SANIP, SANEmail, SANURI:
		default:
			return nil, fieldErr(fmt.Sprintf("sans.allowed[%d]", i), "unknown SAN type %q (dns, ip, email, uri)", t)
		}
		if c.sans[t] {
			return nil, fieldErr(fmt.Sprintf("sans.allowed[%d]", i), "%q listed twice", t)
		}
		c.sans[t] = true
	}
	if p.SANs.Required && len(c.sans) == 0 {
		return nil, fieldErr("sans.required", "no SAN type is allowed")
	}
	if p.SANs.MaxCount < 0 {
		return nil, fieldErr("sans.max_count", "must not be negative")
	}
	if p.SANs.AllowWildcard && !c.sans[SANDNS] {
		return nil, fieldErr("sans.allow_wildcard", "dns names are not allowed")
	}
	if p.Subject.CommonNameInSANs && !c.sans[SANDNS] && !c.sans[SANIP] {
		return nil, fieldErr("subject.common_name_in_sans", "neither dns nor ip SANs are allowed")
	}
	return c, nil
}

// keyUsageFor applies the per-key-type rules in the package documentation.
func keyUsageFor(ku x509.KeyUsage, alg string) x509.KeyUsage {
	const (
		sign = x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment
		enc  = x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment
	)
	switch alg {
	case AlgorithmRSA:
		return ku &^ x509.KeyUsageKeyAgreement
	case AlgorithmECDSA:
		return ku &^ enc
	case AlgorithmSM2:
		if ku&sign != 0 {
			return ku &^ (enc | x509.KeyUsageKeyAgreement)
		}
		return ku
	}
	return 0
}

// clone returns a deep copy so that a Set's profiles cannot be changed
// through the pointers it hands out.
func (p *Profile) clone() *Profile {
	q := *p
	q.KeyUsage = slices.Clone(p.KeyUsage)
	q.ExtKeyUsage = slices.Clone(p.ExtKeyUsage)
	q.Keys = make([]KeyRule, len(p.Keys))
	for i, k := range p.Keys {
		k.Curves = slices.Clone(k.Curves)
		q.Keys[i] = k
	}
	q.Subject.Required = slices.Clone(p.Subject.Required)
	q.Subject.Allowed = slices.Clone(p.Subject.Allowed)
	q.SANs.Allowed = slices.Clone(p.SANs.Allowed)
	return &q
}

// validity picks the validity for a request; requested 0 means default.
func (p *Profile) validity(requested time.Duration) (time.Duration, *Violation) {
	switch {
	case requested < 0:
		return 0, &Violation{Rule: RuleValidity, Detail: fmt.Sprintf("requested validity %s is negative", requested)}
	case requested == 0:
		return time.Duration(p.DefaultValidity), nil
	case requested > time.Duration(p.MaxValidity):
		return 0, &Violation{Rule: RuleValidity, Detail: fmt.Sprintf("requested validity %s exceeds the maximum %s", Duration(requested), p.MaxValidity)}
	}
	return requested, nil
}
