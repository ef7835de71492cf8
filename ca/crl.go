package ca

import (
	"fmt"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/gmtrust/gmtrust/internal/sigalg"
)

// crlParams is everything a TBSCertList needs besides the entries.
type crlParams struct {
	alg        sigalg.Alg
	issuer     []byte // DER Name of the CA
	aki        []byte // the CA's subject key identifier
	number     int64
	thisUpdate time.Time
	nextUpdate time.Time
}

// entryAppender encodes revokedCertificates entries straight into one
// buffer. A CRL can hold a million entries; going through cryptobyte's
// nested builders for each would cost several allocations per entry, and
// every entry is short enough (< 128 octets) for short-form lengths.
type entryAppender struct {
	buf []byte
	tmp []byte
}

func appendTLV(dst []byte, tag byte, content []byte) []byte {
	return append(append(dst, tag, byte(len(content))), content...)
}

func (a *entryAppender) add(e RevokedEntry) error {
	serial, err := serialDERContent(e.Serial)
	if err != nil {
		return err
	}
	c := a.tmp[:0]
	c = appendTLV(c, 0x02, serial)
	c = appendTime(c, e.RevokedAt)
	var exts []byte
	// RFC 5280 5.3.1: the reasonCode extension should be absent rather than
	// carry unspecified.
	if e.Reason != ReasonUnspecified {
		var ext []byte
		ext = appendTLV(ext, 0x06, oidReasonCodeDER)
		ext = appendTLV(ext, 0x04, []byte{0x0a, 0x01, byte(e.Reason)})
		exts = appendTLV(exts, 0x30, ext)
	}
	if !e.InvalidityDate.IsZero() {
		gt := e.InvalidityDate.UTC().AppendFormat(make([]byte, 0, 15), "20060102150405Z")
		var ext []byte
		ext = appendTLV(ext, 0x06, oidInvalidityDateDER)
		ext = appendTLV(ext, 0x04, appendTLV(nil, 0x18, gt))
		exts = appendTLV(exts, 0x30, ext)
	}
	if len(exts) > 0 {
		c = appendTLV(c, 0x30, exts)
	}
	if len(c) > 127 {
		return fmt.Errorf("ca: CRL entry for %s too long", e.Serial)
	}
	a.buf = appendTLV(a.buf, 0x30, c)
	a.tmp = c
	return nil
}

func appendTime(dst []byte, t time.Time) []byte {
	t = t.UTC()
	if y := t.Year(); y >= 1950 && y < 2050 {
		return appendTLV(dst, 0x17, t.AppendFormat(make([]byte, 0, 13), "060102150405Z"))
	}
	return appendTLV(dst, 0x18, t.AppendFormat(make([]byte, 0, 15), "20060102150405Z"))
}

// Content octets of the two entry-extension OIDs, 2.5.29.21 and 2.5.29.24.
var (
	oidReasonCodeDER     = []byte{0x55, 0x1d, 0x15}
	oidInvalidityDateDER = []byte{0x55, 0x1d, 0x18}
)

// marshalTBSCertList builds a v2 TBSCertList; entries is called once and
// feeds every revoked certificate through add.
func marshalTBSCertList(p crlParams, entries func(add func(RevokedEntry) error) error) ([]byte, error) {
	var app entryAppender
	if err := entries(app.add); err != nil {
		return nil, err
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(1) // v2
		p.alg.MarshalAlgorithmIdentifier(b)
		b.AddBytes(p.issuer)
		addTime(b, p.thisUpdate)
		addTime(b, p.nextUpdate)
		if len(app.buf) > 0 {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddBytes(app.buf) })
		}
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			addExtensions(b, []extension{
				authorityKeyIDExt(p.aki),
				{id: oidExtCRLNumber, value: der(func(b *cryptobyte.Builder) { b.AddASN1Int64(p.number) })},
			})
		})
	})
	return b.Bytes()
}
