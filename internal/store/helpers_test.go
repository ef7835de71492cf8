package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/gmtrust/gmtrust/ca"
)

// backend opens fresh, isolated databases of one dialect.
type backend struct {
	name string
	// newDSN returns the DSN of a new empty database, removed after the
	// test.
	newDSN func(t testing.TB) string
}

func sqliteBackend() backend {
	return backend{name: DialectSQLite, newDSN: func(t testing.TB) string {
		return filepath.Join(t.TempDir(), "gmtrust.db")
	}}
}

// postgresBackend gives each database its own schema, so tests and test
// packages running in parallel never see each other's rows.
func postgresBackend(t testing.TB) (backend, bool) {
	base := os.Getenv("GMTRUST_TEST_POSTGRES")
	if base == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("GMTRUST_TEST_POSTGRES is not set")
		}
		return backend{}, false
	}
	return backend{name: DialectPostgres, newDSN: func(t testing.TB) string {
		admin, err := sql.Open("postgres", base)
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close()
		schema := "gmt_" + randHex(8)
		if _, err := admin.Exec("CREATE SCHEMA " + schema); err != nil {
			t.Fatalf("create schema: %v", err)
		}
		t.Cleanup(func() {
			admin, err := sql.Open("postgres", base)
			if err != nil {
				t.Error(err)
				return
			}
			defer admin.Close()
			if _, err := admin.Exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
				t.Errorf("drop schema: %v", err)
			}
		})
		sep := "?"
		if strings.Contains(base, "?") {
			sep = "&"
		}
		return base + sep + "search_path=" + schema
	}}, true
}

// forEachBackend runs fn as a subtest against SQLite and, when configured,
// PostgreSQL.
func forEachBackend(t *testing.T, fn func(t *testing.T, b backend)) {
	t.Helper()
	bs := []backend{sqliteBackend()}
	pg, ok := postgresBackend(t)
	if ok {
		bs = append(bs, pg)
	}
	for _, b := range bs {
		t.Run(b.name, func(t *testing.T) { fn(t, b) })
	}
	if !ok {
		t.Run(DialectPostgres, func(t *testing.T) { t.Skip("GMTRUST_TEST_POSTGRES not set") })
	}
}

func openDB(t testing.TB, dsn string, opts Options) *DB {
	t.Helper()
	db, err := Open(context.Background(), dsn, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// newDB opens a fresh database with a test clock.
func newDB(t testing.TB, b backend) (*DB, *testClock) {
	t.Helper()
	clk := newTestClock()
	return openDB(t, b.newDSN(t), Options{Now: clk.Now}), clk
}

// testClock starts at a fixed time and advances a millisecond per reading,
// so created_at values are distinct and ordered.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock {
	return &testClock{t: time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Millisecond)
	return c.t
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// randSerial returns a canonical 128-bit serial (no leading zero).
func randSerial() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[0] |= 0x10
	return hex.EncodeToString(b)
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

var testTime = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func testCA(id string, role ca.Role) *ca.CARecord {
	parent := ""
	if role == ca.RoleIssuing {
		parent = "root"
	}
	return &ca.CARecord{
		ID: id, Name: "CA " + id, Algorithm: "sm2", ParentID: parent, Role: role, KeyRef: "soft:" + id,
		DER: randBytes(600), NotBefore: testTime, NotAfter: testTime.AddDate(10, 0, 0),
	}
}

func mustInsertCA(t testing.TB, db *DB, id string) {
	t.Helper()
	role := ca.RoleIssuing
	if id == "root" {
		role = ca.RoleRoot
	}
	if err := db.InsertCA(context.Background(), testCA(id, role)); err != nil {
		t.Fatalf("InsertCA(%s): %v", id, err)
	}
}

// testCert is a certificate with a realistic ~1 KB DER.
func testCert(caID string) *ca.Certificate {
	s := randSerial()
	return &ca.Certificate{
		CAID: caID, Serial: s, Profile: "server", Department: "dept-a",
		Subject: "CN=" + s + ",O=Test", SANs: []string{s + ".example.gov.cn"}, KeyAlgorithm: "sm2",
		NotBefore: testTime, NotAfter: testTime.AddDate(1, 0, 0), DER: randBytes(1024), RequestedBy: "tester",
	}
}

// mustInsertCerts inserts n test certificates of caID and returns their
// serials.
func mustInsertCerts(t testing.TB, db *DB, caID string, n int) []string {
	t.Helper()
	serials := make([]string, n)
	for i := range serials {
		c := testCert(caID)
		mustInsertCert(t, db, c)
		serials[i] = c.Serial
	}
	return serials
}

func mustInsertCert(t testing.TB, db *DB, c *ca.Certificate) {
	t.Helper()
	if err := db.InsertCertificate(context.Background(), c); err != nil {
		t.Fatalf("InsertCertificate(%s): %v", c.Serial, err)
	}
}

func countRows(t testing.TB, db *DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.SQL().Get(&n, db.Rebind(query), args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// blockWriter occupies every group-commit writer with a write that waits
// until release is called, so that writes submitted meanwhile queue up and
// end up in one batch.
func blockWriter(t *testing.T, db *DB) (release func()) {
	t.Helper()
	gate := make(chan struct{})
	started := make(chan struct{})
	done := make(chan error, 1)
	var once sync.Once
	go func() {
		done <- db.Write(context.Background(), func(ctx context.Context, tx *sqlx.Tx) error {
			once.Do(func() { close(started) })
			<-gate
			return nil
		})
	}()
	<-started
	return func() {
		close(gate)
		if err := <-done; err != nil {
			t.Errorf("blocking write: %v", err)
		}
	}
}

// waitQueued waits until n writes are queued behind a blocked writer.
func waitQueued(t *testing.T, db *DB, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(db.w.queue) < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d writes queued", len(db.w.queue), n)
		}
		time.Sleep(time.Millisecond)
	}
}
