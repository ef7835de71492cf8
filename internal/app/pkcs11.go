package app

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/gmtrust/gmtrust/hsm"
	"github.com/gmtrust/gmtrust/hsm/pkcs11"
	"github.com/gmtrust/gmtrust/hsm/pkcs11uri"
	"github.com/gmtrust/gmtrust/internal/config"
)

// PKCS11Config translates the kms section of config.yaml into the
// backend's configuration. The PIN is read by the backend from the file
// the configuration names; only that path is ever stored.
func PKCS11Config(k config.KMS) (pkcs11.Config, error) {
	if k.Type != "pkcs11" {
		return pkcs11.Config{}, fmt.Errorf("kms.type is %q, not pkcs11", k.Type)
	}
	u, err := pkcs11uri.Parse(k.URI)
	if err != nil {
		return pkcs11.Config{}, fmt.Errorf("kms.uri: %w", err)
	}
	if u.PINValue != "" {
		return pkcs11.Config{}, config.ErrPINInConfig
	}
	if u.PINSource == "" {
		// kms.pin_source supplies what the URI leaves out; config
		// validation made sure the two do not disagree.
		path, err := k.PINFile()
		if err != nil {
			return pkcs11.Config{}, err
		}
		u.PINSource = "file:" + path
	}
	cfg := pkcs11.Config{
		URI:            u.String(),
		PoolSize:       k.PoolSize,
		AcquireTimeout: k.AcquireTimeout.Duration,
		Vendor:         k.Vendor,
		KEKLabel:       k.KEKLabel,
		// The backend reads 0 as "decrypt for every signature", so the
		// default for an absent setting is chosen here, explicitly.
		PlaintextTTL: pkcs11.DefaultPlaintextTTL,
	}
	if k.PlaintextTTL != nil {
		cfg.PlaintextTTL = k.PlaintextTTL.Duration
	}
	if c := k.Custom; c != nil {
		spec := &pkcs11.VendorSpec{Name: "custom", KeyType: c.KeyType, KeyGenMechanism: c.KeyGenMechanism,
			SignMechanism: c.SignMechanism, HashesZA: c.HashesZA}
		switch c.Output {
		case "raw":
			spec.Output = pkcs11.EncodingRaw
		case "der":
			spec.Output = pkcs11.EncodingDER
		case "auto":
			spec.Output = pkcs11.EncodingAuto
		default:
			return pkcs11.Config{}, fmt.Errorf("kms.custom.output %q: want raw, der or auto", c.Output)
		}
		if spec.ECParams, err = hex.DecodeString(c.ECParams); err != nil {
			return pkcs11.Config{}, fmt.Errorf("kms.custom.ec_params: %w", err)
		}
		cfg.Custom = spec
	}
	return cfg, nil
}

// OpenPKCS11 opens the token of a pkcs11 instance. It logs in at once, so
// a wrong PIN or a missing token fails here, before anything is served.
func OpenPKCS11(ctx context.Context, cfg *config.Config) (*pkcs11.Manager, error) {
	pc, err := PKCS11Config(cfg.KMS)
	if err != nil {
		return nil, fmt.Errorf("kms: %w", err)
	}
	m, err := pkcs11.Open(ctx, pc)
	if err != nil {
		return nil, describePKCS11Error(cfg.KMS, err)
	}
	return m, nil
}

// describePKCS11Error adds what an operator needs to act on a failure to
// open the token. The cause stays wrapped for errors.Is.
func describePKCS11Error(k config.KMS, err error) error {
	pin, _ := k.PINFile()
	switch {
	case errors.Is(err, pkcs11.ErrPINIncorrect):
		return fmt.Errorf("kms: the PKCS#11 token refused the user PIN read from %s (fix the file; repeated wrong PINs may lock the token): %w", pin, err)
	case errors.Is(err, pkcs11.ErrTokenUnavailable):
		return fmt.Errorf("kms: the PKCS#11 token named by kms.uri is not present (check the token label and the module's configuration, e.g. SOFTHSM2_CONF): %w", err)
	case errors.Is(err, pkcs11.ErrNoCgo):
		return fmt.Errorf("kms: kms.type pkcs11 needs a gmtrust built with cgo: %w", err)
	}
	return fmt.Errorf("kms: opening the PKCS#11 token: %w", err)
}

// openPKCS11 is OpenKeys for kms.type pkcs11.
func openPKCS11(ctx context.Context, cfg *config.Config) (hsm.KeyManager, error) {
	m, err := OpenPKCS11(ctx, cfg)
	if err != nil {
		// A nil *Manager in a non-nil interface would look like a manager.
		return nil, err
	}
	return m, nil
}
