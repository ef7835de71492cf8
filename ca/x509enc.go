package ca

import (
	"crypto/sha1"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/gmtrust/gmtrust/internal/sigalg"
)

// gmtrust encodes certificates and CRLs itself instead of going through
// smx509.CreateCertificate for two reasons: the CA, not a template-driven
// library, must decide every extension (nothing is copied from a CSR),
// and the library re-verifies every signature it makes, which costs an
// SM2 verification (~64 µs) per certificate for a check the signer's own
// tests already make.

// Extension OIDs.
var (
	oidExtSubjectKeyID     = asn1.ObjectIdentifier{2, 5, 29, 14}
	oidExtKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtSAN              = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidExtBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidExtCRLNumber        = asn1.ObjectIdentifier{2, 5, 29, 20}
	oidExtCRLDP            = asn1.ObjectIdentifier{2, 5, 29, 31}
	oidExtAuthorityKeyID   = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidExtExtKeyUsage      = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidExtAIA              = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 1}
	oidExtOCSPNoCheck      = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}
	oidAccessOCSP          = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1}
	oidAccessCAIssuers     = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 2}
)

type extension struct {
	id       asn1.ObjectIdentifier
	critical bool
	value    []byte
}

// tbsCert holds everything that goes into a TBSCertificate; names and the
// public key are DER as received so their encoding is preserved.
type tbsCert struct {
	serial    []byte // DER INTEGER content octets
	alg       sigalg.Alg
	issuer    []byte
	notBefore time.Time
	notAfter  time.Time
	subject   []byte
	spki      []byte
	exts      []extension
}

func addTime(b *cryptobyte.Builder, t time.Time) {
	t = t.UTC()
	// RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050.
	if y := t.Year(); y >= 1950 && y < 2050 {
		b.AddASN1UTCTime(t)
	} else {
		b.AddASN1GeneralizedTime(t)
	}
}

func addExtensions(b *cryptobyte.Builder, exts []extension) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, e := range exts {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(e.id)
				if e.critical {
					b.AddASN1Boolean(true)
				}
				b.AddASN1OctetString(e.value)
			})
		}
	})
}

func (t *tbsCert) marshal() ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1Int64(2)
		})
		b.AddASN1(cbasn1.INTEGER, func(b *cryptobyte.Builder) { b.AddBytes(t.serial) })
		t.alg.MarshalAlgorithmIdentifier(b)
		b.AddBytes(t.issuer)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			addTime(b, t.notBefore)
			addTime(b, t.notAfter)
		})
		b.AddBytes(t.subject)
		b.AddBytes(t.spki)
		if len(t.exts) > 0 {
			b.AddASN1(cbasn1.Tag(3).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				addExtensions(b, t.exts)
			})
		}
	})
	return b.Bytes()
}

// assembleSigned wraps a TBS structure, its algorithm and its signature
// into the outer SEQUENCE shared by certificates and CRLs.
func assembleSigned(tbs []byte, alg sigalg.Alg, sig []byte) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		alg.MarshalAlgorithmIdentifier(b)
		addBitString(b, sig, 0)
	})
	return b.Bytes()
}

func addBitString(b *cryptobyte.Builder, data []byte, unused byte) {
	b.AddASN1(cbasn1.BIT_STRING, func(b *cryptobyte.Builder) {
		b.AddUint8(unused)
		b.AddBytes(data)
	})
}

func der(f func(b *cryptobyte.Builder)) []byte {
	var b cryptobyte.Builder
	f(&b)
	return b.BytesOrPanic()
}

// keyUsageExt encodes KeyUsage as a minimal named BIT STRING.
func keyUsageExt(ku x509.KeyUsage) (extension, error) {
	if ku == 0 {
		return extension{}, errors.New("ca: empty key usage")
	}
	var bits [2]byte
	last := 0
	for i := 0; i < 9; i++ {
		if ku&(1<<i) != 0 {
			bits[i/8] |= 0x80 >> (i % 8)
			last = i
		}
	}
	n := last/8 + 1
	unused := byte(7 - last%8)
	v := der(func(b *cryptobyte.Builder) { addBitString(b, bits[:n], unused) })
	return extension{id: oidExtKeyUsage, critical: true, value: v}, nil
}

func extKeyUsageExt(oids []asn1.ObjectIdentifier) extension {
	v := der(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			for _, o := range oids {
				b.AddASN1ObjectIdentifier(o)
			}
		})
	})
	return extension{id: oidExtExtKeyUsage, value: v}
}

func basicConstraintsExt(isCA bool, pathLen int) extension {
	v := der(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			if isCA {
				b.AddASN1Boolean(true)
				if pathLen >= 0 {
					b.AddASN1Int64(int64(pathLen))
				}
			}
		})
	})
	return extension{id: oidExtBasicConstraints, critical: true, value: v}
}

func subjectKeyIDExt(ski []byte) extension {
	return extension{id: oidExtSubjectKeyID, value: der(func(b *cryptobyte.Builder) { b.AddASN1OctetString(ski) })}
}

func authorityKeyIDExt(aki []byte) extension {
	v := der(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(aki) })
		})
	})
	return extension{id: oidExtAuthorityKeyID, value: v}
}

// sanExt encodes a SubjectAltName; critical when the subject is empty
// (RFC 5280 4.2.1.6).
func sanExt(dns, emails []string, ips []net.IP, uris []string, critical bool) extension {
	v := der(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			for _, e := range emails {
				b.AddASN1(cbasn1.Tag(1).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(e)) })
			}
			for _, d := range dns {
				b.AddASN1(cbasn1.Tag(2).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(d)) })
			}
			for _, u := range uris {
				b.AddASN1(cbasn1.Tag(6).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(u)) })
			}
			for _, ip := range ips {
				if v4 := ip.To4(); v4 != nil {
					ip = v4
				}
				b.AddASN1(cbasn1.Tag(7).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(ip) })
			}
		})
	})
	return extension{id: oidExtSAN, critical: critical, value: v}
}

func crlDPExt(url string) extension {
	// DistributionPoint { distributionPoint [0] { fullName [0] GeneralNames } }
	v := der(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.Tag(6).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(url)) })
					})
				})
			})
		})
	})
	return extension{id: oidExtCRLDP, value: v}
}

func aiaExt(ocspURL, caIssuersURL string) extension {
	v := der(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			for _, ad := range []struct {
				oid asn1.ObjectIdentifier
				url string
			}{{oidAccessOCSP, ocspURL}, {oidAccessCAIssuers, caIssuersURL}} {
				if ad.url == "" {
					continue
				}
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(ad.oid)
					b.AddASN1(cbasn1.Tag(6).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(ad.url)) })
				})
			}
		})
	})
	return extension{id: oidExtAIA, value: v}
}

func ocspNoCheckExt() extension {
	return extension{id: oidExtOCSPNoCheck, value: []byte{0x05, 0x00}}
}

// subjectKeyID is RFC 5280 method 1: SHA-1 of the subjectPublicKey bits.
func subjectKeyID(spki []byte) ([]byte, error) {
	pub, err := spkiPublicKeyBits(spki)
	if err != nil {
		return nil, err
	}
	h := sha1.Sum(pub)
	return h[:], nil
}

// spkiPublicKeyBits returns the contents of subjectPublicKey (without the
// unused-bits octet).
func spkiPublicKeyBits(spki []byte) ([]byte, error) {
	in := cryptobyte.String(spki)
	var seq, alg cryptobyte.String
	var bits asn1.BitString
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() ||
		!seq.ReadASN1(&alg, cbasn1.SEQUENCE) || !seq.ReadASN1BitString(&bits) || !seq.Empty() {
		return nil, fmt.Errorf("ca: malformed subjectPublicKeyInfo")
	}
	return bits.Bytes, nil
}
