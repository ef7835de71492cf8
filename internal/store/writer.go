package store

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/jmoiron/sqlx"

	"github.com/gmtrust/gmtrust/internal/audit"
)

// WriteFunc is one write of a group commit. It runs inside a transaction
// it shares with other callers' writes, so it must touch the database only
// through tx, and it may run more than once: when the shared transaction
// fails, the writes are re-run in smaller transactions so that only the
// failing one reports the failure. It must therefore set its results
// afresh on every run and have no side effects outside tx.
type WriteFunc func(ctx context.Context, tx *sqlx.Tx) error

// Write runs fn in a group-committed transaction and returns once that
// transaction has committed (nil) or fn's write has definitely failed.
//
// If ctx is done before fn starts, fn is not run and Write returns
// ctx.Err(). Once fn has started it runs to completion with a context that
// keeps ctx's values but not its cancellation, and its result stands: Write
// then waits for the commit and reports its outcome, so a nil error always
// means durable and a non-nil one means not written (except when a commit
// fails ambiguously, e.g. the PostgreSQL connection drops during COMMIT).
func (d *DB) Write(ctx context.Context, fn WriteFunc) error {
	return d.w.submit(ctx, fn, nil)
}

// Request states; a request is claimed exactly once, by the writer
// (started) or by a caller giving up (abandoned).
const (
	reqQueued int32 = iota
	reqStarted
	reqAbandoned
)

type writeReq struct {
	ctx context.Context // the caller's, cancellation removed once started
	fn  WriteFunc
	// cert is set when the write is just fn inserting this row: the
	// writer may then insert the certificates of a batch with one
	// multi-row INSERT instead of running their fns.
	cert *certRow
	// stamp is set when the write is just fn checking and recording this
	// stamp: the writer may then check the stamps of a batch once per
	// (seal, principal) and insert them together.
	stamp *stampWrite
	state atomic.Int32
	done  chan error // buffered: the writer never waits for the caller
}

type writer struct {
	d        *DB
	maxBatch int
	queue    chan *writeReq
	// bulk handles a batch's certificate inserts and stamps together:
	// their rows first, then their audit entries with one read and one
	// update of the audit head (instead of one per write).
	bulk bool
	// multiRow inserts those rows with multi-row INSERTs. It pays on
	// PostgreSQL, where each statement is a round trip to another
	// process; SQLite runs its prepared single-row insert faster than it
	// parses a large statement.
	multiRow bool

	// mu guards closed and queue sends against close(queue): submitters
	// hold it shared while sending.
	mu     sync.RWMutex
	closed bool
	wg     sync.WaitGroup

	batches, writes, failed atomic.Uint64
	// bulkWrites counts the committed writes that runBulk handled (for
	// tests: the combined path is otherwise invisible).
	bulkWrites atomic.Uint64
}

// WriteStats counts the work of the group-commit writer since Open.
type WriteStats struct {
	Batches      uint64 // committed transactions
	Writes       uint64 // writes committed in them
	FailedGroups uint64 // transactions rolled back and split because a write or the commit failed
}

// WriteStats returns the group-commit counters, e.g. for metrics: Writes
// divided by Batches is the mean batch size.
func (d *DB) WriteStats() WriteStats {
	return WriteStats{Batches: d.w.batches.Load(), Writes: d.w.writes.Load(), FailedGroups: d.w.failed.Load()}
}

func newWriter(d *DB, n, maxBatch int, bulk, multiRow bool) *writer {
	w := &writer{
		d:        d,
		maxBatch: maxBatch,
		queue:    make(chan *writeReq, n*maxBatch),
		bulk:     bulk,
		multiRow: multiRow,
	}
	w.wg.Add(n)
	for range n {
		go w.loop()
	}
	return w
}

func (w *writer) submit(ctx context.Context, fn WriteFunc, cert *certRow) error {
	return w.submitReq(ctx, &writeReq{fn: fn, cert: cert})
}

// submitReq queues r (fn and, optionally, the row it inserts) and waits
// for its outcome, as Write describes.
func (w *writer) submitReq(ctx context.Context, r *writeReq) error {
	if inWrite(ctx) {
		return ErrNestedWrite
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	r.ctx, r.done = ctx, make(chan error, 1)
	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		return ErrClosed
	}
	select {
	case w.queue <- r:
		w.mu.RUnlock()
	case <-ctx.Done():
		w.mu.RUnlock()
		return ctx.Err()
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		if r.state.CompareAndSwap(reqQueued, reqAbandoned) {
			return ctx.Err()
		}
		// Too late: the write is running and its result stands.
		return <-r.done
	}
}

// close stops accepting writes and waits until every accepted one has
// been answered.
func (w *writer) close() {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.queue)
	}
	w.mu.Unlock()
	w.wg.Wait()
}

func (w *writer) loop() {
	defer w.wg.Done()
	batch := make([]*writeReq, 0, w.maxBatch)
	for r := range w.queue {
		// Take whatever queued up while the previous batch committed: the
		// batch grows with the load, and an idle store commits at once.
		batch = append(batch[:0], r)
	fill:
		for len(batch) < w.maxBatch {
			select {
			case r, ok := <-w.queue:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		live := batch[:0]
		for _, r := range batch {
			if r.state.CompareAndSwap(reqQueued, reqStarted) {
				r.ctx = markInWrite(context.WithoutCancel(r.ctx))
				live = append(live, r)
			}
		}
		if len(live) > 0 {
			w.run(live, w.bulk)
		}
		clear(batch) // drop references to answered requests
	}
}

// run commits reqs in one transaction and answers them. When a write
// fails, the transaction is rolled back and the writes before it, the
// failing write, and the writes after it are run again as three groups,
// so one bad write costs a few extra commits, not one per write, and fails
// only its own caller. bulk allows the certificate inserts and the stamps
// of reqs to be handled together; if that fails, nothing tells which row
// is to blame, so the group is run again without it.
func (w *writer) run(reqs []*writeReq, bulk bool) {
	failed, err := w.tryBatch(reqs, bulk)
	switch {
	case err == nil:
		w.batches.Add(1)
		w.writes.Add(uint64(len(reqs)))
		for _, r := range reqs {
			r.done <- nil
		}
	case errors.Is(err, errBulkFailed):
		w.failed.Add(1)
		w.run(reqs, false)
	case len(reqs) == 1:
		w.failed.Add(1)
		reqs[0].done <- err
	case failed >= 0:
		w.failed.Add(1)
		if failed > 0 {
			w.run(reqs[:failed], bulk)
		}
		w.run(reqs[failed:failed+1], bulk)
		if failed+1 < len(reqs) {
			w.run(reqs[failed+1:], bulk)
		}
	default:
		// Begin or commit failed: nothing tells which write is to blame.
		w.failed.Add(1)
		w.d.log.Warn("store: group commit failed, retrying writes one by one", "writes", len(reqs), "err", err)
		for _, r := range reqs {
			w.run([]*writeReq{r}, false)
		}
	}
}

// errBulkFailed reports that the combined certificate inserts or stamps
// failed.
var errBulkFailed = errors.New("store: combined certificate or stamp writes failed")

// bulkMin is the fewest certificates, or stamps, worth handling together.
const bulkMin = 2

// tryBatch runs reqs in one transaction. It returns the index of the
// write that failed, or -1 when beginning or committing the transaction
// (or the combined certificate inserts or stamps) failed, and the error.
func (w *writer) tryBatch(reqs []*writeReq, bulk bool) (failed int, err error) {
	ctx := context.Background()
	release, err := w.d.acquireWrite(ctx)
	if err != nil {
		return -1, err
	}
	defer release()
	tx, err := w.d.db.BeginTxx(ctx, nil)
	if err != nil {
		return -1, fmt.Errorf("store: begin: %w", err)
	}
	var certBulk, stampBulk bool
	if bulk {
		if certBulk, stampBulk, err = w.runBulk(ctx, tx, reqs); err != nil {
			tx.Rollback()
			return -1, fmt.Errorf("%w: %w", errBulkFailed, err)
		}
	}
	var bulked uint64
	for i, r := range reqs {
		if certBulk && r.cert != nil || stampBulk && r.stamp != nil {
			bulked++
			continue
		}
		if err := runFn(r, tx); err != nil {
			tx.Rollback()
			return i, err
		}
	}
	if err := tx.Commit(); err != nil {
		return -1, fmt.Errorf("store: commit: %w", err)
	}
	w.bulkWrites.Add(bulked)
	return -1, nil
}

// runBulk writes the certificates of reqs together when there are at
// least bulkMin of them, and likewise the stamps, then appends all their
// audit entries at once. It reports which of the two it wrote; their fns
// must not run.
//
// The writes of one batch were all in flight together, so handling these
// ahead of the other writes reorders nothing a caller could have relied
// on. Stamps go first: on PostgreSQL they take the audit head lock before
// the rows their checks lock (lockAuditHead), and everything after,
// certificates included, then locks in that order too.
func (w *writer) runBulk(ctx context.Context, tx *sqlx.Tx, reqs []*writeReq) (certBulk, stampBulk bool, err error) {
	var certs, stamps []*writeReq
	for _, r := range reqs {
		switch {
		case r.cert != nil:
			certs = append(certs, r)
		case r.stamp != nil:
			stamps = append(stamps, r)
		}
	}
	certBulk, stampBulk = len(certs) >= bulkMin, len(stamps) >= bulkMin
	var audits []auditRecord
	var head *audit.Head // the audit head, when the stamps locked it
	if stampBulk {
		if audits, head, err = w.d.recordStamps(ctx, tx, stamps, w.multiRow); err != nil {
			return false, false, err
		}
	}
	if certBulk {
		rows := make([]*certRow, len(certs))
		for i, r := range certs {
			rows[i] = r.cert
			audits = append(audits, certIssueAudit(r.ctx, r.cert))
		}
		if err := w.insertCerts(ctx, tx, rows); err != nil {
			return false, false, err
		}
	}
	// The entries go in the order of the rows, in the same transaction.
	if head != nil {
		err = w.d.appendAuditsAt(ctx, tx, *head, audits)
	} else {
		err = w.d.appendAudits(ctx, tx, audits)
	}
	if err != nil {
		return false, false, err
	}
	return certBulk, stampBulk, nil
}

func (w *writer) insertCerts(ctx context.Context, tx *sqlx.Tx, rows []*certRow) error {
	if w.multiRow {
		return w.d.insertCertRows(ctx, tx, rows)
	}
	for _, r := range rows {
		if err := w.d.execInsertCert(ctx, tx, r); err != nil {
			return err
		}
	}
	return nil
}

// runFn runs one write, turning a panic into that caller's error so that a
// bug in one write cannot take the writer, and every other caller, down.
func runFn(r *writeReq, tx *sqlx.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("store: write panicked: %v\n%s", p, debug.Stack())
		}
	}()
	return r.fn(r.ctx, tx)
}
