package seal

import (
	"context"
	"testing"
)

// opsPerSecond reports throughput next to ns/op.
func opsPerSecond(b *testing.B) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, "ops/s")
	}
}

func BenchmarkStamp(b *testing.B) {
	p := newTestPKI(b)
	sealDER := makeTestSeal(b, p)
	hash := docHash(testDocument)
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			if _, err := Stamp(ctx, sealDER, p.holderDER, p.holderKey, hash, "/Doc_0/Signs/Sign_0/Signature.xml", tSign); err != nil {
				b.Fatal(err)
			}
		}
		opsPerSecond(b)
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := Stamp(ctx, sealDER, p.holderDER, p.holderKey, hash, "/Doc_0/Signs/Sign_0/Signature.xml", tSign); err != nil {
					b.Error(err)
					return
				}
			}
		})
		opsPerSecond(b)
	})
}

// BenchmarkVerify is a full verification: parse, maker and signer
// signatures, data hash (digest given), PoolTrust chains and a revocation
// checker, with a shared Cache as a long-running verifier would use.
func BenchmarkVerify(b *testing.B) {
	p := newTestPKI(b)
	der := stampTest(b, p, makeTestSeal(b, p))
	opts := fullOptions(b, p)
	opts.Data, opts.Digest = nil, docHash(testDocument)
	ctx := context.Background()
	run := func(b *testing.B, opts VerifyOptions) {
		b.Run("serial", func(b *testing.B) {
			for b.Loop() {
				if r := Verify(ctx, der, opts); r.Verdict != VerdictValid {
					b.Fatal(r.Reason)
				}
			}
			opsPerSecond(b)
		})
		b.Run("parallel", func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if r := Verify(ctx, der, opts); r.Verdict != VerdictValid {
						b.Error(r.Reason)
						return
					}
				}
			})
			opsPerSecond(b)
		})
	}
	b.Run("cached", func(b *testing.B) {
		o := opts
		o.Cache = NewCache(1024)
		run(b, o)
	})
	// Without a Cache every call parses both certificates and checks the
	// maker signature (PoolTrust still caches chains).
	b.Run("uncached", func(b *testing.B) { run(b, opts) })
}
