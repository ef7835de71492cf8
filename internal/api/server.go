// Package api is the HTTP interface: chi routes, JSON bodies, RFC 9457
// problems. It depends on the domain packages, never the reverse.
package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gmtrust/gmtrust/ca"
)

// MaxBodySize bounds every JSON request body.
const MaxBodySize = 1 << 20

// Authority is what the API needs from the CA.
type Authority interface {
	CAs() []ca.CARecord
	CA(id string) (ca.CARecord, bool)
	Issue(ctx context.Context, req ca.IssueRequest) (*ca.Issued, error)
	Find(ctx context.Context, serial string) (*ca.Certificate, error)
	List(ctx context.Context, f ca.Filter) ([]ca.Certificate, string, error)
	Revoke(ctx context.Context, req ca.RevokeRequest) (*ca.Certificate, error)
	Unhold(ctx context.Context, serial, by string) (*ca.Certificate, error)
	LatestCRL(ctx context.Context, caID string) (*ca.CRLRecord, error)
	GenerateCRL(ctx context.Context, caID string) (*ca.CRLRecord, error)
}

// Principal is an authenticated caller.
type Principal struct {
	Name       string
	Department string // "" for administrators
	Roles      []string
	// Credential names what authenticated it ("token/ID",
	// "certificate/SERIAL"), for logs and the audit trail.
	Credential string
}

// ErrUnauthenticated is returned by an Authenticator for a bad credential.
var ErrUnauthenticated = errors.New("unauthenticated")

// Authenticator resolves a bearer token to a principal. For a token that
// does not authenticate it returns an error wrapping ErrUnauthenticated,
// with the token's principal when the token was found (revoked, expired,
// disabled principal) so that failures count against that principal.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (*Principal, error)
}

// ReadyCheck reports whether a dependency is usable.
type ReadyCheck func(ctx context.Context) error

// Deps are the API's collaborators.
type Deps struct {
	Authority Authority
	Auth      Authenticator
	Ready     map[string]ReadyCheck
	Logger    *slog.Logger
	Metrics   *prometheus.Registry
	Now       func() time.Time
	// Authz decides every request (see authz.go); nil means the policy
	// shipped in policies/authz.yaml.
	Authz AccessPolicy
	// Audit records failed authentications and refusals; nil records
	// nothing.
	Audit Auditor
	// CertAuth authenticates TLS client certificates; nil accepts none.
	CertAuth      CertAuthenticator
	FailureLimits FailureLimits
}

// Server serves the HTTP API.
type Server struct {
	d   Deps
	log *slog.Logger
	now func() time.Time
	// Extra mounts routes of later features (OCSP, seals) on the router.
	router chi.Router
	acc    *access
}

// New builds the router.
func New(d Deps) *Server {
	s := &Server{d: d, log: d.Logger, now: d.Now}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.acc = newAccess(d, s.log)
	r := chi.NewRouter()
	// authorize authenticates and authorizes every route, including those
	// mounted later (it looks the route up when the request comes).
	r.Use(middleware.RequestID, s.recoverer, s.authorize)
	r.Get("/healthz", s.healthz)
	r.Get("/readyz", s.readyz)
	if d.Metrics != nil {
		r.Handle("/metrics", promhttp.HandlerFor(d.Metrics, promhttp.HandlerOpts{}))
	}
	r.Get("/crl/{file}", s.getCRL)
	r.Get("/ca/{file}", s.getCACert)
	r.Route("/api/v1", func(r chi.Router) {
		r.Get("/cas", s.listCAs)
		r.Group(func(r chi.Router) {
			r.Use(s.authenticate)
			r.Post("/certificates", s.issue)
			r.Get("/certificates", s.listCertificates)
			r.Get("/certificates/{serial}", s.getCertificate)
			r.Post("/certificates/{serial}/revoke", s.revoke)
			r.Post("/certificates/{serial}/unhold", s.unhold)
		})
	})
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, http.StatusNotFound, "not-found", "no such endpoint")
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, http.StatusMethodNotAllowed, "method-not-allowed", r.Method+" is not allowed here")
	})
	s.router = r
	return s
}

// Router exposes the router so later features can mount routes.
func (s *Server) Router() chi.Router { return s.router }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.router.ServeHTTP(w, r) }

func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("panic in handler", "path", r.URL.Path, "panic", fmt.Sprint(v))
				writeProblem(w, r, http.StatusInternalServerError, "internal", "internal error")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

type ctxKey int

const principalKey ctxKey = 1

// PrincipalFrom returns the authenticated caller of a request.
func PrincipalFrom(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey).(*Principal)
	return p
}

// authenticate guards route groups that need a caller. The authorize
// middleware has already authenticated the request; this refuses it
// should a route ever be reached without a principal.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if PrincipalFrom(r.Context()) == nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="gmtrust"`)
			writeProblem(w, r, http.StatusUnauthorized, "unauthenticated", "a bearer token or a client certificate is required")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// decodeJSON reads a size-limited JSON body into v, refusing unknown
// fields and trailing data.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	r.Body = http.MaxBytesReader(w, r.Body, MaxBodySize)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeProblem(w, r, http.StatusRequestEntityTooLarge, "body-too-large", fmt.Sprintf("request body exceeds %d bytes", MaxBodySize))
			return false
		}
		writeProblem(w, r, http.StatusBadRequest, "bad-json", "request body is not valid JSON for this endpoint: "+err.Error())
		return false
	}
	if dec.More() {
		writeProblem(w, r, http.StatusBadRequest, "bad-json", "trailing data after the JSON body")
		return false
	}
	return true
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte("ok\n"))
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	res := map[string]string{}
	ok := true
	for name, check := range s.d.Ready {
		if err := check(ctx); err != nil {
			res[name] = err.Error()
			ok = false
		} else {
			res[name] = "ok"
		}
	}
	status := http.StatusOK
	if !ok {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, map[string]any{"ready": ok, "checks": res})
}

func pemCert(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// caJSON is one CA in GET /api/v1/cas.
type caJSON struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Algorithm   string    `json:"algorithm"`
	Role        string    `json:"role"`
	Parent      *string   `json:"parent"`
	Certificate string    `json:"certificate"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	SHA256      string    `json:"sha256_fingerprint"`
}

func (s *Server) listCAs(w http.ResponseWriter, _ *http.Request) {
	cas := s.d.Authority.CAs()
	out := make([]caJSON, 0, len(cas))
	for _, c := range cas {
		j := caJSON{ID: c.ID, Name: c.Name, Algorithm: c.Algorithm, Role: string(c.Role), Certificate: pemCert(c.DER),
			NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(), SHA256: Fingerprint(c.DER)}
		if c.ParentID != "" {
			p := c.ParentID
			j.Parent = &p
		}
		out = append(out, j)
	}
	writeJSON(w, http.StatusOK, out)
}

// Fingerprint is the colon-separated upper-case SHA-256 of a DER blob, as
// OpenSSL prints it.
func Fingerprint(der []byte) string {
	h := sha256.Sum256(der)
	x := strings.ToUpper(hex.EncodeToString(h[:]))
	var b strings.Builder
	for i := 0; i < len(x); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(x[i : i+2])
	}
	return b.String()
}

func (s *Server) getCACert(w http.ResponseWriter, r *http.Request) {
	id, ok := strings.CutSuffix(chi.URLParam(r, "file"), ".crt")
	if !ok {
		writeProblem(w, r, http.StatusNotFound, "not-found", "CA certificates are served as /ca/{id}.crt")
		return
	}
	c, found := s.d.Authority.CA(id)
	if !found {
		writeProblem(w, r, http.StatusNotFound, "not-found", fmt.Sprintf("no CA %q", id))
		return
	}
	w.Header().Set("Content-Type", "application/pkix-cert")
	w.Header().Set("Cache-Control", "public, max-age=86400")
	_, _ = w.Write(c.DER)
}

func (s *Server) getCRL(w http.ResponseWriter, r *http.Request) {
	id, ok := strings.CutSuffix(chi.URLParam(r, "file"), ".crl")
	if !ok {
		writeProblem(w, r, http.StatusNotFound, "not-found", "CRLs are served as /crl/{ca-id}.crl")
		return
	}
	if _, found := s.d.Authority.CA(id); !found {
		writeProblem(w, r, http.StatusNotFound, "not-found", fmt.Sprintf("no CA %q", id))
		return
	}
	crl, err := s.d.Authority.LatestCRL(r.Context(), id)
	now := s.now()
	if errors.Is(err, ca.ErrNotFound) || (err == nil && !now.Before(crl.NextUpdate)) {
		// No CRL yet, or a stale one: make one now rather than serve
		// nothing or something expired.
		crl, err = s.d.Authority.GenerateCRL(r.Context(), id)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	etag := `"` + id + "-" + strconv.FormatInt(crl.Number, 10) + `"`
	maxAge := int(crl.NextUpdate.Sub(now).Seconds())
	if maxAge < 0 {
		maxAge = 0
	}
	w.Header().Set("Content-Type", "application/pkix-crl")
	w.Header().Set("Cache-Control", fmt.Sprintf("public, max-age=%d, no-transform, must-revalidate", maxAge))
	w.Header().Set("Expires", crl.NextUpdate.UTC().Format(http.TimeFormat))
	w.Header().Set("Last-Modified", crl.ThisUpdate.UTC().Format(http.TimeFormat))
	w.Header().Set("ETag", etag)
	if inm := r.Header.Get("If-None-Match"); inm != "" && inm == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	_, _ = w.Write(crl.DER)
}
