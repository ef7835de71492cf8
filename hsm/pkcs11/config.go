package pkcs11

import (
	"context"
	"crypto"
	"errors"
	"io"
	"time"

	"github.com/gmtrust/gmtrust/hsm"
)

// Config configures a Manager.
type Config struct {
	// URI names the token: token (label) and module-path are required,
	// and exactly one of pin-source (file:/path) or pin-value. serial may
	// be added to tell apart tokens that share a label. Example:
	//
	//	pkcs11:token=gmtrust?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/gmtrust/pin
	URI string
	// PoolSize bounds the logged-in sessions kept for this token, and so
	// the operations in flight. 0 means min(token max sessions,
	// 2*GOMAXPROCS+2).
	PoolSize int
	// AcquireTimeout bounds the wait for a free session when all are busy.
	// 0 means DefaultAcquireTimeout. The context given to an operation can
	// shorten it.
	AcquireTimeout time.Duration
	// Vendor selects how SM2 keys are made and used: "" (the token has no
	// SM2: KEK mode), "tass", "sansec", "luna", "ep11", or "custom" with
	// Custom set.
	Vendor string
	// Custom describes the SM2 mechanisms of a token not in the built-in
	// table; used only when Vendor is "custom".
	Custom *VendorSpec
	// KEKLabel is the label of the AES-256 key that wraps SM2 keys in KEK
	// mode. "" means DefaultKEKLabel.
	KEKLabel string
	// PlaintextTTL is how long an SM2 key unwrapped in KEK mode stays in
	// memory after it was decrypted. 0 decrypts for every signature (one
	// extra token round trip per signature); DefaultPlaintextTTL is the
	// suggested setting for busy signers.
	PlaintextTTL time.Duration
	// Now is the clock for PlaintextTTL, SelfTest and the pacing of token
	// rescans; nil means time.Now.
	Now func() time.Time
}

// Defaults.
const (
	DefaultKEKLabel       = "gmtrust-kek"
	DefaultAcquireTimeout = 10 * time.Second
	DefaultPlaintextTTL   = 5 * time.Minute
)

// KEKApplication is the CKA_APPLICATION of the data objects that hold SM2
// keys wrapped in KEK mode.
const KEKApplication = "gmtrust-sm2-kek"

// Errors callers may test with errors.Is.
var (
	// ErrNoCgo is returned by every entry point of a binary built with
	// CGO_ENABLED=0.
	ErrNoCgo = errors.New("gmtrust built without cgo: PKCS#11 unavailable")
	// ErrTokenUnavailable means the token (or the module) is gone or broken
	// and the operation failed even after re-opening a session once.
	ErrTokenUnavailable = errors.New("pkcs11: token unavailable")
	// ErrPINIncorrect is returned by Open when the token refuses the PIN.
	ErrPINIncorrect = errors.New("pkcs11: PIN incorrect")
	// ErrPoolExhausted means no session became free within AcquireTimeout
	// or before the context ended.
	ErrPoolExhausted = errors.New("pkcs11: no free session")
	// ErrWrappedKeyInvalid means an SM2 key stored in KEK mode is malformed,
	// failed authenticated decryption, or does not match its public key: it
	// was corrupted or tampered with, or another KEK wrapped it. No
	// signature is made with such a key.
	ErrWrappedKeyInvalid = errors.New("pkcs11: wrapped SM2 key is invalid or was tampered with")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("pkcs11: manager closed")
	// ErrUnsupported is returned for algorithms or options the token or
	// this backend cannot serve.
	ErrUnsupported = errors.New("pkcs11: unsupported")
)

// TokenInfo describes a token, for "gmtrust hsm list-tokens".
type TokenInfo struct {
	SlotID        uint
	Label         string
	Manufacturer  string
	Model         string
	Serial        string
	Initialized   bool
	LoginRequired bool
	// URI is a token URI (without a PIN) to start a Config.URI from.
	URI string
}

// KeyInfo describes a signing key on the token, for "gmtrust hsm list-keys".
type KeyInfo struct {
	Label string
	// Type is "private" for keys inside the token, "data" for SM2 keys
	// wrapped in KEK mode.
	Type string
	// Algorithm is "" when the key is of a kind gmtrust does not use.
	Algorithm hsm.Algorithm
	ID        []byte
	Ref       string
}

// ContextSigner is implemented by every signer a Manager returns: Sign
// waits at most Config.AcquireTimeout for a session, SignContext also
// stops when ctx ends.
type ContextSigner interface {
	crypto.Signer
	SignContext(ctx context.Context, rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error)
}
