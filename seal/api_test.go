package seal_test

// Service-level and HTTP benchmarks of the seal registry: a real instance
// (SQLite file or PostgreSQL, software keystore), the group-committed
// stamp log, and the verifier with its registry, certificate status and
// chain caches.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm3"

	"github.com/gmtrust/gmtrust/hsm"
	"github.com/gmtrust/gmtrust/internal/api"
	"github.com/gmtrust/gmtrust/internal/app"
	"github.com/gmtrust/gmtrust/internal/store"
	"github.com/gmtrust/gmtrust/internal/testutil"
	"github.com/gmtrust/gmtrust/seal"
)

func benchGetenv(k string) string {
	if k == "GMTRUST_KEY_PASSPHRASE" {
		return "bench passphrase"
	}
	return ""
}

// benchInstance is an opened instance with one seal granted to "oa".
type benchInstance struct {
	a      *app.App
	seals  *app.Seals
	sealID string
	oa     seal.Caller
}

func newBenchInstance(b *testing.B, database string) *benchInstance {
	b.Helper()
	ctx := context.Background()
	dir := filepath.Join(b.TempDir(), "data")
	if _, err := app.Init(ctx, app.InitParams{Dir: dir, Name: "Bench CA", Algorithm: hsm.SM2, Database: database, Getenv: benchGetenv}); err != nil {
		b.Fatal(err)
	}
	a, err := app.Open(ctx, dir, app.Options{Getenv: benchGetenv})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { a.Close() })
	seals, err := a.NewSeals(ctx, app.SealOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { seals.Close() })
	// The picture of a real seal (ofdrw's test seal, 15 693 bytes of PNG):
	// it is in every signature, so in every hash and every response.
	real, err := os.ReadFile(filepath.Join("testdata", "v4_ofdrw_UserV4.esl"))
	if err != nil {
		b.Fatal(err)
	}
	rs, err := seal.ParseSeal(real)
	if err != nil {
		b.Fatal(err)
	}
	pic := rs.Picture.Data
	made, err := seals.Service.Make(ctx, seal.Caller{Name: "admin", Roles: []string{seal.RoleAdmin}}, seal.MakeRequest{
		Name: "基准测试单位 公章", Type: "organization", Department: "bench", ValidDays: 365, Grants: []string{"oa"},
		Picture: seal.PictureInput{Type: "png", Data: pic, WidthMM: 40, HeightMM: 40},
	})
	if err != nil {
		b.Fatal(err)
	}
	return &benchInstance{a: a, seals: seals, sealID: made.Record.ID, oa: seal.Caller{Name: "oa", Roles: []string{"approval-system"}}}
}

func benchDatabases(b *testing.B) []string {
	return []string{"sqlite", "postgres"}
}

func dsnFor(b *testing.B, db string) string {
	if db == "postgres" {
		return testutil.PostgresDSN(b)
	}
	return ""
}

func perSecond(b *testing.B, unit string) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, unit)
	}
}

// processCPU is the CPU time this process has used (user + system).
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuPerOp reports the process CPU time per operation since start: on a
// machine shared with other work it moves far less than ops/s, which
// depends on how much of the two cores the benchmark gets.
func cpuPerOp(b *testing.B, start time.Duration) {
	if b.N > 0 {
		b.ReportMetric(float64((processCPU(b)-start).Microseconds())/float64(b.N), "cpu-µs/op")
	}
}

var benchDigest = func() []byte { h := sm3.Sum([]byte("approval record 2025-001")); return h[:] }()

// BenchmarkServiceStamp stamps a digest through seal.Service: grant and
// seal checks, SM2 signing through the key manager, and the durable
// group-committed record in the stamp log.
func BenchmarkServiceStamp(b *testing.B) {
	for _, db := range benchDatabases(b) {
		for _, callers := range []int{32, 128} {
			b.Run(fmt.Sprintf("%s/callers=%d", db, callers), func(b *testing.B) {
				inst := newBenchInstance(b, dsnFor(b, db))
				ctx := context.Background()
				req := seal.StampRequest{SealID: inst.sealID, DataHash: benchDigest, PropertyInfo: "approval/2025/001", ApprovalRef: "OA-1"}
				// Concurrent callers, as behind an HTTP server: group
				// commit needs company to batch.
				b.SetParallelism(callers / runtime.GOMAXPROCS(0))
				before := inst.a.Store.WriteStats()
				b.ResetTimer()
				cpu := processCPU(b)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := inst.seals.Service.Stamp(ctx, inst.oa, req); err != nil {
							b.Error(err)
							return
						}
					}
				})
				perSecond(b, "stamps/s")
				cpuPerOp(b, cpu)
				if st := inst.a.Store.WriteStats(); st.Batches > before.Batches {
					b.ReportMetric(float64(st.Writes-before.Writes)/float64(st.Batches-before.Batches), "writes/commit")
				}
			})
		}
	}
}

// BenchmarkServiceVerify is a full verification through the service's
// verifier: parse, both signatures (the maker's cached after the first),
// data hash, chains to the instance's CAs, revocation of both
// certificates from the certificates table and the seal's registry
// state (both cached for the status TTL).
func BenchmarkServiceVerify(b *testing.B) {
	inst := newBenchInstance(b, "")
	ctx := context.Background()
	st, err := inst.seals.Service.Stamp(ctx, inst.oa, seal.StampRequest{SealID: inst.sealID, DataHash: benchDigest, PropertyInfo: "p"})
	if err != nil {
		b.Fatal(err)
	}
	if r := inst.seals.Service.Verify(ctx, st.DER, nil, benchDigest); r.Verdict != seal.VerdictValid {
		b.Fatalf("%s %+v", r.Reason, r.Checks)
	}
	b.Run("serial", func(b *testing.B) {
		cpu := processCPU(b)
		for b.Loop() {
			if r := inst.seals.Service.Verify(ctx, st.DER, nil, benchDigest); r.Verdict != seal.VerdictValid {
				b.Fatal(r.Reason)
			}
		}
		perSecond(b, "verifications/s")
		cpuPerOp(b, cpu)
	})
	b.Run("parallel", func(b *testing.B) {
		cpu := processCPU(b)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if r := inst.seals.Service.Verify(ctx, st.DER, nil, benchDigest); r.Verdict != seal.VerdictValid {
					b.Error(r.Reason)
					return
				}
			}
		})
		perSecond(b, "verifications/s")
		cpuPerOp(b, cpu)
	})
}

// serveBench serves the instance's API, seals mounted, on loopback.
func serveBench(b *testing.B, inst *benchInstance) string {
	b.Helper()
	srv := api.New(api.Deps{Authority: inst.a.Authority, Auth: &app.TokenAuth{Store: inst.a.Store, Now: inst.a.Now}})
	inst.seals.Mount(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	hs := &http.Server{Handler: srv}
	go hs.Serve(ln)
	b.Cleanup(func() { hs.Close() })
	return "http://" + ln.Addr().String()
}

// httpLoad posts body (JSON unless contentType says otherwise) to url
// with keep-alive clients on loopback (on the same two cores as the
// server) and expects status.
func httpLoad(b *testing.B, clients int, url, token, contentType string, body []byte, status int) {
	tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var failed atomic.Bool
	b.SetParallelism((clients + 1) / 2) // GOMAXPROCS is 2 here
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
			req.Header.Set("Content-Type", contentType)
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != status && !failed.Swap(true) {
				b.Errorf("status %d, want %d", resp.StatusCode, status)
				return
			}
		}
	})
}

// BenchmarkHTTPStamp stamps a digest through POST /api/v1/seals/{id}/stamp.
func BenchmarkHTTPStamp(b *testing.B) {
	for _, db := range benchDatabases(b) {
		for _, clients := range []int{8, 32} {
			b.Run(fmt.Sprintf("%s/clients=%d", db, clients), func(b *testing.B) {
				inst := newBenchInstance(b, dsnFor(b, db))
				base := serveBench(b, inst)
				tok, hash, err := app.NewToken()
				if err != nil {
					b.Fatal(err)
				}
				if err := inst.a.Store.InsertPrincipal(context.Background(), &store.Principal{Name: "oa", Kind: store.KindService, Roles: []string{"approval-system"}}); err != nil {
					b.Fatal(err)
				}
				if err := inst.a.Store.InsertToken(context.Background(), &store.Token{ID: "oa", Principal: "oa", Hash: hash}); err != nil {
					b.Fatal(err)
				}
				body, _ := json.Marshal(map[string]string{"digest": hex.EncodeToString(benchDigest), "property_info": "approval/2025/001", "approval_ref": "OA-1"})
				httpLoad(b, clients, base+"/api/v1/seals/"+inst.sealID+"/stamp", tok, "application/json", body, http.StatusCreated)
				perSecond(b, "stamps/s")
			})
		}
	}
}

// BenchmarkHTTPVerify verifies a stamp through the public
// POST /api/v1/signatures/verify.
func BenchmarkHTTPVerify(b *testing.B) {
	inst := newBenchInstance(b, "")
	base := serveBench(b, inst)
	st, err := inst.seals.Service.Stamp(context.Background(), inst.oa, seal.StampRequest{SealID: inst.sealID, DataHash: benchDigest, PropertyInfo: "p"})
	if err != nil {
		b.Fatal(err)
	}
	body, _ := json.Marshal(map[string]string{"signature": base64.StdEncoding.EncodeToString(st.DER), "digest": hex.EncodeToString(benchDigest)})
	for _, clients := range []int{8, 32} {
		b.Run(fmt.Sprintf("json/clients=%d", clients), func(b *testing.B) {
			httpLoad(b, clients, base+"/api/v1/signatures/verify", "", "application/json", body, http.StatusOK)
			perSecond(b, "verifications/s")
		})
		b.Run(fmt.Sprintf("der/clients=%d", clients), func(b *testing.B) {
			httpLoad(b, clients, base+"/api/v1/signatures/verify?digest="+hex.EncodeToString(benchDigest), "", "application/octet-stream", st.DER, http.StatusOK)
			perSecond(b, "verifications/s")
		})
	}
}
