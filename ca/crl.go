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
	var sbuf [21]byte
	serial, err := appendSerialDER(sbuf[:0], e.Serial)
	if err != nil {
		return err
	}
	c := a.tmp[:0]
	c = appendTLV(c, 0x02, serial)
	c = appendTime(c, e.RevokedAt)
	// The extensions are written straight into c behind a placeholder
	// length octet: every part is short, so all lengths are one octet.
	extStart := -1
	if e.Reason != ReasonUnspecified || !e.InvalidityDate.IsZero() {
		c = append(c, 0x30, 0)
		extStart = len(c)
	}
	// RFC 5280 5.3.1: the reasonCode extension should be absent rather than
	// carry unspecified.
	if e.Reason != ReasonUnspecified {
		c = append(c, 0x30, 10, 0x06, 3)
		c = append(c, oidReasonCodeDER...)
		c = append(c, 0x04, 3, 0x0a, 1, byte(e.Reason))
	}
	if !e.InvalidityDate.IsZero() {
		c = append(c, 0x30, 24, 0x06, 3)
		c = append(c, oidInvalidityDateDER...)
		c = append(c, 0x04, 17, 0x18, 15)
		c = appendDigits(c, e.InvalidityDate.UTC(), true)
	}
	if extStart >= 0 {
		c[extStart-1] = byte(len(c) - extStart)
	}
	if len(c) > 127 {
		return fmt.Errorf("ca: CRL entry for %s too long", e.Serial)
	}
	a.buf = appendTLV(a.buf, 0x30, c)
	a.tmp = c
	return nil
}

// appendSerialDER appends the DER INTEGER content octets of a canonical
// hex serial without allocating (serials are at most 20 octets).
func appendSerialDER(dst []byte, s string) ([]byte, error) {
	if len(s) == 0 || len(s) > 40 {
		return nil, fmt.Errorf("%w: %q", ErrBadSerial, s)
	}
	var raw [20]byte
	n := (len(s) + 1) / 2
	for i := 0; i < len(s); i++ {
		v, ok := hexVal(s[len(s)-1-i])
		if !ok {
			return nil, fmt.Errorf("%w: %q", ErrBadSerial, s)
		}
		raw[n-1-i/2] |= v << (4 * (i % 2))
	}
	b := raw[:n]
	for len(b) > 1 && b[0] == 0 && b[1]&0x80 == 0 {
		b = b[1:]
	}
	if b[0]&0x80 != 0 {
		dst = append(dst, 0)
	}
	return append(dst, b...), nil
}

func hexVal(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func appendTime(dst []byte, t time.Time) []byte {
	t = t.UTC()
	if y := t.Year(); y >= 1950 && y < 2050 {
		return appendDigits(append(dst, 0x17, 13), t, false)
	}
	return appendDigits(append(dst, 0x18, 15), t, true)
}

// appendDigits writes YYMMDDHHMMSSZ (UTCTime) or YYYYMMDDHHMMSSZ
// (GeneralizedTime) for a UTC time; time.AppendFormat costs several times
// more, which shows at a million CRL entries.
func appendDigits(dst []byte, t time.Time, fullYear bool) []byte {
	y, mo, d := t.Date()
	h, mi, sec := t.Clock()
	two := func(b []byte, v int) []byte { return append(b, byte('0'+v/10), byte('0'+v%10)) }
	if fullYear {
		dst = two(dst, y/100)
	}
	dst = two(dst, y%100)
	dst = two(dst, int(mo))
	dst = two(dst, d)
	dst = two(dst, h)
	dst = two(dst, mi)
	dst = two(dst, sec)
	return append(dst, 'Z')
}

// Content octets of the two entry-extension OIDs, 2.5.29.21 and 2.5.29.24.
var (
	oidReasonCodeDER     = []byte{0x55, 0x1d, 0x15}
	oidInvalidityDateDER = []byte{0x55, 0x1d, 0x18}
)

// appendHeader appends a DER identifier and definite length.
func appendHeader(dst []byte, tag byte, n int) []byte {
	switch {
	case n < 0x80:
		return append(dst, tag, byte(n))
	case n < 1<<8:
		return append(dst, tag, 0x81, byte(n))
	case n < 1<<16:
		return append(dst, tag, 0x82, byte(n>>8), byte(n))
	case n < 1<<24:
		return append(dst, tag, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
	return append(dst, tag, 0x84, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// encodeCRL builds a v2 CRL: collect is called once and adds every
// revoked certificate to app (with app.add, or by appending the buffers of
// other appenders); sign signs the TBSCertList.
//
// A million-entry CRL is ~45 MB. Everything goes into one buffer: the
// entries are appended after a reserved prefix, and once their length is
// known the TBSCertList fields and the outer headers are written into
// that prefix right in front of them, so the entries are never copied
// into a second structure.
func encodeCRL(p crlParams, collect func(app *entryAppender) error, sign func(tbs []byte) ([]byte, error)) ([]byte, error) {
	var pre cryptobyte.Builder
	pre.AddASN1Int64(1) // v2
	p.alg.MarshalAlgorithmIdentifier(&pre)
	pre.AddBytes(p.issuer)
	addTime(&pre, p.thisUpdate)
	addTime(&pre, p.nextUpdate)
	fields, err := pre.Bytes()
	if err != nil {
		return nil, err
	}
	// Room for: outer header (≤ 6), TBS header (≤ 6), the fields, and the
	// entries' SEQUENCE header (≤ 6).
	reserve := len(fields) + 32
	app := entryAppender{buf: make([]byte, reserve, reserve+64<<10)}
	if err := collect(&app); err != nil {
		return nil, err
	}
	buf := app.buf
	entriesLen := len(buf) - reserve
	var post cryptobyte.Builder
	post.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
		addExtensions(b, []extension{
			authorityKeyIDExt(p.aki),
			{id: oidExtCRLNumber, value: der(func(b *cryptobyte.Builder) { b.AddASN1Int64(p.number) })},
		})
	})
	exts, err := post.Bytes()
	if err != nil {
		return nil, err
	}
	var head []byte
	if entriesLen > 0 {
		// RFC 5280: revokedCertificates is absent, not empty, when there
		// are no entries.
		head = appendHeader(nil, 0x30, entriesLen)
	}
	tbsContent := len(fields) + len(head) + entriesLen + len(exts)
	tbsHead := appendHeader(nil, 0x30, tbsContent)
	start := reserve - len(head) - len(fields) - len(tbsHead)
	copy(buf[start:], tbsHead)
	copy(buf[start+len(tbsHead):], fields)
	copy(buf[start+len(tbsHead)+len(fields):], head)
	buf = append(buf, exts...)
	sig, err := sign(buf[start:])
	if err != nil {
		return nil, err
	}
	var tail cryptobyte.Builder
	p.alg.MarshalAlgorithmIdentifier(&tail)
	addBitString(&tail, sig, 0)
	tailDER, err := tail.Bytes()
	if err != nil {
		return nil, err
	}
	outerHead := appendHeader(nil, 0x30, len(buf)-start+len(tailDER))
	start -= len(outerHead)
	if start < 0 {
		return nil, fmt.Errorf("ca: CRL header reserve too small")
	}
	copy(buf[start:], outerHead)
	buf = append(buf, tailDER...)
	return buf[start:], nil
}
