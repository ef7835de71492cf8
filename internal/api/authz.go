package api

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/go-chi/httprate"

	"github.com/gmtrust/gmtrust/internal/audit"
	"github.com/gmtrust/gmtrust/policies"
)

// AccessPolicy decides who may do what (policies.Authz).
type AccessPolicy interface {
	Decide(p policies.Principal, action string, res policies.Resource) policies.AccessDecision
	Public(action string) bool
}

// Auditor records events that change nothing else (failed
// authentications, refusals) in the audit log (store.DB).
type Auditor interface {
	AppendAudit(ctx context.Context, action, object, outcome string, details map[string]any) error
}

// CertAuthenticator maps a TLS client certificate (DER, as presented) to
// a principal. It must check the certificate against the CA's own
// records on every call: issued by us, not revoked, not expired, bound to
// an enabled principal. It returns an error wrapping ErrUnauthenticated
// for any certificate that does not authenticate; the principal, when
// known, comes back with that error so that failures can be counted
// against it.
type CertAuthenticator interface {
	AuthenticateCert(ctx context.Context, der []byte) (*Principal, error)
}

// FailureLimits bound failed authentications, which are also audited.
// A source address or a principal over its limit gets 429 without its
// credentials being looked at until the window has passed.
type FailureLimits struct {
	PerSource    int           // failures per source address (default 20)
	PerPrincipal int           // failures per principal (default 10)
	Window       time.Duration // default 1 minute
}

// Audited actions of the authentication layer.
const (
	ActionAuthFailure = "auth.failure"
	ActionRateLimited = "auth.rate-limited"
)

// RouteActions maps every route of the API ("METHOD pattern", as chi
// reports them; "*" for routes registered for every method) to the action
// of policies/authz.yaml that it performs. A route missing here is
// refused to everybody, and the authorization matrix test fails on it.
func RouteActions() map[string]string {
	return map[string]string{
		"GET /healthz":    "health.check",
		"GET /readyz":     "health.check",
		"* /metrics":      "metrics.read",
		"GET /crl/{file}": "crl.read",
		"GET /ca/{file}":  "ca.read",
		"* /ocsp":         "ocsp.query",
		"* /ocsp/*":       "ocsp.query",

		"GET /api/v1/cas": "ca.read",

		"POST /api/v1/certificates":                 "certificate.issue",
		"GET /api/v1/certificates":                  "certificate.list",
		"GET /api/v1/certificates/{serial}":         "certificate.read",
		"POST /api/v1/certificates/{serial}/revoke": "certificate.revoke",
		"POST /api/v1/certificates/{serial}/unhold": "certificate.unhold",

		"POST /api/v1/signatures/verify":               "signature.verify",
		"POST /api/v1/seals":                           "seal.create",
		"GET /api/v1/seals":                            "seal.list",
		"GET /api/v1/seals/{id}":                       "seal.read",
		"GET /api/v1/seals/{id}/picture":               "seal.read",
		"POST /api/v1/seals/{id}/suspend":              "seal.suspend",
		"POST /api/v1/seals/{id}/resume":               "seal.resume",
		"POST /api/v1/seals/{id}/revoke":               "seal.revoke",
		"GET /api/v1/seals/{id}/grants":                "seal.grant.read",
		"POST /api/v1/seals/{id}/grants":               "seal.grant",
		"DELETE /api/v1/seals/{id}/grants/{principal}": "seal.ungrant",
		"POST /api/v1/seals/{id}/stamp":                "seal.stamp",
		"GET /api/v1/seals/{id}/stamps":                "stamp.list",

		"GET /api/v1/principals":                    "principal.list",
		"POST /api/v1/principals":                   "principal.create",
		"GET /api/v1/principals/{name}":             "principal.read",
		"PATCH /api/v1/principals/{name}":           "principal.update",
		"POST /api/v1/principals/{name}/bindings":   "principal.bind",
		"DELETE /api/v1/principals/{name}/bindings": "principal.bind",
		"GET /api/v1/principals/{name}/tokens":      "token.list",
		"POST /api/v1/principals/{name}/tokens":     "token.create",
		"GET /api/v1/tokens":                        "token.list",
		"POST /api/v1/tokens/{id}/revoke":           "token.revoke",
		"GET /api/v1/audit":                         "audit.read",
		"POST /api/v1/audit/checkpoints":            "audit.checkpoint",
	}
}

// access is the authentication and authorization layer of a Server.
type access struct {
	policy   AccessPolicy
	routes   map[string]string
	auth     Authenticator
	certAuth CertAuthenticator
	audit    Auditor
	log      *slog.Logger

	limits      FailureLimits
	bySource    failCounter
	byPrincipal failCounter
}

func newAccess(d Deps, log *slog.Logger) *access {
	l := d.FailureLimits
	if l.PerSource <= 0 {
		l.PerSource = 20
	}
	if l.PerPrincipal <= 0 {
		l.PerPrincipal = 10
	}
	if l.Window <= 0 {
		l.Window = time.Minute
	}
	policy := d.Authz
	if policy == nil {
		p, err := policies.DefaultAuthz()
		if err != nil {
			// The shipped policy is embedded and tested; should it ever
			// fail to load, refuse everything rather than allow it.
			log.Error("authorization policy unusable: every non-public request is refused", "err", err)
			policy = denyAll{}
		} else {
			policy = p
		}
	}
	return &access{
		policy: policy, routes: RouteActions(), auth: d.Auth, certAuth: d.CertAuth, audit: d.Audit, log: log,
		limits:      l,
		bySource:    failCounter{httprate.NewRateLimiter(l.PerSource, l.Window), l.PerSource},
		byPrincipal: failCounter{httprate.NewRateLimiter(l.PerPrincipal, l.Window), l.PerPrincipal},
	}
}

// denyAll is the policy of last resort.
type denyAll struct{}

func (denyAll) Decide(policies.Principal, string, policies.Resource) policies.AccessDecision {
	return policies.AccessDecision{Rule: "no usable authorization policy"}
}
func (denyAll) Public(string) bool { return false }

const decisionKey ctxKey = 2

// DecisionFrom returns the route-level decision that let a request in;
// its Scope tells a handler what it must still check on the object.
func DecisionFrom(ctx context.Context) (policies.AccessDecision, bool) {
	d, ok := ctx.Value(decisionKey).(policies.AccessDecision)
	return d, ok
}

// routeAction finds the action of the route r will be routed to. found
// is false when no route matches (the router then answers 404 or 405).
func (s *Server) routeAction(r *http.Request) (pattern, action string, found bool) {
	path := r.URL.RawPath
	if path == "" {
		path = r.URL.Path
	}
	pattern = s.router.Find(chi.NewRouteContext(), r.Method, path)
	if pattern == "" {
		return "", "", false
	}
	if a, ok := s.acc.routes[r.Method+" "+pattern]; ok {
		return pattern, a, true
	}
	return pattern, s.acc.routes["* "+pattern], true
}

// sourceOf is the client address used for rate limiting and the audit
// log: the peer's IP. Forwarded headers are not trusted: behind a proxy,
// put the proxy's own limits in front.
func sourceOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return httprate.CanonicalizeIP(host)
}

// authorize is the one gate of every request: it maps the route to its
// action, lets public actions through, authenticates the rest (bearer
// token, else TLS client certificate), asks the policy, and puts the
// principal, the decision and the audit actor on the context.
func (s *Server) authorize(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pattern, action, found := s.routeAction(r)
		if !found {
			next.ServeHTTP(w, r) // 404 or 405 from the router
			return
		}
		src := sourceOf(r)
		actor := audit.Actor{RequestID: middleware.GetReqID(r.Context()), Source: src}
		if action == "" {
			s.log.Error("route without an authorization rule refused", "method", r.Method, "route", pattern)
			writeProblem(w, r, http.StatusForbidden, "no-authorization-rule", "this endpoint has no authorization rule and is refused to everybody")
			return
		}
		if s.acc.policy.Public(action) {
			ctx := audit.WithActor(r.Context(), actor)
			ctx = context.WithValue(ctx, decisionKey, policies.AccessDecision{Allowed: true, Scope: policies.ScopeAny, Rule: "public"})
			next.ServeHTTP(w, r.WithContext(ctx))
			return
		}
		p, ok := s.authenticateRequest(w, r, src, actor)
		if !ok {
			return
		}
		actor.Principal = p.Name
		ctx := audit.WithActor(context.WithValue(r.Context(), principalKey, p), actor)
		r = r.WithContext(ctx)
		d := s.acc.policy.Decide(p.policy(), action, policies.Resource{})
		if !d.Allowed {
			s.deny(w, r, action, r.URL.Path, d)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(ctx, decisionKey, d)))
	})
}

// authenticateRequest resolves the caller or answers 401/429/503 itself.
func (s *Server) authenticateRequest(w http.ResponseWriter, r *http.Request, src string, actor audit.Actor) (*Principal, bool) {
	if s.acc.bySource.blocked("ip:" + src) {
		writeRateLimited(w, r, s.acc.limits.Window)
		return nil, false
	}
	tok, hasToken := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	tok = strings.TrimSpace(tok)
	var certDER []byte
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		certDER = r.TLS.PeerCertificates[0].Raw
	}
	var (
		p      *Principal
		err    error
		method string
	)
	switch {
	case hasToken && tok != "" && s.acc.auth != nil:
		method = "token"
		p, err = s.acc.auth.Authenticate(r.Context(), tok)
	case certDER != nil && s.acc.certAuth != nil:
		method = "certificate"
		p, err = s.acc.certAuth.AuthenticateCert(r.Context(), certDER)
	default:
		w.Header().Set("WWW-Authenticate", `Bearer realm="gmtrust"`)
		writeProblem(w, r, http.StatusUnauthorized, "unauthenticated", "a bearer token or a client certificate is required")
		return nil, false
	}
	if err == nil && p != nil {
		if s.acc.byPrincipal.blocked("principal:" + p.Name) {
			writeRateLimited(w, r, s.acc.limits.Window)
			return nil, false
		}
		return p, true
	}
	if err != nil && !errors.Is(err, ErrUnauthenticated) {
		s.log.Error("authentication backend failed", "method", method, "err", err)
		writeProblem(w, r, http.StatusServiceUnavailable, "auth-unavailable", "authentication is temporarily unavailable")
		return nil, false
	}
	s.authFailed(r, method, src, p, err, actor)
	if method == "token" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="gmtrust", error="invalid_token"`)
		writeProblem(w, r, http.StatusUnauthorized, "unauthenticated", "invalid, expired or revoked token")
	} else {
		writeProblem(w, r, http.StatusUnauthorized, "unauthenticated", "client certificate not accepted: "+reason(err))
	}
	return nil, false
}

// authFailed counts a failed authentication against the source and the
// principal (when the credential named one) and audits it; crossing a
// limit is audited once more, as auth.rate-limited.
func (s *Server) authFailed(r *http.Request, method, src string, p *Principal, err error, actor audit.Actor) {
	details := map[string]any{"method": method, "reason": reason(err), "path": r.URL.Path}
	type counted struct {
		c   failCounter
		key string
	}
	keys := []counted{{s.acc.bySource, "ip:" + src}}
	if p != nil && p.Name != "" {
		details["principal"] = p.Name
		keys = append(keys, counted{s.acc.byPrincipal, "principal:" + p.Name})
	}
	// Audited as the system: the caller is not authenticated.
	ctx := audit.WithActor(context.WithoutCancel(r.Context()), audit.Actor{RequestID: actor.RequestID, Source: actor.Source})
	s.appendAudit(ctx, ActionAuthFailure, method, audit.OutcomeFailure, details)
	for _, k := range keys {
		if k.c.fail(r, k.key) {
			s.appendAudit(ctx, ActionRateLimited, k.key, audit.OutcomeDenied, map[string]any{"window": s.acc.limits.Window.String()})
		}
	}
}

func reason(err error) string {
	if err == nil {
		return "unknown"
	}
	return strings.TrimPrefix(err.Error(), ErrUnauthenticated.Error()+": ")
}

// deny answers 403 and audits the refusal under the action that was
// refused.
func (s *Server) deny(w http.ResponseWriter, r *http.Request, action, object string, d policies.AccessDecision) {
	s.appendAudit(context.WithoutCancel(r.Context()), action, object, audit.OutcomeDenied, map[string]any{"rule": d.Rule})
	writeProblemRule(w, r, http.StatusForbidden, "forbidden", "not allowed: "+d.Rule, action)
}

// forbidden answers 403 for a refusal decided past the middleware (by a
// service that asks the policy itself, such as seal.Service) and audits
// it under the action of the request's route.
func (s *Server) forbidden(w http.ResponseWriter, r *http.Request, err error) {
	_, action, _ := s.routeAction(r)
	s.deny(w, r, action, r.URL.Path, policies.AccessDecision{Rule: err.Error()})
}

// Allow checks a handler's object against the policy (the second half of
// a scoped permission) and answers 403 itself when it is refused.
func (s *Server) Allow(w http.ResponseWriter, r *http.Request, action string, res policies.Resource) bool {
	p := PrincipalFrom(r.Context())
	if p == nil {
		writeProblem(w, r, http.StatusUnauthorized, "unauthenticated", "authentication required")
		return false
	}
	d := s.acc.policy.Decide(p.policy(), action, res)
	if !d.Allowed {
		s.deny(w, r, action, res.ID, d)
		return false
	}
	return true
}

func (s *Server) appendAudit(ctx context.Context, action, object, outcome string, details map[string]any) {
	if s.acc.audit == nil {
		return
	}
	if err := s.acc.audit.AppendAudit(ctx, action, object, outcome, details); err != nil {
		s.log.Error("audit append failed", "action", action, "err", err)
	}
}

// failCounter counts failed authentications per key with httprate's
// sliding window.
type failCounter struct {
	l     *httprate.RateLimiter
	limit int
}

// blocked reports, without counting, whether key has used up its limit.
func (c failCounter) blocked(key string) bool {
	_, rate, err := c.l.Status(key)
	return err == nil && rate >= float64(c.limit)
}

// fail counts one failure and reports whether it used up the limit.
func (c failCounter) fail(r *http.Request, key string) bool {
	before := c.blocked(key)
	c.l.OnLimit(discardHeaders{}, r, key) // counts when under the limit
	return !before && c.blocked(key)
}

// discardHeaders takes the rate-limit headers OnLimit sets: failures are
// counted after the response to the failed request is decided.
type discardHeaders struct{}

func (discardHeaders) Header() http.Header         { return http.Header{} }
func (discardHeaders) Write(b []byte) (int, error) { return len(b), nil }
func (discardHeaders) WriteHeader(int)             {}

func writeRateLimited(w http.ResponseWriter, r *http.Request, window time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(window.Seconds()))))
	writeProblem(w, r, http.StatusTooManyRequests, "too-many-failures", "too many failed authentications; try again later")
}

// policy converts the principal for the decision function.
func (p *Principal) policy() policies.Principal {
	return policies.Principal{Name: p.Name, Department: p.Department, Roles: p.Roles}
}
