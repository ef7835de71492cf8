package app_test

import (
	"bytes"
	"context"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/gmtrust/gmtrust/hsm"
	"github.com/gmtrust/gmtrust/internal/api"
	"github.com/gmtrust/gmtrust/internal/app"
	"github.com/gmtrust/gmtrust/internal/testutil"
)

func testEnv(k string) string {
	if k == "GMTRUST_KEY_PASSPHRASE" {
		return "bench passphrase"
	}
	return ""
}

// startServer initialises an instance and serves its API on a loopback
// port, the way `gmtrust serve` does. It returns the base URL and token.
func startServer(b *testing.B, alg hsm.Algorithm, database string) (string, string) {
	b.Helper()
	dir := filepath.Join(b.TempDir(), "data")
	ctx := context.Background()
	if _, err := app.Init(ctx, app.InitParams{Dir: dir, Name: "Bench CA", Algorithm: alg, Database: database, Getenv: testEnv}); err != nil {
		b.Fatal(err)
	}
	a, err := app.Open(ctx, dir, app.Options{Getenv: testEnv})
	if err != nil {
		b.Fatal(err)
	}
	srv := api.New(api.Deps{Authority: a.Authority, Auth: &app.TokenAuth{Store: a.Store, Now: a.Now}, Ready: a.ReadyChecks(), Metrics: a.Registry})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	hs := &http.Server{Handler: srv}
	go hs.Serve(ln)
	b.Cleanup(func() {
		hs.Close()
		a.Close()
	})
	tok, err := readToken(dir)
	if err != nil {
		b.Fatal(err)
	}
	return "http://" + ln.Addr().String(), tok
}

// BenchmarkHTTPIssue issues certificates through POST /api/v1/certificates
// with keep-alive clients on loopback; the clients run on the same two
// cores as the server.
func BenchmarkHTTPIssue(b *testing.B) {
	for _, db := range []string{"sqlite", "postgres"} {
		for _, clients := range []int{8, 32} {
			b.Run(fmt.Sprintf("sm2/%s/clients=%d", db, clients), func(b *testing.B) {
				dsn := ""
				if db == "postgres" {
					dsn = testutil.PostgresDSN(b)
				}
				base, tok := startServer(b, hsm.SM2, dsn)
				bodies := make([][]byte, 256)
				for i := range bodies {
					csr := testutil.NewCSR(b, testutil.NewKey(b, "sm2"), testutil.CSROptions{Subject: pkix.Name{CommonName: "http user " + strconv.Itoa(i)}})
					bodies[i], _ = json.Marshal(map[string]string{"csr": string(csr), "profile": "staff-sign", "department": "bench"})
				}
				tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
				client := &http.Client{Transport: tr}
				defer tr.CloseIdleConnections()
				var next atomic.Int64
				b.SetParallelism((clients + 1) / 2) // GOMAXPROCS is 2 here
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						i := next.Add(1)
						req, _ := http.NewRequest("POST", base+"/api/v1/certificates", bytes.NewReader(bodies[i%int64(len(bodies))]))
						req.Header.Set("Authorization", "Bearer "+tok)
						req.Header.Set("Content-Type", "application/json")
						resp, err := client.Do(req)
						if err != nil {
							b.Error(err)
							return
						}
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != http.StatusCreated {
							b.Errorf("status %d", resp.StatusCode)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "certs/s")
			})
		}
	}
}
