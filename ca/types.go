package ca

import (
	"context"
	"errors"
	"time"
)

// Status of a certificate as the CA tracks it.
type Status string

// Certificate statuses. Hold is a revocation with reason certificateHold
// that can still be lifted.
const (
	StatusGood    Status = "good"
	StatusRevoked Status = "revoked"
	StatusHold    Status = "hold"
)

// Role of a CA in the hierarchy.
type Role string

// CA roles.
const (
	RoleRoot    Role = "root"
	RoleIssuing Role = "issuing"
)

// Errors the store reports; callers test them with errors.Is.
var (
	ErrNotFound        = errors.New("not found")
	ErrDuplicateSerial = errors.New("duplicate serial number")
	ErrAlreadyRevoked  = errors.New("certificate already revoked with a different reason")
	ErrNotOnHold       = errors.New("certificate is not on hold")
)

// CARecord is a CA certificate and where its key lives.
type CARecord struct {
	ID        string
	Name      string
	Algorithm string // hsm.Algorithm of its key
	ParentID  string // "" for a root
	Role      Role
	KeyRef    string
	DER       []byte
	NotBefore time.Time
	NotAfter  time.Time
	CreatedAt time.Time
}

// SignerRecord is a delegated signing certificate, such as the OCSP
// responder's, issued by CAID.
type SignerRecord struct {
	ID        string
	CAID      string
	Purpose   string // "ocsp"
	KeyRef    string
	DER       []byte
	Serial    string
	NotBefore time.Time
	NotAfter  time.Time
	CreatedAt time.Time
}

// Certificate is one issued certificate.
type Certificate struct {
	CAID           string
	Serial         string // lower-case hex, no leading zeros
	Profile        string
	Department     string
	Subject        string // RFC 4514 string, for display and search
	SANs           []string
	KeyAlgorithm   string
	NotBefore      time.Time
	NotAfter       time.Time
	Status         Status
	Reason         int // RFC 5280 CRLReason; meaningful when not good
	RevokedAt      time.Time
	InvalidityDate time.Time // zero when not given
	DER            []byte
	RequestedBy    string
	CreatedAt      time.Time
}

// Filter selects certificates for listing.
type Filter struct {
	CAID       string
	Status     Status
	Department string
	Profile    string
	// Cursor is opaque: the value a previous page returned.
	Cursor string
	Limit  int
}

// RevokedEntry is one line of a CRL.
type RevokedEntry struct {
	Serial         string
	RevokedAt      time.Time
	Reason         int
	InvalidityDate time.Time
}

// CRLRecord is a generated CRL.
type CRLRecord struct {
	CAID       string
	Number     int64
	ThisUpdate time.Time
	NextUpdate time.Time
	DER        []byte
	CreatedAt  time.Time
}

// Revocation is a request to revoke (or put on hold) one certificate.
type Revocation struct {
	CAID           string
	Serial         string
	Reason         int
	At             time.Time
	InvalidityDate time.Time
	By             string
}

// Store is what the CA needs from persistence. Every write must be durable
// when the method returns.
type Store interface {
	// CAs returns every CA, roots first.
	CAs(ctx context.Context) ([]CARecord, error)
	// Signers returns the delegated signers of a purpose, newest first.
	Signers(ctx context.Context, purpose string) ([]SignerRecord, error)
	// InsertSigner records a delegated signer (its certificate must also be
	// inserted with InsertCertificate).
	InsertSigner(ctx context.Context, s *SignerRecord) error

	// InsertCertificate stores a newly issued certificate. It returns
	// ErrDuplicateSerial when (CAID, Serial) exists.
	InsertCertificate(ctx context.Context, c *Certificate) error
	// Certificate returns one certificate or ErrNotFound.
	Certificate(ctx context.Context, caID, serial string) (*Certificate, error)
	// Certificates lists certificates, newest first, and the cursor of the
	// next page ("" when there is none).
	Certificates(ctx context.Context, f Filter) ([]Certificate, string, error)
	// Revoke marks a certificate revoked (or on hold when Reason is 6) and
	// returns it as stored afterwards. Revoking again with the same reason
	// changes nothing and succeeds; a held certificate may be revoked for
	// another reason; a revoked one may not (ErrAlreadyRevoked).
	Revoke(ctx context.Context, r Revocation) (*Certificate, error)
	// Unhold lifts a certificateHold; ErrNotOnHold otherwise.
	Unhold(ctx context.Context, caID, serial, by string, at time.Time) (*Certificate, error)

	// RevokedEntries streams the CRL entries of a CA: revoked and held
	// certificates that have not expired at now.
	RevokedEntries(ctx context.Context, caID string, now time.Time, fn func(RevokedEntry) error) error
	// RevokedEntriesBetween streams the entries whose notAfter is in
	// [from, to) (zero to: unbounded); disjoint ranges may be read
	// concurrently.
	RevokedEntriesBetween(ctx context.Context, caID string, from, to time.Time, fn func(RevokedEntry) error) error
	// RevokedSpan counts the CRL entries at now and gives the range of
	// their notAfter times.
	RevokedSpan(ctx context.Context, caID string, now time.Time) (n int64, lo, hi time.Time, err error)
	// NextCRL runs build with the next CRL number for the CA and stores the
	// result, under a lock that makes numbers strictly increase even when
	// several processes share the database.
	NextCRL(ctx context.Context, caID string, build func(number int64) (*CRLRecord, error)) (*CRLRecord, error)
	// LatestCRL returns the newest CRL of a CA or ErrNotFound.
	LatestCRL(ctx context.Context, caID string) (*CRLRecord, error)
}
