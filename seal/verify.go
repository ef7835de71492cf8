package seal

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"

	"github.com/gmtrust/gmtrust/internal/sigalg"
)

// VerifyOptions configures Verify and VerifySeal. Every field is optional;
// what is missing shows in the report (no trust anchors or no revocation
// checker make the verdict indeterminate at best).
type VerifyOptions struct {
	// Data is the protected document; when non-nil (an empty document is
	// []byte{}), its SM3 digest must equal TBS_Sign.dataHash.
	Data []byte
	// Digest is the SM3 digest of the protected document, for callers
	// that hashed it themselves. When both are given they must agree.
	Digest []byte
	// Trust checks the certificate chains of the signer and the maker.
	Trust TrustChecker
	// Revocation checks the revocation status of both certificates.
	Revocation RevocationChecker
	// SealStatus, when set, is asked whether the seal is still in force.
	SealStatus SealStatus
	// Cache, when set, is shared by calls to skip repeated certificate
	// parsing and repeated maker-signature verification.
	Cache *Cache
	// Now returns the current time; nil means time.Now. Bare seals are
	// judged at Now; signatures at their signing time, which must not lie
	// in the future.
	Now func() time.Time
}

// Verdicts.
const (
	VerdictValid         = "valid"
	VerdictInvalid       = "invalid"
	VerdictIndeterminate = "indeterminate"
)

// Check names, in the order checks appear in a Report.
const (
	CheckStructure     = "structure"      // structure and version
	CheckSealSignature = "seal_signature" // maker signature on the seal
	CheckSealValidity  = "seal_validity"  // seal validity period at the signing time (bare seal: now)
	CheckSignerInSeal  = "signer_in_seal" // signer certificate named by the seal's certList
	CheckSignature     = "signature"      // signer signature over TBS_Sign
	CheckDataHash      = "data_hash"      // SM3 of the document equals dataHash (only when data or digest given)
	CheckChain         = "chain"          // signer and maker certificates chain to a trusted root
	CheckRevocation    = "revocation"     // revocation status of both certificates at the signing time
	CheckSealStatus    = "seal_status"    // registry state of the seal (only with a SealStatus)
	CheckTimestamp     = "timestamp"      // timeStamp field (only when present)
)

// Check results.
const (
	ResultPass          = "pass"
	ResultFail          = "fail"
	ResultIndeterminate = "indeterminate" // information missing: trust, revocation, registry
	ResultNotChecked    = "not_checked"   // present but not evaluated; does not affect the verdict
)

// Check is one line of a Report.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Result string `json:"result"`
	Detail string `json:"detail"`
}

// SealSummary identifies the seal in a Report.
type SealSummary struct {
	Name       string    `json:"name"`
	ESID       string    `json:"esid"`
	Type       int       `json:"type"`
	ValidStart time.Time `json:"valid_start"`
	ValidEnd   time.Time `json:"valid_end"`
	Maker      string    `json:"maker"` // maker certificate subject
}

// Report is the outcome of Verify or VerifySeal.
type Report struct {
	Verdict string `json:"verdict"`
	// Reason names the checks that decided a verdict other than valid.
	Reason       string       `json:"reason,omitempty"`
	Version      int          `json:"version,omitempty"`
	Seal         *SealSummary `json:"seal,omitempty"`
	Signer       string       `json:"signer,omitempty"` // signer certificate subject
	Time         time.Time    `json:"time,omitzero"`    // signing time as claimed
	PropertyInfo string       `json:"property_info,omitempty"`
	Checks       []Check      `json:"checks"`
}

// Failed reports whether the check named name is present and not OK.
func (r *Report) Failed(name string) bool {
	for _, c := range r.Checks {
		if c.Name == name {
			return !c.OK
		}
	}
	return false
}

// Find returns the check named name.
func (r *Report) Find(name string) (Check, bool) {
	for _, c := range r.Checks {
		if c.Name == name {
			return c, true
		}
	}
	return Check{}, false
}

func (r *Report) add(name, result, detail string) {
	r.Checks = append(r.Checks, Check{Name: name, OK: result == ResultPass, Result: result, Detail: detail})
}

// finish derives the verdict: any failed check makes it invalid; else any
// indeterminate check makes it indeterminate; else it is valid.
func (r *Report) finish() *Report {
	var failed, unsure []string
	for _, c := range r.Checks {
		switch c.Result {
		case ResultFail:
			failed = append(failed, c.Name)
		case ResultIndeterminate:
			unsure = append(unsure, c.Name)
		}
	}
	switch {
	case len(failed) > 0:
		r.Verdict, r.Reason = VerdictInvalid, "failed: "+strings.Join(failed, ", ")
	case len(unsure) > 0:
		r.Verdict, r.Reason = VerdictIndeterminate, "undecided: "+strings.Join(unsure, ", ")
	default:
		r.Verdict = VerdictValid
	}
	return r
}

// futureSkew is how far a signing time may lie ahead of the verifier's
// clock before it is rejected.
const futureSkew = 5 * time.Minute

// Verify checks a seal signature (SES_Signature, v4 or v1) and reports
// every check. It never panics and never returns nil: input that does not
// parse gives verdict invalid with the structure check failing.
//
// The signer certificate is judged at the signing time (timeInfo), the
// maker certificate's validity period at the seal's createDate (when the
// maker signed) and its revocation status at the signing time. timeInfo is
// the signer's claim: a timeStamp, if present, is reported but not
// verified.
func Verify(ctx context.Context, sigDER []byte, opts VerifyOptions) *Report {
	r := &Report{}
	sig, err := ParseSignature(sigDER)
	if err != nil {
		r.add(CheckStructure, ResultFail, err.Error())
		return r.finish()
	}
	s := sig.Seal
	now := opts.now()
	r.Version, r.Time, r.PropertyInfo = sig.Version, sig.TimeInfo, sig.PropertyInfo
	r.Seal = sealSummary(s)
	r.add(CheckStructure, ResultPass, structureDetail("SES_Signature", sig.Version, sig.Deviations))

	maker, makerErr := opts.Cache.certInfo(s.MakerCert)
	if maker != nil {
		r.Seal.Maker = maker.subject
	}
	signer, signerErr := opts.Cache.certInfo(sig.SignerCert)
	if signer != nil {
		r.Signer = signer.subject
	}

	checkSealSignature(r, s, maker, makerErr, opts.Cache)

	switch {
	case sig.TimeInfo.After(now.Add(futureSkew)):
		r.add(CheckSealValidity, ResultFail, fmt.Sprintf("signing time %s is in the future (now %s)", fmtTime(sig.TimeInfo), fmtTime(now)))
	default:
		checkValidity(r, s, sig.TimeInfo, "signing time")
	}

	if ok, why := signerInSeal(s, sig.SignerCert); ok {
		r.add(CheckSignerInSeal, ResultPass, why)
	} else {
		r.add(CheckSignerInSeal, ResultFail, why)
	}

	checkSignerSignature(r, sig, signer, signerErr)

	if opts.Data != nil || opts.Digest != nil {
		checkDataHash(r, sig.DataHash, opts.Data, opts.Digest)
	}

	checkChains(ctx, r, opts.Trust, []certAt{
		{role: "signer", der: sig.SignerCert, info: signer, err: signerErr, at: sig.TimeInfo, atName: "signing time"},
		{role: "maker", der: s.MakerCert, info: maker, err: makerErr, at: s.CreateDate, atName: "seal createDate"},
	})
	checkRevocation(ctx, r, opts.Revocation, []certAt{
		{role: "signer", der: sig.SignerCert, at: sig.TimeInfo},
		{role: "maker", der: s.MakerCert, at: sig.TimeInfo},
	})
	if opts.SealStatus != nil {
		checkSealStatus(ctx, r, opts.SealStatus, s.ESID)
	}
	if sig.TimeStamp != nil {
		r.add(CheckTimestamp, ResultNotChecked, fmt.Sprintf("present (%d bytes) but not verified: the signing time is the signer's claim", len(sig.TimeStamp)))
	}
	return r.finish()
}

// VerifySeal checks a bare seal (SESeal, an .esl file): structure, maker
// signature, validity at Now, the maker's chain (at createDate) and
// revocation (at Now), and the registry state when a SealStatus is given.
// Data and Digest are ignored. It never panics and never returns nil.
func VerifySeal(ctx context.Context, sealDER []byte, opts VerifyOptions) *Report {
	r := &Report{}
	s, err := ParseSeal(sealDER)
	if err != nil {
		r.add(CheckStructure, ResultFail, err.Error())
		return r.finish()
	}
	now := opts.now()
	r.Version = s.Version
	r.Seal = sealSummary(s)
	r.add(CheckStructure, ResultPass, structureDetail("SESeal", s.Version, s.Deviations))
	maker, makerErr := opts.Cache.certInfo(s.MakerCert)
	if maker != nil {
		r.Seal.Maker = maker.subject
	}
	checkSealSignature(r, s, maker, makerErr, opts.Cache)
	checkValidity(r, s, now, "now")
	checkChains(ctx, r, opts.Trust, []certAt{
		{role: "maker", der: s.MakerCert, info: maker, err: makerErr, at: s.CreateDate, atName: "seal createDate"},
	})
	checkRevocation(ctx, r, opts.Revocation, []certAt{{role: "maker", der: s.MakerCert, at: now}})
	if opts.SealStatus != nil {
		checkSealStatus(ctx, r, opts.SealStatus, s.ESID)
	}
	return r.finish()
}

func (o *VerifyOptions) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

func sealSummary(s *Seal) *SealSummary {
	return &SealSummary{Name: s.Name, ESID: s.ESID, Type: s.Type, ValidStart: s.ValidStart, ValidEnd: s.ValidEnd}
}

func structureDetail(what string, version int, deviations []string) string {
	std := "GB/T 38540-2020"
	if version == VersionV1 {
		std = "GM/T 0031-2014"
	}
	d := fmt.Sprintf("%s v%d (%s)", what, version, std)
	if len(deviations) > 0 {
		d += "; tolerated deviations: " + strings.Join(deviations, "; ")
	}
	return d
}

func fmtTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func checkSealSignature(r *Report, s *Seal, maker *certInfo, makerErr error, cache *Cache) {
	if makerErr != nil {
		r.add(CheckSealSignature, ResultFail, "maker certificate: "+makerErr.Error())
		return
	}
	var key [32]byte
	if cache != nil {
		key = sha256.Sum256(s.Raw)
		if _, ok := cache.seals.get(key); ok {
			r.add(CheckSealSignature, ResultPass, sealSignedWhat(s))
			return
		}
	}
	if err := sigalg.Verify(maker.pub, s.SignAlg, s.SignedBytes, s.SignedValue); err != nil {
		r.add(CheckSealSignature, ResultFail, fmt.Sprintf("maker signature (%s) does not verify over %s: %v", algName(s.SignAlg), signedName(s), err))
		return
	}
	if cache != nil {
		cache.seals.put(key, struct{}{})
	}
	r.add(CheckSealSignature, ResultPass, sealSignedWhat(s))
}

func signedName(s *Seal) string {
	if s.Version == VersionV1 {
		return "DER(SEQUENCE{SES_SealInfo, cert, signatureAlgorithm})"
	}
	return "DER(SES_SealInfo)"
}

func sealSignedWhat(s *Seal) string {
	return fmt.Sprintf("maker signature (%s) verifies over %s", algName(s.SignAlg), signedName(s))
}

func algName(oid []int) string {
	if a, ok := sigalg.ByOID(oid); ok {
		return a.Name
	}
	return "unsupported algorithm " + oidString(oid)
}

func checkValidity(r *Report, s *Seal, at time.Time, atName string) {
	if at.Before(s.ValidStart) || at.After(s.ValidEnd) {
		r.add(CheckSealValidity, ResultFail, fmt.Sprintf("%s %s outside the seal's validity %s..%s", atName, fmtTime(at), fmtTime(s.ValidStart), fmtTime(s.ValidEnd)))
		return
	}
	r.add(CheckSealValidity, ResultPass, fmt.Sprintf("%s %s within %s..%s", atName, fmtTime(at), fmtTime(s.ValidStart), fmtTime(s.ValidEnd)))
}

// signerInSeal reports whether the seal's certList names certDER, and
// explains.
func signerInSeal(s *Seal, certDER []byte) (bool, string) {
	switch s.CertListType {
	case CertListCertificates:
		for i, c := range s.Certs {
			if bytes.Equal(c, certDER) {
				return true, fmt.Sprintf("signer certificate is entry %d of the seal's certList", i)
			}
		}
		return false, fmt.Sprintf("signer certificate is not among the %d certificate(s) of the seal's certList", len(s.Certs))
	case CertListDigests:
		var unsupported []string
		for i, d := range s.CertDigests {
			f, ok := digestFunc(d.Type)
			if !ok {
				unsupported = append(unsupported, d.Type)
				continue
			}
			if bytes.Equal(f(certDER), d.Value) {
				return true, fmt.Sprintf("signer certificate matches digest %d (%s) of the seal's certList", i, d.Type)
			}
		}
		why := fmt.Sprintf("signer certificate matches none of the %d digest(s) of the seal's certList", len(s.CertDigests))
		if len(unsupported) > 0 {
			why += fmt.Sprintf(" (unsupported digest types: %s)", strings.Join(unsupported, ", "))
		}
		return false, why
	}
	return false, fmt.Sprintf("unknown certListType %d", s.CertListType)
}

// digestFunc maps a certList digest type to its hash. The standard leaves
// the PrintableString free; accept the names and OIDs of SM3 and SHA-256.
func digestFunc(name string) (func([]byte) []byte, bool) {
	switch strings.ReplaceAll(strings.ToLower(name), "-", "") {
	case "sm3", "1.2.156.10197.1.401":
		return func(b []byte) []byte { h := sm3.Sum(b); return h[:] }, true
	case "sha256", "2.16.840.1.101.3.4.2.1":
		return func(b []byte) []byte { h := sha256.Sum256(b); return h[:] }, true
	}
	return nil, false
}

func checkSignerSignature(r *Report, sig *Signature, signer *certInfo, signerErr error) {
	if signerErr != nil {
		r.add(CheckSignature, ResultFail, "signer certificate: "+signerErr.Error())
		return
	}
	err := sigalg.Verify(signer.pub, sig.SignAlg, sig.RawTBS, sig.Value)
	if err == nil {
		r.add(CheckSignature, ResultPass, fmt.Sprintf("signer signature (%s) verifies over DER(TBS_Sign)", algName(sig.SignAlg)))
		return
	}
	detail := fmt.Sprintf("signer signature (%s) does not verify over DER(TBS_Sign): %v", algName(sig.SignAlg), err)
	// Diagnose a known non-conforming scheme so the report says more than
	// "bad signature": some vendors sign dataHash itself as the SM2 input e,
	// without Z_A and without TBS_Sign. Such a signature protects neither
	// the seal nor the time, so it stays a failure.
	if pub, ok := signer.pub.(*ecdsa.PublicKey); ok && sm2.IsSM2PublicKey(pub) && len(sig.DataHash) == 32 &&
		sm2.VerifyASN1(pub, sig.DataHash, sig.Value) {
		detail += "; non-conforming: it is an SM2 signature of the raw dataHash (no Z_A, no TBS_Sign)"
	}
	r.add(CheckSignature, ResultFail, detail)
}

func checkDataHash(r *Report, dataHash, data, digest []byte) {
	var got []byte
	if data != nil {
		h := sm3.Sum(data)
		got = h[:]
		if digest != nil && !bytes.Equal(got, digest) {
			r.add(CheckDataHash, ResultFail, fmt.Sprintf("the given digest %x is not the SM3 of the given data (%x)", digest, got))
			return
		}
	} else {
		got = digest
	}
	if !bytes.Equal(got, dataHash) {
		r.add(CheckDataHash, ResultFail, fmt.Sprintf("SM3 of the data %s differs from dataHash %s", hex.EncodeToString(got), hex.EncodeToString(dataHash)))
		return
	}
	r.add(CheckDataHash, ResultPass, "SM3 of the data equals dataHash "+hex.EncodeToString(dataHash))
}

// certAt is a certificate to judge at a time.
type certAt struct {
	role   string // "signer" or "maker"
	der    []byte
	info   *certInfo
	err    error
	at     time.Time
	atName string
}

// worse orders results: fail > indeterminate > pass.
func worse(a, b string) string {
	rank := func(r string) int {
		switch r {
		case ResultFail:
			return 2
		case ResultIndeterminate:
			return 1
		}
		return 0
	}
	if rank(b) > rank(a) {
		return b
	}
	return a
}

func checkChains(ctx context.Context, r *Report, trust TrustChecker, certs []certAt) {
	result := ResultPass
	var details []string
	for _, c := range certs {
		res, d := chainOne(ctx, trust, c)
		result = worse(result, res)
		details = append(details, c.role+": "+d)
	}
	r.add(CheckChain, result, strings.Join(details, "; "))
}

func chainOne(ctx context.Context, trust TrustChecker, c certAt) (string, string) {
	switch {
	case c.err != nil:
		return ResultFail, c.err.Error()
	case c.info.strictErr != nil:
		return ResultFail, "certificate rejected by strict X.509 parsing: " + c.info.strictErr.Error()
	case c.at.Before(c.info.notBefore) || c.at.After(c.info.notAfter):
		return ResultFail, fmt.Sprintf("certificate not valid at the %s %s (valid %s..%s)", c.atName, fmtTime(c.at), fmtTime(c.info.notBefore), fmtTime(c.info.notAfter))
	case trust == nil:
		return ResultIndeterminate, "no trust anchors configured"
	}
	res, err := trust.VerifyChain(ctx, c.der, c.at)
	if err != nil {
		return ResultIndeterminate, "trust check unavailable: " + err.Error()
	}
	d := fmt.Sprintf("%s at the %s %s", res.Status, c.atName, fmtTime(c.at))
	if res.Detail != "" {
		d += " (" + res.Detail + ")"
	}
	switch res.Status {
	case ChainTrusted:
		return ResultPass, d
	case ChainInvalid:
		return ResultFail, d
	}
	return ResultIndeterminate, d
}

func checkRevocation(ctx context.Context, r *Report, rc RevocationChecker, certs []certAt) {
	result := ResultPass
	var details []string
	for _, c := range certs {
		res, d := revocationOne(ctx, rc, c)
		result = worse(result, res)
		details = append(details, c.role+": "+d)
	}
	r.add(CheckRevocation, result, strings.Join(details, "; "))
}

func revocationOne(ctx context.Context, rc RevocationChecker, c certAt) (string, string) {
	if rc == nil {
		return ResultIndeterminate, "no revocation checker configured"
	}
	res, err := rc.Status(ctx, c.der, c.at)
	if err != nil {
		return ResultIndeterminate, "revocation status unavailable: " + err.Error()
	}
	switch res.Status {
	case RevocationGood:
		return ResultPass, "good at " + fmtTime(c.at)
	case RevocationRevoked:
		d := fmt.Sprintf("revoked at %s (reason %d)", fmtTime(res.RevokedAt), res.Reason)
		if res.Detail != "" {
			d += " " + res.Detail
		}
		switch {
		case res.RevokedAt.IsZero() || !res.RevokedAt.After(c.at):
			return ResultFail, d + ", before " + fmtTime(c.at)
		case res.Reason == ReasonKeyCompromise || res.Reason == ReasonCACompromise:
			// The key was compromised; a claimed earlier signing time
			// proves nothing without a verified timestamp.
			return ResultFail, d + ": key compromise, so the claimed earlier signing time cannot be relied on"
		default:
			// Revoked after the claimed time. Without a verified
			// timestamp nothing proves the signature existed before
			// the revocation (ETSI EN 319 102-1 REVOKED_NO_POE).
			return ResultIndeterminate, d + ", after the claimed signing time, which no verified timestamp proves"
		}
	case RevocationUnknown:
		d := "no revocation information"
		if res.Detail != "" {
			d += " (" + res.Detail + ")"
		}
		return ResultIndeterminate, d
	}
	return ResultIndeterminate, fmt.Sprintf("unexpected revocation status %s", res.Status)
}

func checkSealStatus(ctx context.Context, r *Report, ss SealStatus, esID string) {
	st, err := ss.SealStatus(ctx, esID)
	switch {
	case err != nil:
		r.add(CheckSealStatus, ResultIndeterminate, "seal registry unavailable: "+err.Error())
	case st == SealActive:
		r.add(CheckSealStatus, ResultPass, "seal "+esID+" is active in the registry")
	case st == SealSuspended || st == SealRevoked:
		r.add(CheckSealStatus, ResultFail, "seal "+esID+" is "+st.String()+" in the registry")
	default:
		r.add(CheckSealStatus, ResultIndeterminate, "seal "+esID+" is "+st.String()+" to the registry")
	}
}
