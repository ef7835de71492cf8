package store

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/gmtrust/gmtrust/internal/audit"
)

func actorCtx(name string) context.Context {
	return audit.WithActor(context.Background(), audit.Actor{Principal: name, RequestID: "req-" + name, Source: "192.0.2.1"})
}

// verifyChain walks the stored chain and fails the test on any problem.
func verifyChain(t testing.TB, db *DB) *audit.Report {
	t.Helper()
	rep, err := audit.Verify(context.Background(), db, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("chain broken: %v", rep.Problems)
	}
	return rep
}

func auditEntries(t testing.TB, db *DB) []audit.Entry {
	t.Helper()
	var out []audit.Entry
	for e, err := range db.AuditEntries(context.Background(), 0) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, *e)
	}
	return out
}

func TestAuditAppend(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		db, _ := newDB(t, b)
		ctx := actorCtx("alice")
		if h, err := db.AuditHead(ctx); err != nil || h.Seq != 0 || h.Hash != nil {
			t.Fatalf("empty head %+v %v", h, err)
		}
		if err := db.InsertPrincipal(ctx, &Principal{Name: "bob", Kind: KindService, Department: "czt", Roles: []string{"approval-system"}}); err != nil {
			t.Fatal(err)
		}
		if err := db.AppendAudit(context.Background(), "auth.token", "", audit.OutcomeFailure, map[string]any{"reason": "unknown token"}); err != nil {
			t.Fatal(err)
		}
		es := auditEntries(t, db)
		if len(es) != 2 {
			t.Fatalf("%d entries", len(es))
		}
		e := es[0]
		if e.Seq != 1 || e.Principal != "alice" || e.RequestID != "req-alice" || e.Action != "principal.create" ||
			e.Object != "principal/bob" || e.Outcome != audit.OutcomeSuccess || !e.Verify() {
			t.Fatalf("entry 1: %+v", e)
		}
		var det map[string]any
		if err := json.Unmarshal([]byte(e.Details), &det); err != nil || det["source"] != "192.0.2.1" || det["department"] != "czt" {
			t.Fatalf("details %s: %v", e.Details, err)
		}
		if es[1].Principal != audit.SystemPrincipal || es[1].Outcome != audit.OutcomeFailure {
			t.Fatalf("entry without actor: %+v", es[1])
		}
		rep := verifyChain(t, db)
		if rep.Entries != 2 || rep.Head.Seq != 2 {
			t.Fatalf("report %+v", rep)
		}
	})
}

// TestAuditRollback: a write that fails after appending leaves neither
// its change nor its entry.
func TestAuditRollback(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		db, _ := newDB(t, b)
		ctx := actorCtx("alice")
		boom := errors.New("boom")
		err := db.Write(ctx, func(ctx context.Context, tx *sqlx.Tx) error {
			if err := db.appendAudit(ctx, tx, "test.change", "x", audit.OutcomeSuccess, nil); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatal(err)
		}
		// A duplicate principal fails inside the write.
		p := &Principal{Name: "carol", Kind: KindPerson, Roles: []string{"auditor"}}
		if err := db.InsertPrincipal(ctx, p); err != nil {
			t.Fatal(err)
		}
		if err := db.InsertPrincipal(ctx, &Principal{Name: "carol", Kind: KindPerson}); !errors.Is(err, ErrDuplicate) {
			t.Fatalf("duplicate: %v", err)
		}
		if es := auditEntries(t, db); len(es) != 1 || es[0].Action != "principal.create" {
			t.Fatalf("entries %+v", es)
		}
		verifyChain(t, db)
	})
}

// TestAuditConcurrent appends from many goroutines through two handles
// on the same database (two processes, as far as the database can tell):
// numbers stay gap-free and the chain verifies.
func TestAuditConcurrent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		dsn := b.newDSN(t)
		dbs := []*DB{openDB(t, dsn, Options{}), openDB(t, dsn, Options{})}
		const perWorker, workers = 15, 8
		var wg sync.WaitGroup
		errc := make(chan error, workers)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				db := dbs[w%2]
				ctx := actorCtx(fmt.Sprintf("w%d", w))
				for i := 0; i < perWorker; i++ {
					if err := db.AppendAudit(ctx, "test.event", fmt.Sprintf("w%d/%d", w, i), audit.OutcomeSuccess, nil); err != nil {
						errc <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			t.Fatal(err)
		}
		rep := verifyChain(t, dbs[0])
		if rep.Entries != perWorker*workers || rep.LastSeq != perWorker*workers {
			t.Fatalf("report %+v", rep)
		}
	})
}

// TestAuditBatch appends more entries in one call than one INSERT holds.
func TestAuditBatch(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		db, _ := newDB(t, b)
		var recs []auditRecord
		for i := 0; i < 250; i++ {
			recs = append(recs, auditRecord{ctx: actorCtx(fmt.Sprintf("p%d", i%3)), action: "certificate.issue",
				object: fmt.Sprintf("certificate/issuing/%x", i+1), outcome: audit.OutcomeSuccess})
		}
		err := db.Write(context.Background(), func(ctx context.Context, tx *sqlx.Tx) error {
			if err := db.appendAudits(ctx, tx, recs[:1]); err != nil {
				return err
			}
			return db.appendAudits(ctx, tx, recs[1:])
		})
		if err != nil {
			t.Fatal(err)
		}
		es := auditEntries(t, db)
		if len(es) != 250 || es[249].Object != "certificate/issuing/fa" || es[100].Principal != "p1" {
			t.Fatalf("%d entries, last %+v", len(es), es[len(es)-1])
		}
		verifyChain(t, db)
	})
}

func TestListAudit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		db, _ := newDB(t, b)
		ctx := context.Background()
		actions := []string{"certificate.issue", "certificate.revoke", "seal.stamp", "auth.token"}
		for i := 0; i < 40; i++ {
			outcome := audit.OutcomeSuccess
			if i%4 == 3 {
				outcome = audit.OutcomeFailure
			}
			if err := db.AppendAudit(actorCtx(fmt.Sprintf("p%d", i%2)), actions[i%4], fmt.Sprintf("obj/%d", i%5), outcome, nil); err != nil {
				t.Fatal(err)
			}
		}
		all := auditEntries(t, db)
		mid := all[20].Time
		tests := []struct {
			name string
			f    AuditFilter
			keep func(e audit.Entry) bool
		}{
			{"all", AuditFilter{}, func(audit.Entry) bool { return true }},
			{"principal", AuditFilter{Principal: "p1"}, func(e audit.Entry) bool { return e.Principal == "p1" }},
			{"action", AuditFilter{Action: "seal.stamp"}, func(e audit.Entry) bool { return e.Action == "seal.stamp" }},
			{"action family", AuditFilter{Action: "certificate."}, func(e audit.Entry) bool { return strings.HasPrefix(e.Action, "certificate.") }},
			{"object and outcome", AuditFilter{Object: "obj/3", Outcome: audit.OutcomeFailure}, func(e audit.Entry) bool {
				return e.Object == "obj/3" && e.Outcome == audit.OutcomeFailure
			}},
			{"since", AuditFilter{Since: mid}, func(e audit.Entry) bool { return !e.Time.Before(mid) }},
			{"until", AuditFilter{Until: mid}, func(e audit.Entry) bool { return e.Time.Before(mid) }},
			{"nothing", AuditFilter{Principal: "nobody"}, func(audit.Entry) bool { return false }},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				var want []int64
				for i := len(all) - 1; i >= 0; i-- {
					if tt.keep(all[i]) {
						want = append(want, all[i].Seq)
					}
				}
				var got []int64
				f := tt.f
				f.Limit = 7
				for pages := 0; ; pages++ {
					if pages > 10 {
						t.Fatal("paging does not end")
					}
					page, next, err := db.ListAudit(ctx, f)
					if err != nil {
						t.Fatal(err)
					}
					for _, e := range page {
						got = append(got, e.Seq)
					}
					if next == 0 {
						break
					}
					f.Before = next
				}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("got %v, want %v", got, want)
				}
			})
		}
	})
}

// TestAuditTamperSQL tampers with the rows directly in the database, as
// someone with database access would, and checks that verification names
// the entry.
func TestAuditTamperSQL(t *testing.T) {
	tests := []struct {
		name     string
		sql      []string
		wantKind audit.Kind
		wantSeq  int64
	}{
		{"change", []string{`UPDATE audit_log SET principal = 'mallory' WHERE seq = 4`}, audit.KindAltered, 4},
		{"change details", []string{`UPDATE audit_log SET details = '{}' WHERE seq = 7`}, audit.KindAltered, 7},
		{"delete", []string{`DELETE FROM audit_log WHERE seq = 5`}, audit.KindDeleted, 5},
		{"delete tail", []string{`DELETE FROM audit_log WHERE seq >= 9`}, audit.KindTruncated, 9},
		{"swap", []string{
			`UPDATE audit_log SET seq = -1 WHERE seq = 3`,
			`UPDATE audit_log SET seq = 3 WHERE seq = 6`,
			`UPDATE audit_log SET seq = 6 WHERE seq = -1`,
		}, audit.KindReordered, 3},
	}
	forEachBackend(t, func(t *testing.T, b backend) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				db, _ := newDB(t, b)
				for i := 0; i < 10; i++ {
					if err := db.AppendAudit(actorCtx("alice"), "test.event", fmt.Sprint(i), audit.OutcomeSuccess, map[string]any{"i": i}); err != nil {
						t.Fatal(err)
					}
				}
				verifyChain(t, db)
				for _, q := range tt.sql {
					if _, err := db.SQL().Exec(q); err != nil {
						t.Fatalf("%s: %v", q, err)
					}
				}
				rep, err := audit.Verify(context.Background(), db, nil)
				if err != nil {
					t.Fatal(err)
				}
				if first := rep.First(); first == nil || first.Kind != tt.wantKind || first.Seq != tt.wantSeq {
					t.Fatalf("first problem %v, want %s at %d", first, tt.wantKind, tt.wantSeq)
				}
			})
		}
	})
}

func TestCheckpointsStore(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		db, _ := newDB(t, b)
		ctx := context.Background()
		if cp, err := db.LatestCheckpoint(ctx); cp != nil || err != nil {
			t.Fatalf("no checkpoint yet: %v %v", cp, err)
		}
		h := sha256.Sum256([]byte("x")) // any 32 bytes
		mk := func(seq int64) *audit.Checkpoint {
			return &audit.Checkpoint{Seq: seq, Hash: h[:], Time: testTime.Add(time.Duration(seq) * time.Hour),
				Certificate: []byte{0x30, 0x00}, Algorithm: []int{1, 2, 156, 10197, 1, 501}, Signature: []byte{1, 2, 3}}
		}
		for _, s := range []int64{5, 1, 1200} {
			if err := db.InsertCheckpoint(ctx, mk(s)); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.InsertCheckpoint(ctx, mk(5)); !errors.Is(err, audit.ErrCheckpointExists) {
			t.Fatalf("duplicate: %v", err)
		}
		if err := db.InsertCheckpoint(ctx, &audit.Checkpoint{Seq: 2}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("incomplete: %v", err)
		}
		cp, err := db.LatestCheckpoint(ctx)
		if err != nil || cp.Seq != 1200 || !cp.Time.Equal(mk(1200).Time) || cp.Algorithm.String() != "1.2.156.10197.1.501" {
			t.Fatalf("latest %+v %v", cp, err)
		}
		var seqs []int64
		for cp, err := range db.AuditCheckpoints(ctx) {
			if err != nil {
				t.Fatal(err)
			}
			seqs = append(seqs, cp.Seq)
		}
		if fmt.Sprint(seqs) != "[1 5 1200]" {
			t.Fatalf("checkpoints %v", seqs)
		}
	})
}

func TestParseOID(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"1.2.156.10197.1.501", true},
		{"1.2", true},
		{"1", false},
		{"", false},
		{"1.x.3", false},
		{"1.-2", false},
	}
	for _, tt := range tests {
		oid, err := parseOID(tt.in)
		if (err == nil) != tt.ok || (tt.ok && oid.String() != tt.in) {
			t.Errorf("parseOID(%q) = %v, %v", tt.in, oid, err)
		}
	}
}

// BenchmarkAppendAudit measures single audited writes from concurrent
// callers (each its own durable commit, group-committed).
func BenchmarkAppendAudit(b *testing.B) {
	backends := []backend{sqliteBackend()}
	if pg, ok := postgresBackend(b); ok {
		backends = append(backends, pg)
	}
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			db := openDB(b, be.newDSN(b), Options{})
			ctx := actorCtx("bench")
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := db.AppendAudit(ctx, "bench.event", "x", audit.OutcomeSuccess, nil); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}
