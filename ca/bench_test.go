package ca_test

import (
	"context"
	"crypto/rand"
	"crypto/x509/pkix"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmtrust/gmtrust/ca"
	"github.com/gmtrust/gmtrust/hsm"
	"github.com/gmtrust/gmtrust/internal/app"
	"github.com/gmtrust/gmtrust/internal/testutil"
)

// csrPool makes n CSRs up front: a client's work, not the CA's.
func csrPool(b *testing.B, alg string, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = testutil.NewCSR(b, testutil.NewKey(b, alg), testutil.CSROptions{Subject: pkix.Name{CommonName: "bench user " + strconv.Itoa(i), OrganizationalUnit: []string{"省财政厅"}}})
	}
	return out
}

// BenchmarkIssue issues certificates in-process with 32 concurrent
// callers; every certificate is committed before Issue returns.
func BenchmarkIssue(b *testing.B) {
	for _, tc := range []struct {
		alg hsm.Algorithm
		db  string
	}{{hsm.SM2, "sqlite"}, {hsm.ECDSAP256, "sqlite"}, {hsm.SM2, "postgres"}} {
		b.Run(fmt.Sprintf("%s/%s", tc.alg, tc.db), func(b *testing.B) {
			dsn := ""
			if tc.db == "postgres" {
				dsn = testutil.PostgresDSN(b)
			}
			a := newInstance(b, tc.alg, dsn)
			keyAlg := "sm2"
			if tc.alg != hsm.SM2 {
				keyAlg = "ecdsa-p256"
			}
			csrs := csrPool(b, keyAlg, 256)
			ctx := context.Background()
			var next atomic.Int64
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := next.Add(1)
					if _, err := a.Authority.Issue(ctx, ca.IssueRequest{CSR: csrs[i%int64(len(csrs))], Profile: "staff-sign", Department: "bench"}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "certs/s")
			if st := a.Store.WriteStats(); st.Batches > 0 {
				b.ReportMetric(float64(st.Writes)/float64(st.Batches), "writes/commit")
			}
		})
	}
}

// BenchmarkIssueSerial is one issuance at a time: the latency a lone
// caller sees.
func BenchmarkIssueSerial(b *testing.B) {
	a := newInstance(b, hsm.SM2, "")
	csrs := csrPool(b, "sm2", 64)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := a.Authority.Issue(ctx, ca.IssueRequest{CSR: csrs[i%len(csrs)], Profile: "staff-sign"}); err != nil {
			b.Fatal(err)
		}
	}
}

// populateRevoked inserts n revoked certificates straight into the
// certificates table (issuing them one by one would take the benchmark's
// whole budget and is measured elsewhere).
func populateRevoked(b testing.TB, a *app.App, n int) []string {
	b.Helper()
	ctx := context.Background()
	db := a.Store.SQL()
	now := time.Now().Unix()
	const chunk = 500
	der := make([]byte, 600)
	_, _ = rand.Read(der)
	serials := make([]string, 0, n)
	for done := 0; done < n; {
		tx, err := db.BeginTxx(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		for j := 0; j < 40 && done < n; j++ {
			m := min(chunk, n-done)
			var sb strings.Builder
			sb.WriteString("INSERT INTO certificates (ca_id, serial, profile, subject, key_algorithm, not_before, not_after, status, reason, revoked_at, der, created_at) VALUES ")
			args := make([]any, 0, m*3)
			for k := 0; k < m; k++ {
				if k > 0 {
					sb.WriteByte(',')
				}
				s, _ := ca.NewSerial(rand.Reader)
				// Spread notAfter over a year so parallel range scans split.
				sb.WriteString(fmt.Sprintf("('issuing', ?, 'staff-sign', 'CN=x', 'sm2', %d, %d, 'revoked', %d, %d, ?, ?)", now-3600, now+int64((done+k)%8760+1)*3600, (done+k)%6, now-60))
				args = append(args, ca.SerialHex(s), der, time.Now().UnixNano()+int64(done+k))
				serials = append(serials, ca.SerialHex(s))
			}
			if _, err := tx.ExecContext(ctx, a.Store.Rebind(sb.String()), args...); err != nil {
				b.Fatal(err)
			}
			done += m
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	return serials
}

// peakRSSReset clears the kernel's high-water mark of this process's
// resident memory so the next reading covers only what follows.
func peakRSSReset() {
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

func peakRSSMiB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return -1
}

// BenchmarkCRL builds and signs the issuing CA's CRL with n revoked
// certificates (SQLite; SM2) and reports the peak resident memory of the
// process during generation.
func BenchmarkCRL(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("%dk", n/1000), func(b *testing.B) {
			a := newInstance(b, hsm.SM2, "")
			populateRevoked(b, a, n)
			ctx := context.Background()
			issCA, _ := smx509.ParseCertificate(a.Authority.CAs()[1].DER)
			runtime.GC()
			peakRSSReset()
			b.ResetTimer()
			var size int
			for i := 0; i < b.N; i++ {
				crl, err := a.Authority.GenerateCRL(ctx, ca.IssuingID)
				if err != nil {
					b.Fatal(err)
				}
				size = len(crl.DER)
			}
			b.StopTimer()
			b.ReportMetric(peakRSSMiB(), "peakRSS-MiB")
			b.ReportMetric(float64(size)/(1<<20), "CRL-MiB")
			crl, _ := a.Authority.LatestCRL(ctx, ca.IssuingID)
			rl, err := smx509.ParseRevocationList(crl.DER)
			if err != nil || len(rl.RevokedCertificateEntries) != n {
				b.Fatalf("CRL has %d entries, want %d (%v)", len(rl.RevokedCertificateEntries), n, err)
			}
			if err := rl.CheckSignatureFrom(issCA); err != nil {
				b.Fatal(err)
			}
		})
	}
}
