// Package config reads and writes an instance's config.yaml and applies
// environment overrides.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// FileName is the config file inside a data directory; its presence marks
// an initialised instance.
const FileName = "config.yaml"

// Config is an instance's configuration.
type Config struct {
	Name      string `yaml:"name"`
	Listen    string `yaml:"listen"`
	PublicURL string `yaml:"public_url"`
	// Database is a SQLite file (relative to the data directory) or a
	// postgres:// DSN.
	Database string    `yaml:"database"`
	KMS      KMS       `yaml:"kms"`
	CRL      CRL       `yaml:"crl"`
	Profiles string    `yaml:"profiles_dir,omitempty"`
	Log      LogConfig `yaml:"log"`
}

// KMS selects the key manager backend.
type KMS struct {
	// Type is "soft" (the encrypted keystore in the data directory) or
	// "pkcs11".
	Type string `yaml:"type"`
	// KeystoreDir is the soft keystore directory, relative to the data
	// directory.
	KeystoreDir string `yaml:"keystore_dir,omitempty"`
	// PassphraseFile holds the soft keystore passphrase when
	// GMTRUST_KEY_PASSPHRASE is not set.
	PassphraseFile string `yaml:"passphrase_file,omitempty"`
	// URI is the PKCS#11 token URI (RFC 7512) for Type "pkcs11".
	URI string `yaml:"uri,omitempty"`
	// PoolSize bounds PKCS#11 sessions; 0 picks a default.
	PoolSize int `yaml:"pool_size,omitempty"`
	// Vendor names the SM2 mechanism set of an HSM that has SM2.
	Vendor string `yaml:"vendor,omitempty"`
}

// CRL settings.
type CRL struct {
	Validity Duration `yaml:"validity"`
	Refresh  Duration `yaml:"refresh"`
}

// LogConfig sets logging.
type LogConfig struct {
	Level string `yaml:"level"`
}

// Duration reads "24h" style durations from YAML.
type Duration struct{ time.Duration }

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	d.Duration = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.Duration.String(), nil }

// Default returns the settings of a fresh instance.
func Default() Config {
	return Config{
		Name:      "gmtrust CA",
		Listen:    "127.0.0.1:8080",
		PublicURL: "http://127.0.0.1:8080",
		Database:  "gmtrust.db",
		KMS:       KMS{Type: "soft", KeystoreDir: "keys", PassphraseFile: "keystore.pass"},
		CRL:       CRL{Validity: Duration{24 * time.Hour}, Refresh: Duration{time.Minute}},
		Log:       LogConfig{Level: "info"},
	}
}

// ErrNotInitialised is returned by Load for a directory without config.
var ErrNotInitialised = errors.New("data directory is not initialised (run gmtrust init)")

// Load reads DIR/config.yaml and applies environment overrides
// (GMTRUST_LISTEN, GMTRUST_PUBLIC_URL, GMTRUST_DATABASE, GMTRUST_LOG_LEVEL).
func Load(dir string, getenv func(string) string) (*Config, error) {
	b, err := os.ReadFile(filepath.Join(dir, FileName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", dir, ErrNotInitialised)
	}
	if err != nil {
		return nil, err
	}
	c := Default()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, FileName), err)
	}
	if getenv == nil {
		getenv = os.Getenv
	}
	for env, dst := range map[string]*string{
		"GMTRUST_LISTEN":     &c.Listen,
		"GMTRUST_PUBLIC_URL": &c.PublicURL,
		"GMTRUST_DATABASE":   &c.Database,
		"GMTRUST_LOG_LEVEL":  &c.Log.Level,
	} {
		if v := getenv(env); v != "" {
			*dst = v
		}
	}
	return &c, c.Validate()
}

// Validate checks the settings that would otherwise fail later.
func (c *Config) Validate() error {
	switch c.KMS.Type {
	case "soft", "pkcs11":
	default:
		return fmt.Errorf("config: kms.type %q: want soft or pkcs11", c.KMS.Type)
	}
	if c.KMS.Type == "pkcs11" && !strings.HasPrefix(c.KMS.URI, "pkcs11:") {
		return errors.New("config: kms.uri must be a pkcs11: URI")
	}
	if c.Database == "" {
		return errors.New("config: database is empty")
	}
	if c.CRL.Validity.Duration <= 0 {
		c.CRL.Validity.Duration = 24 * time.Hour
	}
	if c.CRL.Refresh.Duration <= 0 {
		c.CRL.Refresh.Duration = time.Minute
	}
	return nil
}

// DatabaseDSN resolves a relative SQLite path against the data directory.
func (c *Config) DatabaseDSN(dir string) string {
	if IsPostgres(c.Database) || filepath.IsAbs(c.Database) {
		return c.Database
	}
	return filepath.Join(dir, c.Database)
}

// IsPostgres says whether a database setting names PostgreSQL.
func IsPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// Write stores the config as DIR/config.yaml (mode 0600), refusing to
// replace an existing one.
func (c *Config) Write(dir string) error {
	b, err := yaml.Marshal(c)
	if err != nil {
		return err
	}
	b = append([]byte("# gmtrust instance configuration. Environment overrides: GMTRUST_LISTEN,\n# GMTRUST_PUBLIC_URL, GMTRUST_DATABASE, GMTRUST_LOG_LEVEL, GMTRUST_KEY_PASSPHRASE.\n"), b...)
	f, err := os.OpenFile(filepath.Join(dir, FileName), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
