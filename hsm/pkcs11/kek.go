//go:build cgo

package pkcs11

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emmansun/gmsm/sm2"
	p11 "github.com/miekg/pkcs11"

	"github.com/gmtrust/gmtrust/hsm"
	"github.com/gmtrust/gmtrust/hsm/pkcs11uri"
)

// setupKEK finds the KEK or, on a token that has none, creates it, and
// refuses a KEK whose attributes would let it (and so every wrapped key)
// leave the token.
func (m *Manager) setupKEK(ctx context.Context) error {
	m.kek = &objRef{what: fmt.Sprintf("KEK %q", m.kekLabel), tmpl: []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
		p11.NewAttribute(p11.CKA_LABEL, m.kekLabel),
	}}
	return m.do(ctx, func(c *p11.Ctx, s *session) error {
		h, err := m.kek.handle(c, s)
		if errors.Is(err, hsm.ErrKeyNotFound) {
			id, err := randomID()
			if err != nil {
				return err
			}
			h, err = c.GenerateKey(s.h, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_KEY_GEN, nil)}, []*p11.Attribute{
				p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
				p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_AES),
				p11.NewAttribute(p11.CKA_VALUE_LEN, 32),
				p11.NewAttribute(p11.CKA_TOKEN, true),
				p11.NewAttribute(p11.CKA_PRIVATE, true),
				p11.NewAttribute(p11.CKA_SENSITIVE, true),
				p11.NewAttribute(p11.CKA_EXTRACTABLE, false),
				p11.NewAttribute(p11.CKA_ENCRYPT, true),
				p11.NewAttribute(p11.CKA_DECRYPT, true),
				p11.NewAttribute(p11.CKA_WRAP, false),
				p11.NewAttribute(p11.CKA_UNWRAP, false),
				p11.NewAttribute(p11.CKA_LABEL, m.kekLabel),
				p11.NewAttribute(p11.CKA_ID, id),
			})
			if err != nil {
				return fmt.Errorf("pkcs11: create KEK %q on token %q: %w", m.kekLabel, m.label, err)
			}
			m.kek.forget()
		} else if err != nil {
			return fmt.Errorf("pkcs11: KEK: %w", err)
		}
		a, err := getAttrs(c, s, h, p11.CKA_KEY_TYPE, p11.CKA_VALUE_LEN, p11.CKA_SENSITIVE, p11.CKA_EXTRACTABLE,
			p11.CKA_ENCRYPT, p11.CKA_DECRYPT)
		if err != nil {
			return fmt.Errorf("pkcs11: KEK %q: %w", m.kekLabel, err)
		}
		switch {
		case attrUint(a[p11.CKA_KEY_TYPE]) != p11.CKK_AES || attrUint(a[p11.CKA_VALUE_LEN]) != 32:
			return fmt.Errorf("pkcs11: KEK %q is not an AES-256 key", m.kekLabel)
		case !attrBool(a[p11.CKA_SENSITIVE]) || attrBool(a[p11.CKA_EXTRACTABLE]):
			return fmt.Errorf("pkcs11: KEK %q is extractable or not sensitive; refusing to wrap keys with it", m.kekLabel)
		case !attrBool(a[p11.CKA_ENCRYPT]) || !attrBool(a[p11.CKA_DECRYPT]):
			return fmt.Errorf("pkcs11: KEK %q may not encrypt and decrypt", m.kekLabel)
		}
		return nil
	})
}

func (m *Manager) kekReady() error {
	if m.vendor != nil {
		return fmt.Errorf("%w: KEK mode is off (Vendor %q makes SM2 keys in the token)", ErrUnsupported, m.vendor.Name)
	}
	return m.kekErr
}

// kekEncrypt encrypts pt with AES-256-GCM under the KEK with a fresh IV.
func (m *Manager) kekEncrypt(ctx context.Context, pt, aad []byte) (iv, ct []byte, err error) {
	iv = make([]byte, gcmIVSize)
	if _, err := rand.Read(iv); err != nil {
		return nil, nil, fmt.Errorf("pkcs11: IV: %w", err)
	}
	err = m.do(ctx, func(c *p11.Ctx, s *session) error {
		return m.kek.withHandle(c, s, func(h p11.ObjectHandle) error {
			params := p11.NewGCMParams(iv, aad, gcmTagSize*8)
			defer params.Free()
			if err := c.EncryptInit(s.h, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_GCM, params)}, h); err != nil {
				return err
			}
			out, err := c.Encrypt(s.h, pt)
			if err != nil {
				return err
			}
			// Some modules substitute their own IV; we stored ours.
			if used := params.IV(); used != nil && !bytes.Equal(used, iv) {
				return errors.New("pkcs11: the token replaced the GCM IV")
			}
			ct = out
			return nil
		})
	})
	if err != nil {
		return nil, nil, fmt.Errorf("pkcs11: KEK encrypt: %w", err)
	}
	if len(ct) != len(pt)+gcmTagSize {
		return nil, nil, fmt.Errorf("pkcs11: KEK encrypt returned %d bytes, want %d", len(ct), len(pt)+gcmTagSize)
	}
	return iv, ct, nil
}

// kekDecrypt reverses kekEncrypt. A failed tag check is ErrWrappedKeyInvalid.
func (m *Manager) kekDecrypt(ctx context.Context, iv, ct, aad []byte) ([]byte, error) {
	// SoftHSM accepts an empty IV; never let a short one reach the token.
	if len(iv) != gcmIVSize {
		return nil, fmt.Errorf("%w: IV is %d bytes, want %d", ErrWrappedKeyInvalid, len(iv), gcmIVSize)
	}
	if len(ct) != sm2Size+gcmTagSize {
		return nil, fmt.Errorf("%w: ciphertext is %d bytes, want %d", ErrWrappedKeyInvalid, len(ct), sm2Size+gcmTagSize)
	}
	var pt []byte
	err := m.do(ctx, func(c *p11.Ctx, s *session) error {
		return m.kek.withHandle(c, s, func(h p11.ObjectHandle) error {
			params := p11.NewGCMParams(iv, aad, gcmTagSize*8)
			defer params.Free()
			if err := c.DecryptInit(s.h, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_GCM, params)}, h); err != nil {
				return err
			}
			var err error
			pt, err = c.Decrypt(s.h, ct)
			return err
		})
	})
	switch {
	case err == nil:
	case isCKR(err, p11.CKR_ENCRYPTED_DATA_INVALID), isCKR(err, p11.CKR_ENCRYPTED_DATA_LEN_RANGE),
		isCKR(err, p11.CKR_GENERAL_ERROR), isCKR(err, p11.CKR_DATA_INVALID):
		// do() has already ruled out a vanished token for GENERAL_ERROR.
		return nil, fmt.Errorf("%w: KEK decryption failed (%v)", ErrWrappedKeyInvalid, err)
	default:
		return nil, fmt.Errorf("pkcs11: KEK decrypt: %w", err)
	}
	if len(pt) != sm2Size {
		clear(pt)
		return nil, fmt.Errorf("%w: decrypted %d bytes, want %d", ErrWrappedKeyInvalid, len(pt), sm2Size)
	}
	return pt, nil
}

// createKEKKey makes an SM2 key in Go, wraps it with the KEK and stores
// only the envelope on the token. Called with createMu held.
func (m *Manager) createKEKKey(ctx context.Context, label string) (string, crypto.PublicKey, error) {
	if err := m.kekReady(); err != nil {
		return "", nil, err
	}
	priv, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		return "", nil, fmt.Errorf("pkcs11: generate SM2 key: %w", err)
	}
	defer zeroKey(priv)
	scalar := priv.D.FillBytes(make([]byte, sm2Size))
	defer clear(scalar)
	ecdhPub, err := sm2.PublicKeyToECDH(&priv.PublicKey)
	if err != nil {
		return "", nil, fmt.Errorf("pkcs11: SM2 public key: %w", err)
	}
	id, err := randomID()
	if err != nil {
		return "", nil, err
	}
	env := &envelope{version: envelopeVersion, algorithm: "sm2", keyID: id, publicKey: ecdhPub.Bytes()}
	aad := envelopeAAD(label, env)
	if env.iv, env.ciphertext, err = m.kekEncrypt(ctx, scalar, aad); err != nil {
		return "", nil, err
	}
	// Prove the envelope opens before anything depends on it.
	back, err := m.kekDecrypt(ctx, env.iv, env.ciphertext, aad)
	if err != nil {
		return "", nil, fmt.Errorf("pkcs11: wrapped SM2 key does not decrypt back: %w", err)
	}
	same := bytes.Equal(back, scalar)
	clear(back)
	if !same {
		return "", nil, errors.New("pkcs11: wrapped SM2 key decrypts to another value")
	}
	value, err := env.marshal()
	if err != nil {
		return "", nil, fmt.Errorf("pkcs11: envelope: %w", err)
	}
	err = m.do(ctx, func(c *p11.Ctx, s *session) error {
		if err := m.labelFree(c, s, label); err != nil {
			return err
		}
		_, err := c.CreateObject(s.h, []*p11.Attribute{
			p11.NewAttribute(p11.CKA_CLASS, p11.CKO_DATA),
			p11.NewAttribute(p11.CKA_TOKEN, true),
			p11.NewAttribute(p11.CKA_PRIVATE, true),
			p11.NewAttribute(p11.CKA_MODIFIABLE, false),
			p11.NewAttribute(p11.CKA_LABEL, label),
			p11.NewAttribute(p11.CKA_APPLICATION, KEKApplication),
			p11.NewAttribute(p11.CKA_VALUE, value),
		})
		if err != nil {
			return fmt.Errorf("pkcs11: store wrapped SM2 key %q: %w", label, err)
		}
		return nil
	})
	if err != nil {
		return "", nil, err
	}
	pub := priv.PublicKey // a copy, so zeroKey leaves the caller's key intact
	return m.ref(label, pkcs11uri.TypeData), &pub, nil
}

// kekSigner loads the envelope named by u, checks that it decrypts to the
// key it claims to hold, and returns a signer for it.
func (m *Manager) kekSigner(ctx context.Context, u *pkcs11uri.URI) (*kekSigner, error) {
	if err := m.kekReady(); err != nil {
		return nil, err
	}
	tmpl := []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_DATA),
		p11.NewAttribute(p11.CKA_APPLICATION, KEKApplication),
	}
	// Data objects have no CKA_ID; the key ID lives in the envelope.
	if u.Object == "" {
		return nil, fmt.Errorf("%w: wrapped SM2 keys are found by object= (label), not by id alone", hsm.ErrKeyNotFound)
	}
	tmpl = append(tmpl, p11.NewAttribute(p11.CKA_LABEL, u.Object))
	obj := &objRef{what: "wrapped SM2 key " + describe(u), tmpl: tmpl}
	var a map[uint][]byte
	err := m.do(ctx, func(c *p11.Ctx, s *session) error {
		return obj.withHandle(c, s, func(h p11.ObjectHandle) error {
			var err error
			a, err = getAttrs(c, s, h, p11.CKA_LABEL, p11.CKA_VALUE)
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	label, value := string(a[p11.CKA_LABEL]), a[p11.CKA_VALUE]
	env, pub, err := parseEnvelope(value)
	if err != nil {
		return nil, fmt.Errorf("pkcs11: %q: %w", label, err)
	}
	if len(u.ID) > 0 && !bytes.Equal(u.ID, env.keyID) {
		return nil, fmt.Errorf("%w: %s has key ID %x, the reference asks for %x", hsm.ErrKeyNotFound, label, env.keyID, u.ID)
	}
	k := m.sm2Key(label, value, env, pub)
	// Decrypt once now so that a damaged key fails here, not at the first
	// signature; with a TTL the result is kept.
	if err := k.check(ctx); err != nil {
		return nil, fmt.Errorf("pkcs11: %q: %w", label, err)
	}
	return &kekSigner{k: k}, nil
}

// sm2Key returns the shared cache entry for label, replacing one whose
// envelope changed (the key was deleted and re-created).
func (m *Manager) sm2Key(label string, value []byte, env *envelope, pub *ecdsa.PublicKey) *kekKey {
	m.keysMu.Lock()
	defer m.keysMu.Unlock()
	if k := m.sm2Keys[label]; k != nil {
		if bytes.Equal(k.value, value) {
			return k
		}
		k.forget()
	}
	k := &kekKey{m: m, label: label, value: bytes.Clone(value), env: env, pub: pub, aad: envelopeAAD(label, env)}
	m.sm2Keys[label] = k
	return k
}

// kekKey is one KEK-wrapped SM2 key and its plaintext cache.
type kekKey struct {
	m     *Manager
	label string
	value []byte
	env   *envelope
	pub   *ecdsa.PublicKey
	aad   []byte

	mu      sync.RWMutex
	priv    *sm2.PrivateKey // guarded by mu; nil when not cached
	expires time.Time       // guarded by mu
	timer   *time.Timer     // guarded by mu

	decrypts atomic.Int64 // token decryptions, for tests and metrics
}

func (k *kekKey) unwrap(ctx context.Context) (*sm2.PrivateKey, error) {
	k.decrypts.Add(1)
	scalar, err := k.m.kekDecrypt(ctx, k.env.iv, k.env.ciphertext, k.aad)
	if err != nil {
		return nil, err
	}
	defer clear(scalar)
	return openScalar(scalar, k.pub)
}

// check decrypts the key, caching it when a TTL is configured.
func (k *kekKey) check(ctx context.Context) error {
	if k.m.ttl == 0 {
		priv, err := k.unwrap(ctx)
		zeroKey(priv)
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	_, err := k.cachedLocked(ctx)
	return err
}

// cachedLocked returns the cached key, decrypting it if it is missing or
// expired. k.mu must be held for writing.
func (k *kekKey) cachedLocked(ctx context.Context) (*sm2.PrivateKey, error) {
	now := k.m.now()
	if k.priv != nil && now.Before(k.expires) {
		return k.priv, nil
	}
	k.dropLocked()
	priv, err := k.unwrap(ctx)
	if err != nil {
		return nil, err
	}
	k.priv, k.expires = priv, now.Add(k.m.ttl)
	// The timer zeroises an idle key on time even if no one signs again;
	// the check above covers the clock running ahead of the timer.
	k.timer = time.AfterFunc(k.m.ttl, func() {
		k.mu.Lock()
		defer k.mu.Unlock()
		if k.priv == priv {
			k.dropLocked()
		}
	})
	return priv, nil
}

func (k *kekKey) dropLocked() {
	if k.timer != nil {
		k.timer.Stop()
		k.timer = nil
	}
	zeroKey(k.priv)
	k.priv = nil
}

// forget zeroises the cached plaintext.
func (k *kekKey) forget() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.dropLocked()
}

func (k *kekKey) sign(ctx context.Context, r io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	if k.m.closed.Load() {
		return nil, ErrClosed
	}
	if r == nil {
		r = rand.Reader
	}
	if k.m.ttl == 0 {
		priv, err := k.unwrap(ctx)
		if err != nil {
			return nil, fmt.Errorf("pkcs11: %q: %w", k.label, err)
		}
		defer zeroKey(priv)
		return priv.Sign(r, msg, opts)
	}
	k.mu.RLock()
	if k.priv != nil && k.m.now().Before(k.expires) {
		defer k.mu.RUnlock()
		return k.priv.Sign(r, msg, opts)
	}
	k.mu.RUnlock()
	k.mu.Lock()
	defer k.mu.Unlock()
	priv, err := k.cachedLocked(ctx)
	if err != nil {
		return nil, fmt.Errorf("pkcs11: %q: %w", k.label, err)
	}
	return priv.Sign(r, msg, opts)
}

// kekSigner signs with a KEK-wrapped SM2 key. It follows the gmsm
// convention exactly, since gmsm does the signing: with
// sm2.DefaultSM2SignerOpts the input is the whole message.
type kekSigner struct{ k *kekKey }

var _ ContextSigner = (*kekSigner)(nil)

func (s *kekSigner) Public() crypto.PublicKey { return s.k.pub }

// Sign implements crypto.Signer; rand nil means crypto/rand.
func (s *kekSigner) Sign(r io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	return s.k.sign(context.Background(), r, msg, opts)
}

// SignContext is Sign bounded by ctx while waiting for the token.
func (s *kekSigner) SignContext(ctx context.Context, r io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	return s.k.sign(ctx, r, msg, opts)
}
