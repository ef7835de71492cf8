//go:build cgo

package pkcs11

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	p11 "github.com/miekg/pkcs11"

	"github.com/gmtrust/gmtrust/hsm"
	"github.com/gmtrust/gmtrust/internal/sigalg"
)

const softhsmModule = "/usr/lib/softhsm/libsofthsm2.so"

// Tokens of the throwaway SoftHSM store made by TestMain.
const (
	tokenMain  = "gmtrust-test"  // most tests
	tokenPIN   = "gmtrust-pin"   // wrong-PIN test: no other Manager may log in to it
	tokenFault = "gmtrust-fault" // its directory is moved away and back
	userPIN    = "1234"
)

var softhsm struct {
	ok        bool
	why       string
	tokensDir string
	tokenDirs map[string]string // label -> directory of that token
}

func TestMain(m *testing.M) {
	dir, err := setupSoftHSM()
	if err != nil {
		softhsm.why = err.Error()
	}
	code := m.Run()
	if dir != "" {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// setupSoftHSM makes a throwaway token store and points SOFTHSM2_CONF at
// it before any test loads the module (C_Initialize reads it).
func setupSoftHSM() (string, error) {
	util, err := exec.LookPath("softhsm2-util")
	if err != nil {
		return "", errors.New("softhsm2-util not installed (apt-get install softhsm2)")
	}
	if _, err := os.Stat(softhsmModule); err != nil {
		return "", fmt.Errorf("SoftHSM module missing: %v", err)
	}
	dir, err := os.MkdirTemp("", "gmtrust-softhsm-")
	if err != nil {
		return "", err
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		return dir, err
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n", tokens), 0o600); err != nil {
		return dir, err
	}
	os.Setenv("SOFTHSM2_CONF", conf)
	softhsm.tokensDir = tokens
	softhsm.tokenDirs = make(map[string]string)
	for _, label := range []string{tokenMain, tokenPIN, tokenFault} {
		before, _ := os.ReadDir(tokens)
		out, err := exec.Command(util, "--init-token", "--free", "--label", label, "--pin", userPIN, "--so-pin", "5678").CombinedOutput()
		if err != nil {
			return dir, fmt.Errorf("softhsm2-util --init-token %s: %v: %s", label, err, out)
		}
		after, _ := os.ReadDir(tokens)
		for _, e := range after {
			if !containsEntry(before, e.Name()) {
				softhsm.tokenDirs[label] = filepath.Join(tokens, e.Name())
			}
		}
	}
	softhsm.ok = true
	return dir, nil
}

func containsEntry(es []os.DirEntry, name string) bool {
	for _, e := range es {
		if e.Name() == name {
			return true
		}
	}
	return false
}

func requireSoftHSM(t testing.TB) {
	t.Helper()
	if softhsm.ok {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("SoftHSM2 is required in CI: %s", softhsm.why)
	}
	t.Skipf("SoftHSM2 unavailable: %s", softhsm.why)
}

func tokenURI(label, pin string) string {
	return fmt.Sprintf("pkcs11:token=%s?module-path=%s&pin-value=%s", label, softhsmModule, pin)
}

func openTest(t testing.TB, cfg Config) *Manager {
	t.Helper()
	requireSoftHSM(t)
	if cfg.URI == "" {
		cfg.URI = tokenURI(tokenMain, userPIN)
	}
	m, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// uniqueLabel keeps labels distinct across tests sharing one token.
func uniqueLabel(t testing.TB, prefix string) string {
	var b [4]byte
	rand.Read(b[:])
	return fmt.Sprintf("%s-%x", prefix, b)
}

func TestCreateAndSign(t *testing.T) {
	m := openTest(t, Config{PlaintextTTL: DefaultPlaintextTTL})
	ctx := context.Background()
	for _, alg := range []hsm.Algorithm{hsm.ECDSAP256, hsm.ECDSAP384, hsm.RSA2048, hsm.SM2} {
		t.Run(string(alg), func(t *testing.T) {
			label := uniqueLabel(t, string(alg))
			ref, pub, err := m.CreateKey(ctx, label, alg)
			if err != nil {
				t.Fatalf("CreateKey: %v", err)
			}
			wantType := "type=private"
			if alg == hsm.SM2 {
				wantType = "type=data"
			}
			if !strings.HasPrefix(ref, "pkcs11:token="+tokenMain+";object="+label+";"+wantType+"?module-path=") {
				t.Errorf("ref = %q", ref)
			}
			if strings.Contains(ref, userPIN) {
				t.Errorf("ref %q carries the PIN", ref)
			}
			signer, err := m.Signer(ctx, ref)
			if err != nil {
				t.Fatalf("Signer: %v", err)
			}
			if !pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(signer.Public()) {
				t.Fatal("Signer().Public() differs from the key CreateKey returned")
			}
			msg := []byte("gmtrust " + string(alg))
			sig, a, err := sigalg.Sign(signer, msg)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			if err := sigalg.Verify(pub, a.OID, msg, sig); err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if err := sigalg.Verify(pub, a.OID, append(msg, '!'), sig); err == nil {
				t.Fatal("signature verifies over another message")
			}
			certifySelf(t, signer)

			if _, _, err := m.CreateKey(ctx, label, alg); !errors.Is(err, hsm.ErrKeyExists) {
				t.Errorf("second CreateKey(%q): %v, want ErrKeyExists", label, err)
			}
		})
	}
}

// certifySelf makes and checks a self-signed smx509 certificate with
// signer, proving it works as a crypto.Signer for X.509.
func certifySelf(t *testing.T, signer crypto.Signer) {
	t.Helper()
	tmpl := &smx509.Certificate{
		SerialNumber:          big.NewInt(7),
		Subject:               pkix.Name{CommonName: "gmtrust pkcs11 test"},
		NotBefore:             time.Unix(1700000000, 0),
		NotAfter:              time.Unix(1900000000, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              smx509.KeyUsageCertSign,
	}
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, tmpl, signer.Public(), signer)
	if err != nil {
		t.Fatalf("CreateCertificate: %v", err)
	}
	cert, err := smx509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("ParseCertificate: %v", err)
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		t.Fatalf("certificate signature: %v", err)
	}
}

func TestRSAModes(t *testing.T) {
	m := openTest(t, Config{})
	ctx := context.Background()
	ref, pubKey, err := m.CreateKey(ctx, uniqueLabel(t, "rsa-modes"), hsm.RSA2048)
	if err != nil {
		t.Fatal(err)
	}
	pub := pubKey.(*rsa.PublicKey)
	signer, err := m.Signer(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	d256 := sha256.Sum256([]byte("m"))
	d384 := sha512.Sum384([]byte("m"))
	d512 := sha512.Sum512([]byte("m"))
	for _, tc := range []struct {
		name   string
		digest []byte
		opts   crypto.SignerOpts
	}{
		{"pkcs1v15 SHA-256", d256[:], crypto.SHA256},
		{"pkcs1v15 SHA-384", d384[:], crypto.SHA384},
		{"pkcs1v15 SHA-512", d512[:], crypto.SHA512},
		{"pss auto SHA-256", d256[:], &rsa.PSSOptions{Hash: crypto.SHA256}},
		{"pss equals-hash SHA-256", d256[:], &rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: rsa.PSSSaltLengthEqualsHash}},
		{"pss 20-byte salt SHA-384", d384[:], &rsa.PSSOptions{Hash: crypto.SHA384, SaltLength: 20}},
		{"pss SHA-512", d512[:], &rsa.PSSOptions{Hash: crypto.SHA512}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sig, err := signer.Sign(rand.Reader, tc.digest, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if pss, ok := tc.opts.(*rsa.PSSOptions); ok {
				// Verify with the exact salt length too, which proves the
				// length we asked the token for.
				want, _ := pssSaltLength(pss, pub.N.BitLen())
				if err := rsa.VerifyPSS(pub, pss.Hash, tc.digest, sig, &rsa.PSSOptions{SaltLength: want}); err != nil {
					t.Fatalf("VerifyPSS: %v", err)
				}
				return
			}
			if err := rsa.VerifyPKCS1v15(pub, tc.opts.HashFunc(), tc.digest, sig); err != nil {
				t.Fatalf("VerifyPKCS1v15: %v", err)
			}
		})
	}
	// Bad requests fail cleanly, before the token.
	for name, call := range map[string]func() ([]byte, error){
		"no hash":      func() ([]byte, error) { return signer.Sign(rand.Reader, d256[:], crypto.Hash(0)) },
		"wrong length": func() ([]byte, error) { return signer.Sign(rand.Reader, d256[:20], crypto.SHA256) },
		"SHA-1":        func() ([]byte, error) { return signer.Sign(rand.Reader, make([]byte, 20), crypto.SHA1) },
		"pss no hash":  func() ([]byte, error) { return signer.Sign(rand.Reader, d256[:], &rsa.PSSOptions{}) },
	} {
		if sig, err := call(); err == nil {
			t.Errorf("%s: signed %x, want error", name, sig)
		}
	}
}

func TestECDSADigests(t *testing.T) {
	m := openTest(t, Config{})
	ctx := context.Background()
	ref, pubKey, err := m.CreateKey(ctx, uniqueLabel(t, "ec-digests"), hsm.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	pub := pubKey.(*ecdsa.PublicKey)
	signer, err := m.Signer(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	// A SHA-384 digest on P-256 is truncated as ECDSA requires; Go's
	// verifier truncates the same way.
	d := sha512.Sum384([]byte("m"))
	sig, err := signer.Sign(nil, d[:], crypto.SHA384)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(pub, d[:], sig) {
		t.Error("P-256 signature over a SHA-384 digest does not verify")
	}
	for name, call := range map[string]func() ([]byte, error){
		"length mismatch": func() ([]byte, error) { return signer.Sign(nil, d[:32], crypto.SHA384) },
		"empty":           func() ([]byte, error) { return signer.Sign(nil, nil, crypto.Hash(0)) },
		"SM2 options":     func() ([]byte, error) { return signer.Sign(nil, []byte("m"), sm2.DefaultSM2SignerOpts) },
	} {
		if sig, err := call(); err == nil {
			t.Errorf("%s: signed %x, want error", name, sig)
		}
	}
}

// TestKeyAttributes checks the token-side protection of created keys.
func TestKeyAttributes(t *testing.T) {
	m := openTest(t, Config{})
	ctx := context.Background()
	label := uniqueLabel(t, "attrs")
	if _, _, err := m.CreateKey(ctx, label, hsm.ECDSAP256); err != nil {
		t.Fatal(err)
	}
	sm2Label := uniqueLabel(t, "attrs-sm2")
	if _, _, err := m.CreateKey(ctx, sm2Label, hsm.SM2); err != nil {
		t.Fatal(err)
	}
	err := m.do(ctx, func(c *p11.Ctx, s *session) error {
		hs, err := findObjects(c, s, []*p11.Attribute{p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PRIVATE_KEY), p11.NewAttribute(p11.CKA_LABEL, label)}, 0)
		if err != nil || len(hs) != 1 {
			return fmt.Errorf("private key: %d found, %v", len(hs), err)
		}
		a, err := getAttrs(c, s, hs[0], p11.CKA_TOKEN, p11.CKA_SENSITIVE, p11.CKA_EXTRACTABLE, p11.CKA_SIGN, p11.CKA_ID)
		if err != nil {
			return err
		}
		if !attrBool(a[p11.CKA_TOKEN]) || !attrBool(a[p11.CKA_SENSITIVE]) || attrBool(a[p11.CKA_EXTRACTABLE]) || !attrBool(a[p11.CKA_SIGN]) || len(a[p11.CKA_ID]) != 16 {
			return fmt.Errorf("private key attributes %v", a)
		}
		if _, err := getAttrs(c, s, hs[0], p11.CKA_VALUE); err == nil {
			return errors.New("private key value is readable")
		}
		kek, err := m.kek.handle(c, s)
		if err != nil {
			return err
		}
		a, err = getAttrs(c, s, kek, p11.CKA_TOKEN, p11.CKA_SENSITIVE, p11.CKA_EXTRACTABLE, p11.CKA_VALUE_LEN)
		if err != nil {
			return err
		}
		if !attrBool(a[p11.CKA_TOKEN]) || !attrBool(a[p11.CKA_SENSITIVE]) || attrBool(a[p11.CKA_EXTRACTABLE]) || attrUint(a[p11.CKA_VALUE_LEN]) != 32 {
			return fmt.Errorf("KEK attributes %v", a)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The data object holds no plaintext scalar.
	signer, err := m.Signer(ctx, m.ref(sm2Label, "data"))
	if err != nil {
		t.Fatal(err)
	}
	k := signer.(*kekSigner).k
	priv, err := k.unwrap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	scalar := priv.D.FillBytes(make([]byte, 32))
	if bytes.Contains(k.value, scalar) {
		t.Error("the CKO_DATA value contains the SM2 private scalar")
	}
}

func TestListAndSelfTest(t *testing.T) {
	m := openTest(t, Config{})
	ctx := context.Background()
	want := map[string]hsm.Algorithm{}
	for _, alg := range []hsm.Algorithm{hsm.ECDSAP256, hsm.SM2} {
		label := uniqueLabel(t, "list-"+string(alg))
		if _, _, err := m.CreateKey(ctx, label, alg); err != nil {
			t.Fatal(err)
		}
		want[label] = alg
	}
	keys, err := m.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if alg, ok := want[k.Label]; ok {
			if k.Algorithm != alg {
				t.Errorf("%s: algorithm %q, want %q", k.Label, k.Algorithm, alg)
			}
			rate, err := m.SelfTest(ctx, k.Ref, 50*time.Millisecond)
			if err != nil || rate <= 0 {
				t.Errorf("SelfTest(%s) = %v, %v", k.Ref, rate, err)
			}
			delete(want, k.Label)
		}
		if k.Label == DefaultKEKLabel {
			t.Error("ListKeys lists the KEK")
		}
	}
	if len(want) > 0 {
		t.Errorf("ListKeys missed %v", want)
	}

	tokens, err := ListTokens(ctx, softhsmModule)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, tok := range tokens {
		if tok.Label == tokenMain {
			found = tok.Initialized && tok.LoginRequired && strings.HasPrefix(tok.URI, "pkcs11:token="+tokenMain+";")
		}
	}
	if !found {
		t.Errorf("ListTokens = %+v, want %s", tokens, tokenMain)
	}
}

func TestOpenErrors(t *testing.T) {
	requireSoftHSM(t)
	dir := t.TempDir()
	pinFile := filepath.Join(dir, "pin")
	os.WriteFile(pinFile, []byte(userPIN+"\n"), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	tests := []struct {
		name string
		cfg  Config
		is   error
		msg  string
	}{
		{"wrong PIN", Config{URI: tokenURI(tokenPIN, "0000")}, ErrPINIncorrect, "refused the PIN"},
		{"no such token", Config{URI: tokenURI("nope", userPIN)}, ErrTokenUnavailable, `no token labelled "nope"`},
		{"not a URI", Config{URI: "/usr/lib/softhsm/libsofthsm2.so"}, nil, "Config.URI"},
		{"no token", Config{URI: "pkcs11:?module-path=" + softhsmModule + "&pin-value=1"}, nil, "needs token"},
		{"no module", Config{URI: "pkcs11:token=a?pin-value=1"}, nil, "needs module-path"},
		{"object URI", Config{URI: "pkcs11:token=a;object=b?module-path=/x&pin-value=1"}, nil, "not an object"},
		{"no PIN", Config{URI: "pkcs11:token=a?module-path=" + softhsmModule}, nil, "pin-source"},
		{"missing PIN file", Config{URI: "pkcs11:token=a?module-path=" + softhsmModule + "&pin-source=file:" + dir + "/none"}, os.ErrNotExist, "pin-source"},
		{"empty PIN file", Config{URI: "pkcs11:token=a?module-path=" + softhsmModule + "&pin-source=file:" + empty}, nil, "is empty"},
		{"unsupported PIN source", Config{URI: "pkcs11:token=a?module-path=" + softhsmModule + "&pin-source=env:PIN"}, nil, "only file:"},
		{"missing module", Config{URI: "pkcs11:token=a?module-path=/nonexistent/lib.so&pin-value=1"}, os.ErrNotExist, "module"},
		{"not a module", Config{URI: "pkcs11:token=a?module-path=" + pinFile + "&pin-value=1"}, nil, "cannot load module"},
		{"unknown vendor", Config{URI: tokenURI(tokenMain, userPIN), Vendor: "acme"}, nil, "unknown vendor"},
		{"negative pool", Config{URI: tokenURI(tokenMain, userPIN), PoolSize: -1}, nil, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Open(context.Background(), tt.cfg)
			if err == nil {
				m.Close()
				t.Fatal("Open succeeded")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v does not wrap %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not mention %q", err, tt.msg)
			}
		})
	}
	// The right PIN from a file works (and after the failed attempts).
	for _, src := range []string{"file:" + pinFile, "file://" + pinFile, pinFile} {
		m, err := Open(context.Background(), Config{URI: "pkcs11:token=" + tokenPIN + "?module-path=" + softhsmModule + "&pin-source=" + src})
		if err != nil {
			t.Fatalf("pin-source %s: %v", src, err)
		}
		m.Close()
	}
	modules.Lock()
	n := len(modules.byPath)
	modules.Unlock()
	if n != 0 {
		t.Errorf("%d modules still loaded after every Manager closed", n)
	}
}

func TestSignerRefs(t *testing.T) {
	m := openTest(t, Config{})
	ctx := context.Background()
	label := uniqueLabel(t, "refs")
	ref, _, err := m.CreateKey(ctx, label, hsm.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	// Equivalent spellings of the reference work.
	for _, r := range []string{ref, "pkcs11:object=" + label, "pkcs11:token=" + tokenMain + ";object=" + label + ";type=private"} {
		if _, err := m.Signer(ctx, r); err != nil {
			t.Errorf("Signer(%q): %v", r, err)
		}
	}
	tests := []struct {
		ref string
		is  error
	}{
		{"pkcs11:object=nope", hsm.ErrKeyNotFound},
		{"pkcs11:object=nope;type=private", hsm.ErrKeyNotFound},
		{"pkcs11:object=nope;type=data", hsm.ErrKeyNotFound},
		{"pkcs11:object=" + label + ";type=data", hsm.ErrKeyNotFound},
		{"pkcs11:object=" + label + ";type=cert", hsm.ErrKeyNotFound},
		{"pkcs11:token=other;object=" + label, hsm.ErrKeyNotFound},
		{"pkcs11:object=" + label + "?module-path=/usr/lib/other.so", hsm.ErrKeyNotFound},
		{"pkcs11:token=" + tokenMain, nil},
		{"not a uri", nil},
	}
	for _, tt := range tests {
		s, err := m.Signer(ctx, tt.ref)
		if err == nil {
			t.Errorf("Signer(%q) = %v, want error", tt.ref, s)
			continue
		}
		if tt.is != nil && !errors.Is(err, tt.is) {
			t.Errorf("Signer(%q): %v, want %v", tt.ref, err, tt.is)
		}
	}
	if _, _, err := m.CreateKey(ctx, "", hsm.ECDSAP256); err == nil {
		t.Error("CreateKey with an empty label succeeded")
	}
	if _, _, err := m.CreateKey(ctx, "x", "dsa-1024"); err == nil {
		t.Error("CreateKey with an unknown algorithm succeeded")
	}
	if _, _, err := m.CreateKey(ctx, DefaultKEKLabel, hsm.SM2); !errors.Is(err, hsm.ErrKeyExists) {
		t.Errorf("CreateKey over the KEK label: %v, want ErrKeyExists", err)
	}
}

// signVerify signs msg through s and verifies the result.
func signVerify(s crypto.Signer, msg []byte) error {
	sig, alg, err := sigalg.Sign(s, msg)
	if err != nil {
		return err
	}
	return sigalg.Verify(s.Public(), alg.OID, msg, sig)
}

func TestConcurrentSigning(t *testing.T) {
	m := openTest(t, Config{PoolSize: 4, PlaintextTTL: time.Minute})
	ctx := context.Background()
	var signers []crypto.Signer
	for _, alg := range []hsm.Algorithm{hsm.ECDSAP256, hsm.SM2} {
		ref, _, err := m.CreateKey(ctx, uniqueLabel(t, "conc-"+string(alg)), alg)
		if err != nil {
			t.Fatal(err)
		}
		s, err := m.Signer(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		signers = append(signers, s)
	}
	const workers, perWorker = 32, 40
	deadline := time.Now().Add(3 * time.Second)
	var wg sync.WaitGroup
	var done atomic.Int64
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := signers[w%len(signers)]
			for i := 0; i < perWorker && time.Now().Before(deadline); i++ {
				if err := signVerify(s, fmt.Appendf(nil, "worker %d message %d", w, i)); err != nil {
					errs <- fmt.Errorf("worker %d: %w", w, err)
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if done.Load() < workers {
		t.Errorf("only %d signatures in 3 s", done.Load())
	}
	if n := m.pool.opened.Load(); n > 4 {
		t.Errorf("%d sessions opened for a pool of 4", n)
	}
	t.Logf("%d signatures, %d sessions", done.Load(), m.pool.opened.Load())
}

func TestPoolExhausted(t *testing.T) {
	m := openTest(t, Config{PoolSize: 1, AcquireTimeout: 50 * time.Millisecond})
	ctx := context.Background()
	ref, _, err := m.CreateKey(ctx, uniqueLabel(t, "busy"), hsm.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := m.Signer(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	s, err := m.acquire(ctx) // hold the only session
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256(nil)
	if _, err := signer.Sign(nil, d[:], crypto.SHA256); !errors.Is(err, ErrPoolExhausted) {
		t.Errorf("Sign with the pool exhausted: %v, want ErrPoolExhausted", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := signer.(ContextSigner).SignContext(cctx, nil, d[:], crypto.SHA256); !errors.Is(err, ErrPoolExhausted) || !errors.Is(err, context.Canceled) {
		t.Errorf("SignContext with a cancelled context: %v", err)
	}
	m.release(s)
	if _, err := signer.Sign(nil, d[:], crypto.SHA256); err != nil {
		t.Errorf("Sign after release: %v", err)
	}
}

func TestClose(t *testing.T) {
	m := openTest(t, Config{PlaintextTTL: time.Minute})
	ctx := context.Background()
	ref, _, err := m.CreateKey(ctx, uniqueLabel(t, "close"), hsm.SM2)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := m.Signer(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	k := signer.(*kekSigner).k
	k.mu.RLock()
	priv := k.priv
	k.mu.RUnlock()
	if priv == nil {
		t.Fatal("key not cached with a TTL")
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if priv.D.Sign() != 0 {
		t.Error("Close left the SM2 plaintext in memory")
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := signer.Sign(nil, []byte("m"), sm2.DefaultSM2SignerOpts); !errors.Is(err, ErrClosed) {
		t.Errorf("Sign after Close: %v, want ErrClosed", err)
	}
	if _, err := m.Signer(ctx, ref); !errors.Is(err, ErrClosed) {
		t.Errorf("Signer after Close: %v, want ErrClosed", err)
	}
}

func TestPlaintextTTL(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1800000000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	m := openTest(t, Config{PlaintextTTL: 5 * time.Minute, Now: clock})
	ctx := context.Background()
	ref, _, err := m.CreateKey(ctx, uniqueLabel(t, "ttl"), hsm.SM2)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := m.Signer(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	k := signer.(*kekSigner).k
	for i := range 5 {
		if err := signVerify(signer, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if n := k.decrypts.Load(); n != 1 {
		t.Errorf("%d decryptions within the TTL, want 1", n)
	}
	k.mu.RLock()
	first := k.priv
	k.mu.RUnlock()
	advance(5*time.Minute + time.Second)
	if err := signVerify(signer, []byte("later")); err != nil {
		t.Fatal(err)
	}
	if n := k.decrypts.Load(); n != 2 {
		t.Errorf("%d decryptions after expiry, want 2", n)
	}
	if first.D.Sign() != 0 {
		t.Error("the expired plaintext was not zeroised")
	}
	// A second Signer for the same key shares the cache.
	again, err := m.Signer(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if again.(*kekSigner).k != k || k.decrypts.Load() != 2 {
		t.Error("a second Signer did not share the cached key")
	}

	// TTL 0: every signature decrypts, nothing stays cached.
	m0 := openTest(t, Config{})
	s0, err := m0.Signer(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	k0 := s0.(*kekSigner).k
	base := k0.decrypts.Load()
	for i := range 3 {
		if err := signVerify(s0, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if n := k0.decrypts.Load() - base; n != 3 {
		t.Errorf("TTL 0: %d decryptions for 3 signatures", n)
	}
	if k0.priv != nil {
		t.Error("TTL 0 left a key cached")
	}
}

// replaceData swaps the CKO_DATA object labelled label for one with value
// (the object is not modifiable, as CreateKey makes it).
func replaceData(t *testing.T, m *Manager, label string, change func(value []byte) []byte) {
	t.Helper()
	err := m.do(context.Background(), func(c *p11.Ctx, s *session) error {
		hs, err := findObjects(c, s, []*p11.Attribute{p11.NewAttribute(p11.CKA_CLASS, p11.CKO_DATA), p11.NewAttribute(p11.CKA_LABEL, label)}, 0)
		if err != nil || len(hs) != 1 {
			return fmt.Errorf("find %q: %d, %v", label, len(hs), err)
		}
		a, err := getAttrs(c, s, hs[0], p11.CKA_VALUE)
		if err != nil {
			return err
		}
		value := change(bytes.Clone(a[p11.CKA_VALUE]))
		if err := c.DestroyObject(s.h, hs[0]); err != nil {
			return err
		}
		_, err = c.CreateObject(s.h, []*p11.Attribute{
			p11.NewAttribute(p11.CKA_CLASS, p11.CKO_DATA),
			p11.NewAttribute(p11.CKA_TOKEN, true),
			p11.NewAttribute(p11.CKA_PRIVATE, true),
			p11.NewAttribute(p11.CKA_LABEL, label),
			p11.NewAttribute(p11.CKA_APPLICATION, KEKApplication),
			p11.NewAttribute(p11.CKA_VALUE, value),
		})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestTamperedKEKKey(t *testing.T) {
	m := openTest(t, Config{})
	ctx := context.Background()
	reenvelope := func(change func(e *envelope)) func(v []byte) []byte {
		return func(v []byte) []byte {
			e, _, err := parseEnvelope(v)
			if err != nil {
				t.Fatal(err)
			}
			change(e)
			out, err := e.marshal()
			if err != nil {
				t.Fatal(err)
			}
			return out
		}
	}
	other, _ := sm2.GenerateKey(rand.Reader)
	otherPub, _ := sm2.PublicKeyToECDH(&other.PublicKey)
	tests := []struct {
		name   string
		change func(v []byte) []byte
	}{
		{"flipped ciphertext byte", reenvelope(func(e *envelope) { e.ciphertext[3] ^= 0x40 })},
		{"flipped tag byte", reenvelope(func(e *envelope) { e.ciphertext[len(e.ciphertext)-1] ^= 1 })},
		{"flipped IV byte", reenvelope(func(e *envelope) { e.iv[0] ^= 1 })},
		{"empty IV", reenvelope(func(e *envelope) { e.iv = nil })},
		{"short IV", reenvelope(func(e *envelope) { e.iv = e.iv[:8] })},
		{"other public key", reenvelope(func(e *envelope) { e.publicKey = otherPub.Bytes() })},
		{"other key ID in envelope", reenvelope(func(e *envelope) { e.keyID = bytes.Repeat([]byte{1}, 16) })},
		{"raw byte flip in the value", func(v []byte) []byte { v[len(v)-5] ^= 0x80; return v }},
		{"truncated value", func(v []byte) []byte { return v[:len(v)-1] }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			label := uniqueLabel(t, "tamper")
			ref, _, err := m.CreateKey(ctx, label, hsm.SM2)
			if err != nil {
				t.Fatal(err)
			}
			replaceData(t, m, label, tt.change)
			s, err := m.Signer(ctx, ref)
			if !errors.Is(err, ErrWrappedKeyInvalid) {
				t.Fatalf("Signer over a tampered key = %v, %v; want ErrWrappedKeyInvalid", s, err)
			}
			t.Logf("refused: %v", err)
		})
	}
	// A key moved to another label fails authentication (the label is
	// in the AAD).
	label := uniqueLabel(t, "moved")
	ref, _, err := m.CreateKey(ctx, label, hsm.SM2)
	if err != nil {
		t.Fatal(err)
	}
	s, err := m.Signer(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	var value []byte
	replaceData(t, m, label, func(v []byte) []byte { value = v; return v })
	moved := uniqueLabel(t, "moved-to")
	m.createMu.Lock()
	err = m.do(ctx, func(c *p11.Ctx, ss *session) error {
		_, err := c.CreateObject(ss.h, []*p11.Attribute{
			p11.NewAttribute(p11.CKA_CLASS, p11.CKO_DATA), p11.NewAttribute(p11.CKA_TOKEN, true),
			p11.NewAttribute(p11.CKA_PRIVATE, true), p11.NewAttribute(p11.CKA_LABEL, moved),
			p11.NewAttribute(p11.CKA_APPLICATION, KEKApplication), p11.NewAttribute(p11.CKA_VALUE, value)})
		return err
	})
	m.createMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Signer(ctx, m.ref(moved, "data")); !errors.Is(err, ErrWrappedKeyInvalid) {
		t.Errorf("Signer over a relabelled key: %v, want ErrWrappedKeyInvalid", err)
	}

	// Corruption of the in-memory copy is caught at Sign time, and a short
	// IV never reaches the token.
	k := s.(*kekSigner).k
	k.env.ciphertext[0] ^= 1
	if sig, err := s.Sign(rand.Reader, []byte("m"), sm2.DefaultSM2SignerOpts); !errors.Is(err, ErrWrappedKeyInvalid) {
		t.Errorf("Sign with a corrupted ciphertext = %x, %v; want ErrWrappedKeyInvalid", sig, err)
	}
	k.env.ciphertext[0] ^= 1
	k.env.iv = nil
	if sig, err := s.Sign(rand.Reader, []byte("m"), sm2.DefaultSM2SignerOpts); !errors.Is(err, ErrWrappedKeyInvalid) || !strings.Contains(err.Error(), "IV is 0 bytes") {
		t.Errorf("Sign with an empty IV = %x, %v; want ErrWrappedKeyInvalid", sig, err)
	}
}

// TestFinalizeUnderLoad finalises the module behind the Manager's back
// while goroutines sign; signing must recover without reopening.
func TestFinalizeUnderLoad(t *testing.T) {
	m := openTest(t, Config{PoolSize: 4})
	ctx := context.Background()
	ref, _, err := m.CreateKey(ctx, uniqueLabel(t, "finalize"), hsm.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := m.Signer(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	gen0 := m.mod.gen.Load()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	var errMu sync.Mutex
	var badErrs []error
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				err := signVerify(signer, fmt.Appendf(nil, "%d/%d", w, i))
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, ErrTokenUnavailable):
					failed.Add(1)
				default:
					errMu.Lock()
					badErrs = append(badErrs, err)
					errMu.Unlock()
				}
			}
		}()
	}
	for range 3 {
		time.Sleep(100 * time.Millisecond)
		if err := m.mod.finalizeForTest(); err != nil {
			t.Errorf("C_Finalize: %v", err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	before := ok.Load()
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	for _, err := range badErrs {
		t.Errorf("unclear error under finalisation: %v", err)
	}
	if ok.Load() == before {
		t.Error("no signatures after the last finalisation")
	}
	if m.mod.gen.Load() < gen0+3 {
		t.Errorf("module re-initialised %d times for 3 finalisations", m.mod.gen.Load()-gen0)
	}
	t.Logf("%d signatures, %d failed with ErrTokenUnavailable, %d re-initialisations", ok.Load(), failed.Load(), m.mod.gen.Load()-gen0)
	if err := signVerify(signer, []byte("after")); err != nil {
		t.Errorf("sign after finalisation: %v", err)
	}
}

// TestTokenUnavailable moves the token's directory away: operations must
// fail with ErrTokenUnavailable, and work again once it is back, with the
// same Manager and signers.
func TestTokenUnavailable(t *testing.T) {
	requireSoftHSM(t)
	tokDir := softhsm.tokenDirs[tokenFault]
	if tokDir == "" {
		t.Fatal("fault token directory unknown")
	}
	m := openTest(t, Config{URI: tokenURI(tokenFault, userPIN), PoolSize: 2})
	ctx := context.Background()
	var signers []crypto.Signer
	for _, alg := range []hsm.Algorithm{hsm.ECDSAP256, hsm.SM2} {
		ref, _, err := m.CreateKey(ctx, uniqueLabel(t, "gone-"+string(alg)), alg)
		if err != nil {
			t.Fatal(err)
		}
		s, err := m.Signer(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		signers = append(signers, s)
	}
	// Out of the token directory: SoftHSM scans every subdirectory.
	away := filepath.Join(filepath.Dir(softhsm.tokensDir), "away-"+filepath.Base(tokDir))
	moveBack := func() {
		if _, err := os.Stat(away); err == nil {
			if err := os.Rename(away, tokDir); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Cleanup(moveBack)

	for _, finalise := range []bool{false, true} {
		t.Run(fmt.Sprintf("finalise=%v", finalise), func(t *testing.T) {
			if err := os.Rename(tokDir, away); err != nil {
				t.Fatal(err)
			}
			if finalise {
				m.mod.finalizeForTest()
			}
			for _, s := range signers {
				err := signVerify(s, []byte("while away"))
				if !errors.Is(err, ErrTokenUnavailable) {
					t.Errorf("%T: sign without the token: %v, want ErrTokenUnavailable", s, err)
				}
				t.Logf("%T without the token: %v", s, err)
			}
			if _, err := m.ListKeys(ctx); !errors.Is(err, ErrTokenUnavailable) {
				t.Errorf("ListKeys without the token: %v", err)
			}
			moveBack()
			// The module is rescanned at most once per rescanInterval.
			for _, s := range signers {
				deadline := time.Now().Add(5 * rescanInterval)
				for {
					err := signVerify(s, []byte("back"))
					if err == nil {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("%T: still failing after the token came back: %v", s, err)
					}
					time.Sleep(rescanInterval / 5)
				}
			}
		})
	}
}

// TestVendorPathOnSoftHSM drives the vendor SM2 code path against SoftHSM
// with a deliberately wrong "vendor" (plain ECDSA on the SM2 curve):
// generation and the token call work, and the result is refused because
// it is not an SM2 signature. A wrong vendor table gives an error, never
// a bad signature.
func TestVendorPathOnSoftHSM(t *testing.T) {
	m := openTest(t, Config{Vendor: "custom", Custom: &VendorSpec{
		Name: "softhsm-ecdsa", KeyType: p11.CKK_EC, KeyGenMechanism: p11.CKM_EC_KEY_PAIR_GEN,
		SignMechanism: p11.CKM_ECDSA, Output: EncodingRaw}})
	ctx := context.Background()
	ref, pub, err := m.CreateKey(ctx, uniqueLabel(t, "vendor"), hsm.SM2)
	if err != nil {
		t.Fatal(err)
	}
	if !sm2.IsSM2PublicKey(pub) {
		t.Fatalf("public key %T is not on the SM2 curve", pub)
	}
	signer, err := m.Signer(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := signer.Sign(rand.Reader, []byte("m"), sm2.DefaultSM2SignerOpts)
	if err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("Sign = %x, %v; want a verification error", sig, err)
	}
	if _, _, err := m.CreateKey(ctx, "x", hsm.SM2); err != nil && strings.Contains(err.Error(), "KEK") {
		t.Errorf("vendor mode used the KEK: %v", err)
	}
	keys, err := m.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.Ref == ref && k.Algorithm != hsm.SM2 {
			t.Errorf("ListKeys: %+v, want sm2", k)
		}
	}
}
