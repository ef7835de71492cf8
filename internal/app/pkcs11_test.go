package app_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gmtrust/gmtrust/hsm/pkcs11"
	"github.com/gmtrust/gmtrust/hsm/pkcs11uri"
	"github.com/gmtrust/gmtrust/internal/app"
	"github.com/gmtrust/gmtrust/internal/config"
	"github.com/gmtrust/gmtrust/internal/testutil"
)

const softhsmModule = "/usr/lib/softhsm/libsofthsm2.so"

func TestPKCS11Config(t *testing.T) {
	const base = "pkcs11:token=gmtrust?module-path=" + softhsmModule
	ttl := func(d time.Duration) *config.Duration { return &config.Duration{Duration: d} }
	for _, tc := range []struct {
		name    string
		kms     config.KMS
		want    pkcs11.Config
		wantErr string
	}{
		{
			name: "pin-source in the URI, defaults",
			kms:  config.KMS{Type: "pkcs11", URI: base + "&pin-source=file:/etc/pin"},
			want: pkcs11.Config{URI: base + "&pin-source=file:/etc/pin", PlaintextTTL: pkcs11.DefaultPlaintextTTL},
		},
		{
			name: "pin_source joins the URI; explicit zero TTL stays zero",
			kms: config.KMS{Type: "pkcs11", URI: base, PINSource: "/run/pin", PoolSize: 4,
				AcquireTimeout: config.Duration{Duration: time.Second}, KEKLabel: "k", PlaintextTTL: ttl(0), Vendor: "tass"},
			want: pkcs11.Config{URI: base + "&pin-source=file:/run/pin", PoolSize: 4, AcquireTimeout: time.Second,
				KEKLabel: "k", PlaintextTTL: 0, Vendor: "tass"},
		},
		{
			name: "custom vendor",
			kms: config.KMS{Type: "pkcs11", URI: base + "&pin-source=file:/p", Vendor: "custom", PlaintextTTL: ttl(time.Minute),
				Custom: &config.VendorSM2{KeyType: 0x80000004, KeyGenMechanism: 0x80008001, SignMechanism: 0x80008100, HashesZA: true, Output: "der", ECParams: "0601ff"}},
			want: pkcs11.Config{URI: base + "&pin-source=file:/p", Vendor: "custom", PlaintextTTL: time.Minute,
				Custom: &pkcs11.VendorSpec{Name: "custom", KeyType: 0x80000004, KeyGenMechanism: 0x80008001, SignMechanism: 0x80008100,
					HashesZA: true, Output: pkcs11.EncodingDER, ECParams: []byte{6, 1, 0xff}}},
		},
		{name: "soft", kms: config.KMS{Type: "soft"}, wantErr: "not pkcs11"},
		{name: "PIN in the URI", kms: config.KMS{Type: "pkcs11", URI: base + "&pin-value=1234"}, wantErr: "pin-value"},
		{name: "no PIN", kms: config.KMS{Type: "pkcs11", URI: base}, wantErr: "PIN file"},
		{name: "bad URI", kms: config.KMS{Type: "pkcs11", URI: "pkcs11:token=a;token=b"}, wantErr: "kms.uri"},
		{name: "bad output", kms: config.KMS{Type: "pkcs11", URI: base + "&pin-source=file:/p", Vendor: "custom",
			Custom: &config.VendorSM2{Output: "b64"}}, wantErr: "output"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := app.PKCS11Config(tc.kms)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// Compare URIs parsed: attribute order is not significant.
			gu, err1 := pkcs11uri.Parse(got.URI)
			wu, err2 := pkcs11uri.Parse(tc.want.URI)
			if err1 != nil || err2 != nil || !reflect.DeepEqual(gu, wu) {
				t.Errorf("URI = %s, want %s (%v %v)", got.URI, tc.want.URI, err1, err2)
			}
			got.URI, tc.want.URI = "", ""
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Config = %+v\nwant     %+v", got, tc.want)
			}
		})
	}
}

// softHSM is a throwaway SoftHSM2 token store: SOFTHSM2_CONF points at it
// for the rest of the test, so tests using it must not run in parallel.
type softHSM struct {
	t      testing.TB
	dir    string
	tokens string
}

func newSoftHSM(t testing.TB) *softHSM {
	t.Helper()
	_, err := exec.LookPath("softhsm2-util")
	_, serr := os.Stat(softhsmModule)
	testutil.Need(t, err == nil && serr == nil, "SoftHSM2 (apt-get install softhsm2)")
	dir := t.TempDir()
	s := &softHSM{t: t, dir: dir, tokens: filepath.Join(dir, "tokens")}
	if err := os.Mkdir(s.tokens, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+s.tokens+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	return s
}

// token initialises a token and returns its kms.uri, with the PIN in a
// file next to the store.
func (s *softHSM) token(label, pin string) string {
	s.t.Helper()
	testutil.Run(s.t, "softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", "so-"+pin)
	pinFile := filepath.Join(s.dir, label+".pin")
	if err := os.WriteFile(pinFile, []byte(pin+"\n"), 0o600); err != nil {
		s.t.Fatal(err)
	}
	u := pkcs11uri.URI{Token: label, ModulePath: softhsmModule, PINSource: "file:" + pinFile}
	return u.String()
}

// TestOpenPKCS11Errors checks that the failures an operator meets at
// start-up keep their cause for errors.Is and say what to fix.
func TestOpenPKCS11Errors(t *testing.T) {
	sh := newSoftHSM(t)
	uri := sh.token("app-test", "app-pin-1")
	ctx := context.Background()
	open := func(uri string) error {
		m, err := app.OpenPKCS11(ctx, &config.Config{KMS: config.KMS{Type: "pkcs11", URI: uri}})
		if err == nil {
			m.Close()
		}
		return err
	}
	if err := open(uri); err != nil {
		t.Fatalf("right PIN: %v", err)
	}
	pinFile := filepath.Join(sh.dir, "app-test.pin")
	if err := os.WriteFile(pinFile, []byte("wrong-pin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := open(uri)
	if !errors.Is(err, pkcs11.ErrPINIncorrect) || !strings.Contains(err.Error(), pinFile) || strings.Contains(err.Error(), "wrong-pin") {
		t.Errorf("wrong PIN: %v; want ErrPINIncorrect naming %s and not the PIN", err, pinFile)
	}
	missing := pkcs11uri.URI{Token: "no-such-token", ModulePath: softhsmModule, PINSource: "file:" + pinFile}
	if err := open(missing.String()); !errors.Is(err, pkcs11.ErrTokenUnavailable) || !strings.Contains(err.Error(), "not present") {
		t.Errorf("missing token: %v; want ErrTokenUnavailable saying it is not present", err)
	}
}
