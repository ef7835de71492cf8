// Package audit is gmtrust's tamper-evident audit log: the entry model,
// the SM3 hash chain that links entries, the verification that walks a
// chain and names the first entry that was altered, deleted or reordered,
// and signed checkpoints of the chain head.
//
// Entries are written by the store, in the same transaction as the change
// they record (see internal/store); this package holds no state of its own
// and never touches a database. Who acted travels on the context
// (WithActor), so that the store can attribute a write without every
// caller passing a principal down.
//
// # Hash chain
//
// Each entry's hash is SM3 over a DER encoding of all of its fields and
// the previous entry's hash:
//
//	AuditEntry ::= SEQUENCE {
//	    version    INTEGER (1),
//	    seq        INTEGER,       -- 1, 2, 3 ... without gaps
//	    time       INTEGER,       -- unix nanoseconds
//	    principal  UTF8String,
//	    action     UTF8String,
//	    object     UTF8String,
//	    outcome    UTF8String,
//	    requestID  UTF8String,
//	    details    UTF8String,    -- a JSON object
//	    prevHash   OCTET STRING } -- 32 zero bytes for entry 1
//
// DER is unambiguous (every field is length-prefixed), so no two different
// entries encode alike, and the sequence number inside the hash makes an
// entry moved to another position detectable by itself.
package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emmansun/gmsm/sm3"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// HashSize is the size of an entry hash (SM3).
const HashSize = sm3.Size

// entryVersion is the first field of the hashed encoding; a future change
// of the encoding gets a new version so old entries keep verifying.
const entryVersion = 1

// Outcomes of an audited action.
const (
	OutcomeSuccess = "success"
	OutcomeFailure = "failure" // e.g. a failed authentication
	OutcomeDenied  = "denied"  // authenticated, but not allowed
)

// SystemPrincipal is the actor of writes made with no actor on the
// context: background jobs (CRL refresh, renewals) and internal setup.
const SystemPrincipal = "system"

// Limits on the text fields of an entry. They keep one entry small and
// bound what a caller (or an attacker sending odd input) can make the log
// store; longer values are cut, not refused, because a refused audit entry
// would refuse the change it records.
const (
	MaxFieldLen   = 512
	MaxDetailsLen = 8 << 10
)

// ErrInvalid is returned for entries that cannot be hashed or stored.
var ErrInvalid = errors.New("audit: invalid entry")

// Entry is one audit record.
type Entry struct {
	Seq       int64
	Time      time.Time
	Principal string
	Action    string // e.g. "certificate.issue"
	Object    string // e.g. "certificate/issuing/3f2a..."
	Outcome   string // OutcomeSuccess, OutcomeFailure or OutcomeDenied
	RequestID string
	Details   string // a JSON object, "{}" when there is nothing to add
	PrevHash  []byte
	Hash      []byte
}

// GenesisHash returns the prevHash of entry 1: 32 zero bytes.
func GenesisHash() []byte { return make([]byte, HashSize) }

// Encode returns the DER encoding that Hash covers.
func (e *Entry) Encode() ([]byte, error) {
	if e.Seq < 1 {
		return nil, fmt.Errorf("%w: sequence number %d", ErrInvalid, e.Seq)
	}
	if len(e.PrevHash) != HashSize {
		return nil, fmt.Errorf("%w: entry %d has a %d-byte previous hash", ErrInvalid, e.Seq, len(e.PrevHash))
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(entryVersion)
		b.AddASN1Int64(e.Seq)
		b.AddASN1Int64(e.Time.UnixNano())
		for _, s := range []string{e.Principal, e.Action, e.Object, e.Outcome, e.RequestID, e.Details} {
			b.AddASN1(cbasn1.UTF8String, func(b *cryptobyte.Builder) { b.AddBytes([]byte(s)) })
		}
		b.AddASN1OctetString(e.PrevHash)
	})
	return b.Bytes()
}

// ComputeHash returns SM3 of the entry's encoding. It does not look at
// e.Hash.
func (e *Entry) ComputeHash() ([]byte, error) {
	enc, err := e.Encode()
	if err != nil {
		return nil, err
	}
	h := sm3.Sum(enc)
	return h[:], nil
}

// Seal normalises the text fields (see Clean), links the entry to prev and
// sets its hash: this is how a new entry is made before it is stored.
func (e *Entry) Seal(prev []byte) error {
	e.Principal = Clean(e.Principal, MaxFieldLen)
	e.Action = Clean(e.Action, MaxFieldLen)
	e.Object = Clean(e.Object, MaxFieldLen)
	e.Outcome = Clean(e.Outcome, MaxFieldLen)
	e.RequestID = Clean(e.RequestID, MaxFieldLen)
	if e.Details == "" {
		e.Details = "{}"
	}
	if len(e.Details) > MaxDetailsLen || !utf8.ValidString(e.Details) || strings.ContainsRune(e.Details, 0) {
		return fmt.Errorf("%w: details of entry %d are not a clean JSON object under %d bytes", ErrInvalid, e.Seq, MaxDetailsLen)
	}
	if e.Action == "" || e.Outcome == "" {
		return fmt.Errorf("%w: entry %d needs an action and an outcome", ErrInvalid, e.Seq)
	}
	e.PrevHash = bytes.Clone(prev)
	h, err := e.ComputeHash()
	if err != nil {
		return err
	}
	e.Hash = h
	return nil
}

// Verify reports whether the stored hash is the hash of the entry's
// fields.
func (e *Entry) Verify() bool {
	h, err := e.ComputeHash()
	return err == nil && bytes.Equal(h, e.Hash)
}

// Clean makes s storable and hashable as the same bytes in SQLite and
// PostgreSQL: valid UTF-8 (invalid bytes become U+FFFD), no NUL (which
// PostgreSQL text cannot hold), at most max bytes (cut on a rune boundary).
func Clean(s string, max int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if strings.ContainsRune(s, 0) {
		s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	}
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}

// Actor is who causes the writes made with a context: the authenticated
// principal, the request that carried the call, and where it came from
// (a client address, or "cli").
type Actor struct {
	Principal string
	RequestID string
	Source    string
}

type actorKey struct{}

// WithActor returns a context whose audited writes are attributed to a.
func WithActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// ActorFrom returns the actor of ctx; without one (or with an empty
// principal) it returns SystemPrincipal and ok false.
func ActorFrom(ctx context.Context) (a Actor, ok bool) {
	a, ok = ctx.Value(actorKey{}).(Actor)
	if !ok || a.Principal == "" {
		a.Principal = SystemPrincipal
		return a, false
	}
	return a, true
}
