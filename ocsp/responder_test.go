package ocsp_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/gmtrust/gmtrust/ca"
	"github.com/gmtrust/gmtrust/hsm"
	"github.com/gmtrust/gmtrust/internal/app"
	"github.com/gmtrust/gmtrust/internal/store"
	"github.com/gmtrust/gmtrust/internal/testutil"
	"github.com/gmtrust/gmtrust/ocsp"
)

// testClock is a settable clock shared by the Authority, the store and
// the responder of a test instance. It starts at the real time because
// OpenSSL checks response times against the real clock.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock { return &testClock{t: time.Now()} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// countingKeys counts the signatures made with the keys it hands out.
type countingKeys struct {
	keys ocsp.KeySource
	n    atomic.Int64
	down atomic.Bool // the key manager fails, as an HSM that went away
}

var errKeysDown = errors.New("test: key manager unavailable")

func (k *countingKeys) Signer(ctx context.Context, ref string) (crypto.Signer, error) {
	if k.down.Load() {
		return nil, errKeysDown
	}
	s, err := k.keys.Signer(ctx, ref)
	if err != nil {
		return nil, err
	}
	return countingSigner{s, &k.n}, nil
}

type countingSigner struct {
	crypto.Signer
	n *atomic.Int64
}

func (s countingSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	s.n.Add(1)
	return s.Signer.Sign(r, digest, opts)
}

func testEnv(k string) string {
	if k == "GMTRUST_KEY_PASSPHRASE" {
		return "ocsp test passphrase"
	}
	return ""
}

// initInstance makes a data directory (SQLite when dsn is empty).
func initInstance(t testing.TB, alg hsm.Algorithm, dsn string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	if _, err := app.Init(context.Background(), app.InitParams{
		Dir: dir, Name: "OCSP Test CA", Algorithm: alg, PublicURL: "http://127.0.0.1:8080", Database: dsn, Getenv: testEnv,
	}); err != nil {
		t.Fatalf("init: %v", err)
	}
	return dir
}

// env is one responder process: an opened instance and a responder wired
// to it the way app.NewOCSP does, with a counting key source.
type env struct {
	dir     string
	app     *app.App
	clock   *testClock
	keys    *countingKeys
	store   *store.OCSP
	resp    *ocsp.Responder
	handler *ocsp.Handler
	issuing *smx509.Certificate
	root    *smx509.Certificate
	keyAlg  string
}

type envConfig struct {
	cfg      ocsp.Config
	readOnly bool
	// poll is the store's revocation_events poll interval; negative
	// disables polling.
	poll time.Duration
}

func openEnv(t testing.TB, dir string, clk *testClock, ec envConfig) *env {
	t.Helper()
	ctx := context.Background()
	a, err := app.Open(ctx, dir, app.Options{Getenv: testEnv, Now: clk.Now})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	st, err := store.NewOCSP(ctx, a.Store, store.OCSPOptions{DSN: a.Config.DatabaseDSN(dir), PollInterval: ec.poll})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{dir: dir, app: a, clock: clk, store: st, keys: &countingKeys{keys: a.Keys}, keyAlg: "sm2"}
	if a.Authority.CAs()[0].Algorithm != "sm2" {
		e.keyAlg = "ecdsa-p256"
	}
	e.issuing, _ = a.Authority.Issuer(ca.IssuingID)
	e.root, _ = a.Authority.Issuer(ca.RootID)
	issuingRec, _ := a.Authority.CA(ca.IssuingID)
	d := ocsp.Deps{
		CAs: []ca.CARecord{issuingRec}, Store: st, Signers: a.Store, Keys: e.keys, Renewer: a.Authority, Locker: a.Store,
		Now: clk.Now, Metrics: prometheus.NewRegistry(),
	}
	if ec.readOnly {
		d.Keys, d.Renewer = nil, nil
	}
	e.resp, err = ocsp.New(ctx, ec.cfg, d)
	if err != nil {
		t.Fatalf("ocsp.New: %v", err)
	}
	if !ec.readOnly {
		a.Authority.AddListener(e.resp)
	}
	e.handler = ocsp.NewHandler(e.resp, "/ocsp")
	return e
}

func newEnv(t testing.TB, alg hsm.Algorithm, dsn string, ec envConfig) *env {
	t.Helper()
	return openEnv(t, initInstance(t, alg, dsn), newTestClock(), ec)
}

// issue issues a real certificate through the Authority.
func (e *env) issue(t testing.TB) *ca.Certificate {
	t.Helper()
	csr := testutil.NewCSR(t, testutil.NewKey(t, e.keyAlg), testutil.CSROptions{Subject: pkix.Name{CommonName: "OCSP test user"}})
	got, err := e.app.Authority.Issue(context.Background(), ca.IssueRequest{CSR: csr, Profile: "staff-sign", Department: "test"})
	if err != nil {
		t.Fatalf("issue: %v", err)
	}
	return got.Certificate
}

// insertFake records n certificates with random DER directly in the
// store: the responder reads only their serial, status and validity.
func (e *env) insertFake(t testing.TB, n int, notAfter time.Time) []string {
	t.Helper()
	serials := make([]string, n)
	for i := range serials {
		sn, err := ca.NewSerial(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der := make([]byte, 300)
		rand.Read(der)
		c := &ca.Certificate{
			CAID: ca.IssuingID, Serial: ca.SerialHex(sn), Profile: "staff-sign", Subject: "CN=fake", KeyAlgorithm: e.keyAlg,
			NotBefore: e.clock.Now().Add(-time.Hour), NotAfter: notAfter, DER: der,
		}
		if err := e.app.Store.InsertCertificate(context.Background(), c); err != nil {
			t.Fatal(err)
		}
		serials[i] = c.Serial
	}
	return serials
}

func (e *env) revoke(t testing.TB, serial string, reason int) {
	t.Helper()
	if _, err := e.app.Authority.Revoke(context.Background(), ca.RevokeRequest{Serial: serial, Reason: reason, By: "test"}); err != nil {
		t.Fatalf("revoke: %v", err)
	}
}

func (e *env) certID(t testing.TB, h ocsp.HashAlg, serial string) ocsp.CertID {
	t.Helper()
	sn, ok := new(big.Int).SetString(serial, 16)
	if !ok {
		t.Fatalf("bad serial %q", serial)
	}
	id, err := ocsp.NewCertID(h, e.issuing.RawSubject, e.issuing.RawSubjectPublicKeyInfo, sn)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// signerCert returns the certificate of the responder's current signer.
func (e *env) signerCert(t testing.TB) *smx509.Certificate {
	t.Helper()
	rec, ok := e.resp.Signer(ca.IssuingID)
	if !ok {
		t.Fatal("no signer")
	}
	c, err := smx509.ParseCertificate(rec.DER)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var oidNonce = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}

// reqOpts shape a test request.
type reqOpts struct {
	nonce []byte // wrapped in an OCTET STRING (RFC 8954)
	// absentParams writes the hash AlgorithmIdentifier without NULL.
	absentParams bool
}

// buildRequest encodes an OCSPRequest independently of the package.
func buildRequest(t testing.TB, ids []ocsp.CertID, o reqOpts) []byte {
	t.Helper()
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				for _, id := range ids {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
								b.AddASN1ObjectIdentifier(id.HashAlgorithm.OID())
								if !o.absentParams {
									b.AddASN1NULL()
								}
							})
							b.AddASN1OctetString(id.IssuerNameHash)
							b.AddASN1OctetString(id.IssuerKeyHash)
							b.AddASN1BigInt(id.SerialNumber)
						})
					})
				}
			})
			if o.nonce != nil {
				b.AddASN1(cbasn1.Tag(2).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddASN1ObjectIdentifier(oidNonce)
							b.AddASN1(cbasn1.OCTET_STRING, func(b *cryptobyte.Builder) { b.AddASN1OctetString(o.nonce) })
						})
					})
				})
			}
		})
	})
	return b.BytesOrPanic()
}

// mustVerify parses a successful response and checks its signature, the
// responder ID and the included certificate against the current signer.
func (e *env) mustVerify(t testing.TB, der []byte) *ocsp.Response {
	t.Helper()
	r, err := ocsp.ParseResponse(der)
	if err != nil {
		t.Fatalf("ParseResponse: %v", err)
	}
	if r.Status != ocsp.Successful {
		t.Fatalf("response status %v, want successful", r.Status)
	}
	sc := e.signerCert(t)
	if err := r.CheckSignatureFrom(sc.PublicKey); err != nil {
		t.Fatalf("signature: %v", err)
	}
	bits, err := ocsp.SubjectPublicKeyBits(sc.RawSubjectPublicKeyInfo)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.ResponderKeyHash, ocsp.HashSHA1.Sum(bits)) {
		t.Errorf("responder key hash %x is not the signer's", r.ResponderKeyHash)
	}
	if len(r.Certs) != 1 || !bytes.Equal(r.Certs[0], sc.Raw) {
		t.Errorf("certs do not hold exactly the signer certificate")
	}
	if err := sc.CheckSignatureFrom(e.issuing); err != nil {
		t.Errorf("signer certificate not issued by the issuing CA: %v", err)
	}
	return r
}

// post sends a request through the HTTP handler.
func (e *env) post(t testing.TB, der []byte) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/ocsp", bytes.NewReader(der))
	req.Header.Set("Content-Type", "application/ocsp-request")
	w := httptest.NewRecorder()
	e.handler.ServeHTTP(w, req)
	return w
}

func (e *env) status(t testing.TB, der []byte) ocsp.ResponseStatus {
	t.Helper()
	r, err := ocsp.ParseResponse(der)
	if err != nil {
		t.Fatalf("ParseResponse: %v", err)
	}
	return r.Status
}

// single checks a one-certificate response and returns its SingleResponse.
func (e *env) single(t testing.TB, der []byte) ocsp.SingleResponse {
	t.Helper()
	r := e.mustVerify(t, der)
	if len(r.Singles) != 1 {
		t.Fatalf("%d single responses, want 1", len(r.Singles))
	}
	return r.Singles[0]
}

func TestRespond(t *testing.T) {
	for _, alg := range []hsm.Algorithm{hsm.SM2, hsm.ECDSAP256} {
		t.Run(string(alg), func(t *testing.T) {
			e := newEnv(t, alg, "", envConfig{})
			ctx := context.Background()
			good := e.issue(t).Serial
			revoked := e.issue(t).Serial
			held := e.issue(t).Serial
			unspecified := e.issue(t).Serial
			e.revoke(t, revoked, ca.ReasonKeyCompromise)
			e.revoke(t, held, ca.ReasonCertificateHold)
			e.revoke(t, unspecified, ca.ReasonUnspecified)
			// Never issued by the CA: "unknown", never "good".
			unknownSerial := "7fffffffffffffffffffffffffffff01"
			foreign := e.certID(t, ocsp.HashSHA1, good)
			foreign.IssuerKeyHash = ocsp.HashSHA1.Sum([]byte("another CA key"))

			type want struct {
				status ocsp.Status
				reason int
			}
			tests := []struct {
				name  string
				ids   []ocsp.CertID
				opts  reqOpts
				resp  ocsp.ResponseStatus
				wants []want
			}{
				{"good SHA-1", []ocsp.CertID{e.certID(t, ocsp.HashSHA1, good)}, reqOpts{}, ocsp.Successful, []want{{ocsp.Good, -1}}},
				{"good SHA-256", []ocsp.CertID{e.certID(t, ocsp.HashSHA256, good)}, reqOpts{}, ocsp.Successful, []want{{ocsp.Good, -1}}},
				{"good SM3", []ocsp.CertID{e.certID(t, ocsp.HashSM3, good)}, reqOpts{}, ocsp.Successful, []want{{ocsp.Good, -1}}},
				{"good SHA-384 (not pre-signed)", []ocsp.CertID{e.certID(t, ocsp.HashSHA384, good)}, reqOpts{}, ocsp.Successful, []want{{ocsp.Good, -1}}},
				{"good SHA-512 (not pre-signed)", []ocsp.CertID{e.certID(t, ocsp.HashSHA512, good)}, reqOpts{}, ocsp.Successful, []want{{ocsp.Good, -1}}},
				{"parameters absent", []ocsp.CertID{e.certID(t, ocsp.HashSHA1, good)}, reqOpts{absentParams: true}, ocsp.Successful, []want{{ocsp.Good, -1}}},
				{"revoked keyCompromise", []ocsp.CertID{e.certID(t, ocsp.HashSHA1, revoked)}, reqOpts{}, ocsp.Successful, []want{{ocsp.Revoked, ca.ReasonKeyCompromise}}},
				{"hold", []ocsp.CertID{e.certID(t, ocsp.HashSM3, held)}, reqOpts{}, ocsp.Successful, []want{{ocsp.Revoked, ca.ReasonCertificateHold}}},
				{"revoked unspecified omits the reason", []ocsp.CertID{e.certID(t, ocsp.HashSHA256, unspecified)}, reqOpts{}, ocsp.Successful, []want{{ocsp.Revoked, -1}}},
				// The revocation stored re-signed responses; a nonce answer
				// takes its status from them and must agree.
				{"revoked unspecified with nonce", []ocsp.CertID{e.certID(t, ocsp.HashSHA256, unspecified)}, reqOpts{nonce: []byte("n")}, ocsp.Successful, []want{{ocsp.Revoked, -1}}},
				{"hold with nonce", []ocsp.CertID{e.certID(t, ocsp.HashSHA1, held)}, reqOpts{nonce: []byte("n")}, ocsp.Successful, []want{{ocsp.Revoked, ca.ReasonCertificateHold}}},
				{"unknown serial", []ocsp.CertID{e.certID(t, ocsp.HashSHA1, unknownSerial)}, reqOpts{}, ocsp.Successful, []want{{ocsp.Unknown, -1}}},
				{"unknown serial with nonce", []ocsp.CertID{e.certID(t, ocsp.HashSHA256, unknownSerial)}, reqOpts{nonce: []byte("0123456789abcdef")}, ocsp.Successful, []want{{ocsp.Unknown, -1}}},
				{"foreign issuer", []ocsp.CertID{foreign}, reqOpts{}, ocsp.Unauthorized, nil},
				{"foreign issuer with nonce", []ocsp.CertID{foreign}, reqOpts{nonce: []byte("nonce")}, ocsp.Unauthorized, nil},
				{"nonce echoed", []ocsp.CertID{e.certID(t, ocsp.HashSHA1, revoked)}, reqOpts{nonce: []byte("a nonce of 16 by")}, ocsp.Successful, []want{{ocsp.Revoked, ca.ReasonKeyCompromise}}},
				{"several CertIDs", []ocsp.CertID{
					e.certID(t, ocsp.HashSHA1, good), e.certID(t, ocsp.HashSM3, revoked), e.certID(t, ocsp.HashSHA256, unknownSerial), foreign, e.certID(t, ocsp.HashSHA1, held),
				}, reqOpts{}, ocsp.Successful, []want{
					{ocsp.Good, -1}, {ocsp.Revoked, ca.ReasonKeyCompromise}, {ocsp.Unknown, -1}, {ocsp.Unknown, -1}, {ocsp.Revoked, ca.ReasonCertificateHold},
				}},
				{"several CertIDs with nonce", []ocsp.CertID{e.certID(t, ocsp.HashSHA1, good), e.certID(t, ocsp.HashSHA1, revoked)}, reqOpts{nonce: []byte{1, 2, 3}}, ocsp.Successful, []want{
					{ocsp.Good, -1}, {ocsp.Revoked, ca.ReasonKeyCompromise},
				}},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					// Twice: the second answer may come from the cache.
					for round := range 2 {
						der := buildRequest(t, tt.ids, tt.opts)
						ans := e.resp.Respond(ctx, der)
						if ans.Status != tt.resp {
							t.Fatalf("round %d: response status %v, want %v", round, ans.Status, tt.resp)
						}
						if tt.resp != ocsp.Successful {
							if !bytes.Equal(ans.DER, ocsp.ErrorResponse(tt.resp)) {
								t.Fatalf("error response %x", ans.DER)
							}
							continue
						}
						r := e.mustVerify(t, ans.DER)
						if len(r.Singles) != len(tt.wants) {
							t.Fatalf("%d singles, want %d", len(r.Singles), len(tt.wants))
						}
						for i, w := range tt.wants {
							s := r.Singles[i]
							if s.Status != w.status || s.RevocationReason != w.reason {
								t.Errorf("single %d: %v reason %d, want %v reason %d", i, s.Status, s.RevocationReason, w.status, w.reason)
							}
							id := tt.ids[i]
							if s.CertID.HashAlgorithm != id.HashAlgorithm || s.CertID.SerialNumber.Cmp(id.SerialNumber) != 0 ||
								!bytes.Equal(s.CertID.IssuerNameHash, id.IssuerNameHash) || !bytes.Equal(s.CertID.IssuerKeyHash, id.IssuerKeyHash) {
								t.Errorf("single %d answers another CertID", i)
							}
							// The CertID must come back spelled as sent.
							hasNull := bytes.HasSuffix(s.CertID.RawHashAlgorithm, []byte{5, 0})
							if hasNull == tt.opts.absentParams {
								t.Errorf("single %d: hash AlgorithmIdentifier %x not echoed as sent", i, s.CertID.RawHashAlgorithm)
							}
							if s.Status == ocsp.Revoked && s.RevokedAt.IsZero() {
								t.Errorf("single %d: revoked without a time", i)
							}
							if !s.NextUpdate.After(s.ThisUpdate) {
								t.Errorf("single %d: nextUpdate %v not after thisUpdate %v", i, s.NextUpdate, s.ThisUpdate)
							}
						}
						var wantNonce []byte
						if tt.opts.nonce != nil {
							wantNonce = append([]byte{4, byte(len(tt.opts.nonce))}, tt.opts.nonce...)
						}
						if !bytes.Equal(r.Nonce, wantNonce) {
							t.Errorf("nonce %x, want %x", r.Nonce, wantNonce)
						}
					}
				})
			}

			t.Run("garbage", func(t *testing.T) {
				for _, der := range [][]byte{nil, []byte("hello"), {0x30, 0x03, 0x30, 0x01, 0x00}, bytes.Repeat([]byte{0x30, 0x82}, 100)} {
					if ans := e.resp.Respond(ctx, der); ans.Status != ocsp.MalformedRequest || !bytes.Equal(ans.DER, ocsp.ErrorResponse(ocsp.MalformedRequest)) {
						t.Errorf("Respond(%x) = %v", der, ans.Status)
					}
				}
			})
			t.Run("unknown hash algorithm", func(t *testing.T) {
				// A CertID hashed with MD5 parses (HashUnknown) but cannot
				// name a CA we serve.
				id := e.certID(t, ocsp.HashSHA1, good)
				var b cryptobyte.Builder
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
								b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
									b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
										b.AddASN1ObjectIdentifier(asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 5})
										b.AddASN1NULL()
									})
									b.AddASN1OctetString(make([]byte, 16))
									b.AddASN1OctetString(make([]byte, 16))
									b.AddASN1BigInt(id.SerialNumber)
								})
							})
						})
					})
				})
				if ans := e.resp.Respond(ctx, b.BytesOrPanic()); ans.Status != ocsp.Unauthorized {
					t.Errorf("status %v, want unauthorized", ans.Status)
				}
			})
		})
	}
}

// TestPresignedServedAsIs checks the hot path: a request without nonce
// for a pre-signed certificate gets the stored response byte for byte and
// costs no signature.
func TestPresignedServedAsIs(t *testing.T) {
	e := newEnv(t, hsm.SM2, "", envConfig{})
	ctx := context.Background()
	serial := e.issue(t).Serial
	p := ocsp.NewPresigner(e.resp, e.store, e.app.Store, ocsp.PresignConfig{Rate: -1})
	if _, err := p.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	for _, h := range ocsp.DefaultHashes() {
		stored, err := e.store.Response(ctx, ca.IssuingID, serial, h)
		if err != nil {
			t.Fatalf("%v: %v", h, err)
		}
		before := e.keys.n.Load()
		for range 3 {
			ans := e.resp.Respond(ctx, buildRequest(t, []ocsp.CertID{e.certID(t, h, serial)}, reqOpts{}))
			if !bytes.Equal(ans.DER, stored.DER) {
				t.Fatalf("%v: answer is not the stored response", h)
			}
		}
		if n := e.keys.n.Load() - before; n != 0 {
			t.Errorf("%v: %d signatures on the pre-signed path", h, n)
		}
		if s := e.single(t, stored.DER); s.Status != ocsp.Good {
			t.Errorf("%v: stored %v", h, s.Status)
		}
	}
	// A nonce request is signed live.
	before := e.keys.n.Load()
	e.resp.Respond(ctx, buildRequest(t, []ocsp.CertID{e.certID(t, ocsp.HashSHA1, serial)}, reqOpts{nonce: []byte("n")}))
	if n := e.keys.n.Load() - before; n != 1 {
		t.Errorf("nonce request made %d signatures, want 1", n)
	}
}

// TestRevocationVisibleAtOnce: once Revoke has returned, this process
// never answers "good" again, whatever it had cached, for every hash; and
// an unhold makes it good again at once.
func TestRevocationVisibleAtOnce(t *testing.T) {
	e := newEnv(t, hsm.SM2, "", envConfig{cfg: ocsp.Config{CacheMaxAge: time.Hour}})
	ctx := context.Background()
	serial := e.issue(t).Serial
	p := ocsp.NewPresigner(e.resp, e.store, e.app.Store, ocsp.PresignConfig{Rate: -1})
	if _, err := p.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	hashes := []ocsp.HashAlg{ocsp.HashSHA1, ocsp.HashSHA256, ocsp.HashSM3, ocsp.HashSHA512}
	check := func(want ocsp.Status, reason int) {
		t.Helper()
		for _, h := range hashes {
			s := e.single(t, e.resp.Respond(ctx, buildRequest(t, []ocsp.CertID{e.certID(t, h, serial)}, reqOpts{})).DER)
			if s.Status != want || s.RevocationReason != reason {
				t.Errorf("%v: %v reason %d, want %v reason %d", h, s.Status, s.RevocationReason, want, reason)
			}
		}
	}
	check(ocsp.Good, -1) // fills the cache
	if e.resp.CacheLen() < len(hashes) {
		t.Fatalf("cache holds %d entries after the first answers", e.resp.CacheLen())
	}
	e.revoke(t, serial, ca.ReasonCertificateHold)
	check(ocsp.Revoked, ca.ReasonCertificateHold)
	// The store holds the re-signed responses too.
	for _, h := range ocsp.DefaultHashes() {
		sr, err := e.store.Response(ctx, ca.IssuingID, serial, h)
		if err != nil || sr.Status != ca.StatusHold {
			t.Fatalf("%v stored after hold: %+v, %v", h, sr, err)
		}
	}
	if _, err := e.app.Authority.Unhold(ctx, serial, "test"); err != nil {
		t.Fatal(err)
	}
	check(ocsp.Good, -1)
	e.revoke(t, serial, ca.ReasonKeyCompromise)
	check(ocsp.Revoked, ca.ReasonKeyCompromise)
}

// TestStaleStoredResponseNeverServed simulates a process that died after
// recording a revocation and before re-signing: the stored "good" no
// longer matches the certificate and must not be served; the pre-signer's
// maintenance finds it and re-signs it.
func TestStaleStoredResponseNeverServed(t *testing.T) {
	e := newEnv(t, hsm.ECDSAP256, "", envConfig{})
	ctx := context.Background()
	serial := e.issue(t).Serial
	p := ocsp.NewPresigner(e.resp, e.store, e.app.Store, ocsp.PresignConfig{Rate: -1})
	if _, err := p.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	// Revoke in the store only: no listener runs.
	if _, err := e.app.Store.Revoke(ctx, ca.Revocation{CAID: ca.IssuingID, Serial: serial, Reason: ca.ReasonSuperseded, At: e.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Response(ctx, ca.IssuingID, serial, ocsp.HashSHA1); !errors.Is(err, ca.ErrNotFound) {
		t.Fatalf("stale stored response still readable: %v", err)
	}
	s := e.single(t, e.resp.Respond(ctx, buildRequest(t, []ocsp.CertID{e.certID(t, ocsp.HashSHA1, serial)}, reqOpts{})).DER)
	if s.Status != ocsp.Revoked || s.RevocationReason != ca.ReasonSuperseded {
		t.Fatalf("answered %v reason %d", s.Status, s.RevocationReason)
	}
	e.clock.Advance(ocsp.DefaultMaintenance)
	st, err := p.RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Reconciled != len(ocsp.DefaultHashes()) || st.Due != 1 {
		t.Errorf("maintenance round %+v, want %d reconciled and 1 due", st, len(ocsp.DefaultHashes()))
	}
	sr, err := e.store.Response(ctx, ca.IssuingID, serial, ocsp.HashSHA1)
	if err != nil || sr.Status != ca.StatusRevoked {
		t.Fatalf("after maintenance: %+v, %v", sr, err)
	}
}

// responderOver builds a second responder for the issuing CA over st,
// with its own configuration and no metrics registry.
func (e *env) responderOver(t *testing.T, st ocsp.ResponseStore, cfg ocsp.Config) *ocsp.Responder {
	t.Helper()
	issuingRec, _ := e.app.Authority.CA(ca.IssuingID)
	r, err := ocsp.New(context.Background(), cfg, ocsp.Deps{
		CAs: []ca.CARecord{issuingRec}, Store: st, Signers: e.app.Store, Keys: e.app.Keys, Now: e.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// failingStore makes the store fail on demand and counts status reads.
type failingStore struct {
	ocsp.ResponseStore
	fail atomic.Bool
	// statusReads counts CertificateStatus calls, batchReads
	// CertificateStatuses calls, responseReads Response calls.
	statusReads, batchReads, responseReads atomic.Int64
}

var errDown = errors.New("database down")

func (f *failingStore) CertificateStatus(ctx context.Context, caID, serial string) (ocsp.CertStatus, error) {
	f.statusReads.Add(1)
	if f.fail.Load() {
		return ocsp.CertStatus{}, errDown
	}
	return f.ResponseStore.CertificateStatus(ctx, caID, serial)
}

func (f *failingStore) CertificateStatuses(ctx context.Context, caID string, serials []string) (map[string]ocsp.CertStatus, error) {
	f.batchReads.Add(1)
	if f.fail.Load() {
		return nil, errDown
	}
	return f.ResponseStore.CertificateStatuses(ctx, caID, serials)
}

func (f *failingStore) Response(ctx context.Context, caID, serial string, h ocsp.HashAlg) (*ocsp.StoredResponse, error) {
	f.responseReads.Add(1)
	if f.fail.Load() {
		return nil, errDown
	}
	return f.ResponseStore.Response(ctx, caID, serial, h)
}

// TestStoreDown: with the store unreachable, what is cached is still
// served (even past its cache age, within its nextUpdate) and the rest is
// answered tryLater.
func TestStoreDown(t *testing.T) {
	e := newEnv(t, hsm.SM2, "", envConfig{})
	ctx := context.Background()
	cached, uncached := e.issue(t).Serial, e.issue(t).Serial
	fs := &failingStore{ResponseStore: e.store}
	r := e.responderOver(t, fs, ocsp.Config{CacheMaxAge: time.Minute})
	req := func(serial string, nonce []byte) []byte {
		return buildRequest(t, []ocsp.CertID{e.certID(t, ocsp.HashSHA1, serial)}, reqOpts{nonce: nonce})
	}
	first := r.Respond(ctx, req(cached, nil))
	if first.Status != ocsp.Successful {
		t.Fatal(first.Status)
	}
	fs.fail.Store(true)
	e.clock.Advance(2 * time.Minute) // past the cache age
	tests := []struct {
		name string
		der  []byte
		want ocsp.ResponseStatus
	}{
		{"cached", req(cached, nil), ocsp.Successful},
		{"cached, nonce", req(cached, []byte("n")), ocsp.Successful},
		{"not cached", req(uncached, nil), ocsp.TryLater},
		{"not cached, nonce", req(uncached, []byte("n")), ocsp.TryLater},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := r.Respond(ctx, tt.der).Status; got != tt.want {
				t.Errorf("status %v, want %v", got, tt.want)
			}
		})
	}
	fs.fail.Store(false)
	if got := r.Respond(ctx, req(uncached, nil)).Status; got != ocsp.Successful {
		t.Errorf("after recovery: %v", got)
	}
}

// TestReadOnly: a responder without keys serves stored responses, answers
// a nonce request with the stored response (no nonce), and cannot answer
// what would need a signature.
func TestReadOnly(t *testing.T) {
	e := newEnv(t, hsm.ECDSAP256, "", envConfig{})
	ctx := context.Background()
	serial := e.issue(t).Serial
	if _, err := ocsp.NewPresigner(e.resp, e.store, e.app.Store, ocsp.PresignConfig{Rate: -1}).RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	ro := openEnv(t, e.dir, e.clock, envConfig{readOnly: true})
	if !ro.resp.ReadOnly() {
		t.Fatal("not read-only")
	}
	stored, err := e.store.Response(ctx, ca.IssuingID, serial, ocsp.HashSHA256)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		der     []byte
		want    ocsp.ResponseStatus
		storedR bool
	}{
		{"pre-signed", buildRequest(t, []ocsp.CertID{e.certID(t, ocsp.HashSHA256, serial)}, reqOpts{}), ocsp.Successful, true},
		{"nonce gets the pre-signed one", buildRequest(t, []ocsp.CertID{e.certID(t, ocsp.HashSHA256, serial)}, reqOpts{nonce: []byte("n")}), ocsp.Successful, true},
		{"not pre-signed hash", buildRequest(t, []ocsp.CertID{e.certID(t, ocsp.HashSHA512, serial)}, reqOpts{}), ocsp.Unauthorized, false},
		{"unknown serial", buildRequest(t, []ocsp.CertID{e.certID(t, ocsp.HashSHA1, "7f01")}, reqOpts{}), ocsp.Unauthorized, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ans := ro.resp.Respond(ctx, tt.der)
			if ans.Status != tt.want {
				t.Fatalf("status %v, want %v", ans.Status, tt.want)
			}
			if tt.storedR && !bytes.Equal(ans.DER, stored.DER) {
				t.Error("not the stored response")
			}
		})
	}
	if _, err := ocsp.NewPresigner(ro.resp, ro.store, ro.app.Store, ocsp.PresignConfig{}).RunOnce(ctx); !errors.Is(err, ocsp.ErrReadOnly) {
		t.Errorf("read-only pre-signer: %v", err)
	}
}

// TestRevocationAcrossProcesses: two responder processes share one
// PostgreSQL database; after a revocation through the first, the second
// one, which had "good" cached for an hour, answers revoked once the
// NOTIFY arrives. Polling of revocation_events is off, so only the NOTIFY
// can make this pass.
func TestRevocationAcrossProcesses(t *testing.T) {
	dsn := testutil.PostgresDSN(t)
	dir := initInstance(t, hsm.SM2, dsn)
	clk := newTestClock()
	cfg := envConfig{cfg: ocsp.Config{CacheMaxAge: time.Hour}, poll: -1}
	a, b := openEnv(t, dir, clk, cfg), openEnv(t, dir, clk, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	resets := make(chan struct{}, 16)
	wg.Go(func() {
		if err := b.store.ListenInvalidations(ctx, b.resp.Evict, func() {
			b.resp.FlushCache()
			select {
			case resets <- struct{}{}:
			default:
			}
		}, b.resp.InvalidationsApplied); err != nil {
			t.Error(err)
		}
	})
	// The listener resets on connecting and again once its LISTEN is
	// active: wait for both.
	for range 2 {
		select {
		case <-resets:
		case <-time.After(20 * time.Second):
			t.Fatal("listener did not connect")
		}
	}
	serial := a.issue(t).Serial
	id := a.certID(t, ocsp.HashSHA1, serial)
	req := buildRequest(t, []ocsp.CertID{id}, reqOpts{})
	if s := b.single(t, b.resp.Respond(ctx, req).DER); s.Status != ocsp.Good {
		t.Fatalf("before: %v", s.Status)
	}
	a.revoke(t, serial, ca.ReasonKeyCompromise)
	// a answers revoked at once; b after the notice, which takes
	// milliseconds: poll with a generous deadline.
	if s := a.single(t, a.resp.Respond(ctx, req).DER); s.Status != ocsp.Revoked {
		t.Fatalf("revoking process answers %v", s.Status)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := b.single(t, b.resp.Respond(ctx, req).DER)
		if s.Status == ocsp.Revoked && s.RevocationReason == ca.ReasonKeyCompromise {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("second process still answers %v after 20 s", s.Status)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRevocationPolled: a revocation made by a process without a
// responder (the CLI) reaches a serving process through the
// revocation_events poll, on SQLite too.
func TestRevocationPolled(t *testing.T) {
	dir := initInstance(t, hsm.ECDSAP256, "")
	clk := newTestClock()
	serving := openEnv(t, dir, clk, envConfig{cfg: ocsp.Config{CacheMaxAge: time.Hour}, poll: 50 * time.Millisecond})
	cli, err := app.Open(context.Background(), dir, app.Options{Getenv: testEnv, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		_ = serving.store.ListenInvalidations(ctx, serving.resp.Evict, serving.resp.FlushCache, serving.resp.InvalidationsApplied)
	})
	serial := serving.issue(t).Serial
	req := buildRequest(t, []ocsp.CertID{serving.certID(t, ocsp.HashSHA1, serial)}, reqOpts{})
	if s := serving.single(t, serving.resp.Respond(ctx, req).DER); s.Status != ocsp.Good {
		t.Fatalf("before: %v", s.Status)
	}
	time.Sleep(200 * time.Millisecond) // let the poller read its starting mark
	if _, err := cli.Authority.Revoke(ctx, ca.RevokeRequest{Serial: serial, Reason: ca.ReasonAffiliationChanged}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := serving.single(t, serving.resp.Respond(ctx, req).DER)
		if s.Status == ocsp.Revoked {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %v after 20 s", s.Status)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSignerRenewal: with an injected clock, the OCSP signer is renewed
// once less than a third of its validity remains, only by one of two
// processes sharing the database; both switch to the new signer, and
// responses signed by the old one stay as they are.
func TestSignerRenewal(t *testing.T) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			dsn := ""
			if db == "postgres" {
				dsn = testutil.PostgresDSN(t)
			}
			dir := initInstance(t, hsm.SM2, dsn)
			clk := newTestClock()
			a, b := openEnv(t, dir, clk, envConfig{}), openEnv(t, dir, clk, envConfig{})
			ctx := context.Background()
			old, _ := a.resp.Signer(ca.IssuingID)
			validity := old.NotAfter.Sub(old.NotBefore)
			serial := a.issue(t).Serial
			oldResp := a.resp.Respond(ctx, buildRequest(t, []ocsp.CertID{a.certID(t, ocsp.HashSHA1, serial)}, reqOpts{nonce: []byte("x")}))

			// Early in its life nothing happens.
			for _, e := range []*env{a, b} {
				if renewed, err := e.resp.RenewSigners(ctx); err != nil || renewed {
					t.Fatalf("fresh signer renewed=%v err=%v", renewed, err)
				}
			}
			// Just past two thirds (and within 48 h for the 7-day default).
			clk.Advance(old.NotAfter.Sub(clk.Now()) - validity/3 + time.Minute)
			var wg sync.WaitGroup
			var renewals atomic.Int32
			for _, e := range []*env{a, b} {
				renew := func() {
					renewed, err := e.resp.RenewSigners(ctx)
					if err != nil {
						t.Error(err)
					}
					if renewed {
						renewals.Add(1)
					}
				}
				// On PostgreSQL the two race for the advisory lock. SQLite
				// serves one process (its TryLock is per process), so there
				// the second one comes after the first.
				if db == "postgres" {
					wg.Go(renew)
				} else {
					renew()
				}
			}
			wg.Wait()
			if n := renewals.Load(); n != 1 {
				t.Fatalf("%d renewals, want 1", n)
			}
			// The process that did not renew picks the new signer up on its
			// next check.
			for _, e := range []*env{a, b} {
				if _, err := e.resp.RenewSigners(ctx); err != nil {
					t.Fatal(err)
				}
			}
			recs, err := a.app.Store.Signers(ctx, ca.PurposeOCSP)
			if err != nil || len(recs) != 2 {
				t.Fatalf("signers %d, %v", len(recs), err)
			}
			for _, e := range []*env{a, b} {
				cur, _ := e.resp.Signer(ca.IssuingID)
				if cur.ID == old.ID || cur.ID != recs[0].ID {
					t.Fatalf("still using %s", cur.ID)
				}
				if got := cur.NotAfter.Sub(clk.Now()); got < validity-2*time.Minute {
					t.Errorf("new signer valid for %v only", got)
				}
				// New answers carry the new signer; mustVerify checks the
				// signature, responder ID and certs against it.
				e.mustVerify(t, e.resp.Respond(ctx, buildRequest(t, []ocsp.CertID{e.certID(t, ocsp.HashSHA1, serial)}, reqOpts{nonce: []byte("y")})).DER)
			}
			// The response signed by the old signer still verifies with it.
			r, err := ocsp.ParseResponse(oldResp.DER)
			if err != nil {
				t.Fatal(err)
			}
			oldCert, _ := smx509.ParseCertificate(old.DER)
			if err := r.CheckSignatureFrom(oldCert.PublicKey); err != nil {
				t.Errorf("old response: %v", err)
			}
			if r.Singles[0].NextUpdate.After(old.NotAfter) {
				t.Errorf("old response nextUpdate %v after its signer expires %v", r.Singles[0].NextUpdate, old.NotAfter)
			}
			// Nothing more to do until the new one ages.
			if renewed, err := a.resp.RenewSigners(ctx); err != nil || renewed {
				t.Errorf("renewed again: %v %v", renewed, err)
			}
		})
	}
}

// TestOptionsFromEnv covers the GMTRUST_OCSP_* parsing.
func TestOptionsFromEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		check   func(app.OCSPOptions) bool
		wantErr string
	}{
		{"defaults", nil, func(o app.OCSPOptions) bool { return len(o.Responder.Hashes) == 0 && !o.NoPresign }, ""},
		{"hashes", map[string]string{"GMTRUST_OCSP_HASHES": "SHA-1, sm3"}, func(o app.OCSPOptions) bool {
			return len(o.Responder.Hashes) == 2 && o.Responder.Hashes[0] == ocsp.HashSHA1 && o.Responder.Hashes[1] == ocsp.HashSM3
		}, ""},
		{"bad hash", map[string]string{"GMTRUST_OCSP_HASHES": "md5"}, nil, "GMTRUST_OCSP_HASHES"},
		{"durations", map[string]string{"GMTRUST_OCSP_VALIDITY": "12h", "GMTRUST_OCSP_CACHE_MAX_AGE": "5s", "GMTRUST_OCSP_VERIFY_MAX_AGE": "3m"}, func(o app.OCSPOptions) bool {
			return o.Responder.Validity == 12*time.Hour && o.Responder.CacheMaxAge == 5*time.Second && o.Responder.VerifyMaxAge == 3*time.Minute
		}, ""},
		{"bad duration", map[string]string{"GMTRUST_OCSP_HTTP_MAX_AGE": "soon"}, nil, "GMTRUST_OCSP_HTTP_MAX_AGE"},
		{"presign off", map[string]string{"GMTRUST_OCSP_PRESIGN": "off", "GMTRUST_OCSP_PRESIGN_RATE": "-1"}, func(o app.OCSPOptions) bool {
			return o.NoPresign && o.Presign.Rate == -1
		}, ""},
		{"bad cache size", map[string]string{"GMTRUST_OCSP_CACHE_ENTRIES": "-3"}, nil, "GMTRUST_OCSP_CACHE_ENTRIES"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := app.OCSPOptionsFromEnv(func(k string) string { return tt.env[k] })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one mentioning %s", err, tt.wantErr)
				}
				return
			}
			if err != nil || !tt.check(o) {
				t.Fatalf("%+v, %v", o, err)
			}
		})
	}
}

// TestNextUpdateCappedBySigner: a response never outlives the certificate
// of the signer that signed it.
func TestNextUpdateCappedBySigner(t *testing.T) {
	e := newEnv(t, hsm.ECDSAP256, "", envConfig{})
	ctx := context.Background()
	serial := e.issue(t).Serial
	rec, _ := e.resp.Signer(ca.IssuingID)
	e.clock.Advance(rec.NotAfter.Sub(e.clock.Now()) - 10*time.Hour)
	s := e.single(t, e.resp.Respond(ctx, buildRequest(t, []ocsp.CertID{e.certID(t, ocsp.HashSHA1, serial)}, reqOpts{nonce: []byte("n")})).DER)
	if !s.NextUpdate.Equal(rec.NotAfter) {
		t.Errorf("nextUpdate %v, want the signer's notAfter %v", s.NextUpdate, rec.NotAfter)
	}
	if got := s.NextUpdate.Sub(s.ThisUpdate); got > 10*time.Hour {
		t.Errorf("validity %v", got)
	}
}

// TestCacheRevalidation: an entry past its cache age is kept when the
// store confirms its certificate's status (no reload, no signature), is
// replaced when the status changed behind its back (a revocation recorded
// by a process that did not tell this one), and is reloaded after half
// its validity, so the response the pre-signer re-signed is served.
func TestCacheRevalidation(t *testing.T) {
	e := newEnv(t, hsm.SM2, "", envConfig{cfg: ocsp.Config{CacheMaxAge: time.Minute}})
	ctx := context.Background()
	kept, changed := e.issue(t).Serial, e.issue(t).Serial
	p := ocsp.NewPresigner(e.resp, e.store, e.app.Store, ocsp.PresignConfig{Rate: -1, ScanRate: -1})
	if _, err := p.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	req := func(serial string) []byte {
		return buildRequest(t, []ocsp.CertID{e.certID(t, ocsp.HashSHA1, serial)}, reqOpts{})
	}
	first := e.resp.Respond(ctx, req(kept)).DER
	e.resp.Respond(ctx, req(changed))
	if _, err := e.app.Store.Revoke(ctx, ca.Revocation{CAID: ca.IssuingID, Serial: changed, Reason: ca.ReasonKeyCompromise, At: e.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Minute) // past the cache age
	before := e.keys.n.Load()
	if got := e.resp.Respond(ctx, req(kept)).DER; !bytes.Equal(got, first) {
		t.Error("a revalidated entry changed")
	}
	if n := e.keys.n.Load() - before; n != 0 {
		t.Errorf("revalidation signed %d times", n)
	}
	if s := e.single(t, e.resp.Respond(ctx, req(changed)).DER); s.Status != ocsp.Revoked {
		t.Errorf("status changed behind the cache: still %v after the cache age", s.Status)
	}
	// Past half the validity the pre-signer has re-signed; the cache
	// reloads rather than revalidates.
	e.clock.Advance(12*time.Hour + time.Minute)
	if _, err := p.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	later := e.resp.Respond(ctx, req(kept)).DER
	if bytes.Equal(later, first) {
		t.Fatal("still serving the first response after half its validity")
	}
	stored, err := e.store.Response(ctx, ca.IssuingID, kept, ocsp.HashSHA1)
	if err != nil || !bytes.Equal(later, stored.DER) {
		t.Fatalf("not the re-signed stored response: %v", err)
	}
}

// TestReady: /readyz's OCSP check passes with a valid signer whose key
// loads, and fails when the key manager fails or the signer has expired.
func TestReady(t *testing.T) {
	e := newEnv(t, hsm.SM2, "", envConfig{})
	ctx := context.Background()
	if err := e.resp.Ready(ctx); err != nil {
		t.Fatalf("fresh responder not ready: %v", err)
	}
	e.keys.down.Store(true)
	if err := e.resp.Ready(ctx); !errors.Is(err, errKeysDown) {
		t.Fatalf("key manager down: Ready = %v, want %v", err, errKeysDown)
	}
	e.keys.down.Store(false)
	if err := e.resp.Ready(ctx); err != nil {
		t.Fatalf("key manager back: %v", err)
	}
	rec, ok := e.resp.Signer(ca.IssuingID)
	if !ok {
		t.Fatal("no signer")
	}
	e.clock.Advance(rec.NotAfter.Sub(e.clock.Now()) + time.Second)
	if err := e.resp.Ready(ctx); err == nil || !strings.Contains(err.Error(), "not now") {
		t.Fatalf("expired signer: Ready = %v", err)
	}
}

// startRefresher runs r's background refresher until the test ends.
func startRefresher(t *testing.T, r *ocsp.Responder) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.RunRefresher(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// eventually calls cond until it holds, failing the test if it does not
// within a generous bound (the refresher works in the background).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("%s: not within 10 s", what)
}

// TestCacheRefresh: with the refresher running, an entry hit in the last
// quarter of its cache age is confirmed in the background, so it is still
// served without a read on the request path after its first cache age
// has passed; an entry whose status changed behind the responder's back
// is evicted, and the next request answers the new status.
func TestCacheRefresh(t *testing.T) {
	e := newEnv(t, hsm.SM2, "", envConfig{})
	ctx := context.Background()
	kept, changed := e.issue(t).Serial, e.issue(t).Serial
	if _, err := ocsp.NewPresigner(e.resp, e.store, e.app.Store, ocsp.PresignConfig{Rate: -1, ScanRate: -1}).RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	fs := &failingStore{ResponseStore: e.store}
	r := e.responderOver(t, fs, ocsp.Config{CacheMaxAge: time.Minute})
	startRefresher(t, r)
	req := func(serial string) []byte {
		return buildRequest(t, []ocsp.CertID{e.certID(t, ocsp.HashSHA1, serial)}, reqOpts{})
	}
	first := r.Respond(ctx, req(kept)).DER
	r.Respond(ctx, req(changed))
	// Recorded without telling this responder.
	if _, err := e.app.Store.Revoke(ctx, ca.Revocation{CAID: ca.IssuingID, Serial: changed, Reason: ca.ReasonKeyCompromise, At: e.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	// Entries expire 45-60 s after they were cached and are due for
	// renewal 15 s before: at 45 s both are due and neither expired.
	e.clock.Advance(45 * time.Second)
	eventually(t, "revocation found by the refresher", func() bool {
		if !bytes.Equal(r.Respond(ctx, req(kept)).DER, first) {
			t.Fatal("kept entry changed")
		}
		return e.single(t, r.Respond(ctx, req(changed)).DER).Status == ocsp.Revoked
	})
	if fs.batchReads.Load() == 0 {
		t.Fatal("no batched status read")
	}
	// The refresher confirms queued entries in order: kept was renewed
	// at 45 s, so at 61 s, past its first cache age, it is still a hit.
	e.clock.Advance(16 * time.Second)
	before := fs.statusReads.Load()
	if got := r.Respond(ctx, req(kept)).DER; !bytes.Equal(got, first) {
		t.Error("renewed entry changed")
	}
	if n := fs.statusReads.Load() - before; n != 0 {
		t.Errorf("renewed entry read its status on the request path (%d reads)", n)
	}
	// Without a hit in the renewal window an entry expires as before.
	e.clock.Advance(2 * time.Minute)
	before = fs.statusReads.Load()
	r.Respond(ctx, req(kept))
	if n := fs.statusReads.Load() - before; n != 1 {
		t.Errorf("expired entry: %d status reads on the request path, want 1", n)
	}
}

// TestCacheVouchedByListener: while the invalidation listener reports
// complete polls, an entry read after it began is served past its cache
// age without reading the store, up to VerifyMaxAge; an entry read before
// it began and an "unknown" answer are read again at their cache age, and
// so is every entry once the reports stop. The listener's evictions are
// what keeps vouched entries right.
func TestCacheVouchedByListener(t *testing.T) {
	e := newEnv(t, hsm.SM2, "", envConfig{})
	ctx := context.Background()
	early, vouched, revoked := e.issue(t).Serial, e.issue(t).Serial, e.issue(t).Serial
	const unknown = "7fffffffffffffffffffffffffffff01"
	if _, err := ocsp.NewPresigner(e.resp, e.store, e.app.Store, ocsp.PresignConfig{Rate: -1, ScanRate: -1}).RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	fs := &failingStore{ResponseStore: e.store}
	r := e.responderOver(t, fs, ocsp.Config{CacheMaxAge: time.Minute, VerifyMaxAge: 10 * time.Minute})
	// ask returns the status answered for serial and how many store
	// reads answering it took.
	ask := func(serial string) (ocsp.Status, int64) {
		t.Helper()
		n := fs.statusReads.Load() + fs.responseReads.Load()
		st := e.single(t, r.Respond(ctx, buildRequest(t, []ocsp.CertID{e.certID(t, ocsp.HashSHA1, serial)}, reqOpts{})).DER).Status
		return st, fs.statusReads.Load() + fs.responseReads.Load() - n
	}
	ask(early)
	e.clock.Advance(time.Second)
	since := e.clock.Now()
	for _, s := range []string{vouched, revoked, unknown} {
		if _, n := ask(s); n == 0 {
			t.Fatalf("%s: first answer without a store read", s)
		}
	}
	// Recorded behind the responder's back, and not yet polled.
	if _, err := e.app.Store.Revoke(ctx, ca.Revocation{CAID: ca.IssuingID, Serial: revoked, Reason: ca.ReasonKeyCompromise, At: e.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	// Seven minutes of reports every 30 s: entries read after since must
	// be re-read 7.5-10 min after their read (VerifyMaxAge less up to a
	// quarter), not before.
	for range 14 {
		e.clock.Advance(30 * time.Second)
		r.InvalidationsApplied(since, e.clock.Now())
		if st, n := ask(vouched); n != 0 || st != ocsp.Good {
			t.Fatalf("vouched entry: %v after %d store reads, want good from the cache", st, n)
		}
	}
	if _, n := ask(early); n == 0 {
		t.Error("entry read before the listener began was served past its cache age without a store read")
	}
	if _, n := ask(unknown); n == 0 {
		t.Error("unknown answer was served past its cache age without a store read")
	}
	// The poll that finds the revocation evicts it.
	r.Evict(ca.IssuingID, revoked)
	if st, _ := ask(revoked); st != ocsp.Revoked {
		t.Errorf("after the eviction: %v, want revoked", st)
	}
	// Past VerifyMaxAge the entry is read again, however current the
	// reports; then it is vouched for again.
	e.clock.Advance(3 * time.Minute)
	r.InvalidationsApplied(since, e.clock.Now())
	if _, n := ask(vouched); n != 1 {
		t.Errorf("past VerifyMaxAge: %d store reads, want 1", n)
	}
	e.clock.Advance(90 * time.Second)
	r.InvalidationsApplied(since, e.clock.Now())
	if _, n := ask(vouched); n != 0 {
		t.Errorf("re-read entry: %d store reads, want it vouched for", n)
	}
	// Reports stop: the entry lasts its cache age from the last one.
	e.clock.Advance(61 * time.Second)
	if _, n := ask(vouched); n != 1 {
		t.Errorf("a minute after the last report: %d store reads, want 1", n)
	}
}

// TestCacheRefreshReload: an entry due for renewal after half its
// response's validity is replaced by the response the pre-signer has
// re-signed, in the background.
func TestCacheRefreshReload(t *testing.T) {
	e := newEnv(t, hsm.ECDSAP256, "", envConfig{})
	ctx := context.Background()
	serial := e.issue(t).Serial
	p := ocsp.NewPresigner(e.resp, e.store, e.app.Store, ocsp.PresignConfig{Rate: -1, ScanRate: -1})
	if _, err := p.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	// A cache age of a day puts the renewal window (12-18 h) past half
	// the 24 h validity, where an entry is reloaded, not confirmed.
	r := e.responderOver(t, e.store, ocsp.Config{CacheMaxAge: 24 * time.Hour})
	startRefresher(t, r)
	req := buildRequest(t, []ocsp.CertID{e.certID(t, ocsp.HashSHA256, serial)}, reqOpts{})
	first := r.Respond(ctx, req).DER
	e.clock.Advance(18 * time.Hour)
	if _, err := p.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	stored, err := e.store.Response(ctx, ca.IssuingID, serial, ocsp.HashSHA256)
	if err != nil || bytes.Equal(stored.DER, first) {
		t.Fatalf("pre-signer did not re-sign: %v", err)
	}
	eventually(t, "re-signed response loaded by the refresher", func() bool {
		got := r.Respond(ctx, req).DER
		if !bytes.Equal(got, first) && !bytes.Equal(got, stored.DER) {
			t.Fatal("neither the first nor the re-signed response")
		}
		return bytes.Equal(got, stored.DER)
	})
}
