// Command ocspbench prepares and supports the OCSP load benchmark
// (scripts/bench-ocsp.sh). It is a benchmark tool, not part of gmtrust.
//
//	ocspbench seed -data-dir DIR -n 100000 -out DIR
//	    issues N certificates in-process in an initialised instance
//	    (stopped), pre-signs their responses, and writes into -out: the
//	    request files the wrk Lua script replays (post.bin and nonce.bin,
//	    fixed-size DER records; get.txt, one URL path a line), one.der (a
//	    pre-signed response for the ceiling server), and what OpenSSL's
//	    responder needs: root.pem, issuing.pem, ocsp.pem, ocsp.key and
//	    index.txt.
//
//	ocspbench ceiling -listen ADDR -response FILE
//	    serves one fixed response to every request: the ceiling of what a
//	    Go net/http responder can do on the machine.
//
//	ocspbench profile -data-dir DIR -listen ADDR -cpuprofile FILE [-trace FILE] [-memprofile FILE] [-after 2s -for 10s]
//	    serves the instance wired exactly as `gmtrust serve` wires it and
//	    writes a CPU profile of the given window, to find what the
//	    responder's hot path costs under wrk.
//
//	ocspbench rate -url URL -dir DIR -mode post|get|nonce -record N -rate R [-conns 64 -duration 10s -warmup 1s]
//	    sends R requests per second on a fixed schedule (an open loop,
//	    unlike wrk) and prints the latency percentiles counted from each
//	    request's scheduled time: the tail at a given load.
//
// ocsp.key is the OCSP signer's private key exported in clear from the
// software keystore, only so that OpenSSL's responder can sign with the
// same key in the benchmark. gmtrust itself never exports keys; do not run
// this against an instance whose keys matter.
package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/gmtrust/gmtrust/ca"
	"github.com/gmtrust/gmtrust/internal/api"
	"github.com/gmtrust/gmtrust/internal/app"
	"github.com/gmtrust/gmtrust/internal/sigalg"
	"github.com/gmtrust/gmtrust/ocsp"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: ocspbench seed|ceiling|profile|rate [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "seed":
		err = seed(os.Args[2:])
	case "ceiling":
		err = ceiling(os.Args[2:])
	case "profile":
		err = profile(os.Args[2:])
	case "rate":
		err = rate(os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q (want seed, ceiling, profile or rate)", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ocspbench:", err)
		os.Exit(1)
	}
}

func seed(args []string) error {
	fs := flag.NewFlagSet("seed", flag.ExitOnError)
	dir := fs.String("data-dir", "", "initialised instance (not running)")
	n := fs.Int("n", 100_000, "certificates to issue")
	out := fs.String("out", "", "output directory")
	_ = fs.Parse(args)
	if *dir == "" || *out == "" || *n <= 0 {
		return errors.New("seed needs -data-dir, -out and a positive -n")
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	a, err := app.Open(ctx, *dir, app.Options{Logger: log})
	if err != nil {
		return err
	}
	defer a.Close()

	start := time.Now()
	serials, err := issue(ctx, a, *n)
	if err != nil {
		return err
	}
	fmt.Printf("issued %d certificates in %v\n", len(serials), time.Since(start).Round(time.Millisecond))

	start = time.Now()
	oc, err := a.NewOCSP(ctx, app.OCSPOptions{
		Responder: ocsp.Config{Workers: runtime.GOMAXPROCS(0)},
		Presign:   ocsp.PresignConfig{Rate: -1, BatchSize: 256},
	})
	if err != nil {
		return err
	}
	defer oc.Close()
	st, err := oc.Presigner.RunOnce(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("pre-signed %d responses in %v\n", st.Responses, time.Since(start).Round(time.Millisecond))

	issuingID := a.Authority.DefaultCA()
	issuing, _ := a.Authority.Issuer(issuingID)
	root, _ := a.Authority.Issuer(ca.RootID)
	signerRec, ok := oc.Responder.Signer(issuingID)
	if !ok {
		return errors.New("no OCSP signer")
	}
	if err := writeRequests(*out, issuing, serials); err != nil {
		return err
	}
	// A real pre-signed response, served as is by the ceiling server.
	probe, err := request(issuing, serials[0], nil)
	if err != nil {
		return err
	}
	ans := oc.Responder.Respond(ctx, probe)
	if ans.Status != ocsp.Successful {
		return fmt.Errorf("probe request answered %v", ans.Status)
	}
	if err := os.WriteFile(filepath.Join(*out, "one.der"), ans.DER, 0o644); err != nil {
		return err
	}
	return writeOpenSSL(ctx, a, *out, root, issuing, signerRec)
}

// issue issues n certificates from one CSR (the responder does not care
// about the subject key) with a few concurrent callers, as the API would.
func issue(ctx context.Context, a *app.App, n int) ([]*big.Int, error) {
	alg := "sm2"
	if a.Authority.CAs()[0].Algorithm != "sm2" {
		alg = "ecdsa-p256"
	}
	key, err := sigalg.GenerateKey(rand.Reader, alg)
	if err != nil {
		return nil, err
	}
	der, err := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{
		Subject: pkix.Name{CommonName: "ocsp bench", OrganizationalUnit: []string{"bench"}},
	}, key)
	if err != nil {
		return nil, err
	}
	csr := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	serials := make([]*big.Int, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for w := range errs {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				got, err := a.Authority.Issue(ctx, ca.IssueRequest{CSR: csr, Profile: "staff-sign", Department: "bench"})
				if err != nil {
					errs[w] = err
					return
				}
				serials[i], _ = new(big.Int).SetString(got.Certificate.Serial, 16)
			}
		})
	}
	wg.Wait()
	return serials, errors.Join(errs...)
}

// request builds a DER OCSPRequest for one certificate (SHA-1 CertID, as
// OpenSSL and most clients send), with a 16-byte nonce when nonce is set.
func request(issuer *smx509.Certificate, serial *big.Int, nonce []byte) ([]byte, error) {
	id, err := ocsp.NewCertID(ocsp.HashSHA1, issuer.RawSubject, issuer.RawSubjectPublicKeyInfo, serial)
	if err != nil {
		return nil, err
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // OCSPRequest
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // TBSRequest
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // requestList
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // Request
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // CertID
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddASN1ObjectIdentifier(ocsp.HashSHA1.OID())
							b.AddASN1NULL()
						})
						b.AddASN1OctetString(id.IssuerNameHash)
						b.AddASN1OctetString(id.IssuerKeyHash)
						b.AddASN1BigInt(id.SerialNumber)
					})
				})
			})
			if nonce != nil {
				b.AddASN1(cbasn1.Tag(2).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddASN1ObjectIdentifier([]int{1, 3, 6, 1, 5, 5, 7, 48, 1, 2})
							b.AddASN1(cbasn1.OCTET_STRING, func(b *cryptobyte.Builder) {
								b.AddASN1OctetString(nonce) // RFC 8954 form
							})
						})
					})
				})
			}
		})
	})
	return b.Bytes()
}

// writeRequests writes post.bin and nonce.bin (fixed-size records, which
// the Lua script slices without parsing), get.txt and records.env.
func writeRequests(out string, issuer *smx509.Certificate, serials []*big.Int) error {
	var post, nonce bytes.Buffer
	var get strings.Builder
	postLen, nonceLen := 0, 0
	nb := make([]byte, 16)
	for _, sn := range serials {
		p, err := request(issuer, sn, nil)
		if err != nil {
			return err
		}
		if _, err := rand.Read(nb); err != nil {
			return err
		}
		q, err := request(issuer, sn, nb)
		if err != nil {
			return err
		}
		if postLen == 0 {
			postLen, nonceLen = len(p), len(q)
		}
		if len(p) != postLen || len(q) != nonceLen {
			return fmt.Errorf("requests of unequal size (%d, %d): serial %x", len(p), len(q), sn)
		}
		post.Write(p)
		nonce.Write(q)
		// URL-escaped standard base64, as clients send it.
		get.WriteString("/ocsp/" + url.PathEscape(base64.StdEncoding.EncodeToString(p)) + "\n")
	}
	files := map[string][]byte{
		"post.bin":    post.Bytes(),
		"nonce.bin":   nonce.Bytes(),
		"get.txt":     []byte(get.String()),
		"records.env": fmt.Appendf(nil, "POST_RECORD=%d\nNONCE_RECORD=%d\nCOUNT=%d\n", postLen, nonceLen, len(serials)),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(out, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// writeOpenSSL writes the files OpenSSL's responder needs, including the
// benchmark-only export of the OCSP signer key.
func writeOpenSSL(ctx context.Context, a *app.App, out string, root, issuing *smx509.Certificate, rec ca.SignerRecord) error {
	signer, err := a.Keys.Signer(ctx, rec.KeyRef)
	if err != nil {
		return err
	}
	keyDER, err := exportKey(signer)
	if err != nil {
		return err
	}
	pemFile := func(name, typ string, der []byte, mode os.FileMode) error {
		return os.WriteFile(filepath.Join(out, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode)
	}
	if err := errors.Join(
		pemFile("root.pem", "CERTIFICATE", root.Raw, 0o644),
		pemFile("issuing.pem", "CERTIFICATE", issuing.Raw, 0o644),
		pemFile("ocsp.pem", "CERTIFICATE", rec.DER, 0o644),
		pemFile("ocsp.key", "PRIVATE KEY", keyDER, 0o600),
	); err != nil {
		return err
	}
	// index.txt in the format of `openssl ca`: status, expiry, revocation,
	// serial (upper-case hex, even length), file, subject.
	f, err := os.Create(filepath.Join(out, "index.txt"))
	if err != nil {
		return err
	}
	defer f.Close()
	w := io.Writer(f)
	cursor := ""
	for {
		certs, next, err := a.Authority.List(ctx, ca.Filter{CAID: a.Authority.DefaultCA(), Cursor: cursor, Limit: 500})
		if err != nil {
			return err
		}
		for _, c := range certs {
			serial := strings.ToUpper(c.Serial)
			if len(serial)%2 == 1 {
				serial = "0" + serial
			}
			status, revoked := "V", ""
			if c.Status != ca.StatusGood {
				status, revoked = "R", c.RevokedAt.UTC().Format("060102150405Z")
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\tunknown\t/CN=%s\n", status, c.NotAfter.UTC().Format("060102150405Z"), revoked, serial, c.Serial)
		}
		if next == "" {
			return f.Close()
		}
		cursor = next
	}
}

// exportKey returns the PKCS#8 DER of a software key.
func exportKey(s crypto.Signer) ([]byte, error) {
	der, err := smx509.MarshalPKCS8PrivateKey(s)
	if err != nil {
		return nil, fmt.Errorf("the OCSP signer key is not exportable (only the software keystore's are): %w", err)
	}
	return der, nil
}

func ceiling(args []string) error {
	fs := flag.NewFlagSet("ceiling", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "listen address")
	respFile := fs.String("response", "", "DER OCSP response to serve")
	_ = fs.Parse(args)
	resp, err := os.ReadFile(*respFile)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Addr: *listen,
		// The ceiling: what net/http itself costs for an OCSP-sized
		// exchange. The body is read (as any responder must) and one
		// fixed response written.
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/ocsp-response")
			_, _ = w.Write(resp)
		}),
		// The same server settings as `gmtrust serve`, so that the
		// comparison measures the responder, not the timeouts.
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	fmt.Printf("ceiling server on %s\n", *listen)
	return srv.ListenAndServe()
}

func profile(args []string) error {
	fs := flag.NewFlagSet("profile", flag.ExitOnError)
	dir := fs.String("data-dir", "", "initialised instance")
	listen := fs.String("listen", "127.0.0.1:0", "listen address")
	out := fs.String("cpuprofile", "cpu.pprof", "CPU profile to write")
	traceOut := fs.String("trace", "", "also write an execution trace of the window (go tool trace)")
	memOut := fs.String("memprofile", "", "also write allocation profiles at the start (FILE.base) and end (FILE) of the window: go tool pprof -diff_base FILE.base FILE")
	after := fs.Duration("after", 2*time.Second, "start profiling this long after serving")
	window := fs.Duration("for", 10*time.Second, "profile this long, then exit")
	_ = fs.Parse(args)
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	a, err := app.Open(ctx, *dir, app.Options{Logger: log})
	if err != nil {
		return err
	}
	defer a.Close()
	// The wiring of cmd/gmtrust/serve.go.
	srv := api.New(api.Deps{Authority: a.Authority, Auth: &app.TokenAuth{Store: a.Store, Now: a.Now}, Ready: a.ReadyChecks(), Logger: log, Metrics: a.Registry, Now: a.Now})
	opts, err := app.OCSPOptionsFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	oc, err := a.NewOCSP(ctx, opts)
	if err != nil {
		return err
	}
	defer oc.Close()
	oc.Mount(srv.Router())
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	hs := &http.Server{
		Handler:           oc.Handler.Mux(srv),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	go hs.Serve(ln)
	bg, cancel := context.WithCancel(ctx)
	defer cancel()
	go oc.Run(bg)
	fmt.Printf("serving on %s\n", ln.Addr())
	time.Sleep(*after)
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	if *traceOut != "" {
		tf, err := os.Create(*traceOut)
		if err != nil {
			return err
		}
		defer tf.Close()
		if err := trace.Start(tf); err != nil {
			return err
		}
		defer trace.Stop()
	}
	if *memOut != "" {
		if err := writeAllocs(*memOut + ".base"); err != nil {
			return err
		}
	}
	time.Sleep(*window)
	pprof.StopCPUProfile()
	if *memOut != "" {
		if err := writeAllocs(*memOut); err != nil {
			return err
		}
	}
	return hs.Close()
}

// writeAllocs writes the allocation profile so far (all allocations since
// start, sampled) to name.
func writeAllocs(name string) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
