package seal

// This file is the seal registry's domain service: making seals (制章),
// managing their state and grants, stamping (签章) and verifying against
// the registry. Like the codec it does no storage or networking itself;
// it reaches the database, the CA and the key manager through the small
// interfaces declared here.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/gmtrust/gmtrust/ca"
	"github.com/gmtrust/gmtrust/hsm"
	"github.com/gmtrust/gmtrust/policies"
)

// Seal types beyond the two GM/T 0031 defines. GB/T 38540 leaves the
// INTEGER to the application: 3 and 4 are what real v4 files use for
// invoice and contract seals; 5 (finance seal, 财务专用章) is gmtrust's own.
const (
	TypeInvoice  = 3
	TypeContract = 4
	TypeFinance  = 5
)

// ParseType maps an API seal type name to its GB/T 38540 integer code.
func ParseType(name string) (int, error) {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "organization", "organisation":
		return TypeOrganization, nil
	case "personal":
		return TypePersonal, nil
	case "invoice":
		return TypeInvoice, nil
	case "contract":
		return TypeContract, nil
	case "finance":
		return TypeFinance, nil
	}
	return 0, fmt.Errorf("%w: seal type %q (want organization, personal, invoice, contract or finance)", ErrInvalidRequest, name)
}

// TypeName is the API name of a seal type code ("type-N" for codes
// gmtrust does not name).
func TypeName(code int) string {
	switch code {
	case TypeOrganization:
		return "organization"
	case TypePersonal:
		return "personal"
	case TypeInvoice:
		return "invoice"
	case TypeContract:
		return "contract"
	case TypeFinance:
		return "finance"
	}
	return fmt.Sprintf("type-%d", code)
}

// ParseSealState reads the stored and API form of a SealState ("active",
// "suspended", "revoked").
func ParseSealState(s string) (SealState, error) {
	switch s {
	case "active":
		return SealActive, nil
	case "suspended":
		return SealSuspended, nil
	case "revoked":
		return SealRevoked, nil
	}
	return 0, fmt.Errorf("%w: seal status %q (want active, suspended or revoked)", ErrInvalidRequest, s)
}

// Seal revocation reasons. They decide what becomes of the stamps the
// registry recorded while the seal was in force (see Verifier).
const (
	// RevokeUnspecified: earlier stamps become indeterminate.
	RevokeUnspecified = "unspecified"
	// RevokeRetired: the seal was withdrawn in the ordinary course
	// (organisation renamed, seal replaced); earlier stamps stay valid.
	RevokeRetired = "retired"
	// RevokeCompromised: the seal or its key was misused; every stamp
	// becomes invalid, whenever it was made.
	RevokeCompromised = "compromised"
)

// Service limits.
const (
	// MaxPictureSize bounds a seal picture. Seal impressions are small
	// images (typically 5-50 KiB); the picture is embedded in the seal and
	// so in every signature made with it, which makes a large one costly
	// for every relying party.
	MaxPictureSize = 1 << 20
	// MaxPictureMM bounds the printed width and height of a seal.
	MaxPictureMM = 200
	// MaxValidDays is the longest seal validity (the seal-signer
	// profile's maximum certificate validity).
	MaxValidDays = 1827
	// MaxPropertyInfo bounds TBS_Sign.propertyInfo.
	MaxPropertyInfo = 1024
	// MaxApprovalRef bounds the approval reference recorded with a stamp.
	MaxApprovalRef = 256
	// ProfileSealSigner is the certificate profile of seal holders.
	ProfileSealSigner = "seal-signer"
)

// Roles the service knows (policies/authz.yaml defines them): the
// service's own checks follow that policy, so that they never refuse what
// it allows.
const (
	// RoleAdmin administers every seal (and may stamp only with a grant).
	RoleAdmin = "admin"
	// RoleSealAdmin administers the seals of its own department.
	RoleSealAdmin = "seal-admin"
	// RoleAuditor reads every seal, grant and stamp.
	RoleAuditor = "auditor"
)

// Service errors; callers test them with errors.Is. The ones that wrap
// ErrInvalidRequest are about what the caller sent.
var (
	ErrInvalidRequest = errors.New("seal: invalid request")
	// ErrBadPicture: wrong type, magic bytes or size in millimetres.
	ErrBadPicture = fmt.Errorf("%w: bad picture", ErrInvalidRequest)
	// ErrPictureTooLarge: the picture exceeds MaxPictureSize.
	ErrPictureTooLarge = fmt.Errorf("%w: picture too large", ErrInvalidRequest)
	// ErrBadHolderCert: a supplied holder certificate cannot be used.
	ErrBadHolderCert = fmt.Errorf("%w: unusable holder certificate", ErrInvalidRequest)
	// ErrNotFound: no such seal (or grant).
	ErrNotFound = errors.New("seal: not found")
	// ErrForbidden: the caller may not do this with this seal.
	ErrForbidden = errors.New("seal: forbidden")
	// ErrNotUsable: the seal cannot stamp now (suspended, revoked, outside
	// its validity, or its holder certificate is not good).
	ErrNotUsable = errors.New("seal: seal cannot be used")
	// ErrStateConflict: the status change is not allowed from the current
	// status (a revoked seal cannot be suspended or resumed).
	ErrStateConflict = errors.New("seal: status change not allowed")
	// ErrDuplicate is what a Store reports for an esID that exists.
	ErrDuplicate = errors.New("seal: esID already exists")
	// ErrStampRefused is what a Store reports when a stamp cannot be
	// recorded because, in the database, the seal is not active, its
	// holder certificate is not good, or the principal holds no grant.
	ErrStampRefused = errors.New("seal: stamp refused by the registry")
)

// Record is a seal as the registry keeps it.
type Record struct {
	ID         string
	ESID       string
	Name       string
	Type       int
	Department string
	// The holder's seal-signer certificate and where its key lives.
	HolderCAID   string
	HolderSerial string
	HolderKeyRef string
	// MakerSignerID is the delegated seal-maker signer that signed it.
	MakerSignerID string
	// DER is the SESeal; listings leave it and Picture nil.
	DER               []byte
	PictureType       string
	Picture           []byte
	WidthMM, HeightMM int
	ValidStart        time.Time
	ValidEnd          time.Time
	Status            SealState
	RevocationReason  string // set when revoked
	CreatedBy         string
	CreatedAt         time.Time
	StatusChangedAt   time.Time // zero until the first change
	StatusChangedBy   string
}

// Grant lets a principal stamp with a seal.
type Grant struct {
	SealID    string
	Principal string
	GrantedBy string
	CreatedAt time.Time
}

// StampRecord is one recorded stamp. The registry keeps the signer's
// signature value, not the whole SES_Signature: that embeds the seal
// (picture included), which the seals table already holds once.
type StampRecord struct {
	ID           string
	SealID       string
	Principal    string
	At           time.Time // timeInfo
	DataHash     []byte
	PropertyInfo string
	ApprovalRef  string
	// Signature is the signer's DER SEQUENCE{r, s} over TBS_Sign; it is
	// unique per stamp and is how a signature is found again.
	Signature []byte
	CreatedAt time.Time
}

// Filter selects seals for listing.
type Filter struct {
	Department string
	Status     SealState // 0: any
	Cursor     string    // opaque, from a previous page
	Limit      int
}

// StampFilter selects stamps of one seal for listing.
type StampFilter struct {
	SealID    string
	Principal string // "": everybody's
	Cursor    string // opaque, from a previous page
	Limit     int
}

// StatusChange asks a Store to move a seal to To, but only from one of
// From.
type StatusChange struct {
	ID     string
	From   []SealState
	To     SealState
	Reason string // revocation reason, when To is SealRevoked
	By     string
	At     time.Time
}

// Store persists seals, grants and stamps. Writes are durable when they
// return.
type Store interface {
	// InsertSeal records a seal and its initial grants in one
	// transaction; ErrDuplicate when the esID exists.
	InsertSeal(ctx context.Context, r *Record, grants []Grant) error
	// Seal returns one seal or ErrNotFound.
	Seal(ctx context.Context, id string) (*Record, error)
	// SealByESID returns one seal or ErrNotFound.
	SealByESID(ctx context.Context, esID string) (*Record, error)
	// Seals lists seals newest first without DER and picture, and the
	// cursor of the next page ("" on the last).
	Seals(ctx context.Context, f Filter) ([]Record, string, error)
	// HolderKeyRef returns the key reference recorded for a holder
	// certificate by an earlier seal, or ErrNotFound.
	HolderKeyRef(ctx context.Context, caID, serial string) (string, error)
	// SetSealStatus applies ch atomically. When the current status is
	// not in ch.From it changes nothing and returns the current record
	// with an error wrapping ErrStateConflict.
	SetSealStatus(ctx context.Context, ch StatusChange) (*Record, error)
	// AddGrant records a grant; granting again changes nothing.
	AddGrant(ctx context.Context, g Grant) error
	// DeleteGrant removes a grant or returns ErrNotFound.
	DeleteGrant(ctx context.Context, sealID, principal string) error
	// Grants lists a seal's grants.
	Grants(ctx context.Context, sealID string) ([]Grant, error)
	// Granted reports whether principal may stamp with the seal.
	Granted(ctx context.Context, sealID, principal string) (bool, error)
	// InsertStamp records a stamp if, in the same transaction, the seal
	// is active, its holder certificate good and the principal granted;
	// otherwise it returns an error wrapping ErrStampRefused.
	InsertStamp(ctx context.Context, s *StampRecord) error
	// Stamps lists a seal's stamps newest first, with the next cursor.
	Stamps(ctx context.Context, f StampFilter) ([]StampRecord, string, error)
	// StampBySignature finds a stamp by its signature value or returns
	// ErrNotFound.
	StampBySignature(ctx context.Context, value []byte) (*StampRecord, error)
}

// Authority is what the service needs from the CA.
type Authority interface {
	IssueForKey(ctx context.Context, req ca.KeyIssueRequest) (*ca.Issued, error)
	RenewDelegatedSigner(ctx context.Context, purpose string) (*ca.SignerRecord, *ca.Certificate, error)
	Find(ctx context.Context, serial string) (*ca.Certificate, error)
}

// SignerSource lists delegated signers (the seal makers), newest first.
type SignerSource interface {
	Signers(ctx context.Context, purpose string) ([]ca.SignerRecord, error)
}

// Keys is the part of the key manager the service uses.
type Keys interface {
	CreateKey(ctx context.Context, label string, alg hsm.Algorithm) (ref string, pub crypto.PublicKey, err error)
	Signer(ctx context.Context, ref string) (crypto.Signer, error)
}

// Caller is who asks: the authenticated principal.
type Caller struct {
	Name string
	// Department scopes a seal administrator to one department's seals;
	// a seal administrator without a department administers none.
	Department string
	Roles      []string
}

func (c Caller) principal() policies.Principal {
	return policies.Principal{Name: c.Name, Department: c.Department, Roles: c.Roles}
}

// Policy decides who may do what with a seal: the instance's one access
// policy (policies.Authz, rules in policies/authz.yaml). The service asks
// it with the seal's department, and with the caller as grantee when the
// caller holds a grant for the seal.
type Policy interface {
	Decide(p policies.Principal, action string, res policies.Resource) policies.AccessDecision
}

// sealResource describes a seal to the policy; id "" is a seal to make.
func sealResource(id, department string, granted bool, caller string) policies.Resource {
	res := policies.Resource{ID: "seal/" + id, Department: department}
	if id == "" {
		res.ID = "seal/new"
	}
	if granted {
		res.Grantees = []string{caller}
	}
	return res
}

// authorize asks the policy whether c may do action on the seal (id ""
// for a new one). The caller's grant is looked up only for an existing
// seal and only when the policy refuses without it.
func (s *Service) authorize(ctx context.Context, c Caller, action, id, department string) error {
	d := s.policy.Decide(c.principal(), action, sealResource(id, department, false, c.Name))
	if !d.Allowed && id != "" {
		granted, err := s.store.Granted(ctx, id, c.Name)
		if err != nil {
			return err
		}
		if granted {
			d = s.policy.Decide(c.principal(), action, sealResource(id, department, true, c.Name))
		}
	}
	if !d.Allowed {
		return fmt.Errorf("%w: %s", ErrForbidden, d.Rule)
	}
	return nil
}

// Config tunes a Service.
type Config struct {
	// ESIDPrefix starts every esID: typically the 6-digit administrative
	// division code of the province (e.g. "370000"). Up to 16 ASCII
	// letters and digits; default "000000".
	ESIDPrefix string
	// Vid is written in SES_Header.Vid; default "gmtrust".
	Vid string
	// Organization is the O of generated holder certificates for seals
	// without a department: the CA's organisation.
	Organization string
	// CacheTTL is how long a seal's holder key and certificate, and a
	// confirmed grant, are reused without asking the database again
	// (default 1 minute). It never lets a suspended seal stamp: the
	// stamp's own database transaction checks the seal, the holder
	// certificate and the grant again.
	CacheTTL time.Duration
}

// Deps are the collaborators of a Service.
type Deps struct {
	Store     Store
	Authority Authority
	Signers   SignerSource
	Keys      Keys
	// Verifier verifies signatures for Verify; the service tells it about
	// status changes. Optional: without it Verify reports no registry
	// state and no trust.
	Verifier *Verifier
	Now      func() time.Time
	Rand     io.Reader
	// Policy decides access; nil means the policy shipped in
	// policies/authz.yaml.
	Policy Policy
}

// Service makes, manages and uses seals. It is safe for concurrent use.
type Service struct {
	cfg       Config
	store     Store
	authority Authority
	signers   SignerSource
	keys      Keys
	verifier  *Verifier
	now       func() time.Time
	rand      io.Reader
	policy    Policy

	makerMu sync.Mutex // one maker renewal at a time

	mu     sync.Mutex
	usable map[string]*usableSeal // by seal id
	grants map[grantKey]time.Time // confirmed grants and when
}

// usableSeal is what stamping needs of a seal, loaded once per CacheTTL.
type usableSeal struct {
	rec       *Record
	holderDER []byte
	holderEnd time.Time
	signer    crypto.Signer
	// hasher keeps the SM3 state of the unchanging start of TBS_Sign;
	// nil for a holder key that is not SM2.
	hasher *stampHasher
	loaded time.Time
}

type grantKey struct{ sealID, principal string }

// maxCached bounds the stamping caches; beyond it they start afresh.
const maxCached = 10000

// NewService returns a Service. Store, Authority, Signers and Keys are
// required.
func NewService(cfg Config, d Deps) (*Service, error) {
	if d.Store == nil || d.Authority == nil || d.Signers == nil || d.Keys == nil {
		return nil, errors.New("seal: service needs a store, the CA, its signer list and a key manager")
	}
	if cfg.ESIDPrefix == "" {
		cfg.ESIDPrefix = "000000"
	}
	if err := checkESIDPrefix(cfg.ESIDPrefix); err != nil {
		return nil, err
	}
	if cfg.Vid == "" {
		cfg.Vid = "gmtrust"
	}
	if !isIA5(cfg.Vid) {
		return nil, fmt.Errorf("seal: vid %q must be ASCII", cfg.Vid)
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = time.Minute
	}
	s := &Service{
		cfg: cfg, store: d.Store, authority: d.Authority, signers: d.Signers, keys: d.Keys, verifier: d.Verifier,
		now: d.Now, rand: d.Rand, policy: d.Policy, usable: map[string]*usableSeal{}, grants: map[grantKey]time.Time{},
	}
	if s.policy == nil {
		p, err := policies.DefaultAuthz()
		if err != nil {
			return nil, fmt.Errorf("seal: access policy: %w", err)
		}
		s.policy = p
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.rand == nil {
		s.rand = rand.Reader
	}
	return s, nil
}

func checkESIDPrefix(p string) error {
	if len(p) > 16 {
		return fmt.Errorf("seal: esID prefix %q is longer than 16 characters", p)
	}
	for _, r := range p {
		if r > unicode.MaxASCII || !(unicode.IsLetter(r) || unicode.IsDigit(r)) {
			return fmt.Errorf("seal: esID prefix %q must be ASCII letters and digits", p)
		}
	}
	return nil
}

// PictureInput is a seal picture as submitted.
type PictureInput struct {
	Type     string // png, jpg (jpeg), gif or svg
	Data     []byte
	WidthMM  int
	HeightMM int
}

// MakeRequest asks for a new seal.
type MakeRequest struct {
	Name       string
	Type       string // see ParseType
	Department string
	Picture    PictureInput
	ValidDays  int
	// Certificate optionally names the holder: a seal-signer certificate
	// (PEM or DER) our CA issued, whose key is in our key manager. KeyRef
	// names that key; when empty, the key recorded for the certificate by
	// an earlier seal is used. Without Certificate the service generates
	// the holder key and certificate.
	Certificate []byte
	KeyRef      string
	// Grants are the principals allowed to stamp from the start.
	Grants []string
}

// Made is a new seal.
type Made struct {
	Record *Record
	// HolderCert is the holder's certificate (DER), the one in the seal.
	HolderCert []byte
}

// holderKey is the signing identity written in a seal's certList.
type holderKey struct {
	der    []byte
	caID   string
	serial string
	ref    string
	end    time.Time
}

// Make makes a seal (制章): checks the request, gets the holder key and
// certificate (generating them when none is given), signs the SESeal with
// the current seal maker and records it with its grants.
//
// esID format: Config.ESIDPrefix, the seal type as two digits, then 12
// random decimal digits, e.g. "37000001" + "482910375561". Digits keep it
// usable where systems expect numeric seal codes; uniqueness is enforced
// by the database (a clash, about one in 10^12 per pair, is retried).
func (s *Service) Make(ctx context.Context, c Caller, req MakeRequest) (*Made, error) {
	if err := s.authorize(ctx, c, "seal.create", "", req.Department); err != nil {
		return nil, err
	}
	typ, err := ParseType(req.Type)
	if err != nil {
		return nil, err
	}
	if err := checkText("name", req.Name, 64); err != nil {
		return nil, err
	}
	if req.Department != "" {
		if err := checkText("department", req.Department, 64); err != nil {
			return nil, err
		}
	}
	pic, err := checkPictureInput(req.Picture)
	if err != nil {
		return nil, err
	}
	if req.ValidDays < 1 || req.ValidDays > MaxValidDays {
		return nil, fmt.Errorf("%w: valid_days %d (want 1-%d)", ErrInvalidRequest, req.ValidDays, MaxValidDays)
	}
	grants, err := uniquePrincipals(req.Grants)
	if err != nil {
		return nil, err
	}
	if len(req.Certificate) == 0 && req.KeyRef != "" {
		return nil, fmt.Errorf("%w: key_ref is only meaningful with a certificate", ErrInvalidRequest)
	}

	now := s.now().UTC().Truncate(time.Second)
	validEnd := now.AddDate(0, 0, req.ValidDays)
	id, err := s.randomHex(12)
	if err != nil {
		return nil, err
	}
	// Check a given holder before anything is created, and find the maker
	// before a holder key is generated, so a refusal leaves no key,
	// certificate or maker behind.
	var holder *holderKey
	if len(req.Certificate) > 0 {
		if holder, err = s.givenHolder(ctx, req, now); err != nil {
			return nil, err
		}
		if validEnd.After(holder.end) {
			return nil, fmt.Errorf("%w: the seal would outlive its holder certificate (valid until %s); ask for at most %d days",
				ErrBadHolderCert, fmtTime(holder.end), int(holder.end.Sub(now).Hours()/24))
		}
	}
	maker, makerDER, makerSigner, err := s.maker(ctx, now)
	if err != nil {
		return nil, err
	}
	if holder == nil {
		if holder, err = s.newHolder(ctx, c, req, id); err != nil {
			return nil, err
		}
	}
	if validEnd.After(holder.end) {
		// Our CA cut the new certificate short (at its own end): so is
		// the seal.
		validEnd = holder.end
	}

	rec := &Record{
		ID: id, Name: req.Name, Type: typ, Department: req.Department,
		HolderCAID: holder.caID, HolderSerial: holder.serial, HolderKeyRef: holder.ref, MakerSignerID: maker.ID,
		PictureType: pic.Type, Picture: pic.Data, WidthMM: pic.WidthMM, HeightMM: pic.HeightMM,
		ValidStart: now, ValidEnd: validEnd, Status: SealActive, CreatedBy: c.Name, CreatedAt: s.now(),
	}
	gs := make([]Grant, len(grants))
	for i, p := range grants {
		gs[i] = Grant{SealID: id, Principal: p, GrantedBy: c.Name, CreatedAt: rec.CreatedAt}
	}
	for attempt := 0; ; attempt++ {
		if rec.ESID, err = s.newESID(typ); err != nil {
			return nil, err
		}
		rec.DER, err = MakeSeal(ctx, SealSpec{
			ESID: rec.ESID, Vid: s.cfg.Vid, Type: typ, Name: req.Name, Certs: [][]byte{holder.der},
			CreateDate: now, ValidStart: now, ValidEnd: validEnd,
			Picture: Picture{Type: pic.Type, Data: pic.Data, Width: pic.WidthMM, Height: pic.HeightMM},
		}, makerDER, makerSigner)
		if err != nil {
			return nil, fmt.Errorf("seal: making the seal: %w", err)
		}
		err = s.store.InsertSeal(ctx, rec, gs)
		if errors.Is(err, ErrDuplicate) && attempt < 3 {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("seal: recording the seal: %w", err)
		}
		return &Made{Record: rec, HolderCert: holder.der}, nil
	}
}

// maker returns the newest seal-maker signer that is valid now and not
// revoked, making one when there is none.
func (s *Service) maker(ctx context.Context, now time.Time) (*ca.SignerRecord, []byte, crypto.Signer, error) {
	s.makerMu.Lock()
	defer s.makerMu.Unlock()
	recs, err := s.signers.Signers(ctx, ca.PurposeSealMaker)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("seal: listing seal makers: %w", err)
	}
	var chosen *ca.SignerRecord
	for i := range recs {
		r := &recs[i]
		if now.Before(r.NotBefore) || !now.Before(r.NotAfter) {
			continue
		}
		c, err := s.authority.Find(ctx, r.Serial)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("seal: seal maker %s certificate: %w", r.ID, err)
		}
		if c.Status == ca.StatusGood {
			chosen = r
			break
		}
	}
	if chosen == nil {
		if chosen, _, err = s.authority.RenewDelegatedSigner(ctx, ca.PurposeSealMaker); err != nil {
			return nil, nil, nil, fmt.Errorf("seal: creating a seal maker: %w", err)
		}
	}
	signer, err := s.keys.Signer(ctx, chosen.KeyRef)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("seal: seal maker %s key: %w", chosen.ID, err)
	}
	return chosen, chosen.DER, signer, nil
}

// newHolder generates the holder's SM2 key in the key manager and issues
// its seal-signer certificate (CN = seal name, O = department or, without
// one, the CA's organisation).
func (s *Service) newHolder(ctx context.Context, c Caller, req MakeRequest, id string) (*holderKey, error) {
	ref, pub, err := s.keys.CreateKey(ctx, "seal-"+id, hsm.SM2)
	if err != nil {
		return nil, fmt.Errorf("seal: creating the holder key: %w", err)
	}
	issued, err := s.authority.IssueForKey(ctx, ca.KeyIssueRequest{
		PublicKey: pub, Subject: s.holderSubject(req), Profile: ProfileSealSigner, Department: req.Department,
		RequesterDepartment: c.Department, RequestedBy: c.Name,
		Validity: time.Duration(req.ValidDays) * 24 * time.Hour,
	})
	if err != nil {
		return nil, fmt.Errorf("seal: issuing the holder certificate: %w", err)
	}
	cert := issued.Certificate
	return &holderKey{der: cert.DER, caID: cert.CAID, serial: cert.Serial, ref: ref, end: cert.NotAfter}, nil
}

// givenHolder checks a holder certificate supplied with the request: it
// must be a good seal-signer certificate of our CA, for the seal's
// department, with an SM2 key that our key manager holds.
func (s *Service) givenHolder(ctx context.Context, req MakeRequest, now time.Time) (*holderKey, error) {
	der := req.Certificate
	if b, _ := pem.Decode(der); b != nil {
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%w: PEM block is %q, want CERTIFICATE", ErrBadHolderCert, b.Type)
		}
		der = b.Bytes
	}
	cert, err := smx509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadHolderCert, err)
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || !sm2.IsSM2PublicKey(pub) {
		return nil, fmt.Errorf("%w: GB/T 38540 seals need an SM2 holder key", ErrBadHolderCert)
	}
	rec, err := s.authority.Find(ctx, ca.SerialFromBig(cert.SerialNumber))
	if errors.Is(err, ca.ErrNotFound) || (err == nil && !bytes.Equal(rec.DER, der)) {
		return nil, fmt.Errorf("%w: not a certificate this CA issued", ErrBadHolderCert)
	}
	if err != nil {
		return nil, err
	}
	switch {
	case rec.Profile != ProfileSealSigner:
		return nil, fmt.Errorf("%w: issued under profile %s, want %s", ErrBadHolderCert, rec.Profile, ProfileSealSigner)
	case rec.Status != ca.StatusGood:
		return nil, fmt.Errorf("%w: certificate is %s", ErrBadHolderCert, rec.Status)
	case now.Before(rec.NotBefore) || !now.Before(rec.NotAfter):
		return nil, fmt.Errorf("%w: certificate is not valid now (%s..%s)", ErrBadHolderCert, fmtTime(rec.NotBefore), fmtTime(rec.NotAfter))
	case rec.Department != "" && rec.Department != req.Department:
		return nil, fmt.Errorf("%w: certificate belongs to department %q, the seal to %q", ErrBadHolderCert, rec.Department, req.Department)
	}
	ref := req.KeyRef
	if ref == "" {
		ref, err = s.store.HolderKeyRef(ctx, rec.CAID, rec.Serial)
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("%w: no key is known for this certificate; give key_ref", ErrBadHolderCert)
		}
		if err != nil {
			return nil, err
		}
	}
	signer, err := s.keys.Signer(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("%w: key %q: %v", ErrBadHolderCert, ref, err)
	}
	if err := matchKey(der, signer); err != nil {
		return nil, fmt.Errorf("%w: key %q is not the certificate's", ErrBadHolderCert, ref)
	}
	return &holderKey{der: der, caID: rec.CAID, serial: rec.Serial, ref: ref, end: rec.NotAfter}, nil
}

// holderSubject is CN = seal name, O = the seal's department or, for a
// seal without one, the CA's organisation (Config.Organization).
func (s *Service) holderSubject(req MakeRequest) pkix.Name {
	org := req.Department
	if org == "" {
		org = s.cfg.Organization
	}
	if org == "" {
		org = req.Name
	}
	return pkix.Name{CommonName: req.Name, Organization: []string{org}}
}

func (s *Service) randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(s.rand, b); err != nil {
		return "", fmt.Errorf("seal: reading randomness: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func (s *Service) newESID(typ int) (string, error) {
	var b [8]byte
	if _, err := io.ReadFull(s.rand, b[:]); err != nil {
		return "", fmt.Errorf("seal: reading randomness: %w", err)
	}
	// The modulo bias of 2^64 mod 10^12 is below 10^-7: irrelevant for an
	// identifier whose uniqueness the database enforces anyway.
	return fmt.Sprintf("%s%02d%012d", s.cfg.ESIDPrefix, typ%100, binary.BigEndian.Uint64(b[:])%1_000_000_000_000), nil
}

// checkPictureInput validates a picture: the declared type must match the
// data (PNG, JPEG and GIF by their signatures; SVG must be well-formed XML
// whose root is <svg>), at most MaxPictureSize bytes, and 1-MaxPictureMM
// millimetres each way.
func checkPictureInput(p PictureInput) (PictureInput, error) {
	typ := strings.ToLower(strings.TrimSpace(p.Type))
	if typ == "jpeg" {
		typ = "jpg"
	}
	if len(p.Data) == 0 {
		return p, fmt.Errorf("%w: empty picture", ErrBadPicture)
	}
	if len(p.Data) > MaxPictureSize {
		return p, fmt.Errorf("%w: %d bytes; the limit is %d (1 MiB)", ErrPictureTooLarge, len(p.Data), MaxPictureSize)
	}
	var ok bool
	switch typ {
	case "png":
		ok = bytes.HasPrefix(p.Data, []byte("\x89PNG\r\n\x1a\n"))
	case "jpg":
		ok = bytes.HasPrefix(p.Data, []byte{0xff, 0xd8, 0xff})
	case "gif":
		ok = bytes.HasPrefix(p.Data, []byte("GIF87a")) || bytes.HasPrefix(p.Data, []byte("GIF89a"))
	case "svg":
		if err := checkSVG(p.Data); err != nil {
			return p, fmt.Errorf("%w: not an SVG image: %v", ErrBadPicture, err)
		}
		ok = true
	default:
		return p, fmt.Errorf("%w: picture type %q (want png, jpg, gif or svg)", ErrBadPicture, p.Type)
	}
	if !ok {
		return p, fmt.Errorf("%w: the data is not a %s image (wrong magic bytes)", ErrBadPicture, strings.ToUpper(typ))
	}
	if p.WidthMM < 1 || p.WidthMM > MaxPictureMM || p.HeightMM < 1 || p.HeightMM > MaxPictureMM {
		return p, fmt.Errorf("%w: size %dx%d mm (want 1-%d mm each way)", ErrBadPicture, p.WidthMM, p.HeightMM, MaxPictureMM)
	}
	p.Type = typ
	return p, nil
}

// checkSVG requires well-formed XML with a single <svg> root and no DTD
// (a DTD could declare entities; an impression needs none).
func checkSVG(data []byte) error {
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	depth, roots := 0, 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				roots++
				if roots > 1 {
					return errors.New("more than one root element")
				}
				if t.Name.Local != "svg" || (t.Name.Space != "" && t.Name.Space != "http://www.w3.org/2000/svg") {
					return fmt.Errorf("root element is <%s>, want <svg>", t.Name.Local)
				}
			}
			depth++
		case xml.EndElement:
			depth--
		case xml.Directive:
			return errors.New("DTDs and other directives are not allowed")
		case xml.CharData:
			if depth == 0 && len(bytes.TrimSpace(t)) > 0 {
				return errors.New("text outside the root element")
			}
		}
	}
	if roots == 0 {
		return errors.New("no root element")
	}
	return nil
}

// checkText requires a non-empty UTF-8 string of at most max characters
// without control characters.
func checkText(field, v string, max int) error {
	switch {
	case strings.TrimSpace(v) == "":
		return fmt.Errorf("%w: %s is required", ErrInvalidRequest, field)
	case !utf8.ValidString(v):
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidRequest, field)
	case utf8.RuneCountInString(v) > max:
		return fmt.Errorf("%w: %s is longer than %d characters", ErrInvalidRequest, field, max)
	case strings.ContainsFunc(v, unicode.IsControl):
		return fmt.Errorf("%w: %s contains control characters", ErrInvalidRequest, field)
	}
	return nil
}

func checkPrincipal(p string) error {
	if err := policies.CheckPrincipalName(p); err != nil {
		return fmt.Errorf("%w: grant: %v", ErrInvalidRequest, err)
	}
	return nil
}

func uniquePrincipals(ps []string) ([]string, error) {
	seen := map[string]bool{}
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		if err := checkPrincipal(p); err != nil {
			return nil, err
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out, nil
}

// Get returns a seal to those the policy lets read it (seal.read):
// administrators and auditors, seal administrators of its department,
// approval systems granted it.
func (s *Service) Get(ctx context.Context, c Caller, id string) (*Record, error) {
	rec, err := s.store.Seal(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(ctx, c, "seal.read", rec.ID, rec.Department); err != nil {
		return nil, err
	}
	return rec, nil
}

// List lists seals (seal.list): every seal when the policy's scope is
// "any", the caller's department's when it is "department".
func (s *Service) List(ctx context.Context, c Caller, f Filter) ([]Record, string, error) {
	d := s.policy.Decide(c.principal(), "seal.list", policies.Resource{})
	switch {
	case !d.Allowed:
		return nil, "", fmt.Errorf("%w: %s", ErrForbidden, d.Rule)
	case d.Scope == policies.ScopeAny:
	case d.Scope == policies.ScopeDepartment && c.Department != "":
		if f.Department != "" && f.Department != c.Department {
			return nil, "", fmt.Errorf("%w: %s may only list seals of department %q", ErrForbidden, c.Name, c.Department)
		}
		f.Department = c.Department
	default:
		return nil, "", fmt.Errorf("%w: %s may not list seals (%s)", ErrForbidden, c.Name, d.Rule)
	}
	return s.store.Seals(ctx, f)
}

// Suspend stops a seal from stamping until Resume. Suspending a suspended
// seal succeeds and changes nothing; a revoked seal cannot be suspended.
func (s *Service) Suspend(ctx context.Context, c Caller, id string) (*Record, error) {
	return s.setStatus(ctx, c, StatusChange{ID: id, From: []SealState{SealActive}, To: SealSuspended})
}

// Resume lets a suspended seal stamp again. A revoked seal is never
// resumed (ErrStateConflict).
func (s *Service) Resume(ctx context.Context, c Caller, id string) (*Record, error) {
	return s.setStatus(ctx, c, StatusChange{ID: id, From: []SealState{SealSuspended}, To: SealActive})
}

// Revoke ends a seal for good; reason is one of the Revoke* constants
// ("" means RevokeUnspecified). Revoking again succeeds and keeps the
// first reason.
func (s *Service) Revoke(ctx context.Context, c Caller, id, reason string) (*Record, error) {
	switch reason {
	case "":
		reason = RevokeUnspecified
	case RevokeUnspecified, RevokeRetired, RevokeCompromised:
	default:
		return nil, fmt.Errorf("%w: revocation reason %q (want unspecified, retired or compromised)", ErrInvalidRequest, reason)
	}
	return s.setStatus(ctx, c, StatusChange{ID: id, From: []SealState{SealActive, SealSuspended}, To: SealRevoked, Reason: reason})
}

func (s *Service) setStatus(ctx context.Context, c Caller, ch StatusChange) (*Record, error) {
	cur, err := s.store.Seal(ctx, ch.ID)
	if err != nil {
		return nil, err
	}
	action := map[SealState]string{SealSuspended: "seal.suspend", SealActive: "seal.resume", SealRevoked: "seal.revoke"}[ch.To]
	if err := s.authorize(ctx, c, action, cur.ID, cur.Department); err != nil {
		return nil, err
	}
	ch.By, ch.At = c.Name, s.now()
	rec, err := s.store.SetSealStatus(ctx, ch)
	s.forget(ch.ID, cur.ESID)
	if errors.Is(err, ErrStateConflict) && rec != nil {
		if rec.Status == ch.To {
			return rec, nil // already there: repeating a change is harmless
		}
		return nil, fmt.Errorf("%w: seal %s is %s and cannot become %s", ErrStateConflict, ch.ID, rec.Status, ch.To)
	}
	if err != nil {
		return nil, err
	}
	return rec, nil
}

// forget drops what the caches know of a seal after a change.
func (s *Service) forget(id, esID string) {
	s.mu.Lock()
	delete(s.usable, id)
	for k := range s.grants {
		if k.sealID == id {
			delete(s.grants, k)
		}
	}
	s.mu.Unlock()
	if s.verifier != nil {
		s.verifier.Forget(esID)
	}
}

// AddGrant lets principal stamp with the seal.
func (s *Service) AddGrant(ctx context.Context, c Caller, id, principal string) (*Grant, error) {
	if err := checkPrincipal(principal); err != nil {
		return nil, err
	}
	rec, err := s.store.Seal(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(ctx, c, "seal.grant", rec.ID, rec.Department); err != nil {
		return nil, err
	}
	g := Grant{SealID: id, Principal: principal, GrantedBy: c.Name, CreatedAt: s.now()}
	if err := s.store.AddGrant(ctx, g); err != nil {
		return nil, err
	}
	return &g, nil
}

// DeleteGrant withdraws a grant; ErrNotFound when there was none.
func (s *Service) DeleteGrant(ctx context.Context, c Caller, id, principal string) error {
	rec, err := s.store.Seal(ctx, id)
	if err != nil {
		return err
	}
	if err := s.authorize(ctx, c, "seal.ungrant", rec.ID, rec.Department); err != nil {
		return err
	}
	err = s.store.DeleteGrant(ctx, id, principal)
	s.mu.Lock()
	delete(s.grants, grantKey{id, principal})
	s.mu.Unlock()
	return err
}

// Grants lists who may stamp with a seal.
func (s *Service) Grants(ctx context.Context, c Caller, id string) ([]Grant, error) {
	rec, err := s.store.Seal(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(ctx, c, "seal.grant.read", rec.ID, rec.Department); err != nil {
		return nil, err
	}
	return s.store.Grants(ctx, id)
}

// StampRequest asks for a seal signature over a document's SM3 digest.
type StampRequest struct {
	SealID       string
	DataHash     []byte // SM3 of the document, 32 bytes
	PropertyInfo string // IA5 (ASCII): e.g. the document path or approval record id
	ApprovalRef  string // the approval system's reference, recorded only
}

// Stamped is a new seal signature and its record.
type Stamped struct {
	Record StampRecord
	ESID   string
	// DER is the SES_Signature.
	DER []byte
}

// Stamp signs a document digest with a seal (签章), as of now.
//
// Only a principal granted the seal may stamp with it; administrators
// are no exception (they grant themselves, which leaves a record): the
// person who makes seals is not, by that alone, allowed to use them. The
// seal must be active and within its validity, and its holder
// certificate good. The stamp is durably recorded (who, when, which seal,
// data hash, approval reference) before the signature is returned, in a
// transaction that checks seal status, holder certificate and grant once
// more, so a seal suspended or revoked by another process cannot stamp
// either.
func (s *Service) Stamp(ctx context.Context, c Caller, req StampRequest) (*Stamped, error) {
	if len(req.DataHash) != 32 {
		return nil, fmt.Errorf("%w: the data hash must be a 32-byte SM3 digest, got %d bytes", ErrInvalidRequest, len(req.DataHash))
	}
	if err := checkPropertyInfo(req.PropertyInfo); err != nil {
		return nil, err
	}
	if len(req.ApprovalRef) > MaxApprovalRef || !utf8.ValidString(req.ApprovalRef) || strings.ContainsFunc(req.ApprovalRef, unicode.IsControl) {
		return nil, fmt.Errorf("%w: approval_ref must be UTF-8 text without control characters, at most %d bytes", ErrInvalidRequest, MaxApprovalRef)
	}
	now := s.now()
	u, err := s.usableSeal(ctx, req.SealID, now)
	if err != nil {
		return nil, err
	}
	if err := s.checkGrant(ctx, req.SealID, c.Name, now); err != nil {
		return nil, err
	}
	// The grant is the object's half of the rule; the policy says which
	// roles may use a grant at all (seal.stamp).
	if d := s.policy.Decide(c.principal(), "seal.stamp", sealResource(req.SealID, u.rec.Department, true, c.Name)); !d.Allowed {
		return nil, fmt.Errorf("%w: %s", ErrForbidden, d.Rule)
	}
	at := now.UTC().Truncate(time.Second)
	if err := u.usableAt(at); err != nil {
		return nil, err
	}
	// What Stamp checks on every call (v4 seal, holder in its certList,
	// key of the holder certificate) was checked when the seal was
	// loaded; the time, hash and propertyInfo were checked above.
	var der []byte
	if u.hasher != nil {
		der, err = u.hasher.stamp(u.holderDER, u.signer, req.DataHash, req.PropertyInfo, at)
	} else {
		der, err = stampUnchecked(u.rec.DER, u.holderDER, u.signer, req.DataHash, req.PropertyInfo, at)
	}
	if err != nil {
		return nil, fmt.Errorf("seal: stamping with seal %s: %w", req.SealID, err)
	}
	value, err := signatureValue(der)
	if err != nil {
		return nil, err
	}
	id, err := s.randomHex(16)
	if err != nil {
		return nil, err
	}
	rec := StampRecord{
		ID: id, SealID: req.SealID, Principal: c.Name, At: at, DataHash: bytes.Clone(req.DataHash),
		PropertyInfo: req.PropertyInfo, ApprovalRef: req.ApprovalRef, Signature: value, CreatedAt: now,
	}
	if err := s.store.InsertStamp(ctx, &rec); err != nil {
		if errors.Is(err, ErrStampRefused) {
			return nil, s.explainRefusal(ctx, req.SealID, c.Name, at)
		}
		return nil, fmt.Errorf("seal: recording the stamp: %w", err)
	}
	return &Stamped{Record: rec, ESID: u.rec.ESID, DER: der}, nil
}

func checkPropertyInfo(p string) error {
	for i := 0; i < len(p); i++ {
		if p[i] >= utf8.RuneSelf {
			return fmt.Errorf("%w: property_info must be ASCII (it is an IA5String in TBS_Sign); found a non-ASCII character at byte %d", ErrInvalidRequest, i)
		}
		if p[i] < 0x20 || p[i] == 0x7f {
			return fmt.Errorf("%w: property_info contains a control character at byte %d", ErrInvalidRequest, i)
		}
	}
	if len(p) > MaxPropertyInfo {
		return fmt.Errorf("%w: property_info is longer than %d bytes", ErrInvalidRequest, MaxPropertyInfo)
	}
	return nil
}

// signatureValue returns the signer's signature value of a v4
// SES_Signature we just made, without parsing (and copying) the seal
// inside it again.
func signatureValue(der []byte) ([]byte, error) {
	in := cryptobyte.String(der)
	var sig cryptobyte.String
	var value asn1.BitString
	if !in.ReadASN1(&sig, cbasn1.SEQUENCE) || !sig.SkipASN1(cbasn1.SEQUENCE) || !sig.SkipASN1(cbasn1.OCTET_STRING) ||
		!sig.SkipASN1(cbasn1.OBJECT_IDENTIFIER) || !sig.ReadASN1BitString(&value) || value.BitLength%8 != 0 {
		return nil, errors.New("seal: the signature just made does not parse")
	}
	return bytes.Clone(value.Bytes), nil
}

// usableAt checks the seal's status and validity, and the holder
// certificate's validity, at a time.
func (u *usableSeal) usableAt(at time.Time) error {
	r := u.rec
	switch {
	case r.Status != SealActive:
		return fmt.Errorf("%w: seal %s is %s", ErrNotUsable, r.ID, r.Status)
	case at.Before(r.ValidStart) || at.After(r.ValidEnd):
		return fmt.Errorf("%w: seal %s is valid %s..%s, not at %s", ErrNotUsable, r.ID, fmtTime(r.ValidStart), fmtTime(r.ValidEnd), fmtTime(at))
	case at.After(u.holderEnd):
		return fmt.Errorf("%w: the holder certificate of seal %s expired at %s", ErrNotUsable, r.ID, fmtTime(u.holderEnd))
	}
	return nil
}

// usableSeal returns the seal with its holder key, from the cache when
// fresh. A cached seal that is not active is re-read before the caller is
// refused, so a resume elsewhere takes effect at once.
func (s *Service) usableSeal(ctx context.Context, id string, now time.Time) (*usableSeal, error) {
	s.mu.Lock()
	u, ok := s.usable[id]
	s.mu.Unlock()
	if ok && now.Sub(u.loaded) < s.cfg.CacheTTL && u.rec.Status == SealActive {
		return u, nil
	}
	rec, err := s.store.Seal(ctx, id)
	if err != nil {
		return nil, err
	}
	// Check once what stamping relies on, so that each stamp need not.
	parsed, err := ParseSeal(rec.DER)
	if err != nil {
		return nil, fmt.Errorf("seal: stored seal %s does not parse: %w", id, err)
	}
	if parsed.Version != VersionV4 || len(parsed.Certs) == 0 {
		return nil, fmt.Errorf("seal: stored seal %s is not a v4 seal with a holder certificate", id)
	}
	holder, err := smx509.ParseCertificate(parsed.Certs[0])
	if err != nil {
		return nil, fmt.Errorf("seal: holder certificate of seal %s: %w", id, err)
	}
	signer, err := s.keys.Signer(ctx, rec.HolderKeyRef)
	if err != nil {
		return nil, fmt.Errorf("seal: holder key of seal %s: %w", id, err)
	}
	if err := matchKey(parsed.Certs[0], signer); err != nil {
		return nil, fmt.Errorf("seal: holder key %s of seal %s: %w", rec.HolderKeyRef, id, err)
	}
	hasher, err := newStampHasher(rec.DER, holder.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("seal: holder key %s of seal %s: %w", rec.HolderKeyRef, id, err)
	}
	u = &usableSeal{rec: rec, holderDER: parsed.Certs[0], holderEnd: holder.NotAfter, signer: signer, hasher: hasher, loaded: now}
	s.mu.Lock()
	if len(s.usable) >= maxCached {
		clear(s.usable)
	}
	s.usable[id] = u
	s.mu.Unlock()
	return u, nil
}

// checkGrant confirms a grant, from the cache when confirmed recently.
// Only positive answers are cached, so a new grant works at once; a
// withdrawn one is caught by InsertStamp's own check.
func (s *Service) checkGrant(ctx context.Context, sealID, principal string, now time.Time) error {
	k := grantKey{sealID, principal}
	s.mu.Lock()
	at, ok := s.grants[k]
	s.mu.Unlock()
	if ok && now.Sub(at) < s.cfg.CacheTTL {
		return nil
	}
	granted, err := s.store.Granted(ctx, sealID, principal)
	if err != nil {
		return err
	}
	if !granted {
		return fmt.Errorf("%w: %s has no grant for seal %s", ErrForbidden, principal, sealID)
	}
	s.mu.Lock()
	if len(s.grants) >= maxCached {
		clear(s.grants)
	}
	s.grants[k] = now
	s.mu.Unlock()
	return nil
}

// explainRefusal reads the registry after InsertStamp refused a stamp,
// drops what the caches believed, and says why.
func (s *Service) explainRefusal(ctx context.Context, sealID, principal string, at time.Time) error {
	s.mu.Lock()
	delete(s.usable, sealID)
	delete(s.grants, grantKey{sealID, principal})
	s.mu.Unlock()
	rec, err := s.store.Seal(ctx, sealID)
	if err != nil {
		return err
	}
	if rec.Status != SealActive {
		return fmt.Errorf("%w: seal %s is %s", ErrNotUsable, sealID, rec.Status)
	}
	if ok, err := s.store.Granted(ctx, sealID, principal); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("%w: %s has no grant for seal %s", ErrForbidden, principal, sealID)
	}
	if c, err := s.authority.Find(ctx, rec.HolderSerial); err == nil && c.Status != ca.StatusGood {
		return fmt.Errorf("%w: the holder certificate %s of seal %s is %s", ErrNotUsable, rec.HolderSerial, sealID, c.Status)
	}
	return fmt.Errorf("%w: seal %s at %s", ErrStampRefused, sealID, fmtTime(at))
}

// Stamps lists a seal's stamps, newest first: all of them to those who
// oversee the seal, their own to principals granted it.
func (s *Service) Stamps(ctx context.Context, c Caller, id, cursor string, limit int) ([]StampRecord, string, error) {
	rec, err := s.store.Seal(ctx, id)
	if err != nil {
		return nil, "", err
	}
	f := StampFilter{SealID: id, Cursor: cursor, Limit: limit}
	p := c.principal()
	if d := s.policy.Decide(p, "stamp.list", sealResource(rec.ID, rec.Department, false, c.Name)); !d.Allowed {
		// Not every stamp of this seal: perhaps the caller's own ones,
		// for a principal that holds a grant (others learn nothing, not
		// even an empty list).
		granted, err := s.store.Granted(ctx, rec.ID, c.Name)
		if err != nil {
			return nil, "", err
		}
		own := policies.Resource{ID: "seal/" + rec.ID + "/stamps-by/" + c.Name, Department: rec.Department, Owner: c.Name}
		if d := s.policy.Decide(p, "stamp.list", own); !granted || !d.Allowed {
			return nil, "", fmt.Errorf("%w: %s may not list stamps of seal %s", ErrForbidden, c.Name, rec.ID)
		}
		f.Principal = c.Name
	}
	return s.store.Stamps(ctx, f)
}

// Verify verifies a seal signature against the registry (see Verifier).
// Data and digest follow VerifyOptions: nil means not given.
func (s *Service) Verify(ctx context.Context, sigDER, data, digest []byte) *Report {
	if s.verifier == nil {
		return Verify(ctx, sigDER, VerifyOptions{Data: data, Digest: digest, Now: s.now})
	}
	return s.verifier.Verify(ctx, sigDER, data, digest)
}

// Registry is what a Verifier reads from the seal registry.
type Registry interface {
	SealByESID(ctx context.Context, esID string) (*Record, error)
	StampBySignature(ctx context.Context, value []byte) (*StampRecord, error)
}

// VerifierOptions configure a Verifier. Every field is optional, as in
// VerifyOptions.
type VerifierOptions struct {
	// Registry, when set, decides the seal_status check (see Verifier).
	Registry   Registry
	Trust      TrustChecker
	Revocation RevocationChecker
	// Cache is shared by all verifications; nil means NewCache(4096).
	Cache *Cache
	Now   func() time.Time
	// StatusTTL is how long a seal's registry state is reused (default
	// 5 s). Changes made through the Service that owns the Verifier take
	// effect at once; changes by other processes within StatusTTL.
	StatusTTL time.Duration
}

// Verifier verifies seal signatures against trust anchors, revocation
// data and the seal registry. Safe for concurrent use.
//
// Registry rule (seal_status check). The registry records every stamp it
// makes before returning it, and never stamps with a seal that is not
// active, so a signature found in its stamp log was made while the seal
// was in force: that record is the proof of existence a bare timeInfo (a
// claim of the signer) cannot give. Hence:
//   - active seal: pass;
//   - signature not in the stamp log of a suspended or revoked seal:
//     fail (nothing shows it predates the change; a stamp the registry
//     did not make means the holder key was used elsewhere);
//   - suspended seal, signature in the log: indeterminate. A suspension is
//     "do not rely on it for now" (a misuse is being looked into, and the
//     suspension may be lifted or become a revocation), as certificateHold
//     is for certificates: try again later;
//   - revoked seal, signature in the log: by the revocation reason -
//     retired: pass (withdrawing a seal does not undo what it sealed
//     while in force, as for a certificate revoked after a proven
//     signing time); unspecified: indeterminate; compromised: fail;
//   - seal unknown to the registry: indeterminate; a different seal under
//     the same esID: fail.
type Verifier struct {
	reg   Registry
	opts  VerifyOptions
	ttl   time.Duration
	now   func() time.Time
	mu    sync.Mutex
	state map[string]registryState // by esID
}

type registryState struct {
	rec     *Record // nil: unknown to the registry
	fetched time.Time
}

// NewVerifier returns a Verifier.
func NewVerifier(o VerifierOptions) *Verifier {
	if o.Cache == nil {
		o.Cache = NewCache(4096)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.StatusTTL <= 0 {
		o.StatusTTL = 5 * time.Second
	}
	return &Verifier{
		reg:   o.Registry,
		opts:  VerifyOptions{Trust: o.Trust, Revocation: o.Revocation, Cache: o.Cache, Now: o.Now},
		ttl:   o.StatusTTL,
		now:   o.Now,
		state: map[string]registryState{},
	}
}

// Forget drops the cached registry state of a seal.
func (v *Verifier) Forget(esID string) {
	v.mu.Lock()
	delete(v.state, esID)
	v.mu.Unlock()
}

// Verify verifies a SES_Signature. Data and digest follow VerifyOptions:
// nil means not given. It never returns nil.
func (v *Verifier) Verify(ctx context.Context, sigDER, data, digest []byte) *Report {
	o := v.opts
	o.Data, o.Digest = data, digest
	r := Verify(ctx, sigDER, o)
	if v.reg == nil || r.Seal == nil {
		return r
	}
	result, detail := v.registryCheck(ctx, r, sigDER)
	r.insertCheck(Check{Name: CheckSealStatus, OK: result == ResultPass, Result: result, Detail: detail})
	return r.finish()
}

// insertCheck adds c before the timestamp check, where Verify puts the
// seal status.
func (r *Report) insertCheck(c Check) {
	for i, x := range r.Checks {
		if x.Name == CheckTimestamp {
			r.Checks = append(r.Checks[:i], append([]Check{c}, r.Checks[i:]...)...)
			return
		}
	}
	r.Checks = append(r.Checks, c)
}

// sealRecord returns the registry's record for esID (nil when unknown),
// through the cache.
func (v *Verifier) sealRecord(ctx context.Context, esID string) (*Record, error) {
	now := v.now()
	v.mu.Lock()
	st, ok := v.state[esID]
	v.mu.Unlock()
	if ok && now.Sub(st.fetched) < v.ttl {
		return st.rec, nil
	}
	rec, err := v.reg.SealByESID(ctx, esID)
	if errors.Is(err, ErrNotFound) {
		rec, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	if rec != nil {
		// Verification needs the state, not the bytes.
		slim := *rec
		slim.DER, slim.Picture = nil, nil
		rec = &slim
	}
	v.mu.Lock()
	if len(v.state) >= maxCached {
		clear(v.state)
	}
	v.state[esID] = registryState{rec: rec, fetched: now}
	v.mu.Unlock()
	return rec, nil
}

// registryCheck applies the registry rule documented on Verifier.
func (v *Verifier) registryCheck(ctx context.Context, r *Report, sigDER []byte) (result, detail string) {
	esID := r.Seal.ESID
	rec, err := v.sealRecord(ctx, esID)
	switch {
	case err != nil:
		return ResultIndeterminate, "seal registry unavailable: " + err.Error()
	case rec == nil:
		return ResultIndeterminate, "seal " + esID + " is unknown to this registry"
	case rec.Name != r.Seal.Name || rec.Type != r.Seal.Type || !rec.ValidStart.Equal(r.Seal.ValidStart) || !rec.ValidEnd.Equal(r.Seal.ValidEnd):
		return ResultFail, "the registry's seal " + esID + " is not the seal in this signature"
	case rec.Status == SealActive:
		return ResultPass, "seal " + esID + " is active in the registry"
	}
	changed := fmt.Sprintf("seal %s is %s since %s", esID, rec.Status, fmtTime(rec.StatusChangedAt))
	if rec.Status == SealRevoked {
		changed += " (reason " + rec.RevocationReason + ")"
	}
	if rec.Status == SealRevoked && rec.RevocationReason == RevokeCompromised {
		return ResultFail, changed + ": every stamp made with it is void"
	}
	st, err := v.recordedStamp(ctx, rec, sigDER)
	if err != nil {
		return ResultIndeterminate, changed + "; the stamp log is unavailable: " + err.Error()
	}
	if st == nil {
		return ResultFail, changed + ", and the registry has no record of this stamp, so nothing shows it was made while the seal was in force"
	}
	proof := fmt.Sprintf("%s; the registry recorded this stamp at %s (by %s), while the seal was in force", changed, fmtTime(st.CreatedAt), st.Principal)
	switch {
	case rec.Status == SealSuspended:
		return ResultIndeterminate, proof + ", but a suspension may still become a revocation: try again later"
	case rec.RevocationReason == RevokeRetired:
		return ResultPass, proof
	}
	return ResultIndeterminate, proof + ", but the revocation reason does not say whether earlier stamps stand"
}

// recordedStamp finds the registry's record of a signature (nil when
// there is none) and checks it is for this seal, time and data.
func (v *Verifier) recordedStamp(ctx context.Context, rec *Record, sigDER []byte) (*StampRecord, error) {
	sig, err := ParseSignature(sigDER)
	if err != nil {
		return nil, nil // Verify has already failed its structure check
	}
	st, err := v.reg.StampBySignature(ctx, sig.Value)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if st.SealID != rec.ID || !st.At.Equal(sig.TimeInfo) || !bytes.Equal(st.DataHash, sig.DataHash) {
		return nil, nil
	}
	return st, nil
}
