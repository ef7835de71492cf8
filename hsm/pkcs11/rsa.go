package pkcs11

import (
	"crypto"
	"crypto/rsa"
	"encoding/asn1"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Digest algorithm identifiers (NIST, RFC 8017 appendix A.2.4) for the
// hashes the RSA signer accepts.
var (
	oidSHA256 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA384 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	oidSHA512 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
)

func hashOID(h crypto.Hash) (asn1.ObjectIdentifier, bool) {
	switch h {
	case crypto.SHA256:
		return oidSHA256, true
	case crypto.SHA384:
		return oidSHA384, true
	case crypto.SHA512:
		return oidSHA512, true
	}
	return nil, false
}

// digestInfo builds the DER DigestInfo (RFC 8017 section 9.2) that
// CKM_RSA_PKCS pads and signs: the token does no hashing, so the
// algorithm identifier is ours to add.
func digestInfo(h crypto.Hash, digest []byte) ([]byte, error) {
	oid, ok := hashOID(h)
	if !ok {
		return nil, fmt.Errorf("%w: RSA PKCS#1 v1.5 with hash %v (want SHA-256, SHA-384 or SHA-512)", ErrUnsupported, h)
	}
	if len(digest) != h.Size() {
		return nil, fmt.Errorf("pkcs11: digest is %d bytes, %v needs %d", len(digest), h, h.Size())
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oid)
			b.AddASN1NULL()
		})
		b.AddASN1OctetString(digest)
	})
	return b.Bytes()
}

// pssSaltLength resolves the salt length of opts the way crypto/rsa does
// when signing: Auto is as long as possible, EqualsHash is the hash
// length.
func pssSaltLength(opts *rsa.PSSOptions, modulusBits int) (int, error) {
	h := opts.Hash
	if _, ok := hashOID(h); !ok {
		return 0, fmt.Errorf("%w: RSA-PSS with hash %v (want SHA-256, SHA-384 or SHA-512)", ErrUnsupported, h)
	}
	emLen := (modulusBits - 1 + 7) / 8
	maxSalt := emLen - h.Size() - 2
	if maxSalt < 0 {
		return 0, fmt.Errorf("pkcs11: RSA key of %d bits too small for PSS with %v", modulusBits, h)
	}
	switch s := opts.SaltLength; {
	case s == rsa.PSSSaltLengthAuto:
		return maxSalt, nil
	case s == rsa.PSSSaltLengthEqualsHash:
		return h.Size(), nil
	case s > 0 && s <= maxSalt:
		return s, nil
	default:
		return 0, fmt.Errorf("pkcs11: PSS salt length %d out of range (0..%d)", s, maxSalt)
	}
}
