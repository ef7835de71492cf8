package app

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmtrust/gmtrust/ca"
	"github.com/gmtrust/gmtrust/hsm"
)

// PurposeTLSServer marks the delegated signer record of the HTTPS server
// certificate (`gmtrust serve --tls`).
const PurposeTLSServer = "tls-server"

// tlsProfile is the profile of the server certificate.
const tlsProfile = "server-tls"

// ServerTLS holds the HTTPS server certificate of `gmtrust serve --tls`:
// issued by the instance's own CA under server-tls for the hosts it must
// answer for, its key in the key manager, reissued before it expires.
//
// The key is always ECDSA P-256. Go's crypto/tls (and browsers, curl,
// OpenSSL's default TLS) cannot negotiate SM2: on an SM2 instance the
// certificate is an SM2-signed certificate for an ECDSA key. The
// handshake then works, but standard clients cannot verify the SM2 chain
// and must pin the server certificate or use the instance's own
// verification; an ECDSA or RSA instance gives a chain any client
// verifies.
type ServerTLS struct {
	a     *App
	hosts []string
	cur   atomic.Pointer[tls.Certificate]
	leaf  atomic.Pointer[x509.Certificate] // of cur, for renewal

}

// TLSHosts returns the names the server certificate must cover: the
// listen address's host (unless it is a wildcard address), the public
// URL's host and extra, without duplicates; "localhost" when none is left.
func TLSHosts(listen, publicURL string, extra []string) []string {
	var hosts []string
	add := func(h string) {
		h = strings.TrimSpace(strings.Trim(h, "[]"))
		if h == "" || slices.Contains(hosts, h) {
			return
		}
		if ip := net.ParseIP(h); ip != nil && ip.IsUnspecified() {
			return
		}
		hosts = append(hosts, h)
	}
	if h, _, err := net.SplitHostPort(listen); err == nil {
		add(h)
	}
	if u, err := url.Parse(publicURL); err == nil {
		add(u.Hostname())
	}
	for _, h := range extra {
		add(h)
	}
	if len(hosts) == 0 {
		hosts = []string{"localhost"}
	}
	return hosts
}

// NewServerTLS loads the newest server certificate that covers hosts and
// is in the first two thirds of its life, or issues one.
func (a *App) NewServerTLS(ctx context.Context, hosts []string) (*ServerTLS, error) {
	if len(hosts) == 0 {
		return nil, errors.New("TLS: no host names for the server certificate")
	}
	s := &ServerTLS{a: a, hosts: hosts}
	if err := s.load(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Config returns the server's TLS configuration: our certificate, and
// client certificates requested but not verified by crypto/tls: the API
// verifies them itself on every request (CertAuth), because crypto/tls
// cannot check SM2 signatures and must not cache revocation.
func (s *ServerTLS) Config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ClientAuth: tls.RequestClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.cur.Load(), nil
		},
	}
}

// Certificate returns the current server certificate (DER).
func (s *ServerTLS) Certificate() []byte { return s.cur.Load().Certificate[0] }

// Run reissues the certificate when two thirds of its life have passed,
// checking every interval until ctx ends.
func (s *ServerTLS) Run(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = time.Hour
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !s.due(s.leaf.Load()) {
			continue
		}
		if err := s.load(ctx); err != nil && ctx.Err() == nil {
			s.a.Logger.Error("renewing the TLS server certificate", "err", err)
		}
	}
}

// due reports whether c needs replacing.
func (s *ServerTLS) due(c *x509.Certificate) bool {
	life := c.NotAfter.Sub(c.NotBefore)
	return !s.a.Now().Before(c.NotAfter.Add(-life / 3))
}

func (s *ServerTLS) load(ctx context.Context) error {
	signers, err := s.a.Store.Signers(ctx, PurposeTLSServer)
	if err != nil {
		return err
	}
	for _, rec := range signers {
		leaf, err := x509.ParseCertificate(rec.DER)
		if err != nil || s.due(leaf) || !covers(leaf, s.hosts) {
			continue
		}
		if c, err := s.a.Store.Certificate(ctx, rec.CAID, rec.Serial); err != nil || c.Status != ca.StatusGood {
			continue
		}
		return s.use(ctx, rec.KeyRef, rec.DER, rec.CAID, leaf)
	}
	return s.issue(ctx)
}

// covers reports whether the certificate names every host.
func covers(c *x509.Certificate, hosts []string) bool {
	for _, h := range hosts {
		if c.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

func (s *ServerTLS) issue(ctx context.Context) error {
	sfx := make([]byte, 4)
	if _, err := rand.Read(sfx); err != nil {
		return err
	}
	label := "tls-server-" + hex.EncodeToString(sfx)
	ref, _, err := s.a.Keys.CreateKey(ctx, label, hsm.ECDSAP256)
	if err != nil {
		return fmt.Errorf("TLS server key: %w", err)
	}
	signer, err := s.a.Keys.Signer(ctx, ref)
	if err != nil {
		return err
	}
	tmpl := &smx509.CertificateRequest{Subject: pkix.Name{CommonName: s.hosts[0]}}
	for _, h := range s.hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	csr, err := smx509.CreateCertificateRequest(rand.Reader, tmpl, signer)
	if err != nil {
		return fmt.Errorf("TLS server CSR: %w", err)
	}
	issued, err := s.a.Authority.Issue(ctx, ca.IssueRequest{CSR: csr, Profile: tlsProfile, RequestedBy: "system:" + PurposeTLSServer})
	if err != nil {
		return fmt.Errorf("TLS server certificate: %w", err)
	}
	c := issued.Certificate
	if err := s.a.Store.InsertSigner(ctx, &ca.SignerRecord{
		ID: label, CAID: c.CAID, Purpose: PurposeTLSServer, KeyRef: ref, DER: c.DER, Serial: c.Serial,
		NotBefore: c.NotBefore, NotAfter: c.NotAfter,
	}); err != nil {
		return fmt.Errorf("recording the TLS server certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(c.DER)
	if err != nil {
		return err
	}
	s.a.Logger.Info("TLS server certificate issued", "serial", c.Serial, "hosts", s.hosts, "not_after", c.NotAfter)
	return s.use(ctx, ref, c.DER, c.CAID, leaf)
}

// use installs a certificate with its chain up to (not including) the
// root. CA certificates with SM2 keys are left out: crypto/tls clients
// reject a whole handshake when one certificate of the chain has a key
// they cannot parse, so on an SM2 instance the server sends its leaf
// alone and clients must hold the issuing CA certificate themselves.
func (s *ServerTLS) use(ctx context.Context, keyRef string, der []byte, caID string, leaf *x509.Certificate) error {
	signer, err := s.a.Keys.Signer(ctx, keyRef)
	if err != nil {
		return fmt.Errorf("TLS server key %s: %w", keyRef, err)
	}
	chain := [][]byte{der}
	for id := caID; id != ""; {
		rec, ok := s.a.Authority.CA(id)
		if !ok || rec.Role == ca.RoleRoot {
			break
		}
		if _, err := x509.ParseCertificate(rec.DER); err != nil {
			break
		}
		chain = append(chain, rec.DER)
		id = rec.ParentID
	}
	s.cur.Store(&tls.Certificate{Certificate: chain, PrivateKey: signer, Leaf: leaf})
	s.leaf.Store(leaf)
	return nil
}
