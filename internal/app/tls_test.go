package app_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmtrust/gmtrust/ca"
	"github.com/gmtrust/gmtrust/hsm"
	"github.com/gmtrust/gmtrust/internal/api"
	"github.com/gmtrust/gmtrust/internal/app"
	"github.com/gmtrust/gmtrust/internal/store"
	"github.com/gmtrust/gmtrust/internal/testutil"
)

// tlsEnv is an instance serving the real service over HTTPS, the way
// `gmtrust serve --tls` does.
type tlsEnv struct {
	a    *app.App
	svc  *app.Service
	st   *app.ServerTLS
	addr string
}

func newTLSEnv(t *testing.T, alg hsm.Algorithm) *tlsEnv {
	t.Helper()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	if _, err := app.Init(ctx, app.InitParams{Dir: dir, Name: "TLS CA", Algorithm: alg, Getenv: testEnv}); err != nil {
		t.Fatal(err)
	}
	a, err := app.Open(ctx, dir, app.Options{Getenv: testEnv, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := a.NewService(ctx, testEnv)
	if err != nil {
		a.Close()
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	st, err := a.NewServerTLS(ctx, app.TLSHosts(ln.Addr().String(), "https://localhost:1", nil))
	if err != nil {
		t.Fatal(err)
	}
	// Handshakes the tests make fail on purpose would be logged.
	hs := &http.Server{Handler: svc.Handler, ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	go hs.Serve(tls.NewListener(ln, st.Config()))
	t.Cleanup(func() {
		hs.Close()
		svc.Close()
		a.Close()
	})
	return &tlsEnv{a: a, svc: svc, st: st, addr: ln.Addr().String()}
}

// clientCert issues a staff-sign certificate for a fresh ECDSA key in
// department czt and binds its subject to a new auditor principal.
func (e *tlsEnv) clientCert(t *testing.T, cn string) (tls.Certificate, *ca.Certificate) {
	t.Helper()
	ctx := context.Background()
	key := testutil.NewKey(t, "ecdsa-p256")
	out, err := e.a.Authority.Issue(ctx, ca.IssueRequest{
		CSR:     testutil.NewCSR(t, key, testutil.CSROptions{Subject: pkix.Name{CommonName: cn, Organization: []string{"Gov"}, Country: []string{"CN"}}}),
		Profile: "staff-sign", Department: "czt", RequestedBy: "test",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Access.Admin.CreatePrincipal(ctx, &store.Principal{Name: cn, Kind: store.KindPerson, Department: "czt", Roles: []string{"auditor"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Access.Admin.BindCertificate(ctx, store.CertBinding{Kind: store.BindSubject, Value: out.Certificate.Subject, Principal: cn}); err != nil {
		t.Fatal(err)
	}
	// The leaf alone: the server checks it against its own records, and
	// crypto/tls would refuse to parse an SM2 CA certificate in the chain.
	return tls.Certificate{Certificate: [][]byte{out.Certificate.DER}, PrivateKey: key}, out.Certificate
}

func (e *tlsEnv) get(t *testing.T, cfg *tls.Config, path string) (int, string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := c.Get("https://" + e.addr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMTLSAcceptedThenRefused: on an ECDSA instance a standard TLS client
// verifies our server certificate with our root, authenticates with a
// staff certificate from our CA, and is refused on the very next request
// once that certificate is revoked.
func TestMTLSAcceptedThenRefused(t *testing.T) {
	e := newTLSEnv(t, hsm.ECDSAP256)
	roots := x509.NewCertPool()
	for _, c := range e.a.Authority.CAs() {
		if c.Role == ca.RoleRoot {
			cert, err := x509.ParseCertificate(c.DER)
			if err != nil {
				t.Fatal(err)
			}
			roots.AddCert(cert)
		}
	}
	cert, rec := e.clientCert(t, "zhang-san")
	cfg := &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}

	if code, body := e.get(t, cfg, "/api/v1/certificates?limit=1"); code != http.StatusOK {
		t.Fatalf("with a good client certificate: %d %s", code, body)
	}
	// Without a certificate (and without a token) the API wants one.
	if code, _ := e.get(t, &tls.Config{RootCAs: roots}, "/api/v1/certificates"); code != http.StatusUnauthorized {
		t.Fatalf("without credentials: %d", code)
	}
	// Public endpoints stay public over TLS.
	if code, _ := e.get(t, &tls.Config{RootCAs: roots}, "/api/v1/cas"); code != http.StatusOK {
		t.Fatalf("public endpoint: %d", code)
	}
	if _, err := e.a.Authority.Revoke(context.Background(), ca.RevokeRequest{Serial: rec.Serial, Reason: ca.ReasonKeyCompromise, By: "test"}); err != nil {
		t.Fatal(err)
	}
	if code, body := e.get(t, cfg, "/api/v1/certificates?limit=1"); code != http.StatusUnauthorized {
		t.Fatalf("after revocation: %d %s", code, body)
	}
	// The refusal is in the audit log.
	es, _, err := e.a.Store.ListAudit(context.Background(), store.AuditFilter{Action: api.ActionAuthFailure})
	if err != nil || len(es) == 0 {
		t.Fatalf("failed authentication not audited: %v", err)
	}

	// The server certificate covers the listen address and is ECDSA.
	if leaf, err := x509.ParseCertificate(e.st.Certificate()); err != nil || leaf.VerifyHostname("127.0.0.1") != nil || leaf.PublicKeyAlgorithm != x509.ECDSA {
		t.Fatalf("server certificate: %v", err)
	}
}

// TestMTLSOnSM2Instance: crypto/tls cannot negotiate SM2, so an SM2
// instance serves an ECDSA key certified by its SM2 CA. Standard
// verification of that chain fails (the documented limitation); a client
// that verifies it with an SM2-capable library (here smx509, pinning our
// root) connects, and our own code accepts a client certificate the SM2
// CA signed.
func TestMTLSOnSM2Instance(t *testing.T) {
	e := newTLSEnv(t, hsm.SM2)
	// The client holds our root and issuing CA certificates: the server
	// sends its leaf alone (crypto/tls clients cannot parse SM2 keys).
	roots, inter := smx509.NewCertPool(), smx509.NewCertPool()
	for _, c := range e.a.Authority.CAs() {
		cert, err := smx509.ParseCertificate(c.DER)
		if err != nil {
			t.Fatal(err)
		}
		if c.Role == ca.RoleRoot {
			roots.AddCert(cert)
		} else {
			inter.AddCert(cert)
		}
	}
	cert, _ := e.clientCert(t, "li-si")
	std := x509.NewCertPool()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: std}}, Timeout: 5 * time.Second}
	if _, err := c.Get("https://" + e.addr + "/healthz"); err == nil {
		t.Fatal("a standard client verified an SM2-signed chain?")
	}
	cfg := &tls.Config{
		InsecureSkipVerify: true, // replaced by the SM2-capable check below
		Certificates:       []tls.Certificate{cert},
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			leaf, err := smx509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			_, err = leaf.Verify(smx509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: "127.0.0.1"})
			return err
		},
	}
	if code, body := e.get(t, cfg, "/api/v1/principals"); code != http.StatusOK {
		t.Fatalf("SM2 instance, client certificate: %d %s", code, body)
	}
}

// TestCertAuth checks client certificate authentication case by case,
// on an SM2 CA (ECDSA client keys: what TLS can carry).
func TestCertAuth(t *testing.T) {
	e := newTLSEnv(t, hsm.SM2)
	ctx := context.Background()
	good, goodRec := e.clientCert(t, "wang-wu")
	auth, err := app.NewCertAuth(e.a.Store, e.a.Authority.CAs(), e.a.Now)
	if err != nil {
		t.Fatal(err)
	}
	p, err := auth.AuthenticateCert(ctx, good.Certificate[0])
	if err != nil || p.Name != "wang-wu" || p.Department != "czt" || !slices.Equal(p.Roles, []string{"auditor"}) || p.Credential != "certificate/"+goodRec.Serial {
		t.Fatalf("good certificate: %+v %v", p, err)
	}

	// Another CA's certificate with the same subject.
	other := newTLSEnv(t, hsm.SM2)
	foreign, _ := other.clientCert(t, "wang-wu")
	// A certificate of ours under another profile, bound by serial.
	key := testutil.NewKey(t, "ecdsa-p256")
	enc, err := e.a.Authority.Issue(ctx, ca.IssueRequest{CSR: testutil.NewCSR(t, key, testutil.CSROptions{Subject: pkix.Name{CommonName: "enc"}}),
		Profile: "staff-enc", Department: "czt", RequestedBy: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Access.Admin.BindCertificate(ctx, store.CertBinding{Kind: store.BindSerial, Value: enc.Certificate.Serial, Principal: "wang-wu"}); err != nil {
		t.Fatal(err)
	}
	// An unbound certificate.
	unbound, err := e.a.Authority.Issue(ctx, ca.IssueRequest{CSR: testutil.NewCSR(t, key, testutil.CSROptions{Subject: pkix.Name{CommonName: "nobody"}}),
		Profile: "staff-sign", Department: "czt", RequestedBy: "test"})
	if err != nil {
		t.Fatal(err)
	}
	tampered := append([]byte(nil), good.Certificate[0]...)
	tampered[len(tampered)-5] ^= 1 // in the signature

	tests := []struct {
		name      string
		der       []byte
		principal string // known principal returned with the error
	}{
		{"garbage", []byte{0x30, 0x03, 1, 2, 3}, ""},
		{"another CA", foreign.Certificate[0], ""},
		{"tampered signature", tampered, ""},
		{"not a client-auth profile", enc.Certificate.DER, "wang-wu"},
		{"bound to nobody", unbound.Certificate.DER, ""},
	}
	for _, tt := range tests {
		p, err := auth.AuthenticateCert(ctx, tt.der)
		if !errors.Is(err, api.ErrUnauthenticated) {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if got := ""; p != nil {
			got = p.Name
			if got != tt.principal {
				t.Errorf("%s: principal %q, want %q", tt.name, got, tt.principal)
			}
		} else if tt.principal != "" {
			t.Errorf("%s: no principal, want %q", tt.name, tt.principal)
		}
	}

	// Disabled principal, then held certificate, then expired: refused.
	yes := true
	if _, err := e.svc.Access.Admin.UpdatePrincipal(ctx, "wang-wu", store.PrincipalUpdate{Disabled: &yes}); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.AuthenticateCert(ctx, good.Certificate[0]); !errors.Is(err, api.ErrUnauthenticated) {
		t.Fatalf("disabled principal: %v", err)
	}
	no := false
	if _, err := e.svc.Access.Admin.UpdatePrincipal(ctx, "wang-wu", store.PrincipalUpdate{Disabled: &no}); err != nil {
		t.Fatal(err)
	}
	later := app.CertAuth{Store: e.a.Store, CAs: e.a.Authority.CAs(), Now: func() time.Time { return goodRec.NotAfter.Add(time.Second) }}
	expired, err := app.NewCertAuth(later.Store, later.CAs, later.Now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := expired.AuthenticateCert(ctx, good.Certificate[0]); !errors.Is(err, api.ErrUnauthenticated) {
		t.Fatalf("expired: %v", err)
	}
	if _, err := e.a.Authority.Revoke(ctx, ca.RevokeRequest{Serial: goodRec.Serial, Reason: ca.ReasonCertificateHold, By: "test"}); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.AuthenticateCert(ctx, good.Certificate[0]); !errors.Is(err, api.ErrUnauthenticated) {
		t.Fatalf("held certificate: %v", err)
	}
	if _, err := e.a.Authority.Unhold(ctx, goodRec.Serial, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.AuthenticateCert(ctx, good.Certificate[0]); err != nil {
		t.Fatalf("after unhold: %v", err)
	}
}

func TestTLSHosts(t *testing.T) {
	tests := []struct {
		listen, public string
		extra          []string
		want           string
	}{
		{"127.0.0.1:8443", "https://ca.example.gov.cn:8443", nil, "[127.0.0.1 ca.example.gov.cn]"},
		{"0.0.0.0:8443", "https://ca.example.gov.cn", []string{"ca.example.gov.cn", "10.0.0.5"}, "[ca.example.gov.cn 10.0.0.5]"},
		{"[::]:443", "", nil, "[localhost]"},
		{"[::1]:443", "https://[::1]/", nil, "[::1]"},
	}
	for _, tt := range tests {
		if got := fmt.Sprint(app.TLSHosts(tt.listen, tt.public, tt.extra)); got != tt.want {
			t.Errorf("TLSHosts(%q, %q, %v) = %s, want %s", tt.listen, tt.public, tt.extra, got, tt.want)
		}
	}
}
