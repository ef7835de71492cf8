package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSettings: the ocsp: and seal: sections of config.yaml answer for
// the GMTRUST_OCSP_* and GMTRUST_SEAL_* names, the environment overrides
// them, and a misspelt key is refused at load.
func TestSettings(t *testing.T) {
	dir := t.TempDir()
	yml := `name: test
database: gmtrust.db
kms: {type: soft, keystore_dir: keys, passphrase_file: keystore.pass}
ocsp:
  hashes: sha256,sm3
  cache_entries: 5000
  presign: off
seal:
  esid_prefix: "37000000"
  status_ttl: 2s
`
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"GMTRUST_OCSP_HASHES": "sha1", "GMTRUST_OTHER": "x"}
	getenv := func(k string) string { return env[k] }
	c, err := Load(dir, getenv)
	if err != nil {
		t.Fatal(err)
	}
	get := c.Settings(getenv)
	for _, tt := range []struct{ name, want string }{
		{"GMTRUST_OCSP_HASHES", "sha1"},        // environment wins
		{"GMTRUST_OCSP_CACHE_ENTRIES", "5000"}, // from the file
		{"GMTRUST_OCSP_PRESIGN", "off"},
		{"GMTRUST_OCSP_VALIDITY", ""}, // neither: the default applies
		{"GMTRUST_SEAL_ESID_PREFIX", "37000000"},
		{"GMTRUST_SEAL_STATUS_TTL", "2s"},
		{"GMTRUST_OTHER", "x"}, // other names pass through
	} {
		if got := get(tt.name); got != tt.want {
			t.Errorf("%s = %q, want %q", tt.name, got, tt.want)
		}
	}

	bad := strings.Replace(yml, "cache_entries", "cache_entires", 1)
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir, getenv); err == nil || !strings.Contains(err.Error(), "cache_entires") {
		t.Fatalf("misspelt key: Load = %v", err)
	}
}
