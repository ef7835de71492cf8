// Package testutil holds helpers shared by tests: throwaway instances,
// CSRs, and the rules for external components (PostgreSQL, OpenSSL).
package testutil

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/emmansun/gmsm/smx509"
	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq" // PostgreSQL driver for schema setup

	"github.com/gmtrust/gmtrust/internal/sigalg"
)

// InCI reports whether the tests run in CI, where a missing component is
// a failure and not a reason to skip.
func InCI() bool { return os.Getenv("CI") == "true" }

// Need skips (or, in CI, fails) a test when a component is missing.
func Need(t testing.TB, ok bool, what string) {
	t.Helper()
	if ok {
		return
	}
	if InCI() {
		t.Fatalf("%s is required in CI", what)
	}
	t.Skipf("%s not available", what)
}

// OpenSSL returns the path of the openssl binary or skips/fails.
func OpenSSL(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	Need(t, err == nil, "openssl")
	return p
}

// Run runs a command and fails the test with its output on error.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// PostgresDSN returns a DSN for a fresh schema in the test database named
// by GMTRUST_TEST_POSTGRES, dropped when the test ends.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv("GMTRUST_TEST_POSTGRES")
	Need(t, base != "", "GMTRUST_TEST_POSTGRES")
	db, err := sqlx.Open("postgres", base)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema := fmt.Sprintf("gmt_test_%x", b)
	if _, err := db.Exec("CREATE SCHEMA " + schema); err != nil {
		db.Close()
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		_, _ = db.Exec("DROP SCHEMA " + schema + " CASCADE")
		db.Close()
	})
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + "search_path=" + schema
}

// CSROptions describe a test CSR.
type CSROptions struct {
	Subject pkix.Name
	DNS     []string
	Emails  []string
	IPs     []net.IP
	// ExtraExtensions lets a test smuggle extensions the CA must not copy.
	ExtraExtensions []pkix.Extension
}

// NewKey makes a software key: "sm2", "ecdsa-p256", "rsa-2048", ...
func NewKey(t testing.TB, alg string) crypto.Signer {
	t.Helper()
	k, err := sigalg.GenerateKey(rand.Reader, alg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// NewCSR makes a PEM CSR signed by key (SM2 with the standard ID).
func NewCSR(t testing.TB, key crypto.Signer, o CSROptions) []byte {
	t.Helper()
	der, err := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{
		Subject: o.Subject, DNSNames: o.DNS, EmailAddresses: o.Emails, IPAddresses: o.IPs, ExtraExtensions: o.ExtraExtensions,
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// Ctx is a background context for tests.
func Ctx() context.Context { return context.Background() }
