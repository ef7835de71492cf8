//go:build !cgo

package pkcs11

import (
	"context"
	"crypto"
	"time"

	"github.com/gmtrust/gmtrust/hsm"
)

// Manager is unusable without cgo; see the cgo build for documentation.
type Manager struct{}

var _ hsm.KeyManager = (*Manager)(nil)

// Open reports ErrNoCgo: PKCS#11 modules are C libraries.
func Open(ctx context.Context, cfg Config) (*Manager, error) { return nil, ErrNoCgo }

// ListTokens reports ErrNoCgo.
func ListTokens(ctx context.Context, modulePath string) ([]TokenInfo, error) { return nil, ErrNoCgo }

// CreateKey reports ErrNoCgo.
func (m *Manager) CreateKey(ctx context.Context, label string, alg hsm.Algorithm) (string, crypto.PublicKey, error) {
	return "", nil, ErrNoCgo
}

// Signer reports ErrNoCgo.
func (m *Manager) Signer(ctx context.Context, ref string) (crypto.Signer, error) {
	return nil, ErrNoCgo
}

// ListKeys reports ErrNoCgo.
func (m *Manager) ListKeys(ctx context.Context) ([]KeyInfo, error) { return nil, ErrNoCgo }

// SelfTest reports ErrNoCgo.
func (m *Manager) SelfTest(ctx context.Context, ref string, d time.Duration) (float64, error) {
	return 0, ErrNoCgo
}

// Close does nothing.
func (m *Manager) Close() error { return nil }
