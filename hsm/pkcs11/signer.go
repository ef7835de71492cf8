//go:build cgo

package pkcs11

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"math/big"

	"github.com/emmansun/gmsm/sm2"
	p11 "github.com/miekg/pkcs11"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/gmtrust/gmtrust/hsm"
	"github.com/gmtrust/gmtrust/hsm/pkcs11uri"
)

type keyKind int

const (
	kindECDSA keyKind = iota
	kindRSA
	kindVendorSM2
)

// tokenSigner signs with a private key that never leaves the token.
type tokenSigner struct {
	m     *Manager
	obj   *objRef
	pub   crypto.PublicKey
	kind  keyKind
	size  int // ECDSA: byte length of the group order; RSA: modulus bits
	label string
}

var _ ContextSigner = (*tokenSigner)(nil)

func (m *Manager) tokenSigner(ctx context.Context, u *pkcs11uri.URI) (*tokenSigner, error) {
	tmpl := []*p11.Attribute{p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PRIVATE_KEY)}
	if u.Object != "" {
		tmpl = append(tmpl, p11.NewAttribute(p11.CKA_LABEL, u.Object))
	}
	if len(u.ID) > 0 {
		tmpl = append(tmpl, p11.NewAttribute(p11.CKA_ID, u.ID))
	}
	name := describe(u)
	t := &tokenSigner{m: m, obj: &objRef{what: "private key " + name, tmpl: tmpl}, label: name}
	err := m.do(ctx, func(c *p11.Ctx, s *session) error {
		h, err := t.obj.handle(c, s)
		if err != nil {
			return err
		}
		a, err := getAttrs(c, s, h, p11.CKA_KEY_TYPE, p11.CKA_ID, p11.CKA_LABEL)
		if err != nil {
			return err
		}
		keyType := attrUint(a[p11.CKA_KEY_TYPE])
		var alg hsm.Algorithm
		switch {
		case m.vendor != nil && keyType == m.vendor.KeyType:
			t.kind, alg = kindVendorSM2, hsm.SM2
		case keyType == p11.CKK_EC:
			t.kind, alg = kindECDSA, hsm.ECDSAP256 // curve read from the public key
		case keyType == p11.CKK_RSA:
			t.kind, alg = kindRSA, hsm.RSA2048
		default:
			return fmt.Errorf("%w: %s has key type %#x", ErrUnsupported, name, keyType)
		}
		// The public key is a separate object; pair it by CKA_ID, which
		// CreateKey sets on both halves, or by label when there is none.
		pt := []*p11.Attribute{p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PUBLIC_KEY)}
		if id := a[p11.CKA_ID]; len(id) > 0 {
			pt = append(pt, p11.NewAttribute(p11.CKA_ID, id))
		} else {
			pt = append(pt, p11.NewAttribute(p11.CKA_LABEL, a[p11.CKA_LABEL]))
		}
		hs, err := findObjects(c, s, pt, 2)
		if err != nil {
			return err
		}
		if len(hs) != 1 {
			return fmt.Errorf("pkcs11: %s: found %d matching public keys, want 1", name, len(hs))
		}
		t.pub, err = m.readPublic(c, s, hs[0], alg)
		return err
	})
	if err != nil {
		return nil, err
	}
	switch k := t.pub.(type) {
	case *ecdsa.PublicKey:
		t.size = (k.Curve.Params().N.BitLen() + 7) / 8
	case *rsa.PublicKey:
		t.size = k.N.BitLen()
	}
	return t, nil
}

func describe(u *pkcs11uri.URI) string {
	if u.Object != "" {
		return fmt.Sprintf("%q", u.Object)
	}
	return fmt.Sprintf("id %x", u.ID)
}

// readPublic reads the public key object h. alg tells the family; EC
// curves are taken from CKA_EC_PARAMS.
func (m *Manager) readPublic(c *p11.Ctx, s *session, h p11.ObjectHandle, alg hsm.Algorithm) (crypto.PublicKey, error) {
	switch alg {
	case hsm.RSA2048, hsm.RSA3072, hsm.RSA4096:
		a, err := getAttrs(c, s, h, p11.CKA_MODULUS, p11.CKA_PUBLIC_EXPONENT)
		if err != nil {
			return nil, err
		}
		return parseRSAPublic(a[p11.CKA_MODULUS], a[p11.CKA_PUBLIC_EXPONENT])
	}
	a, err := getAttrs(c, s, h, p11.CKA_EC_PARAMS, p11.CKA_EC_POINT)
	if err != nil {
		return nil, err
	}
	return parseECPublic(a[p11.CKA_EC_PARAMS], a[p11.CKA_EC_POINT], alg == hsm.SM2)
}

func parseRSAPublic(n, e []byte) (*rsa.PublicKey, error) {
	e = trimZeros(e)
	if len(n) == 0 || len(e) == 0 || len(e) > 4 {
		return nil, fmt.Errorf("pkcs11: RSA public key: bad modulus or exponent")
	}
	var exp int
	for _, b := range e {
		exp = exp<<8 | int(b)
	}
	if exp < 3 || exp%2 == 0 {
		return nil, fmt.Errorf("pkcs11: RSA public exponent %d", exp)
	}
	return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: exp}, nil
}

// parseECPublic decodes CKA_EC_POINT, which PKCS#11 says is a DER OCTET
// STRING holding the point; some modules return the bare point. Both
// readings are tried and only a valid point on the curve is accepted.
func parseECPublic(params, point []byte, wantSM2 bool) (*ecdsa.PublicKey, error) {
	var parse func([]byte) (*ecdsa.PublicKey, error)
	switch {
	case wantSM2:
		if len(params) > 0 && string(params) != string(oidSM2Curve) {
			return nil, fmt.Errorf("pkcs11: SM2 key has CKA_EC_PARAMS %x, want the SM2 curve", params)
		}
		parse = sm2.NewPublicKey
	case string(params) == string(oidP256):
		parse = func(b []byte) (*ecdsa.PublicKey, error) { return ecdsa.ParseUncompressedPublicKey(elliptic.P256(), b) }
	case string(params) == string(oidP384):
		parse = func(b []byte) (*ecdsa.PublicKey, error) { return ecdsa.ParseUncompressedPublicKey(elliptic.P384(), b) }
	case string(params) == string(oidSM2Curve):
		return nil, fmt.Errorf("%w: CKK_EC key on the SM2 curve: CKM_ECDSA would make ECDSA, not SM2, signatures", ErrUnsupported)
	default:
		return nil, fmt.Errorf("%w: EC curve with parameters %x", ErrUnsupported, params)
	}
	in := cryptobyte.String(point)
	var inner cryptobyte.String
	if in.ReadASN1(&inner, cbasn1.OCTET_STRING) && in.Empty() {
		if pub, err := parse(inner); err == nil {
			return pub, nil
		}
	}
	pub, err := parse(point)
	if err != nil {
		return nil, fmt.Errorf("pkcs11: CKA_EC_POINT: %w", err)
	}
	return pub, nil
}

func (t *tokenSigner) Public() crypto.PublicKey { return t.pub }

// Sign implements crypto.Signer; see SignContext.
func (t *tokenSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return t.SignContext(context.Background(), r, digest, opts)
}

// SignContext signs in the token; r is not used (the token has its own
// RNG). ECDSA takes a digest and returns DER; RSA takes a digest and uses
// PSS when opts is *rsa.PSSOptions, PKCS#1 v1.5 otherwise; SM2 follows the
// hsm.KeyManager convention and returns DER.
func (t *tokenSigner) SignContext(ctx context.Context, _ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts == nil {
		opts = crypto.Hash(0)
	}
	switch t.kind {
	case kindECDSA:
		return t.signECDSA(ctx, digest, opts)
	case kindRSA:
		return t.signRSA(ctx, digest, opts)
	case kindVendorSM2:
		return signSM2(t.m.vendor, t.pub.(*ecdsa.PublicKey), digest, opts, func(mech uint, data []byte) ([]byte, error) {
			return t.signRaw(ctx, p11.NewMechanism(mech, nil), data)
		})
	}
	return nil, fmt.Errorf("%w: key kind %d", ErrUnsupported, t.kind)
}

func (t *tokenSigner) signECDSA(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if _, ok := opts.(*sm2.SM2SignerOption); ok {
		return nil, fmt.Errorf("%w: SM2 signer options with ECDSA key %s", ErrUnsupported, t.label)
	}
	if h := opts.HashFunc(); h != 0 && len(digest) != h.Size() {
		return nil, fmt.Errorf("pkcs11: digest is %d bytes, %v needs %d", len(digest), h, h.Size())
	}
	if len(digest) == 0 {
		return nil, errors.New("pkcs11: empty digest")
	}
	// ECDSA uses the leftmost bits of a longer hash (SEC 1 4.1.3); both
	// supported orders are whole bytes, so this truncation is exact and
	// does not depend on whether the token truncates.
	if len(digest) > t.size {
		digest = digest[:t.size]
	}
	raw, err := t.signRaw(ctx, p11.NewMechanism(p11.CKM_ECDSA, nil), digest)
	if err != nil {
		return nil, err
	}
	return rawToDER(raw, t.size)
}

func (t *tokenSigner) signRSA(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if pss, ok := opts.(*rsa.PSSOptions); ok {
		salt, err := pssSaltLength(pss, t.size)
		if err != nil {
			return nil, err
		}
		if len(digest) != pss.Hash.Size() {
			return nil, fmt.Errorf("pkcs11: digest is %d bytes, %v needs %d", len(digest), pss.Hash, pss.Hash.Size())
		}
		hashMech, mgf := pkcs11Hash(pss.Hash)
		params := p11.NewPSSParams(hashMech, mgf, uint(salt))
		return t.signRaw(ctx, p11.NewMechanism(p11.CKM_RSA_PKCS_PSS, params), digest)
	}
	di, err := digestInfo(opts.HashFunc(), digest)
	if err != nil {
		return nil, err
	}
	return t.signRaw(ctx, p11.NewMechanism(p11.CKM_RSA_PKCS, nil), di)
}

// pkcs11Hash maps a hash (already checked by pssSaltLength) to the
// PKCS#11 hash mechanism and MGF1 generator.
func pkcs11Hash(h crypto.Hash) (mech, mgf uint) {
	switch h {
	case crypto.SHA384:
		return p11.CKM_SHA384, p11.CKG_MGF1_SHA384
	case crypto.SHA512:
		return p11.CKM_SHA512, p11.CKG_MGF1_SHA512
	}
	return p11.CKM_SHA256, p11.CKG_MGF1_SHA256
}

// signRaw runs C_SignInit + C_Sign on a pooled session.
func (t *tokenSigner) signRaw(ctx context.Context, mech *p11.Mechanism, data []byte) ([]byte, error) {
	if t.m.closed.Load() {
		return nil, ErrClosed
	}
	var out []byte
	err := t.m.do(ctx, func(c *p11.Ctx, s *session) error {
		return t.obj.withHandle(c, s, func(h p11.ObjectHandle) error {
			err := c.SignInit(s.h, []*p11.Mechanism{mech}, h)
			if err == nil {
				out, err = c.Sign(s.h, data)
			}
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("pkcs11: sign with %s: %w", t.label, err)
	}
	return out, nil
}
