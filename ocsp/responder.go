package ocsp

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gmtrust/gmtrust/ca"
)

// The responder answers OCSP requests for the CAs it serves.
//
// The hot path is a request without nonce for one certificate: it is
// answered with a response signed ahead of time (by the Presigner, or when
// a revocation happened), found in the in-memory cache or, on a miss, in
// the store; nothing is signed. Requests with a nonce, with several
// CertIDs, for a certificate not pre-signed yet, for a serial the CA never
// issued, or with a CertID hash that is not pre-signed are signed on
// demand with the current delegated signer.
//
// Freshness: a revocation re-signs the certificate's responses before
// Authority.Revoke returns and evicts them from this process's cache, so
// this process never serves a stale "good" once Revoke has returned. Other
// processes sharing a PostgreSQL database evict on the NOTIFY sent when the
// re-signed responses commit (milliseconds); should a notice be lost (the
// LISTEN connection drops), the whole cache is flushed on reconnect. Every
// status change also leaves a revocation event that the invalidation
// listener polls (both databases, every 250 ms) and evicts; after each
// complete poll it tells the responder (InvalidationsApplied) that every
// change committed until then has reached the cache. A cached entry is
// served for Config.CacheMaxAge (60 s by default) after the later of its
// own status read and the last complete poll, but never longer than
// Config.VerifyMaxAge (10 min) after its own status read: the listener
// vouches for entries while it keeps up, and should it fall behind or
// miss an event, the store is read again within those bounds. Entries in
// use are re-read in the background, in batches, before their age runs
// out (RunRefresher, refresh.go), so the request path rarely waits for
// the store. A stored response is served only while its recorded status
// still matches the certificates table.
//
// Expired certificates are answered with their last status (good or
// revoked), as RFC 6960 section 2.2 allows: the CA keeps their rows, and a
// relying party validating an old signature may still ask. They are no
// longer pre-signed; their responses are signed on demand.

// Default configuration values.
const (
	DefaultValidity       = 24 * time.Hour
	DefaultCacheEntries   = 100_000
	DefaultCacheMaxAge    = 60 * time.Second
	DefaultNegativeMaxAge = 10 * time.Second
	DefaultVerifyMaxAge   = 10 * time.Minute
	DefaultHTTPMaxAge     = time.Hour
	// DefaultRenewMargin is the minimum remaining validity of the OCSP
	// signing certificate before it is renewed; renewal also happens when
	// less than a third of its validity remains.
	DefaultRenewMargin = 48 * time.Hour
	// revocationTimeout bounds the synchronous re-signing done for a
	// revocation, which runs even if the caller's context is canceled.
	revocationTimeout = 30 * time.Second
)

// DefaultHashes are the CertID hash algorithms responses are pre-signed
// for: SHA-1 (what OpenSSL and most clients send), SHA-256 and SM3.
func DefaultHashes() []HashAlg { return []HashAlg{HashSHA1, HashSHA256, HashSM3} }

// Sentinel errors.
var (
	// ErrNoSigner is returned when no usable delegated OCSP signer exists
	// for a CA (none recorded, all expired, or the key is unavailable).
	ErrNoSigner = errors.New("ocsp: no usable OCSP signer")
	// ErrReadOnly is returned when a responder without keys is asked to
	// sign.
	ErrReadOnly = errors.New("ocsp: responder has no signing keys")
)

// CertStatus is a certificate's revocation state as the CA records it.
type CertStatus struct {
	CAID string
	// Serial is canonical lower-case hex, as in ca.Certificate.
	Serial string
	// Status is ca.StatusGood, ca.StatusRevoked or ca.StatusHold.
	Status ca.Status
	// Reason is the CRLReason when Status is not good.
	Reason    int
	RevokedAt time.Time
	NotAfter  time.Time
}

// StoredResponse is a signed response as the store keeps it: one per
// certificate and CertID hash algorithm, with the certificate status it
// was signed for so the store can tell when it no longer applies.
type StoredResponse struct {
	CAID      string
	Serial    string
	Hash      HashAlg
	Status    ca.Status
	Reason    int
	RevokedAt time.Time
	// ThisUpdate, NextUpdate are the response's; RefreshAt is when the
	// pre-signer re-signs it.
	ThisUpdate time.Time
	NextUpdate time.Time
	RefreshAt  time.Time
	DER        []byte
}

// ClaimKind selects what a Claim locks.
type ClaimKind int

// Claim kinds.
const (
	// ClaimDue claims unexpired certificates with a response whose
	// RefreshAt has come.
	ClaimDue ClaimKind = iota + 1
	// ClaimMissing claims unexpired certificates lacking a response for
	// one of the hashes, scanning certificates in creation order.
	ClaimMissing
	// ClaimOne claims the named certificate (expired or not), waiting for
	// its lock if another process holds it.
	ClaimOne
)

// Claim asks the store for certificates to sign responses for.
type Claim struct {
	Kind ClaimKind
	// CAIDs are the CAs served (ClaimDue, ClaimMissing).
	CAIDs []string
	// Hashes are the hash algorithms a certificate needs a response for.
	Hashes []HashAlg
	Now    time.Time
	// Limit is the most certificates claimed at once.
	Limit int
	// Since and After bound a ClaimMissing scan: certificates created at
	// or after Since, after the position After (a ClaimResult.Next; "" for
	// the start). Window bounds how many certificates one claim examines,
	// so that no query scans the whole table.
	Since  time.Time
	After  string
	Window int
	// CAID and Serial name the certificate of ClaimOne.
	CAID, Serial string
	// Notify asks the store to tell other responder processes, when the
	// transaction commits, that the certificate's responses changed.
	Notify bool
}

// ClaimResult says what a claim did.
type ClaimResult struct {
	// Claimed is how many certificates were locked and examined; Signed
	// how many responses were stored.
	Claimed, Signed int
	// Scanned is how many certificates a ClaimMissing examined.
	Scanned int
	// Next continues a ClaimMissing scan; "" when it reached the end.
	Next string
}

// SignFunc signs the responses of claimed certificates. The store calls it
// inside the claiming transaction and stores what it returns.
type SignFunc func(ctx context.Context, certs []CertStatus) ([]StoredResponse, error)

// ResponseStore is what the responder needs from persistence. Errors for
// records that do not exist wrap ca.ErrNotFound.
type ResponseStore interface {
	// CertificateStatus returns a certificate's revocation state.
	CertificateStatus(ctx context.Context, caID, serial string) (CertStatus, error)
	// CertificateStatuses returns the revocation states of several
	// certificates of one CA (at most a few hundred), keyed by serial;
	// serials the CA never issued are absent.
	CertificateStatuses(ctx context.Context, caID string, serials []string) (map[string]CertStatus, error)
	// Response returns the stored response for a certificate and hash, but
	// only while the status it was signed for is still the certificate's.
	Response(ctx context.Context, caID, serial string, h HashAlg) (*StoredResponse, error)
	// ClaimBatch locks the certificates the claim selects against other
	// processes, calls sign with those that still need responses and
	// stores the result, in one transaction.
	ClaimBatch(ctx context.Context, c Claim, sign SignFunc) (ClaimResult, error)
	// DeleteResponses removes every stored response of a certificate and,
	// like a Notify claim, tells other processes.
	DeleteResponses(ctx context.Context, caID, serial string) error
}

// SignerSource lists delegated signers (ca.Store has this method).
type SignerSource interface {
	Signers(ctx context.Context, purpose string) ([]ca.SignerRecord, error)
}

// KeySource hands out signers for key references (hsm.KeyManager has
// this method).
type KeySource interface {
	Signer(ctx context.Context, ref string) (crypto.Signer, error)
}

// Renewer issues a new delegated signer (ca.Authority has these methods).
type Renewer interface {
	DefaultCA() string
	RenewDelegatedSigner(ctx context.Context, purpose string) (*ca.SignerRecord, *ca.Certificate, error)
}

// Config tunes a Responder. Zero values select the defaults.
type Config struct {
	// Hashes are the CertID hash algorithms responses are pre-signed for
	// (DefaultHashes). Others are understood and signed on demand.
	Hashes []HashAlg
	// Validity is nextUpdate - thisUpdate (DefaultValidity).
	Validity time.Duration
	// CacheEntries bounds the in-memory cache (DefaultCacheEntries).
	CacheEntries int
	// CacheMaxAge is how long a cached response is served after its
	// status was last confirmed, by a read of the store or by a complete
	// poll of the invalidation listener (DefaultCacheMaxAge): the bound
	// on staleness should the listener stop.
	CacheMaxAge time.Duration
	// VerifyMaxAge is how long a cached response is served after its
	// status was last read from the store, however current the listener
	// is (DefaultVerifyMaxAge; at least CacheMaxAge): the safety net
	// should a revocation event be missed. Each entry in use costs one
	// status read per VerifyMaxAge.
	VerifyMaxAge time.Duration
	// NegativeMaxAge is how long an "unknown" answer is cached
	// (DefaultNegativeMaxAge).
	NegativeMaxAge time.Duration
	// HTTPMaxAge caps Cache-Control max-age of GET responses
	// (DefaultHTTPMaxAge); it bounds how long HTTP caches may keep serving
	// a "good" after a revocation.
	HTTPMaxAge time.Duration
	// RenewMargin: the signer is renewed when less than this or less than
	// a third of its validity remains (DefaultRenewMargin).
	RenewMargin time.Duration
	// Workers is how many goroutines sign a batch of responses (default
	// GOMAXPROCS/2, at least 1).
	Workers int
}

func (c *Config) defaults() error {
	if len(c.Hashes) == 0 {
		c.Hashes = DefaultHashes()
	}
	c.Hashes = slices.Clone(c.Hashes)
	slices.Sort(c.Hashes)
	c.Hashes = slices.Compact(c.Hashes)
	for _, h := range c.Hashes {
		if h.Size() == 0 {
			return fmt.Errorf("%w: %v", ErrUnsupportedHash, h)
		}
	}
	if c.Validity <= 0 {
		c.Validity = DefaultValidity
	}
	if c.Validity < 2*time.Minute {
		return fmt.Errorf("ocsp: response validity %v is too short", c.Validity)
	}
	if c.CacheEntries <= 0 {
		c.CacheEntries = DefaultCacheEntries
	}
	if c.CacheMaxAge <= 0 {
		c.CacheMaxAge = DefaultCacheMaxAge
	}
	if c.NegativeMaxAge <= 0 {
		c.NegativeMaxAge = DefaultNegativeMaxAge
	}
	if c.VerifyMaxAge <= 0 {
		c.VerifyMaxAge = DefaultVerifyMaxAge
	}
	c.VerifyMaxAge = max(c.VerifyMaxAge, c.CacheMaxAge)
	if c.HTTPMaxAge <= 0 {
		c.HTTPMaxAge = DefaultHTTPMaxAge
	}
	if c.RenewMargin <= 0 {
		c.RenewMargin = DefaultRenewMargin
	}
	if c.Workers <= 0 {
		c.Workers = defaultWorkers()
	}
	return nil
}

// Deps are the collaborators of a Responder.
type Deps struct {
	// CAs are the CAs answered for. Each needs a delegated OCSP signer it
	// issued (purpose ca.PurposeOCSP); CAs without one are skipped.
	CAs     []ca.CARecord
	Store   ResponseStore
	Signers SignerSource
	// Keys loads signing keys; nil makes a read-only responder that
	// serves stored responses only (see ErrReadOnly).
	Keys KeySource
	// Renewer and Locker enable renewal of the OCSP signer (RenewSigners);
	// the lock makes one process of several renew.
	Renewer Renewer
	Locker  ca.Locker
	Now     func() time.Time
	Logger  *slog.Logger
	Metrics prometheus.Registerer
}

// signerState is a loaded delegated signer.
type signerState struct {
	rec    ca.SignerRecord
	signer crypto.Signer // nil for a read-only responder
	// keyHash is the byKey ResponderID: SHA-1 of the subjectPublicKey.
	keyHash []byte
	certs   [][]byte
}

// issuerState is a CA served, with its CertID hashes precomputed for every
// hash algorithm the codec knows.
type issuerState struct {
	id       string
	index    byte // in cache keys
	cert     *smx509.Certificate
	nameHash [HashSM3 + 1][]byte
	keyHash  [HashSM3 + 1][]byte
	signer   atomic.Pointer[signerState]
}

// Responder answers OCSP requests. It is safe for concurrent use.
type Responder struct {
	cfg     Config
	store   ResponseStore
	signers SignerSource
	keys    KeySource
	renewer Renewer
	locker  ca.Locker
	now     func() time.Time
	log     *slog.Logger
	metrics *metrics

	issuers []*issuerState
	cache   *cache
	// canonical holds the DER AlgorithmIdentifier of pre-signed CertIDs,
	// indexed by HashAlg: a request spelling it otherwise (parameters
	// absent) is answered on demand so the echoed CertID matches.
	canonical [HashSM3 + 1][]byte
	// presigned marks the configured hashes, indexed by HashAlg.
	presigned [HashSM3 + 1]bool

	// reloadMu serialises signer reloads and renewals in this process.
	reloadMu sync.Mutex

	// refreshQ holds cache entries for RunRefresher; refreshOn is set
	// while it runs (see refresh.go).
	refreshQ  chan refreshJob
	refreshOn atomic.Bool
	// applied is what the invalidation listener last reported
	// (InvalidationsApplied); nil until it has.
	applied atomic.Pointer[appliedSpan]
}

// New builds a responder and loads the current signer of every CA.
func New(ctx context.Context, cfg Config, d Deps) (*Responder, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if d.Store == nil || d.Signers == nil {
		return nil, errors.New("ocsp: a store and a signer source are required")
	}
	if len(d.CAs) == 0 {
		return nil, errors.New("ocsp: no CA to answer for")
	}
	if len(d.CAs) > 255 {
		return nil, errors.New("ocsp: more than 255 CAs")
	}
	r := &Responder{
		cfg: cfg, store: d.Store, signers: d.Signers, keys: d.Keys, renewer: d.Renewer, locker: d.Locker,
		now: d.Now, log: d.Logger, cache: newCache(cfg.CacheEntries), refreshQ: make(chan refreshJob, refreshQueue),
	}
	r.metrics = newMetrics(d.Metrics, r.cache)
	if r.now == nil {
		r.now = time.Now
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	for h := HashSHA1; h <= HashSM3; h++ {
		r.canonical[h] = []byte(h.algorithmIdentifier())
	}
	for _, h := range cfg.Hashes {
		r.presigned[h] = true
	}
	for i, rec := range d.CAs {
		cert, err := smx509.ParseCertificate(rec.DER)
		if err != nil {
			return nil, fmt.Errorf("ocsp: CA %s certificate: %w", rec.ID, err)
		}
		bits, err := SubjectPublicKeyBits(cert.RawSubjectPublicKeyInfo)
		if err != nil {
			return nil, fmt.Errorf("ocsp: CA %s: %w", rec.ID, err)
		}
		iss := &issuerState{id: rec.ID, index: byte(i), cert: cert}
		for h := HashSHA1; h <= HashSM3; h++ {
			iss.nameHash[h] = h.Sum(cert.RawSubject)
			iss.keyHash[h] = h.Sum(bits)
		}
		r.issuers = append(r.issuers, iss)
	}
	if err := r.ReloadSigners(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// ReadOnly reports whether the responder has no keys: it then serves only
// stored responses.
func (r *Responder) ReadOnly() bool { return r.keys == nil }

// CAIDs returns the ids of the CAs answered for.
func (r *Responder) CAIDs() []string {
	ids := make([]string, len(r.issuers))
	for i, iss := range r.issuers {
		ids[i] = iss.id
	}
	return ids
}

// Ready reports whether the responder can answer for every CA it serves:
// each has a delegated signer that is valid now and, unless the
// responder is read-only, whose key the key manager hands out (an HSM
// that went away makes it unready). For /readyz.
func (r *Responder) Ready(ctx context.Context) error {
	now := r.now()
	for _, iss := range r.issuers {
		s := iss.signer.Load()
		switch {
		case s == nil:
			return fmt.Errorf("ocsp: CA %s has no OCSP signer", iss.id)
		case now.Before(s.rec.NotBefore) || !now.Before(s.rec.NotAfter):
			return fmt.Errorf("ocsp: the OCSP signer of CA %s is valid %s to %s, not now", iss.id,
				s.rec.NotBefore.UTC().Format(time.RFC3339), s.rec.NotAfter.UTC().Format(time.RFC3339))
		}
		if r.keys != nil {
			if _, err := r.keys.Signer(ctx, s.rec.KeyRef); err != nil {
				return fmt.Errorf("ocsp: the OCSP signer key of CA %s: %w", iss.id, err)
			}
		}
	}
	return nil
}

// Hashes returns the hash algorithms responses are pre-signed for.
func (r *Responder) Hashes() []HashAlg { return slices.Clone(r.cfg.Hashes) }

// Signer returns the delegated signer currently used for a CA.
func (r *Responder) Signer(caID string) (ca.SignerRecord, bool) {
	iss := r.issuerByID(caID)
	if iss == nil {
		return ca.SignerRecord{}, false
	}
	s := iss.signer.Load()
	if s == nil {
		return ca.SignerRecord{}, false
	}
	return s.rec, true
}

func (r *Responder) issuerByID(id string) *issuerState {
	for _, iss := range r.issuers {
		if iss.id == id {
			return iss
		}
	}
	return nil
}

// ReloadSigners picks, for every CA, the newest unexpired OCSP signer it
// issued and switches to it. Responses signed by a previous signer stay
// valid until their nextUpdate. A CA left without a usable signer keeps its
// stored responses but cannot sign; that is logged, not an error, so a
// responder can start and renew.
func (r *Responder) ReloadSigners(ctx context.Context) error {
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	return r.reloadSigners(ctx)
}

func (r *Responder) reloadSigners(ctx context.Context) error {
	recs, err := r.signers.Signers(ctx, ca.PurposeOCSP)
	if err != nil {
		return fmt.Errorf("ocsp: loading signers: %w", err)
	}
	now := r.now()
	for _, iss := range r.issuers {
		cur := iss.signer.Load()
		var chosen *signerState
		var lastErr error
		for _, rec := range recs { // newest first
			if rec.CAID != iss.id || now.Before(rec.NotBefore) || !now.Before(rec.NotAfter) {
				continue
			}
			if cur != nil && cur.rec.ID == rec.ID {
				chosen = cur
				break
			}
			s, err := r.loadSigner(ctx, iss, rec)
			if err != nil {
				lastErr = err
				continue
			}
			chosen = s
			break
		}
		if chosen == nil {
			if cur != nil && !now.Before(cur.rec.NotAfter) {
				iss.signer.Store(nil)
			}
			if lastErr == nil {
				lastErr = errors.New("none recorded or all expired")
			}
			r.log.Error("ocsp: no usable OCSP signer", "ca", iss.id, "err", lastErr)
			continue
		}
		if chosen != cur {
			iss.signer.Store(chosen)
			r.log.Info("ocsp: using OCSP signer", "ca", iss.id, "signer", chosen.rec.ID, "serial", chosen.rec.Serial, "not_after", chosen.rec.NotAfter)
		}
	}
	return nil
}

// loadSigner checks that rec is a delegated OCSP signer of iss and loads
// its key.
func (r *Responder) loadSigner(ctx context.Context, iss *issuerState, rec ca.SignerRecord) (*signerState, error) {
	cert, err := smx509.ParseCertificate(rec.DER)
	if err != nil {
		return nil, fmt.Errorf("signer %s certificate: %w", rec.ID, err)
	}
	if !bytes.Equal(cert.RawIssuer, iss.cert.RawSubject) {
		return nil, fmt.Errorf("signer %s was not issued by CA %s", rec.ID, iss.id)
	}
	if !slices.Contains(cert.ExtKeyUsage, smx509.ExtKeyUsageOCSPSigning) {
		return nil, fmt.Errorf("signer %s certificate lacks id-kp-OCSPSigning", rec.ID)
	}
	if err := cert.CheckSignatureFrom(iss.cert); err != nil {
		return nil, fmt.Errorf("signer %s certificate signature: %w", rec.ID, err)
	}
	bits, err := SubjectPublicKeyBits(cert.RawSubjectPublicKeyInfo)
	if err != nil {
		return nil, err
	}
	s := &signerState{rec: rec, keyHash: HashSHA1.Sum(bits), certs: [][]byte{rec.DER}}
	if r.keys == nil {
		return s, nil
	}
	s.signer, err = r.keys.Signer(ctx, rec.KeyRef)
	if err != nil {
		return nil, fmt.Errorf("signer %s key: %w", rec.ID, err)
	}
	pub, ok := s.signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("signer %s key does not match its certificate", rec.ID)
	}
	return s, nil
}

// needsRenewal says whether a signer is (nearly) expired at now.
func (r *Responder) needsRenewal(s *signerState, now time.Time) bool {
	if s == nil {
		return true
	}
	left := s.rec.NotAfter.Sub(now)
	return left < r.cfg.RenewMargin || left < s.rec.NotAfter.Sub(s.rec.NotBefore)/3
}

// RenewSigners renews the OCSP signer of the renewer's CA when less than a
// third of its validity, or less than RenewMargin, remains, and switches
// every CA to its newest signer. Under the Locker only one process of
// several sharing a database renews; the others pick the new signer up
// from the store on their next call. It reports whether it renewed.
func (r *Responder) RenewSigners(ctx context.Context) (bool, error) {
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	if err := r.reloadSigners(ctx); err != nil {
		return false, err
	}
	if r.renewer == nil || r.keys == nil {
		return false, nil
	}
	iss := r.issuerByID(r.renewer.DefaultCA())
	if iss == nil || !r.needsRenewal(iss.signer.Load(), r.now()) {
		return false, nil
	}
	renewed := false
	renew := func(ctx context.Context) error {
		// Another process may have renewed while we waited for the lock.
		if err := r.reloadSigners(ctx); err != nil {
			return err
		}
		if !r.needsRenewal(iss.signer.Load(), r.now()) {
			return nil
		}
		rec, _, err := r.renewer.RenewDelegatedSigner(ctx, ca.PurposeOCSP)
		if err != nil {
			return fmt.Errorf("ocsp: renewing the OCSP signer of %s: %w", iss.id, err)
		}
		r.log.Info("ocsp: renewed OCSP signer", "ca", iss.id, "signer", rec.ID, "not_after", rec.NotAfter)
		renewed = true
		return r.reloadSigners(ctx)
	}
	if r.locker == nil {
		return renewed, renew(ctx)
	}
	_, err := r.locker.TryLock(ctx, "ocsp-signer-renewal", renew)
	return renewed, err
}

// match finds the served CA a CertID names, or nil.
func (r *Responder) match(id *CertID) *issuerState {
	h := id.HashAlgorithm
	if h <= HashUnknown || h > HashSM3 {
		return nil
	}
	for _, iss := range r.issuers {
		if bytes.Equal(id.IssuerNameHash, iss.nameHash[h]) && bytes.Equal(id.IssuerKeyHash, iss.keyHash[h]) {
			return iss
		}
	}
	return nil
}

// cacheable reports whether the pre-signed response (canonical CertID) can
// answer id byte for byte.
func (r *Responder) cacheable(id *CertID) bool {
	h := id.HashAlgorithm
	return len(id.RawHashAlgorithm) == 0 || bytes.Equal(id.RawHashAlgorithm, r.canonical[h])
}

// Answer is the outcome of one request: the DER OCSPResponse to send and
// what the HTTP layer needs to know about it.
type Answer struct {
	DER    []byte
	Status ResponseStatus
	// entry is set for a single-certificate answer without nonce: the
	// response may be cached by HTTP caches (RFC 5019) until its
	// nextUpdate.
	entry   *entry
	outcome outcome
}

// Entry reports the response's thisUpdate, nextUpdate and ETag when the
// answer is cacheable (one certificate, no nonce).
func (a *Answer) Entry() (thisUpdate, nextUpdate time.Time, etag string, ok bool) {
	if a.entry == nil {
		return time.Time{}, time.Time{}, "", false
	}
	return a.entry.thisUpdate.time(), a.entry.nextUpdate.time(), a.entry.etag(), true
}

// errorAnswer returns an unsigned error response.
func errorAnswer(s ResponseStatus, o outcome) Answer {
	return Answer{DER: ErrorResponse(s), Status: s, outcome: o}
}

// errTryLater marks failures of the store or the signer: the client is
// told to try later.
var errTryLater = errors.New("ocsp: temporarily unable to answer")

// Respond answers a DER OCSPRequest. It never fails: problems become
// OCSP error responses (malformedRequest, unauthorized, tryLater,
// internalError).
func (r *Responder) Respond(ctx context.Context, der []byte) Answer {
	req, err := ParseRequest(der)
	if err != nil {
		return errorAnswer(MalformedRequest, outcomeMalformed)
	}
	if len(req.CertIDs) == 1 && !req.HasNonce {
		id := &req.CertIDs[0]
		iss := r.match(id)
		if iss == nil {
			return errorAnswer(Unauthorized, outcomeUnauthorized)
		}
		if r.cacheable(id) {
			e, err := r.resolve(ctx, iss, id, true)
			if err != nil {
				return r.failure(err)
			}
			if e.der != nil {
				return Answer{DER: e.der, Status: Successful, entry: e, outcome: statusOutcome(e.status)}
			}
			return r.failure(ErrReadOnly)
		}
	}
	return r.respondLive(ctx, req)
}

func (r *Responder) failure(err error) Answer {
	switch {
	case errors.Is(err, ErrReadOnly):
		// Not capable of responding authoritatively (RFC 6960 2.3).
		return errorAnswer(Unauthorized, outcomeUnauthorized)
	case errors.Is(err, errTryLater), errors.Is(err, ErrNoSigner):
		// A missing signer is temporary: renewal brings a new one.
		r.log.Warn("ocsp: answering tryLater", "err", err)
		return errorAnswer(TryLater, outcomeTryLater)
	}
	r.log.Error("ocsp: internal error", "err", err)
	return errorAnswer(InternalError, outcomeInternalError)
}

// resolve finds the status of one certificate and, when withDER, a signed
// response for it: from the cache, the store, or signed now. It returns
// an error wrapping errTryLater when the store or the signer fails and
// nothing cached can stand in.
func (r *Responder) resolve(ctx context.Context, iss *issuerState, id *CertID, withDER bool) (*entry, error) {
	var kb [keySize]byte
	key := cacheKey(kb[:0], iss.index, id.HashAlgorithm, id.SerialNumber)
	// The cache and the store hold responses with canonical CertIDs: they
	// answer a differently spelled CertID's status, not with their DER.
	canonical := r.cacheable(id)
	usable := canonical || !withDER
	now := r.now()
	cached := r.cache.get(key)
	nowi := instantOf(now)
	if cached != nil && usable && nowi < cached.nextUpdate {
		if until, refreshAt := r.servable(cached); nowi < until {
			r.metrics.cacheHit.Inc()
			if nowi >= refreshAt {
				r.queueRefresh(iss, key, cached)
			}
			return cached, nil
		}
	}
	gen := r.cache.generation(key)
	serial := id.SerialNumber.Text(16)

	// An entry past its cache age but in the first half of its validity
	// only needs its certificate's status confirmed: one primary-key read
	// instead of reloading and re-hashing the response. Later on it is
	// reloaded, to pick up the response the pre-signer has re-signed.
	if cached != nil && cached.der != nil && usable && nowi < cached.revalidateUntil {
		st, err := r.store.CertificateStatus(ctx, iss.id, serial)
		same := false
		switch {
		case err == nil:
			same = cached.hasStatus(&st)
		case errors.Is(err, ca.ErrNotFound):
			same = cached.hasStatus(nil)
		default:
			// The store is down: what is cached stands in (see stale).
			r.metrics.cacheStale.Inc()
			return cached, nil
		}
		if same {
			r.metrics.cacheRevalidated.Inc()
			e := r.renewed(cached, now)
			if canonical {
				r.cache.add(key, e, gen)
			}
			return e, nil
		}
	}
	r.metrics.cacheMiss.Inc()

	// stale serves what the cache still holds when the store is down: it
	// is within its nextUpdate, and with the store down no revocation can
	// have been recorded since (Revoke writes the store first).
	stale := func(err error) (*entry, error) {
		if cached != nil && usable && nowi < cached.nextUpdate {
			r.metrics.cacheStale.Inc()
			return cached, nil
		}
		return nil, fmt.Errorf("%w: %v", errTryLater, err)
	}

	if r.presigned[id.HashAlgorithm] && usable {
		sr, err := r.store.Response(ctx, iss.id, serial, id.HashAlgorithm)
		switch {
		case err == nil && now.Before(sr.NextUpdate):
			e := r.storedEntry(sr, now)
			if canonical {
				r.cache.add(key, e, gen)
			}
			return e, nil
		case err != nil && !errors.Is(err, ca.ErrNotFound):
			return stale(err)
		}
	}

	st, err := r.store.CertificateStatus(ctx, iss.id, serial)
	status, reason, revokedAt := Unknown, -1, time.Time{}
	switch {
	case err == nil:
		status, reason, revokedAt = certStatus(st)
	case !errors.Is(err, ca.ErrNotFound):
		return stale(err)
	}
	if !withDER {
		return &entry{meta: meta{status: status, reason: reason, revokedAt: instantOf(revokedAt)}}, nil
	}
	s := iss.signer.Load()
	if s == nil {
		return nil, fmt.Errorf("%w for CA %s", ErrNoSigner, iss.id)
	}
	if s.signer == nil {
		return nil, ErrReadOnly
	}
	thisUpdate, nextUpdate := r.window(s, now)
	single := SingleResponse{CertID: *id, Status: status, RevokedAt: revokedAt, RevocationReason: reason, ThisUpdate: thisUpdate, NextUpdate: nextUpdate}
	der, err := r.sign(ctx, s, []SingleResponse{single}, nil, now, signLive)
	if err != nil {
		return nil, err
	}
	httpMax := r.cfg.HTTPMaxAge
	if status == Unknown {
		httpMax = r.cfg.NegativeMaxAge
	}
	e := r.newEntry(der, status, reason, revokedAt, thisUpdate, nextUpdate, now, httpMax)
	if canonical {
		r.cache.add(key, e, gen)
	}
	return e, nil
}

// storedEntry makes the cache entry of a pre-signed response read at now.
func (r *Responder) storedEntry(sr *StoredResponse, now time.Time) *entry {
	status, reason, revokedAt := certStatus(CertStatus{Status: sr.Status, Reason: sr.Reason, RevokedAt: sr.RevokedAt})
	return r.newEntry(sr.DER, status, reason, revokedAt, sr.ThisUpdate, sr.NextUpdate, now, r.cfg.HTTPMaxAge)
}

// cacheExpiry returns when an entry cached at now stops being served
// without asking the store (expires) and when a hit asks the background
// refresher to renew it (refreshAt). expires is CacheMaxAge away
// (NegativeMaxAge for "unknown", so garbage serials cost one lookup per
// NegativeMaxAge and an unknown answer is never kept long), less a random
// part of up to a quarter so that entries filled together (after a
// restart) are not all refreshed together; refreshAt is a quarter of the
// age before expires.
//
// verifyBy is when the entry must be read again however current the
// invalidation listener is: VerifyMaxAge away, less a random part of up
// to a quarter. It is zero for "unknown": issuing a certificate leaves no
// revocation event, so the listener cannot vouch for an unknown answer.
func (r *Responder) cacheExpiry(now time.Time, s Status) (refreshAt, expires, verifyBy instant) {
	age := r.cfg.CacheMaxAge
	if s == Unknown {
		age = r.cfg.NegativeMaxAge
	}
	n := instantOf(now)
	expires = n + instant(age-time.Duration(rand.Int64N(int64(age/4)+1)))
	if s != Unknown {
		v := r.cfg.VerifyMaxAge
		verifyBy = max(n+instant(v-time.Duration(rand.Int64N(int64(v/4)+1))), expires)
	}
	return expires - instant(age/4), expires, verifyBy
}

// appliedSpan is a report of the invalidation listener: every status
// change committed between since and through has been evicted from the
// cache.
type appliedSpan struct{ since, through instant }

// InvalidationsApplied is called by the invalidation listener after each
// complete poll: every status change committed between since (when the
// listener began following changes) and through has been applied to the
// cache, evicting the entries it concerned. An entry read at or after
// since that is still cached is then known current as of through, and is
// served until through + CacheMaxAge without reading the store, up to its
// VerifyMaxAge.
func (r *Responder) InvalidationsApplied(since, through time.Time) {
	span := &appliedSpan{since: instantOf(since), through: instantOf(through)}
	for {
		old := r.applied.Load()
		if old != nil && old.since == span.since && span.through <= old.through {
			return
		}
		if r.applied.CompareAndSwap(old, span) {
			return
		}
	}
}

// servable returns until when e may be served without reading the store
// and from when a hit should queue it for renewal: its own cache age, or
// later when the invalidation listener vouches for it (see
// InvalidationsApplied).
func (r *Responder) servable(e *entry) (until, refreshAt instant) {
	until, refreshAt = e.expires, e.refreshAt
	a := r.applied.Load()
	if a == nil || e.verifyBy == 0 || e.verifiedAt < a.since {
		return until, refreshAt
	}
	if t := min(a.through+instant(r.cfg.CacheMaxAge), e.verifyBy); t > until {
		until, refreshAt = t, t-instant(r.cfg.CacheMaxAge/4)
	}
	return until, refreshAt
}

// window returns thisUpdate and nextUpdate of a response signed at now by
// s: nextUpdate is cut to the signer's notAfter, after which the response
// could not be verified anyway.
func (r *Responder) window(s *signerState, now time.Time) (time.Time, time.Time) {
	thisUpdate := now.UTC().Truncate(time.Second)
	nextUpdate := thisUpdate.Add(r.cfg.Validity)
	if end := s.rec.NotAfter.UTC().Truncate(time.Second); nextUpdate.After(end) {
		nextUpdate = end
	}
	if !nextUpdate.After(thisUpdate) {
		nextUpdate = time.Time{} // the codec then omits it
	}
	return thisUpdate, nextUpdate
}

// respondLive answers a request with a nonce or several CertIDs (or a
// CertID spelled unlike the pre-signed ones) with a response signed now.
func (r *Responder) respondLive(ctx context.Context, req *Request) Answer {
	var first *issuerState
	matched := make([]*issuerState, len(req.CertIDs))
	for i := range req.CertIDs {
		matched[i] = r.match(&req.CertIDs[i])
		if first == nil {
			first = matched[i]
		}
	}
	if first == nil {
		return errorAnswer(Unauthorized, outcomeUnauthorized)
	}
	s := first.signer.Load()
	if s == nil {
		return r.failure(fmt.Errorf("%w for CA %s", ErrNoSigner, first.id))
	}
	if s.signer == nil {
		// A responder without keys cannot echo a nonce; the pre-signed
		// response is still a correct answer (RFC 8954 lets a responder
		// omit the nonce).
		if len(req.CertIDs) == 1 && r.cacheable(&req.CertIDs[0]) {
			e, err := r.resolve(ctx, first, &req.CertIDs[0], true)
			if err != nil {
				return r.failure(err)
			}
			if e.der != nil {
				return Answer{DER: e.der, Status: Successful, outcome: statusOutcome(e.status)}
			}
		}
		return r.failure(ErrReadOnly)
	}
	now := r.now()
	thisUpdate, nextUpdate := r.window(s, now)
	singles := make([]SingleResponse, len(req.CertIDs))
	for i := range req.CertIDs {
		id := &req.CertIDs[i]
		sr := SingleResponse{CertID: *id, Status: Unknown, RevocationReason: -1, ThisUpdate: thisUpdate, NextUpdate: nextUpdate}
		// A delegated signer answers only for its own CA: CertIDs of
		// other issuers get "unknown" (RFC 6960 2.2).
		if matched[i] == first {
			e, err := r.resolve(ctx, first, id, false)
			if err != nil {
				return r.failure(err)
			}
			sr.Status, sr.RevocationReason, sr.RevokedAt = e.status, e.reason, e.revokedAt.time()
		}
		singles[i] = sr
	}
	der, err := r.sign(ctx, s, singles, req.Nonce, now, signLive)
	if err != nil {
		return r.failure(err)
	}
	o := outcomeMulti
	if len(singles) == 1 {
		o = statusOutcome(singles[0].Status)
	}
	return Answer{DER: der, Status: Successful, outcome: o}
}

// sign builds and signs one response.
func (r *Responder) sign(_ context.Context, s *signerState, singles []SingleResponse, nonce []byte, now time.Time, kind signKind) ([]byte, error) {
	start := time.Now()
	der, err := CreateResponse(ResponseTemplate{
		Singles:          singles,
		ProducedAt:       now,
		Nonce:            nonce,
		ResponderKeyHash: s.keyHash,
		Certs:            s.certs,
	}, s.signer)
	if err != nil {
		if errors.Is(err, ErrInvalidTemplate) {
			return nil, err
		}
		// The key manager failed (an HSM down, say): transient.
		return nil, fmt.Errorf("%w: %v", errTryLater, err)
	}
	r.metrics.signSeconds[kind].Observe(time.Since(start).Seconds())
	return der, nil
}

// certStatus maps the CA's view to an OCSP status, reason and time. A hold
// is a revocation with reason certificateHold (RFC 6960 2.2); the reason
// unspecified is omitted, as RFC 5280 5.3.1 asks of CRLs.
func certStatus(st CertStatus) (Status, int, time.Time) {
	switch st.Status {
	case ca.StatusRevoked:
		reason := st.Reason
		if reason == ca.ReasonUnspecified {
			reason = -1
		}
		return Revoked, reason, st.RevokedAt
	case ca.StatusHold:
		return Revoked, ca.ReasonCertificateHold, st.RevokedAt
	}
	return Good, -1, time.Time{}
}

// serialFromHex parses a canonical hex serial.
func serialFromHex(s string) (*big.Int, error) {
	n, ok := new(big.Int).SetString(s, 16)
	if !ok || n.Sign() < 0 {
		return nil, fmt.Errorf("ocsp: bad serial %q", s)
	}
	return n, nil
}

// signResponses signs the configured responses of certs at now, using
// Workers goroutines, for the pre-signer and for revocations.
func (r *Responder) signResponses(ctx context.Context, certs []CertStatus, now time.Time, kind signKind) ([]StoredResponse, error) {
	type job struct {
		iss  *issuerState
		s    *signerState
		cert CertStatus
	}
	jobs := make([]job, 0, len(certs))
	for _, c := range certs {
		iss := r.issuerByID(c.CAID)
		if iss == nil {
			return nil, fmt.Errorf("ocsp: certificate %s/%s of a CA not served", c.CAID, c.Serial)
		}
		s := iss.signer.Load()
		if s == nil {
			return nil, fmt.Errorf("%w for CA %s", ErrNoSigner, iss.id)
		}
		if s.signer == nil {
			return nil, ErrReadOnly
		}
		jobs = append(jobs, job{iss, s, c})
	}
	hashes := r.cfg.Hashes
	out := make([]StoredResponse, len(jobs)*len(hashes))
	errs := make([]error, len(jobs))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(r.cfg.Workers, len(jobs)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(jobs) || ctx.Err() != nil {
					return
				}
				j := jobs[i]
				errs[i] = r.signOne(ctx, j.iss, j.s, j.cert, now, kind, out[i*len(hashes):(i+1)*len(hashes)])
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// signOne signs the responses of one certificate for every configured
// hash into dst.
func (r *Responder) signOne(ctx context.Context, iss *issuerState, s *signerState, c CertStatus, now time.Time, kind signKind, dst []StoredResponse) error {
	serial, err := serialFromHex(c.Serial)
	if err != nil {
		return err
	}
	status, reason, revokedAt := certStatus(c)
	thisUpdate, nextUpdate := r.window(s, now)
	if nextUpdate.IsZero() {
		return fmt.Errorf("%w: signer %s expires now", ErrNoSigner, s.rec.ID)
	}
	validity := nextUpdate.Sub(thisUpdate)
	// Re-sign before half the validity has passed, minus a random part of
	// a quarter, so that responses signed together (after a bulk import,
	// say) come due spread over six hours instead of all at once.
	refresh := thisUpdate.Add(validity/2 - time.Duration(rand.Int64N(int64(validity/4)+1)))
	for i, h := range r.cfg.Hashes {
		id := CertID{HashAlgorithm: h, IssuerNameHash: iss.nameHash[h], IssuerKeyHash: iss.keyHash[h], SerialNumber: serial}
		der, err := r.sign(ctx, s, []SingleResponse{{
			CertID: id, Status: status, RevokedAt: revokedAt, RevocationReason: reason, ThisUpdate: thisUpdate, NextUpdate: nextUpdate,
		}}, nil, now, kind)
		if err != nil {
			return fmt.Errorf("ocsp: signing %s/%s (%v): %w", c.CAID, c.Serial, h, err)
		}
		dst[i] = StoredResponse{
			CAID: c.CAID, Serial: c.Serial, Hash: h, Status: c.Status, Reason: c.Reason, RevokedAt: c.RevokedAt,
			ThisUpdate: thisUpdate, NextUpdate: nextUpdate, RefreshAt: refresh, DER: der,
		}
	}
	return nil
}

// CertificateStatusChanged implements ca.RevocationListener: it re-signs
// the certificate's responses (every configured hash) in a transaction
// that locks the certificate and reads its current status, stores them,
// tells other processes on commit, and evicts the certificate from this
// process's cache. It runs to completion even if ctx is canceled: the
// revocation is already durable. If re-signing fails, the stored
// responses are deleted so none can be served stale, and the error is
// returned (Revoke then reports that a listener failed).
func (r *Responder) CertificateStatusChanged(ctx context.Context, c *ca.Certificate) error {
	iss := r.issuerByID(c.CAID)
	if iss == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), revocationTimeout)
	defer cancel()
	r.evictSerial(iss, c.Serial)
	// Evict again once the new responses are stored: a request that read
	// the old status between the first eviction and the commit must not
	// leave it in the cache (the generation check stops most such fills;
	// this makes it certain).
	defer r.evictSerial(iss, c.Serial)
	_, err := r.store.ClaimBatch(ctx, Claim{
		Kind: ClaimOne, CAID: c.CAID, Serial: c.Serial, Hashes: r.cfg.Hashes, Now: r.now(), Limit: 1, Notify: true,
	}, func(ctx context.Context, certs []CertStatus) ([]StoredResponse, error) {
		return r.signResponses(ctx, certs, r.now(), signRevocation)
	})
	if err == nil {
		return nil
	}
	err = fmt.Errorf("ocsp: re-signing %s/%s after a status change: %w", c.CAID, c.Serial, err)
	if derr := r.store.DeleteResponses(ctx, c.CAID, c.Serial); derr != nil {
		err = errors.Join(err, fmt.Errorf("ocsp: deleting its stale responses: %w", derr))
	}
	r.log.Error("ocsp: status change not re-signed", "ca", c.CAID, "serial", c.Serial, "err", err)
	return err
}

var _ ca.RevocationListener = (*Responder)(nil)

// evictSerial drops every cached response of one certificate.
func (r *Responder) evictSerial(iss *issuerState, serialHex string) {
	serial, err := serialFromHex(serialHex)
	if err != nil {
		return
	}
	var kb [keySize]byte
	for h := HashSHA1; h <= HashSM3; h++ {
		r.cache.evict(cacheKey(kb[:0], iss.index, h, serial))
	}
}

// Evict drops a certificate's cached responses; the invalidation listener
// calls it for notices from other processes.
func (r *Responder) Evict(caID, serial string) {
	if iss := r.issuerByID(caID); iss != nil {
		r.evictSerial(iss, serial)
	}
}

// FlushCache drops every cached response: called when invalidation notices
// may have been lost (the listener reconnected).
func (r *Responder) FlushCache() { r.cache.flush() }

// CacheLen returns the number of cached responses.
func (r *Responder) CacheLen() int { return r.cache.len() }

// outcome classifies answers for the request counter.
type outcome int

const (
	outcomeGood outcome = iota
	outcomeRevoked
	outcomeUnknown
	outcomeMulti
	outcomeMalformed
	outcomeUnauthorized
	outcomeTryLater
	outcomeInternalError
	outcomeNotModified
	outcomeTooLarge
	outcomeCount
)

func (o outcome) String() string {
	return [...]string{"good", "revoked", "unknown", "multi", "malformedRequest", "unauthorized",
		"tryLater", "internalError", "notModified", "tooLarge"}[o]
}

func statusOutcome(s Status) outcome {
	switch s {
	case Good:
		return outcomeGood
	case Revoked:
		return outcomeRevoked
	}
	return outcomeUnknown
}

// signKind labels the signing latency histogram.
type signKind int

const (
	signLive signKind = iota
	signPresign
	signRevocation
	signKindCount
)

func (k signKind) String() string { return [...]string{"live", "presign", "revocation"}[k] }

const (
	methodGET = iota
	methodPOST
	methodCount
)

// metrics are resolved once so that the hot path does no label lookups.
type metrics struct {
	requests   [methodCount][outcomeCount]prometheus.Counter
	cacheHit   prometheus.Counter
	cacheMiss  prometheus.Counter
	cacheStale prometheus.Counter
	// cacheRevalidated counts entries past their cache age kept after
	// the store confirmed their certificate's status.
	cacheRevalidated prometheus.Counter
	refreshes        [refreshResultCount]prometheus.Counter
	signSeconds      [signKindCount]prometheus.Observer
	presigned        prometheus.Counter
	presignErrs      prometheus.Counter
	backlog          prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, c *cache) *metrics {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gmtrust_ocsp_requests_total", Help: "OCSP requests answered, by HTTP method and outcome (certificate status for one-certificate answers).",
	}, []string{"method", "outcome"})
	lookups := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gmtrust_ocsp_cache_lookups_total", Help: "OCSP response cache lookups: hit, revalidated (past its cache age, status confirmed by the store), miss, or stale (served past its cache age because the store failed).",
	}, []string{"result"})
	refreshes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gmtrust_ocsp_cache_refreshes_total", Help: "Cached OCSP responses handled by the background refresher near their cache age: renewed (status confirmed), reloaded (re-signed response), changed (status changed, evicted), failed (store error) or dropped (queue full).",
	}, []string{"result"})
	sign := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "gmtrust_ocsp_sign_seconds", Help: "Time to build and sign one OCSP response, by kind (live, presign, revocation).",
		Buckets: prometheus.ExponentialBuckets(0.00001, 2.5, 12),
	}, []string{"kind"})
	presigned := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "gmtrust_ocsp_presigned_total", Help: "OCSP responses signed ahead of time by the pre-signer.",
	})
	presignErrs := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "gmtrust_ocsp_presign_errors_total", Help: "Failed pre-signing rounds.",
	})
	backlog := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "gmtrust_ocsp_presign_backlog", Help: "Certificates whose responses were due or missing at the start of the last pre-signing round.",
	})
	// The cache's size, read at scrape time: entries, and the bytes its
	// arenas hold (responses and header text, live or not yet
	// reclaimed), which is most of a responder's memory.
	entries := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "gmtrust_ocsp_cache_entries", Help: "Responses in the OCSP response cache.",
	}, func() float64 { n, _ := c.size(); return float64(n) })
	held := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "gmtrust_ocsp_cache_bytes", Help: "Bytes the OCSP response cache holds for responses and their headers, including space freed and not yet reclaimed.",
	}, func() float64 { _, b := c.size(); return float64(b) })
	m := &metrics{
		cacheHit: lookups.WithLabelValues("hit"), cacheMiss: lookups.WithLabelValues("miss"), cacheStale: lookups.WithLabelValues("stale"),
		cacheRevalidated: lookups.WithLabelValues("revalidated"),
		presigned:        presigned, presignErrs: presignErrs, backlog: backlog,
	}
	for meth, name := range []string{"get", "post"} {
		for o := range outcomeCount {
			m.requests[meth][o] = requests.WithLabelValues(name, o.String())
		}
	}
	for k := range signKindCount {
		m.signSeconds[k] = sign.WithLabelValues(k.String())
	}
	for k := range refreshResultCount {
		m.refreshes[k] = refreshes.WithLabelValues(k.String())
	}
	if reg != nil {
		for _, col := range []prometheus.Collector{requests, lookups, refreshes, sign, presigned, presignErrs, backlog, entries, held} {
			// A second responder on the same registry (tests) shares the
			// first one's series; that is not worth failing for.
			_ = reg.Register(col)
		}
	}
	return m
}

// HashName returns the short name of a CertID hash algorithm as stored and
// configured: "sha1", "sha256", "sha384", "sha512" or "sm3"; "" for others.
func HashName(h HashAlg) string {
	switch h {
	case HashSHA1:
		return "sha1"
	case HashSHA256:
		return "sha256"
	case HashSHA384:
		return "sha384"
	case HashSHA512:
		return "sha512"
	case HashSM3:
		return "sm3"
	}
	return ""
}

// HashByName is the inverse of HashName (case-insensitive; "sha-1" and
// the like are accepted too).
func HashByName(name string) (HashAlg, error) {
	n := strings.ReplaceAll(strings.ToLower(strings.TrimSpace(name)), "-", "")
	for h := HashSHA1; h <= HashSM3; h++ {
		if HashName(h) == n {
			return h, nil
		}
	}
	return HashUnknown, fmt.Errorf("%w: %q (want sha1, sha256, sha384, sha512 or sm3)", ErrUnsupportedHash, name)
}
