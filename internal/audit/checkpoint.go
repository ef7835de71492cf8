package audit

import (
	"bytes"
	"context"
	"crypto"
	"encoding/asn1"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/gmtrust/gmtrust/internal/sigalg"
)

// checkpointType starts the signed encoding of a checkpoint, so that no
// other structure the audit key could be asked to sign (and no structure
// another key signs) can be taken for a checkpoint.
const checkpointType = "gmtrust audit checkpoint v1"

// Errors of checkpoint verification; returned wrapped.
var (
	ErrBadCheckpoint = errors.New("audit: checkpoint signature does not verify")
	ErrUntrusted     = errors.New("audit: checkpoint signer is not trusted")
	// ErrCheckpointExists is returned by a CheckpointStore when a
	// checkpoint of the same entry exists (another process made it).
	ErrCheckpointExists = errors.New("audit: checkpoint exists")
)

// Checkpoint is a signed statement that the chain had Hash at Seq at Time.
// A rewrite of entries up to Seq, even with every hash recomputed, then
// no longer matches it, and making a new checkpoint needs the audit key,
// which lives in the key manager and not in the database.
type Checkpoint struct {
	Seq         int64
	Hash        []byte
	Time        time.Time
	Certificate []byte // DER of the signer's certificate
	Algorithm   asn1.ObjectIdentifier
	Signature   []byte
}

// SignedBytes returns the DER that the signature covers:
//
//	AuditCheckpoint ::= SEQUENCE {
//	    type  UTF8String ("gmtrust audit checkpoint v1"),
//	    seq   INTEGER,
//	    hash  OCTET STRING,
//	    time  INTEGER }  -- unix nanoseconds
func (cp *Checkpoint) SignedBytes() ([]byte, error) {
	if cp.Seq < 1 || len(cp.Hash) != HashSize {
		return nil, fmt.Errorf("%w: checkpoint of entry %d with a %d-byte hash", ErrInvalid, cp.Seq, len(cp.Hash))
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.UTF8String, func(b *cryptobyte.Builder) { b.AddBytes([]byte(checkpointType)) })
		b.AddASN1Int64(cp.Seq)
		b.AddASN1OctetString(cp.Hash)
		b.AddASN1Int64(cp.Time.UnixNano())
	})
	return b.Bytes()
}

// SignCheckpoint signs head at time at with signer, whose certificate is
// certDER.
func SignCheckpoint(signer crypto.Signer, certDER []byte, head Head, at time.Time) (*Checkpoint, error) {
	cert, err := smx509.ParseCertificate(certDER)
	if err != nil {
		return nil, fmt.Errorf("audit: signer certificate: %w", err)
	}
	if k, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(cert.PublicKey) {
		return nil, errors.New("audit: the audit key does not match its certificate")
	}
	cp := &Checkpoint{Seq: head.Seq, Hash: bytes.Clone(head.Hash), Time: at, Certificate: bytes.Clone(certDER)}
	msg, err := cp.SignedBytes()
	if err != nil {
		return nil, err
	}
	sig, alg, err := sigalg.Sign(signer, msg)
	if err != nil {
		return nil, fmt.Errorf("audit: sign checkpoint: %w", err)
	}
	cp.Algorithm, cp.Signature = alg.OID, sig
	return cp, nil
}

// VerifySignature checks the signature against the embedded certificate
// and returns that certificate; it says nothing about whether the
// certificate is trusted (see CertVerifier).
func (cp *Checkpoint) VerifySignature() (*smx509.Certificate, error) {
	cert, err := smx509.ParseCertificate(cp.Certificate)
	if err != nil {
		return nil, fmt.Errorf("%w: certificate of checkpoint %d: %v", ErrBadCheckpoint, cp.Seq, err)
	}
	msg, err := cp.SignedBytes()
	if err != nil {
		return nil, err
	}
	if err := sigalg.Verify(cert.PublicKey, cp.Algorithm, msg, cp.Signature); err != nil {
		return nil, fmt.Errorf("%w: checkpoint %d: %v", ErrBadCheckpoint, cp.Seq, err)
	}
	return cert, nil
}

// CertVerifier verifies checkpoints against trusted CA certificates: the
// signature must verify, the signer's certificate must chain to one of
// Roots (through Intermediates) and be valid at the checkpoint's time,
// allow digitalSignature, and pass Authorized.
type CertVerifier struct {
	Roots         []*smx509.Certificate
	Intermediates []*smx509.Certificate
	// Authorized decides whether a certificate that chains may sign
	// checkpoints (e.g. it is the instance's registered audit signer);
	// nil accepts every such certificate.
	Authorized func(cert *smx509.Certificate) error
}

// VerifyCheckpoint implements CheckpointVerifier.
func (v *CertVerifier) VerifyCheckpoint(cp *Checkpoint) error {
	cert, err := cp.VerifySignature()
	if err != nil {
		return err
	}
	roots, inter := smx509.NewCertPool(), smx509.NewCertPool()
	for _, c := range v.Roots {
		roots.AddCert(c)
	}
	for _, c := range v.Intermediates {
		inter.AddCert(c)
	}
	if _, err := cert.Verify(smx509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: cp.Time,
		KeyUsages: []smx509.ExtKeyUsage{smx509.ExtKeyUsageAny},
	}); err != nil {
		return fmt.Errorf("%w: checkpoint %d signed by %q: %v", ErrUntrusted, cp.Seq, cert.Subject.String(), err)
	}
	if cert.KeyUsage&smx509.KeyUsageDigitalSignature == 0 {
		return fmt.Errorf("%w: checkpoint %d: certificate %q does not allow digitalSignature", ErrUntrusted, cp.Seq, cert.Subject.String())
	}
	if v.Authorized != nil {
		if err := v.Authorized(cert); err != nil {
			return fmt.Errorf("%w: checkpoint %d: %v", ErrUntrusted, cp.Seq, err)
		}
	}
	return nil
}

// CheckpointStore is what a Checkpointer needs from the database.
type CheckpointStore interface {
	AuditHead(ctx context.Context) (Head, error)
	// LatestCheckpoint returns the checkpoint with the highest seq, or
	// nil when there is none.
	LatestCheckpoint(ctx context.Context) (*Checkpoint, error)
	InsertCheckpoint(ctx context.Context, cp *Checkpoint) error
}

// KeySource returns the audit key and its certificate (DER), creating or
// renewing them when needed.
type KeySource func(ctx context.Context) (crypto.Signer, []byte, error)

// Locker runs fn only when no other process sharing the database holds
// the named lock (store.DB.TryLock).
type Locker interface {
	TryLock(ctx context.Context, name string, fn func(ctx context.Context) error) (bool, error)
}

// Checkpointer signs the chain head with the audit key.
type Checkpointer struct {
	store CheckpointStore
	key   KeySource
	now   func() time.Time
	log   *slog.Logger
}

// NewCheckpointer returns a Checkpointer; now and log may be nil.
func NewCheckpointer(store CheckpointStore, key KeySource, now func() time.Time, log *slog.Logger) *Checkpointer {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Checkpointer{store: store, key: key, now: now, log: log}
}

// Checkpoint signs the current head and stores the checkpoint. It returns
// nil and no error when there is nothing new to sign: an empty log, or a
// head already covered by the latest checkpoint.
func (c *Checkpointer) Checkpoint(ctx context.Context) (*Checkpoint, error) {
	head, err := c.store.AuditHead(ctx)
	if err != nil {
		return nil, fmt.Errorf("audit: read head: %w", err)
	}
	if head.Seq == 0 {
		return nil, nil
	}
	last, err := c.store.LatestCheckpoint(ctx)
	if err != nil {
		return nil, fmt.Errorf("audit: latest checkpoint: %w", err)
	}
	if last != nil && last.Seq >= head.Seq {
		return nil, nil
	}
	signer, cert, err := c.key(ctx)
	if err != nil {
		return nil, fmt.Errorf("audit: audit key: %w", err)
	}
	cp, err := SignCheckpoint(signer, cert, head, c.now())
	if err != nil {
		return nil, err
	}
	if err := c.store.InsertCheckpoint(ctx, cp); err != nil {
		if errors.Is(err, ErrCheckpointExists) {
			return nil, nil // another process signed the same head
		}
		return nil, fmt.Errorf("audit: store checkpoint: %w", err)
	}
	return cp, nil
}

// Run makes a checkpoint every interval until ctx ends. With a Locker,
// only one of several processes sharing a database does it at a time.
func (c *Checkpointer) Run(ctx context.Context, every time.Duration, lock Locker) {
	if every <= 0 {
		every = time.Hour
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		run := func(ctx context.Context) error {
			cp, err := c.Checkpoint(ctx)
			if err != nil {
				return err
			}
			if cp != nil {
				c.log.Info("audit checkpoint signed", "seq", cp.Seq)
			}
			return nil
		}
		var err error
		if lock != nil {
			_, err = lock.TryLock(ctx, "audit-checkpoint", run)
		} else {
			err = run(ctx)
		}
		if err != nil && ctx.Err() == nil {
			c.log.Error("audit checkpoint failed", "err", err)
		}
	}
}
