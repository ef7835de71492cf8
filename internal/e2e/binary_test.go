package e2e

import (
	"bytes"
	"context"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmtrust/gmtrust/ca"
	"github.com/gmtrust/gmtrust/internal/config"
	"github.com/gmtrust/gmtrust/internal/store"
	"github.com/gmtrust/gmtrust/internal/testutil"
	"github.com/gmtrust/gmtrust/ocsp"
)

// TestBinaryFlow runs an instance's whole life through the real binary:
// init, serve, issue/list/revoke over HTTP and the CLI side by side, CRLs,
// a graceful stop and a restart that must find everything again.
func TestBinaryFlow(t *testing.T) {
	for _, db := range databases() {
		t.Run(db.name, func(t *testing.T) {
			testBinaryFlow(t, db.dsn(t))
		})
	}
}

// database is a backend an instance can be initialised on.
type database struct {
	name string
	// dsn returns the --database value: "" for SQLite in the data
	// directory, or a fresh PostgreSQL schema (skipped when there is no
	// server, failed in CI).
	dsn func(testing.TB) string
}

func databases() []database {
	return []database{
		{"sqlite", func(testing.TB) string { return "" }},
		{"postgres", testutil.PostgresDSN},
	}
}

// issued is what the test expects of one certificate it issued.
type issued struct {
	serial, profile, department, pem string
	status, reason                   string // expected now
}

func testBinaryFlow(t *testing.T, dsn string) {
	in := newInstance(t, initOptions{database: dsn})
	checkInitFiles(t, in)
	checkSecondInit(t, in, dsn)

	in.start()

	// Authentication is required and refusals are RFC 9457 problems.
	csr := testutil.NewCSR(t, testutil.NewKey(t, "sm2"), testutil.CSROptions{Subject: pkix.Name{CommonName: "nobody"}})
	for name, tok := range map[string]string{"no token": "", "wrong token": "gmt_not-a-real-token"} {
		r := in.do(http.MethodPost, "/api/v1/certificates", issueReq{CSR: string(csr), Profile: "staff-sign"}, tok)
		if r.status != http.StatusUnauthorized || r.header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: got %s, want 401 application/problem+json", name, r)
		}
	}
	before := in.count() // the OCSP signer certificate made by init

	// Issue more certificates than one page holds, in two departments and
	// two profiles, so filters and pagination have something to separate.
	specs := []struct{ profile, dept string }{
		{"staff-sign", "czt"}, {"staff-sign", "czt"}, {"staff-sign", "czt"}, {"staff-enc", "czt"}, {"staff-sign", "czt"},
		{"staff-sign", "jyt"}, {"staff-enc", "jyt"},
	}
	var certs []*issued
	var chain []string
	for i, s := range specs {
		key := testutil.NewKey(t, "sm2")
		csr := testutil.NewCSR(t, key, testutil.CSROptions{Subject: pkix.Name{CommonName: fmt.Sprintf("职员 %d", i), OrganizationalUnit: []string{s.dept}}})
		res := in.issue(csr, s.profile, s.dept)
		if res.CA != "issuing" {
			t.Errorf("issued by CA %q, want issuing", res.CA)
		}
		certs = append(certs, &issued{serial: res.Serial, profile: s.profile, department: s.dept, pem: res.Certificate, status: "good"})
		chain = res.Chain
	}
	issuingCA := parsePEMCert(t, []byte(chain[0]))
	if r := in.do(http.MethodGet, "/ca/issuing.crt", nil, ""); r.status != http.StatusOK || !bytes.Equal(r.body, issuingCA.Raw) {
		t.Errorf("GET /ca/issuing.crt: %d, or not the issuing CA of the chain", r.status)
	}
	if got := in.count(); got != before+len(specs) {
		t.Fatalf("count after issuing %d: %d, want %d", len(specs), got, before+len(specs))
	}

	// GET returns the same certificate.
	var got certJSON
	in.api(http.MethodGet, "/api/v1/certificates/"+certs[0].serial, nil, http.StatusOK, &got)
	if got.Serial != certs[0].serial || got.Certificate != certs[0].pem || got.Status != "good" || got.Department != "czt" || got.Profile != "staff-sign" {
		t.Errorf("GET certificate = %+v", got)
	}

	// The URLs init baked into the certificates (from --public-url) lead
	// to this server: relying parties find CRLs and issuers there.
	rootCA := parsePEMCert(t, []byte(chain[1]))
	checkPublishedURLs(t, in, parsePEMCert(t, []byte(certs[0].pem)), issuingCA)
	checkPublishedURLs(t, in, issuingCA, rootCA)

	checkListing(t, in, certs)

	revA, holdB, holdC, cliD := certs[0], certs[1], certs[2], certs[5]
	// Revocation through HTTP.
	var rc certJSON
	in.api(http.MethodPost, "/api/v1/certificates/"+revA.serial+"/revoke", map[string]string{"reason": "keyCompromise"}, http.StatusOK, &rc)
	if rc.Status != "revoked" || rc.Reason != "keyCompromise" {
		t.Errorf("revoke answer %+v", rc)
	}
	revA.status, revA.reason = "revoked", "keyCompromise"

	// A hold that is lifted, and one that stays.
	for _, c := range []*issued{holdB, holdC} {
		in.api(http.MethodPost, "/api/v1/certificates/"+c.serial+"/revoke", map[string]string{"reason": "certificateHold"}, http.StatusOK, &rc)
		if rc.Status != "hold" || rc.Reason != "certificateHold" {
			t.Errorf("hold answer %+v", rc)
		}
		c.status, c.reason = "hold", "certificateHold"
	}
	held, _ := in.listAll(url.Values{"status": {"hold"}}, 10)
	if s := serialsOf(held); !slices.Equal(s, sorted(holdB.serial, holdC.serial)) {
		t.Errorf("status=hold lists %v, want %v", s, sorted(holdB.serial, holdC.serial))
	}
	in.api(http.MethodPost, "/api/v1/certificates/"+holdB.serial+"/unhold", nil, http.StatusOK, &rc)
	if rc.Status != "good" {
		t.Errorf("unhold answer %+v", rc)
	}
	holdB.status, holdB.reason = "good", ""
	r := in.do(http.MethodPost, "/api/v1/certificates/"+holdB.serial+"/unhold", nil, in.token)
	if r.status != http.StatusConflict || !isProblem(r, "not-on-hold") {
		t.Errorf("second unhold: got %s, want 409 not-on-hold", r)
	}

	// The CLI revokes while the server runs on the same database (for
	// SQLite: two processes on one file), and the server sees it at once.
	in.must("cert", "revoke", cliD.serial, "--reason", "superseded")
	cliD.status, cliD.reason = "revoked", "superseded"
	in.api(http.MethodGet, "/api/v1/certificates/"+cliD.serial, nil, http.StatusOK, &got)
	if got.Status != "revoked" || got.Reason != "superseded" {
		t.Errorf("server view of a CLI revocation: %+v", got)
	}
	// ... and the command re-signed the certificate's OCSP responses
	// before it returned, as a revocation through the API does.
	checkStoredOCSP(t, in, got.CA, cliD.serial, ca.StatusRevoked)

	checkStatuses(t, in, certs)

	var cliList []certJSON
	in.mustJSON(&cliList, "cert", "list", "--status", "revoked")
	if s := serialsOf(cliList); !slices.Equal(s, sorted(revA.serial, cliD.serial)) {
		t.Errorf("cert list --status revoked: %v, want %v", s, sorted(revA.serial, cliD.serial))
	}
	in.mustJSON(&cliList, "cert", "list", "--department", "jyt")
	if s := serialsOf(cliList); !slices.Equal(s, sorted(certs[5].serial, certs[6].serial)) {
		t.Errorf("cert list --department jyt: %v", s)
	}
	var shown certJSON
	in.mustJSON(&shown, "cert", "show", cliD.serial)
	if shown.Serial != cliD.serial || shown.Status != "revoked" || shown.Reason != "superseded" || shown.Certificate != cliD.pem || shown.Department != "jyt" {
		t.Errorf("cert show --json = %+v", shown)
	}

	// CRLs generated by the CLI are served by the running server.
	in.must("crl", "generate")
	crlFile := filepath.Join(t.TempDir(), "issuing.crl")
	in.must("crl", "generate", "--ca", "issuing", "--out", crlFile)
	fileCRL, err := os.ReadFile(crlFile)
	if err != nil {
		t.Fatal(err)
	}
	checkCRL(t, "crl generate --out", fileCRL, issuingCA, certs)
	checkCRL(t, "GET /crl/issuing.crl", fetchCRL(t, in, "issuing"), issuingCA, certs)
	total := in.count()

	in.stop()

	// After a restart everything is still there.
	in.start()
	if got := in.count(); got != total {
		t.Errorf("after restart %d certificates, want %d", got, total)
	}
	checkStatuses(t, in, certs)
	checkListing(t, in, certs)
	checkCRL(t, "GET /crl/issuing.crl after restart", fetchCRL(t, in, "issuing"), issuingCA, certs)
	in.stop()
}

// checkPublishedURLs fetches a certificate's CRL distribution point and
// CA issuers URL and checks that they serve its issuer's CRL and
// certificate.
func checkPublishedURLs(t *testing.T, in *instance, c, issuer *smx509.Certificate) {
	t.Helper()
	if len(c.CRLDistributionPoints) != 1 || len(c.IssuingCertificateURL) != 1 {
		t.Fatalf("%s: CRL DP %v, CA issuers %v; want one of each", c.Subject, c.CRLDistributionPoints, c.IssuingCertificateURL)
	}
	for _, u := range []string{c.CRLDistributionPoints[0], c.IssuingCertificateURL[0]} {
		if !strings.HasPrefix(u, "http://"+in.addr+"/") {
			t.Errorf("%s: URL %s is not under the public URL http://%s", c.Subject, u, in.addr)
		}
	}
	body := func(u, wantType string) []byte {
		resp, err := in.http.Get(u)
		if err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != wantType {
			t.Fatalf("GET %s: %d %s %v", u, resp.StatusCode, resp.Header.Get("Content-Type"), err)
		}
		return b
	}
	rl, err := smx509.ParseRevocationList(body(c.CRLDistributionPoints[0], "application/pkix-crl"))
	if err != nil {
		t.Fatalf("CRL at %s: %v", c.CRLDistributionPoints[0], err)
	}
	if err := rl.CheckSignatureFrom(issuer); err != nil {
		t.Errorf("CRL at %s is not signed by %s: %v", c.CRLDistributionPoints[0], issuer.Subject, err)
	}
	if der := body(c.IssuingCertificateURL[0], "application/pkix-cert"); !bytes.Equal(der, issuer.Raw) {
		t.Errorf("%s serves another certificate than the issuer %s", c.IssuingCertificateURL[0], issuer.Subject)
	}
}

// checkInitFiles checks what init leaves in the data directory.
func checkInitFiles(t *testing.T, in *instance) {
	t.Helper()
	for _, f := range []string{"admin.token", "config.yaml"} {
		fi, err := os.Stat(filepath.Join(in.dir, f))
		if err != nil {
			t.Fatalf("init did not write %s: %v", f, err)
		}
		// Both hold secrets (the token; the database DSN may hold a
		// password), so only the owner may read them.
		if m := fi.Mode().Perm(); m != 0o600 {
			t.Errorf("%s has mode %o, want 600", f, m)
		}
	}
	if !strings.HasPrefix(in.token, "gmt_") {
		t.Errorf("admin token %q lacks the gmt_ prefix", in.token)
	}
}

// checkSecondInit runs init again: it must fail and change nothing.
func checkSecondInit(t *testing.T, in *instance, dsn string) {
	t.Helper()
	before := listing(t, in.dir)
	args := []string{"init", "--public-url", "http://" + in.addr}
	if dsn != "" {
		args = append(args, "--database", dsn)
	}
	_, stderr, err := in.cli(args...)
	if !errExit(err) {
		t.Fatalf("second init: %v, want a non-zero exit", err)
	}
	if !strings.Contains(stderr, "already initialised") {
		t.Errorf("second init says %q, want it to say the directory is already initialised", stderr)
	}
	if after := listing(t, in.dir); !slices.Equal(before, after) {
		t.Errorf("second init changed the directory:\nbefore %v\nafter  %v", before, after)
	}
	if dsn == "" {
		return
	}
	// A new directory on a database that already holds an instance must be
	// refused too, and leave no half-made directory behind.
	other := filepath.Join(t.TempDir(), "other")
	o := &instance{t: t, bin: in.bin, dir: other}
	_, stderr, err = o.cli("init", "--database", dsn)
	if !errExit(err) || !strings.Contains(stderr, "already initialised") {
		t.Errorf("init of a new directory on a used database: %v %q, want refusal", err, stderr)
	}
	if _, err := os.Stat(other); err == nil {
		t.Errorf("refused init left %s behind: %v", other, listing(t, other))
	}
}

// listing describes every file under dir: path, mode, size, mtime.
func listing(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out = append(out, fmt.Sprintf("%s %v %d %d", rel, fi.Mode(), fi.Size(), fi.ModTime().UnixNano()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkListing checks filters and pagination against what was issued.
func checkListing(t *testing.T, in *instance, certs []*issued) {
	t.Helper()
	tests := []struct {
		query url.Values
		limit int
		want  func(*issued) bool
	}{
		{url.Values{"department": {"czt"}}, 2, func(c *issued) bool { return c.department == "czt" }},
		{url.Values{"department": {"jyt"}}, 1, func(c *issued) bool { return c.department == "jyt" }},
		{url.Values{"profile": {"staff-enc"}}, 1, func(c *issued) bool { return c.profile == "staff-enc" }},
		{url.Values{"department": {"czt"}, "profile": {"staff-sign"}}, 3, func(c *issued) bool { return c.department == "czt" && c.profile == "staff-sign" }},
		{url.Values{"status": {"revoked"}}, 1, func(c *issued) bool { return c.status == "revoked" }},
		{url.Values{"department": {"nobody"}}, 5, func(*issued) bool { return false }},
	}
	for _, tt := range tests {
		items, pages := in.listAll(tt.query, tt.limit)
		var want []string
		for _, c := range certs {
			if tt.want(c) {
				want = append(want, c.serial)
			}
		}
		sort.Strings(want)
		got := serialsOf(items)
		if !slices.Equal(got, want) {
			t.Errorf("list %s limit %d: %v, want %v", tt.query.Encode(), tt.limit, got, want)
		}
		// Every page is full except the last, so n items need
		// ceil(n/limit) pages (one empty page for none).
		if wantPages := max(1, (len(want)+tt.limit-1)/tt.limit); len(want) > tt.limit && pages != wantPages {
			t.Errorf("list %s limit %d: %d pages, want %d", tt.query.Encode(), tt.limit, pages, wantPages)
		}
	}
}

// checkStatuses compares every certificate's status with the expected one.
func checkStatuses(t *testing.T, in *instance, certs []*issued) {
	t.Helper()
	for _, c := range certs {
		var got certJSON
		in.api(http.MethodGet, "/api/v1/certificates/"+c.serial, nil, http.StatusOK, &got)
		if got.Status != c.status || got.Reason != c.reason || got.Certificate != c.pem {
			t.Errorf("certificate %s: status %q reason %q, want %q %q", c.serial, got.Status, got.Reason, c.status, c.reason)
		}
	}
}

// checkCRL parses a DER CRL, checks its signature, and that it lists
// exactly the revoked and held certificates with their reasons.
func checkCRL(t *testing.T, what string, der []byte, issuer *smx509.Certificate, certs []*issued) {
	t.Helper()
	rl, err := smx509.ParseRevocationList(der)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if err := rl.CheckSignatureFrom(issuer); err != nil {
		t.Errorf("%s: signature: %v", what, err)
	}
	listed := map[string]int{}
	for _, e := range rl.RevokedCertificateEntries {
		listed[e.SerialNumber.Text(16)] = e.ReasonCode
	}
	reasonCodes := map[string]int{"keyCompromise": 1, "superseded": 4, "certificateHold": 6}
	for _, c := range certs {
		code, ok := listed[c.serial]
		switch {
		case c.status == "good" && ok:
			t.Errorf("%s lists good certificate %s", what, c.serial)
		case c.status != "good" && !ok:
			t.Errorf("%s lacks %s certificate %s", what, c.status, c.serial)
		case ok && code != reasonCodes[c.reason]:
			t.Errorf("%s: %s has reason %d, want %s", what, c.serial, code, c.reason)
		}
	}
}

func fetchCRL(t *testing.T, in *instance, ca string) []byte {
	t.Helper()
	r := in.do(http.MethodGet, "/crl/"+ca+".crl", nil, "")
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/pkix-crl" {
		t.Fatalf("GET /crl/%s.crl: %d %s", ca, r.status, r.header.Get("Content-Type"))
	}
	return r.body
}

func parsePEMCert(t testing.TB, p []byte) *smx509.Certificate {
	t.Helper()
	b, rest := pem.Decode(p)
	if b == nil || b.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("not one PEM certificate: %q", p)
	}
	c, err := smx509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func serialsOf(items []certJSON) []string {
	s := make([]string, 0, len(items))
	for _, c := range items {
		s = append(s, c.Serial)
	}
	sort.Strings(s)
	return s
}

func sorted(s ...string) []string {
	sort.Strings(s)
	return s
}

// isProblem reports whether r is an RFC 9457 problem of the given slug.
func isProblem(r response, slug string) bool {
	p, ok := decodeProblem(r)
	return ok && p.Type == "urn:gmtrust:problem:"+slug
}

// TestCRLGenerateOut checks that `crl generate --out` writes the CRL it
// was asked for, and refuses when it cannot say which CA's CRL to write:
// an operator's publishing script must not believe a file was written
// when none was.
func TestCRLGenerateOut(t *testing.T) {
	in := newInstance(t, initOptions{})
	dir := t.TempDir()
	withCA := filepath.Join(dir, "issuing.crl")
	in.must("crl", "generate", "--ca", "issuing", "--out", withCA)
	der, err := os.ReadFile(withCA)
	if err != nil {
		t.Fatalf("--ca issuing --out: %v", err)
	}
	if _, err := smx509.ParseRevocationList(der); err != nil {
		t.Fatalf("--out wrote no CRL: %v", err)
	}

	noCA := filepath.Join(dir, "all.crl")
	_, stderr, err := in.cli("crl", "generate", "--out", noCA)
	if !errExit(err) || !strings.Contains(stderr, "--ca") {
		t.Errorf("crl generate --out without --ca: %v %q, want a non-zero exit that asks for --ca", err, stderr)
	}
	if _, err := os.Stat(noCA); err == nil {
		t.Error("crl generate --out without --ca wrote a file")
	}
}

// TestConcurrentWriters has the server and CLI processes issue at the same
// time on one database (for SQLite, one file written by several
// processes): every request must succeed and be recorded once.
func TestConcurrentWriters(t *testing.T) {
	for _, db := range databases() {
		t.Run(db.name, func(t *testing.T) {
			in := newInstance(t, initOptions{database: db.dsn(t)})
			in.start()
			before := in.count()
			const httpN, cliN = 16, 3
			csrs := make([][]byte, httpN+cliN)
			for i := range csrs {
				csrs[i] = testutil.NewCSR(t, testutil.NewKey(t, "sm2"), testutil.CSROptions{Subject: pkix.Name{CommonName: fmt.Sprintf("并发 %d", i)}})
			}
			type result struct {
				serial string
				err    string
			}
			results := make(chan result, httpN+cliN)
			var wg sync.WaitGroup
			for i := range httpN {
				wg.Go(func() {
					// in.do must not call t.Fatal off the test goroutine,
					// so errors travel back on the channel.
					r, err := in.tryDo(http.MethodPost, "/api/v1/certificates", issueReq{CSR: string(csrs[i]), Profile: "staff-sign", Department: "load"})
					var res issueResp
					switch {
					case err != nil:
						results <- result{err: err.Error()}
					case r.status != http.StatusCreated:
						results <- result{err: r.String()}
					case json.Unmarshal(r.body, &res) != nil || res.Serial == "":
						results <- result{err: "bad answer " + string(r.body)}
					default:
						results <- result{serial: res.Serial}
					}
				})
			}
			for i := httpN; i < httpN+cliN; i++ {
				f := filepath.Join(t.TempDir(), "req.csr")
				if err := os.WriteFile(f, csrs[i], 0o600); err != nil {
					t.Fatal(err)
				}
				var res struct {
					Serial string `json:"serial"`
				}
				out, errOut, err := in.cli("cert", "issue", "--csr", f, "--profile", "staff-sign", "--department", "load", "--json")
				if err != nil || json.Unmarshal([]byte(out), &res) != nil {
					results <- result{err: fmt.Sprintf("cli: %v %s %s", err, out, errOut)}
					continue
				}
				results <- result{serial: res.Serial}
			}
			wg.Wait()
			close(results)
			seen := map[string]bool{}
			for r := range results {
				if r.err != "" {
					t.Errorf("concurrent issue: %s", r.err)
					continue
				}
				if seen[r.serial] {
					t.Errorf("serial %s issued twice", r.serial)
				}
				seen[r.serial] = true
			}
			items, _ := in.listAll(url.Values{"department": {"load"}}, 500)
			if got := serialsOf(items); len(got) != len(seen) || len(seen) != httpN+cliN {
				t.Errorf("listed %d, issued %d, want %d", len(got), len(seen), httpN+cliN)
			}
			for _, s := range serialsOf(items) {
				if !seen[s] {
					t.Errorf("listed serial %s was never returned to a client", s)
				}
			}
			if got := in.count(); got != before+httpN+cliN {
				t.Errorf("count %d, want %d", got, before+httpN+cliN)
			}
			in.stop()
		})
	}
}

// checkStoredOCSP checks, straight in the database, that every pre-signed
// OCSP response of the certificate is there and was signed for want.
func checkStoredOCSP(t *testing.T, in *instance, caID, serial string, want ca.Status) {
	t.Helper()
	cfg, err := config.Load(in.dir, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	db := in.openStore()
	defer db.Close()
	ctx := context.Background()
	st, err := store.NewOCSP(ctx, db, store.OCSPOptions{DSN: cfg.DatabaseDSN(in.dir), PollInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, h := range []ocsp.HashAlg{ocsp.HashSHA1, ocsp.HashSHA256, ocsp.HashSM3} {
		r, err := st.Response(ctx, caID, serial, h)
		if err != nil {
			t.Errorf("stored OCSP response (%s) of %s: %v", ocsp.HashName(h), serial, err)
			continue
		}
		if r.Status != want || len(r.DER) == 0 {
			t.Errorf("stored OCSP response (%s) of %s: status %s, want %s", ocsp.HashName(h), serial, r.Status, want)
		}
	}
}
