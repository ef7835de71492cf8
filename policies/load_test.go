package policies

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

func TestDefaultProfiles(t *testing.T) {
	set := defaultSet(t)
	want := []string{"audit-signer", "ocsp-signer", "seal-maker", "seal-signer", "server-tls", "staff-enc", "staff-sign"}
	if got := set.Names(); !slices.Equal(got, want) {
		t.Fatalf("Names() = %v, want %v", got, want)
	}
	// Limits the brief sets for each shipped profile.
	limits := map[string]struct{ def, max time.Duration }{
		"staff-sign":   {365 * 24 * time.Hour, 731 * 24 * time.Hour},
		"staff-enc":    {365 * 24 * time.Hour, 731 * 24 * time.Hour},
		"server-tls":   {365 * 24 * time.Hour, 398 * 24 * time.Hour},
		"seal-signer":  {1095 * 24 * time.Hour, 1827 * 24 * time.Hour},
		"seal-maker":   {1095 * 24 * time.Hour, 1827 * 24 * time.Hour},
		"ocsp-signer":  {7 * 24 * time.Hour, 30 * 24 * time.Hour},
		"audit-signer": {365 * 24 * time.Hour, 1095 * 24 * time.Hour},
	}
	for _, name := range want {
		p, err := set.Get(name)
		if err != nil {
			t.Fatal(err)
		}
		if p.Name != name || p.Description == "" {
			t.Errorf("%s: name %q, description %q", name, p.Name, p.Description)
		}
		if err := p.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		l := limits[name]
		if time.Duration(p.DefaultValidity) != l.def || time.Duration(p.MaxValidity) != l.max {
			t.Errorf("%s: validity default %s max %s, want %s %s", name, p.DefaultValidity, p.MaxValidity, Duration(l.def), Duration(l.max))
		}
	}
}

func TestGet(t *testing.T) {
	set := defaultSet(t)
	_, err := set.Get("no-such")
	if !errors.Is(err, ErrUnknownProfile) || !strings.Contains(err.Error(), `"no-such"`) {
		t.Fatalf("Get(no-such) error = %v", err)
	}
	var nilSet *Set
	if _, err := nilSet.Get("staff-sign"); !errors.Is(err, ErrUnknownProfile) {
		t.Fatalf("nil Set Get error = %v", err)
	}

	// The Set hands out copies: changing one must not change the Set.
	p, _ := set.Get("staff-sign")
	p.MaxValidity = Duration(100 * 365 * 24 * time.Hour)
	p.KeyUsage[0] = "keyAgreement"
	p.Keys[1].Curves[0] = "P-224"
	p.Subject.Allowed = append(p.Subject.Allowed[:0], "title")
	q, _ := set.Get("staff-sign")
	if q.MaxValidity == p.MaxValidity || q.KeyUsage[0] == "keyAgreement" || q.Keys[1].Curves[0] == "P-224" || q.Subject.Allowed[0] == "title" {
		t.Fatalf("modifying a profile from Get changed the Set: %+v", q)
	}
}

// validYAML is a complete profile; bad cases below change one thing.
const validYAML = `# test profile
name: test
description: test profile
key_usage: [digitalSignature, keyEncipherment]
ext_key_usage: [clientAuth]
default_validity: 30d
max_validity: 8760h
keys:
  - algorithm: sm2
  - algorithm: ecdsa
    curves: [P-256]
  - algorithm: rsa
    min_bits: 3072
subject:
  required: [CN]
  allowed: [O]
sans:
  allowed: [dns]
  max_count: 3
same_department: true
`

func TestLoad(t *testing.T) {
	set, err := Load(fstest.MapFS{
		"test.yaml":       {Data: []byte(validYAML)},
		"README.md":       {Data: []byte("not a profile")},
		"sub/other.yaml":  {Data: []byte("garbage: [")},
		"test2.yml":       {Data: []byte(strings.Replace(validYAML, "name: test", "name: test2", 1))},
		"notes.yaml.orig": {Data: []byte("garbage: [")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := set.Names(); !slices.Equal(got, []string{"test", "test2"}) {
		t.Fatalf("Names() = %v", got)
	}
	p, _ := set.Get("test")
	if time.Duration(p.DefaultValidity) != 30*24*time.Hour || time.Duration(p.MaxValidity) != 365*24*time.Hour {
		t.Fatalf("validity %s/%s", p.DefaultValidity, p.MaxValidity)
	}
	if p.Keys[2].MinBits != 3072 || !p.SameDepartment || p.SANs.MaxCount != 3 {
		t.Fatalf("fields not decoded: %+v", p)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name    string
		file    string // file name; "test.yaml" if empty
		old     string // replaced in validYAML...
		new     string // ...by this
		field   string // want FieldError.Field
		message string // want in the error text
	}{
		{name: "unknown key usage", old: "keyEncipherment]", new: "keyCertSign]", field: "key_usage[1]", message: `unknown key usage "keyCertSign"`},
		{name: "duplicate key usage", old: "keyEncipherment]", new: "digitalSignature]", field: "key_usage[1]", message: "listed twice"},
		{name: "no key usage", old: "key_usage: [digitalSignature, keyEncipherment]", new: "key_usage: []", field: "key_usage", message: "missing"},
		{name: "unknown EKU", old: "[clientAuth]", new: "[clientAuth, anyExtendedKeyUsage]", field: "ext_key_usage[1]", message: `unknown extended key usage "anyExtendedKeyUsage"`},
		{name: "unknown attribute", old: "allowed: [O]", new: "allowed: [O, favouriteColour]", field: "subject.allowed[1]", message: `unknown attribute "favouriteColour"`},
		{name: "unknown required attribute", old: "required: [CN]", new: "required: [cn]", field: "subject.required[0]", message: `unknown attribute "cn"`},
		{name: "unknown SAN type", old: "allowed: [dns]", new: "allowed: [dns, x400]", field: "sans.allowed[1]", message: `unknown SAN type "x400"`},
		{name: "unknown algorithm", old: "algorithm: sm2", new: "algorithm: dsa", field: "keys[0].algorithm", message: `unknown algorithm "dsa"`},
		{name: "duplicate algorithm", old: "algorithm: rsa", new: "algorithm: sm2", field: "keys[2].algorithm", message: "listed twice"},
		{name: "no keys", old: "keys:\n  - algorithm: sm2\n  - algorithm: ecdsa\n    curves: [P-256]\n  - algorithm: rsa\n    min_bits: 3072\n", new: "", field: "keys", message: "missing"},
		{name: "weak RSA", old: "min_bits: 3072", new: "min_bits: 1024", field: "keys[2].min_bits", message: "at least 2048"},
		{name: "RSA without min_bits", old: "    min_bits: 3072\n", new: "", field: "keys[2].min_bits", message: "at least 2048, got 0"},
		{name: "unsupported curve", old: "[P-256]", new: "[P-256, P-521]", field: "keys[1].curves[1]", message: `unsupported curve "P-521"`},
		{name: "ecdsa without curves", old: "    curves: [P-256]\n", new: "", field: "keys[1].curves", message: "missing"},
		{name: "curves on sm2", old: "algorithm: sm2", new: "algorithm: sm2\n    curves: [P-256]", field: "keys[0].curves", message: "not allowed for sm2"},
		{name: "nothing left for ecdsa", old: "[digitalSignature, keyEncipherment]", new: "[keyEncipherment]", field: "keys[1].algorithm", message: "nothing for ecdsa"},
		{name: "missing name", old: "name: test\n", new: "", field: "name", message: "missing"},
		{name: "bad name", old: "name: test", new: "name: Test", file: "Test.yaml", field: "name", message: "lower-case"},
		{name: "name not matching file", old: "name: test", new: "name: other", field: "name", message: `"other" does not match the file name (want "test")`},
		{name: "max below default", old: "max_validity: 8760h", new: "max_validity: 29d", field: "max_validity", message: "shorter than default_validity 30d"},
		{name: "zero default validity", old: "default_validity: 30d", new: "default_validity: 0d", field: "default_validity", message: "must be positive"},
		{name: "missing max validity", old: "max_validity: 8760h\n", new: "", field: "max_validity", message: "must be positive"},
		{name: "bad duration", old: "max_validity: 8760h", new: "max_validity: 2y", message: `line 7: invalid duration "2y"`},
		{name: "duration not a string", old: "max_validity: 8760h", new: "max_validity: [1d]", message: "line 7: duration must be a string"},
		{name: "unknown field", old: "same_department: true", new: "same_departement: true", message: "field same_departement not found"},
		{name: "unknown nested field", old: "max_count: 3", new: "max_count: 3\n  wildcard: true", message: "field wildcard not found"},
		{name: "wrong type", old: "same_department: true", new: "same_department: [yes]", message: "cannot unmarshal"},
		{name: "syntax error", old: "allowed: [O]", new: "allowed: [O", message: "yaml:"},
		{name: "two documents", old: "same_department: true", new: "same_department: true\n---\nname: x", message: "more than one YAML document"},
		{name: "empty file", old: validYAML, new: "# nothing here\n", message: "empty file"},
		{name: "ocsp_nocheck without OCSPSigning", old: "same_department: true", new: "ocsp_nocheck: true", field: "ocsp_nocheck", message: "requires ext_key_usage OCSPSigning"},
		{name: "required SANs but none allowed", old: "allowed: [dns]", new: "allowed: []\n  required: true", field: "sans.required", message: "no SAN type"},
		{name: "negative max_count", old: "max_count: 3", new: "max_count: -1", field: "sans.max_count", message: "negative"},
		{name: "wildcard without dns", old: "allowed: [dns]", new: "allowed: [email]\n  allow_wildcard: true", field: "sans.allow_wildcard", message: "dns names are not allowed"},
		{name: "common_name_in_sans without dns or ip", old: "allowed: [O]\nsans:\n  allowed: [dns]", new: "allowed: [O]\n  common_name_in_sans: true\nsans:\n  allowed: [email]", field: "subject.common_name_in_sans", message: "neither dns nor ip"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(validYAML, tt.old) {
				t.Fatalf("test bug: %q not in validYAML", tt.old)
			}
			file := tt.file
			if file == "" {
				file = "test.yaml"
			}
			_, err := Load(fstest.MapFS{file: {Data: []byte(strings.Replace(validYAML, tt.old, tt.new, 1))}})
			if err == nil {
				t.Fatal("loaded")
			}
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, ErrInvalidProfile) {
				t.Fatalf("error %v (%T) is not a FieldError", err, err)
			}
			if fe.File != file {
				t.Errorf("File = %q, want %q", fe.File, file)
			}
			if fe.Field != tt.field {
				t.Errorf("Field = %q, want %q (%v)", fe.Field, tt.field, err)
			}
			if !strings.Contains(err.Error(), tt.message) || !strings.Contains(err.Error(), file) {
				t.Errorf("error %q does not name the file and contain %q", err, tt.message)
			}
		})
	}
}

func TestLoadDuplicateName(t *testing.T) {
	_, err := Load(fstest.MapFS{
		"test.yaml": {Data: []byte(validYAML)},
		"test.yml":  {Data: []byte(validYAML)},
	})
	var fe *FieldError
	if !errors.As(err, &fe) || fe.File != "test.yml" || fe.Field != "name" || !strings.Contains(err.Error(), `duplicate profile "test", also defined in test.yaml`) {
		t.Fatalf("error = %v", err)
	}
}

func TestLoadNoProfiles(t *testing.T) {
	_, err := Load(fstest.MapFS{"README.md": {Data: []byte("x")}})
	if !errors.Is(err, ErrInvalidProfile) || !strings.Contains(err.Error(), "no *.yaml profile files") {
		t.Fatalf("error = %v", err)
	}
}

func TestLoadDir(t *testing.T) {
	dir := t.TempDir()
	override := strings.NewReplacer("name: test", "name: staff-sign").Replace(validYAML)
	write := func(name, data string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("staff-sign.yaml", override)
	write("test.yaml", validYAML)

	set, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"audit-signer", "ocsp-signer", "seal-maker", "seal-signer", "server-tls", "staff-enc", "staff-sign", "test"}
	if got := set.Names(); !slices.Equal(got, want) {
		t.Fatalf("Names() = %v, want %v", got, want)
	}
	p, _ := set.Get("staff-sign")
	if p.Description != "test profile" {
		t.Errorf("staff-sign not replaced: %q", p.Description)
	}
	q, _ := set.Get("staff-enc")
	if q.Description != profile(t, "staff-enc").Description {
		t.Errorf("staff-enc changed: %q", q.Description)
	}

	// A bad file is reported with its path on disk.
	write("bad.yaml", strings.Replace(validYAML, "name: test", "name: bad\nfoo: 1", 1))
	_, err = LoadDir(dir)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "bad.yaml")) {
		t.Fatalf("error %v does not name %s", err, filepath.Join(dir, "bad.yaml"))
	}

	for _, d := range []string{"", filepath.Join(dir, "missing"), filepath.Join(dir, "test.yaml")} {
		if _, err := LoadDir(d); err == nil {
			t.Errorf("LoadDir(%q) succeeded", d)
		}
	}
}
