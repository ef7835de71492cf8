package api_test

import (
	"bytes"
	"context"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math/big"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"
	tjsm2 "github.com/tjfoc/gmsm/sm2"
	tjx509 "github.com/tjfoc/gmsm/x509"

	"github.com/gmtrust/gmtrust/ca"
	"github.com/gmtrust/gmtrust/hsm"
	"github.com/gmtrust/gmtrust/internal/api"
	"github.com/gmtrust/gmtrust/internal/app"
	"github.com/gmtrust/gmtrust/internal/store"
	"github.com/gmtrust/gmtrust/internal/testutil"
	"github.com/gmtrust/gmtrust/seal"
)

// clock is the instance's clock: real time plus an offset tests move.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

// sealEnv is an in-process instance serving the API with seals mounted.
type sealEnv struct {
	t     testing.TB
	dir   string
	a     *app.App
	seals *app.Seals
	url   string
	admin string
	clock *clock
}

func testGetenv(k string) string {
	if k == "GMTRUST_KEY_PASSPHRASE" {
		return "seal test passphrase"
	}
	return ""
}

func newSealEnv(t testing.TB, database string) *sealEnv {
	t.Helper()
	ctx := context.Background()
	clk := &clock{}
	dir := filepath.Join(t.TempDir(), "data")
	if _, err := app.Init(ctx, app.InitParams{Dir: dir, Name: "Test Province CA", Algorithm: hsm.SM2, Database: database,
		Getenv: testGetenv, Now: clk.Now}); err != nil {
		t.Fatalf("init: %v", err)
	}
	a, err := app.Open(ctx, dir, app.Options{Getenv: testGetenv, Now: clk.Now, Logger: nil})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	seals, err := a.NewSeals(ctx, app.SealOptions{Service: seal.Config{ESIDPrefix: "370000"}})
	if err != nil {
		t.Fatal(err)
	}
	srv := api.New(api.Deps{Authority: a.Authority, Auth: &app.TokenAuth{Store: a.Store, Now: a.Now}, Now: a.Now})
	seals.Mount(srv)
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		hs.Close()
		seals.Close()
		a.Close()
	})
	tok, err := os.ReadFile(filepath.Join(dir, app.AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	return &sealEnv{t: t, dir: dir, a: a, seals: seals, url: hs.URL, admin: strings.TrimSpace(string(tok)), clock: clk}
}

// token creates an approval system's principal (role approval-system)
// and an API token for it, directly in the store.
func (e *sealEnv) token(principal string) string {
	e.t.Helper()
	tok, hash, err := app.NewToken()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.a.Store.InsertPrincipal(context.Background(), &store.Principal{Name: principal, Kind: store.KindService,
		Roles: []string{"approval-system"}}); err != nil {
		e.t.Fatal(err)
	}
	if err := e.a.Store.InsertToken(context.Background(), &store.Token{ID: "tok-" + principal, Principal: principal, Hash: hash}); err != nil {
		e.t.Fatal(err)
	}
	return tok
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("response %d is not JSON: %v\n%s", r.status, err, r.body)
	}
}

// problem returns the problem type slug of a problem+json response.
func (r response) problem(t testing.TB) string {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("status %d with Content-Type %q, want a problem: %s", r.status, ct, r.body)
	}
	var p api.Problem
	r.decode(t, &p)
	if p.Detail == "" {
		t.Fatalf("problem without detail: %s", r.body)
	}
	return strings.TrimPrefix(p.Type, api.ProblemTypePrefix)
}

func (e *sealEnv) do(method, path, token, contentType string, body []byte) response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (e *sealEnv) json(method, path, token string, v any) response {
	e.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.do(method, path, token, "application/json", b)
}

func testPNG(t testing.TB) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, 24, 24))
	for i := range 24 {
		img.Set(i, i, color.NRGBA{R: 220, A: 255})
		img.Set(23-i, i, color.NRGBA{R: 220, A: 255})
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func makeBody(t testing.TB, picType string, pic []byte) map[string]any {
	return map[string]any{
		"name": "测试市财政局 合同专用章", "type": "contract", "department": "czt", "valid_days": 365,
		"picture": map[string]any{"type": picType, "data": base64.StdEncoding.EncodeToString(pic), "width_mm": 40, "height_mm": 40},
	}
}

type madeSeal struct {
	ID          string `json:"id"`
	ESID        string `json:"esid"`
	Certificate string `json:"certificate"`
	Seal        string `json:"seal"`
}

func (e *sealEnv) makeSeal(body map[string]any) madeSeal {
	e.t.Helper()
	r := e.json("POST", "/api/v1/seals", e.admin, body)
	if r.status != http.StatusCreated {
		e.t.Fatalf("make seal: %d %s", r.status, r.body)
	}
	var m madeSeal
	r.decode(e.t, &m)
	return m
}

type stamped struct {
	ID        string    `json:"id"`
	Signature string    `json:"signature"`
	Time      time.Time `json:"time"`
	DataHash  string    `json:"data_hash"`
	ESID      string    `json:"esid"`
}

func (e *sealEnv) stampJSON(sealID, token string, body map[string]any) (response, []byte) {
	e.t.Helper()
	r := e.json("POST", "/api/v1/seals/"+sealID+"/stamp", token, body)
	if r.status != http.StatusCreated {
		return r, nil
	}
	var s stamped
	r.decode(e.t, &s)
	der, err := base64.StdEncoding.DecodeString(s.Signature)
	if err != nil {
		e.t.Fatal(err)
	}
	return r, der
}

func (e *sealEnv) mustStamp(sealID, token string, doc []byte) []byte {
	e.t.Helper()
	r, der := e.stampJSON(sealID, token, map[string]any{"data": base64.StdEncoding.EncodeToString(doc), "property_info": "/Doc_0/Signs/Sign_0/Signature.xml", "approval_ref": "OA-1"})
	if der == nil {
		e.t.Fatalf("stamp: %d %s", r.status, r.body)
	}
	return der
}

func (e *sealEnv) verify(sig, doc []byte) *seal.Report {
	e.t.Helper()
	body := map[string]any{"signature": base64.StdEncoding.EncodeToString(sig)}
	if doc != nil {
		body["data"] = base64.StdEncoding.EncodeToString(doc)
	}
	r := e.json("POST", "/api/v1/signatures/verify", "", body) // public: no token
	if r.status != http.StatusOK {
		e.t.Fatalf("verify: %d %s", r.status, r.body)
	}
	var rep seal.Report
	r.decode(e.t, &rep)
	return &rep
}

func failing(r *seal.Report) []string {
	var out []string
	for _, c := range r.Checks {
		if !c.OK {
			out = append(out, c.Name)
		}
	}
	return out
}

func check(r *seal.Report, name string) seal.Check {
	c, _ := r.Find(name)
	return c
}

func requireVerdict(t testing.TB, r *seal.Report, verdict string, failingCheck string) {
	t.Helper()
	if r.Verdict != verdict {
		t.Fatalf("verdict %s (%s), want %s; checks %+v", r.Verdict, r.Reason, verdict, r.Checks)
	}
	if failingCheck != "" && !slices.Contains(failing(r), failingCheck) {
		t.Fatalf("failing checks %v do not name %s; checks %+v", failing(r), failingCheck, r.Checks)
	}
}

var document = []byte("<ofd:Signature>审批单 2025-001: 同意</ofd:Signature>")

func TestSealFlowSQLite(t *testing.T) { testSealFlow(t, newSealEnv(t, "")) }

func TestSealFlowPostgres(t *testing.T) { testSealFlow(t, newSealEnv(t, testutil.PostgresDSN(t))) }

// testSealFlow is the main flow: make a seal with a generated holder key,
// grant a principal, stamp three ways, verify each stamp through the
// public endpoint and both signatures independently.
func testSealFlow(t *testing.T, e *sealEnv) {
	pic := testPNG(t)
	m := e.makeSeal(makeBody(t, "png", pic))
	if !strings.HasPrefix(m.ESID, "37000004") || len(m.ESID) != 20 {
		t.Errorf("esID %q: want 370000 + type 04 + 12 digits", m.ESID)
	}
	sealDER, _ := base64.StdEncoding.DecodeString(m.Seal)
	s, err := seal.ParseSeal(sealDER)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode([]byte(m.Certificate))
	if block == nil || len(s.Certs) != 1 || !bytes.Equal(s.Certs[0], block.Bytes) {
		t.Fatal("the returned certificate is not the seal's holder certificate")
	}
	holder, err := smx509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if holder.Subject.CommonName != "测试市财政局 合同专用章" || holder.Subject.Organization[0] != "czt" {
		t.Errorf("holder subject %s", holder.Subject)
	}
	if s.ESID != m.ESID || s.Type != seal.TypeContract || s.Version != seal.VersionV4 || !bytes.Equal(s.Picture.Data, pic) ||
		s.Picture.Type != "png" || s.ValidEnd.After(holder.NotAfter) || s.ValidEnd.Sub(s.ValidStart) != 365*24*time.Hour {
		t.Errorf("seal content: %+v", s)
	}
	if rec, err := e.a.Authority.Find(context.Background(), ca.SerialFromBig(holder.SerialNumber)); err != nil || rec.Profile != "seal-signer" || rec.Department != "czt" {
		t.Errorf("holder certificate record: %+v, %v", rec, err)
	}
	// The maker is a seal-maker delegated signer made on first use.
	makers, err := e.a.Store.Signers(context.Background(), ca.PurposeSealMaker)
	if err != nil || len(makers) != 1 || !bytes.Equal(makers[0].DER, s.MakerCert) {
		t.Fatalf("seal makers %v, %v", makers, err)
	}

	// Read it back three ways.
	r := e.do("GET", "/api/v1/seals/"+m.ID, e.admin, "", nil)
	var sj api.SealJSON
	r.decode(t, &sj)
	if r.status != 200 || sj.ESID != m.ESID || sj.Status != "active" || sj.Type != "contract" || sj.HolderCertificateSerial != ca.SerialFromBig(holder.SerialNumber) ||
		sj.Maker != makers[0].ID || !strings.Contains(sj.MakerSubject, "Seal Maker") || !sj.ValidEnd.Equal(s.ValidEnd) {
		t.Errorf("GET seal: %d %+v", r.status, sj)
	}
	if r := e.do("GET", "/api/v1/seals/"+m.ID+".esl", e.admin, "", nil); r.status != 200 || !bytes.Equal(r.body, sealDER) || r.header.Get("Content-Type") != "application/octet-stream" {
		t.Errorf("GET .esl: %d %s", r.status, r.header.Get("Content-Type"))
	}
	if r := e.do("GET", "/api/v1/seals/"+m.ID+"/picture", e.admin, "", nil); r.status != 200 || !bytes.Equal(r.body, pic) || r.header.Get("Content-Type") != "image/png" ||
		r.header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("GET picture: %d %v", r.status, r.header)
	}
	var list struct{ Items []api.SealJSON }
	e.do("GET", "/api/v1/seals?department=czt&status=active", e.admin, "", nil).decode(t, &list)
	if len(list.Items) != 1 || list.Items[0].ID != m.ID {
		t.Errorf("list: %+v", list)
	}

	// Without a grant nobody stamps, not even the administrator.
	oa := e.token("oa-system")
	digest := sm3.Sum(document)
	for _, tok := range []string{oa, e.admin} {
		r, _ := e.stampJSON(m.ID, tok, map[string]any{"digest": hex.EncodeToString(digest[:]), "property_info": "x"})
		if r.status != http.StatusForbidden || r.problem(t) != "forbidden" {
			t.Fatalf("stamp without grant: %d %s", r.status, r.body)
		}
	}
	// A name no principal can have is refused, not recorded.
	for _, bad := range []string{"", "oa system", "oa/system", "cli:someone", strings.Repeat("a", 65)} {
		if r := e.json("POST", "/api/v1/seals/"+m.ID+"/grants", e.admin, map[string]string{"principal": bad}); r.status != http.StatusBadRequest {
			t.Fatalf("grant to %q: %d %s", bad, r.status, r.body)
		}
	}
	if r := e.json("GET", "/api/v1/seals/"+m.ID+"/grants", e.admin, nil); r.status != http.StatusOK || bytes.Contains(r.body, []byte("oa system")) {
		t.Fatalf("grants after refusals: %d %s", r.status, r.body)
	}
	if r := e.json("POST", "/api/v1/seals/"+m.ID+"/grants", e.admin, map[string]string{"principal": "oa-system"}); r.status != http.StatusCreated {
		t.Fatalf("grant: %d %s", r.status, r.body)
	}

	// 1. JSON with the document.
	byData := e.mustStamp(m.ID, oa, document)
	// 2. JSON with the digest.
	r, byDigest := e.stampJSON(m.ID, oa, map[string]any{"digest": hex.EncodeToString(digest[:]), "property_info": "approval/2025/001", "approval_ref": "OA-2"})
	if byDigest == nil {
		t.Fatalf("stamp by digest: %d %s", r.status, r.body)
	}
	// 3. Multipart, fields on both sides of the file.
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	_ = mw.WriteField("property_info", "/Doc_0/Signs/Sign_0/Signature.xml")
	fw, _ := mw.CreateFormFile("file", "Signature.xml")
	_, _ = fw.Write(document)
	_ = mw.WriteField("approval_ref", "OA-3")
	_ = mw.Close()
	r = e.do("POST", "/api/v1/seals/"+m.ID+"/stamp", oa, mw.FormDataContentType(), mp.Bytes())
	if r.status != http.StatusCreated {
		t.Fatalf("multipart stamp: %d %s", r.status, r.body)
	}
	var st stamped
	r.decode(t, &st)
	byMultipart, _ := base64.StdEncoding.DecodeString(st.Signature)
	if st.DataHash != hex.EncodeToString(digest[:]) || st.ESID != m.ESID {
		t.Errorf("multipart stamp response %+v", st)
	}
	// 4. Raw body.
	r = e.do("POST", "/api/v1/seals/"+m.ID+"/stamp?property_info=raw&approval_ref=OA-4", oa, "application/octet-stream", document)
	if r.status != http.StatusCreated {
		t.Fatalf("raw stamp: %d %s", r.status, r.body)
	}

	for name, der := range map[string][]byte{"data": byData, "digest": byDigest, "multipart": byMultipart} {
		rep := e.verify(der, document)
		requireVerdict(t, rep, seal.VerdictValid, "")
		for _, c := range []string{seal.CheckStructure, seal.CheckSealSignature, seal.CheckSealValidity, seal.CheckSignerInSeal,
			seal.CheckSignature, seal.CheckDataHash, seal.CheckChain, seal.CheckRevocation, seal.CheckSealStatus} {
			if !check(rep, c).OK {
				t.Errorf("%s: check %s missing or failed: %+v", name, c, rep.Checks)
			}
		}
		if rep.Seal.ESID != m.ESID || !strings.Contains(rep.Signer, "合同专用章") || rep.Time.IsZero() {
			t.Errorf("%s: report %+v", name, rep)
		}
		rep = e.verify(der, []byte("another document"))
		requireVerdict(t, rep, seal.VerdictInvalid, seal.CheckDataHash)
	}
	crossCheck(t, byDigest)

	// The DER signature as the body, the digest in the query.
	r = e.do("POST", "/api/v1/signatures/verify?digest="+hex.EncodeToString(digest[:]), "", "application/octet-stream", byDigest)
	var raw seal.Report
	r.decode(t, &raw)
	if r.status != 200 || raw.Verdict != seal.VerdictValid || !check(&raw, seal.CheckDataHash).OK {
		t.Fatalf("raw verify: %d %s", r.status, r.body)
	}
	r = e.do("POST", "/api/v1/signatures/verify?digest="+strings.Repeat("00", 32), "", "application/octet-stream", byDigest)
	raw = seal.Report{}
	r.decode(t, &raw)
	if raw.Verdict != seal.VerdictInvalid || !raw.Failed(seal.CheckDataHash) {
		t.Fatalf("raw verify with another digest: %s", r.body)
	}

	var stamps struct {
		Items []struct {
			Principal    string `json:"principal"`
			ApprovalRef  string `json:"approval_ref"`
			PropertyInfo string `json:"property_info"`
			DataHash     string `json:"data_hash"`
		}
		NextCursor string `json:"next_cursor"`
	}
	r = e.do("GET", "/api/v1/seals/"+m.ID+"/stamps?limit=3", oa, "", nil)
	r.decode(t, &stamps)
	if r.status != 200 || len(stamps.Items) != 3 || stamps.NextCursor == "" {
		t.Fatalf("stamps page 1: %d %s", r.status, r.body)
	}
	r = e.do("GET", "/api/v1/seals/"+m.ID+"/stamps?limit=3&cursor="+stamps.NextCursor, oa, "", nil)
	stamps.Items, stamps.NextCursor = nil, ""
	r.decode(t, &stamps)
	if len(stamps.Items) != 1 || stamps.NextCursor != "" {
		t.Fatalf("stamps page 2: %s", r.body)
	}
}

// crossCheck verifies the two signatures of a stamp made by the service
// with tjfoc/gmsm and OpenSSL, over the exact DER of SES_SealInfo and
// TBS_Sign cut out with encoding/asn1 (not our parser).
func crossCheck(t *testing.T, sigDER []byte) {
	t.Helper()
	maker, signer := testutil.SealSignatureParts(t, sigDER)
	pairs := []struct {
		name               string
		cert, signed, sigv []byte
	}{
		{maker.Name, maker.Cert, maker.Signed, maker.Sig},
		{signer.Name, signer.Cert, signer.Signed, signer.Sig},
	}
	_, opensslErr := exec.LookPath("openssl")
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			cert, err := tjx509.ParseCertificate(p.cert)
			if err != nil {
				t.Fatal(err)
			}
			var spki struct {
				Algo pkix.AlgorithmIdentifier
				Key  asn1.BitString
			}
			if _, err := asn1.Unmarshal(cert.RawSubjectPublicKeyInfo, &spki); err != nil || len(spki.Key.Bytes) != 65 {
				t.Fatalf("SPKI: %v", err)
			}
			pt := spki.Key.Bytes
			pub := &tjsm2.PublicKey{Curve: tjsm2.P256Sm2(), X: new(big.Int).SetBytes(pt[1:33]), Y: new(big.Int).SetBytes(pt[33:])}
			var rs struct{ R, S *big.Int }
			if _, err := asn1.Unmarshal(p.sigv, &rs); err != nil {
				t.Fatal(err)
			}
			if !tjsm2.Sm2Verify(pub, p.signed, []byte("1234567812345678"), rs.R, rs.S) {
				t.Fatal("tjfoc/gmsm rejects the signature")
			}
			bad := bytes.Clone(p.signed)
			bad[len(bad)/2] ^= 1
			if tjsm2.Sm2Verify(pub, bad, []byte("1234567812345678"), rs.R, rs.S) {
				t.Fatal("tjfoc/gmsm accepts it over other bytes")
			}
			if opensslErr != nil {
				testutil.Need(t, false, "openssl")
			}
			dir := t.TempDir()
			write := func(name string, b []byte) {
				if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			write("pub.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: cert.RawSubjectPublicKeyInfo}))
			write("sig.der", p.sigv)
			write("signed.der", p.signed)
			write("bad.der", bad)
			run := func(file string) error {
				cmd := exec.Command("openssl", "dgst", "-sm3", "-verify", "pub.pem", "-sigopt", "distid:1234567812345678", "-signature", "sig.der", file)
				cmd.Dir = dir
				out, err := cmd.CombinedOutput()
				if err != nil {
					return fmt.Errorf("%v: %s", err, out)
				}
				return nil
			}
			if err := run("signed.der"); err != nil {
				t.Fatalf("openssl rejects the signature: %v", err)
			}
			if run("bad.der") == nil {
				t.Fatal("openssl accepts it over other bytes")
			}
		})
	}
}

// TestSealStatusAndVerdicts: suspension and revocation stop stamping at
// once; earlier stamps (recorded by the registry) and stamps made outside
// the service get the verdicts documented on seal.Verifier.
func TestSealStatusAndVerdicts(t *testing.T) {
	e := newSealEnv(t, "")
	ctx := context.Background()
	oa := e.token("oa-system")
	newSeal := func() (madeSeal, []byte) {
		body := makeBody(t, "png", testPNG(t))
		body["grants"] = []string{"oa-system"}
		m := e.makeSeal(body)
		return m, e.mustStamp(m.ID, oa, document)
	}
	// outside makes a signature with the seal's holder key without the
	// service: what a leaked key or a rogue copy of it would produce.
	outside := func(m madeSeal) []byte {
		rec, err := e.seals.Store.Seal(ctx, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		signer, err := e.a.Keys.Signer(ctx, rec.HolderKeyRef)
		if err != nil {
			t.Fatal(err)
		}
		s, _ := seal.ParseSeal(rec.DER)
		h := sm3.Sum(document)
		der, err := seal.Stamp(ctx, rec.DER, s.Certs[0], signer, h[:], "outside", e.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	post := func(path string, body any) response { return e.json("POST", path, e.admin, body) }

	m, before := newSeal()
	if r := post("/api/v1/seals/"+m.ID+"/suspend", nil); r.status != 200 {
		t.Fatalf("suspend: %d %s", r.status, r.body)
	}
	r, _ := e.stampJSON(m.ID, oa, map[string]any{"data": "", "property_info": "x"})
	if r.status != http.StatusConflict || r.problem(t) != "seal-not-usable" {
		t.Fatalf("stamp with a suspended seal: %d %s", r.status, r.body)
	}
	rep := e.verify(before, document)
	requireVerdict(t, rep, seal.VerdictIndeterminate, "")
	if c := check(rep, seal.CheckSealStatus); c.Result != seal.ResultIndeterminate || !strings.Contains(c.Detail, "suspended") {
		t.Fatalf("earlier stamp of a suspended seal: %+v", c)
	}
	requireVerdict(t, e.verify(outside(m), document), seal.VerdictInvalid, seal.CheckSealStatus)
	if r := post("/api/v1/seals/"+m.ID+"/resume", nil); r.status != 200 {
		t.Fatalf("resume: %d %s", r.status, r.body)
	}
	requireVerdict(t, e.verify(e.mustStamp(m.ID, oa, document), document), seal.VerdictValid, "")

	for _, tc := range []struct {
		reason       string
		earlier      string // verdict of a stamp the registry recorded
		earlierCheck string
	}{
		{"retired", seal.VerdictValid, ""},
		{"", seal.VerdictIndeterminate, ""},
		{"compromised", seal.VerdictInvalid, seal.CheckSealStatus},
	} {
		t.Run("revoked "+tc.reason, func(t *testing.T) {
			m, before := newSeal()
			r := post("/api/v1/seals/"+m.ID+"/revoke", map[string]string{"reason": tc.reason})
			var sj api.SealJSON
			r.decode(t, &sj)
			if r.status != 200 || sj.Status != "revoked" || sj.StatusChangedAt == nil {
				t.Fatalf("revoke: %d %s", r.status, r.body)
			}
			r, _ = e.stampJSON(m.ID, oa, map[string]any{"data": "", "property_info": "x"})
			if r.status != http.StatusConflict {
				t.Fatalf("stamp with a revoked seal: %d %s", r.status, r.body)
			}
			for _, action := range []string{"resume", "suspend"} {
				if r := post("/api/v1/seals/"+m.ID+"/"+action, nil); r.status != http.StatusConflict || r.problem(t) != "seal-state-conflict" {
					t.Fatalf("%s a revoked seal: %d %s", action, r.status, r.body)
				}
			}
			if r := post("/api/v1/seals/"+m.ID+"/revoke", nil); r.status != 200 {
				t.Fatalf("revoking again: %d %s", r.status, r.body)
			}
			requireVerdict(t, e.verify(before, document), tc.earlier, tc.earlierCheck)
			requireVerdict(t, e.verify(outside(m), document), seal.VerdictInvalid, seal.CheckSealStatus)
		})
	}

	t.Run("holder certificate revoked", func(t *testing.T) {
		m, before := newSeal()
		rec, _ := e.seals.Store.Seal(ctx, m.ID)
		e.clock.advance(2 * time.Second)
		if _, err := e.a.Authority.Revoke(ctx, ca.RevokeRequest{Serial: rec.HolderSerial, Reason: ca.ReasonSuperseded, By: "test"}); err != nil {
			t.Fatal(err)
		}
		e.clock.advance(2 * time.Second)
		r, _ := e.stampJSON(m.ID, oa, map[string]any{"data": "", "property_info": "x"})
		if r.status != http.StatusConflict || !strings.Contains(string(r.body), "holder certificate") {
			t.Fatalf("stamp after the holder certificate was revoked: %d %s", r.status, r.body)
		}
		// Made after the revocation: invalid, naming revocation.
		rep := e.verify(outside(m), document)
		requireVerdict(t, rep, seal.VerdictInvalid, seal.CheckRevocation)
		// Made before it (superseded, not key compromise): the signing
		// time is only the signer's claim, so it cannot be valid.
		rep = e.verify(before, document)
		requireVerdict(t, rep, seal.VerdictIndeterminate, "")
		if c := check(rep, seal.CheckRevocation); c.Result != seal.ResultIndeterminate {
			t.Fatalf("revocation check of an earlier stamp: %+v", c)
		}
	})

	t.Run("outside validity", func(t *testing.T) {
		body := makeBody(t, "png", testPNG(t))
		body["valid_days"] = 1
		body["grants"] = []string{"oa-system"}
		m := e.makeSeal(body)
		e.clock.advance(25 * time.Hour)
		r, _ := e.stampJSON(m.ID, oa, map[string]any{"data": "", "property_info": "x"})
		if r.status != http.StatusConflict || !strings.Contains(string(r.body), "valid") {
			t.Fatalf("stamp after the seal expired: %d %s", r.status, r.body)
		}
	})
}

// TestSealTamperingAPI: one flipped byte anywhere that matters makes the
// public endpoint say invalid, naming the check that caught it.
func TestSealTamperingAPI(t *testing.T) {
	e := newSealEnv(t, "")
	pic := testPNG(t)
	body := makeBody(t, "png", pic)
	body["grants"] = []string{"oa"}
	m := e.makeSeal(body)
	der := e.mustStamp(m.ID, e.token("oa"), document)
	sig, err := seal.ParseSignature(der)
	if err != nil {
		t.Fatal(err)
	}
	requireVerdict(t, e.verify(der, document), seal.VerdictValid, "")

	// flip returns der with one byte changed at the middle (or at an
	// offset from the end) of the first or last occurrence of part.
	flip := func(part []byte, last bool, fromEnd int) []byte {
		t.Helper()
		i := bytes.Index(der, part)
		if last {
			i = bytes.LastIndex(der, part)
		}
		if i < 0 {
			t.Fatal("part not found")
		}
		out := bytes.Clone(der)
		at := i + len(part)/2
		if fromEnd > 0 {
			at = i + len(part) - fromEnd
		}
		out[at] ^= 0x01
		return out
	}
	validEnd := []byte(sig.Seal.ValidEnd.UTC().Format("20060102150405Z"))
	timeInfo := []byte(sig.TimeInfo.UTC().Format("20060102150405Z"))
	for _, tc := range []struct {
		name string
		der  []byte
		doc  []byte
		want string
	}{
		{"document", der, append(bytes.Clone(document[:len(document)-1]), document[len(document)-1]^1), seal.CheckDataHash},
		{"picture", flip(pic, false, 0), document, seal.CheckSealSignature},
		{"seal validEnd", flip(validEnd, false, 2), document, seal.CheckSealSignature},
		{"timeInfo", flip(timeInfo, true, 2), document, seal.CheckSignature},
		{"cert list", flip(sig.Seal.Certs[0], false, 0), document, seal.CheckSealSignature},
		{"maker signature", flip(sig.Seal.SignedValue, false, 1), document, seal.CheckSealSignature},
		{"signer signature", flip(sig.Value, true, 1), document, seal.CheckSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := e.verify(tc.der, tc.doc)
			requireVerdict(t, rep, seal.VerdictInvalid, tc.want)
		})
	}
	// Not a signature at all: still a 200 report, failing structure.
	requireVerdict(t, e.verify([]byte{0x30, 0x03, 0x02, 0x01}, nil), seal.VerdictInvalid, seal.CheckStructure)
}

// TestSealBadInput: every malformed request gets a clear problem and
// leaves nothing behind.
func TestSealBadInput(t *testing.T) {
	e := newSealEnv(t, "")
	pic := testPNG(t)
	withPicture := func(mod func(p map[string]any)) map[string]any {
		b := makeBody(t, "png", pic)
		mod(b["picture"].(map[string]any))
		return b
	}
	huge := append(bytes.Clone(pic), make([]byte, seal.MaxPictureSize)...)
	for _, tc := range []struct {
		name    string
		body    any
		raw     []byte
		status  int
		problem string
	}{
		{"bad base64", withPicture(func(p map[string]any) { p["data"] = "not base64!" }), nil, 400, "bad-base64"},
		{"PNG declared, JPEG magic", withPicture(func(p map[string]any) {
			p["data"] = base64.StdEncoding.EncodeToString([]byte{0xff, 0xd8, 0xff, 0xe0, 1, 2})
		}), nil, 422, "bad-picture"},
		{"GIF declared, PNG data", withPicture(func(p map[string]any) { p["type"] = "gif" }), nil, 422, "bad-picture"},
		{"SVG that is not XML", withPicture(func(p map[string]any) {
			p["type"], p["data"] = "svg", base64.StdEncoding.EncodeToString([]byte("<svg><g></svg>"))
		}), nil, 422, "bad-picture"},
		{"SVG with another root", withPicture(func(p map[string]any) {
			p["type"], p["data"] = "svg", base64.StdEncoding.EncodeToString([]byte(`<html><svg xmlns="http://www.w3.org/2000/svg"/></html>`))
		}), nil, 422, "bad-picture"},
		{"unknown picture type", withPicture(func(p map[string]any) { p["type"] = "bmp" }), nil, 422, "bad-picture"},
		{"zero width", withPicture(func(p map[string]any) { p["width_mm"] = 0 }), nil, 422, "bad-picture"},
		{"201 mm", withPicture(func(p map[string]any) { p["height_mm"] = 201 }), nil, 422, "bad-picture"},
		{"picture over 1 MiB", withPicture(func(p map[string]any) { p["data"] = base64.StdEncoding.EncodeToString(huge) }), nil, 413, "picture-too-large"},
		{"body over 2 MiB", nil, append([]byte(`{"name":"`), bytes.Repeat([]byte("a"), api.MaxSealBody)...), 413, "body-too-large"},
		{"unknown type", func() any { b := makeBody(t, "png", pic); b["type"] = "secret"; return b }(), nil, 400, "invalid-seal-request"},
		{"no validity", func() any { b := makeBody(t, "png", pic); delete(b, "valid_days"); return b }(), nil, 400, "invalid-seal-request"},
		{"unknown field", func() any { b := makeBody(t, "png", pic); b["colour"] = "red"; return b }(), nil, 400, "bad-json"},
		{"holder certificate not ours", func() any {
			b := makeBody(t, "png", pic)
			b["certificate"] = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
			return b
		}(), nil, 422, "bad-holder-certificate"},
	} {
		t.Run("make/"+tc.name, func(t *testing.T) {
			raw := tc.raw
			if raw == nil {
				raw, _ = json.Marshal(tc.body)
			}
			r := e.do("POST", "/api/v1/seals", e.admin, "application/json", raw)
			if r.status != tc.status || r.problem(t) != tc.problem {
				t.Fatalf("got %d %s, want %d %s", r.status, r.body, tc.status, tc.problem)
			}
		})
	}
	// Nothing was made: no seal, no holder certificate, no seal maker.
	ctx := context.Background()
	if recs, _, err := e.seals.Store.Seals(ctx, seal.Filter{}); err != nil || len(recs) != 0 {
		t.Fatalf("seals after bad requests: %d, %v", len(recs), err)
	}
	if certs, _, err := e.a.Authority.List(ctx, ca.Filter{Profile: "seal-signer"}); err != nil || len(certs) != 0 {
		t.Fatalf("holder certificates after bad requests: %d, %v", len(certs), err)
	}
	if makers, err := e.a.Store.Signers(ctx, ca.PurposeSealMaker); err != nil || len(makers) != 0 {
		t.Fatalf("seal makers after bad requests: %d, %v", len(makers), err)
	}

	body := makeBody(t, "png", pic)
	body["grants"] = []string{"oa"}
	m := e.makeSeal(body)
	oa := e.token("oa")
	for _, tc := range []struct {
		name, path, ctype string
		body              []byte
		status            int
		problem           string
	}{
		{"bad base64", m.ID, "", []byte(`{"data":"%%%","property_info":"x"}`), 400, "bad-base64"},
		{"bad digest", m.ID, "", []byte(`{"digest":"abcd","property_info":"x"}`), 400, "bad-digest"},
		{"data and digest", m.ID, "", []byte(`{"data":"","digest":"00","property_info":"x"}`), 400, "missing-field"},
		{"neither", m.ID, "", []byte(`{"property_info":"x"}`), 400, "missing-field"},
		{"non-ASCII property_info", m.ID, "", []byte(`{"data":"","property_info":"/文档/签名.xml"}`), 400, "invalid-seal-request"},
		{"control character in property_info", m.ID, "", []byte(`{"data":"","property_info":"a\u0000b"}`), 400, "invalid-seal-request"},
		{"unknown seal", "no-such-seal", "", []byte(`{"data":"","property_info":"x"}`), 404, "seal-not-found"},
		{"neither JSON nor an upload", m.ID, "text/plain", []byte(`hello`), 400, "bad-json"},
		{"JSON over the limit", m.ID, "", append([]byte(`{"data":"`), bytes.Repeat([]byte("A"), api.MaxStampJSONBody)...), 413, "body-too-large"},
		{"multipart without a file", m.ID, "multipart/form-data; boundary=X", []byte("--X\r\nContent-Disposition: form-data; name=\"property_info\"\r\n\r\nx\r\n--X--\r\n"), 400, "missing-field"},
	} {
		t.Run("stamp/"+tc.name, func(t *testing.T) {
			r := e.do("POST", "/api/v1/seals/"+tc.path+"/stamp", oa, tc.ctype, tc.body)
			if r.status != tc.status || r.problem(t) != tc.problem {
				t.Fatalf("got %d %s, want %d %s", r.status, r.body, tc.status, tc.problem)
			}
		})
	}
	if st, _, err := e.seals.Store.Stamps(ctx, seal.StampFilter{SealID: m.ID}); err != nil || len(st) != 0 {
		t.Fatalf("stamps after bad requests: %d, %v", len(st), err)
	}
	for _, tc := range []struct {
		name, path string
		status     int
		problem    string
	}{
		{"unknown seal", "/api/v1/seals/no-such-seal", 404, "seal-not-found"},
		{"unknown seal picture", "/api/v1/seals/no-such-seal/picture", 404, "seal-not-found"},
		{"bad status filter", "/api/v1/seals?status=lost", 400, "bad-filter"},
		{"bad cursor", "/api/v1/seals?cursor=%21%21", 400, "invalid-seal-request"},
	} {
		t.Run("get/"+tc.name, func(t *testing.T) {
			r := e.do("GET", tc.path, e.admin, "", nil)
			if r.status != tc.status || r.problem(t) != tc.problem {
				t.Fatalf("got %d %s, want %d %s", r.status, r.body, tc.status, tc.problem)
			}
		})
	}
	for _, tc := range []struct {
		name    string
		body    string
		status  int
		problem string
	}{
		{"bad base64", `{"signature":"***"}`, 400, "bad-base64"},
		{"no signature", `{"data":""}`, 400, "missing-field"},
		{"bad digest", `{"signature":"MAA=","digest":"xyz"}`, 400, "bad-digest"},
		{"not JSON", `signature=abc`, 400, "bad-json"},
	} {
		t.Run("verify/"+tc.name, func(t *testing.T) {
			r := e.do("POST", "/api/v1/signatures/verify", "", "application/json", []byte(tc.body))
			if r.status != tc.status || r.problem(t) != tc.problem {
				t.Fatalf("got %d %s, want %d %s", r.status, r.body, tc.status, tc.problem)
			}
		})
	}
	for _, tc := range []struct {
		name, query string
		body        []byte
		status      int
		problem     string
	}{
		{"empty DER body", "", nil, 400, "missing-field"},
		{"DER with a bad digest", "?digest=zz", []byte{0x30, 0}, 400, "bad-digest"},
		{"DER over the limit", "", make([]byte, seal.MaxInputSize+1), 413, "body-too-large"},
	} {
		t.Run("verify/"+tc.name, func(t *testing.T) {
			r := e.do("POST", "/api/v1/signatures/verify"+tc.query, "", "application/octet-stream", tc.body)
			if r.status != tc.status || r.problem(t) != tc.problem {
				t.Fatalf("got %d %s, want %d %s", r.status, r.body, tc.status, tc.problem)
			}
		})
	}
	// Seal endpoints other than verify need a token.
	if r := e.do("GET", "/api/v1/seals/"+m.ID, "", "", nil); r.status != http.StatusUnauthorized {
		t.Fatalf("GET seal without a token: %d", r.status)
	}
}

// TestSealSVGPicture: an SVG picture is accepted and served so that a
// browser opening it runs nothing.
func TestSealSVGPicture(t *testing.T) {
	e := newSealEnv(t, "")
	svg := []byte(`<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="40mm" height="40mm"><circle cx="20" cy="20" r="18" stroke="red" fill="none"/></svg>`)
	m := e.makeSeal(makeBody(t, "svg", svg))
	r := e.do("GET", "/api/v1/seals/"+m.ID+"/picture", e.admin, "", nil)
	if r.status != 200 || !bytes.Equal(r.body, svg) || r.header.Get("Content-Type") != "image/svg+xml" ||
		r.header.Get("Content-Security-Policy") != "default-src 'none'; style-src 'unsafe-inline'" || r.header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("SVG picture: %d %v", r.status, r.header)
	}
}

// TestSealGivenHolder: a seal can name an existing seal-signer
// certificate of ours whose key we hold; anything else is refused.
func TestSealGivenHolder(t *testing.T) {
	e := newSealEnv(t, "")
	ctx := context.Background()
	first := e.makeSeal(makeBody(t, "png", testPNG(t)))
	rec, err := e.seals.Store.Seal(ctx, first.ID)
	if err != nil {
		t.Fatal(err)
	}
	ocsp, err := e.a.Store.Signers(ctx, ca.PurposeOCSP)
	if err != nil || len(ocsp) == 0 {
		t.Fatal("no OCSP signer", err)
	}
	with := func(mod func(b map[string]any)) map[string]any {
		b := makeBody(t, "png", testPNG(t))
		b["name"] = "测试市财政局 财务专用章"
		b["type"] = "finance"
		b["certificate"] = first.Certificate
		// Within the holder certificate, made with the first seal for
		// the 365 days makeBody asks: 365 again would outlive it
		// whenever a second boundary passes between the two calls.
		b["valid_days"] = 300
		mod(b)
		return b
	}
	// The key is found through the first seal; key_ref may also be given.
	for _, b := range []map[string]any{with(func(map[string]any) {}), with(func(b map[string]any) { b["key_ref"] = rec.HolderKeyRef })} {
		m := e.makeSeal(b)
		if m.Certificate != first.Certificate {
			t.Fatal("the second seal does not carry the given holder certificate")
		}
		s, _ := seal.ParseSeal(mustB64(t, m.Seal))
		if s.Type != seal.TypeFinance || !strings.HasPrefix(m.ESID, "37000005") {
			t.Fatalf("finance seal: type %d, esID %s", s.Type, m.ESID)
		}
	}
	for _, tc := range []struct {
		name string
		body map[string]any
	}{
		{"longer than the certificate", with(func(b map[string]any) { b["valid_days"] = 1500 })},
		{"another department", with(func(b map[string]any) { b["department"] = "other" })},
		{"wrong key", with(func(b map[string]any) { b["key_ref"] = ocsp[0].KeyRef })},
		{"unknown key", with(func(b map[string]any) { b["key_ref"] = "soft:nope" })},
		{"not a seal-signer certificate", with(func(b map[string]any) {
			b["certificate"] = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ocsp[0].DER}))
		})},
		{"a CA certificate", with(func(b map[string]any) {
			b["certificate"] = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.a.Authority.CAs()[0].DER}))
		})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.json("POST", "/api/v1/seals", e.admin, tc.body)
			if r.status != http.StatusUnprocessableEntity || r.problem(t) != "bad-holder-certificate" {
				t.Fatalf("got %d %s", r.status, r.body)
			}
		})
	}
	// A revoked holder certificate makes no new seal.
	if _, err := e.a.Authority.Revoke(ctx, ca.RevokeRequest{Serial: rec.HolderSerial, Reason: ca.ReasonSuperseded}); err != nil {
		t.Fatal(err)
	}
	if r := e.json("POST", "/api/v1/seals", e.admin, with(func(map[string]any) {})); r.status != http.StatusUnprocessableEntity {
		t.Fatalf("revoked holder: %d %s", r.status, r.body)
	}
}

func mustB64(t testing.TB, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestVerifyForeignSignature: a real signature from another PKI (the
// KingGrid e-invoice test system) verifies through the public endpoint
// without crashing and, since neither its CA nor its seal is ours, is at
// best indeterminate, naming why.
func TestVerifyForeignSignature(t *testing.T) {
	e := newSealEnv(t, "")
	sig, err := os.ReadFile(filepath.Join("..", "..", "seal", "testdata", "v4_kinggrid_999_SignedValue.dat"))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join("..", "..", "seal", "testdata", "v4_kinggrid_999_Signature.xml"))
	if err != nil {
		t.Fatal(err)
	}
	rep := e.verify(sig, doc)
	// Its seal expired in 2023: the signing time (2020) is what counts.
	requireVerdict(t, rep, seal.VerdictIndeterminate, "")
	for name, want := range map[string]string{
		seal.CheckSealSignature: seal.ResultPass, seal.CheckSignature: seal.ResultPass, seal.CheckDataHash: seal.ResultPass,
		seal.CheckChain: seal.ResultIndeterminate, seal.CheckRevocation: seal.ResultIndeterminate, seal.CheckSealStatus: seal.ResultIndeterminate,
	} {
		if c := check(rep, name); c.Result != want {
			t.Errorf("%s: %+v, want %s", name, c, want)
		}
	}
	if c := check(rep, seal.CheckRevocation); !strings.Contains(c.Detail, "not issued by this instance") {
		t.Errorf("revocation detail %q", c.Detail)
	}
	if c := check(rep, seal.CheckSealStatus); !strings.Contains(c.Detail, "unknown to this registry") {
		t.Errorf("seal_status detail %q", c.Detail)
	}
}
