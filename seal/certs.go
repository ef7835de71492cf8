package seal

import (
	"container/list"
	"crypto"
	"crypto/sha256"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// certInfo is what verification needs from a certificate carried in a seal
// or signature.
type certInfo struct {
	// cert is the strictly parsed certificate; nil when strict parsing
	// failed, in which case strictErr says why and the fields below come
	// from a lenient walk of the TBSCertificate.
	cert      *smx509.Certificate
	strictErr error

	pub       crypto.PublicKey
	subject   string
	notBefore time.Time
	notAfter  time.Time
}

// parseCertInfo parses der strictly with smx509 and, when that fails, reads
// just the subject, validity and public key. Real seal files carry
// certificates that strict parsers reject (for example malformed
// subjectAltNames) whose keys still verify the seal: the signature checks
// use the lenient key, and the chain check reports the strict failure.
func parseCertInfo(der []byte) (*certInfo, error) {
	if len(der) == 0 {
		return nil, errors.New("empty certificate")
	}
	c, err := smx509.ParseCertificate(der)
	if err == nil {
		return &certInfo{
			cert:      c,
			pub:       c.PublicKey,
			subject:   c.Subject.String(),
			notBefore: c.NotBefore,
			notAfter:  c.NotAfter,
		}, nil
	}
	info, lerr := parseCertLenient(der)
	if lerr != nil {
		return nil, fmt.Errorf("certificate does not parse: %v (lenient reading: %v)", err, lerr)
	}
	info.strictErr = err
	return info, nil
}

// parseCertLenient walks Certificate.tbsCertificate up to the
// subjectPublicKeyInfo and ignores the extensions.
func parseCertLenient(der []byte) (*certInfo, error) {
	in := cryptobyte.String(der)
	var cert, tbs, validity, subject, spki cryptobyte.String
	if !in.ReadASN1(&cert, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, errors.New("not a single DER SEQUENCE")
	}
	if !cert.ReadASN1(&tbs, cbasn1.SEQUENCE) {
		return nil, errors.New("tbsCertificate: not a SEQUENCE")
	}
	if !tbs.SkipOptionalASN1(cbasn1.Tag(0).Constructed().ContextSpecific()) ||
		!tbs.SkipASN1(cbasn1.INTEGER) || // serialNumber
		!tbs.SkipASN1(cbasn1.SEQUENCE) || // signature
		!tbs.SkipASN1(cbasn1.SEQUENCE) || // issuer
		!tbs.ReadASN1(&validity, cbasn1.SEQUENCE) ||
		!tbs.ReadASN1Element(&subject, cbasn1.SEQUENCE) ||
		!tbs.ReadASN1Element(&spki, cbasn1.SEQUENCE) {
		return nil, errors.New("tbsCertificate: unexpected structure")
	}
	info := &certInfo{}
	var err error
	if info.notBefore, err = readCertTime(&validity); err != nil {
		return nil, fmt.Errorf("notBefore: %w", err)
	}
	if info.notAfter, err = readCertTime(&validity); err != nil {
		return nil, fmt.Errorf("notAfter: %w", err)
	}
	var rdn pkix.RDNSequence
	if rest, err := asn1.Unmarshal(subject, &rdn); err == nil && len(rest) == 0 {
		var name pkix.Name
		name.FillFromRDNSequence(&rdn)
		info.subject = name.String()
	}
	if info.pub, err = smx509.ParsePKIXPublicKey(spki); err != nil {
		return nil, fmt.Errorf("subjectPublicKeyInfo: %w", err)
	}
	return info, nil
}

func readCertTime(s *cryptobyte.String) (time.Time, error) {
	var t time.Time
	switch {
	case s.PeekASN1Tag(cbasn1.UTCTime):
		if s.ReadASN1UTCTime(&t) {
			return t, nil
		}
	case s.PeekASN1Tag(cbasn1.GeneralizedTime):
		if s.ReadASN1GeneralizedTime(&t) {
			return t, nil
		}
	}
	return t, errors.New("not a UTCTime or GeneralizedTime")
}

// spkiOf returns the raw SubjectPublicKeyInfo of a DER certificate.
func spkiOf(der []byte) ([]byte, bool) {
	in := cryptobyte.String(der)
	var cert, tbs, spki cryptobyte.String
	ok := in.ReadASN1(&cert, cbasn1.SEQUENCE) && in.Empty() &&
		cert.ReadASN1(&tbs, cbasn1.SEQUENCE) &&
		tbs.SkipOptionalASN1(cbasn1.Tag(0).Constructed().ContextSpecific()) &&
		tbs.SkipASN1(cbasn1.INTEGER) && tbs.SkipASN1(cbasn1.SEQUENCE) &&
		tbs.SkipASN1(cbasn1.SEQUENCE) && tbs.SkipASN1(cbasn1.SEQUENCE) &&
		tbs.SkipASN1(cbasn1.SEQUENCE) && tbs.ReadASN1Element(&spki, cbasn1.SEQUENCE)
	return spki, ok
}

// Cache remembers parsed certificates and verified seal (maker) signatures
// across calls to Verify and VerifySeal. Many signatures share one seal and
// a handful of certificates, so this saves a certificate parse per
// certificate and one public-key verification per signature. Entries are
// keyed by the SHA-256 of the exact bytes, so a cached result never applies
// to different input. It is bounded (least recently used entries go first)
// and safe for concurrent use. The zero value is not usable; use NewCache.
type Cache struct {
	certs *lru[*certInfo]
	seals *lru[struct{}]
}

// NewCache returns a cache holding at most size certificates and size
// verified seal signatures. size < 1 means 1024.
func NewCache(size int) *Cache {
	if size < 1 {
		size = 1024
	}
	return &Cache{certs: newLRU[*certInfo](size), seals: newLRU[struct{}](size)}
}

// certInfo parses der, through the cache when there is one.
func (c *Cache) certInfo(der []byte) (*certInfo, error) {
	if c == nil {
		return parseCertInfo(der)
	}
	key := sha256.Sum256(der)
	if info, ok := c.certs.get(key); ok {
		return info, nil
	}
	info, err := parseCertInfo(der)
	if err != nil {
		return nil, err
	}
	c.certs.put(key, info)
	return info, nil
}

// lru is a small mutex-guarded least-recently-used map.
type lru[V any] struct {
	mu    sync.Mutex
	max   int
	order *list.List // of *lruEntry[V], most recent first
	items map[[32]byte]*list.Element
}

type lruEntry[V any] struct {
	key [32]byte
	val V
}

func newLRU[V any](max int) *lru[V] {
	return &lru[V]{max: max, order: list.New(), items: make(map[[32]byte]*list.Element)}
}

func (l *lru[V]) get(key [32]byte) (V, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.items[key]; ok {
		l.order.MoveToFront(e)
		return e.Value.(*lruEntry[V]).val, true
	}
	var zero V
	return zero, false
}

func (l *lru[V]) put(key [32]byte, val V) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.items[key]; ok {
		e.Value.(*lruEntry[V]).val = val
		l.order.MoveToFront(e)
		return
	}
	l.items[key] = l.order.PushFront(&lruEntry[V]{key: key, val: val})
	for l.order.Len() > l.max {
		last := l.order.Back()
		l.order.Remove(last)
		delete(l.items, last.Value.(*lruEntry[V]).key)
	}
}

func (l *lru[V]) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.order.Len()
}
