package store

import (
	"context"
	"runtime"
	"testing"
)

// BenchmarkInsertCertificate issues certificates with ~1 KB DER from about
// 32 goroutines, each insert durably committed before it returns, and
// reports inserts/s and the mean number of inserts per commit.
func BenchmarkInsertCertificate(b *testing.B) {
	backends := []backend{sqliteBackend()}
	if pg, ok := postgresBackend(b); ok {
		backends = append(backends, pg)
	}
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			db := openDB(b, be.newDSN(b), Options{})
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
		})
	}
}
