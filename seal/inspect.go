package seal

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Summary describes a seal or seal signature for people (gmtrust seal
// inspect). It reports what the file says; it verifies nothing.
type Summary struct {
	Kind    string `json:"kind"` // "seal" or "signature"
	Version int    `json:"version"`

	Vid          string          `json:"vid"`
	ESID         string          `json:"esid"`
	Type         int             `json:"type"`
	Name         string          `json:"name"`
	CertListType int             `json:"cert_list_type"`
	Holders      []CertSummary   `json:"holders,omitempty"`
	Digests      []DigestSummary `json:"holder_digests,omitempty"`
	CreateDate   time.Time       `json:"create_date"`
	ValidStart   time.Time       `json:"valid_start"`
	ValidEnd     time.Time       `json:"valid_end"`
	Picture      PictureSummary  `json:"picture"`
	Extensions   []ExtSummary    `json:"extensions,omitempty"`
	Maker        CertSummary     `json:"maker"`
	SealSignAlg  string          `json:"seal_sign_alg"`

	// Signature fields; zero for a bare seal.
	Signer       *CertSummary `json:"signer,omitempty"`
	SignAlg      string       `json:"sign_alg,omitempty"`
	Time         time.Time    `json:"time,omitzero"`
	PropertyInfo string       `json:"property_info,omitempty"`
	DataHash     string       `json:"data_hash,omitempty"` // hex
	TimeStamp    bool         `json:"timestamp,omitempty"`

	Deviations []string `json:"deviations,omitempty"`
}

// CertSummary describes a certificate; Error is set when it cannot be read.
type CertSummary struct {
	Subject   string    `json:"subject,omitempty"`
	NotBefore time.Time `json:"not_before,omitzero"`
	NotAfter  time.Time `json:"not_after,omitzero"`
	SHA256    string    `json:"sha256"` // hex fingerprint of the DER
	Error     string    `json:"error,omitempty"`
}

// DigestSummary is a certList digest entry.
type DigestSummary struct {
	Type  string `json:"type"`
	Value string `json:"value"` // hex
}

// PictureSummary describes the seal picture without its bytes.
type PictureSummary struct {
	Type   string `json:"type"`
	Width  int    `json:"width_mm"`
	Height int    `json:"height_mm"`
	Size   int    `json:"size"`
	SHA256 string `json:"sha256"`
}

// ExtSummary describes one ExtData.
type ExtSummary struct {
	ID       string `json:"id"`
	Critical bool   `json:"critical"`
	Size     int    `json:"size"`
}

// Inspect parses a seal or a seal signature (it tells them apart by
// structure) and summarises it. Errors wrap ErrMalformed.
func Inspect(der []byte) (*Summary, error) {
	if err := checkSize(der); err != nil {
		return nil, err
	}
	// A SES_Signature starts with TBS_Sign, whose first field is an
	// INTEGER; a SESeal starts with SES_SealInfo, whose first field is
	// the SES_Header SEQUENCE.
	in := cryptobyte.String(der)
	var outer, first cryptobyte.String
	if in.ReadASN1(&outer, cbasn1.SEQUENCE) && outer.ReadASN1(&first, cbasn1.SEQUENCE) &&
		first.PeekASN1Tag(cbasn1.INTEGER) {
		sig, err := ParseSignature(der)
		if err != nil {
			return nil, err
		}
		sum := summarizeSeal(sig.Seal)
		sum.Kind = "signature"
		signer := certSummary(sig.SignerCert)
		sum.Signer = &signer
		sum.SignAlg = algName(sig.SignAlg)
		sum.Time = sig.TimeInfo
		sum.PropertyInfo = sig.PropertyInfo
		sum.DataHash = hex.EncodeToString(sig.DataHash)
		sum.TimeStamp = sig.TimeStamp != nil
		sum.Deviations = sig.Deviations
		return sum, nil
	}
	s, err := ParseSeal(der)
	if err != nil {
		return nil, err
	}
	return summarizeSeal(s), nil
}

func summarizeSeal(s *Seal) *Summary {
	pic := sha256.Sum256(s.Picture.Data)
	sum := &Summary{
		Kind:         "seal",
		Version:      s.Version,
		Vid:          s.Header.Vid,
		ESID:         s.ESID,
		Type:         s.Type,
		Name:         s.Name,
		CertListType: s.CertListType,
		CreateDate:   s.CreateDate,
		ValidStart:   s.ValidStart,
		ValidEnd:     s.ValidEnd,
		Picture: PictureSummary{
			Type: s.Picture.Type, Width: s.Picture.Width, Height: s.Picture.Height,
			Size: len(s.Picture.Data), SHA256: hex.EncodeToString(pic[:]),
		},
		Maker:       certSummary(s.MakerCert),
		SealSignAlg: algName(s.SignAlg),
		Deviations:  s.Deviations,
	}
	for _, c := range s.Certs {
		sum.Holders = append(sum.Holders, certSummary(c))
	}
	for _, d := range s.CertDigests {
		sum.Digests = append(sum.Digests, DigestSummary{Type: d.Type, Value: hex.EncodeToString(d.Value)})
	}
	for _, e := range s.Extensions {
		sum.Extensions = append(sum.Extensions, ExtSummary{ID: e.ID.String(), Critical: e.Critical, Size: len(e.Value)})
	}
	return sum
}

func certSummary(der []byte) CertSummary {
	fp := sha256.Sum256(der)
	cs := CertSummary{SHA256: hex.EncodeToString(fp[:])}
	info, err := parseCertInfo(der)
	if err != nil {
		cs.Error = err.Error()
		return cs
	}
	cs.Subject, cs.NotBefore, cs.NotAfter = info.subject, info.notBefore, info.notAfter
	if info.strictErr != nil {
		cs.Error = "read leniently; strict parsing fails: " + info.strictErr.Error()
	}
	return cs
}

// String renders the summary as aligned "field: value" lines.
func (s *Summary) String() string {
	var b strings.Builder
	line := func(k, format string, args ...any) {
		fmt.Fprintf(&b, "%-16s %s\n", k+":", fmt.Sprintf(format, args...))
	}
	std := "GB/T 38540-2020"
	if s.Version == VersionV1 {
		std = "GM/T 0031-2014"
	}
	line("kind", "%s v%d (%s)", s.Kind, s.Version, std)
	line("name", "%s", s.Name)
	line("esID", "%s", s.ESID)
	line("type", "%d", s.Type)
	line("vid", "%s", s.Vid)
	line("created", "%s", fmtTime(s.CreateDate))
	line("valid", "%s .. %s", fmtTime(s.ValidStart), fmtTime(s.ValidEnd))
	line("picture", "%s %dx%d mm, %d bytes, sha256 %s", s.Picture.Type, s.Picture.Width, s.Picture.Height, s.Picture.Size, s.Picture.SHA256)
	line("maker", "%s", certLine(s.Maker))
	line("seal alg", "%s", s.SealSignAlg)
	for i, h := range s.Holders {
		line(fmt.Sprintf("holder[%d]", i), "%s", certLine(h))
	}
	for i, d := range s.Digests {
		line(fmt.Sprintf("holder[%d]", i), "%s digest %s", d.Type, d.Value)
	}
	for i, e := range s.Extensions {
		line(fmt.Sprintf("ext[%d]", i), "%s critical=%t %d bytes", e.ID, e.Critical, e.Size)
	}
	if s.Kind == "signature" {
		if s.Signer != nil {
			line("signer", "%s", certLine(*s.Signer))
		}
		line("sign alg", "%s", s.SignAlg)
		line("time", "%s (claimed)", fmtTime(s.Time))
		line("propertyInfo", "%s", s.PropertyInfo)
		line("dataHash", "%s", s.DataHash)
		line("timeStamp", "%t", s.TimeStamp)
	}
	for _, d := range s.Deviations {
		line("deviation", "%s", d)
	}
	return b.String()
}

func certLine(c CertSummary) string {
	l := fmt.Sprintf("%s (valid %s..%s, sha256 %s)", c.Subject, fmtTime(c.NotBefore), fmtTime(c.NotAfter), c.SHA256)
	if c.Error != "" {
		l += " [" + c.Error + "]"
	}
	return l
}
