package app_test

import (
	"context"
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gmtrust/gmtrust/ca"
	"github.com/gmtrust/gmtrust/hsm"
	"github.com/gmtrust/gmtrust/internal/app"
	"github.com/gmtrust/gmtrust/internal/config"
	"github.com/gmtrust/gmtrust/internal/testutil"
)

// BenchmarkIssueHSM issues certificates end to end in-process
// (Authority.Issue: CSR check, policy, encoding, signature, SQLite commit)
// with 32 concurrent callers, once with the CA keys in a SoftHSM2 token
// and once in the software keystore, in the same run so that the two are
// comparable: ECDSA P-256 keys live in the token, SM2 keys are in KEK
// mode with the default plaintext TTL (and with TTL 0, which decrypts in
// the token for every signature).
func BenchmarkIssueHSM(b *testing.B) {
	sh := newSoftHSM(b)
	tokenURI := sh.token("bench", "bench-pin-1")
	for _, tc := range []struct {
		name string
		alg  hsm.Algorithm
		kms  string         // "soft" or a token URI
		ttl  *time.Duration // kms.plaintext_ttl; nil for the default
	}{
		{"ecdsa-p256/soft", hsm.ECDSAP256, "soft", nil},
		{"ecdsa-p256/pkcs11", hsm.ECDSAP256, tokenURI, nil},
		{"sm2/soft", hsm.SM2, "soft", nil},
		{"sm2/pkcs11-kek", hsm.SM2, tokenURI, nil},
		{"sm2/pkcs11-kek-ttl0", hsm.SM2, tokenURI, new(time.Duration)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			a := openBenchInstance(b, tc.alg, tc.kms, tc.ttl)
			keyAlg := "sm2"
			if tc.alg != hsm.SM2 {
				keyAlg = "ecdsa-p256"
			}
			csrs := make([][]byte, 256)
			for i := range csrs {
				csrs[i] = testutil.NewCSR(b, testutil.NewKey(b, keyAlg), testutil.CSROptions{Subject: pkix.Name{CommonName: "hsm bench " + strconv.Itoa(i)}})
			}
			ctx := context.Background()
			var next atomic.Int64
			b.SetParallelism(16) // 32 callers with GOMAXPROCS 2
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
		})
	}
}

// openBenchInstance initialises and opens an instance the way `gmtrust
// init --kms` and `gmtrust serve` do; ttl, when not nil, is written to
// kms.plaintext_ttl in between.
func openBenchInstance(b *testing.B, alg hsm.Algorithm, kms string, ttl *time.Duration) *app.App {
	b.Helper()
	dir := filepath.Join(b.TempDir(), "data")
	ctx := context.Background()
	if _, err := app.Init(ctx, app.InitParams{Dir: dir, Name: "HSM Bench CA", Algorithm: alg, KMS: kms, Getenv: testEnv}); err != nil {
		b.Fatal(err)
	}
	if ttl != nil {
		cfg, err := config.Load(dir, testEnv)
		if err != nil {
			b.Fatal(err)
		}
		cfg.KMS.PlaintextTTL = &config.Duration{Duration: *ttl}
		if err := os.Remove(filepath.Join(dir, config.FileName)); err != nil {
			b.Fatal(err)
		}
		if err := cfg.Write(dir); err != nil {
			b.Fatal(err)
		}
	}
	a, err := app.Open(ctx, dir, app.Options{Getenv: testEnv})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { a.Close() })
	if want := map[bool]string{true: "soft", false: "pkcs11"}[kms == "soft"]; a.Config.KMS.Type != want {
		b.Fatalf("kms %q opened as %s", kms, a.Config.KMS.Type)
	}
	return a
}

// BenchmarkIssueHSMInterleaved runs the comparison of BenchmarkIssueHSM
// so that a shared machine's changing load hits both sides alike: each
// iteration issues one batch with the software keystore and one with the
// token (alternating which goes first), 32 concurrent callers each, and
// the benchmark reports both rates and the token's share of the software
// rate.
func BenchmarkIssueHSMInterleaved(b *testing.B) {
	sh := newSoftHSM(b)
	tokenURI := sh.token("bench-mix", "bench-pin-2")
	const callers, perCaller = 32, 4
	for _, alg := range []hsm.Algorithm{hsm.ECDSAP256, hsm.SM2} {
		b.Run(string(alg), func(b *testing.B) {
			keyAlg := "sm2"
			if alg != hsm.SM2 {
				keyAlg = "ecdsa-p256"
			}
			csrs := make([][]byte, callers*perCaller)
			for i := range csrs {
				csrs[i] = testutil.NewCSR(b, testutil.NewKey(b, keyAlg), testutil.CSROptions{Subject: pkix.Name{CommonName: "hsm mix " + strconv.Itoa(i)}})
			}
			sides := []*app.App{openBenchInstance(b, alg, "soft", nil), openBenchInstance(b, alg, tokenURI, nil)}
			ctx := context.Background()
			batch := func(a *app.App) time.Duration {
				start := time.Now()
				var wg sync.WaitGroup
				for c := range callers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for j := range perCaller {
							if _, err := a.Authority.Issue(ctx, ca.IssueRequest{CSR: csrs[c*perCaller+j], Profile: "staff-sign", Department: "bench"}); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				return time.Since(start)
			}
			var spent [2]time.Duration
			b.ResetTimer()
			for i := range b.N {
				first := i % 2
				spent[first] += batch(sides[first])
				spent[1-first] += batch(sides[1-first])
			}
			n := float64(b.N * callers * perCaller)
			soft, token := n/spent[0].Seconds(), n/spent[1].Seconds()
			b.ReportMetric(soft, "soft-certs/s")
			b.ReportMetric(token, "pkcs11-certs/s")
			b.ReportMetric(100*token/soft, "pkcs11-%-of-soft")
		})
	}
}
