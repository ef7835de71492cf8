package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"errors"
	"fmt"
	"time"

	"github.com/emmansun/gmsm/sm2"
)

func keyAlgorithmName(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if sm2.IsSM2PublicKey(k) {
			return "sm2"
		}
		return fmt.Sprintf("ecdsa-%s", k.Curve.Params().Name)
	case *rsa.PublicKey:
		return fmt.Sprintf("rsa-%d", k.N.BitLen())
	}
	return fmt.Sprintf("%T", pub)
}

// Find looks a serial up in every CA (serials are 126-bit random, so at
// most one CA has it).
func (a *Authority) Find(ctx context.Context, serial string) (*Certificate, error) {
	s, err := NormalizeSerial(serial)
	if err != nil {
		return nil, reqErr(ProblemBadSerial, err.Error(), err)
	}
	for _, id := range a.order {
		c, err := a.store.Certificate(ctx, id, s)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	return nil, fmt.Errorf("certificate %s: %w", s, ErrNotFound)
}

// List lists certificates.
func (a *Authority) List(ctx context.Context, f Filter) ([]Certificate, string, error) {
	return a.store.Certificates(ctx, f)
}

// RevokeRequest asks to revoke (or hold) a certificate.
type RevokeRequest struct {
	Serial         string
	Reason         int
	InvalidityDate time.Time
	By             string
}

// Revoke revokes a certificate; it returns once the revocation is
// durable and every listener (the OCSP responder) has seen it. Repeating
// a revocation with the same reason succeeds and changes nothing.
func (a *Authority) Revoke(ctx context.Context, req RevokeRequest) (*Certificate, error) {
	if req.Reason < 0 || req.Reason > ReasonAACompromise || req.Reason == 7 || req.Reason == ReasonRemoveFromCRL {
		return nil, reqErr(ProblemBadReason, fmt.Sprintf("reason code %d cannot be used", req.Reason), nil)
	}
	cur, err := a.Find(ctx, req.Serial)
	if err != nil {
		return nil, err
	}
	now := a.now().UTC().Truncate(time.Second)
	if !req.InvalidityDate.IsZero() && req.InvalidityDate.After(now) {
		return nil, reqErr(ProblemBadReason, "invalidity date is in the future", nil)
	}
	c, err := a.store.Revoke(ctx, Revocation{CAID: cur.CAID, Serial: cur.Serial, Reason: req.Reason, At: now, InvalidityDate: req.InvalidityDate.UTC().Truncate(time.Second), By: req.By})
	if err != nil {
		if errors.Is(err, ErrAlreadyRevoked) {
			return nil, reqErr("already-revoked", fmt.Sprintf("certificate %s is already revoked (%s)", cur.Serial, ReasonName(cur.Reason)), err)
		}
		return nil, err
	}
	a.metrics.revoked.WithLabelValues(ReasonName(req.Reason)).Inc()
	if err := a.statusChanged(ctx, c); err != nil {
		return c, err
	}
	return c, nil
}

// Unhold lifts a certificateHold.
func (a *Authority) Unhold(ctx context.Context, serial, by string) (*Certificate, error) {
	cur, err := a.Find(ctx, serial)
	if err != nil {
		return nil, err
	}
	c, err := a.store.Unhold(ctx, cur.CAID, cur.Serial, by, a.now())
	if err != nil {
		if errors.Is(err, ErrNotOnHold) {
			return nil, reqErr("not-on-hold", fmt.Sprintf("certificate %s is %s, not on hold", cur.Serial, cur.Status), err)
		}
		return nil, err
	}
	return c, a.statusChanged(ctx, c)
}

func (a *Authority) statusChanged(ctx context.Context, c *Certificate) error {
	a.KickCRL(c.CAID)
	a.mu.Lock()
	ls := append([]RevocationListener(nil), a.listeners...)
	a.mu.Unlock()
	for _, l := range ls {
		if err := l.CertificateStatusChanged(ctx, c); err != nil {
			return fmt.Errorf("ca: revocation recorded but a listener failed: %w", err)
		}
	}
	return nil
}
