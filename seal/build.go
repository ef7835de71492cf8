package seal

import (
	"bytes"
	"context"
	"crypto"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/gmtrust/gmtrust/internal/sigalg"
)

// SealSpec is the content of a new GB/T 38540 seal.
type SealSpec struct {
	ESID string // unique seal identifier, IA5 (ASCII)
	Vid  string // vendor identifier written in the header, IA5
	Type int    // seal type, > 0 (TypeOrganization, TypePersonal, ...)
	Name string // seal name, UTF-8
	// Certs are the DER certificates of the holders allowed to sign with
	// the seal (certListType 1). Alternatively CertDigests lists digests
	// of them (certListType 2); exactly one of the two must be non-empty.
	Certs       [][]byte
	CertDigests []CertDigest
	CreateDate  time.Time
	ValidStart  time.Time
	ValidEnd    time.Time
	Picture     Picture
	Extensions  []ExtData
}

// pictureKnown reports whether typ (lower case) is a picture type MakeSeal
// writes, and whether data looks like that type. These are the types seen
// in real seals; "ofd" is a seal appearance packaged as an OFD (zip)
// document.
func pictureKnown(typ string, data []byte) (known, matches bool) {
	switch typ {
	case "png":
		return true, bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n"))
	case "jpg", "jpeg":
		return true, bytes.HasPrefix(data, []byte{0xff, 0xd8, 0xff})
	case "gif":
		return true, bytes.HasPrefix(data, []byte("GIF87a")) || bytes.HasPrefix(data, []byte("GIF89a"))
	case "svg":
		head := data[:min(len(data), 1024)]
		return true, bytes.Contains(bytes.ToLower(head), []byte("<svg"))
	case "ofd":
		return true, bytes.HasPrefix(data, []byte("PK\x03\x04"))
	}
	return false, false
}

// checkPicture validates a picture for MakeSeal. The type is compared
// case-insensitively and written as given.
func checkPicture(p Picture) error {
	typ := strings.ToLower(p.Type)
	known, matches := pictureKnown(typ, p.Data)
	switch {
	case !known:
		return fmt.Errorf("%w: picture type %q (want png, jpg, gif, svg or ofd)", ErrInvalidSpec, p.Type)
	case len(p.Data) == 0:
		return fmt.Errorf("%w: empty picture", ErrInvalidSpec)
	case !matches:
		return fmt.Errorf("%w: picture data is not %s", ErrInvalidSpec, typ)
	case p.Width <= 0 || p.Height <= 0 || p.Width > 1000 || p.Height > 1000:
		return fmt.Errorf("%w: picture size %dx%d mm (want 1-1000 mm)", ErrInvalidSpec, p.Width, p.Height)
	}
	return nil
}

func isIA5(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func (spec *SealSpec) check() error {
	switch {
	case spec.ESID == "" || !isIA5(spec.ESID):
		return fmt.Errorf("%w: esID %q must be non-empty ASCII", ErrInvalidSpec, spec.ESID)
	case !isIA5(spec.Vid):
		return fmt.Errorf("%w: vid %q must be ASCII", ErrInvalidSpec, spec.Vid)
	case spec.Type <= 0:
		return fmt.Errorf("%w: seal type %d must be positive", ErrInvalidSpec, spec.Type)
	case spec.Name == "" || !utf8.ValidString(spec.Name):
		return fmt.Errorf("%w: name must be non-empty UTF-8", ErrInvalidSpec)
	case (len(spec.Certs) == 0) == (len(spec.CertDigests) == 0):
		return fmt.Errorf("%w: give holder certificates or certificate digests (exactly one of them)", ErrInvalidSpec)
	case spec.CreateDate.IsZero() || spec.ValidStart.IsZero() || spec.ValidEnd.IsZero():
		return fmt.Errorf("%w: createDate, validStart and validEnd are required", ErrInvalidSpec)
	case !spec.ValidStart.Before(spec.ValidEnd):
		return fmt.Errorf("%w: validStart %s is not before validEnd %s", ErrInvalidSpec, spec.ValidStart, spec.ValidEnd)
	case spec.CreateDate.Year() < 1 || spec.ValidEnd.Year() > 9999:
		return fmt.Errorf("%w: dates must lie in years 1-9999", ErrInvalidSpec)
	}
	for i, c := range spec.Certs {
		if _, err := smx509.ParseCertificate(c); err != nil {
			return fmt.Errorf("%w: holder certificate %d: %v", ErrInvalidSpec, i, err)
		}
	}
	for i, d := range spec.CertDigests {
		if _, ok := digestFunc(d.Type); !ok || !isPrintable([]byte(d.Type)) {
			return fmt.Errorf("%w: certificate digest %d: unsupported type %q", ErrInvalidSpec, i, d.Type)
		}
		if f, _ := digestFunc(d.Type); len(d.Value) != len(f(nil)) {
			return fmt.Errorf("%w: certificate digest %d: %d bytes, want %d", ErrInvalidSpec, i, len(d.Value), len(f(nil)))
		}
	}
	for i, e := range spec.Extensions {
		if len(e.ID) < 2 {
			return fmt.Errorf("%w: extension %d has no valid OID", ErrInvalidSpec, i)
		}
	}
	return checkPicture(spec.Picture)
}

// MakeSeal builds and signs a GB/T 38540-2020 seal (SESeal v4) and returns
// its DER. The maker signs DER(SES_SealInfo) with sigalg.Sign (SM2 keys
// sign with SM3 and the default ID). makerCertDER must hold the maker's
// public key and be valid at spec.CreateDate. Dates are written as UTC
// GeneralizedTime with whole seconds.
func MakeSeal(ctx context.Context, spec SealSpec, makerCertDER []byte, maker crypto.Signer) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Check the dates as they will be written: UTC, whole seconds.
	spec.CreateDate = spec.CreateDate.UTC().Truncate(time.Second)
	spec.ValidStart = spec.ValidStart.UTC().Truncate(time.Second)
	spec.ValidEnd = spec.ValidEnd.UTC().Truncate(time.Second)
	if err := spec.check(); err != nil {
		return nil, err
	}
	mc, err := smx509.ParseCertificate(makerCertDER)
	if err != nil {
		return nil, fmt.Errorf("%w: maker certificate: %v", ErrInvalidSpec, err)
	}
	if err := matchKey(makerCertDER, maker); err != nil {
		return nil, fmt.Errorf("maker: %w", err)
	}
	if spec.CreateDate.Before(mc.NotBefore) || spec.CreateDate.After(mc.NotAfter) {
		return nil, fmt.Errorf("%w: maker certificate is not valid at createDate %s", ErrInvalidSpec, spec.CreateDate.UTC().Format(time.RFC3339))
	}

	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // SES_SealInfo
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // SES_Header
			addString(b, tagIA5String, "ES")
			b.AddASN1Int64(VersionV4)
			addString(b, tagIA5String, spec.Vid)
		})
		addString(b, tagIA5String, spec.ESID)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // SES_ESPropertyInfo
			b.AddASN1Int64(int64(spec.Type))
			addString(b, cbasn1.UTF8String, spec.Name)
			if len(spec.Certs) > 0 {
				b.AddASN1Int64(CertListCertificates)
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					for _, c := range spec.Certs {
						b.AddASN1OctetString(c)
					}
				})
			} else {
				b.AddASN1Int64(CertListDigests)
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					for _, d := range spec.CertDigests {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							addString(b, tagPrintableString, d.Type)
							b.AddASN1OctetString(d.Value)
						})
					}
				})
			}
			b.AddASN1GeneralizedTime(spec.CreateDate)
			b.AddASN1GeneralizedTime(spec.ValidStart)
			b.AddASN1GeneralizedTime(spec.ValidEnd)
		})
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // SES_ESPictrueInfo
			addString(b, tagIA5String, spec.Picture.Type)
			b.AddASN1OctetString(spec.Picture.Data)
			b.AddASN1Int64(int64(spec.Picture.Width))
			b.AddASN1Int64(int64(spec.Picture.Height))
		})
		if len(spec.Extensions) > 0 {
			addExtensions(b, spec.Extensions)
		}
	})
	info, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("%w: encoding SES_SealInfo: %v", ErrInvalidSpec, err)
	}
	sig, alg, err := sigalg.Sign(maker, info)
	if err != nil {
		return nil, fmt.Errorf("seal: maker signature: %w", err)
	}
	var out cryptobyte.Builder
	out.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(info)
		b.AddASN1OctetString(makerCertDER)
		b.AddASN1ObjectIdentifier(alg.OID)
		b.AddASN1BitString(sig)
	})
	return out.Bytes()
}

func addString(b *cryptobyte.Builder, tag cbasn1.Tag, s string) {
	b.AddASN1(tag, func(b *cryptobyte.Builder) { b.AddBytes([]byte(s)) })
}

// addExtensions writes ExtensionDatas, omitting critical when FALSE as DER
// requires for a DEFAULT value.
func addExtensions(b *cryptobyte.Builder, exts []ExtData) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, e := range exts {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(e.ID)
				if e.Critical {
					b.AddASN1Boolean(true)
				}
				b.AddASN1OctetString(e.Value)
			})
		}
	})
}

// matchKey checks that signer's public key is the one certified in
// certDER, by comparing SubjectPublicKeyInfo encodings.
func matchKey(certDER []byte, signer crypto.Signer) error {
	spki, ok := spkiOf(certDER)
	if !ok {
		return fmt.Errorf("%w: certificate has no readable public key", ErrKeyMismatch)
	}
	mine, err := smx509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		return fmt.Errorf("%w: %v", ErrKeyMismatch, err)
	}
	if !bytes.Equal(spki, mine) {
		return ErrKeyMismatch
	}
	return nil
}

// Stamp signs dataHash (the SM3 digest of the protected document) with a
// v4 seal and returns the DER SES_Signature (GB/T 38540-2020). The signer
// signs DER(TBS_Sign). at is the signing time written in timeInfo (UTC,
// whole seconds).
//
// Stamp refuses a seal that is not v4 (ErrUnsupportedVersion), a signer
// certificate the seal's certList does not name (ErrSignerNotInSeal), a
// time outside the seal's validity (ErrSealNotValid), a dataHash that is
// not 32 bytes (ErrBadDataHash) and a signer whose key is not the
// certificate's (ErrKeyMismatch). It does not re-verify the maker's
// signature on the seal: seals come from the registry that made them, and
// Verify checks them at the relying party.
func Stamp(ctx context.Context, sealDER []byte, signerCertDER []byte, signer crypto.Signer, dataHash []byte, propertyInfo string, at time.Time) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkSize(sealDER); err != nil {
		return nil, err
	}
	s, err := parseSealDER(sealDER)
	if err != nil {
		return nil, err
	}
	if s.Version != VersionV4 {
		return nil, fmt.Errorf("%w: %d (only GB/T 38540 v4 seals are stamped)", ErrUnsupportedVersion, s.Version)
	}
	if len(dataHash) != 32 {
		return nil, fmt.Errorf("%w: got %d bytes", ErrBadDataHash, len(dataHash))
	}
	if !isIA5(propertyInfo) {
		return nil, fmt.Errorf("seal: propertyInfo must be ASCII (IA5String)")
	}
	if ok, why := signerInSeal(s, signerCertDER); !ok {
		return nil, fmt.Errorf("%w: %s", ErrSignerNotInSeal, why)
	}
	at = at.UTC().Truncate(time.Second)
	if at.Before(s.ValidStart) || at.After(s.ValidEnd) {
		return nil, fmt.Errorf("%w: %s not in %s..%s", ErrSealNotValid,
			at.Format(time.RFC3339), s.ValidStart.Format(time.RFC3339), s.ValidEnd.Format(time.RFC3339))
	}
	if err := matchKey(signerCertDER, signer); err != nil {
		return nil, err
	}
	return stampUnchecked(s.Raw, signerCertDER, signer, dataHash, propertyInfo, at)
}

// stampUnchecked builds and signs SES_Signature v4 without the checks of
// Stamp (tests use it to make signatures Stamp refuses).
func stampUnchecked(sealRaw, signerCertDER []byte, signer crypto.Signer, dataHash []byte, propertyInfo string, at time.Time) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(VersionV4)
		b.AddBytes(sealRaw)
		b.AddASN1GeneralizedTime(at.UTC())
		b.AddASN1BitString(dataHash)
		addString(b, tagIA5String, propertyInfo)
	})
	tbs, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("seal: encoding TBS_Sign: %w", err)
	}
	sig, alg, err := sigalg.Sign(signer, tbs)
	if err != nil {
		return nil, fmt.Errorf("seal: signer signature: %w", err)
	}
	var out cryptobyte.Builder
	out.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		b.AddASN1OctetString(signerCertDER)
		b.AddASN1ObjectIdentifier(alg.OID)
		b.AddASN1BitString(sig)
	})
	return out.Bytes()
}
