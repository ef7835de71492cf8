package ocsp_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/gmtrust/gmtrust/hsm"
	"github.com/gmtrust/gmtrust/ocsp"
)

func (e *env) get(t testing.TB, path string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "http://gmtrust.test"+path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	e.handler.ServeHTTP(w, req)
	return w
}

// awkwardRequest returns a request for an unknown serial whose standard
// base64 contains '/', '+' and padding, the characters GET paths mangle.
func awkwardRequest(t testing.TB, e *env) ([]byte, string) {
	t.Helper()
	for range 10000 {
		b := make([]byte, 15)
		rand.Read(b)
		b[0] = b[0]&0x3f | 0x10
		der := buildRequest(t, []ocsp.CertID{e.certID(t, ocsp.HashSHA1, hex.EncodeToString(b))}, reqOpts{})
		enc := base64.StdEncoding.EncodeToString(der)
		if strings.Contains(enc, "/") && strings.Contains(enc, "+") && strings.HasSuffix(enc, "=") && strings.Contains(enc, "//") {
			return der, enc
		}
	}
	t.Fatal("no request with '/', '//', '+' and '=' in its base64")
	return nil, ""
}

func TestHandlerGET(t *testing.T) {
	e := newEnv(t, hsm.SM2, "", envConfig{})
	der, enc := awkwardRequest(t, e)
	want, err := ocsp.ParseRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	escaped := strings.NewReplacer("/", "%2F", "+", "%2B", "=", "%3D").Replace(enc)
	tests := []struct {
		name string
		path string
		want ocsp.ResponseStatus
	}{
		{"raw '/' '+' and '//'", "/ocsp/" + enc, ocsp.Successful},
		{"URL-escaped", "/ocsp/" + escaped, ocsp.Successful},
		{"lower-case escapes", "/ocsp/" + strings.NewReplacer("%2F", "%2f", "%2B", "%2b", "%3D", "%3d").Replace(escaped), ocsp.Successful},
		{"only '=' escaped", "/ocsp/" + strings.ReplaceAll(enc, "=", "%3D"), ocsp.Successful},
		{"unpadded", "/ocsp/" + strings.TrimRight(enc, "="), ocsp.Successful},
		{"base64url", "/ocsp/" + base64.URLEncoding.EncodeToString(der), ocsp.Successful},
		{"empty", "/ocsp/", ocsp.MalformedRequest},
		{"no slash", "/ocsp", ocsp.MalformedRequest},
		{"not base64", "/ocsp/!!!notbase64", ocsp.MalformedRequest},
		{"escaped garbage", "/ocsp/%00%01%02%03", ocsp.MalformedRequest},
		{"base64 of garbage", "/ocsp/" + base64.StdEncoding.EncodeToString([]byte("garbage")), ocsp.MalformedRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := e.get(t, tt.path, nil)
			if w.Code != http.StatusOK {
				t.Fatalf("HTTP %d", w.Code)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/ocsp-response" {
				t.Errorf("Content-Type %q", ct)
			}
			if got := e.status(t, w.Body.Bytes()); got != tt.want {
				t.Fatalf("status %v, want %v", got, tt.want)
			}
			if tt.want != ocsp.Successful {
				return
			}
			s := e.single(t, w.Body.Bytes())
			if s.Status != ocsp.Unknown || s.CertID.SerialNumber.Cmp(want.CertIDs[0].SerialNumber) != 0 {
				t.Errorf("answered %v for serial %x", s.Status, s.CertID.SerialNumber)
			}
		})
	}
}

var maxAgeRE = regexp.MustCompile(`^max-age=(\d+), public, no-transform, must-revalidate$`)

func maxAge(t testing.TB, w *httptest.ResponseRecorder) time.Duration {
	t.Helper()
	m := maxAgeRE.FindStringSubmatch(w.Header().Get("Cache-Control"))
	if m == nil {
		t.Fatalf("Cache-Control %q", w.Header().Get("Cache-Control"))
	}
	n, _ := strconv.Atoi(m[1])
	return time.Duration(n) * time.Second
}

func TestHandlerCaching(t *testing.T) {
	e := newEnv(t, hsm.ECDSAP256, "", envConfig{cfg: ocsp.Config{HTTPMaxAge: 30 * time.Minute, NegativeMaxAge: 7 * time.Second}})
	serial := e.issue(t).Serial
	der := buildRequest(t, []ocsp.CertID{e.certID(t, ocsp.HashSHA256, serial)}, reqOpts{})
	path := "/ocsp/" + base64.StdEncoding.EncodeToString(der)

	w := e.get(t, path, nil)
	if w.Code != http.StatusOK {
		t.Fatalf("HTTP %d", w.Code)
	}
	s := e.single(t, w.Body.Bytes())
	h := w.Header()
	if got := maxAge(t, w); got != 30*time.Minute {
		t.Errorf("max-age %v, want the 30 min cap", got)
	}
	if h.Get("Last-Modified") != s.ThisUpdate.UTC().Format(http.TimeFormat) {
		t.Errorf("Last-Modified %q, thisUpdate %v", h.Get("Last-Modified"), s.ThisUpdate)
	}
	if h.Get("Expires") != s.NextUpdate.UTC().Format(http.TimeFormat) {
		t.Errorf("Expires %q, nextUpdate %v", h.Get("Expires"), s.NextUpdate)
	}
	etag := h.Get("ETag")
	if !regexp.MustCompile(`^"[0-9a-f]{16}"$`).MatchString(etag) {
		t.Errorf("ETag %q", etag)
	}
	if h.Get("Content-Length") != strconv.Itoa(w.Body.Len()) {
		t.Errorf("Content-Length %q for %d bytes", h.Get("Content-Length"), w.Body.Len())
	}
	lastMod := h.Get("Last-Modified")
	earlier := s.ThisUpdate.Add(-time.Second).UTC().Format(http.TimeFormat)

	tests := []struct {
		name string
		hdr  map[string]string
		want int
	}{
		{"If-None-Match", map[string]string{"If-None-Match": etag}, http.StatusNotModified},
		{"weak If-None-Match", map[string]string{"If-None-Match": "W/" + etag}, http.StatusNotModified},
		{"If-None-Match list", map[string]string{"If-None-Match": `"0000000000000000", ` + etag}, http.StatusNotModified},
		{"If-None-Match *", map[string]string{"If-None-Match": "*"}, http.StatusNotModified},
		{"If-None-Match other", map[string]string{"If-None-Match": `"0000000000000000"`}, http.StatusOK},
		{"If-Modified-Since thisUpdate", map[string]string{"If-Modified-Since": lastMod}, http.StatusNotModified},
		{"If-Modified-Since earlier", map[string]string{"If-Modified-Since": earlier}, http.StatusOK},
		{"If-Modified-Since unparsable", map[string]string{"If-Modified-Since": "yesterday"}, http.StatusOK},
		{"If-None-Match wins over If-Modified-Since", map[string]string{"If-None-Match": `"0000000000000000"`, "If-Modified-Since": lastMod}, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := e.get(t, path, tt.hdr)
			if w.Code != tt.want {
				t.Fatalf("HTTP %d, want %d", w.Code, tt.want)
			}
			if w.Header().Get("ETag") != etag {
				t.Errorf("ETag %q, want %q", w.Header().Get("ETag"), etag)
			}
			maxAge(t, w)
			if tt.want == http.StatusNotModified && w.Body.Len() != 0 {
				t.Error("304 with a body")
			}
			if tt.want == http.StatusOK && w.Body.Len() == 0 {
				t.Error("200 without a body")
			}
		})
	}

	t.Run("max-age stops at nextUpdate", func(t *testing.T) {
		e.clock.Advance(s.NextUpdate.Sub(e.clock.Now()) - 10*time.Minute)
		defer e.clock.Advance(-(s.NextUpdate.Sub(e.clock.Now()) - 10*time.Minute))
		w := e.get(t, path, nil)
		// The cached response is still within its nextUpdate, or a new one
		// was signed: either way max-age must not pass nextUpdate.
		s := e.single(t, w.Body.Bytes())
		if got, limit := maxAge(t, w), s.NextUpdate.Sub(e.clock.Now()); got > limit {
			t.Errorf("max-age %v beyond nextUpdate (%v away)", got, limit)
		}
	})
	t.Run("unknown: short max-age", func(t *testing.T) {
		w := e.get(t, "/ocsp/"+base64.StdEncoding.EncodeToString(buildRequest(t, []ocsp.CertID{e.certID(t, ocsp.HashSHA1, "7e57")}, reqOpts{})), nil)
		if got := maxAge(t, w); got > 7*time.Second {
			t.Errorf("max-age %v for unknown", got)
		}
	})
	t.Run("POST is not cacheable", func(t *testing.T) {
		w := e.post(t, der)
		if w.Header().Get("Cache-Control") != "no-store" || w.Header().Get("ETag") != "" {
			t.Errorf("headers %v", w.Header())
		}
	})
	t.Run("nonce GET is not cacheable", func(t *testing.T) {
		nd := buildRequest(t, []ocsp.CertID{e.certID(t, ocsp.HashSHA256, serial)}, reqOpts{nonce: []byte("n")})
		w := e.get(t, "/ocsp/"+base64.StdEncoding.EncodeToString(nd), map[string]string{"If-None-Match": "*"})
		if w.Code != http.StatusOK || w.Header().Get("Cache-Control") != "no-store" || w.Header().Get("ETag") != "" {
			t.Errorf("HTTP %d, headers %v", w.Code, w.Header())
		}
	})
	t.Run("error statuses are not cacheable", func(t *testing.T) {
		w := e.get(t, "/ocsp/AAAA", nil)
		if w.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("headers %v", w.Header())
		}
	})
}

func TestHandlerPOST(t *testing.T) {
	e := newEnv(t, hsm.SM2, "", envConfig{})
	serial := e.issue(t).Serial
	good := buildRequest(t, []ocsp.CertID{e.certID(t, ocsp.HashSM3, serial)}, reqOpts{})
	big := bytes.Repeat([]byte{0x30}, ocsp.MaxRequestSize+1)
	tests := []struct {
		name     string
		method   string
		body     []byte
		chunked  bool // no Content-Length
		wantHTTP int
		want     ocsp.ResponseStatus
	}{
		{"good", http.MethodPost, good, false, http.StatusOK, ocsp.Successful},
		{"good, chunked", http.MethodPost, good, true, http.StatusOK, ocsp.Successful},
		{"empty", http.MethodPost, nil, false, http.StatusOK, ocsp.MalformedRequest},
		{"garbage", http.MethodPost, []byte("GET / HTTP/1.1"), false, http.StatusOK, ocsp.MalformedRequest},
		{"largest accepted size", http.MethodPost, big[:ocsp.MaxRequestSize], false, http.StatusOK, ocsp.MalformedRequest},
		{"oversized", http.MethodPost, big, false, http.StatusRequestEntityTooLarge, ocsp.MalformedRequest},
		{"oversized, chunked", http.MethodPost, big, true, http.StatusRequestEntityTooLarge, ocsp.MalformedRequest},
		{"PUT", http.MethodPut, good, false, http.StatusMethodNotAllowed, 0},
		{"DELETE", http.MethodDelete, nil, false, http.StatusMethodNotAllowed, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, "/ocsp", bytes.NewReader(tt.body))
			if tt.chunked {
				req.ContentLength = -1
				req.Body = readerOnly{bytes.NewReader(tt.body)}
			}
			w := httptest.NewRecorder()
			e.handler.ServeHTTP(w, req)
			if w.Code != tt.wantHTTP {
				t.Fatalf("HTTP %d, want %d", w.Code, tt.wantHTTP)
			}
			if tt.wantHTTP == http.StatusMethodNotAllowed {
				if w.Header().Get("Allow") == "" {
					t.Error("405 without Allow")
				}
				return
			}
			if got := e.status(t, w.Body.Bytes()); got != tt.want {
				t.Fatalf("status %v, want %v", got, tt.want)
			}
			if tt.want == ocsp.Successful {
				if s := e.single(t, w.Body.Bytes()); s.Status != ocsp.Good {
					t.Errorf("answered %v", s.Status)
				}
			}
		})
	}
	t.Run("body read error", func(t *testing.T) {
		req := httptest.NewRequest(http.MethodPost, "/ocsp", nil)
		req.Body = readerOnly{iotest.ErrReader(context.Canceled)}
		w := httptest.NewRecorder()
		e.handler.ServeHTTP(w, req)
		if w.Code != http.StatusOK || e.status(t, w.Body.Bytes()) != ocsp.MalformedRequest {
			t.Errorf("HTTP %d", w.Code)
		}
	})
	t.Run("HEAD", func(t *testing.T) {
		srv := httptest.NewServer(e.handler)
		defer srv.Close()
		resp, err := http.Head(srv.URL + "/ocsp/" + base64.StdEncoding.EncodeToString(good))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("ETag") == "" {
			t.Errorf("HTTP %d, headers %v", resp.StatusCode, resp.Header)
		}
	})
}

type readerOnly struct {
	r interface{ Read([]byte) (int, error) }
}

func (r readerOnly) Read(p []byte) (int, error) { return r.r.Read(p) }
func (r readerOnly) Close() error               { return nil }

// TestMux: the dispatcher sends the OCSP paths to the responder and
// everything else on.
func TestMux(t *testing.T) {
	e := newEnv(t, hsm.ECDSAP256, "", envConfig{})
	next := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })
	h := e.handler.Mux(next)
	for path, want := range map[string]int{
		"/ocsp": http.StatusOK, "/ocsp/": http.StatusOK, "/ocsp/AAAA": http.StatusOK,
		"/ocspx": http.StatusTeapot, "/api/v1/cas": http.StatusTeapot, "/": http.StatusTeapot,
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		if w.Code != want {
			t.Errorf("%s: HTTP %d, want %d", path, w.Code, want)
		}
	}
}

// FuzzHandler feeds raw POST bodies and GET paths through the handler. It
// must never panic, and every answer must be a well-formed OCSP response
// with HTTP 200 (or 413 for an oversized body); a 5xx never happens
// because failures are OCSP statuses (tryLater, internalError), and with
// a working store they must not occur either.
func FuzzHandler(f *testing.F) {
	e := newEnv(f, hsm.SM2, "", envConfig{})
	serial := e.issue(f).Serial
	seeds, _ := filepath.Glob(filepath.Join("testdata", "req-*.der"))
	for _, name := range seeds {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, base64.StdEncoding.EncodeToString(b))
	}
	for _, h := range []ocsp.HashAlg{ocsp.HashSHA1, ocsp.HashSHA256, ocsp.HashSM3} {
		der := buildRequest(f, []ocsp.CertID{e.certID(f, h, serial)}, reqOpts{})
		f.Add(der, base64.StdEncoding.EncodeToString(der))
		der = buildRequest(f, []ocsp.CertID{e.certID(f, h, serial), e.certID(f, h, "1")}, reqOpts{nonce: []byte("fuzz")})
		f.Add(der, url64(der))
	}
	f.Add([]byte{}, "")
	f.Add([]byte{0x30, 0x80}, "%2F%2B%3D")

	f.Fuzz(func(t *testing.T, body []byte, path string) {
		check := func(what string, w *httptest.ResponseRecorder) {
			switch w.Code {
			case http.StatusOK, http.StatusRequestEntityTooLarge:
			default:
				t.Fatalf("%s: HTTP %d", what, w.Code)
			}
			r, err := ocsp.ParseResponse(w.Body.Bytes())
			if err != nil {
				t.Fatalf("%s: unparsable answer: %v", what, err)
			}
			switch r.Status {
			case ocsp.Successful, ocsp.MalformedRequest, ocsp.Unauthorized:
			default:
				t.Fatalf("%s: status %v", what, r.Status)
			}
		}
		w := httptest.NewRecorder()
		e.handler.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/ocsp", bytes.NewReader(body)))
		check("POST", w)

		req := httptest.NewRequest(http.MethodGet, "/ocsp/x", nil)
		// Set the raw path as a client could send it, bypassing the URL
		// parser's own checks.
		req.URL.Path, req.URL.RawPath = "/ocsp/"+path, ""
		if p, err := urlUnescapePath(path); err == nil {
			req.URL.Path, req.URL.RawPath = "/ocsp/"+p, "/ocsp/"+path
		}
		w = httptest.NewRecorder()
		e.handler.ServeHTTP(w, req)
		check("GET", w)
	})
}

func url64(b []byte) string {
	return strings.NewReplacer("/", "%2F", "+", "%2B", "=", "%3D").Replace(base64.StdEncoding.EncodeToString(b))
}

// urlUnescapePath is a strict %XX decoder, to build plausible URLs.
func urlUnescapePath(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", strconv.ErrSyntax
		}
		v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", err
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), nil
}

// TestSerialBoundaries: the longest serials RFC 5280 allows and serial
// zero are looked up, not rejected (they are simply unknown here).
func TestSerialBoundaries(t *testing.T) {
	e := newEnv(t, hsm.ECDSAP256, "", envConfig{})
	ctx := context.Background()
	for _, sn := range []*big.Int{big.NewInt(0), big.NewInt(1), new(big.Int).SetBytes(bytes.Repeat([]byte{0x7f}, 20))} {
		id, err := ocsp.NewCertID(ocsp.HashSHA1, e.issuing.RawSubject, e.issuing.RawSubjectPublicKeyInfo, sn)
		if err != nil {
			t.Fatal(err)
		}
		ans := e.resp.Respond(ctx, buildRequest(t, []ocsp.CertID{id}, reqOpts{}))
		if s := e.single(t, ans.DER); s.Status != ocsp.Unknown || s.CertID.SerialNumber.Cmp(sn) != 0 {
			t.Errorf("serial %x: %v", sn, s.Status)
		}
	}
	// The issuing CA's own certificate was issued by the root, which this
	// responder does not answer for.
	rootIssued, err := ocsp.NewCertID(ocsp.HashSHA1, e.root.RawSubject, e.root.RawSubjectPublicKeyInfo, e.issuing.SerialNumber)
	if err != nil {
		t.Fatal(err)
	}
	if ans := e.resp.Respond(ctx, buildRequest(t, []ocsp.CertID{rootIssued}, reqOpts{})); ans.Status != ocsp.Unauthorized {
		t.Errorf("root-issued certificate: %v", ans.Status)
	}
}

// BenchmarkHandler measures the handler in-process (no network): the
// pre-signed path for POST and GET, and live signing for nonce requests,
// over 1000 certificates.
func BenchmarkHandler(b *testing.B) {
	for _, alg := range []hsm.Algorithm{hsm.SM2, hsm.ECDSAP256} {
		e := newEnv(b, alg, "", envConfig{})
		serials := e.insertFake(b, 1000, e.clock.Now().Add(365*24*time.Hour))
		if _, err := ocsp.NewPresigner(e.resp, e.store, e.app.Store, ocsp.PresignConfig{Rate: -1}).RunOnce(context.Background()); err != nil {
			b.Fatal(err)
		}
		plain := make([][]byte, len(serials))
		nonced := make([][]byte, len(serials))
		paths := make([]string, len(serials))
		for i, s := range serials {
			plain[i] = buildRequest(b, []ocsp.CertID{e.certID(b, ocsp.HashSHA1, s)}, reqOpts{})
			nonced[i] = buildRequest(b, []ocsp.CertID{e.certID(b, ocsp.HashSHA1, s)}, reqOpts{nonce: []byte("0123456789abcdef")})
			paths[i] = "/ocsp/" + url64(plain[i])
		}
		run := func(name string, mk func(i int) *http.Request) {
			b.Run(string(alg)+"/"+name, func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					w := httptest.NewRecorder()
					e.handler.ServeHTTP(w, mk(i%len(serials)))
					if w.Code != http.StatusOK {
						b.Fatalf("HTTP %d", w.Code)
					}
					i++
				}
			})
		}
		run("post", func(i int) *http.Request {
			return httptest.NewRequest(http.MethodPost, "/ocsp", bytes.NewReader(plain[i]))
		})
		run("get", func(i int) *http.Request { return httptest.NewRequest(http.MethodGet, paths[i], nil) })
		run("post-nonce", func(i int) *http.Request {
			return httptest.NewRequest(http.MethodPost, "/ocsp", bytes.NewReader(nonced[i]))
		})
	}
}
