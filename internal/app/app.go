// Package app assembles an instance from its data directory: config,
// database, key manager, profiles and the CA. The CLI and the server share
// it so both see the same wiring.
package app

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/gmtrust/gmtrust/ca"
	"github.com/gmtrust/gmtrust/hsm"
	"github.com/gmtrust/gmtrust/hsm/soft"
	"github.com/gmtrust/gmtrust/internal/api"
	"github.com/gmtrust/gmtrust/internal/config"
	"github.com/gmtrust/gmtrust/internal/store"
	"github.com/gmtrust/gmtrust/policies"
)

// App is an opened instance.
type App struct {
	Dir       string
	Config    *config.Config
	Store     *store.DB
	Keys      hsm.KeyManager
	Profiles  *policies.Set
	Authority *ca.Authority
	Logger    *slog.Logger
	Registry  *prometheus.Registry
	Now       func() time.Time
}

// Options tune Open.
type Options struct {
	Logger *slog.Logger
	Now    func() time.Time
	Getenv func(string) string
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
}

// Open opens an initialised data directory.
func Open(ctx context.Context, dir string, o Options) (*App, error) {
	o.defaults()
	cfg, err := config.Load(dir, o.Getenv)
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	db, err := store.Open(ctx, cfg.DatabaseDSN(dir), store.Options{Now: o.Now, Logger: o.Logger})
	if err != nil {
		return nil, err
	}
	keys, err := OpenKeys(ctx, dir, cfg, o.Getenv, false)
	if err != nil {
		db.Close()
		return nil, err
	}
	profiles, err := LoadProfiles(dir, cfg)
	if err != nil {
		keys.Close()
		db.Close()
		return nil, err
	}
	auth, err := ca.New(ctx, ca.Config{PublicURL: cfg.PublicURL, CRLValidity: cfg.CRL.Validity.Duration}, ca.Deps{
		Store: db, Keys: keys, Profiles: profiles, Now: o.Now, Logger: o.Logger, Metrics: reg,
	})
	if err != nil {
		keys.Close()
		db.Close()
		return nil, err
	}
	return &App{Dir: dir, Config: cfg, Store: db, Keys: keys, Profiles: profiles, Authority: auth, Logger: o.Logger, Registry: reg, Now: o.Now}, nil
}

// Close releases the database and keys.
func (a *App) Close() error {
	return errors.Join(a.Keys.Close(), a.Store.Close())
}

// LoadProfiles loads the embedded profiles, overlaid by the configured
// directory (relative to the data directory) when set.
func LoadProfiles(dir string, cfg *config.Config) (*policies.Set, error) {
	if cfg.Profiles == "" {
		return policies.Default()
	}
	p := cfg.Profiles
	if !filepath.IsAbs(p) {
		p = filepath.Join(dir, p)
	}
	return policies.LoadDir(p)
}

// passphrase returns the soft keystore passphrase: GMTRUST_KEY_PASSPHRASE
// when set, else the passphrase file.
func passphrase(dir string, cfg *config.Config, getenv func(string) string) ([]byte, error) {
	if v := getenv("GMTRUST_KEY_PASSPHRASE"); v != "" {
		return []byte(v), nil
	}
	p := cfg.KMS.PassphraseFile
	if p == "" {
		return nil, errors.New("no keystore passphrase: set GMTRUST_KEY_PASSPHRASE or kms.passphrase_file")
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(dir, p)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("keystore passphrase: %w", err)
	}
	return []byte(strings.TrimSpace(string(b))), nil
}

// OpenKeys opens the configured key manager.
func OpenKeys(ctx context.Context, dir string, cfg *config.Config, getenv func(string) string, create bool) (hsm.KeyManager, error) {
	switch cfg.KMS.Type {
	case "soft":
		pass, err := passphrase(dir, cfg, getenv)
		if err != nil {
			return nil, err
		}
		ksDir := cfg.KMS.KeystoreDir
		if ksDir == "" {
			ksDir = "keys"
		}
		if !filepath.IsAbs(ksDir) {
			ksDir = filepath.Join(dir, ksDir)
		}
		return soft.Open(ksDir, pass, create)
	case "pkcs11":
		return openPKCS11(ctx, cfg)
	}
	return nil, fmt.Errorf("unknown kms type %q", cfg.KMS.Type)
}

// TokenPrefix marks gmtrust API tokens so they are easy to spot in logs
// and secret scanners.
const TokenPrefix = "gmt_"

// NewToken returns a fresh 256-bit API token and its stored hash.
func NewToken() (token string, hash []byte, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", nil, err
	}
	token = TokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	return token, HashToken(token), nil
}

// HashToken is what the database keeps of a token.
func HashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// TokenAuth (access.go) authenticates the tokens NewToken makes.

// ReadyChecks are the /readyz checks: the database answers and every CA
// key can be loaded.
func (a *App) ReadyChecks() map[string]api.ReadyCheck {
	return map[string]api.ReadyCheck{
		"database": a.Store.Ping,
		"keys": func(ctx context.Context) error {
			for _, c := range a.Authority.CAs() {
				if _, err := a.Keys.Signer(ctx, c.KeyRef); err != nil {
					return fmt.Errorf("CA %s: %w", c.ID, err)
				}
			}
			return nil
		},
	}
}
