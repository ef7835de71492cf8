//go:build cgo

package pkcs11

import (
	"context"
	"crypto"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	p11 "github.com/miekg/pkcs11"

	"github.com/gmtrust/gmtrust/hsm"
	"github.com/gmtrust/gmtrust/hsm/pkcs11uri"
	"github.com/gmtrust/gmtrust/internal/sigalg"
)

// Manager is a hsm.KeyManager backed by one PKCS#11 token. It is safe for
// concurrent use, as are the signers it returns.
type Manager struct {
	mod        *module
	label      string // token label
	serial     string // token serial, "" if not pinned by the URI
	modulePath string // as written in the configuration, for refs
	pinSource  string // for refs; a pin-value never goes into a ref
	pin        string
	vendor     *VendorSpec // nil: SM2 in KEK mode
	ttl        time.Duration
	now        func() time.Time
	timeout    time.Duration

	pool pool

	kekLabel string
	kek      *objRef // nil when KEK mode is unavailable
	kekErr   error   // why KEK mode is unavailable

	createMu sync.Mutex // makes label check + creation atomic in this process

	keysMu  sync.Mutex
	sm2Keys map[string]*kekKey // by label; guarded by keysMu

	closed atomic.Bool
}

var _ hsm.KeyManager = (*Manager)(nil)

// Open loads the module named by cfg.URI (once per process), finds the
// token by label, logs in through a first session (so a wrong PIN fails
// here, with ErrPINIncorrect), and in KEK mode finds or creates the KEK.
func Open(ctx context.Context, cfg Config) (*Manager, error) {
	u, err := pkcs11uri.Parse(cfg.URI)
	if err != nil {
		return nil, fmt.Errorf("pkcs11: Config.URI: %w", err)
	}
	switch {
	case u.Token == "":
		return nil, errors.New("pkcs11: Config.URI needs token=<label>")
	case u.ModulePath == "":
		return nil, errors.New("pkcs11: Config.URI needs module-path=<library>")
	case u.Object != "" || len(u.ID) > 0 || u.Type != "":
		return nil, errors.New("pkcs11: Config.URI must name a token, not an object")
	case cfg.PoolSize < 0:
		return nil, fmt.Errorf("pkcs11: PoolSize %d is negative", cfg.PoolSize)
	case cfg.AcquireTimeout < 0 || cfg.PlaintextTTL < 0:
		return nil, errors.New("pkcs11: AcquireTimeout and PlaintextTTL must not be negative")
	}
	pin := u.PINValue
	if pin == "" {
		if u.PINSource == "" {
			return nil, errors.New("pkcs11: Config.URI needs pin-source=file:<path> or pin-value")
		}
		if pin, err = readPIN(u.PINSource); err != nil {
			return nil, err
		}
	}
	vendor, err := resolveVendor(cfg.Vendor, cfg.Custom)
	if err != nil {
		return nil, err
	}
	mod, err := openModule(u.ModulePath)
	if err != nil {
		return nil, err
	}
	m := &Manager{
		mod:        mod,
		label:      u.Token,
		serial:     u.Serial,
		modulePath: u.ModulePath,
		pinSource:  u.PINSource,
		pin:        pin,
		vendor:     vendor,
		ttl:        cfg.PlaintextTTL,
		now:        cfg.Now,
		timeout:    cfg.AcquireTimeout,
		kekLabel:   cfg.KEKLabel,
		sm2Keys:    make(map[string]*kekKey),
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.timeout == 0 {
		m.timeout = DefaultAcquireTimeout
	}
	if m.kekLabel == "" {
		m.kekLabel = DefaultKEKLabel
	}
	if err := m.start(ctx, cfg.PoolSize); err != nil {
		m.closed.Store(true)
		m.pool.closeIdle(m)
		mod.release()
		return nil, err
	}
	return m, nil
}

// start sizes the pool, logs in through a first session and sets up the
// KEK.
func (m *Manager) start(ctx context.Context, size int) error {
	var info p11.TokenInfo
	var mechs []*p11.Mechanism
	err := m.mod.withCurrent(func(c *p11.Ctx, _ uint64) error {
		slot, err := m.findSlot(c)
		if err != nil {
			return err
		}
		if info, err = c.GetTokenInfo(slot); err != nil {
			return fmt.Errorf("pkcs11: token %q: %w", m.label, err)
		}
		if mechs, err = c.GetMechanismList(slot); err != nil {
			return fmt.Errorf("pkcs11: token %q mechanisms: %w", m.label, err)
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, errTokenMissing) {
			return fmt.Errorf("%w: %v", ErrTokenUnavailable, err)
		}
		return err
	}
	limit := 2*runtime.GOMAXPROCS(0) + 2
	for _, max := range []uint{info.MaxSessionCount, info.MaxRwSessionCount} {
		if max != p11.CK_EFFECTIVELY_INFINITE && max != p11.CK_UNAVAILABLE_INFORMATION && int(max) > 0 {
			if size == 0 && int(max) < limit {
				limit = int(max)
			}
			if size > int(max) {
				size = int(max)
			}
		}
	}
	if size == 0 {
		size = limit
	}
	m.pool.slots = make(chan struct{}, size)

	// Log in now so that a wrong PIN fails Open, not the first signature.
	s, err := m.acquire(ctx)
	if err != nil {
		return err
	}
	m.release(s)

	if m.vendor != nil {
		return nil
	}
	if !hasMechanism(mechs, p11.CKM_AES_GCM) {
		m.kekErr = fmt.Errorf("%w: token %q has no CKM_AES_GCM, so SM2 keys can be neither wrapped (KEK mode) nor made without a vendor mechanism (set Vendor)", ErrUnsupported, m.label)
		return nil
	}
	return m.setupKEK(ctx)
}

func hasMechanism(ms []*p11.Mechanism, want uint) bool {
	for _, mech := range ms {
		if mech.Mechanism == want {
			return true
		}
	}
	return false
}

// readPIN reads a pin-source: file:/path, file:///path or a plain path.
// A trailing newline is not part of the PIN.
func readPIN(src string) (string, error) {
	path := src
	switch {
	case strings.HasPrefix(src, "file://"):
		path = strings.TrimPrefix(src, "file://")
		if !strings.HasPrefix(path, "/") {
			return "", fmt.Errorf("pkcs11: pin-source %q: only local file URIs are supported", src)
		}
	case strings.HasPrefix(src, "file:"):
		path = strings.TrimPrefix(src, "file:")
	case strings.Contains(src, ":") && !filepath.IsAbs(src):
		return "", fmt.Errorf("pkcs11: pin-source %q: only file: sources are supported", src)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("pkcs11: pin-source: %w", err)
	}
	pin := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if pin == "" {
		return "", fmt.Errorf("pkcs11: pin-source %s is empty", path)
	}
	return pin, nil
}

// errTokenMissing means no slot holds a token with our label (and serial).
var errTokenMissing = errors.New("token not found")

func (m *Manager) findSlot(c *p11.Ctx) (uint, error) {
	slots, err := c.GetSlotList(true)
	if err != nil {
		return 0, fmt.Errorf("pkcs11: C_GetSlotList: %w", err)
	}
	var found []uint
	for _, slot := range slots {
		ti, err := c.GetTokenInfo(slot)
		if err != nil {
			continue // a broken or vanished token is not ours to report
		}
		if ti.Label == m.label && (m.serial == "" || ti.SerialNumber == m.serial) {
			found = append(found, slot)
		}
	}
	switch len(found) {
	case 0:
		return 0, fmt.Errorf("%w: no token labelled %q in %s", errTokenMissing, m.label, m.mod.path)
	case 1:
		return found[0], nil
	}
	return 0, fmt.Errorf("pkcs11: %d tokens are labelled %q; add serial= to Config.URI", len(found), m.label)
}

// do runs op on a pooled session. If the session turns out to be broken
// (see sessionBroken) it is discarded and op runs once more on a fresh
// session, re-initialising the module first if it was finalised.
func (m *Manager) do(ctx context.Context, op func(c *p11.Ctx, s *session) error) error {
	var last error
	for attempt := 0; attempt < 2; attempt++ {
		s, err := m.acquire(ctx)
		if err != nil {
			return err
		}
		err = m.mod.with(s.gen, func(c *p11.Ctx) error { return op(c, s) })
		if err == nil {
			m.release(s)
			return nil
		}
		// Errors other than the listed session errors are checked against
		// the token's state: SoftHSM reports a token whose storage has
		// gone as CKR_GENERAL_ERROR or as vanished objects.
		if !sessionBroken(err) && m.healthy(s) {
			// The session may be left mid-operation; a fresh one is
			// cheaper than finding out.
			m.discard(s, false)
			return err
		}
		m.discard(s, true)
		if isCKR(err, p11.CKR_CRYPTOKI_NOT_INITIALIZED) {
			if rerr := m.mod.reinit(s.gen, false, m.now()); rerr != nil {
				return rerr
			}
		}
		last = err
	}
	return fmt.Errorf("%w: token %q: %v", ErrTokenUnavailable, m.label, last)
}

// healthy tells a genuine failure of an operation (a failed GCM tag, an
// unknown key) from a token that has gone.
func (m *Manager) healthy(s *session) bool {
	return m.mod.with(s.gen, func(c *p11.Ctx) error {
		if _, err := c.GetSessionInfo(s.h); err != nil {
			return err
		}
		_, err := c.GetTokenInfo(s.slot)
		return err
	}) == nil
}

// CreateKey generates a key inside the token (or, for SM2 in KEK mode, in
// Go, wrapped by the token's KEK) and returns its URI.
func (m *Manager) CreateKey(ctx context.Context, label string, alg hsm.Algorithm) (string, crypto.PublicKey, error) {
	if m.closed.Load() {
		return "", nil, ErrClosed
	}
	if label == "" {
		return "", nil, errors.New("pkcs11: empty key label")
	}
	if _, err := hsm.ParseAlgorithm(string(alg)); err != nil {
		return "", nil, err
	}
	m.createMu.Lock()
	defer m.createMu.Unlock()
	if alg == hsm.SM2 && m.vendor == nil {
		return m.createKEKKey(ctx, label)
	}
	id, err := randomID()
	if err != nil {
		return "", nil, err
	}
	pubT, privT, mech, err := m.keyTemplates(label, id, alg)
	if err != nil {
		return "", nil, err
	}
	var pub crypto.PublicKey
	err = m.do(ctx, func(c *p11.Ctx, s *session) error {
		if err := m.labelFree(c, s, label); err != nil {
			return err
		}
		hPub, _, err := c.GenerateKeyPair(s.h, []*p11.Mechanism{p11.NewMechanism(mech, nil)}, pubT, privT)
		if err != nil {
			return fmt.Errorf("pkcs11: generate %s key %q: %w", alg, label, err)
		}
		pub, err = m.readPublic(c, s, hPub, alg)
		return err
	})
	if err != nil {
		return "", nil, err
	}
	return m.ref(label, pkcs11uri.TypePrivate), pub, nil
}

func randomID() ([]byte, error) {
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return nil, fmt.Errorf("pkcs11: random key ID: %w", err)
	}
	return id, nil
}

// DER OIDs of the named curves (CKA_EC_PARAMS).
var (
	oidP256 = []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}
	oidP384 = []byte{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22}
)

func (m *Manager) keyTemplates(label string, id []byte, alg hsm.Algorithm) (pub, priv []*p11.Attribute, mech uint, err error) {
	pub = []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PUBLIC_KEY),
		p11.NewAttribute(p11.CKA_TOKEN, true),
		p11.NewAttribute(p11.CKA_PRIVATE, false),
		p11.NewAttribute(p11.CKA_VERIFY, true),
		p11.NewAttribute(p11.CKA_LABEL, label),
		p11.NewAttribute(p11.CKA_ID, id),
	}
	priv = []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PRIVATE_KEY),
		p11.NewAttribute(p11.CKA_TOKEN, true),
		p11.NewAttribute(p11.CKA_PRIVATE, true),
		p11.NewAttribute(p11.CKA_SENSITIVE, true),
		p11.NewAttribute(p11.CKA_EXTRACTABLE, false),
		p11.NewAttribute(p11.CKA_SIGN, true),
		p11.NewAttribute(p11.CKA_LABEL, label),
		p11.NewAttribute(p11.CKA_ID, id),
	}
	var keyType uint
	switch alg {
	case hsm.ECDSAP256, hsm.ECDSAP384:
		keyType, mech = p11.CKK_EC, p11.CKM_EC_KEY_PAIR_GEN
		params := oidP256
		if alg == hsm.ECDSAP384 {
			params = oidP384
		}
		pub = append(pub, p11.NewAttribute(p11.CKA_EC_PARAMS, params))
	case hsm.RSA2048, hsm.RSA3072, hsm.RSA4096:
		keyType, mech = p11.CKK_RSA, p11.CKM_RSA_PKCS_KEY_PAIR_GEN
		bits := map[hsm.Algorithm]int{hsm.RSA2048: 2048, hsm.RSA3072: 3072, hsm.RSA4096: 4096}[alg]
		pub = append(pub,
			p11.NewAttribute(p11.CKA_MODULUS_BITS, bits),
			p11.NewAttribute(p11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}))
	case hsm.SM2:
		keyType, mech = m.vendor.KeyType, m.vendor.KeyGenMechanism
		pub = append(pub, p11.NewAttribute(p11.CKA_EC_PARAMS, m.vendor.ecParams()))
	default:
		return nil, nil, 0, fmt.Errorf("%w: algorithm %s", ErrUnsupported, alg)
	}
	pub = append(pub, p11.NewAttribute(p11.CKA_KEY_TYPE, keyType))
	priv = append(priv, p11.NewAttribute(p11.CKA_KEY_TYPE, keyType))
	return pub, priv, mech, nil
}

// labelFree refuses a label that any object on the token already has.
func (m *Manager) labelFree(c *p11.Ctx, s *session, label string) error {
	hs, err := findObjects(c, s, []*p11.Attribute{p11.NewAttribute(p11.CKA_LABEL, label)}, 1)
	if err != nil {
		return err
	}
	if len(hs) > 0 {
		return fmt.Errorf("%w: token %q already has an object labelled %q", hsm.ErrKeyExists, m.label, label)
	}
	return nil
}

// ref formats the key URI handed to callers. It carries module-path and
// pin-source so that it can be used on its own, but never a pin-value:
// refs end up in databases and logs.
func (m *Manager) ref(label string, typ pkcs11uri.ObjectType) string {
	u := pkcs11uri.URI{Token: m.label, Serial: m.serial, Object: label, Type: typ,
		ModulePath: m.modulePath, PINSource: m.pinSource}
	return u.String()
}

// Signer returns a signer for the key ref names: a private key
// (type=private) or a KEK-wrapped SM2 key (type=data); without type both
// are tried. The signer implements ContextSigner.
func (m *Manager) Signer(ctx context.Context, ref string) (crypto.Signer, error) {
	if m.closed.Load() {
		return nil, ErrClosed
	}
	u, err := m.parseRef(ref)
	if err != nil {
		return nil, err
	}
	switch u.Type {
	case pkcs11uri.TypePrivate:
		s, err := m.tokenSigner(ctx, u)
		if err != nil {
			return nil, err
		}
		return s, nil
	case pkcs11uri.TypeData:
		s, err := m.kekSigner(ctx, u)
		if err != nil {
			return nil, err
		}
		return s, nil
	case "":
		s, err := m.tokenSigner(ctx, u)
		if errors.Is(err, hsm.ErrKeyNotFound) && m.kekReady() == nil {
			return m.kekSigner(ctx, u)
		}
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	return nil, fmt.Errorf("%w: %s: type=%s is not a signing key", hsm.ErrKeyNotFound, ref, u.Type)
}

func (m *Manager) parseRef(ref string) (*pkcs11uri.URI, error) {
	u, err := pkcs11uri.Parse(ref)
	if err != nil {
		return nil, fmt.Errorf("pkcs11: key reference: %w", err)
	}
	if u.Object == "" && len(u.ID) == 0 {
		return nil, fmt.Errorf("pkcs11: key reference %q names no object (object= or id=)", ref)
	}
	if u.Token != "" && u.Token != m.label || u.Serial != "" && m.serial != "" && u.Serial != m.serial {
		return nil, fmt.Errorf("%w: %s is on token %q, this manager serves %q", hsm.ErrKeyNotFound, ref, u.Token, m.label)
	}
	if u.ModulePath != "" && filepath.Clean(u.ModulePath) != filepath.Clean(m.modulePath) {
		if a, err := filepath.EvalSymlinks(u.ModulePath); err != nil || a != m.mod.path {
			return nil, fmt.Errorf("%w: %s is in module %s, this manager serves %s", hsm.ErrKeyNotFound, ref, u.ModulePath, m.modulePath)
		}
	}
	return u, nil
}

// ListKeys lists the signing keys on the token: private keys and SM2 keys
// wrapped in KEK mode.
func (m *Manager) ListKeys(ctx context.Context) ([]KeyInfo, error) {
	if m.closed.Load() {
		return nil, ErrClosed
	}
	var keys []KeyInfo
	err := m.do(ctx, func(c *p11.Ctx, s *session) error {
		keys = keys[:0]
		hs, err := findObjects(c, s, []*p11.Attribute{p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PRIVATE_KEY)}, 0)
		if err != nil {
			return err
		}
		for _, h := range hs {
			a, err := getAttrs(c, s, h, p11.CKA_LABEL, p11.CKA_ID, p11.CKA_KEY_TYPE)
			if err != nil {
				return err
			}
			k := KeyInfo{Label: string(a[p11.CKA_LABEL]), Type: string(pkcs11uri.TypePrivate), ID: a[p11.CKA_ID]}
			k.Algorithm = m.privateAlgorithm(c, s, h, attrUint(a[p11.CKA_KEY_TYPE]))
			k.Ref = m.ref(k.Label, pkcs11uri.TypePrivate)
			keys = append(keys, k)
		}
		hs, err = findObjects(c, s, []*p11.Attribute{
			p11.NewAttribute(p11.CKA_CLASS, p11.CKO_DATA),
			p11.NewAttribute(p11.CKA_APPLICATION, KEKApplication),
		}, 0)
		if err != nil {
			return err
		}
		for _, h := range hs {
			a, err := getAttrs(c, s, h, p11.CKA_LABEL, p11.CKA_VALUE)
			if err != nil {
				return err
			}
			k := KeyInfo{Label: string(a[p11.CKA_LABEL]), Type: string(pkcs11uri.TypeData)}
			if env, _, err := parseEnvelope(a[p11.CKA_VALUE]); err == nil {
				k.Algorithm, k.ID = hsm.SM2, env.keyID
			}
			k.Ref = m.ref(k.Label, pkcs11uri.TypeData)
			keys = append(keys, k)
		}
		return nil
	})
	return keys, err
}

func (m *Manager) privateAlgorithm(c *p11.Ctx, s *session, h p11.ObjectHandle, keyType uint) hsm.Algorithm {
	switch {
	case m.vendor != nil && keyType == m.vendor.KeyType:
		return hsm.SM2
	case keyType == p11.CKK_EC:
		a, err := getAttrs(c, s, h, p11.CKA_EC_PARAMS)
		if err != nil {
			return ""
		}
		switch string(a[p11.CKA_EC_PARAMS]) {
		case string(oidP256):
			return hsm.ECDSAP256
		case string(oidP384):
			return hsm.ECDSAP384
		}
	case keyType == p11.CKK_RSA:
		a, err := getAttrs(c, s, h, p11.CKA_MODULUS)
		if err != nil {
			return ""
		}
		switch len(trimZeros(a[p11.CKA_MODULUS])) * 8 {
		case 2048:
			return hsm.RSA2048
		case 3072:
			return hsm.RSA3072
		case 4096:
			return hsm.RSA4096
		}
	}
	return ""
}

func trimZeros(b []byte) []byte {
	for len(b) > 0 && b[0] == 0 {
		b = b[1:]
	}
	return b
}

// SelfTest signs and verifies with the key ref names for about d (at
// least once) and returns signatures per second of signing time (the
// verification time is not counted).
func (m *Manager) SelfTest(ctx context.Context, ref string, d time.Duration) (float64, error) {
	signer, err := m.Signer(ctx, ref)
	if err != nil {
		return 0, err
	}
	var s crypto.Signer = signer
	if cs, ok := signer.(ContextSigner); ok {
		s = contextSigner{ctx, cs}
	}
	start := m.now()
	var n int
	var signing time.Duration
	for {
		msg := fmt.Appendf(nil, "gmtrust hsm self-test %s #%d", ref, n)
		t0 := m.now()
		sig, alg, err := sigalg.Sign(s, msg)
		signing += m.now().Sub(t0)
		if err != nil {
			return 0, fmt.Errorf("pkcs11: self-test signature %d: %w", n+1, err)
		}
		if err := sigalg.Verify(signer.Public(), alg.OID, msg, sig); err != nil {
			return 0, fmt.Errorf("pkcs11: self-test signature %d does not verify: %w", n+1, err)
		}
		n++
		if m.now().Sub(start) >= d {
			break
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
	}
	if signing <= 0 {
		return 0, errors.New("pkcs11: self-test: the clock did not advance")
	}
	return float64(n) / signing.Seconds(), nil
}

// contextSigner binds a context to a ContextSigner for sigalg.
type contextSigner struct {
	ctx context.Context
	s   ContextSigner
}

func (c contextSigner) Public() crypto.PublicKey { return c.s.Public() }

func (c contextSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return c.s.SignContext(c.ctx, r, digest, opts)
}

// Close releases the sessions, zeroises cached SM2 keys and, with the last
// Manager of the module, finalises it. Signers made by m fail afterwards.
func (m *Manager) Close() error {
	if !m.closed.CompareAndSwap(false, true) {
		return nil
	}
	m.keysMu.Lock()
	for _, k := range m.sm2Keys {
		k.forget()
	}
	clear(m.sm2Keys)
	m.keysMu.Unlock()
	m.pool.closeIdle(m)
	m.mod.release()
	return nil
}

// ListTokens lists the tokens of the module at modulePath, for
// "gmtrust hsm list-tokens".
func ListTokens(ctx context.Context, modulePath string) ([]TokenInfo, error) {
	mod, err := openModule(modulePath)
	if err != nil {
		return nil, err
	}
	defer mod.release()
	var out []TokenInfo
	err = mod.withCurrent(func(c *p11.Ctx, _ uint64) error {
		slots, err := c.GetSlotList(true)
		if err != nil {
			return fmt.Errorf("pkcs11: C_GetSlotList: %w", err)
		}
		for _, slot := range slots {
			if err := ctx.Err(); err != nil {
				return err
			}
			ti, err := c.GetTokenInfo(slot)
			if err != nil {
				continue
			}
			t := TokenInfo{SlotID: slot, Label: ti.Label, Manufacturer: ti.ManufacturerID, Model: ti.Model,
				Serial: ti.SerialNumber, Initialized: ti.Flags&p11.CKF_TOKEN_INITIALIZED != 0,
				LoginRequired: ti.Flags&p11.CKF_LOGIN_REQUIRED != 0}
			if t.Initialized {
				u := pkcs11uri.URI{Token: t.Label, Manufacturer: t.Manufacturer, Serial: t.Serial, Model: t.Model, ModulePath: modulePath}
				t.URI = u.String()
			}
			out = append(out, t)
		}
		return nil
	})
	return out, err
}
