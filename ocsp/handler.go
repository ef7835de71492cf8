package ocsp

import (
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The HTTP binding (RFC 6960 appendix A, RFC 5019 section 5):
//
//   - POST {prefix} with the DER request as body (any Content-Type is
//     accepted; RFC 6960 asks for application/ocsp-request).
//   - GET {prefix}/{base64 DER}: standard base64, URL-escaped as clients
//     send it or with raw '/' and '+'; unpadded and base64url forms are
//     accepted too. The raw request path is used, so "//" inside the
//     base64 survives.
//
// Every OCSP answer, error statuses included, is sent with HTTP 200 and
// Content-Type application/ocsp-response: clients read the responseStatus.
// Exceptions: a POST body over MaxRequestSize gets 413 (with a
// malformedRequest body), other methods 405.
//
// Caching: a GET answered for one certificate without nonce carries the
// RFC 5019 headers: Cache-Control "max-age=N, public, no-transform,
// must-revalidate" with N up to nextUpdate (capped by Config.HTTPMaxAge,
// shorter for "unknown"), Last-Modified (thisUpdate), Expires (nextUpdate)
// and ETag, and If-None-Match / If-Modified-Since get 304. POST answers,
// nonce answers and error statuses get "Cache-Control: no-store": HTTP
// caches do not key on POST bodies, and a nonce answer must never be
// replayed.

// Handler serves the responder over HTTP.
type Handler struct {
	r           *Responder
	prefix      string
	prefixSlash string
	bufs        sync.Pool

	// Header values shared by every response (never modified).
	hdrContentType, hdrNoStore, hdrAllow []string
}

// NewHandler returns the HTTP handler of r for requests under prefix
// (such as "/ocsp"). Mount it at prefix and prefix + "/*".
func NewHandler(r *Responder, prefix string) *Handler {
	return &Handler{
		r:              r,
		prefix:         strings.TrimRight(prefix, "/"),
		prefixSlash:    strings.TrimRight(prefix, "/") + "/",
		bufs:           sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }},
		hdrContentType: []string{"application/ocsp-response"},
		hdrNoStore:     []string{"no-store"},
		hdrAllow:       []string{"GET, HEAD, POST"},
	}
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	switch req.Method {
	case http.MethodPost:
		h.post(w, req)
	case http.MethodGet, http.MethodHead:
		h.get(w, req)
	default:
		w.Header()["Allow"] = h.hdrAllow
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (h *Handler) post(w http.ResponseWriter, req *http.Request) {
	if req.ContentLength > MaxRequestSize {
		h.tooLarge(w)
		return
	}
	bp := h.bufs.Get().(*[]byte)
	defer h.bufs.Put(bp)
	body, err := readBody((*bp)[:0], req.Body, MaxRequestSize)
	*bp = body[:0]
	switch {
	case err == errTooLarge:
		h.tooLarge(w)
		return
	case err != nil:
		// The client went away or sent a broken body: nothing to parse.
		h.write(w, req, methodPOST, errorAnswer(MalformedRequest, outcomeMalformed), false)
		return
	}
	h.write(w, req, methodPOST, h.r.Respond(req.Context(), body), false)
}

func (h *Handler) tooLarge(w http.ResponseWriter) {
	h.r.metrics.requests[methodPOST][outcomeTooLarge].Inc()
	hd := w.Header()
	hd["Content-Type"] = h.hdrContentType
	hd["Cache-Control"] = h.hdrNoStore
	hd["Connection"] = []string{"close"}
	w.WriteHeader(http.StatusRequestEntityTooLarge)
	_, _ = w.Write(ErrorResponse(MalformedRequest))
}

// errTooLarge is readBody's "over the limit".
var errTooLarge = errors.New("ocsp: request body exceeds MaxRequestSize")

// readBody appends at most limit bytes of r to dst; errTooLarge if r holds
// more.
func readBody(dst []byte, r io.Reader, limit int) ([]byte, error) {
	for {
		if len(dst) == cap(dst) {
			dst = append(dst, 0)[:len(dst)]
		}
		n, err := r.Read(dst[len(dst):min(cap(dst), limit+1)])
		dst = dst[:len(dst)+n]
		if len(dst) > limit {
			return dst, errTooLarge
		}
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
	}
}

func (h *Handler) get(w http.ResponseWriter, req *http.Request) {
	// The path as sent: RawPath when the client escaped characters
	// (so '%2F' stays distinct from '/'), else Path, which then holds
	// '/' and '+' as sent.
	path := req.URL.RawPath
	if path == "" {
		path = req.URL.Path
	}
	enc, ok := strings.CutPrefix(path, h.prefixSlash)
	if !ok || enc == "" {
		h.write(w, req, methodGET, errorAnswer(MalformedRequest, outcomeMalformed), false)
		return
	}
	bp := h.bufs.Get().(*[]byte)
	defer h.bufs.Put(bp)
	der, grown, ok := decodeGET((*bp)[:0], enc)
	*bp = grown[:0]
	if !ok {
		h.write(w, req, methodGET, errorAnswer(MalformedRequest, outcomeMalformed), false)
		return
	}
	h.write(w, req, methodGET, h.r.Respond(req.Context(), der), true)
}

// decodeGET decodes the base64 path segment of a GET request, using buf
// for both the unescaped text and the DER after it. It returns the DER,
// buf (grown if it had to be) and whether enc decoded.
func decodeGET(buf []byte, enc string) (der, grown []byte, ok bool) {
	if len(enc) > 2*base64.StdEncoding.EncodedLen(MaxRequestSize) {
		return nil, buf, false
	}
	src := buf
	if strings.IndexByte(enc, '%') >= 0 {
		if src, ok = appendUnescaped(src, enc); !ok {
			return nil, buf, false
		}
	} else {
		src = append(src, enc...)
	}
	if cap(src) > cap(buf) {
		buf = src[:0]
	}
	// Standard base64 as RFC 6960 asks; unpadded and base64url forms occur
	// in the wild and cannot be mistaken for it.
	for _, e := range [...]*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if der, err := e.AppendDecode(src[len(src):], src); err == nil {
			return der, buf, true
		}
	}
	return nil, buf, false
}

// appendUnescaped appends s with its %XX escapes undone; unlike
// url.QueryUnescape it leaves '+' alone, which in base64 is data.
func appendUnescaped(dst []byte, s string) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			dst = append(dst, s[i])
			continue
		}
		if i+2 >= len(s) {
			return dst, false
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return dst, false
		}
		dst = append(dst, hi<<4|lo)
		i += 2
	}
	return dst, true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// write sends an answer. cacheable marks a GET, whose one-certificate,
// no-nonce answers get the RFC 5019 caching headers and may be 304.
func (h *Handler) write(w http.ResponseWriter, req *http.Request, method int, a Answer, cacheable bool) {
	hd := w.Header()
	hd["Content-Type"] = h.hdrContentType
	e := a.entry
	if !cacheable || e == nil {
		hd["Cache-Control"] = h.hdrNoStore
		if e != nil {
			hd["Content-Length"] = e.header(hdrLength)
		} else {
			hd["Content-Length"] = []string{strconv.Itoa(len(a.DER))}
		}
		h.r.metrics.requests[method][a.outcome].Inc()
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(a.DER)
		return
	}
	now := h.r.now()
	maxAge := e.httpMaxAge
	if e.nextUpdate != 0 {
		maxAge = min(maxAge, time.Duration(e.nextUpdate-instantOf(now)))
	}
	if maxAge == e.httpMaxAge {
		// Most of a response's life: the header was formatted once.
		hd["Cache-Control"] = e.header(hdrCacheControl)
	} else {
		hd["Cache-Control"] = []string{cacheControl(maxAge)}
	}
	hd["Last-Modified"] = e.header(hdrLastModified)
	if e.hdr[hdrExpires] != "" {
		hd["Expires"] = e.header(hdrExpires)
	}
	hd["Etag"] = e.header(hdrETag)
	if notModified(req, e) {
		delete(hd, "Content-Type")
		h.r.metrics.requests[method][outcomeNotModified].Inc()
		w.WriteHeader(http.StatusNotModified)
		return
	}
	hd["Content-Length"] = e.header(hdrLength)
	h.r.metrics.requests[method][a.outcome].Inc()
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(a.DER)
}

// cacheControl is the RFC 5019 Cache-Control value for a max-age.
func cacheControl(maxAge time.Duration) string {
	var b [80]byte
	return string(appendCacheControl(b[:0], maxAge))
}

func appendCacheControl(dst []byte, maxAge time.Duration) []byte {
	dst = strconv.AppendInt(append(dst, "max-age="...), max(int64(maxAge/time.Second), 0), 10)
	return append(dst, ", public, no-transform, must-revalidate"...)
}

// notModified evaluates the conditional headers of a GET (RFC 9110 13.2.2):
// If-None-Match, when present, decides alone (weak comparison);
// otherwise If-Modified-Since compares with thisUpdate.
func notModified(req *http.Request, e *entry) bool {
	if inm := req.Header.Get("If-None-Match"); inm != "" {
		for tag := range strings.SplitSeq(inm, ",") {
			tag = strings.TrimPrefix(strings.TrimSpace(tag), "W/")
			if tag == "*" || tag == e.etag() {
				return true
			}
		}
		return false
	}
	ims := req.Header.Get("If-Modified-Since")
	if ims == "" {
		return false
	}
	t, err := http.ParseTime(ims)
	if err != nil {
		return false
	}
	return !e.thisUpdate.time().Truncate(time.Second).After(t)
}

// isOCSPPath reports whether path is prefix or below it, for callers
// that dispatch by hand.
func (h *Handler) isOCSPPath(path string) bool {
	return path == h.prefix || strings.HasPrefix(path, h.prefixSlash)
}

// Mux returns a handler that sends requests under the prefix to h and
// everything else to next, without a router in between: `gmtrust serve`
// puts it in front of the API so the hot path skips the API middleware.
func (h *Handler) Mux(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if h.isOCSPPath(req.URL.Path) {
			h.ServeHTTP(w, req)
			return
		}
		next.ServeHTTP(w, req)
	})
}
