package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
)

// BenchmarkInsertCertificate issues certificates with ~1 KB DER from about
// 32 goroutines, each insert durably committed before it returns, and
// reports inserts/s and the mean number of inserts per commit. PostgreSQL
// runs with several group-commit writer counts.
func BenchmarkInsertCertificate(b *testing.B) {
	b.Run(DialectSQLite, func(b *testing.B) { benchInsert(b, sqliteBackend(), 1) })
	pg, ok := postgresBackend(b)
	if !ok {
		return
	}
	for _, w := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("%s/writers=%d", DialectPostgres, w), func(b *testing.B) { benchInsert(b, pg, w) })
	}
}

func benchInsert(b *testing.B, be backend, writers int) {
	db := openDB(b, be.newDSN(b), Options{Writers: writers})
	mustInsertCA(b, db, "root")
	ctx := context.Background()
	b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0)))
	before := db.WriteStats()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := db.InsertCertificate(ctx, testCert("root")); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	st := db.WriteStats()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "inserts/s")
	if n := st.Batches - before.Batches; n > 0 {
		b.ReportMetric(float64(st.Writes-before.Writes)/float64(n), "inserts/commit")
	}
}

// BenchmarkCertificateStatuses reads the statuses of random certificates
// among 20,000 (~1 KB DER each, so the table is well over SQLite's page
// cache) one at a time and in batches, as the OCSP refresher does, and
// reports the cost per status.
func BenchmarkCertificateStatuses(b *testing.B) {
	b.Run(DialectSQLite, func(b *testing.B) { benchStatuses(b, sqliteBackend()) })
	if pg, ok := postgresBackend(b); ok {
		b.Run(DialectPostgres, func(b *testing.B) { benchStatuses(b, pg) })
	}
}

func benchStatuses(b *testing.B, be backend) {
	dsn := be.newDSN(b)
	db := openDB(b, dsn, Options{})
	s := newOCSPStore(b, db, dsn)
	mustInsertCA(b, db, "issuing")
	ctx := context.Background()
	serials := make([]string, 20_000)
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Go(func() {
			for i := w; i < len(serials); i += 32 {
				c := testCert("issuing")
				if err := db.InsertCertificate(ctx, c); err != nil {
					b.Error(err)
					return
				}
				serials[i] = c.Serial
			}
		})
	}
	wg.Wait()
	for _, n := range []int{1, 32, 500} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			batch := make([]string, n)
			rng := rand.New(rand.NewPCG(1, 2))
			for b.Loop() {
				for i := range batch {
					batch[i] = serials[rng.IntN(len(serials))]
				}
				if n == 1 {
					if _, err := s.CertificateStatus(ctx, "issuing", batch[0]); err != nil {
						b.Fatal(err)
					}
					continue
				}
				if got, err := s.CertificateStatuses(ctx, "issuing", batch); err != nil || len(got) == 0 {
					b.Fatalf("%d statuses, %v", len(got), err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/status")
		})
	}
}
