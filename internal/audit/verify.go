package audit

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"iter"
)

// Head is the stored end of the chain: the sequence number and hash of
// the last entry appended (0 and no hash for an empty log). The store
// updates it in the same transaction as each append, so it is what lets a
// verifier notice entries cut off the end.
type Head struct {
	Seq  int64
	Hash []byte
}

// Kind classifies a problem found in a chain.
type Kind string

// Problem kinds.
const (
	// KindAltered: the entry's fields no longer hash to its stored hash,
	// or (when its hash was recomputed) the next entry or a checkpoint
	// still remembers the old hash.
	KindAltered Kind = "altered"
	// KindDeleted: sequence numbers jump; the missing entries were
	// deleted.
	KindDeleted Kind = "deleted"
	// KindReordered: the entry at this position is another position's
	// entry (its hash is valid for that other sequence number).
	KindReordered Kind = "reordered"
	// KindTruncated: the head or a checkpoint covers entries beyond the
	// last one stored.
	KindTruncated Kind = "truncated"
	// KindCheckpoint: a checkpoint's signature or signer is not valid.
	KindCheckpoint Kind = "bad-checkpoint"
)

// Problem is one finding of Verify. Seq names the entry (the first
// missing one for KindDeleted and KindTruncated; the checkpoint's for
// KindCheckpoint).
type Problem struct {
	Kind   Kind
	Seq    int64
	Detail string
}

func (p Problem) String() string {
	return fmt.Sprintf("entry %d %s: %s", p.Seq, p.Kind, p.Detail)
}

// MaxProblems bounds the problems a Report lists; the walk goes on to
// the end so that Entries still counts the whole chain.
const MaxProblems = 20

// Report is the result of walking a chain.
type Report struct {
	Entries     int64 // entries read
	LastSeq     int64 // sequence number of the last entry read
	Head        Head  // as read at the end of the walk
	Checkpoints int   // checkpoints whose signature and position verified
	// LastCheckpoint is the highest sequence number covered by a valid
	// checkpoint: entries up to it cannot have been rewritten, even with
	// recomputed hashes, without the audit key.
	LastCheckpoint int64
	Problems       []Problem // in chain order, at most MaxProblems
	MoreProblems   bool      // problems beyond MaxProblems were found
}

// OK reports whether the chain is intact.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// First returns the first problem, or nil for an intact chain.
func (r *Report) First() *Problem {
	if len(r.Problems) == 0 {
		return nil
	}
	return &r.Problems[0]
}

func (r *Report) add(p Problem) {
	if len(r.Problems) >= MaxProblems {
		r.MoreProblems = true
		return
	}
	r.Problems = append(r.Problems, p)
}

// Source is the stored log as Verify reads it. Entries must come in
// ascending sequence order; they are pulled one at a time, so a source
// that pages through the database keeps memory bounded however long the
// chain is.
type Source interface {
	AuditHead(ctx context.Context) (Head, error)
	// AuditEntries yields the entries with seq > after, in order.
	AuditEntries(ctx context.Context, after int64) iter.Seq2[*Entry, error]
	// AuditCheckpoints yields every checkpoint in ascending seq order.
	AuditCheckpoints(ctx context.Context) iter.Seq2[*Checkpoint, error]
}

// CheckpointVerifier checks a checkpoint's signature and that its signer
// is entitled to sign checkpoints.
type CheckpointVerifier interface {
	VerifyCheckpoint(cp *Checkpoint) error
}

// movedWindow is how far from its position Verify looks for the sequence
// number a misplaced entry was hashed with: swaps and shuffles are local
// in practice, and each try is one SM3 of a few hundred bytes.
const movedWindow = 1024

// Verify walks the whole chain of src and reports every problem it finds
// (up to MaxProblems). cv checks checkpoint signatures; nil skips them
// (the chain and head are still checked, but a rewrite with recomputed
// hashes then goes unnoticed). The error is for failures to read, never
// for tampering, which is in the report.
//
// Entries appended while Verify runs are checked up to the head read at
// the end of the walk; later ones are left for the next run.
func Verify(ctx context.Context, src Source, cv CheckpointVerifier) (*Report, error) {
	w := &walker{rep: &Report{}, expect: 1, prev: GenesisHash(), cv: cv}

	nextCP, stopCP := iter.Pull2(src.AuditCheckpoints(ctx))
	defer stopCP()
	w.nextCP = func() (*Checkpoint, error, bool) { return nextCP() }
	if err := w.advanceCP(); err != nil {
		return nil, err
	}

	// First pass: everything there is now. Then read the head, and read
	// the entries committed between the two (they are below the head).
	if err := w.walk(src.AuditEntries(ctx, 0), -1); err != nil {
		return nil, err
	}
	head, err := src.AuditHead(ctx)
	if err != nil {
		return nil, fmt.Errorf("audit: read head: %w", err)
	}
	w.rep.Head = head
	if head.Seq > w.rep.LastSeq {
		if err := w.walk(src.AuditEntries(ctx, w.rep.LastSeq), head.Seq); err != nil {
			return nil, err
		}
	}
	switch {
	case head.Seq > w.rep.LastSeq:
		removed := fmt.Sprintf("entries %d to %d were removed", w.rep.LastSeq+1, head.Seq)
		if head.Seq == w.rep.LastSeq+1 {
			removed = fmt.Sprintf("entry %d was removed", head.Seq)
		}
		w.rep.add(Problem{Kind: KindTruncated, Seq: w.rep.LastSeq + 1,
			Detail: fmt.Sprintf("the head records %d entries but the log ends at %d: %s", head.Seq, w.rep.LastSeq, removed)})
	case head.Seq < w.rep.LastSeq:
		w.rep.add(Problem{Kind: KindAltered, Seq: head.Seq + 1,
			Detail: fmt.Sprintf("entries %d to %d are beyond the head (%d): they were not appended through the audit log", head.Seq+1, w.rep.LastSeq, head.Seq)})
	case head.Seq > 0 && !bytes.Equal(head.Hash, w.prev):
		w.rep.add(Problem{Kind: KindAltered, Seq: head.Seq,
			Detail: fmt.Sprintf("hash %s differs from the head's %s", short(w.prev), short(head.Hash))})
	}

	// Checkpoints beyond the end: entries they covered are gone.
	for w.cp != nil {
		if err := w.checkCP(w.cv); err == nil {
			w.rep.add(Problem{Kind: KindTruncated, Seq: w.rep.LastSeq + 1,
				Detail: fmt.Sprintf("checkpoint %d covers entries beyond the end of the log (%d)", w.cp.Seq, w.rep.LastSeq)})
		}
		if err := w.advanceCP(); err != nil {
			return nil, err
		}
	}
	return w.rep, nil
}

type walker struct {
	rep    *Report
	expect int64  // next sequence number
	prev   []byte // stored hash of the last entry read
	// prevBad says the last entry already had a problem, so a broken link
	// from the next one is a consequence, not a new finding.
	prevBad bool

	nextCP func() (*Checkpoint, error, bool)
	cp     *Checkpoint // next checkpoint not yet matched, nil at the end
	cv     CheckpointVerifier
}

func (w *walker) advanceCP() error {
	cp, err, ok := w.nextCP()
	if !ok {
		w.cp = nil
		return nil
	}
	if err != nil {
		return fmt.Errorf("audit: read checkpoints: %w", err)
	}
	w.cp = cp
	return nil
}

// walk consumes entries; upTo >= 0 stops after that sequence number.
func (w *walker) walk(entries iter.Seq2[*Entry, error], upTo int64) error {
	for e, err := range entries {
		if err != nil {
			return fmt.Errorf("audit: read entries: %w", err)
		}
		if upTo >= 0 && e.Seq > upTo {
			break
		}
		w.entry(e)
		if err := w.matchCheckpoints(e); err != nil {
			return err
		}
	}
	return nil
}

func (w *walker) entry(e *Entry) {
	r := w.rep
	r.Entries++
	gap := false
	switch {
	case e.Seq < w.expect:
		// A source that yields out of order, or a duplicated number.
		r.add(Problem{Kind: KindReordered, Seq: e.Seq, Detail: fmt.Sprintf("sequence number %d follows %d", e.Seq, w.expect-1)})
		w.prevBad = true
		return
	case e.Seq > w.expect:
		gap = true
		missing := fmt.Sprintf("entry %d is missing", w.expect)
		if e.Seq > w.expect+1 {
			missing = fmt.Sprintf("entries %d to %d are missing", w.expect, e.Seq-1)
		}
		r.add(Problem{Kind: KindDeleted, Seq: w.expect, Detail: missing + fmt.Sprintf(" (the log jumps from %d to %d)", w.expect-1, e.Seq)})
	}
	bad := false
	switch {
	case !e.Verify():
		bad = true
		if from, ok := movedFrom(e); ok {
			r.add(Problem{Kind: KindReordered, Seq: e.Seq, Detail: fmt.Sprintf("this position holds entry %d (its hash is valid only as number %d)", from, from)})
		} else {
			r.add(Problem{Kind: KindAltered, Seq: e.Seq, Detail: fmt.Sprintf("fields do not hash to the stored hash %s", short(e.Hash))})
		}
	case !gap && !w.prevBad && !bytes.Equal(e.PrevHash, w.prev):
		// The entry is intact but was chained to a different predecessor:
		// the predecessor was rewritten and its hash recomputed.
		bad = true
		r.add(Problem{Kind: KindAltered, Seq: e.Seq - 1,
			Detail: fmt.Sprintf("its hash %s is not the %s that entry %d was chained to: it was rewritten and rehashed", short(w.prev), short(e.PrevHash), e.Seq)})
	}
	w.prevBad = bad || gap
	w.prev = e.Hash
	w.expect = e.Seq + 1
	r.LastSeq = e.Seq
}

// matchCheckpoints checks the checkpoints at or before e.
func (w *walker) matchCheckpoints(e *Entry) error {
	for w.cp != nil && w.cp.Seq <= e.Seq {
		if w.checkCP(w.cv) == nil && w.cp.Seq == e.Seq {
			if bytes.Equal(w.cp.Hash, e.Hash) {
				w.rep.Checkpoints++
				w.rep.LastCheckpoint = e.Seq
			} else {
				w.rep.add(Problem{Kind: KindAltered, Seq: e.Seq,
					Detail: fmt.Sprintf("checkpoint signed at %s says hash %s, the log has %s: entries up to %d were rewritten after it",
						w.cp.Time.UTC().Format("2006-01-02T15:04:05Z"), short(w.cp.Hash), short(e.Hash), e.Seq)})
			}
		}
		// A checkpoint below e.Seq that matched no entry points into a
		// gap, which is already reported.
		if err := w.advanceCP(); err != nil {
			return err
		}
	}
	return nil
}

// checkCP verifies the current checkpoint's signature, reporting a bad
// one. It returns nil when the checkpoint can be relied on.
func (w *walker) checkCP(cv CheckpointVerifier) error {
	if cv == nil {
		return nil
	}
	if err := cv.VerifyCheckpoint(w.cp); err != nil {
		w.rep.add(Problem{Kind: KindCheckpoint, Seq: w.cp.Seq, Detail: err.Error()})
		return err
	}
	return nil
}

// movedFrom looks for the sequence number e's stored hash was computed
// with, near its position.
func movedFrom(e *Entry) (int64, bool) {
	c := *e
	for d := int64(1); d <= movedWindow; d++ {
		for _, s := range []int64{e.Seq - d, e.Seq + d} {
			if s < 1 {
				continue
			}
			c.Seq = s
			if c.Verify() {
				return s, true
			}
		}
	}
	return 0, false
}

func short(h []byte) string {
	if len(h) > 8 {
		return hex.EncodeToString(h[:8]) + "…"
	}
	return hex.EncodeToString(h)
}
