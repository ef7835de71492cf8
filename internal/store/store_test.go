package store

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/jmoiron/sqlx"

	"github.com/gmtrust/gmtrust/ca"
)

func TestParseDSN(t *testing.T) {
	tests := []struct {
		dsn      string
		dialect  string
		wantPath string // prefix the driver DSN must start with
		wantErr  bool
	}{
		{dsn: "postgres://u@h/db?sslmode=disable", dialect: DialectPostgres, wantPath: "postgres://u@h/db?binary_parameters=yes&sslmode=disable"},
		{dsn: "postgresql://u@h/db", dialect: DialectPostgres, wantPath: "postgresql://u@h/db?binary_parameters=yes"},
		{dsn: "postgres://u@h/db?binary_parameters=no", dialect: DialectPostgres, wantPath: "postgres://u@h/db?binary_parameters=no"},
		{dsn: "postgres://u@h:bad/db", wantErr: true},
		{dsn: "/var/lib/gmtrust/db.sqlite", dialect: DialectSQLite, wantPath: "/var/lib/gmtrust/db.sqlite?"},
		{dsn: "rel/db.sqlite", dialect: DialectSQLite, wantPath: "rel/db.sqlite?"},
		{dsn: "sqlite:///abs/db.sqlite", dialect: DialectSQLite, wantPath: "/abs/db.sqlite?"},
		{dsn: "sqlite:rel.db", dialect: DialectSQLite, wantPath: "rel.db?"},
		{dsn: "file:/abs/db.sqlite", dialect: DialectSQLite, wantPath: "file:/abs/db.sqlite?"},
		{dsn: "file:/abs/db.sqlite?cache=private", dialect: DialectSQLite, wantPath: "file:/abs/db.sqlite?cache=private&"},
		{dsn: "", wantErr: true},
		{dsn: "sqlite://", wantErr: true},
		{dsn: ":memory:", wantErr: true},
		{dsn: "file::memory:?mode=memory", wantErr: true},
		{dsn: "/tmp/what?.db", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.dsn, func(t *testing.T) {
			dialect, got, err := parseDSN(tt.dsn, 0)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("parseDSN(%q) error = %v, want ErrInvalid", tt.dsn, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseDSN(%q): %v", tt.dsn, err)
			}
			if dialect != tt.dialect || !strings.HasPrefix(got, tt.wantPath) {
				t.Fatalf("parseDSN(%q) = %s %q, want %s %q...", tt.dsn, dialect, got, tt.dialect, tt.wantPath)
			}
			if dialect == DialectSQLite {
				for _, p := range []string{"journal_mode(WAL)", "synchronous(FULL)", "foreign_keys(1)", "busy_timeout(", "_txlock=immediate"} {
					if !strings.Contains(got, p) {
						t.Errorf("SQLite DSN %q lacks %s", got, p)
					}
				}
			}
		})
	}
}

// TestSQLiteSettings checks the settings every pooled SQLite connection
// gets, since they are what makes commits durable and safe to share.
func TestSQLiteSettings(t *testing.T) {
	db, _ := newDB(t, sqliteBackend())
	ctx := context.Background()
	conn, err := db.SQL().Connx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, tt := range []struct {
		pragma string
		want   string
	}{
		{"journal_mode", "wal"},
		{"synchronous", "2"}, // FULL
		{"foreign_keys", "1"},
		{"busy_timeout", "10000"},
		{"cache_size", "-32768"}, // KiB
	} {
		var got string
		if err := conn.GetContext(ctx, &got, "PRAGMA "+tt.pragma); err != nil {
			t.Fatal(err)
		}
		if got != tt.want {
			t.Errorf("PRAGMA %s = %s, want %s", tt.pragma, got, tt.want)
		}
	}
}

func TestOpenMigratesIdempotently(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		dsn := b.newDSN(t)
		db := openDB(t, dsn, Options{})
		if db.Dialect() != b.name {
			t.Fatalf("Dialect() = %s, want %s", db.Dialect(), b.name)
		}
		mustInsertCA(t, db, "root")
		c := testCert("root")
		mustInsertCert(t, db, c)
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			db := openDB(t, dsn, Options{})
			if err := db.Ping(ctx); err != nil {
				t.Fatal(err)
			}
			if n := countRows(t, db, "SELECT COUNT(*) FROM certificates"); n != 1 {
				t.Fatalf("after reopen: %d certificates, want 1", n)
			}
			if n := countRows(t, db, "SELECT COUNT(*) FROM goose_db_version WHERE version_id = 1"); n != 1 {
				t.Fatalf("migration 1 recorded %d times, want 1", n)
			}
			db.Close()
		}
	})
}

// TestOpenConcurrently opens a fresh database from several handles at
// once, as a server and a CLI starting together would: the migrations run
// once and every Open succeeds.
func TestOpenConcurrently(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		dsn := b.newDSN(t)
		const n = 4
		errs := make(chan error, n)
		for range n {
			go func() {
				db, err := Open(context.Background(), dsn, Options{})
				if err == nil {
					err = db.Close()
				}
				errs <- err
			}()
		}
		for range n {
			if err := <-errs; err != nil {
				t.Fatalf("concurrent Open: %v", err)
			}
		}
		db := openDB(t, dsn, Options{})
		if got := countRows(t, db, "SELECT COUNT(*) FROM goose_db_version WHERE version_id = 1"); got != 1 {
			t.Fatalf("migration 1 recorded %d times", got)
		}
	})
}

// TestBlobsStoredAsBlobs checks that SQLite keeps DER in BYTEA columns as
// blobs (BYTEA has NUMERIC affinity there, which must not convert blobs).
func TestBlobsStoredAsBlobs(t *testing.T) {
	db, _ := newDB(t, sqliteBackend())
	mustInsertCA(t, db, "root")
	c := testCert("root")
	c.DER = []byte("12345") // looks numeric: would become an integer if stored as text
	mustInsertCert(t, db, c)
	var typ string
	if err := db.SQL().Get(&typ, "SELECT typeof(der) FROM certificates"); err != nil {
		t.Fatal(err)
	}
	if typ != "blob" {
		t.Fatalf("typeof(der) = %s, want blob", typ)
	}
	got, err := db.Certificate(context.Background(), c.CAID, c.Serial)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.DER) != "12345" {
		t.Fatalf("DER = %q", got.DER)
	}
}

func TestDurableAfterClose(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		dsn := b.newDSN(t)
		db := openDB(t, dsn, Options{})
		mustInsertCA(t, db, "root")
		c := testCert("root")
		mustInsertCert(t, db, c)
		db.Close()

		db = openDB(t, dsn, Options{})
		got, err := db.Certificate(context.Background(), "root", c.Serial)
		if err != nil {
			t.Fatalf("after reopen: %v", err)
		}
		if string(got.DER) != string(c.DER) {
			t.Fatal("DER differs after reopen")
		}
	})
}

// TestDurableAfterKill inserts in a child process that is SIGKILLed as
// soon as InsertCertificate returns: no Close, no checkpoint. The row must
// be there when the parent reopens the file.
func TestDurableAfterKill(t *testing.T) {
	if path := os.Getenv("GMTRUST_STORE_KILL_CHILD"); path != "" {
		db, err := Open(context.Background(), path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		c := testCert("root")
		c.Serial = os.Getenv("GMTRUST_STORE_KILL_SERIAL")
		if err := db.InsertCertificate(context.Background(), c); err != nil {
			t.Fatal(err)
		}
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	path := filepath.Join(t.TempDir(), "kill.db")
	db := openDB(t, path, Options{})
	mustInsertCA(t, db, "root")
	db.Close()

	serial := randSerial()
	cmd := exec.Command(os.Args[0], "-test.run=^TestDurableAfterKill$")
	cmd.Env = append(os.Environ(), "GMTRUST_STORE_KILL_CHILD="+path, "GMTRUST_STORE_KILL_SERIAL="+serial)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die by SIGKILL: %v\n%s", err, out)
	}
	db = openDB(t, path, Options{})
	if _, err := db.Certificate(context.Background(), "root", serial); err != nil {
		t.Fatalf("certificate committed before the kill is missing: %v", err)
	}
}

func TestInTxAllOrNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		db, _ := newDB(t, b)
		ctx := context.Background()
		errBoom := errors.New("boom")
		init := func(fail bool) error {
			return db.InTx(ctx, func(ctx context.Context, tx *sqlx.Tx) error {
				if err := db.InsertCATx(ctx, tx, testCA("root", ca.RoleRoot)); err != nil {
					return err
				}
				if err := db.InsertCertificateTx(ctx, tx, testCert("root")); err != nil {
					return err
				}
				if err := db.InsertTokenTx(ctx, tx, &Token{ID: "admin", Principal: "admin", Hash: randBytes(32)}); err != nil {
					return err
				}
				if err := db.SetSettingTx(ctx, tx, "initialised", "1"); err != nil {
					return err
				}
				if fail {
					return errBoom
				}
				return nil
			})
		}
		if err := init(true); !errors.Is(err, errBoom) {
			t.Fatalf("InTx = %v, want boom", err)
		}
		for _, table := range []string{"cas", "certificates", "api_tokens", "instance"} {
			if n := countRows(t, db, "SELECT COUNT(*) FROM "+table); n != 0 {
				t.Fatalf("%s has %d rows after a failed InTx", table, n)
			}
		}
		if err := init(false); err != nil {
			t.Fatal(err)
		}
		for _, table := range []string{"cas", "certificates", "api_tokens", "instance"} {
			if n := countRows(t, db, "SELECT COUNT(*) FROM "+table); n != 1 {
				t.Fatalf("%s has %d rows after InTx, want 1", table, n)
			}
		}
	})
}

func TestSettings(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		db, _ := newDB(t, b)
		ctx := context.Background()
		if _, err := db.GetSetting(ctx, "initialised"); !errors.Is(err, ca.ErrNotFound) {
			t.Fatalf("GetSetting(missing) = %v, want ErrNotFound", err)
		}
		for _, v := range []string{"1", "2"} {
			if err := db.SetSetting(ctx, "initialised", v); err != nil {
				t.Fatal(err)
			}
			got, err := db.GetSetting(ctx, "initialised")
			if err != nil || got != v {
				t.Fatalf("GetSetting = %q, %v; want %q", got, err, v)
			}
		}
		if err := db.SetSetting(ctx, "", "x"); !errors.Is(err, ErrInvalid) {
			t.Fatalf("SetSetting(\"\") = %v, want ErrInvalid", err)
		}
	})
}

func TestCAsAndSigners(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		db, _ := newDB(t, b)
		ctx := context.Background()
		// Issuing CA first, to check that roots are listed first anyway.
		if err := db.InsertCA(ctx, testCA("issuing", ca.RoleIssuing)); err != nil {
			t.Fatal(err)
		}
		root := testCA("root", ca.RoleRoot)
		if err := db.InsertCA(ctx, root); err != nil {
			t.Fatal(err)
		}
		if err := db.InsertCA(ctx, testCA("root", ca.RoleRoot)); !errors.Is(err, ErrDuplicate) {
			t.Fatalf("duplicate CA: %v, want ErrDuplicate", err)
		}
		bad := testCA("x", "intermediate")
		if err := db.InsertCA(ctx, bad); !errors.Is(err, ErrInvalid) {
			t.Fatalf("bad role: %v, want ErrInvalid", err)
		}
		cas, err := db.CAs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(cas) != 2 || cas[0].ID != "root" || cas[1].ID != "issuing" {
			t.Fatalf("CAs order = %+v", cas)
		}
		got := cas[0]
		if got.Name != root.Name || got.Role != ca.RoleRoot || got.KeyRef != root.KeyRef || string(got.DER) != string(root.DER) ||
			!got.NotBefore.Equal(root.NotBefore) || !got.NotAfter.Equal(root.NotAfter) || !got.CreatedAt.Equal(root.CreatedAt) {
			t.Fatalf("CA round trip: got %+v, want %+v", got, root)
		}

		var inserted []string
		for i := range 3 {
			s := &ca.SignerRecord{
				ID: "ocsp-" + string(rune('a'+i)), CAID: "issuing", Purpose: "ocsp", KeyRef: "k", DER: randBytes(500),
				Serial: randSerial(), NotBefore: testTime, NotAfter: testTime.AddDate(0, 1, 0),
			}
			if err := db.InsertSigner(ctx, s); err != nil {
				t.Fatal(err)
			}
			inserted = append(inserted, s.ID)
		}
		other := &ca.SignerRecord{ID: "tsa", CAID: "issuing", Purpose: "tsa", DER: []byte{1}, Serial: "1", NotBefore: testTime, NotAfter: testTime}
		if err := db.InsertSigner(ctx, other); err != nil {
			t.Fatal(err)
		}
		orphan := &ca.SignerRecord{ID: "orphan", CAID: "nope", Purpose: "ocsp", DER: []byte{1}, Serial: "1", NotBefore: testTime, NotAfter: testTime}
		if err := db.InsertSigner(ctx, orphan); !errors.Is(err, ca.ErrNotFound) {
			t.Fatalf("signer of a missing CA: %v, want ErrNotFound", err)
		}
		signers, err := db.Signers(ctx, "ocsp")
		if err != nil {
			t.Fatal(err)
		}
		if len(signers) != 3 || signers[0].ID != inserted[2] || signers[2].ID != inserted[0] {
			t.Fatalf("Signers = %+v, want newest first of %v", signers, inserted)
		}
	})
}
