// Package config reads and writes an instance's config.yaml and applies
// environment overrides.
package config

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/gmtrust/gmtrust/hsm/pkcs11uri"
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
	// OCSP and Seal are the responder's and the seal service's settings.
	// Each has an environment variable that overrides it; Settings
	// merges the two.
	OCSP OCSPSettings `yaml:"ocsp,omitempty"`
	Seal SealSettings `yaml:"seal,omitempty"`
}

// OCSPSettings are read by app.OCSPOptionsFromEnv, in the syntax of the
// GMTRUST_OCSP_* variables named in the comments; empty means default.
type OCSPSettings struct {
	Hashes          string `yaml:"hashes,omitempty"`           // GMTRUST_OCSP_HASHES: sha1,sha256,sm3
	Validity        string `yaml:"validity,omitempty"`         // GMTRUST_OCSP_VALIDITY: 24h
	CacheEntries    string `yaml:"cache_entries,omitempty"`    // GMTRUST_OCSP_CACHE_ENTRIES: 100000
	CacheMaxAge     string `yaml:"cache_max_age,omitempty"`    // GMTRUST_OCSP_CACHE_MAX_AGE: 60s
	VerifyMaxAge    string `yaml:"verify_max_age,omitempty"`   // GMTRUST_OCSP_VERIFY_MAX_AGE: 10m
	HTTPMaxAge      string `yaml:"http_max_age,omitempty"`     // GMTRUST_OCSP_HTTP_MAX_AGE: 1h
	Presign         string `yaml:"presign,omitempty"`          // GMTRUST_OCSP_PRESIGN: on or off
	PresignRate     string `yaml:"presign_rate,omitempty"`     // GMTRUST_OCSP_PRESIGN_RATE: 2000 (-1 unlimited)
	PresignInterval string `yaml:"presign_interval,omitempty"` // GMTRUST_OCSP_PRESIGN_INTERVAL: 1m
}

// SealSettings are read by app.SealOptionsFromEnv, like OCSPSettings.
type SealSettings struct {
	ESIDPrefix string `yaml:"esid_prefix,omitempty"` // GMTRUST_SEAL_ESID_PREFIX
	Vid        string `yaml:"vid,omitempty"`         // GMTRUST_SEAL_VID
	StatusTTL  string `yaml:"status_ttl,omitempty"`  // GMTRUST_SEAL_STATUS_TTL: 5s
}

// Settings returns a lookup of GMTRUST_OCSP_* and GMTRUST_SEAL_* names
// that answers from getenv when the variable is set and from the ocsp:
// and seal: sections of config.yaml otherwise (any other name: getenv).
func (c *Config) Settings(getenv func(string) string) func(string) string {
	file := map[string]string{
		"GMTRUST_OCSP_HASHES":           c.OCSP.Hashes,
		"GMTRUST_OCSP_VALIDITY":         c.OCSP.Validity,
		"GMTRUST_OCSP_CACHE_ENTRIES":    c.OCSP.CacheEntries,
		"GMTRUST_OCSP_CACHE_MAX_AGE":    c.OCSP.CacheMaxAge,
		"GMTRUST_OCSP_VERIFY_MAX_AGE":   c.OCSP.VerifyMaxAge,
		"GMTRUST_OCSP_HTTP_MAX_AGE":     c.OCSP.HTTPMaxAge,
		"GMTRUST_OCSP_PRESIGN":          c.OCSP.Presign,
		"GMTRUST_OCSP_PRESIGN_RATE":     c.OCSP.PresignRate,
		"GMTRUST_OCSP_PRESIGN_INTERVAL": c.OCSP.PresignInterval,
		"GMTRUST_SEAL_ESID_PREFIX":      c.Seal.ESIDPrefix,
		"GMTRUST_SEAL_VID":              c.Seal.Vid,
		"GMTRUST_SEAL_STATUS_TTL":       c.Seal.StatusTTL,
	}
	if getenv == nil {
		getenv = os.Getenv
	}
	return func(name string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return file[name]
	}
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
	// URI is the PKCS#11 token URI (RFC 7512) for Type "pkcs11": token
	// label and module-path, and usually pin-source. It never carries a
	// pin-value: config.yaml is not a place for the PIN.
	URI string `yaml:"uri,omitempty"`
	// PINSource is the file holding the token's user PIN ("file:/path" or
	// an absolute path) when URI has no pin-source.
	PINSource string `yaml:"pin_source,omitempty"`
	// PoolSize bounds PKCS#11 sessions; 0 picks a default.
	PoolSize int `yaml:"pool_size,omitempty"`
	// AcquireTimeout bounds the wait for a free PKCS#11 session; 0 means
	// the backend's default (10 s).
	AcquireTimeout Duration `yaml:"acquire_timeout,omitempty"`
	// Vendor names the SM2 mechanism set of an HSM that has SM2: tass,
	// sansec, luna, ep11, or custom (with Custom). Empty means the token
	// has no SM2 and SM2 keys are kept in KEK mode.
	Vendor string `yaml:"vendor,omitempty"`
	// Custom describes the SM2 mechanisms of a token not in the built-in
	// vendor table; only with Vendor "custom".
	Custom *VendorSM2 `yaml:"custom,omitempty"`
	// KEKLabel is the label of the token's AES key that wraps SM2 keys in
	// KEK mode; empty means the backend's default (gmtrust-kek).
	KEKLabel string `yaml:"kek_label,omitempty"`
	// PlaintextTTL is how long an SM2 key decrypted in KEK mode may stay
	// in memory. Absent means the backend's default (5 minutes); "0s"
	// decrypts in the token for every signature.
	PlaintextTTL *Duration `yaml:"plaintext_ttl,omitempty"`
}

// VendorSM2 is the vendor-defined PKCS#11 values for SM2 on a token that
// is not in the built-in table. Numbers may be written in hex (0x80000004).
type VendorSM2 struct {
	KeyType         uint `yaml:"key_type"`
	KeyGenMechanism uint `yaml:"keygen_mechanism"`
	SignMechanism   uint `yaml:"sign_mechanism"`
	// HashesZA says the sign mechanism takes the whole message and
	// computes SM3(ZA || M) itself.
	HashesZA bool `yaml:"hashes_za"`
	// Output is the signature encoding the token returns: "raw" (r||s),
	// "der" or "auto".
	Output string `yaml:"output"`
	// ECParams is CKA_EC_PARAMS for key generation, in hex; empty means the
	// OID of the SM2 curve.
	ECParams string `yaml:"ec_params,omitempty"`
}

// ErrPINInConfig is returned by Validate when kms.uri carries the PIN
// itself (pin-value).
var ErrPINInConfig = errors.New("config: kms.uri must not contain pin-value: keep the PIN in a file (mode 0600) and name it with pin-source=file:/path or kms.pin_source")

// PINFile returns the path of the file holding the PKCS#11 PIN: from the
// URI's pin-source, else from PINSource.
func (k *KMS) PINFile() (string, error) {
	src := k.PINSource
	if k.URI != "" {
		u, err := pkcs11uri.Parse(k.URI)
		if err != nil {
			return "", fmt.Errorf("config: kms.uri: %w", err)
		}
		if u.PINSource != "" {
			if src != "" && src != u.PINSource {
				return "", fmt.Errorf("config: kms.pin_source %q and the pin-source %q of kms.uri disagree", src, u.PINSource)
			}
			src = u.PINSource
		}
	}
	if src == "" {
		return "", errors.New("config: kms type pkcs11 needs a PIN file: pin-source=file:/path in kms.uri, or kms.pin_source")
	}
	path := src
	switch {
	case strings.HasPrefix(src, "file://"):
		path = strings.TrimPrefix(src, "file://")
	case strings.HasPrefix(src, "file:"):
		path = strings.TrimPrefix(src, "file:")
	}
	// Relative paths would depend on the working directory of whoever
	// starts the service.
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("config: PIN source %q must be an absolute file path (file:/path)", src)
	}
	return path, nil
}

func (k *KMS) validate() error {
	switch k.Type {
	case "soft":
		if k.URI != "" || k.PINSource != "" || k.Vendor != "" || k.Custom != nil {
			return errors.New("config: kms.uri, pin_source, vendor and custom need kms.type pkcs11")
		}
		return nil
	case "pkcs11":
	default:
		return fmt.Errorf("config: kms.type %q: want soft or pkcs11", k.Type)
	}
	if !strings.HasPrefix(k.URI, "pkcs11:") {
		return errors.New("config: kms.uri must be a pkcs11: URI")
	}
	u, err := pkcs11uri.Parse(k.URI)
	if err != nil {
		return fmt.Errorf("config: kms.uri: %w", err)
	}
	switch {
	case u.PINValue != "":
		return ErrPINInConfig
	case u.Token == "":
		return errors.New("config: kms.uri needs token=<label>")
	case u.ModulePath == "":
		return errors.New("config: kms.uri needs module-path=<PKCS#11 library>")
	case u.Object != "" || len(u.ID) > 0 || u.Type != "":
		return errors.New("config: kms.uri must name a token, not an object (drop object=, id= and type=)")
	case k.PoolSize < 0:
		return fmt.Errorf("config: kms.pool_size %d is negative", k.PoolSize)
	case k.AcquireTimeout.Duration < 0:
		return errors.New("config: kms.acquire_timeout is negative")
	case k.PlaintextTTL != nil && k.PlaintextTTL.Duration < 0:
		return errors.New("config: kms.plaintext_ttl is negative")
	case k.Custom != nil && k.Vendor != "custom":
		return errors.New(`config: kms.custom is set but kms.vendor is not "custom"`)
	case k.Vendor == "custom" && k.Custom == nil:
		return errors.New(`config: kms.vendor "custom" needs kms.custom`)
	}
	if k.Custom != nil {
		switch k.Custom.Output {
		case "raw", "der", "auto":
		default:
			return fmt.Errorf("config: kms.custom.output %q: want raw, der or auto", k.Custom.Output)
		}
		if _, err := hex.DecodeString(k.Custom.ECParams); err != nil {
			return fmt.Errorf("config: kms.custom.ec_params: %w", err)
		}
	}
	_, err = k.PINFile()
	return err
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
	if err := c.KMS.validate(); err != nil {
		return err
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
