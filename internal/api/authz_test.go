package api_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/gmtrust/gmtrust/internal/api"
	"github.com/gmtrust/gmtrust/internal/audit"
)

// fakeAuth knows a few tokens.
type fakeAuth struct{}

func (fakeAuth) Authenticate(_ context.Context, tok string) (*api.Principal, error) {
	switch tok {
	case "admin":
		return &api.Principal{Name: "root", Roles: []string{"admin"}}, nil
	case "auditor":
		return &api.Principal{Name: "aud", Roles: []string{"auditor"}}, nil
	case "ra":
		return &api.Principal{Name: "ra", Department: "czt", Roles: []string{"ra-officer"}}, nil
	case "revoked-ra":
		return &api.Principal{Name: "ra"}, fmt.Errorf("%w: token revoked", api.ErrUnauthenticated)
	case "broken":
		return nil, errors.New("database down")
	}
	return nil, fmt.Errorf("%w: unknown token", api.ErrUnauthenticated)
}

// recordingAuditor keeps what the API audits.
type recordingAuditor struct {
	mu      sync.Mutex
	entries []string // "action object outcome principal"
}

func (r *recordingAuditor) AppendAudit(ctx context.Context, action, object, outcome string, _ map[string]any) error {
	a, _ := audit.ActorFrom(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.entries = append(r.entries, fmt.Sprintf("%s %s %s %s", action, object, outcome, a.Principal))
	return nil
}

func (r *recordingAuditor) count(action, outcome string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.entries {
		var a, o, out, p string
		fmt.Sscan(e, &a, &o, &out, &p)
		if a == action && out == outcome {
			n++
		}
	}
	return n
}

type middlewareEnv struct {
	srv *api.Server
	aud *recordingAuditor
	// seen is what the last handler saw on its context.
	mu    sync.Mutex
	seen  *api.Principal
	actor audit.Actor
}

func newMiddlewareEnv(limits api.FailureLimits) *middlewareEnv {
	e := &middlewareEnv{aud: &recordingAuditor{}}
	e.srv = api.New(api.Deps{Auth: fakeAuth{}, Audit: e.aud, FailureLimits: limits})
	h := func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.seen = api.PrincipalFrom(r.Context())
		e.actor, _ = audit.ActorFrom(r.Context())
		e.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}
	r := e.srv.Router()
	r.Get("/api/v1/principals", h) // principal.list: admin, auditor
	r.Get("/api/v1/tokens", h)     // token.list: admin, auditor
	r.Get("/api/v1/unmapped", h)   // no rule: refused to everybody
	return e
}

func (e *middlewareEnv) do(method, path, token, remote string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, nil)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	if remote != "" {
		r.RemoteAddr = remote
	}
	w := httptest.NewRecorder()
	e.srv.ServeHTTP(w, r)
	return w
}

func TestAuthorizeMiddleware(t *testing.T) {
	e := newMiddlewareEnv(api.FailureLimits{})
	tests := []struct {
		name, method, path, token string
		want                      int
	}{
		{"public without credentials", "GET", "/healthz", "", http.StatusOK},
		{"public ignores a bad token", "GET", "/healthz", "nonsense", http.StatusOK},
		{"no such path", "GET", "/api/v1/nothing-here", "", http.StatusNotFound},
		{"no such method", "DELETE", "/healthz", "", http.StatusMethodNotAllowed},
		{"no credentials", "GET", "/api/v1/principals", "", http.StatusUnauthorized},
		{"bad token", "GET", "/api/v1/principals", "nonsense", http.StatusUnauthorized},
		{"revoked token", "GET", "/api/v1/principals", "revoked-ra", http.StatusUnauthorized},
		{"backend down", "GET", "/api/v1/principals", "broken", http.StatusServiceUnavailable},
		{"allowed", "GET", "/api/v1/principals", "auditor", http.StatusOK},
		{"role without the action", "GET", "/api/v1/principals", "ra", http.StatusForbidden},
		{"route without a rule, even for admin", "GET", "/api/v1/unmapped", "admin", http.StatusForbidden},
	}
	for _, tt := range tests {
		if w := e.do(tt.method, tt.path, tt.token, ""); w.Code != tt.want {
			t.Errorf("%s: %d, want %d: %s", tt.name, w.Code, tt.want, w.Body)
		}
	}
	if n := e.aud.count(api.ActionAuthFailure, audit.OutcomeFailure); n != 2 {
		t.Errorf("%d failed authentications audited, want 2 (bad and revoked token): %v", n, e.aud.entries)
	}
	if n := e.aud.count("principal.list", audit.OutcomeDenied); n != 1 {
		t.Errorf("%d refusals audited, want 1: %v", n, e.aud.entries)
	}

	// The handler sees the principal and the audit actor.
	r := httptest.NewRequest("GET", "/api/v1/tokens", nil)
	r.Header.Set("Authorization", "Bearer admin")
	r.Header.Set("X-Request-Id", "req-42")
	r.RemoteAddr = "198.51.100.7:5555"
	w := httptest.NewRecorder()
	e.srv.ServeHTTP(w, r)
	if w.Code != http.StatusOK || e.seen == nil || e.seen.Name != "root" ||
		e.actor != (audit.Actor{Principal: "root", RequestID: "req-42", Source: "198.51.100.7"}) {
		t.Fatalf("handler saw %+v, actor %+v (status %d)", e.seen, e.actor, w.Code)
	}
}

// TestFailedAuthRateLimit: failures are limited per source address and
// per principal; crossing a limit is audited once; other sources and
// other principals are not affected.
func TestFailedAuthRateLimit(t *testing.T) {
	e := newMiddlewareEnv(api.FailureLimits{PerSource: 3, PerPrincipal: 2, Window: time.Hour})
	const attacker, other = "203.0.113.9:1000", "203.0.113.10:1000"
	for i := 0; i < 3; i++ {
		if w := e.do("GET", "/api/v1/principals", "guess", attacker); w.Code != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i+1, w.Code)
		}
	}
	// Over the limit: refused before the credential is even looked at.
	w := e.do("GET", "/api/v1/principals", "auditor", attacker)
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Fatalf("after 3 failures: %d %v", w.Code, w.Header())
	}
	if w := e.do("GET", "/api/v1/principals", "auditor", other); w.Code != http.StatusOK {
		t.Fatalf("another source: %d", w.Code)
	}
	// Public endpoints stay reachable.
	if w := e.do("GET", "/healthz", "", attacker); w.Code != http.StatusOK {
		t.Fatalf("public endpoint from a limited source: %d", w.Code)
	}
	if n := e.aud.count(api.ActionRateLimited, audit.OutcomeDenied); n != 1 {
		t.Fatalf("rate limiting audited %d times, want once: %v", n, e.aud.entries)
	}

	// Per principal: a revoked token of "ra" from several sources.
	for i := 0; i < 2; i++ {
		if w := e.do("GET", "/api/v1/principals", "revoked-ra", fmt.Sprintf("192.0.2.%d:1", i+1)); w.Code != http.StatusUnauthorized {
			t.Fatalf("principal failure %d: %d", i+1, w.Code)
		}
	}
	if w := e.do("GET", "/api/v1/principals", "ra", "192.0.2.99:1"); w.Code != http.StatusTooManyRequests {
		t.Fatalf("principal over its limit: %d", w.Code)
	}
	if w := e.do("GET", "/api/v1/principals", "auditor", "192.0.2.99:1"); w.Code != http.StatusOK {
		t.Fatalf("another principal from that source: %d", w.Code)
	}
	if n := e.aud.count(api.ActionRateLimited, audit.OutcomeDenied); n != 2 {
		t.Fatalf("rate limiting audited %d times, want 2: %v", n, e.aud.entries)
	}
}

func TestRouteActionsAreWellFormed(t *testing.T) {
	for route, action := range api.RouteActions() {
		var method, pattern string
		if n, _ := fmt.Sscan(route, &method, &pattern); n != 2 || pattern[0] != '/' || action == "" {
			t.Errorf("route %q -> %q", route, action)
		}
	}
}
