// Package seal reads, makes and verifies electronic seals and seal
// signatures in the GB/T 38540-2020 format ("v4"), and reads and verifies
// the older GM/T 0031-2014 format ("v1").
//
// A seal (SESeal, an .esl file) binds a picture and a list of holder
// certificates to a seal identity and is signed by a seal maker. A seal
// signature (SES_Signature) embeds the whole seal, the signing time and a
// hash of the protected document and is signed by one of the holders.
//
// Parsing keeps the original bytes of every signed structure: signatures
// are always verified over the bytes as received, never over a re-encoding,
// because real files carry encodings (explicit DEFAULT values) that a
// re-encoder would change.
//
// The package does no storage and no networking; trust anchors, revocation
// status and the seal registry are supplied by the caller through the small
// interfaces in trust.go.
package seal

import (
	"encoding/asn1"
	"errors"
	"time"
)

// MaxInputSize is the largest seal or seal signature the parsers accept.
// Real seals are a few KiB to a few tens of KiB (the picture dominates);
// 4 MiB leaves room for large pictures while bounding memory and work for
// hostile input.
const MaxInputSize = 4 << 20

// Format versions reported in Seal.Version, Signature.Version and
// Report.Version.
const (
	// VersionV1 is GM/T 0031-2014: SESeal = {SES_SealInfo, SES_SignInfo},
	// UTCTime dates, no certListType, TBS_Sign carries the signer cert.
	VersionV1 = 1
	// VersionV4 is GB/T 38540-2020: SESeal = {SES_SealInfo, cert,
	// signAlgID, signedValue}, GeneralizedTime dates.
	VersionV4 = 4
)

// Seal types (SES_ESPropertyInfo.type).
//
// GM/T 0031-2014 defines 1 (organisation seal, 单位印章) and 2 (personal
// seal, 个人印章); GB/T 38540-2020 keeps the INTEGER and leaves further
// values to the application. Real v4 files use higher values for kinds of
// organisation seals: 3 on an invoice seal (KingGrid 发票监制章, and the
// ofdrw test seal) and 4 on a contract seal (HebeiGede 合同专用章). The
// parser accepts any positive value; MakeSeal accepts any positive value
// too, so a registry can use its own codes above these two.
const (
	TypeOrganization = 1
	TypePersonal     = 2
)

// Certificate list types (SES_ESPropertyInfo.certListType, v4 only).
const (
	// CertListCertificates: certList is SEQUENCE OF OCTET STRING, each a
	// DER certificate of a holder.
	CertListCertificates = 1
	// CertListDigests: certList is SEQUENCE OF {type PrintableString,
	// value OCTET STRING}, each a digest of a holder certificate.
	CertListDigests = 2
)

// Sentinel errors. Parse errors wrap ErrMalformed; builder refusals wrap
// one of the others.
var (
	// ErrMalformed reports input that is not a well-formed seal or
	// signature (wrong tags, truncation, trailing data, bad lengths...).
	ErrMalformed = errors.New("seal: malformed")
	// ErrTooLarge reports input larger than MaxInputSize (wrapped together
	// with ErrMalformed).
	ErrTooLarge = errors.New("seal: input too large")
	// ErrInvalidSpec reports a SealSpec, certificate or key MakeSeal cannot
	// use.
	ErrInvalidSpec = errors.New("seal: invalid seal specification")
	// ErrUnsupportedVersion reports a seal Stamp cannot sign with (only v4
	// seals are made and stamped).
	ErrUnsupportedVersion = errors.New("seal: unsupported seal version")
	// ErrSignerNotInSeal reports a signer certificate that the seal's
	// certList does not name.
	ErrSignerNotInSeal = errors.New("seal: signer certificate not in the seal's certificate list")
	// ErrSealNotValid reports a signing time outside the seal's validity.
	ErrSealNotValid = errors.New("seal: signing time outside the seal's validity period")
	// ErrBadDataHash reports a data hash that is not a 32-byte SM3 value.
	ErrBadDataHash = errors.New("seal: data hash must be a 32-byte SM3 digest")
	// ErrKeyMismatch reports a signer whose public key is not the one in
	// the certificate it is used with.
	ErrKeyMismatch = errors.New("seal: signer key does not match certificate")
)

// Header is SES_Header.
type Header struct {
	ID      string // always "ES"
	Version int    // 4 for GB/T 38540, 1 for GM/T 0031
	Vid     string // vendor identifier
}

// Picture is SES_ESPictrueInfo (sic, the standard's spelling).
type Picture struct {
	Type   string // as in the file: "PNG", "png", "GIF", "ofd", ...
	Data   []byte
	Width  int // millimetres
	Height int // millimetres
}

// ExtData is one entry of ExtensionDatas.
type ExtData struct {
	ID       asn1.ObjectIdentifier
	Critical bool
	Value    []byte
}

// CertDigest is one entry of a v4 certList of type CertListDigests.
type CertDigest struct {
	Type  string // hash name as written, e.g. "sm3"
	Value []byte
}

// Seal is a parsed SESeal. Byte slices point into a private copy of the
// parsed input.
type Seal struct {
	// Version is the layout: VersionV4 or VersionV1.
	Version int
	// Raw is the whole SESeal; RawSealInfo is SES_SealInfo as received.
	Raw, RawSealInfo []byte
	// SignedBytes is what the maker signed: RawSealInfo for v4; for v1 the
	// DER SEQUENCE{SES_SealInfo, cert, signatureAlgorithm} built from the
	// elements as received.
	SignedBytes []byte

	Header       Header
	ESID         string
	Type         int
	Name         string
	CertListType int // v1 seals, which have no certListType, report CertListCertificates
	Certs        [][]byte
	CertDigests  []CertDigest
	CreateDate   time.Time
	ValidStart   time.Time
	ValidEnd     time.Time
	Picture      Picture
	Extensions   []ExtData

	MakerCert   []byte
	SignAlg     asn1.ObjectIdentifier
	SignedValue []byte

	// Deviations lists departures from the standard that the parser
	// tolerated because real files carry them (for example an explicit
	// critical FALSE, or a v1 certList entry that is not a certificate).
	// Signatures are still checked over the original bytes.
	Deviations []string
}

// Signature is a parsed SES_Signature. Byte slices point into a private
// copy of the parsed input.
type Signature struct {
	// Version is the layout: VersionV4 or VersionV1.
	Version int
	// Raw is the whole SES_Signature; RawTBS is TBS_Sign as received, the
	// bytes the signer signed.
	Raw, RawTBS []byte

	Seal *Seal
	// TimeInfo is the signing time claimed by the signer. v1 carries it
	// inside a BIT STRING (as DER UTCTime/GeneralizedTime or as text).
	TimeInfo     time.Time
	DataHash     []byte
	PropertyInfo string
	Extensions   []ExtData // v4 only

	SignerCert []byte
	SignAlg    asn1.ObjectIdentifier
	Value      []byte
	// TimeStamp is the optional v4 timeStamp (the content of the BIT
	// STRING); nil when absent.
	TimeStamp []byte

	// Deviations lists tolerated departures from the standard, including
	// those of the embedded seal.
	Deviations []string
}
