package app

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/gmtrust/gmtrust/ca"
	"github.com/gmtrust/gmtrust/hsm"
	"github.com/gmtrust/gmtrust/internal/config"
	"github.com/gmtrust/gmtrust/internal/store"
)

// InitParams are the choices of `gmtrust init`.
type InitParams struct {
	Dir       string
	Name      string
	Algorithm hsm.Algorithm
	PublicURL string
	Listen    string
	Database  string // "" = SQLite file in Dir
	KMS       string // "soft" (default) or a pkcs11: URI
	Now       func() time.Time
	Getenv    func(string) string
}

// InitResult says what init made.
type InitResult struct {
	Config    *config.Config
	TokenFile string
	Hierarchy *ca.Hierarchy
}

// ErrAlreadyInitialised is returned by Init on an initialised directory or
// database; nothing is changed then.
var ErrAlreadyInitialised = errors.New("already initialised")

const settingInitialised = "initialised_at"

// AdminTokenFile is where init writes the first administrator's token.
const AdminTokenFile = "admin.token"

// Init creates a new instance. It refuses, changing nothing, when the
// directory or the database already holds one. If it fails half-way it
// removes what it created in the directory.
func Init(ctx context.Context, p InitParams) (res *InitResult, err error) {
	if p.Now == nil {
		p.Now = time.Now
	}
	if p.Getenv == nil {
		p.Getenv = os.Getenv
	}
	for _, f := range []string{config.FileName, AdminTokenFile, "keys"} {
		if _, err := os.Stat(filepath.Join(p.Dir, f)); err == nil {
			return nil, fmt.Errorf("%s: %w (found %s)", p.Dir, ErrAlreadyInitialised, f)
		}
	}
	cfg := config.Default()
	if p.Name != "" {
		cfg.Name = p.Name
	}
	if p.PublicURL != "" {
		cfg.PublicURL = p.PublicURL
	}
	if p.Listen != "" {
		cfg.Listen = p.Listen
	}
	if p.Database != "" {
		cfg.Database = p.Database
	}
	if p.KMS != "" && p.KMS != "soft" {
		cfg.KMS = config.KMS{Type: "pkcs11", URI: p.KMS}
	}
	if p.Algorithm == "" {
		p.Algorithm = hsm.SM2
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}

	// Remember what we create so a failure leaves the directory as it was.
	var created []string
	defer func() {
		if err != nil {
			for i := len(created) - 1; i >= 0; i-- {
				_ = os.RemoveAll(created[i])
			}
		}
	}()
	if _, statErr := os.Stat(p.Dir); errors.Is(statErr, os.ErrNotExist) {
		if err := os.MkdirAll(p.Dir, 0o700); err != nil {
			return nil, err
		}
		created = append(created, p.Dir)
	}
	dbPath := cfg.DatabaseDSN(p.Dir)
	if !config.IsPostgres(cfg.Database) {
		if _, statErr := os.Stat(dbPath); statErr == nil {
			return nil, fmt.Errorf("%s: %w (found database %s)", p.Dir, ErrAlreadyInitialised, dbPath)
		}
		created = append(created, dbPath, dbPath+"-wal", dbPath+"-shm")
	}
	if cfg.KMS.Type == "soft" && p.Getenv("GMTRUST_KEY_PASSPHRASE") == "" {
		pf := filepath.Join(p.Dir, cfg.KMS.PassphraseFile)
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		if err := writeSecret(pf, base64.RawURLEncoding.EncodeToString(b)+"\n"); err != nil {
			return nil, err
		}
		created = append(created, pf)
	}
	db, err := store.Open(ctx, dbPath, store.Options{Now: p.Now})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	// A shared PostgreSQL may already hold an instance: refuse before
	// touching keys.
	if v, err := db.GetSetting(ctx, settingInitialised); err == nil && v != "" {
		return nil, fmt.Errorf("database: %w at %s", ErrAlreadyInitialised, v)
	} else if err != nil && !errors.Is(err, ca.ErrNotFound) {
		return nil, err
	}
	if cfg.KMS.Type == "soft" {
		created = append(created, filepath.Join(p.Dir, cfg.KMS.KeystoreDir))
	}
	keys, err := OpenKeys(ctx, p.Dir, &cfg, p.Getenv, true)
	if err != nil {
		return nil, err
	}
	defer keys.Close()
	profiles, err := LoadProfiles(p.Dir, &cfg)
	if err != nil {
		return nil, err
	}
	h, err := ca.Bootstrap(ctx, keys, profiles, ca.BootstrapParams{Name: cfg.Name, Algorithm: p.Algorithm, PublicURL: cfg.PublicURL, Now: p.Now})
	if err != nil {
		return nil, err
	}
	token, hash, err := NewToken()
	if err != nil {
		return nil, err
	}
	now := p.Now()
	err = db.InTx(ctx, func(ctx context.Context, tx *sqlx.Tx) error {
		// A concurrent init on the same database fails here on the CA
		// primary keys, so the check above needs no lock.
		for _, r := range []*ca.CARecord{&h.Root, &h.Issuing} {
			if err := db.InsertCATx(ctx, tx, r); err != nil {
				return err
			}
		}
		if err := db.InsertCertificateTx(ctx, tx, &h.OCSPCert); err != nil {
			return err
		}
		if err := db.InsertSignerTx(ctx, tx, &h.OCSP); err != nil {
			return err
		}
		// The first administrator: the principal the admin token belongs to.
		if err := db.InsertPrincipalTx(ctx, tx, &store.Principal{Name: AdminPrincipal, Kind: store.KindPerson, Roles: []string{"admin"}, CreatedAt: now}); err != nil {
			return err
		}
		if err := db.InsertTokenTx(ctx, tx, &store.Token{ID: "admin-" + now.UTC().Format("20060102T150405"), Principal: AdminPrincipal, Hash: hash, CreatedAt: now}); err != nil {
			return err
		}
		return db.SetSettingTx(ctx, tx, settingInitialised, now.UTC().Format(time.RFC3339))
	})
	if err != nil {
		return nil, err
	}
	tokenFile := filepath.Join(p.Dir, AdminTokenFile)
	if err := writeSecret(tokenFile, token+"\n"); err != nil {
		return nil, err
	}
	created = append(created, tokenFile)
	// config.yaml goes last: its presence is what marks the directory as
	// initialised.
	if err := cfg.Write(p.Dir); err != nil {
		return nil, err
	}
	return &InitResult{Config: &cfg, TokenFile: tokenFile, Hierarchy: h}, nil
}

func writeSecret(path, content string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
