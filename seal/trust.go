package seal

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/emmansun/gmsm/smx509"
)

// TrustChecker decides whether a certificate chains to a trusted root at a
// given time. PoolTrust is the default implementation.
type TrustChecker interface {
	// VerifyChain reports the chain status of certDER at time at. An
	// error means the checker could not decide (the verdict becomes
	// indeterminate), not that the chain is bad.
	VerifyChain(ctx context.Context, certDER []byte, at time.Time) (ChainResult, error)
}

// ChainStatus is the outcome of a chain check.
type ChainStatus int

// Chain statuses.
const (
	// ChainTrusted: the certificate chains to a trusted root and every
	// certificate of the chain is valid at the given time.
	ChainTrusted ChainStatus = iota + 1
	// ChainUntrustedRoot: no chain to a trusted root was found. The
	// certificate may be fine; the verifier just cannot vouch for it.
	ChainUntrustedRoot
	// ChainInvalid: a chain exists or was attempted but is broken
	// (expired, bad signature, not a CA, unparsable...).
	ChainInvalid
)

func (s ChainStatus) String() string {
	switch s {
	case ChainTrusted:
		return "trusted"
	case ChainUntrustedRoot:
		return "untrusted root"
	case ChainInvalid:
		return "invalid"
	}
	return fmt.Sprintf("ChainStatus(%d)", int(s))
}

// ChainResult is the answer of a TrustChecker.
type ChainResult struct {
	Status ChainStatus
	Detail string
}

// RevocationChecker reports the revocation status of a certificate at a
// given time (from CRLs, OCSP or a local registry).
type RevocationChecker interface {
	// Status reports the status of certDER at time at. An error means the
	// checker could not decide.
	Status(ctx context.Context, certDER []byte, at time.Time) (RevocationResult, error)
}

// RevocationStatus is the outcome of a revocation check.
type RevocationStatus int

// Revocation statuses.
const (
	RevocationGood RevocationStatus = iota + 1
	RevocationRevoked
	// RevocationUnknown: the checker has no information about the
	// certificate (unknown issuer, no CRL...).
	RevocationUnknown
)

func (s RevocationStatus) String() string {
	switch s {
	case RevocationGood:
		return "good"
	case RevocationRevoked:
		return "revoked"
	case RevocationUnknown:
		return "unknown"
	}
	return fmt.Sprintf("RevocationStatus(%d)", int(s))
}

// CRL reason codes (RFC 5280, 5.3.1) that Verify treats specially.
const (
	ReasonKeyCompromise = 1
	ReasonCACompromise  = 2
)

// RevocationResult is the answer of a RevocationChecker.
type RevocationResult struct {
	Status RevocationStatus
	// RevokedAt and Reason (an RFC 5280 CRLReason code) are set when
	// Status is RevocationRevoked.
	RevokedAt time.Time
	Reason    int
	Detail    string
}

// SealStatus tells whether a seal is still in force in the issuing
// registry. It is optional: Verify checks it only when one is given.
type SealStatus interface {
	SealStatus(ctx context.Context, esID string) (SealState, error)
}

// SealState is the registry state of a seal.
type SealState int

// Seal states.
const (
	SealActive SealState = iota + 1
	SealSuspended
	SealRevoked
	// SealUnknown: the registry does not know the seal.
	SealUnknown
)

func (s SealState) String() string {
	switch s {
	case SealActive:
		return "active"
	case SealSuspended:
		return "suspended"
	case SealRevoked:
		return "revoked"
	case SealUnknown:
		return "unknown"
	}
	return fmt.Sprintf("SealState(%d)", int(s))
}

// PoolTrust is a TrustChecker over a fixed set of root and intermediate
// certificates. SM2 chains are verified with the default signer ID
// (smx509 does this for SM2-with-SM3 certificates). Extended key usages
// are not restricted: seal makers and holders carry many different ones.
//
// Successful chains are cached by the SHA-256 of the leaf together with
// the time window in which the whole chain is valid, so repeated checks of
// the same signer cost a hash and a map lookup. Safe for concurrent use.
type PoolTrust struct {
	roots, intermediates *smx509.CertPool
	chains               *lru[window]
}

type window struct{ notBefore, notAfter time.Time }

// NewPoolTrust builds a PoolTrust from DER certificates. Self-signed
// certificates become trust anchors; all others are intermediates, used
// only to build chains.
func NewPoolTrust(certs [][]byte) (*PoolTrust, error) {
	p := &PoolTrust{
		roots:         smx509.NewCertPool(),
		intermediates: smx509.NewCertPool(),
		chains:        newLRU[window](4096),
	}
	nroots := 0
	for i, der := range certs {
		c, err := smx509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("seal: trust certificate %d: %w", i, err)
		}
		if bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil {
			p.roots.AddCert(c)
			nroots++
		} else {
			p.intermediates.AddCert(c)
		}
	}
	if nroots == 0 {
		return nil, errors.New("seal: no self-signed root among the trust certificates")
	}
	return p, nil
}

// VerifyChain implements TrustChecker.
func (p *PoolTrust) VerifyChain(ctx context.Context, certDER []byte, at time.Time) (ChainResult, error) {
	if err := ctx.Err(); err != nil {
		return ChainResult{}, err
	}
	key := sha256.Sum256(certDER)
	if w, ok := p.chains.get(key); ok && !at.Before(w.notBefore) && !at.After(w.notAfter) {
		return ChainResult{Status: ChainTrusted, Detail: "chains to a trusted root"}, nil
	}
	leaf, err := smx509.ParseCertificate(certDER)
	if err != nil {
		return ChainResult{Status: ChainInvalid, Detail: fmt.Sprintf("certificate does not parse: %v", err)}, nil
	}
	chains, err := leaf.Verify(smx509.VerifyOptions{
		Roots:         p.roots,
		Intermediates: p.intermediates,
		CurrentTime:   at,
		KeyUsages:     []smx509.ExtKeyUsage{smx509.ExtKeyUsageAny},
	})
	if err != nil {
		var unknown smx509.UnknownAuthorityError
		if errors.As(err, &unknown) {
			return ChainResult{Status: ChainUntrustedRoot, Detail: err.Error()}, nil
		}
		return ChainResult{Status: ChainInvalid, Detail: err.Error()}, nil
	}
	w := window{notBefore: leaf.NotBefore, notAfter: leaf.NotAfter}
	for _, c := range chains[0] {
		if c.NotBefore.After(w.notBefore) {
			w.notBefore = c.NotBefore
		}
		if c.NotAfter.Before(w.notAfter) {
			w.notAfter = c.NotAfter
		}
	}
	p.chains.put(key, w)
	return ChainResult{Status: ChainTrusted, Detail: "chains to a trusted root"}, nil
}
