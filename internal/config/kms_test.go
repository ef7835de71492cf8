package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// loadKMS writes a config.yaml whose kms section is kmsYAML and loads it.
func loadKMS(t *testing.T, kmsYAML string) (*Config, error) {
	t.Helper()
	dir := t.TempDir()
	body := "name: test\ndatabase: gmtrust.db\nkms:\n" + kmsYAML
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return Load(dir, func(string) string { return "" })
}

// withSoftDefaults adds the soft keystore settings that Load takes from
// Default whatever the kms type (they are unused by pkcs11).
func withSoftDefaults(k KMS) KMS {
	d := Default().KMS
	k.KeystoreDir, k.PassphraseFile = d.KeystoreDir, d.PassphraseFile
	return k
}

const softhsmURI = "pkcs11:token=gmtrust?module-path=/usr/lib/softhsm/libsofthsm2.so"

func TestKMSValidate(t *testing.T) {
	ttl := func(d time.Duration) *Duration { return &Duration{d} }
	for _, tc := range []struct {
		name    string
		yaml    string
		want    *KMS   // checked when not nil
		pinFile string // checked when not ""
		wantErr string // substring; "" means success
		errIs   error
	}{
		{
			name:    "pin-source in the URI",
			yaml:    "  type: pkcs11\n  uri: " + softhsmURI + "&pin-source=file:/etc/gmtrust/pin\n",
			want:    &KMS{Type: "pkcs11", URI: softhsmURI + "&pin-source=file:/etc/gmtrust/pin"},
			pinFile: "/etc/gmtrust/pin",
		},
		{
			name:    "pin_source field, all tunables",
			yaml:    "  type: pkcs11\n  uri: " + softhsmURI + "\n  pin_source: /run/secrets/pin\n  pool_size: 4\n  acquire_timeout: 3s\n  kek_label: my-kek\n  plaintext_ttl: 0s\n",
			want:    &KMS{Type: "pkcs11", URI: softhsmURI, PINSource: "/run/secrets/pin", PoolSize: 4, AcquireTimeout: Duration{3 * time.Second}, KEKLabel: "my-kek", PlaintextTTL: ttl(0)},
			pinFile: "/run/secrets/pin",
		},
		{
			name:    "file:// form",
			yaml:    "  type: pkcs11\n  uri: " + softhsmURI + "&pin-source=file:///etc/pin\n  plaintext_ttl: 90s\n",
			want:    &KMS{Type: "pkcs11", URI: softhsmURI + "&pin-source=file:///etc/pin", PlaintextTTL: ttl(90 * time.Second)},
			pinFile: "/etc/pin",
		},
		{
			name: "custom vendor in hex",
			yaml: "  type: pkcs11\n  uri: " + softhsmURI + "&pin-source=file:/p\n  vendor: custom\n  custom:\n    key_type: 0x80000004\n    keygen_mechanism: 0x80008001\n    sign_mechanism: 0x80008000\n    hashes_za: true\n    output: der\n    ec_params: 06082a811ccf5501822d\n",
			want: &KMS{Type: "pkcs11", URI: softhsmURI + "&pin-source=file:/p", Vendor: "custom",
				Custom: &VendorSM2{KeyType: 0x80000004, KeyGenMechanism: 0x80008001, SignMechanism: 0x80008000, HashesZA: true, Output: "der", ECParams: "06082a811ccf5501822d"}},
		},
		{name: "PIN in the URI", yaml: "  type: pkcs11\n  uri: " + softhsmURI + "&pin-value=1234\n", errIs: ErrPINInConfig},
		{name: "no PIN source", yaml: "  type: pkcs11\n  uri: " + softhsmURI + "\n", wantErr: "needs a PIN file"},
		{name: "relative PIN file", yaml: "  type: pkcs11\n  uri: " + softhsmURI + "&pin-source=file:pin.txt\n", wantErr: "absolute"},
		{name: "PIN sources disagree", yaml: "  type: pkcs11\n  uri: " + softhsmURI + "&pin-source=file:/a\n  pin_source: /b\n", wantErr: "disagree"},
		{name: "not a pkcs11 URI", yaml: "  type: pkcs11\n  uri: /usr/lib/softhsm/libsofthsm2.so\n", wantErr: "pkcs11: URI"},
		{name: "malformed URI", yaml: "  type: pkcs11\n  uri: pkcs11:token=a;token=b?pin-source=file:/p\n", wantErr: "kms.uri"},
		{name: "no token", yaml: "  type: pkcs11\n  uri: pkcs11:?module-path=/m.so&pin-source=file:/p\n", wantErr: "token="},
		{name: "no module", yaml: "  type: pkcs11\n  uri: pkcs11:token=t?pin-source=file:/p\n", wantErr: "module-path"},
		{name: "an object, not a token", yaml: "  type: pkcs11\n  uri: pkcs11:token=t;object=k?module-path=/m.so&pin-source=file:/p\n", wantErr: "not an object"},
		{name: "negative pool", yaml: "  type: pkcs11\n  uri: " + softhsmURI + "&pin-source=file:/p\n  pool_size: -1\n", wantErr: "pool_size"},
		{name: "negative TTL", yaml: "  type: pkcs11\n  uri: " + softhsmURI + "&pin-source=file:/p\n  plaintext_ttl: -1s\n", wantErr: "plaintext_ttl"},
		{name: "negative timeout", yaml: "  type: pkcs11\n  uri: " + softhsmURI + "&pin-source=file:/p\n  acquire_timeout: -1s\n", wantErr: "acquire_timeout"},
		{name: "custom without vendor custom", yaml: "  type: pkcs11\n  uri: " + softhsmURI + "&pin-source=file:/p\n  vendor: tass\n  custom: {key_type: 1, keygen_mechanism: 2, sign_mechanism: 3, output: raw}\n", wantErr: "kms.custom"},
		{name: "vendor custom without custom", yaml: "  type: pkcs11\n  uri: " + softhsmURI + "&pin-source=file:/p\n  vendor: custom\n", wantErr: "needs kms.custom"},
		{name: "bad custom output", yaml: "  type: pkcs11\n  uri: " + softhsmURI + "&pin-source=file:/p\n  vendor: custom\n  custom: {key_type: 1, keygen_mechanism: 2, sign_mechanism: 3, output: base64}\n", wantErr: "output"},
		{name: "bad custom ec_params", yaml: "  type: pkcs11\n  uri: " + softhsmURI + "&pin-source=file:/p\n  vendor: custom\n  custom: {key_type: 1, keygen_mechanism: 2, sign_mechanism: 3, output: raw, ec_params: xyz}\n", wantErr: "ec_params"},
		{name: "unknown field", yaml: "  type: pkcs11\n  uri: " + softhsmURI + "&pin-source=file:/p\n  pin: 1234\n", wantErr: "pin"},
		{name: "pkcs11 settings on a soft keystore", yaml: "  type: soft\n  uri: " + softhsmURI + "&pin-source=file:/p\n", wantErr: "need kms.type pkcs11"},
		{name: "unknown type", yaml: "  type: tpm\n", wantErr: "want soft or pkcs11"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := loadKMS(t, tc.yaml)
			switch {
			case tc.errIs != nil:
				if !errors.Is(err, tc.errIs) {
					t.Fatalf("Load: %v, want %v", err, tc.errIs)
				}
				return
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Load: %v, want an error containing %q", err, tc.wantErr)
				}
				return
			case err != nil:
				t.Fatalf("Load: %v", err)
			}
			if tc.want != nil {
				want := withSoftDefaults(*tc.want)
				if !reflect.DeepEqual(c.KMS, want) {
					t.Errorf("KMS = %+v\nwant  %+v", c.KMS, want)
				}
			}
			if tc.pinFile != "" {
				got, err := c.KMS.PINFile()
				if err != nil || got != tc.pinFile {
					t.Errorf("PINFile() = %q, %v; want %q", got, err, tc.pinFile)
				}
			}
		})
	}
}

// TestKMSRoundTrip writes a pkcs11 configuration and reads it back: an
// explicit zero plaintext_ttl must survive, since absent means the
// default and zero means decrypt for every signature.
func TestKMSRoundTrip(t *testing.T) {
	for _, ttl := range []*Duration{nil, {0}, {time.Minute}} {
		dir := t.TempDir()
		c := Default()
		c.KMS = KMS{Type: "pkcs11", URI: softhsmURI + "&pin-source=file:/etc/pin", PoolSize: 3,
			AcquireTimeout: Duration{2 * time.Second}, PlaintextTTL: ttl}
		if err := c.Write(dir); err != nil {
			t.Fatal(err)
		}
		got, err := Load(dir, func(string) string { return "" })
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got.KMS, withSoftDefaults(c.KMS)) {
			t.Errorf("round trip of plaintext_ttl %v: got %+v, want %+v", ttl, got.KMS, c.KMS)
		}
	}
}
