// Package sigalg maps keys to X.509 signature algorithms and signs or
// verifies whole messages with them, hiding the SM2 convention (sign the
// message with ZA, not a digest) from callers.
package sigalg

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"

	"github.com/emmansun/gmsm/sm2"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Object identifiers of the signature algorithms gmtrust produces.
var (
	OIDSM2WithSM3      = asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 501}
	OIDECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	OIDECDSAWithSHA384 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	OIDSHA256WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	OIDSHA384WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}
)

// Alg is one signature algorithm.
type Alg struct {
	Name string
	OID  asn1.ObjectIdentifier
	// Hash is the digest the signer receives; 0 for SM2, whose signer
	// receives the whole message.
	Hash crypto.Hash
	// NullParams says the AlgorithmIdentifier carries an explicit NULL
	// parameter (RSA, RFC 4055); ECDSA and SM2 omit parameters.
	NullParams bool
}

// Predefined algorithms.
var (
	SM2WithSM3      = Alg{Name: "SM2-with-SM3", OID: OIDSM2WithSM3}
	ECDSAWithSHA256 = Alg{Name: "ECDSA-with-SHA256", OID: OIDECDSAWithSHA256, Hash: crypto.SHA256}
	ECDSAWithSHA384 = Alg{Name: "ECDSA-with-SHA384", OID: OIDECDSAWithSHA384, Hash: crypto.SHA384}
	SHA256WithRSA   = Alg{Name: "SHA256-with-RSA", OID: OIDSHA256WithRSA, Hash: crypto.SHA256, NullParams: true}
	SHA384WithRSA   = Alg{Name: "SHA384-with-RSA", OID: OIDSHA384WithRSA, Hash: crypto.SHA384, NullParams: true}
)

// ErrUnsupportedKey is returned for keys gmtrust does not sign with.
var ErrUnsupportedKey = errors.New("sigalg: unsupported key type")

// ErrBadSignature is returned (wrapped) when a signature does not verify.
var ErrBadSignature = errors.New("sigalg: signature verification failed")

// ForPublicKey picks the signature algorithm for a signing key.
func ForPublicKey(pub crypto.PublicKey) (Alg, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if sm2.IsSM2PublicKey(k) {
			return SM2WithSM3, nil
		}
		switch k.Curve {
		case elliptic.P256():
			return ECDSAWithSHA256, nil
		case elliptic.P384():
			return ECDSAWithSHA384, nil
		}
		return Alg{}, fmt.Errorf("%w: ECDSA curve %s", ErrUnsupportedKey, k.Curve.Params().Name)
	case *rsa.PublicKey:
		if k.N.BitLen() >= 3072 {
			return SHA384WithRSA, nil
		}
		return SHA256WithRSA, nil
	}
	return Alg{}, fmt.Errorf("%w: %T", ErrUnsupportedKey, pub)
}

// ByOID finds a supported algorithm by its identifier.
func ByOID(oid asn1.ObjectIdentifier) (Alg, bool) {
	for _, a := range []Alg{SM2WithSM3, ECDSAWithSHA256, ECDSAWithSHA384, SHA256WithRSA, SHA384WithRSA} {
		if a.OID.Equal(oid) {
			return a, true
		}
	}
	return Alg{}, false
}

// MarshalAlgorithmIdentifier appends the DER AlgorithmIdentifier.
func (a Alg) MarshalAlgorithmIdentifier(b *cryptobyte.Builder) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(a.OID)
		if a.NullParams {
			b.AddASN1NULL()
		}
	})
}

// AlgorithmIdentifierDER returns the DER AlgorithmIdentifier.
func (a Alg) AlgorithmIdentifierDER() []byte {
	var b cryptobyte.Builder
	a.MarshalAlgorithmIdentifier(&b)
	return b.BytesOrPanic()
}

func digest(h crypto.Hash, msg []byte) []byte {
	switch h {
	case crypto.SHA256:
		s := sha256.Sum256(msg)
		return s[:]
	case crypto.SHA384:
		s := sha512.Sum384(msg)
		return s[:]
	}
	hh := h.New()
	hh.Write(msg)
	return hh.Sum(nil)
}

// Sign signs msg with signer using the algorithm its key calls for and
// returns the signature (DER for ECDSA and SM2) and the algorithm used.
// It does not re-verify: callers that need a check verify once, where it
// matters, instead of after every signature.
func Sign(signer crypto.Signer, msg []byte) ([]byte, Alg, error) {
	return SignWithRand(rand.Reader, signer, msg)
}

// SignWithRand is Sign with an explicit source of randomness.
func SignWithRand(r io.Reader, signer crypto.Signer, msg []byte) ([]byte, Alg, error) {
	alg, err := ForPublicKey(signer.Public())
	if err != nil {
		return nil, Alg{}, err
	}
	var sig []byte
	if alg.Hash == 0 {
		sig, err = signer.Sign(r, msg, sm2.DefaultSM2SignerOpts)
	} else {
		sig, err = signer.Sign(r, digest(alg.Hash, msg), alg.Hash)
	}
	if err != nil {
		return nil, Alg{}, fmt.Errorf("sigalg: %s signing: %w", alg.Name, err)
	}
	return sig, alg, nil
}

// ErrNotSM2 is returned by SignSM2Digest for a key that is not SM2.
var ErrNotSM2 = errors.New("sigalg: not an SM2 key")

// SignSM2Digest signs e = SM3(ZA || M), computed by the caller, with an
// SM2 signer, and returns the DER SEQUENCE{r, s}. It is for callers that
// hash most of M once and reuse that state (seal stamping); Sign is the
// ordinary way. Under the hsm.KeyManager convention a signer given opts
// other than sm2.DefaultSM2SignerOpts receives e: crypto.Hash(0) is
// passed rather than nil because a crypto.Signer may call
// opts.HashFunc(). A signer that can only hash ZA itself (a PKCS#11
// vendor mechanism with HashesZA) returns an error, and the caller falls
// back to Sign with the whole message.
func SignSM2Digest(r io.Reader, signer crypto.Signer, e []byte) ([]byte, error) {
	k, ok := signer.Public().(*ecdsa.PublicKey)
	if !ok || !sm2.IsSM2PublicKey(k) {
		return nil, fmt.Errorf("%w: %T", ErrNotSM2, signer.Public())
	}
	if len(e) != 32 {
		return nil, fmt.Errorf("sigalg: SM2 digest is %d bytes, want 32", len(e))
	}
	sig, err := signer.Sign(r, e, crypto.Hash(0))
	if err != nil {
		return nil, fmt.Errorf("sigalg: %s signing a digest: %w", SM2WithSM3.Name, err)
	}
	return sig, nil
}

// Verify checks sig over msg with pub under the algorithm oid.
func Verify(pub crypto.PublicKey, oid asn1.ObjectIdentifier, msg, sig []byte) error {
	alg, ok := ByOID(oid)
	if !ok {
		return fmt.Errorf("sigalg: unsupported signature algorithm %s", oid)
	}
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if sm2.IsSM2PublicKey(k) {
			if alg.Hash != 0 {
				return fmt.Errorf("%w: SM2 key with %s", ErrBadSignature, alg.Name)
			}
			if !sm2.VerifyASN1WithSM2(k, nil, msg, sig) {
				return ErrBadSignature
			}
			return nil
		}
		if alg.Hash == 0 || alg.NullParams {
			return fmt.Errorf("%w: ECDSA key with %s", ErrBadSignature, alg.Name)
		}
		if !ecdsa.VerifyASN1(k, digest(alg.Hash, msg), sig) {
			return ErrBadSignature
		}
		return nil
	case *rsa.PublicKey:
		if !alg.NullParams {
			return fmt.Errorf("%w: RSA key with %s", ErrBadSignature, alg.Name)
		}
		if err := rsa.VerifyPKCS1v15(k, alg.Hash, digest(alg.Hash, msg), sig); err != nil {
			return fmt.Errorf("%w: %v", ErrBadSignature, err)
		}
		return nil
	}
	return fmt.Errorf("%w: %T", ErrUnsupportedKey, pub)
}

// GenerateKey makes a software key of the named algorithm. Backends that
// keep keys outside the process do not use it.
func GenerateKey(r io.Reader, alg string) (crypto.Signer, error) {
	switch alg {
	case "sm2":
		return sm2.GenerateKey(r)
	case "ecdsa-p256":
		return ecdsa.GenerateKey(elliptic.P256(), r)
	case "ecdsa-p384":
		return ecdsa.GenerateKey(elliptic.P384(), r)
	case "rsa-2048":
		return rsa.GenerateKey(r, 2048)
	case "rsa-3072":
		return rsa.GenerateKey(r, 3072)
	case "rsa-4096":
		return rsa.GenerateKey(r, 4096)
	}
	return nil, fmt.Errorf("%w: algorithm %q", ErrUnsupportedKey, alg)
}
