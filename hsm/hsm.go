// Package hsm defines the key manager: the one place private keys live.
//
// Every signer in gmtrust (CAs, the OCSP responder, seal makers and holders,
// the audit log) obtains its key through a KeyManager and sees only a
// crypto.Signer. Backends (the software keystore in hsm/soft, PKCS#11 in
// hsm/pkcs11) never hand out plain private keys.
package hsm

import (
	"context"
	"crypto"
	"errors"
	"fmt"
)

// Algorithm names a key algorithm and size.
type Algorithm string

// Supported key algorithms.
const (
	SM2       Algorithm = "sm2"
	ECDSAP256 Algorithm = "ecdsa-p256"
	ECDSAP384 Algorithm = "ecdsa-p384"
	RSA2048   Algorithm = "rsa-2048"
	RSA3072   Algorithm = "rsa-3072"
	RSA4096   Algorithm = "rsa-4096"
)

// Algorithms lists every Algorithm a backend may be asked for.
func Algorithms() []Algorithm {
	return []Algorithm{SM2, ECDSAP256, ECDSAP384, RSA2048, RSA3072, RSA4096}
}

// ParseAlgorithm validates a user-supplied algorithm name.
func ParseAlgorithm(s string) (Algorithm, error) {
	for _, a := range Algorithms() {
		if string(a) == s {
			return a, nil
		}
	}
	return "", fmt.Errorf("hsm: unknown key algorithm %q (want one of sm2, ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072, rsa-4096)", s)
}

// ErrKeyNotFound is returned (wrapped) when a key reference names no key.
var ErrKeyNotFound = errors.New("hsm: key not found")

// ErrKeyExists is returned (wrapped) by CreateKey when the label is taken.
var ErrKeyExists = errors.New("hsm: key already exists")

// KeyManager creates keys and hands out signers for them.
//
// Signer semantics follow crypto.Signer with one convention for SM2, the
// one gmsm uses: when opts is *sm2.SM2SignerOption with GM signing forced
// (sm2.DefaultSM2SignerOpts), Sign receives the whole message and the
// signer computes ZA (default ID 1234567812345678) and SM3 itself; the
// result is always a DER SEQUENCE{r, s}. For ECDSA and RSA, Sign receives a
// digest as usual. internal/sigalg.Sign applies this convention.
//
// Implementations must be safe for concurrent use, including the signers
// they return.
type KeyManager interface {
	// CreateKey generates a new key named label and returns a reference
	// that Signer accepts later, and the public key.
	CreateKey(ctx context.Context, label string, alg Algorithm) (ref string, pub crypto.PublicKey, err error)
	// Signer returns a signer for the key that ref names.
	Signer(ctx context.Context, ref string) (crypto.Signer, error)
	// Close releases the backend's resources.
	Close() error
}
