// Package store persists gmtrust's CAs, delegated signers, certificates,
// revocations, CRLs, API tokens and instance settings in SQLite (the
// embedded default) or PostgreSQL, and implements ca.Store.
//
// Every write is durable when its method returns. To make that affordable
// at thousands of certificates per second, writes go through a group-commit
// writer (see [DB.Write]): concurrent writes share one transaction and one
// fsync.
package store

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/gmtrust/gmtrust/ca"
)

// Dialects reported by [DB.Dialect].
const (
	DialectSQLite   = "sqlite"
	DialectPostgres = "postgres"
)

// Errors of this package; ca.ErrNotFound, ca.ErrDuplicateSerial,
// ca.ErrAlreadyRevoked and ca.ErrNotOnHold are reported too.
var (
	// ErrClosed is returned by writes submitted after Close.
	ErrClosed = errors.New("store: database is closed")
	// ErrDuplicate is returned when a record other than a certificate
	// (CA, signer, token, CRL) already exists with the same key.
	ErrDuplicate = errors.New("store: duplicate key")
	// ErrInvalid wraps every rejection of malformed input.
	ErrInvalid = errors.New("store: invalid input")
	// ErrInvalidCursor is returned for a listing cursor this package did
	// not produce. It wraps ErrInvalid and ca.ErrInvalidRequest (a
	// client error the API answers with 400).
	ErrInvalidCursor = fmt.Errorf("%w: %w: bad cursor", ErrInvalid, ca.ErrInvalidRequest)
	// ErrNestedWrite is returned by Write and InTx called with the context
	// of a write in progress. On SQLite that would wait forever for the
	// writer running the outer write; in any case it would not be atomic
	// with it. Use the tx you were given and the ...Tx methods instead.
	ErrNestedWrite = errors.New("store: Write or InTx called inside a write; use its tx")
)

// inWriteKey marks the context a write function runs with.
type inWriteKey struct{}

func inWrite(ctx context.Context) bool { return ctx.Value(inWriteKey{}) != nil }

func markInWrite(ctx context.Context) context.Context {
	return context.WithValue(ctx, inWriteKey{}, true)
}

// Options configures a DB. The zero value is usable.
type Options struct {
	// Now is the clock used for created_at and default times; time.Now
	// when nil.
	Now func() time.Time
	// Logger receives operational messages; slog.Default() when nil.
	Logger *slog.Logger
	// MaxBatch caps the writes committed in one transaction (default 128).
	MaxBatch int
	// Writers is the number of group-commit writers for PostgreSQL
	// (default 2). SQLite allows one writer at a time, so it always has one.
	Writers int
	// MaxOpenConns caps the connection pool (default 8 for SQLite, 16 for
	// PostgreSQL). It must leave room for readers next to the writers.
	MaxOpenConns int
	// BusyTimeout is how long SQLite waits for another process holding the
	// write lock (default 10s).
	BusyTimeout time.Duration
	// TouchInterval is how often token last-use times recorded by
	// TouchToken are written (default 30s).
	TouchInterval time.Duration
	// AuthRecheck is how long TokenPrincipal trusts its last read of the
	// authentication epoch (default 250ms): the longest a change to a
	// token or principal made by another process takes to apply here.
	// Negative turns the cache off (every lookup queries the database).
	AuthRecheck time.Duration

	// bulk, for tests, turns the combined handling of a batch's
	// certificate inserts and stamps off (nil: on).
	bulk *bool
}

// DB is a gmtrust database. It is safe for concurrent use.
type DB struct {
	db      *sqlx.DB
	dialect string
	bind    int // sqlx bind type of the dialect
	now     func() time.Time
	log     *slog.Logger
	// lockNS scopes PostgreSQL advisory lock keys to this schema, so that
	// instances sharing a database in different schemas do not contend.
	lockNS string

	// wsem serialises this process's SQLite write transactions (the group
	// writer, InTx, NextCRL). SQLite has one writer per file anyway; taking
	// the turn here instead of in SQLite's busy handler avoids its sleeps.
	// nil for PostgreSQL.
	wsem chan struct{}

	w     *writer
	touch *toucher
	auth  *authCache // nil: token lookups are not cached

	insertCert *sqlx.Stmt // the hot statements, prepared once
	// insertAudit appends one entry; SQLite only, where a prepared
	// single-row insert per entry is cheaper than parsing a multi-row
	// statement per batch.
	insertAudit *sqlx.Stmt

	locksMu sync.Mutex
	locks   map[string]chan struct{} // SQLite TryLock, by name

	closeOnce sync.Once
	closeErr  error
}

// Open opens the database named by dsn and applies pending migrations.
// A dsn starting with postgres:// or postgresql:// selects PostgreSQL
// (lib/pq syntax). Anything else is an SQLite database: a file path, a
// sqlite:///abs/path or sqlite:rel/path form, or a SQLite file: URI.
func Open(ctx context.Context, dsn string, opts Options) (*DB, error) {
	opts = opts.withDefaults()
	dialect, driverDSN, err := parseDSN(dsn, opts.BusyTimeout)
	if err != nil {
		return nil, err
	}
	driver, bind := "sqlite", sqlx.QUESTION
	if dialect == DialectPostgres {
		driver, bind = "postgres", sqlx.DOLLAR
	}
	sdb, err := sqlx.Open(driver, driverDSN)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", dialect, err)
	}
	maxConns := opts.MaxOpenConns
	if maxConns == 0 {
		maxConns = 8
		if dialect == DialectPostgres {
			maxConns = 16
		}
	}
	// NextCRL holds a write transaction while build reads the revoked
	// certificates on another connection, so one connection would deadlock.
	maxConns = max(maxConns, 2)
	sdb.SetMaxOpenConns(maxConns)
	sdb.SetMaxIdleConns(maxConns)

	d := &DB{
		db:      sdb,
		dialect: dialect,
		bind:    bind,
		now:     opts.Now,
		log:     opts.Logger,
		locks:   make(map[string]chan struct{}),
	}
	if err := d.init(ctx, opts.BusyTimeout); err != nil {
		sdb.Close()
		return nil, err
	}
	writers := opts.Writers
	if dialect == DialectSQLite {
		writers = 1
		d.wsem = make(chan struct{}, 1)
	}
	bulk := true
	if opts.bulk != nil {
		bulk = *opts.bulk
	}
	d.w = newWriter(d, writers, opts.MaxBatch, bulk, dialect == DialectPostgres)
	d.touch = newToucher(d, opts.TouchInterval)
	d.auth = newAuthCache(opts.AuthRecheck)
	return d, nil
}

func (o Options) withDefaults() Options {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 128
	}
	if o.Writers <= 0 {
		o.Writers = 2
	}
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = 10 * time.Second
	}
	if o.TouchInterval <= 0 {
		o.TouchInterval = 30 * time.Second
	}
	return o
}

func (d *DB) init(ctx context.Context, busy time.Duration) error {
	if err := d.connect(ctx, busy); err != nil {
		return fmt.Errorf("store: connect to %s: %w", d.dialect, err)
	}
	if d.dialect == DialectPostgres {
		if err := d.db.GetContext(ctx, &d.lockNS, "SELECT current_schema()"); err != nil {
			return fmt.Errorf("store: read current schema: %w", err)
		}
	}
	if err := migrate(ctx, d); err != nil {
		return err
	}
	var err error
	if d.insertCert, err = d.db.PreparexContext(ctx, d.Rebind(insertCertSQL)); err != nil {
		return fmt.Errorf("store: prepare certificate insert: %w", err)
	}
	if d.dialect == DialectSQLite {
		if d.insertAudit, err = d.db.PreparexContext(ctx, insertAuditSQL); err != nil {
			d.insertCert.Close()
			return fmt.Errorf("store: prepare audit insert: %w", err)
		}
	}
	return nil
}

// connect opens the first connection. On a new SQLite file opened by
// several processes at once, each connection's journal_mode(WAL) pragma
// needs the file's exclusive lock, and SQLite answers SQLITE_BUSY to the
// losers without calling the busy handler; so a busy answer is retried
// for the busy timeout, after which the file is in WAL mode and the
// pragma no longer locks.
func (d *DB) connect(ctx context.Context, busy time.Duration) error {
	deadline := time.Now().Add(busy)
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		err := d.db.PingContext(ctx)
		if err == nil || d.dialect != DialectSQLite || !isBusy(err) || time.Now().After(deadline) {
			return err
		}
		if !sleepCtx(ctx, wait) {
			return ctx.Err()
		}
	}
}

// isBusy reports whether err is SQLite's SQLITE_BUSY (primary code 5,
// extended codes included).
func isBusy(err error) bool {
	var coded interface{ Code() int }
	return errors.As(err, &coded) && coded.Code()&0xff == 5
}

// sqliteCacheKiB is each SQLite connection's page cache limit (see
// parseDSN).
const sqliteCacheKiB = 32 << 10

// parseDSN tells the dialect of dsn and returns what to hand the driver.
func parseDSN(dsn string, busy time.Duration) (dialect, driverDSN string, err error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", "", fmt.Errorf("%w: PostgreSQL DSN: %v", ErrInvalid, err)
		}
		// In binary-parameter mode lib/pq sends a parameterised statement
		// in one round trip instead of two (prepare, then execute) and
		// sends []byte (DER) as raw bytes instead of hex text: both count
		// when a batch runs a hundred inserts.
		q := u.Query()
		if !q.Has("binary_parameters") {
			q.Set("binary_parameters", "yes")
			u.RawQuery = q.Encode()
		}
		return DialectPostgres, u.String(), nil
	}
	path := dsn
	switch {
	case strings.HasPrefix(dsn, "sqlite://"):
		path = strings.TrimPrefix(dsn, "sqlite://")
	case strings.HasPrefix(dsn, "sqlite:"):
		path = strings.TrimPrefix(dsn, "sqlite:")
	}
	if path == "" || path == "file:" {
		return "", "", fmt.Errorf("%w: empty database path", ErrInvalid)
	}
	if path == ":memory:" || strings.Contains(path, "mode=memory") {
		// Each pooled connection would get its own empty database.
		return "", "", fmt.Errorf("%w: in-memory SQLite databases are not supported; use a file", ErrInvalid)
	}
	// WAL lets readers work during a write; synchronous=FULL syncs the WAL
	// on every commit so that a committed certificate survives power loss;
	// busy_timeout waits for another process (the CLI) holding the write
	// lock; _txlock=immediate takes the write lock at BEGIN, so a write
	// transaction never fails half-way trying to upgrade a read lock;
	// wal_autocheckpoint(8192) (32 MiB of WAL instead of 4 MiB) makes the
	// checkpoints that also fsync the main database file 8x rarer, worth
	// 5-10 % of issuance throughput here (BENCHMARKS.md); cache_size lets
	// a connection keep up to 32 MiB of pages instead of 2 MiB, so that
	// the index the OCSP responder reads statuses from (60 bytes a
	// certificate) stays in memory instead of costing a file read per
	// page. SQLite allocates the cache as pages are read, so a connection
	// that reads little holds little.
	params := fmt.Sprintf("_pragma=busy_timeout(%d)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=foreign_keys(1)&_pragma=wal_autocheckpoint(8192)&_pragma=cache_size(-%d)&_txlock=immediate",
		busy.Milliseconds(), sqliteCacheKiB)
	if strings.HasPrefix(path, "file:") {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		return DialectSQLite, path + sep + params, nil
	}
	if strings.ContainsAny(path, "?#") {
		return "", "", fmt.Errorf("%w: SQLite path %q contains '?' or '#'; use a file: URI", ErrInvalid, path)
	}
	return DialectSQLite, path + "?" + params, nil
}

// Dialect returns DialectSQLite or DialectPostgres.
func (d *DB) Dialect() string { return d.dialect }

// Ping checks that the database answers.
func (d *DB) Ping(ctx context.Context) error {
	if err := d.db.PingContext(ctx); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

// Close writes pending token last-use times, waits for every accepted
// write to commit, and closes the database. Writes submitted afterwards
// fail with ErrClosed.
func (d *DB) Close() error {
	d.closeOnce.Do(func() {
		d.touch.close()
		d.w.close()
		d.insertCert.Close()
		if d.insertAudit != nil {
			d.insertAudit.Close()
		}
		if err := d.db.Close(); err != nil {
			d.closeErr = fmt.Errorf("store: close: %w", err)
		}
	})
	return d.closeErr
}

// SQL returns the underlying handle, for reads this package has no method
// for. Writes must go through Write or InTx.
func (d *DB) SQL() *sqlx.DB { return d.db }

// Rebind rewrites a query written with '?' placeholders for the dialect.
func (d *DB) Rebind(query string) string { return sqlx.Rebind(d.bind, query) }

// InTx runs fn in its own transaction, outside group commit, and commits
// when fn returns nil. It is for work that must be all or nothing across
// several records (gmtrust init inserting CAs, signer, certificates and the
// first token) or that holds a lock while it computes (NextCRL). Use the
// ...Tx methods inside fn.
func (d *DB) InTx(ctx context.Context, fn func(ctx context.Context, tx *sqlx.Tx) error) error {
	if inWrite(ctx) {
		return ErrNestedWrite
	}
	release, err := d.acquireWrite(ctx)
	if err != nil {
		return err
	}
	defer release()
	tx, err := d.db.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	if err := fn(markInWrite(ctx), tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

// acquireWrite takes this process's SQLite write turn; a no-op for
// PostgreSQL, whose row locks do the job.
func (d *DB) acquireWrite(ctx context.Context) (release func(), err error) {
	if d.wsem == nil {
		return func() {}, nil
	}
	select {
	case d.wsem <- struct{}{}:
		return func() { <-d.wsem }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// lockKey maps a lock name to a PostgreSQL advisory lock key.
func (d *DB) lockKey(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("gmtrust\x00" + d.lockNS + "\x00" + name))
	return int64(h.Sum64())
}

// TryLock runs fn if no other holder, in this or another process sharing
// the database, holds the lock called name; otherwise it returns
// ran=false at once. It is meant for periodic jobs (the CRL job) that one
// process should run. PostgreSQL uses a session advisory lock on a
// dedicated connection, released if the process dies. For SQLite the lock
// is per process only: SQLite deployments have one server process.
func (d *DB) TryLock(ctx context.Context, name string, fn func(ctx context.Context) error) (ran bool, err error) {
	if d.dialect == DialectSQLite {
		d.locksMu.Lock()
		l, ok := d.locks[name]
		if !ok {
			l = make(chan struct{}, 1)
			d.locks[name] = l
		}
		d.locksMu.Unlock()
		select {
		case l <- struct{}{}:
		default:
			return false, nil
		}
		defer func() { <-l }()
		return true, fn(ctx)
	}

	conn, err := d.db.Connx(ctx)
	if err != nil {
		return false, fmt.Errorf("store: lock %q: %w", name, err)
	}
	defer conn.Close()
	key := d.lockKey("job:" + name)
	var got bool
	if err := conn.QueryRowxContext(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&got); err != nil {
		return false, fmt.Errorf("store: lock %q: %w", name, err)
	}
	if !got {
		return false, nil
	}
	defer func() {
		var released bool
		uerr := conn.QueryRowxContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", key).Scan(&released)
		if uerr != nil || !released {
			// Ending the session is the other way to release the lock: make
			// the pool discard this connection instead of reusing it.
			d.log.Warn("store: advisory unlock failed; dropping connection", "lock", name, "err", uerr)
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()
	return true, fn(ctx)
}

// isUniqueViolation reports whether err is a primary-key or unique
// constraint failure in either database.
func isUniqueViolation(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE
	}
	var pe *pq.Error
	if errors.As(err, &pe) {
		return pe.Code == pqerror.UniqueViolation
	}
	return false
}

// isForeignKeyViolation reports whether err is a foreign-key failure, which
// here means the referenced CA or certificate does not exist.
func isForeignKeyViolation(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
	}
	var pe *pq.Error
	if errors.As(err, &pe) {
		return pe.Code == pqerror.ForeignKeyViolation
	}
	return false
}

// mapInsertErr turns constraint failures of an insert into the errors
// callers test for.
func mapInsertErr(err error, what string, dup error) error {
	switch {
	case err == nil:
		return nil
	case isUniqueViolation(err):
		return fmt.Errorf("store: insert %s: %w", what, dup)
	case isForeignKeyViolation(err):
		return fmt.Errorf("store: insert %s: referenced record missing: %w", what, ca.ErrNotFound)
	}
	return fmt.Errorf("store: insert %s: %w", what, err)
}

// Times are stored as integers with 0 meaning "not set", so the zero
// time.Time maps to 0 and back.

func unixSec(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func fromUnixSec(s int64) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(s, 0).UTC()
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

var _ ca.Store = (*DB)(nil)
