package seal

// Stamping with a cached SM3 state. An SM2 stamp signs
// e = SM3(ZA || DER(TBS_Sign)), and DER(TBS_Sign) is
//
//	SEQUENCE header || INTEGER version || SESeal || timeInfo || dataHash || propertyInfo
//
// where the SESeal, picture included, is most of the bytes (tens of KiB
// against about a hundred). Everything up to the end of the SESeal is the
// same for every stamp with one seal and holder key, except the length in
// the SEQUENCE header, which follows the length of propertyInfo. So a
// stampHasher keeps the SM3 state after ZA || header || version || SESeal
// for each header seen, and a stamp hashes only its own short tail.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
	"golang.org/x/crypto/cryptobyte"

	"github.com/gmtrust/gmtrust/internal/sigalg"
)

// maxPrefixStates bounds the SM3 states one seal keeps: one per distinct
// TBS_Sign header, that is per band of propertyInfo lengths that gives
// the same total length. An application stamps with a few formats of
// propertyInfo; beyond the bound the cache starts afresh, and a stamp
// whose state is missing costs what it cost without the cache.
const maxPrefixStates = 64

// Signing modes of a stampHasher.
const (
	signUndecided int32 = iota
	// signDigest: the signer accepts e (the hsm.KeyManager convention
	// for SM2 with options other than sm2.DefaultSM2SignerOpts).
	signDigest
	// signWhole: the signer needs the whole TBS_Sign, such as a PKCS#11
	// vendor mechanism that hashes ZA in the token.
	signWhole
)

// versionV4DER is INTEGER 4, the first field of a v4 TBS_Sign.
var versionV4DER = []byte{0x02, 0x01, VersionV4}

// stampHasher stamps with one v4 seal and one SM2 holder key. It is safe
// for concurrent use.
type stampHasher struct {
	sealRaw []byte
	za      []byte // ZA of the holder key with the default ID
	pub     *ecdsa.PublicKey
	oid     []byte // DER OBJECT IDENTIFIER sm2-with-sm3

	// mode is decided by the first stamp (see sign).
	mode atomic.Int32

	mu     sync.Mutex
	states map[string][]byte // marshalled SM3 state, by TBS_Sign header
}

// newStampHasher returns a stampHasher for a seal whose holder
// certificate carries pub, or nil when pub is not an SM2 key (other keys
// sign digests of their own and gain nothing here).
func newStampHasher(sealRaw []byte, pub crypto.PublicKey) (*stampHasher, error) {
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok || !sm2.IsSM2PublicKey(k) {
		return nil, nil
	}
	za, err := sm2.CalculateZA(k, nil) // nil: the default ID 1234567812345678
	if err != nil {
		return nil, fmt.Errorf("seal: ZA of the holder key: %w", err)
	}
	var ob cryptobyte.Builder
	ob.AddASN1ObjectIdentifier(sigalg.OIDSM2WithSM3)
	oid, err := ob.Bytes()
	if err != nil {
		return nil, fmt.Errorf("seal: encoding the signature algorithm: %w", err)
	}
	return &stampHasher{sealRaw: sealRaw, za: za, pub: k, oid: oid, states: map[string][]byte{}}, nil
}

// appendDERLength appends the DER length of n bytes of content.
func appendDERLength(b []byte, n int) []byte {
	if n < 0x80 {
		return append(b, byte(n))
	}
	var size byte
	for m := n; m > 0; m >>= 8 {
		size++
	}
	b = append(b, 0x80|size)
	for i := int(size) - 1; i >= 0; i-- {
		b = append(b, byte(n>>(8*i)))
	}
	return b
}

// appendTLVHeader appends a tag and the length of n bytes of content.
func appendTLVHeader(b []byte, tag byte, n int) []byte {
	return appendDERLength(append(b, tag), n)
}

// tbsTail encodes the fields of TBS_Sign after the seal, as
// stampUnchecked does.
func tbsTail(dataHash []byte, propertyInfo string, at time.Time) ([]byte, error) {
	b := cryptobyte.NewBuilder(make([]byte, 0, 64+len(dataHash)+len(propertyInfo)))
	b.AddASN1GeneralizedTime(at.UTC())
	b.AddASN1BitString(dataHash)
	addString(b, tagIA5String, propertyInfo)
	tail, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("seal: encoding TBS_Sign: %w", err)
	}
	return tail, nil
}

// digest returns e = SM3(ZA || header || version || seal || tail).
func (h *stampHasher) digest(header, tail []byte) ([]byte, error) {
	d := sm3.New()
	h.mu.Lock()
	state, ok := h.states[string(header)]
	h.mu.Unlock()
	if ok {
		if err := d.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err != nil {
			return nil, fmt.Errorf("seal: SM3 state: %w", err)
		}
	} else {
		d.Write(h.za)
		d.Write(header)
		d.Write(versionV4DER)
		d.Write(h.sealRaw)
		state, err := d.(encoding.BinaryMarshaler).MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("seal: SM3 state: %w", err)
		}
		h.mu.Lock()
		if len(h.states) >= maxPrefixStates {
			clear(h.states)
		}
		h.states[string(header)] = state
		h.mu.Unlock()
	}
	d.Write(tail)
	return d.Sum(nil), nil
}

// stamp builds and signs SES_Signature v4 like stampUnchecked, hashing
// only the tail of TBS_Sign when it can.
func (h *stampHasher) stamp(signerCertDER []byte, signer crypto.Signer, dataHash []byte, propertyInfo string, at time.Time) ([]byte, error) {
	tail, err := tbsTail(dataHash, propertyInfo, at)
	if err != nil {
		return nil, err
	}
	tbsLen := len(versionV4DER) + len(h.sealRaw) + len(tail)
	var hdrBuf [8]byte
	header := appendTLVHeader(hdrBuf[:0], 0x30, tbsLen)
	tbs := func() []byte { // only the whole-message signers need it apart
		b := make([]byte, 0, len(header)+tbsLen)
		return append(append(append(append(b, header...), versionV4DER...), h.sealRaw...), tail...)
	}
	var sig []byte
	if h.mode.Load() == signWhole {
		if sig, _, err = sigalg.Sign(signer, tbs()); err != nil {
			return nil, fmt.Errorf("seal: signer signature: %w", err)
		}
	} else {
		e, err := h.digest(header, tail)
		if err != nil {
			return nil, err
		}
		if sig, err = h.sign(signer, e, tbs); err != nil {
			return nil, err
		}
	}

	// SES_Signature ::= SEQUENCE { TBS_Sign, cert OCTET STRING,
	// signatureAlgID OBJECT IDENTIFIER, signature BIT STRING }, written
	// straight into one buffer: the seal is copied once.
	oid := h.oid
	var certHdr, sigHdr [8]byte
	ch := appendTLVHeader(certHdr[:0], 0x04, len(signerCertDER))
	sh := appendTLVHeader(sigHdr[:0], 0x03, 1+len(sig))
	content := len(header) + tbsLen + len(ch) + len(signerCertDER) + len(oid) + len(sh) + 1 + len(sig)
	out := make([]byte, 0, 8+content)
	out = appendTLVHeader(out, 0x30, content)
	out = append(out, header...)
	out = append(out, versionV4DER...)
	out = append(out, h.sealRaw...)
	out = append(out, tail...)
	out = append(out, ch...)
	out = append(out, signerCertDER...)
	out = append(out, oid...)
	out = append(out, sh...)
	out = append(out, 0) // no unused bits
	out = append(out, sig...)
	return out, nil
}

// sign signs e, or the whole TBS_Sign when the signer cannot sign e.
//
// The first stamp decides, once per stampHasher (so per loaded seal):
// it signs e and verifies the result against the holder key. A signer
// that refuses e (a PKCS#11 vendor mechanism that hashes ZA in the token
// returns an error wrapping pkcs11.ErrUnsupported, which this package
// cannot name without depending on the backend), or that signed
// something else (a signer outside the hsm.KeyManager convention that
// hashes whatever it is given), gets the whole message from then on; if
// that fails too, nothing is decided and the error is returned. Deciding
// by trial rather than by an interface the signers would implement keeps
// the convention where it is documented (hsm.KeyManager) and costs one
// verification per seal load. A transient token error on the first stamp
// can pin a seal to the whole-message path: that costs speed, not
// correctness, and lasts until the seal is loaded again (Config.CacheTTL).
func (h *stampHasher) sign(signer crypto.Signer, e []byte, tbs func() []byte) ([]byte, error) {
	sig, err := sigalg.SignSM2Digest(rand.Reader, signer, e)
	if h.mode.Load() == signDigest {
		if err != nil {
			return nil, fmt.Errorf("seal: signer signature: %w", err)
		}
		return sig, nil
	}
	if err == nil && sm2.VerifyASN1(h.pub, e, sig) {
		h.mode.Store(signDigest)
		return sig, nil
	}
	whole, _, werr := sigalg.Sign(signer, tbs())
	if werr != nil {
		return nil, fmt.Errorf("seal: signer signature: %w", errors.Join(err, werr))
	}
	h.mode.Store(signWhole)
	return whole, nil
}
