package store

import (
	"context"
	"fmt"
	"runtime"
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
