// Package ocsp encodes and decodes the messages of the Online Certificate
// Status Protocol (RFC 6960): it parses requests and builds and signs basic
// responses, with SM2-with-SM3 signatures as well as ECDSA and RSA.
//
// golang.org/x/crypto/ocsp cannot sign with SM2 and cannot echo a nonce, so
// the codec is written here. Parsing uses golang.org/x/crypto/cryptobyte and
// is strict DER. Building writes DER directly from sizes computed up front:
// a response is one allocation for the tbsResponseData and one for the
// final message, because the responder builds one per nonce request and
// pre-signs one per certificate.
//
// The package holds no storage, no keys and no HTTP: the responder decides
// which status each CertID gets and calls CreateResponse.
package ocsp

import (
	"bytes"
	"crypto"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"

	"github.com/emmansun/gmsm/sm3"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/gmtrust/gmtrust/internal/sigalg"
)

// Limits on what ParseRequest accepts. A real request for one certificate
// is about 80 bytes (a few hundred with a signature); the limits bound the
// work an anonymous client can make the responder do.
const (
	// MaxRequestSize is the largest DER request ParseRequest accepts.
	MaxRequestSize = 16 << 10
	// MaxCertIDs is the most CertIDs one request may ask about.
	MaxCertIDs = 32
)

const (
	// maxSerialLen is the RFC 5280 limit on serial number octets.
	maxSerialLen = 20
	// maxNonceLen is the RFC 9654 limit (it raised RFC 8954's 32).
	maxNonceLen = 128
	// maxExtensions bounds the duplicate check, which is quadratic.
	maxExtensions = 16
	// maxHashLen bounds hashes of algorithms we do not know (SHA-512 is 64).
	maxHashLen = 64
)

// Sentinel errors.
var (
	// ErrMalformed is wrapped by every error ParseRequest returns and by
	// ParseResponse's decoding errors. A responder answers a request that
	// fails to parse with ErrorResponse(MalformedRequest).
	ErrMalformed = errors.New("ocsp: malformed message")
	// ErrUnsupportedHash is returned (wrapped) by NewCertID for a hash
	// algorithm other than SHA-1, SHA-256, SHA-384, SHA-512 and SM3.
	ErrUnsupportedHash = errors.New("ocsp: unsupported hash algorithm")
	// ErrInvalidTemplate is wrapped by every error from building a
	// response out of a ResponseTemplate the codec cannot encode.
	ErrInvalidTemplate = errors.New("ocsp: invalid response template")
)

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidTemplate, fmt.Sprintf(format, args...))
}

// Contents octets of the object identifiers the codec matches. They are
// compared as bytes so parsing a CertID allocates nothing for its OID.
const (
	oidSHA1   = "\x2b\x0e\x03\x02\x1a"                 // 1.3.14.3.2.26
	oidSHA256 = "\x60\x86\x48\x01\x65\x03\x04\x02\x01" // 2.16.840.1.101.3.4.2.1
	oidSHA384 = "\x60\x86\x48\x01\x65\x03\x04\x02\x02" // 2.16.840.1.101.3.4.2.2
	oidSHA512 = "\x60\x86\x48\x01\x65\x03\x04\x02\x03" // 2.16.840.1.101.3.4.2.3
	oidSM3    = "\x2a\x81\x1c\xcf\x55\x01\x83\x11"     // 1.2.156.10197.1.401
	oidNonce  = "\x2b\x06\x01\x05\x05\x07\x30\x01\x02" // 1.3.6.1.5.5.7.48.1.2 id-pkix-ocsp-nonce
	oidBasic  = "\x2b\x06\x01\x05\x05\x07\x30\x01\x01" // 1.3.6.1.5.5.7.48.1.1 id-pkix-ocsp-basic
)

// DER identifier octets used when building.
const (
	tagInteger         = 0x02
	tagBitString       = 0x03
	tagOctetString     = 0x04
	tagOID             = 0x06
	tagEnumerated      = 0x0a
	tagGeneralizedTime = 0x18
	tagSequence        = 0x30
	tagGood            = 0x80 // [0] IMPLICIT NULL
	tagUnknown         = 0x82 // [2] IMPLICIT NULL
	tagExplicit0       = 0xa0
	tagExplicit1       = 0xa1
	tagExplicit2       = 0xa2
)

// The same tags for cryptobyte.
const (
	cbExplicit0 = cbasn1.Tag(tagExplicit0)
	cbExplicit1 = cbasn1.Tag(tagExplicit1)
	cbExplicit2 = cbasn1.Tag(tagExplicit2)
	cbGood      = cbasn1.Tag(tagGood)
	cbUnknown   = cbasn1.Tag(tagUnknown)
)

// HashAlg is the hash algorithm of a CertID.
type HashAlg int

// Hash algorithms a CertID may use. HashUnknown marks a CertID whose
// algorithm the codec does not implement; see ParseRequest.
const (
	HashUnknown HashAlg = iota
	HashSHA1
	HashSHA256
	HashSHA384
	HashSHA512
	HashSM3
)

func hashFromOID(oid []byte) HashAlg {
	switch string(oid) {
	case oidSHA1:
		return HashSHA1
	case oidSHA256:
		return HashSHA256
	case oidSHA384:
		return HashSHA384
	case oidSHA512:
		return HashSHA512
	case oidSM3:
		return HashSM3
	}
	return HashUnknown
}

// String returns the algorithm's usual name.
func (h HashAlg) String() string {
	switch h {
	case HashSHA1:
		return "SHA-1"
	case HashSHA256:
		return "SHA-256"
	case HashSHA384:
		return "SHA-384"
	case HashSHA512:
		return "SHA-512"
	case HashSM3:
		return "SM3"
	}
	return fmt.Sprintf("HashAlg(%d)", int(h))
}

// OID returns the algorithm's object identifier, or nil for HashUnknown.
func (h HashAlg) OID() asn1.ObjectIdentifier {
	switch h {
	case HashSHA1:
		return asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	case HashSHA256:
		return asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	case HashSHA384:
		return asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	case HashSHA512:
		return asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
	case HashSM3:
		return asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 401}
	}
	return nil
}

// Size returns the digest length in bytes, or 0 for HashUnknown.
func (h HashAlg) Size() int {
	switch h {
	case HashSHA1:
		return sha1.Size
	case HashSHA256, HashSM3:
		return sha256.Size
	case HashSHA384:
		return sha512.Size384
	case HashSHA512:
		return sha512.Size
	}
	return 0
}

// Sum returns the digest of b, or nil for HashUnknown. For a CertID the
// issuerNameHash is the Sum of the issuer certificate's RawSubject and the
// issuerKeyHash the Sum of SubjectPublicKeyBits of its public key.
func (h HashAlg) Sum(b []byte) []byte {
	switch h {
	case HashSHA1:
		s := sha1.Sum(b)
		return s[:]
	case HashSHA256:
		s := sha256.Sum256(b)
		return s[:]
	case HashSHA384:
		s := sha512.Sum384(b)
		return s[:]
	case HashSHA512:
		s := sha512.Sum512(b)
		return s[:]
	case HashSM3:
		s := sm3.Sum(b)
		return s[:]
	}
	return nil
}

// algorithmIdentifier returns the DER AlgorithmIdentifier used when a
// CertID carries no RawHashAlgorithm. Parameters are an explicit NULL, as
// OpenSSL and x/crypto/ocsp write them for every hash, so a pre-signed
// response matches what those clients send byte for byte.
func (h HashAlg) algorithmIdentifier() string {
	switch h {
	case HashSHA1:
		return "\x30\x09\x06\x05" + oidSHA1 + "\x05\x00"
	case HashSHA256:
		return "\x30\x0d\x06\x09" + oidSHA256 + "\x05\x00"
	case HashSHA384:
		return "\x30\x0d\x06\x09" + oidSHA384 + "\x05\x00"
	case HashSHA512:
		return "\x30\x0d\x06\x09" + oidSHA512 + "\x05\x00"
	case HashSM3:
		return "\x30\x0c\x06\x08" + oidSM3 + "\x05\x00"
	}
	return ""
}

// CertID identifies a certificate by its issuer and serial number.
type CertID struct {
	// HashAlgorithm is the algorithm of the two issuer hashes; HashUnknown
	// when the request used one the codec does not implement.
	HashAlgorithm HashAlg
	// IssuerNameHash is the hash of the issuer's DER subject name.
	IssuerNameHash []byte
	// IssuerKeyHash is the hash of the issuer's subjectPublicKey bits.
	IssuerKeyHash []byte
	// SerialNumber is the certificate's serial number, never negative.
	SerialNumber *big.Int
	// RawHashAlgorithm is the DER AlgorithmIdentifier as received. A
	// response echoes it so a client that compares CertIDs byte for byte
	// (parameters NULL or absent) finds its own. Empty means the canonical
	// encoding of HashAlgorithm.
	RawHashAlgorithm []byte
}

// NewCertID computes the CertID of the certificate with serial number
// serial issued by the CA whose certificate has the given RawSubject and
// RawSubjectPublicKeyInfo. It returns an error wrapping ErrUnsupportedHash
// for HashUnknown or an undefined HashAlg.
func NewCertID(h HashAlg, issuerRawSubject, issuerRawSPKI []byte, serial *big.Int) (CertID, error) {
	if h.Size() == 0 {
		return CertID{}, fmt.Errorf("%w: %v", ErrUnsupportedHash, h)
	}
	if serial == nil || serial.Sign() < 0 {
		return CertID{}, errors.New("ocsp: CertID serial number must be present and not negative")
	}
	bits, err := SubjectPublicKeyBits(issuerRawSPKI)
	if err != nil {
		return CertID{}, err
	}
	return CertID{
		HashAlgorithm:  h,
		IssuerNameHash: h.Sum(issuerRawSubject),
		IssuerKeyHash:  h.Sum(bits),
		SerialNumber:   new(big.Int).Set(serial),
	}, nil
}

// SubjectPublicKeyBits returns the contents of the subjectPublicKey BIT
// STRING of a DER SubjectPublicKeyInfo (such as a certificate's
// RawSubjectPublicKeyInfo), without the unused-bits octet: the bytes that
// issuerKeyHash and the byKey ResponderID hash. The responder's key hash is
// HashSHA1.Sum(SubjectPublicKeyBits(responderCert.RawSubjectPublicKeyInfo)).
func SubjectPublicKeyBits(rawSPKI []byte) ([]byte, error) {
	in := cryptobyte.String(rawSPKI)
	var spki, alg cryptobyte.String
	var bits asn1.BitString
	if !in.ReadASN1(&spki, cbasn1.SEQUENCE) || !in.Empty() ||
		!spki.ReadASN1(&alg, cbasn1.SEQUENCE) ||
		!spki.ReadASN1BitString(&bits) || !spki.Empty() {
		return nil, errors.New("ocsp: malformed SubjectPublicKeyInfo")
	}
	if bits.BitLength%8 != 0 {
		return nil, errors.New("ocsp: subjectPublicKey is not a whole number of octets")
	}
	return bits.Bytes, nil
}

// Request is a parsed OCSPRequest.
type Request struct {
	// Raw is the whole request as received (a copy; see ParseRequest).
	Raw []byte
	// CertIDs are the certificates asked about, in request order, at
	// least one and at most MaxCertIDs.
	CertIDs []CertID
	// Nonce is the extnValue of the id-pkix-ocsp-nonce request extension,
	// exactly as received: in the RFC 8954/9654 form it is the DER of an
	// OCTET STRING, in the older raw form the nonce itself. Echo it
	// unchanged in ResponseTemplate.Nonce. Nil when absent.
	Nonce []byte
	// HasNonce reports whether the request carried a nonce extension.
	HasNonce bool
	// RequestorName is the DER GeneralName of the optional requestorName,
	// nil when absent. The request signature is not verified, so it is
	// only a claim, good for logs.
	RequestorName []byte
	// Signed reports that the request carried an optionalSignature. The
	// codec does not verify it (gmtrust does not require signed requests);
	// a responder that needs signed requests answers SigRequired instead.
	Signed bool
}

// ParseRequest parses a DER OCSPRequest (RFC 6960 section 4.1.1).
//
// Every error wraps ErrMalformed: the responder answers malformedRequest.
// Parsing is strict DER; it rejects input over MaxRequestSize, trailing
// data, wrong tags, versions other than v1, empty request lists or more
// than MaxCertIDs CertIDs, negative serial numbers or ones longer than 20
// octets, hashes whose length does not match their algorithm, nonces of 0
// or more than 128 octets (RFC 9654), duplicate extensions and critical
// extensions other than the nonce.
//
// A CertID whose hash algorithm the codec does not implement is not an
// error: it parses with HashAlgorithm HashUnknown and RawHashAlgorithm set.
// The request is well formed, we only cannot compute the issuer hashes, so
// the issuer is one we do not serve. RFC 6960 section 2.2 gives "unknown"
// for a CertID with an unrecognized issuer; a responder that can match no
// CertID of the request at all answers Unauthorized (section 2.3, "not
// capable of responding authoritatively"), as it does for foreign issuers.
// Either answer is encodable: the response echoes RawHashAlgorithm.
//
// The returned Request refers to a private copy of der (one allocation), so
// the caller may reuse its buffer at once.
func ParseRequest(der []byte) (*Request, error) {
	if len(der) > MaxRequestSize {
		return nil, malformed("request of %d bytes exceeds %d", len(der), MaxRequestSize)
	}
	raw := bytes.Clone(der)
	input := cryptobyte.String(raw)
	var ocspReq, tbs cryptobyte.String
	if !input.ReadASN1(&ocspReq, cbasn1.SEQUENCE) {
		return nil, malformed("not a DER OCSPRequest SEQUENCE")
	}
	if !input.Empty() {
		return nil, malformed("%d bytes of trailing data after OCSPRequest", len(input))
	}
	if !ocspReq.ReadASN1(&tbs, cbasn1.SEQUENCE) {
		return nil, malformed("missing tbsRequest")
	}
	req := &Request{Raw: raw}
	var sig cryptobyte.String
	if !ocspReq.ReadOptionalASN1(&sig, &req.Signed, cbExplicit0) {
		return nil, malformed("bad optionalSignature")
	}
	if req.Signed {
		var body cryptobyte.String
		if !sig.ReadASN1(&body, cbasn1.SEQUENCE) || !sig.Empty() {
			return nil, malformed("optionalSignature is not a Signature SEQUENCE")
		}
	}
	if !ocspReq.Empty() {
		return nil, malformed("unexpected data after tbsRequest")
	}
	if err := parseTBSRequest(tbs, req); err != nil {
		return nil, err
	}
	return req, nil
}

func parseTBSRequest(tbs cryptobyte.String, req *Request) error {
	if err := parseVersion(&tbs); err != nil {
		return err
	}
	var name cryptobyte.String
	var hasName bool
	if !tbs.ReadOptionalASN1(&name, &hasName, cbExplicit1) {
		return malformed("bad requestorName")
	}
	if hasName {
		var gn cryptobyte.String
		var tag cbasn1.Tag
		// Every GeneralName alternative is context-specific.
		if !name.ReadAnyASN1Element(&gn, &tag) || !name.Empty() || tag&0xc0 != 0x80 {
			return malformed("requestorName is not a GeneralName")
		}
		req.RequestorName = gn[:len(gn):len(gn)]
	}

	var list cryptobyte.String
	if !tbs.ReadASN1(&list, cbasn1.SEQUENCE) {
		return malformed("missing requestList")
	}
	n, err := countRequests(list)
	if err != nil {
		return err
	}
	req.CertIDs = make([]CertID, n)
	for i := range req.CertIDs {
		var one, certID cryptobyte.String
		if !list.ReadASN1(&one, cbasn1.SEQUENCE) || !one.ReadASN1(&certID, cbasn1.SEQUENCE) {
			return malformed("request %d: missing reqCert", i)
		}
		if err := parseCertID(certID, &req.CertIDs[i]); err != nil {
			return fmt.Errorf("request %d: %w", i, err)
		}
		var exts cryptobyte.String
		var hasExts bool
		if !one.ReadOptionalASN1(&exts, &hasExts, cbExplicit0) {
			return malformed("request %d: bad singleRequestExtensions", i)
		}
		if hasExts {
			err := parseExtensions(exts, func(oid, _ []byte, critical bool) error {
				if critical {
					return malformed("request %d: unsupported critical extension %s", i, oidString(oid))
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		if !one.Empty() {
			return malformed("request %d: unexpected data after reqCert", i)
		}
	}

	var exts cryptobyte.String
	var hasExts bool
	if !tbs.ReadOptionalASN1(&exts, &hasExts, cbExplicit2) {
		return malformed("bad requestExtensions")
	}
	if hasExts {
		err := parseExtensions(exts, func(oid, value []byte, critical bool) error {
			if string(oid) == oidNonce {
				if err := checkNonce(value); err != nil {
					return err
				}
				req.Nonce = value[:len(value):len(value)]
				req.HasNonce = true
				return nil
			}
			if critical {
				return malformed("unsupported critical request extension %s", oidString(oid))
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if !tbs.Empty() {
		return malformed("unexpected data at the end of tbsRequest")
	}
	return nil
}

// parseVersion reads the optional [0] EXPLICIT Version DEFAULT v1 that
// begins TBSRequest and ResponseData. DER omits a default value, but some
// encoders write v1 explicitly and it is harmless, so it is accepted.
func parseVersion(s *cryptobyte.String) error {
	var v cryptobyte.String
	var present bool
	if !s.ReadOptionalASN1(&v, &present, cbExplicit0) {
		return malformed("bad version")
	}
	if !present {
		return nil
	}
	var n cryptobyte.String
	if !v.ReadASN1(&n, cbasn1.INTEGER) || !v.Empty() {
		return malformed("bad version")
	}
	if len(n) != 1 || n[0] != 0 {
		return malformed("unsupported version (only v1 exists)")
	}
	return nil
}

// countRequests counts the requestList entries so CertIDs is allocated once.
func countRequests(list cryptobyte.String) (int, error) {
	n := 0
	for !list.Empty() {
		if n == MaxCertIDs {
			return 0, malformed("more than %d CertIDs in one request", MaxCertIDs)
		}
		if !list.SkipASN1(cbasn1.SEQUENCE) {
			return 0, malformed("requestList entry %d is not a Request SEQUENCE", n)
		}
		n++
	}
	if n == 0 {
		return 0, malformed("empty requestList")
	}
	return n, nil
}

// parseCertID parses the contents of a CertID SEQUENCE into id. The byte
// fields of id alias s.
func parseCertID(s cryptobyte.String, id *CertID) error {
	var algElem cryptobyte.String
	if !s.ReadASN1Element(&algElem, cbasn1.SEQUENCE) {
		return malformed("CertID: missing hashAlgorithm")
	}
	alg := algElem
	var algBody, oid cryptobyte.String
	if !alg.ReadASN1(&algBody, cbasn1.SEQUENCE) || !algBody.ReadASN1(&oid, cbasn1.OBJECT_IDENTIFIER) || !validOID(oid) {
		return malformed("CertID: bad hashAlgorithm")
	}
	h := hashFromOID(oid)
	if !algBody.Empty() {
		var params cryptobyte.String
		var tag cbasn1.Tag
		if !algBody.ReadAnyASN1Element(&params, &tag) || !algBody.Empty() {
			return malformed("CertID: bad hashAlgorithm parameters")
		}
		// Hash algorithms take no parameters: absent or NULL (RFC 5754).
		if h != HashUnknown && (tag != cbasn1.NULL || len(params) != 2) {
			return malformed("CertID: %v parameters must be absent or NULL", h)
		}
	}
	var nameHash, keyHash, serial cryptobyte.String
	if !s.ReadASN1(&nameHash, cbasn1.OCTET_STRING) || !s.ReadASN1(&keyHash, cbasn1.OCTET_STRING) {
		return malformed("CertID: missing issuer hashes")
	}
	if size := h.Size(); size != 0 {
		if len(nameHash) != size || len(keyHash) != size {
			return malformed("CertID: %v issuer hashes of %d and %d bytes, want %d", h, len(nameHash), len(keyHash), size)
		}
	} else if len(nameHash) == 0 || len(nameHash) > maxHashLen || len(keyHash) == 0 || len(keyHash) > maxHashLen {
		return malformed("CertID: issuer hashes of %d and %d bytes", len(nameHash), len(keyHash))
	}
	if !s.ReadASN1(&serial, cbasn1.INTEGER) {
		return malformed("CertID: missing serialNumber")
	}
	if !s.Empty() {
		return malformed("CertID: unexpected data after serialNumber")
	}
	sn, err := parseSerial(serial)
	if err != nil {
		return err
	}
	*id = CertID{
		HashAlgorithm:    h,
		IssuerNameHash:   nameHash[:len(nameHash):len(nameHash)],
		IssuerKeyHash:    keyHash[:len(keyHash):len(keyHash)],
		SerialNumber:     sn,
		RawHashAlgorithm: algElem[:len(algElem):len(algElem)],
	}
	return nil
}

// parseSerial decodes the contents of a serial number INTEGER.
func parseSerial(b []byte) (*big.Int, error) {
	switch {
	case len(b) == 0:
		return nil, malformed("CertID: empty serialNumber")
	case len(b) > maxSerialLen:
		return nil, malformed("CertID: serialNumber of %d octets exceeds %d", len(b), maxSerialLen)
	case b[0]&0x80 != 0:
		return nil, malformed("CertID: negative serialNumber")
	case len(b) > 1 && b[0] == 0 && b[1]&0x80 == 0:
		return nil, malformed("CertID: serialNumber not minimally encoded")
	}
	return new(big.Int).SetBytes(b), nil
}

// validOID reports whether b is well-formed OBJECT IDENTIFIER contents:
// non-empty, every subidentifier terminated and minimally encoded.
func validOID(b []byte) bool {
	if len(b) == 0 || b[len(b)-1]&0x80 != 0 {
		return false
	}
	start := true
	for _, c := range b {
		if start && c == 0x80 {
			return false
		}
		start = c&0x80 == 0
	}
	return true
}

// oidString renders OID contents for error messages.
func oidString(b []byte) string {
	if len(b) < 0x80 {
		var oid asn1.ObjectIdentifier
		s := cryptobyte.String(append([]byte{tagOID, byte(len(b))}, b...))
		if s.ReadASN1ObjectIdentifier(&oid) {
			return oid.String()
		}
	}
	return fmt.Sprintf("%x", b)
}

// parseExtensions walks an [n] EXPLICIT Extensions field and calls visit
// for each extension. It rejects duplicates (RFC 5280 section 4.2).
func parseExtensions(field cryptobyte.String, visit func(oid, value []byte, critical bool) error) error {
	var list cryptobyte.String
	if !field.ReadASN1(&list, cbasn1.SEQUENCE) || !field.Empty() {
		return malformed("extensions are not a SEQUENCE")
	}
	var seen [maxExtensions][]byte
	n := 0
	for !list.Empty() {
		if n == maxExtensions {
			return malformed("more than %d extensions", maxExtensions)
		}
		var ext, oid, value cryptobyte.String
		if !list.ReadASN1(&ext, cbasn1.SEQUENCE) || !ext.ReadASN1(&oid, cbasn1.OBJECT_IDENTIFIER) || !validOID(oid) {
			return malformed("bad extension")
		}
		// DER omits critical when FALSE; an explicit FALSE occurs in the
		// wild and is accepted.
		critical := false
		if ext.PeekASN1Tag(cbasn1.BOOLEAN) && !ext.ReadASN1Boolean(&critical) {
			return malformed("bad extension critical flag")
		}
		if !ext.ReadASN1(&value, cbasn1.OCTET_STRING) || !ext.Empty() {
			return malformed("bad extension %s", oidString(oid))
		}
		for _, o := range seen[:n] {
			if bytes.Equal(o, oid) {
				return malformed("duplicate extension %s", oidString(oid))
			}
		}
		seen[n] = oid
		n++
		if err := visit(oid, value, critical); err != nil {
			return err
		}
	}
	return nil
}

// checkNonce validates a nonce extnValue. RFC 8954 and 9654 wrap the nonce
// in an OCTET STRING inside extnValue; older clients put it there raw. The
// size limit applies to the nonce itself in either form.
func checkNonce(value []byte) error {
	nonce := value
	s := cryptobyte.String(value)
	var inner cryptobyte.String
	if s.ReadASN1(&inner, cbasn1.OCTET_STRING) && s.Empty() {
		nonce = inner
	}
	if len(nonce) == 0 || len(nonce) > maxNonceLen {
		return malformed("nonce of %d octets, want 1 to %d", len(nonce), maxNonceLen)
	}
	return nil
}

// ResponseStatus is the OCSPResponseStatus of RFC 6960 section 4.2.1.
type ResponseStatus int

// Response statuses; 4 is not used.
const (
	Successful       ResponseStatus = 0
	MalformedRequest ResponseStatus = 1
	InternalError    ResponseStatus = 2
	TryLater         ResponseStatus = 3
	SigRequired      ResponseStatus = 5
	Unauthorized     ResponseStatus = 6
)

// String returns the RFC 6960 name of the status.
func (s ResponseStatus) String() string {
	switch s {
	case Successful:
		return "successful"
	case MalformedRequest:
		return "malformedRequest"
	case InternalError:
		return "internalError"
	case TryLater:
		return "tryLater"
	case SigRequired:
		return "sigRequired"
	case Unauthorized:
		return "unauthorized"
	}
	return fmt.Sprintf("ResponseStatus(%d)", int(s))
}

// ErrorResponse returns the DER OCSPResponse for an error status: the
// status alone, without responseBytes, and unsigned as RFC 6960 requires.
// Successful and undefined values give the internalError response, since
// a successful response without responseBytes is not valid.
func ErrorResponse(status ResponseStatus) []byte {
	switch status {
	case MalformedRequest, InternalError, TryLater, SigRequired, Unauthorized:
	default:
		status = InternalError
	}
	return []byte{tagSequence, 3, tagEnumerated, 1, byte(status)}
}

// Status is the certificate status of a SingleResponse.
type Status int

// Certificate statuses. The zero Status is not valid, so that a
// SingleResponse whose status was never set cannot go out as good.
const (
	Good Status = iota + 1
	Revoked
	Unknown
)

// String returns the RFC 6960 name of the status.
func (s Status) String() string {
	switch s {
	case Good:
		return "good"
	case Revoked:
		return "revoked"
	case Unknown:
		return "unknown"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// SingleResponse is the status of one certificate.
type SingleResponse struct {
	// CertID is echoed from the request (or made with NewCertID).
	CertID CertID
	Status Status
	// RevokedAt and RevocationReason apply to Revoked only.
	RevokedAt time.Time
	// RevocationReason is an RFC 5280 CRLReason code, or -1 to omit it.
	RevocationReason int
	ThisUpdate       time.Time
	// NextUpdate is omitted when zero.
	NextUpdate time.Time
}

// ResponseTemplate holds the contents of a basic response.
type ResponseTemplate struct {
	// Singles are the statuses, normally one per requested CertID.
	Singles []SingleResponse
	// ProducedAt is the signing time.
	ProducedAt time.Time
	// Nonce is the extnValue to echo (Request.Nonce); nil or empty for
	// none.
	Nonce []byte
	// ResponderKeyHash is the SHA-1 hash of the responder's
	// subjectPublicKey bits (the byKey ResponderID), 20 bytes.
	ResponderKeyHash []byte
	// Certs are DER certificates to include, such as the delegated
	// responder certificate.
	Certs [][]byte
}

// CreateResponse builds and signs a successful DER OCSPResponse carrying a
// BasicOCSPResponse. The signer's key picks the signature algorithm:
// SM2-with-SM3 for SM2 keys, ECDSA or RSA with SHA-256/384 otherwise (see
// sigalg.Sign). It is TBSResponseData followed by Sign.
func CreateResponse(tmpl ResponseTemplate, signer crypto.Signer) ([]byte, error) {
	tbs, err := TBSResponseData(tmpl)
	if err != nil {
		return nil, err
	}
	return Sign(tbs, signer, tmpl.Certs)
}

// TBSResponseData returns the DER ResponseData of tmpl: the bytes the
// responder signs. Times are GeneralizedTime in UTC truncated to the
// second; version is omitted (v1); the ResponderID is byKey; a nonce goes
// into responseExtensions. Errors wrap ErrInvalidTemplate.
func TBSResponseData(tmpl ResponseTemplate) ([]byte, error) {
	return AppendTBSResponseData(nil, tmpl)
}

// AppendTBSResponseData appends TBSResponseData(tmpl) to dst, so callers
// that pool buffers build without allocating. On error dst is returned
// unchanged.
func AppendTBSResponseData(dst []byte, tmpl ResponseTemplate) ([]byte, error) {
	if len(tmpl.ResponderKeyHash) != sha1.Size {
		return dst, invalid("ResponderKeyHash is %d bytes, want a %d-byte SHA-1 hash", len(tmpl.ResponderKeyHash), sha1.Size)
	}
	if err := checkTime(tmpl.ProducedAt, "ProducedAt"); err != nil {
		return dst, err
	}
	if len(tmpl.Singles) == 0 {
		return dst, invalid("no SingleResponse")
	}
	responses := 0
	for i := range tmpl.Singles {
		n, _, err := tmpl.Singles[i].contentLen()
		if err != nil {
			return dst, fmt.Errorf("single response %d: %w", i, err)
		}
		responses += tlvSize(n)
	}
	// ResponderID byKey is [2] EXPLICIT OCTET STRING of 20 bytes.
	const responderIDLen = 2 + 2 + sha1.Size
	n := responderIDLen + generalizedTimeLen + tlvSize(responses)
	if len(tmpl.Nonce) > 0 {
		n += tlvSize(tlvSize(tlvSize(nonceExtensionLen(len(tmpl.Nonce)))))
	}

	dst = slices.Grow(dst, tlvSize(n))
	dst = appendHeader(dst, tagSequence, n)
	dst = append(dst, tagExplicit2, 2+sha1.Size, tagOctetString, sha1.Size)
	dst = append(dst, tmpl.ResponderKeyHash...)
	dst = appendGeneralizedTime(dst, tmpl.ProducedAt)
	dst = appendHeader(dst, tagSequence, responses)
	for i := range tmpl.Singles {
		dst = tmpl.Singles[i].appendTo(dst)
	}
	if len(tmpl.Nonce) > 0 {
		// [1] EXPLICIT Extensions { Extension { id-pkix-ocsp-nonce, extnValue } }
		ext := nonceExtensionLen(len(tmpl.Nonce))
		dst = appendHeader(dst, tagExplicit1, tlvSize(tlvSize(ext)))
		dst = appendHeader(dst, tagSequence, tlvSize(ext))
		dst = appendHeader(dst, tagSequence, ext)
		dst = append(dst, tagOID, byte(len(oidNonce)))
		dst = append(dst, oidNonce...)
		dst = appendHeader(dst, tagOctetString, len(tmpl.Nonce))
		dst = append(dst, tmpl.Nonce...)
	}
	return dst, nil
}

// nonceExtensionLen is the length of the contents of the nonce Extension
// SEQUENCE for a nonce extnValue of n bytes.
func nonceExtensionLen(n int) int {
	return 2 + len(oidNonce) + tlvSize(n)
}

// generalizedTimeLen is the size of a YYYYMMDDHHMMSSZ GeneralizedTime.
const generalizedTimeLen = 2 + 15

func checkTime(t time.Time, what string) error {
	if t.IsZero() {
		return invalid("%s is not set", what)
	}
	if y := t.UTC().Year(); y < 1 || y > 9999 {
		return invalid("%s year %d is not encodable", what, y)
	}
	return nil
}

// contentLen validates s and returns the lengths of its SEQUENCE contents
// and of its CertID's.
func (s *SingleResponse) contentLen() (n, idLen int, err error) {
	idLen, err = s.CertID.contentLen()
	if err != nil {
		return 0, 0, err
	}
	n = tlvSize(idLen)
	switch s.Status {
	case Good, Unknown:
		n += 2
	case Revoked:
		if err := checkTime(s.RevokedAt, "RevokedAt"); err != nil {
			return 0, 0, err
		}
		if r := s.RevocationReason; r != -1 && (r < 0 || r > 10 || r == 7) {
			return 0, 0, invalid("revocation reason %d is not a CRLReason", r)
		}
		n += tlvSize(s.revokedInfoLen())
	default:
		return 0, 0, invalid("certificate status %v", s.Status)
	}
	if err := checkTime(s.ThisUpdate, "ThisUpdate"); err != nil {
		return 0, 0, err
	}
	n += generalizedTimeLen
	if !s.NextUpdate.IsZero() {
		if err := checkTime(s.NextUpdate, "NextUpdate"); err != nil {
			return 0, 0, err
		}
		if s.NextUpdate.Unix() <= s.ThisUpdate.Unix() {
			return 0, 0, invalid("NextUpdate %v is not after ThisUpdate %v", s.NextUpdate, s.ThisUpdate)
		}
		n += 2 + generalizedTimeLen
	}
	return n, idLen, nil
}

func (s *SingleResponse) revokedInfoLen() int {
	n := generalizedTimeLen
	if s.RevocationReason >= 0 {
		n += 5 // [0] EXPLICIT ENUMERATED of one octet
	}
	return n
}

// appendTo appends the SingleResponse; contentLen must have succeeded.
func (s *SingleResponse) appendTo(dst []byte) []byte {
	n, idLen, _ := s.contentLen()
	dst = appendHeader(dst, tagSequence, n)
	dst = s.CertID.appendTo(dst, idLen)
	switch s.Status {
	case Good:
		dst = append(dst, tagGood, 0)
	case Unknown:
		dst = append(dst, tagUnknown, 0)
	case Revoked:
		dst = appendHeader(dst, tagExplicit1, s.revokedInfoLen()) // [1] IMPLICIT RevokedInfo
		dst = appendGeneralizedTime(dst, s.RevokedAt)
		if s.RevocationReason >= 0 {
			dst = append(dst, tagExplicit0, 3, tagEnumerated, 1, byte(s.RevocationReason))
		}
	}
	dst = appendGeneralizedTime(dst, s.ThisUpdate)
	if !s.NextUpdate.IsZero() {
		dst = append(dst, tagExplicit0, generalizedTimeLen)
		dst = appendGeneralizedTime(dst, s.NextUpdate)
	}
	return dst
}

// contentLen validates id and returns the length of its SEQUENCE contents.
func (id *CertID) contentLen() (int, error) {
	alg := len(id.RawHashAlgorithm)
	if alg > 0 {
		s := cryptobyte.String(id.RawHashAlgorithm)
		var body cryptobyte.String
		if !s.ReadASN1(&body, cbasn1.SEQUENCE) || !s.Empty() {
			return 0, invalid("CertID RawHashAlgorithm is not one DER SEQUENCE")
		}
	} else {
		alg = len(id.HashAlgorithm.algorithmIdentifier())
		if alg == 0 {
			return 0, invalid("CertID has neither a known HashAlgorithm nor RawHashAlgorithm")
		}
	}
	if len(id.IssuerNameHash) == 0 || len(id.IssuerKeyHash) == 0 {
		return 0, invalid("CertID issuer hashes are empty")
	}
	if size := id.HashAlgorithm.Size(); size != 0 && (len(id.IssuerNameHash) != size || len(id.IssuerKeyHash) != size) {
		return 0, invalid("CertID %v issuer hashes of %d and %d bytes, want %d", id.HashAlgorithm, len(id.IssuerNameHash), len(id.IssuerKeyHash), size)
	}
	if id.SerialNumber == nil || id.SerialNumber.Sign() < 0 {
		return 0, invalid("CertID serial number must be present and not negative")
	}
	sn := serialLen(id.SerialNumber)
	if sn > maxSerialLen {
		return 0, invalid("CertID serial number of %d octets exceeds %d", sn, maxSerialLen)
	}
	return alg + tlvSize(len(id.IssuerNameHash)) + tlvSize(len(id.IssuerKeyHash)) + tlvSize(sn), nil
}

// appendTo appends the CertID whose contents contentLen measured as n.
func (id *CertID) appendTo(dst []byte, n int) []byte {
	dst = appendHeader(dst, tagSequence, n)
	if len(id.RawHashAlgorithm) > 0 {
		dst = append(dst, id.RawHashAlgorithm...)
	} else {
		dst = append(dst, id.HashAlgorithm.algorithmIdentifier()...)
	}
	dst = appendHeader(dst, tagOctetString, len(id.IssuerNameHash))
	dst = append(dst, id.IssuerNameHash...)
	dst = appendHeader(dst, tagOctetString, len(id.IssuerKeyHash))
	dst = append(dst, id.IssuerKeyHash...)
	sn := serialLen(id.SerialNumber)
	dst = appendHeader(dst, tagInteger, sn)
	start := len(dst)
	dst = append(dst, make([]byte, sn)...)
	// Big-endian magnitude with leading zeros: the two's-complement DER
	// of a non-negative integer, including the 0x00 before a high bit.
	id.SerialNumber.FillBytes(dst[start:])
	return dst
}

// serialLen is the DER INTEGER contents length of a non-negative x.
func serialLen(x *big.Int) int {
	return x.BitLen()/8 + 1
}

// Sign signs the DER tbsResponseData tbs with signer and returns the DER
// OCSPResponse: status successful, responseBytes of type id-pkix-ocsp-basic
// holding BasicOCSPResponse{tbs, signatureAlgorithm, signature, certs}.
// certs (DER certificates) are included when non-empty. Sign does not check
// that tbs names the signer as responder.
func Sign(tbs []byte, signer crypto.Signer, certs [][]byte) ([]byte, error) {
	if !isElement(tbs, cbasn1.SEQUENCE) {
		return nil, invalid("tbsResponseData is not one DER SEQUENCE")
	}
	if signer == nil {
		return nil, errors.New("ocsp: no signer")
	}
	certsLen := 0
	for i, c := range certs {
		if !isElement(c, cbasn1.SEQUENCE) {
			return nil, invalid("certificate %d is not one DER SEQUENCE", i)
		}
		certsLen += len(c)
	}
	sig, alg, err := sigalg.Sign(signer, tbs)
	if err != nil {
		return nil, fmt.Errorf("ocsp: signing response: %w", err)
	}
	algID := alg.AlgorithmIdentifierDER()

	basic := len(tbs) + len(algID) + tlvSize(1+len(sig))
	if len(certs) > 0 {
		basic += tlvSize(tlvSize(certsLen))
	}
	responseBytes := 2 + len(oidBasic) + tlvSize(tlvSize(basic))
	response := 3 + tlvSize(tlvSize(responseBytes))
	if response > 1<<30 {
		return nil, invalid("response of %d bytes is too large", response)
	}

	out := make([]byte, 0, tlvSize(response))
	out = appendHeader(out, tagSequence, response)
	out = append(out, tagEnumerated, 1, byte(Successful))
	out = appendHeader(out, tagExplicit0, tlvSize(responseBytes))
	out = appendHeader(out, tagSequence, responseBytes)
	out = append(out, tagOID, byte(len(oidBasic)))
	out = append(out, oidBasic...)
	out = appendHeader(out, tagOctetString, tlvSize(basic))
	out = appendHeader(out, tagSequence, basic)
	out = append(out, tbs...)
	out = append(out, algID...)
	out = appendHeader(out, tagBitString, 1+len(sig))
	out = append(out, 0) // no unused bits
	out = append(out, sig...)
	if len(certs) > 0 {
		out = appendHeader(out, tagExplicit0, tlvSize(certsLen))
		out = appendHeader(out, tagSequence, certsLen)
		for _, c := range certs {
			out = append(out, c...)
		}
	}
	return out, nil
}

func isElement(b []byte, tag cbasn1.Tag) bool {
	s := cryptobyte.String(b)
	var body cryptobyte.String
	return s.ReadASN1(&body, tag) && s.Empty()
}

// headerSize is the size of the identifier and length octets for n bytes
// of contents.
func headerSize(n int) int {
	switch {
	case n < 0x80:
		return 2
	case n <= 0xff:
		return 3
	case n <= 0xffff:
		return 4
	case n <= 0xffffff:
		return 5
	}
	return 6
}

// tlvSize is the encoded size of an element with n bytes of contents.
func tlvSize(n int) int { return headerSize(n) + n }

// appendHeader appends identifier and DER length octets. n must stay below
// 2^32, which Sign checks for the outermost length.
func appendHeader(dst []byte, tag byte, n int) []byte {
	dst = append(dst, tag)
	if n < 0x80 {
		return append(dst, byte(n))
	}
	k := headerSize(n) - 2
	dst = append(dst, 0x80|byte(k))
	for i := k - 1; i >= 0; i-- {
		dst = append(dst, byte(n>>(8*i)))
	}
	return dst
}

// appendGeneralizedTime appends t as a DER GeneralizedTime YYYYMMDDHHMMSSZ;
// checkTime must have accepted t.
func appendGeneralizedTime(dst []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	hour, minute, second := t.Clock()
	return append(dst, tagGeneralizedTime, 15,
		byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10),
		byte('0'+int(month)/10), byte('0'+int(month)%10),
		byte('0'+day/10), byte('0'+day%10),
		byte('0'+hour/10), byte('0'+hour%10),
		byte('0'+minute/10), byte('0'+minute%10),
		byte('0'+second/10), byte('0'+second%10),
		'Z')
}

// Response is a parsed OCSPResponse, for tests and tooling. Its byte
// fields alias the input of ParseResponse.
type Response struct {
	// Raw is the whole response.
	Raw []byte
	// Status is the responseStatus. Unless it is Successful no other
	// field below is set.
	Status ResponseStatus
	// RawTBSResponseData is the signed ResponseData, as received.
	RawTBSResponseData []byte
	// ResponderKeyHash is set for a byKey ResponderID, RawResponderName
	// (a DER Name) for a byName one.
	ResponderKeyHash []byte
	RawResponderName []byte
	ProducedAt       time.Time
	Singles          []SingleResponse
	// Nonce is the extnValue of the nonce response extension; HasNonce
	// reports whether there was one.
	Nonce    []byte
	HasNonce bool
	// Certs are the DER certificates of the certs field.
	Certs [][]byte
	// SignatureAlgorithm is the OID of the signatureAlgorithm.
	SignatureAlgorithm asn1.ObjectIdentifier
	Signature          []byte
}

// ParseResponse parses a DER OCSPResponse. It does not verify the
// signature (see CheckSignatureFrom). An unsuccessful response parses into
// a Response with only Raw and Status set. Decoding errors wrap
// ErrMalformed.
func ParseResponse(der []byte) (*Response, error) {
	input := cryptobyte.String(der)
	var resp cryptobyte.String
	if !input.ReadASN1(&resp, cbasn1.SEQUENCE) || !input.Empty() {
		return nil, malformed("not one DER OCSPResponse SEQUENCE")
	}
	var status int
	if !resp.ReadASN1Enum(&status) {
		return nil, malformed("bad responseStatus")
	}
	r := &Response{Raw: der, Status: ResponseStatus(status)}
	if r.Status != Successful {
		if !resp.Empty() {
			return nil, malformed("%v response carries responseBytes", r.Status)
		}
		return r, nil
	}
	var rb, rbSeq, typ, basicOctets, basic cryptobyte.String
	if !resp.ReadASN1(&rb, cbExplicit0) || !resp.Empty() ||
		!rb.ReadASN1(&rbSeq, cbasn1.SEQUENCE) || !rb.Empty() ||
		!rbSeq.ReadASN1(&typ, cbasn1.OBJECT_IDENTIFIER) {
		return nil, malformed("bad responseBytes")
	}
	if string(typ) != oidBasic {
		return nil, malformed("response type %s is not id-pkix-ocsp-basic", oidString(typ))
	}
	if !rbSeq.ReadASN1(&basicOctets, cbasn1.OCTET_STRING) || !rbSeq.Empty() ||
		!basicOctets.ReadASN1(&basic, cbasn1.SEQUENCE) || !basicOctets.Empty() {
		return nil, malformed("bad BasicOCSPResponse")
	}
	var tbs, algSeq cryptobyte.String
	var bits asn1.BitString
	if !basic.ReadASN1Element(&tbs, cbasn1.SEQUENCE) ||
		!basic.ReadASN1(&algSeq, cbasn1.SEQUENCE) ||
		!algSeq.ReadASN1ObjectIdentifier(&r.SignatureAlgorithm) ||
		!basic.ReadASN1BitString(&bits) {
		return nil, malformed("bad BasicOCSPResponse")
	}
	if bits.BitLength%8 != 0 {
		return nil, malformed("signature is not a whole number of octets")
	}
	r.RawTBSResponseData = tbs
	r.Signature = bits.Bytes
	var certs cryptobyte.String
	var hasCerts bool
	if !basic.ReadOptionalASN1(&certs, &hasCerts, cbExplicit0) || !basic.Empty() {
		return nil, malformed("bad BasicOCSPResponse certs")
	}
	if hasCerts {
		var list cryptobyte.String
		if !certs.ReadASN1(&list, cbasn1.SEQUENCE) || !certs.Empty() {
			return nil, malformed("bad BasicOCSPResponse certs")
		}
		for !list.Empty() {
			var c cryptobyte.String
			if !list.ReadASN1Element(&c, cbasn1.SEQUENCE) {
				return nil, malformed("bad certificate in certs")
			}
			r.Certs = append(r.Certs, c)
		}
	}
	if err := parseResponseData(tbs, r); err != nil {
		return nil, err
	}
	return r, nil
}

func parseResponseData(elem cryptobyte.String, r *Response) error {
	var tbs cryptobyte.String
	elem.ReadASN1(&tbs, cbasn1.SEQUENCE) // ParseResponse read it as an element
	if err := parseVersion(&tbs); err != nil {
		return err
	}
	var rid cryptobyte.String
	var tag cbasn1.Tag
	if !tbs.ReadAnyASN1(&rid, &tag) {
		return malformed("missing responderID")
	}
	switch tag {
	case cbExplicit1:
		var name cryptobyte.String
		if !rid.ReadASN1Element(&name, cbasn1.SEQUENCE) || !rid.Empty() {
			return malformed("bad responderID byName")
		}
		r.RawResponderName = name
	case cbExplicit2:
		var hash cryptobyte.String
		if !rid.ReadASN1(&hash, cbasn1.OCTET_STRING) || !rid.Empty() {
			return malformed("bad responderID byKey")
		}
		r.ResponderKeyHash = hash
	default:
		return malformed("responderID has tag %#x", uint8(tag))
	}
	var list cryptobyte.String
	if !tbs.ReadASN1GeneralizedTime(&r.ProducedAt) {
		return malformed("bad producedAt")
	}
	if !tbs.ReadASN1(&list, cbasn1.SEQUENCE) || list.Empty() {
		return malformed("missing responses")
	}
	for !list.Empty() {
		var single cryptobyte.String
		if !list.ReadASN1(&single, cbasn1.SEQUENCE) {
			return malformed("response %d: not a SingleResponse", len(r.Singles))
		}
		var s SingleResponse
		if err := parseSingleResponse(single, &s); err != nil {
			return fmt.Errorf("response %d: %w", len(r.Singles), err)
		}
		r.Singles = append(r.Singles, s)
	}
	var exts cryptobyte.String
	var hasExts bool
	if !tbs.ReadOptionalASN1(&exts, &hasExts, cbExplicit1) || !tbs.Empty() {
		return malformed("bad data after responses")
	}
	if hasExts {
		return parseExtensions(exts, func(oid, value []byte, critical bool) error {
			if string(oid) == oidNonce {
				r.Nonce, r.HasNonce = value, true
				return nil
			}
			if critical {
				return malformed("unsupported critical response extension %s", oidString(oid))
			}
			return nil
		})
	}
	return nil
}

func parseSingleResponse(s cryptobyte.String, out *SingleResponse) error {
	var certID cryptobyte.String
	if !s.ReadASN1(&certID, cbasn1.SEQUENCE) {
		return malformed("missing certID")
	}
	if err := parseCertID(certID, &out.CertID); err != nil {
		return err
	}
	var status cryptobyte.String
	var tag cbasn1.Tag
	if !s.ReadAnyASN1(&status, &tag) {
		return malformed("missing certStatus")
	}
	out.RevocationReason = -1
	switch tag {
	case cbGood, cbUnknown:
		if !status.Empty() {
			return malformed("certStatus NULL with contents")
		}
		out.Status = Good
		if tag == cbUnknown {
			out.Status = Unknown
		}
	case cbExplicit1:
		out.Status = Revoked
		if !status.ReadASN1GeneralizedTime(&out.RevokedAt) {
			return malformed("bad revocationTime")
		}
		var reason cryptobyte.String
		var hasReason bool
		if !status.ReadOptionalASN1(&reason, &hasReason, cbExplicit0) || !status.Empty() {
			return malformed("bad RevokedInfo")
		}
		if hasReason && (!reason.ReadASN1Enum(&out.RevocationReason) || !reason.Empty() || out.RevocationReason < 0) {
			return malformed("bad revocationReason")
		}
	default:
		return malformed("certStatus has tag %#x", uint8(tag))
	}
	if !s.ReadASN1GeneralizedTime(&out.ThisUpdate) {
		return malformed("bad thisUpdate")
	}
	var next cryptobyte.String
	var hasNext bool
	if !s.ReadOptionalASN1(&next, &hasNext, cbExplicit0) {
		return malformed("bad nextUpdate")
	}
	if hasNext && (!next.ReadASN1GeneralizedTime(&out.NextUpdate) || !next.Empty()) {
		return malformed("bad nextUpdate")
	}
	var exts cryptobyte.String
	var hasExts bool
	if !s.ReadOptionalASN1(&exts, &hasExts, cbExplicit1) || !s.Empty() {
		return malformed("bad data after thisUpdate")
	}
	if hasExts {
		return parseExtensions(exts, func(oid, _ []byte, critical bool) error {
			if critical {
				return malformed("unsupported critical single extension %s", oidString(oid))
			}
			return nil
		})
	}
	return nil
}

// CheckSignatureFrom verifies the response signature over the received
// tbsResponseData with pub (SM2 with the default ID, ECDSA or RSA).
func (r *Response) CheckSignatureFrom(pub crypto.PublicKey) error {
	if r.Status != Successful {
		return fmt.Errorf("ocsp: %v response has no signature", r.Status)
	}
	if err := sigalg.Verify(pub, r.SignatureAlgorithm, r.RawTBSResponseData, r.Signature); err != nil {
		return fmt.Errorf("ocsp: response signature: %w", err)
	}
	return nil
}
