package app

import (
	"context"
	"errors"

	"github.com/gmtrust/gmtrust/hsm"
	"github.com/gmtrust/gmtrust/internal/config"
)

// openPKCS11 is replaced when the PKCS#11 backend is wired in.
func openPKCS11(_ context.Context, _ *config.Config) (hsm.KeyManager, error) {
	return nil, errors.New("kms type pkcs11 is not available in this build")
}
