package seal

import (
	"bytes"
	"encoding/asn1"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Tags cryptobyte does not name.
const (
	tagPrintableString = cbasn1.Tag(19)
	tagIA5String       = cbasn1.IA5String
	tagContext0        = cbasn1.Tag(0xa0) // [0] constructed, context-specific
)

// ParseSeal parses a DER SESeal in the GB/T 38540-2020 (v4) or GM/T
// 0031-2014 (v1) layout. The input is copied; the result does not alias
// der. Errors wrap ErrMalformed.
func ParseSeal(der []byte) (*Seal, error) {
	if err := checkSize(der); err != nil {
		return nil, err
	}
	return parseSealDER(bytes.Clone(der))
}

// ParseSignature parses a DER SES_Signature in the v4 or v1 layout,
// including the embedded seal. The input is copied; the result does not
// alias der. Errors wrap ErrMalformed.
func ParseSignature(der []byte) (*Signature, error) {
	if err := checkSize(der); err != nil {
		return nil, err
	}
	return parseSignatureDER(bytes.Clone(der))
}

func checkSize(der []byte) error {
	if len(der) == 0 {
		return fmt.Errorf("%w: empty input", ErrMalformed)
	}
	if len(der) > MaxInputSize {
		return fmt.Errorf("%w: %w: %d bytes (limit %d)", ErrMalformed, ErrTooLarge, len(der), MaxInputSize)
	}
	return nil
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// parseSealDER parses der without copying it.
func parseSealDER(der []byte) (*Seal, error) {
	in := cryptobyte.String(der)
	var elem cryptobyte.String
	if !in.ReadASN1Element(&elem, cbasn1.SEQUENCE) {
		return nil, malformed("SESeal: not a DER SEQUENCE")
	}
	if !in.Empty() {
		return nil, malformed("SESeal: %d bytes of trailing data", len(in))
	}
	return parseSealElement(elem)
}

// parseSealElement parses one SESeal element (tag and length included).
func parseSealElement(elem cryptobyte.String) (*Seal, error) {
	s := &Seal{Raw: elem}
	var body cryptobyte.String
	if !elem.ReadASN1(&body, cbasn1.SEQUENCE) {
		return nil, malformed("SESeal: not a SEQUENCE")
	}
	var info cryptobyte.String
	if !body.ReadASN1Element(&info, cbasn1.SEQUENCE) {
		return nil, malformed("SESeal: eSealInfo: not a SEQUENCE")
	}
	s.RawSealInfo = info
	if err := s.parseSealInfo(info); err != nil {
		return nil, err
	}

	switch {
	case body.PeekASN1Tag(cbasn1.OCTET_STRING):
		// GB/T 38540: cert, signAlgID and signedValue follow directly.
		if s.Header.Version != VersionV4 {
			return nil, malformed("SESeal: GB/T 38540 layout with header version %d (want 4)", s.Header.Version)
		}
		s.Version = VersionV4
		if !body.ReadASN1Bytes(&s.MakerCert, cbasn1.OCTET_STRING) {
			return nil, malformed("SESeal: cert: not an OCTET STRING")
		}
		if !body.ReadASN1ObjectIdentifier(&s.SignAlg) {
			return nil, malformed("SESeal: signAlgID: not an OBJECT IDENTIFIER")
		}
		if !body.ReadASN1BitStringAsBytes(&s.SignedValue) {
			return nil, malformed("SESeal: signedValue: not a BIT STRING of whole bytes")
		}
		s.SignedBytes = s.RawSealInfo
	case body.PeekASN1Tag(cbasn1.SEQUENCE):
		// GM/T 0031: SES_SignInfo {cert, signatureAlgorithm, signData}.
		if s.Header.Version >= VersionV4 {
			return nil, malformed("SESeal: GM/T 0031 layout with header version %d", s.Header.Version)
		}
		s.Version = VersionV1
		var si, certElem, algElem cryptobyte.String
		if !body.ReadASN1(&si, cbasn1.SEQUENCE) {
			return nil, malformed("SESeal: signInfo: not a SEQUENCE")
		}
		if !si.ReadASN1Element(&certElem, cbasn1.OCTET_STRING) {
			return nil, malformed("SESeal: signInfo.cert: not an OCTET STRING")
		}
		if !si.ReadASN1Element(&algElem, cbasn1.OBJECT_IDENTIFIER) {
			return nil, malformed("SESeal: signInfo.signatureAlgorithm: not an OBJECT IDENTIFIER")
		}
		if !si.ReadASN1BitStringAsBytes(&s.SignedValue) {
			return nil, malformed("SESeal: signInfo.signData: not a BIT STRING of whole bytes")
		}
		if !si.Empty() {
			return nil, malformed("SESeal: signInfo: unexpected trailing element")
		}
		c, a := certElem, algElem
		if !c.ReadASN1Bytes(&s.MakerCert, cbasn1.OCTET_STRING) || !a.ReadASN1ObjectIdentifier(&s.SignAlg) {
			return nil, malformed("SESeal: signInfo: bad cert or algorithm")
		}
		// GM/T 0031 has the maker sign SEQUENCE{SES_SealInfo, cert,
		// signatureAlgorithm}; rebuild only the outer header and keep
		// the three elements byte for byte.
		var b cryptobyte.Builder
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddBytes(s.RawSealInfo)
			b.AddBytes(certElem)
			b.AddBytes(algElem)
		})
		signed, err := b.Bytes()
		if err != nil {
			return nil, malformed("SESeal: %v", err)
		}
		s.SignedBytes = signed
	default:
		return nil, malformed("SESeal: expected cert (v4) or signInfo (v1) after eSealInfo")
	}
	if !body.Empty() {
		return nil, malformed("SESeal: unexpected trailing element")
	}
	return s, nil
}

func (s *Seal) deviate(format string, args ...any) {
	s.Deviations = append(s.Deviations, fmt.Sprintf(format, args...))
}

func (s *Seal) parseSealInfo(info cryptobyte.String) error {
	var body cryptobyte.String
	if !info.ReadASN1(&body, cbasn1.SEQUENCE) {
		return malformed("SES_SealInfo: not a SEQUENCE")
	}

	var hdr cryptobyte.String
	if !body.ReadASN1(&hdr, cbasn1.SEQUENCE) {
		return malformed("SES_Header: not a SEQUENCE")
	}
	var err error
	if s.Header.ID, err = readIA5(&hdr, "SES_Header.ID"); err != nil {
		return err
	}
	if s.Header.ID != "ES" {
		return malformed("SES_Header.ID is %q, want \"ES\"", s.Header.ID)
	}
	if s.Header.Version, err = readInt(&hdr, "SES_Header.version"); err != nil {
		return err
	}
	if s.Header.Version != VersionV4 && (s.Header.Version < 1 || s.Header.Version > 3) {
		return malformed("SES_Header.version %d is neither 4 (GB/T 38540) nor 1-3 (GM/T 0031)", s.Header.Version)
	}
	if s.Header.Vid, err = readIA5(&hdr, "SES_Header.Vid"); err != nil {
		return err
	}
	if !hdr.Empty() {
		return malformed("SES_Header: unexpected trailing element")
	}

	if s.ESID, err = readIA5(&body, "esID"); err != nil {
		return err
	}
	var prop cryptobyte.String
	if !body.ReadASN1(&prop, cbasn1.SEQUENCE) {
		return malformed("SES_ESPropertyInfo: not a SEQUENCE")
	}
	if s.Header.Version == VersionV4 {
		err = s.parsePropertyV4(prop)
	} else {
		err = s.parsePropertyV1(prop)
	}
	if err != nil {
		return err
	}

	var pic cryptobyte.String
	if !body.ReadASN1(&pic, cbasn1.SEQUENCE) {
		return malformed("SES_ESPictrueInfo: not a SEQUENCE")
	}
	if s.Picture.Type, err = readIA5(&pic, "picture.type"); err != nil {
		return err
	}
	if !pic.ReadASN1Bytes(&s.Picture.Data, cbasn1.OCTET_STRING) {
		return malformed("picture.data: not an OCTET STRING")
	}
	if s.Picture.Width, err = readNonNegInt(&pic, "picture.width"); err != nil {
		return err
	}
	if s.Picture.Height, err = readNonNegInt(&pic, "picture.height"); err != nil {
		return err
	}
	if !pic.Empty() {
		return malformed("SES_ESPictrueInfo: unexpected trailing element")
	}

	if body.PeekASN1Tag(cbasn1.SEQUENCE) {
		var ext cryptobyte.String
		body.ReadASN1(&ext, cbasn1.SEQUENCE)
		if s.Extensions, err = parseExtensions(ext, "SES_SealInfo.extDatas", s.deviate); err != nil {
			return err
		}
	}
	if !body.Empty() {
		return malformed("SES_SealInfo: unexpected trailing element")
	}
	return nil
}

func (s *Seal) parsePropertyV4(prop cryptobyte.String) error {
	var err error
	if s.Type, err = readInt(&prop, "property.type"); err != nil {
		return err
	}
	if s.Name, err = readUTF8(&prop, "property.name"); err != nil {
		return err
	}
	if s.CertListType, err = readInt(&prop, "property.certListType"); err != nil {
		return err
	}
	var list cryptobyte.String
	if !prop.ReadASN1(&list, cbasn1.SEQUENCE) {
		return malformed("property.certList: not a SEQUENCE")
	}
	switch s.CertListType {
	case CertListCertificates:
		for i := 0; !list.Empty(); i++ {
			var c []byte
			if !list.ReadASN1Bytes(&c, cbasn1.OCTET_STRING) {
				return malformed("property.certList[%d]: not an OCTET STRING", i)
			}
			s.Certs = append(s.Certs, c)
		}
	case CertListDigests:
		for i := 0; !list.Empty(); i++ {
			var d cryptobyte.String
			var cd CertDigest
			var typ []byte
			if !list.ReadASN1(&d, cbasn1.SEQUENCE) ||
				!d.ReadASN1Bytes(&typ, tagPrintableString) ||
				!d.ReadASN1Bytes(&cd.Value, cbasn1.OCTET_STRING) || !d.Empty() {
				return malformed("property.certList[%d]: not a SEQUENCE{PrintableString, OCTET STRING}", i)
			}
			if !isPrintable(typ) {
				return malformed("property.certList[%d].type: invalid PrintableString", i)
			}
			cd.Type = string(typ)
			s.CertDigests = append(s.CertDigests, cd)
		}
	default:
		return malformed("property.certListType %d (want 1 or 2)", s.CertListType)
	}
	for _, f := range []struct {
		t    *time.Time
		name string
	}{{&s.CreateDate, "createDate"}, {&s.ValidStart, "validStart"}, {&s.ValidEnd, "validEnd"}} {
		if *f.t, err = readGeneralizedTime(&prop, "property."+f.name); err != nil {
			return err
		}
	}
	if !prop.Empty() {
		return malformed("SES_ESPropertyInfo: unexpected trailing element")
	}
	return nil
}

func (s *Seal) parsePropertyV1(prop cryptobyte.String) error {
	var err error
	if s.Type, err = readInt(&prop, "property.type"); err != nil {
		return err
	}
	if s.Name, err = readUTF8(&prop, "property.name"); err != nil {
		return err
	}
	s.CertListType = CertListCertificates
	var list cryptobyte.String
	if !prop.ReadASN1(&list, cbasn1.SEQUENCE) {
		return malformed("property.certList: not a SEQUENCE")
	}
	for i := 0; !list.Empty(); i++ {
		var tag cbasn1.Tag
		var c cryptobyte.String
		if !list.ReadAnyASN1(&c, &tag) {
			return malformed("property.certList[%d]: bad element", i)
		}
		switch tag {
		case cbasn1.OCTET_STRING:
			s.Certs = append(s.Certs, []byte(c))
		case tagIA5String, tagPrintableString, cbasn1.UTF8String:
			// Seen in a vendor's v1 seal: a string where a certificate
			// belongs. Keep parsing so the maker signature can be
			// checked; the entry names no certificate.
			s.deviate("certList[%d] is a string (%q), not a certificate", i, truncate(string(c), 32))
		default:
			return malformed("property.certList[%d]: tag %#x, want OCTET STRING", i, uint8(tag))
		}
	}
	for _, f := range []struct {
		t    *time.Time
		name string
	}{{&s.CreateDate, "createDate"}, {&s.ValidStart, "validStart"}, {&s.ValidEnd, "validEnd"}} {
		if *f.t, err = readUTCTime(&prop, "property."+f.name); err != nil {
			return err
		}
	}
	if !prop.Empty() {
		return malformed("SES_ESPropertyInfo: unexpected trailing element")
	}
	return nil
}

// parseExtensions parses the content of ExtensionDatas.
func parseExtensions(ext cryptobyte.String, what string, deviate func(string, ...any)) ([]ExtData, error) {
	var out []ExtData
	for i := 0; !ext.Empty(); i++ {
		var e cryptobyte.String
		var d ExtData
		if !ext.ReadASN1(&e, cbasn1.SEQUENCE) {
			return nil, malformed("%s[%d]: not a SEQUENCE", what, i)
		}
		if !e.ReadASN1ObjectIdentifier(&d.ID) {
			return nil, malformed("%s[%d].extnID: not an OBJECT IDENTIFIER", what, i)
		}
		if e.PeekASN1Tag(cbasn1.BOOLEAN) {
			if !e.ReadASN1Boolean(&d.Critical) {
				return nil, malformed("%s[%d].critical: invalid BOOLEAN", what, i)
			}
			if !d.Critical {
				// DER omits DEFAULT values; real files write it anyway.
				deviate("%s[%d] (%s) encodes critical FALSE explicitly", what, i, d.ID)
			}
		}
		if !e.ReadASN1Bytes(&d.Value, cbasn1.OCTET_STRING) {
			return nil, malformed("%s[%d].extnValue: not an OCTET STRING", what, i)
		}
		if !e.Empty() {
			return nil, malformed("%s[%d]: unexpected trailing element", what, i)
		}
		out = append(out, d)
	}
	return out, nil
}

// parseSignatureDER parses der without copying it.
func parseSignatureDER(der []byte) (*Signature, error) {
	in := cryptobyte.String(der)
	var elem, body cryptobyte.String
	if !in.ReadASN1Element(&elem, cbasn1.SEQUENCE) {
		return nil, malformed("SES_Signature: not a DER SEQUENCE")
	}
	if !in.Empty() {
		return nil, malformed("SES_Signature: %d bytes of trailing data", len(in))
	}
	sig := &Signature{Raw: elem}
	outer := elem
	outer.ReadASN1(&body, cbasn1.SEQUENCE) // cannot fail: elem was read as a SEQUENCE

	var tbs cryptobyte.String
	if !body.ReadASN1Element(&tbs, cbasn1.SEQUENCE) {
		return nil, malformed("TBS_Sign: not a SEQUENCE")
	}
	sig.RawTBS = tbs
	var t cryptobyte.String
	tbs.ReadASN1(&t, cbasn1.SEQUENCE) // cannot fail, as above

	tbsVersion, err := readInt(&t, "TBS_Sign.version")
	if err != nil {
		return nil, err
	}
	var sealElem cryptobyte.String
	if !t.ReadASN1Element(&sealElem, cbasn1.SEQUENCE) {
		return nil, malformed("TBS_Sign.eseal: not a SEQUENCE")
	}
	if sig.Seal, err = parseSealElement(sealElem); err != nil {
		return nil, fmt.Errorf("TBS_Sign.eseal: %w", err)
	}
	if tbsVersion != sig.Seal.Header.Version {
		return nil, malformed("TBS_Sign.version %d differs from the seal's version %d", tbsVersion, sig.Seal.Header.Version)
	}
	sig.Version = sig.Seal.Version

	if sig.Version == VersionV4 {
		err = sig.parseV4(t, body)
	} else {
		err = sig.parseV1(t, body)
	}
	if err != nil {
		return nil, err
	}
	sig.Deviations = append(append([]string(nil), sig.Seal.Deviations...), sig.Deviations...)
	return sig, nil
}

func (sig *Signature) deviate(format string, args ...any) {
	sig.Deviations = append(sig.Deviations, fmt.Sprintf(format, args...))
}

// parseV4 parses the rest of a GB/T 38540 TBS_Sign (t) and SES_Signature
// (body).
func (sig *Signature) parseV4(t, body cryptobyte.String) error {
	var err error
	if sig.TimeInfo, err = readGeneralizedTime(&t, "TBS_Sign.timeInfo"); err != nil {
		return err
	}
	if !t.ReadASN1BitStringAsBytes(&sig.DataHash) {
		return malformed("TBS_Sign.dataHash: not a BIT STRING of whole bytes")
	}
	if sig.PropertyInfo, err = readIA5(&t, "TBS_Sign.propertyInfo"); err != nil {
		return err
	}
	if t.PeekASN1Tag(tagContext0) {
		var wrap, ext cryptobyte.String
		t.ReadASN1(&wrap, tagContext0)
		if !wrap.ReadASN1(&ext, cbasn1.SEQUENCE) || !wrap.Empty() {
			return malformed("TBS_Sign.extDatas: [0] does not hold one SEQUENCE")
		}
		if sig.Extensions, err = parseExtensions(ext, "TBS_Sign.extDatas", sig.deviate); err != nil {
			return err
		}
	}
	if !t.Empty() {
		return malformed("TBS_Sign: unexpected trailing element")
	}

	if !body.ReadASN1Bytes(&sig.SignerCert, cbasn1.OCTET_STRING) {
		return malformed("SES_Signature.cert: not an OCTET STRING")
	}
	if !body.ReadASN1ObjectIdentifier(&sig.SignAlg) {
		return malformed("SES_Signature.signatureAlgID: not an OBJECT IDENTIFIER")
	}
	if !body.ReadASN1BitStringAsBytes(&sig.Value) {
		return malformed("SES_Signature.signature: not a BIT STRING of whole bytes")
	}
	if body.PeekASN1Tag(tagContext0) {
		var wrap cryptobyte.String
		body.ReadASN1(&wrap, tagContext0)
		if !wrap.ReadASN1BitStringAsBytes(&sig.TimeStamp) || !wrap.Empty() {
			return malformed("SES_Signature.timeStamp: [0] does not hold one BIT STRING of whole bytes")
		}
		if sig.TimeStamp == nil {
			sig.TimeStamp = []byte{}
		}
	}
	if !body.Empty() {
		return malformed("SES_Signature: unexpected trailing element")
	}
	return nil
}

// parseV1 parses the rest of a GM/T 0031 TBS_Sign (t) and SES_Signature
// (body).
func (sig *Signature) parseV1(t, body cryptobyte.String) error {
	var timeBits []byte
	if !t.ReadASN1BitStringAsBytes(&timeBits) {
		return malformed("TBS_Sign.timeInfo: not a BIT STRING of whole bytes")
	}
	var err error
	if sig.TimeInfo, err = sig.parseV1Time(timeBits); err != nil {
		return err
	}
	if !t.ReadASN1BitStringAsBytes(&sig.DataHash) {
		return malformed("TBS_Sign.dataHash: not a BIT STRING of whole bytes")
	}
	if sig.PropertyInfo, err = readIA5(&t, "TBS_Sign.propertyInfo"); err != nil {
		return err
	}
	if !t.ReadASN1Bytes(&sig.SignerCert, cbasn1.OCTET_STRING) {
		return malformed("TBS_Sign.cert: not an OCTET STRING")
	}
	if !t.ReadASN1ObjectIdentifier(&sig.SignAlg) {
		return malformed("TBS_Sign.signatureAlgorithm: not an OBJECT IDENTIFIER")
	}
	if !t.Empty() {
		return malformed("TBS_Sign: unexpected trailing element")
	}
	if !body.ReadASN1BitStringAsBytes(&sig.Value) {
		return malformed("SES_Signature.signature: not a BIT STRING of whole bytes")
	}
	if !body.Empty() {
		return malformed("SES_Signature: unexpected trailing element")
	}
	return nil
}

// parseV1Time reads a GM/T 0031 timeInfo. The standard only says BIT
// STRING; implementations put a DER UTCTime or GeneralizedTime inside, and
// at least one vendor an ISO 8601 text.
func (sig *Signature) parseV1Time(b []byte) (time.Time, error) {
	s := cryptobyte.String(b)
	switch {
	case s.PeekASN1Tag(cbasn1.UTCTime):
		t, err := readUTCTime(&s, "TBS_Sign.timeInfo")
		if err == nil && s.Empty() {
			return t, nil
		}
	case s.PeekASN1Tag(cbasn1.GeneralizedTime):
		t, err := readGeneralizedTime(&s, "TBS_Sign.timeInfo")
		if err == nil && s.Empty() {
			return t, nil
		}
	}
	if len(b) <= 40 && isPrintable(b) {
		text := string(b)
		for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05", "20060102150405Z0700", "060102150405Z0700"} {
			if t, err := time.Parse(layout, text); err == nil {
				sig.deviate("timeInfo is text %q inside the BIT STRING", text)
				return t, nil
			}
		}
	}
	return time.Time{}, malformed("TBS_Sign.timeInfo: no recognisable time in the BIT STRING")
}

func readIA5(s *cryptobyte.String, what string) (string, error) {
	var b []byte
	if !s.ReadASN1Bytes(&b, tagIA5String) {
		return "", malformed("%s: not an IA5String", what)
	}
	for _, c := range b {
		if c >= 0x80 {
			return "", malformed("%s: IA5String with non-ASCII byte %#x", what, c)
		}
	}
	return string(b), nil
}

func readUTF8(s *cryptobyte.String, what string) (string, error) {
	var b []byte
	if !s.ReadASN1Bytes(&b, cbasn1.UTF8String) {
		return "", malformed("%s: not a UTF8String", what)
	}
	if !utf8.Valid(b) {
		return "", malformed("%s: invalid UTF-8", what)
	}
	return string(b), nil
}

// readInt reads an INTEGER that must fit in 32 bits; no field of these
// formats needs more, and a bound keeps arithmetic on it safe.
func readInt(s *cryptobyte.String, what string) (int, error) {
	var v int32
	if !s.ReadASN1Integer(&v) {
		return 0, malformed("%s: not a (32-bit, minimally encoded) INTEGER", what)
	}
	return int(v), nil
}

func readNonNegInt(s *cryptobyte.String, what string) (int, error) {
	v, err := readInt(s, what)
	if err == nil && v < 0 {
		err = malformed("%s: negative value %d", what, v)
	}
	return v, err
}

// readGeneralizedTime reads a GeneralizedTime in UTC ("Z"), with optional
// fractional seconds, as DER writes it.
func readGeneralizedTime(s *cryptobyte.String, what string) (time.Time, error) {
	if s.PeekASN1Tag(cbasn1.UTCTime) {
		return time.Time{}, malformed("%s: UTCTime where GB/T 38540 requires GeneralizedTime", what)
	}
	var b []byte
	if !s.ReadASN1Bytes(&b, cbasn1.GeneralizedTime) {
		return time.Time{}, malformed("%s: not a GeneralizedTime", what)
	}
	str := string(b)
	if len(str) < 15 || str[len(str)-1] != 'Z' || !isDigits(str[:14]) {
		return time.Time{}, malformed("%s: GeneralizedTime %q is not YYYYMMDDHHMMSS[.f]Z", what, truncate(str, 32))
	}
	t, err := time.Parse("20060102150405Z", str)
	if err != nil {
		return time.Time{}, malformed("%s: GeneralizedTime %q: %v", what, truncate(str, 32), err)
	}
	return t, nil
}

// readUTCTime reads a UTCTime ("YYMMDDHHMMSSZ"); years 50-99 are 19xx.
func readUTCTime(s *cryptobyte.String, what string) (time.Time, error) {
	var t time.Time
	if !s.ReadASN1UTCTime(&t) {
		return time.Time{}, malformed("%s: not a UTCTime", what)
	}
	return t, nil
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// isPrintable reports whether b holds only PrintableString characters
// (X.680), which also covers the ASCII times parseV1Time accepts.
func isPrintable(b []byte) bool {
	for _, c := range b {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte(" '()+,-./:=?", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// oidString prints an OID, tolerating nil.
func oidString(oid asn1.ObjectIdentifier) string {
	if len(oid) == 0 {
		return "(none)"
	}
	return oid.String()
}
