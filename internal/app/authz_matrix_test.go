package app_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/emmansun/gmsm/sm3"
	"github.com/go-chi/chi/v5"

	"github.com/gmtrust/gmtrust/ca"
	"github.com/gmtrust/gmtrust/hsm"
	"github.com/gmtrust/gmtrust/internal/api"
	"github.com/gmtrust/gmtrust/internal/app"
	"github.com/gmtrust/gmtrust/internal/audit"
	"github.com/gmtrust/gmtrust/internal/store"
	"github.com/gmtrust/gmtrust/internal/testutil"
	"github.com/gmtrust/gmtrust/policies"
	"github.com/gmtrust/gmtrust/seal"
)

// The authorization matrix: every route of the real router (as
// `gmtrust serve` assembles it) × every role × an object of the caller's
// own department and of another, with the exact outcome issue #6 asks
// for. The expectations below are written from the issue's description
// of the roles, not derived from policies/authz.yaml, so that the policy
// and the code enforcing it are both under test.

// Roles of the matrix; "anonymous" sends no credentials.
var matrixRoles = []string{"admin", "ra-officer", "seal-admin", "approval-system", "auditor", "anonymous"}

// reach says which objects a role may act on: every department's, only
// its own department's, or none.
type reach int

const (
	none reach = iota
	own
	all
)

// expectations: action -> role -> reach. Public actions are open to
// everybody, the anonymous caller included.
func matrixExpectations() map[string]map[string]reach {
	public := map[string]reach{"admin": all, "ra-officer": all, "seal-admin": all, "approval-system": all, "auditor": all, "anonymous": all}
	adminOnly := map[string]reach{"admin": all}
	adminAuditor := map[string]reach{"admin": all, "auditor": all}
	return map[string]map[string]reach{
		"health.check":     public,
		"ca.read":          public,
		"crl.read":         public,
		"ocsp.query":       public,
		"signature.verify": public,

		"metrics.read": adminAuditor,

		// RA officers enrol, list and revoke their department's
		// certificates; auditors read everything.
		"certificate.issue":  {"admin": all, "ra-officer": own},
		"certificate.list":   {"admin": all, "auditor": all, "ra-officer": own},
		"certificate.read":   {"admin": all, "auditor": all, "ra-officer": own},
		"certificate.revoke": {"admin": all, "ra-officer": own},
		"certificate.unhold": {"admin": all, "ra-officer": own},

		// Seal administrators make, suspend and revoke their department's
		// seals and grant their use; approval systems stamp with (and
		// read) the seals granted to them and read their own stamps;
		// administrators need a grant to stamp like anyone else.
		"seal.create":     {"admin": all, "seal-admin": own},
		"seal.list":       {"admin": all, "auditor": all, "seal-admin": own},
		"seal.read":       {"admin": all, "auditor": all, "seal-admin": own, "approval-system": own},
		"seal.suspend":    {"admin": all, "seal-admin": own},
		"seal.resume":     {"admin": all, "seal-admin": own},
		"seal.revoke":     {"admin": all, "seal-admin": own},
		"seal.grant.read": {"admin": all, "auditor": all, "seal-admin": own},
		"seal.grant":      {"admin": all, "seal-admin": own},
		"seal.ungrant":    {"admin": all, "seal-admin": own},
		"seal.stamp":      {"approval-system": own},
		"stamp.list":      {"admin": all, "auditor": all, "seal-admin": own, "approval-system": own},

		"principal.list":   adminAuditor,
		"principal.read":   adminAuditor,
		"principal.create": adminOnly,
		"principal.update": adminOnly,
		"principal.bind":   adminOnly,
		"token.list":       adminAuditor,
		"token.create":     adminOnly,
		"token.revoke":     adminOnly,
		"audit.read":       adminAuditor,
		"audit.checkpoint": adminOnly,
	}
}

// matrixRequest is one request of the matrix.
type matrixRequest struct {
	path string
	body []byte
	// okStatus is the answer expected when access is granted (default: any
	// 2xx); checked as "not 401 or 403" for the catch-all methods of
	// routes registered for every method.
	okStatus int
}

// routeCase builds the request of a route for the caller's own
// department (own) or another.
type routeCase struct {
	action string
	build  func(e *matrixEnv, role string, own bool) matrixRequest
}

func TestAuthorizationMatrix(t *testing.T) {
	e := newMatrixEnv(t)
	cases := e.routeCases()
	want := matrixExpectations()

	type route struct{ method, pattern string }
	var routes []route
	if err := chi.Walk(e.svc.API.Router(), func(method, pattern string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		routes = append(routes, route{method, pattern})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sort.Slice(routes, func(i, j int) bool {
		return routes[i].pattern+routes[i].method < routes[j].pattern+routes[j].method
	})
	if len(routes) < 40 {
		t.Fatalf("only %d routes found: %v", len(routes), routes)
	}
	seen := map[string]bool{}
	for _, rt := range routes {
		key := rt.method + " " + rt.pattern
		c, ok := cases[key]
		catchAll := false
		if !ok {
			c, ok = cases["* "+rt.pattern]
			catchAll = ok && rt.method != http.MethodGet && rt.method != http.MethodPost
		}
		if !ok {
			t.Errorf("route %s has no case in the authorization matrix: add one (and a rule in policies/authz.yaml)", key)
			continue
		}
		seen[key] = true
		exp, ok := want[c.action]
		if !ok {
			t.Errorf("route %s: action %s has no expectation", key, c.action)
			continue
		}
		if api := routeAction(rt.method, rt.pattern); api != c.action {
			t.Errorf("route %s: the API maps it to %q, the matrix to %q", key, api, c.action)
		}
		for _, role := range matrixRoles {
			for _, mine := range []bool{true, false} {
				name := fmt.Sprintf("%s/%s/own=%v", key, role, mine)
				req := c.build(e, role, mine)
				status, body := e.do(rt.method, req, role)
				allowed := exp[role] == all || (exp[role] == own && mine)
				switch {
				case role == "anonymous" && !allowed:
					if status != http.StatusUnauthorized {
						t.Errorf("%s: %d, want 401\n%s", name, status, body)
					}
				case !allowed:
					if status != http.StatusForbidden {
						t.Errorf("%s: %d, want 403\n%s", name, status, body)
					}
				case catchAll:
					if status == http.StatusUnauthorized || status == http.StatusForbidden || status >= 500 {
						t.Errorf("%s: %d, want access granted\n%s", name, status, body)
					}
				case req.okStatus != 0:
					if status != req.okStatus {
						t.Errorf("%s: %d, want %d\n%s", name, status, req.okStatus, body)
					}
				default:
					if status < 200 || status > 299 {
						t.Errorf("%s: %d, want 2xx\n%s", name, status, body)
					}
				}
			}
		}
	}
	for key := range cases {
		if !seen[key] && !strings.HasPrefix(key, "* ") {
			t.Errorf("matrix case %s matches no route of the router", key)
		}
	}

	// Every refusal above was audited, and the chain is intact.
	rep, err := audit.Verify(context.Background(), e.a.Store, nil)
	if err != nil || !rep.OK() {
		t.Fatalf("audit chain after the matrix: %v %+v", err, rep)
	}
	denied, _, err := e.a.Store.ListAudit(context.Background(), store.AuditFilter{Outcome: audit.OutcomeDenied, Limit: 1})
	if err != nil || len(denied) == 0 {
		t.Fatalf("no refusal in the audit log: %v", err)
	}
}

// matrixEnv is an instance serving the real router in-process, with one
// principal per role in department "czt" (administrators and auditors
// have none), and fixtures in "czt" (own) and "gat" (other).
type matrixEnv struct {
	t      *testing.T
	a      *app.App
	svc    *app.Service
	tokens map[string]string // role -> bearer token
	names  map[string]string // role -> principal name

	certs map[bool]string // own -> serial of a good certificate
	seals map[bool]string // own -> seal id; the own one is granted to the approval system
	sig   string          // base64 SES_Signature made with the own seal
	png   []byte
	n     int // counter for unique names
}

const (
	ownDept   = "czt"
	otherDept = "gat"
)

func newMatrixEnv(t *testing.T) *matrixEnv {
	t.Helper()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	if _, err := app.Init(ctx, app.InitParams{Dir: dir, Name: "Matrix CA", Algorithm: hsm.SM2, Getenv: testEnv}); err != nil {
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
	t.Cleanup(func() {
		svc.Close()
		a.Close()
	})
	admin, err := readToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := &matrixEnv{t: t, a: a, svc: svc, tokens: map[string]string{"admin": admin}, names: map[string]string{"admin": app.AdminPrincipal},
		certs: map[bool]string{}, seals: map[bool]string{}, png: pngPicture(t)}
	for role, p := range map[string]store.Principal{
		"ra-officer":      {Name: "ra-czt", Kind: store.KindPerson, Department: ownDept},
		"seal-admin":      {Name: "sa-czt", Kind: store.KindPerson, Department: ownDept},
		"approval-system": {Name: "oa-czt", Kind: store.KindService, Department: ownDept},
		"auditor":         {Name: "aud", Kind: store.KindPerson},
	} {
		p.Roles = []string{role}
		tok, _, err := svc.Access.Admin.CreateToken(ctx, e.principal(&p), 0)
		if err != nil {
			t.Fatal(err)
		}
		e.tokens[role], e.names[role] = tok, p.Name
	}
	for _, mine := range []bool{true, false} {
		e.certs[mine] = e.cert(mine)
		e.seals[mine] = e.seal(mine)
	}
	st, err := svc.Seals.Service.Stamp(ctx, seal.Caller{Name: e.names["approval-system"], Department: ownDept, Roles: []string{"approval-system"}},
		seal.StampRequest{SealID: e.seals[true], DataHash: digest("matrix document"), PropertyInfo: "matrix"})
	if err != nil {
		t.Fatal(err)
	}
	e.sig = base64.StdEncoding.EncodeToString(st.DER)
	return e
}

func (e *matrixEnv) principal(p *store.Principal) string {
	e.t.Helper()
	if err := e.svc.Access.Admin.CreatePrincipal(context.Background(), p); err != nil {
		e.t.Fatal(err)
	}
	return p.Name
}

func (e *matrixEnv) unique(prefix string) string {
	e.n++
	return fmt.Sprintf("%s-%d", prefix, e.n)
}

func dept(mine bool) string {
	if mine {
		return ownDept
	}
	return otherDept
}

func digest(s string) []byte {
	h := sm3.Sum([]byte(s))
	return h[:]
}

func pngPicture(t *testing.T) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, 8, 8))
	for i := 0; i < 8; i++ {
		img.Set(i, i, color.NRGBA{R: 200, A: 255})
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func (e *matrixEnv) csr(cn string) string {
	key := testutil.NewKey(e.t, "ecdsa-p256")
	return string(testutil.NewCSR(e.t, key, testutil.CSROptions{Subject: pkix.Name{CommonName: cn, Organization: []string{"Matrix"}, Country: []string{"CN"}}}))
}

// cert issues a good staff-sign certificate in the department.
func (e *matrixEnv) cert(mine bool) string {
	e.t.Helper()
	out, err := e.a.Authority.Issue(context.Background(), ca.IssueRequest{CSR: []byte(e.csr(e.unique("staff"))), Profile: "staff-sign",
		Department: dept(mine), RequestedBy: "fixture"})
	if err != nil {
		e.t.Fatal(err)
	}
	return out.Certificate.Serial
}

// heldCert issues a certificate and puts it on hold.
func (e *matrixEnv) heldCert(mine bool) string {
	s := e.cert(mine)
	if _, err := e.a.Authority.Revoke(context.Background(), ca.RevokeRequest{Serial: s, Reason: ca.ReasonCertificateHold, By: "fixture"}); err != nil {
		e.t.Fatal(err)
	}
	return s
}

// seal makes a seal in the department; the own one is granted to the
// approval system.
func (e *matrixEnv) seal(mine bool) string {
	e.t.Helper()
	req := seal.MakeRequest{Name: e.unique("seal"), Type: "organization", Department: dept(mine), ValidDays: 365,
		Picture: seal.PictureInput{Type: "png", Data: e.png, WidthMM: 40, HeightMM: 40}}
	if mine {
		req.Grants = []string{e.names["approval-system"]}
	}
	m, err := e.svc.Seals.Service.Make(context.Background(), seal.Caller{Name: app.AdminPrincipal, Roles: []string{"admin"}}, req)
	if err != nil {
		e.t.Fatal(err)
	}
	return m.Record.ID
}

func (e *matrixEnv) suspendedSeal(mine bool) string {
	id := e.seal(mine)
	if _, err := e.svc.Seals.Service.Suspend(context.Background(), seal.Caller{Name: app.AdminPrincipal, Roles: []string{"admin"}}, id); err != nil {
		e.t.Fatal(err)
	}
	return id
}

func (e *matrixEnv) grantedSeal(mine bool, principal string) string {
	id := e.seal(mine)
	if _, err := e.svc.Seals.Service.AddGrant(context.Background(), seal.Caller{Name: app.AdminPrincipal, Roles: []string{"admin"}}, id, principal); err != nil {
		e.t.Fatal(err)
	}
	return id
}

// freshPrincipal makes a principal the request may change.
func (e *matrixEnv) freshPrincipal() string {
	return e.principal(&store.Principal{Name: e.unique("p"), Kind: store.KindPerson, Roles: []string{"auditor"}})
}

func (e *matrixEnv) freshToken() string {
	_, tok, err := e.svc.Access.Admin.CreateToken(context.Background(), e.names["auditor"], 0)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok.ID
}

func randSerial() string {
	b := make([]byte, 8)
	rand.Read(b)
	b[0] |= 0x10
	return hex.EncodeToString(b)
}

func jsonBody(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func (e *matrixEnv) do(method string, req matrixRequest, role string) (int, string) {
	var body *bytes.Reader
	if req.body != nil {
		body = bytes.NewReader(req.body)
	} else {
		body = bytes.NewReader(nil)
	}
	r := httptest.NewRequest(method, req.path, body)
	if req.body != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	if tok := e.tokens[role]; tok != "" {
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	w := httptest.NewRecorder()
	e.svc.API.ServeHTTP(w, r)
	b := w.Body.String()
	if len(b) > 300 {
		b = b[:300]
	}
	return w.Code, b
}

// routeCases: one per route ("METHOD pattern"; "* pattern" for routes
// registered for every method).
func (e *matrixEnv) routeCases() map[string]routeCase {
	get := func(action string, path func(e *matrixEnv, mine bool) string) routeCase {
		return routeCase{action, func(e *matrixEnv, _ string, mine bool) matrixRequest { return matrixRequest{path: path(e, mine)} }}
	}
	fixed := func(action, path string) routeCase {
		return get(action, func(*matrixEnv, bool) string { return path })
	}
	post := func(action string, build func(e *matrixEnv, mine bool) (string, any), ok int) routeCase {
		return routeCase{action, func(e *matrixEnv, _ string, mine bool) matrixRequest {
			path, body := build(e, mine)
			return matrixRequest{path: path, body: jsonBody(body), okStatus: ok}
		}}
	}
	sealPath := func(suffix string) func(e *matrixEnv, mine bool) string {
		return func(e *matrixEnv, mine bool) string { return "/api/v1/seals/" + e.seals[mine] + suffix }
	}
	return map[string]routeCase{
		"GET /healthz":    fixed("health.check", "/healthz"),
		"GET /readyz":     fixed("health.check", "/readyz"),
		"* /metrics":      fixed("metrics.read", "/metrics"),
		"GET /crl/{file}": fixed("crl.read", "/crl/issuing.crl"),
		"GET /ca/{file}":  fixed("ca.read", "/ca/root.crt"),
		"* /ocsp": {"ocsp.query", func(*matrixEnv, string, bool) matrixRequest {
			return matrixRequest{path: "/ocsp", body: []byte("not an OCSP request")}
		}},
		"* /ocsp/*":       fixed("ocsp.query", "/ocsp/bm90IGFuIE9DU1AgcmVxdWVzdA=="),
		"GET /api/v1/cas": fixed("ca.read", "/api/v1/cas"),

		"POST /api/v1/certificates": post("certificate.issue", func(e *matrixEnv, mine bool) (string, any) {
			return "/api/v1/certificates", map[string]any{"csr": e.csr(e.unique("new")), "profile": "staff-sign", "department": dept(mine)}
		}, http.StatusCreated),
		"GET /api/v1/certificates": get("certificate.list", func(_ *matrixEnv, mine bool) string {
			return "/api/v1/certificates?department=" + dept(mine)
		}),
		"GET /api/v1/certificates/{serial}": get("certificate.read", func(e *matrixEnv, mine bool) string {
			return "/api/v1/certificates/" + e.certs[mine]
		}),
		"POST /api/v1/certificates/{serial}/revoke": post("certificate.revoke", func(e *matrixEnv, mine bool) (string, any) {
			return "/api/v1/certificates/" + e.cert(mine) + "/revoke", map[string]any{"reason": "superseded"}
		}, http.StatusOK),
		"POST /api/v1/certificates/{serial}/unhold": post("certificate.unhold", func(e *matrixEnv, mine bool) (string, any) {
			return "/api/v1/certificates/" + e.heldCert(mine) + "/unhold", map[string]any{}
		}, http.StatusOK),

		"POST /api/v1/signatures/verify": post("signature.verify", func(e *matrixEnv, _ bool) (string, any) {
			return "/api/v1/signatures/verify", map[string]any{"signature": e.sig, "digest": hex.EncodeToString(digest("matrix document"))}
		}, http.StatusOK),
		"POST /api/v1/seals": post("seal.create", func(e *matrixEnv, mine bool) (string, any) {
			return "/api/v1/seals", map[string]any{"name": e.unique("api-seal"), "type": "organization", "department": dept(mine), "valid_days": 30,
				"picture": map[string]any{"type": "png", "data": base64.StdEncoding.EncodeToString(e.png), "width_mm": 40, "height_mm": 40}}
		}, http.StatusCreated),
		"GET /api/v1/seals": get("seal.list", func(_ *matrixEnv, mine bool) string {
			return "/api/v1/seals?department=" + dept(mine)
		}),
		"GET /api/v1/seals/{id}":         get("seal.read", sealPath("")),
		"GET /api/v1/seals/{id}/picture": get("seal.read", sealPath("/picture")),
		"POST /api/v1/seals/{id}/suspend": post("seal.suspend", func(e *matrixEnv, mine bool) (string, any) {
			return "/api/v1/seals/" + e.seal(mine) + "/suspend", map[string]any{}
		}, http.StatusOK),
		"POST /api/v1/seals/{id}/resume": post("seal.resume", func(e *matrixEnv, mine bool) (string, any) {
			return "/api/v1/seals/" + e.suspendedSeal(mine) + "/resume", map[string]any{}
		}, http.StatusOK),
		"POST /api/v1/seals/{id}/revoke": post("seal.revoke", func(e *matrixEnv, mine bool) (string, any) {
			return "/api/v1/seals/" + e.seal(mine) + "/revoke", map[string]any{"reason": "retired"}
		}, http.StatusOK),
		"GET /api/v1/seals/{id}/grants": get("seal.grant.read", sealPath("/grants")),
		"POST /api/v1/seals/{id}/grants": post("seal.grant", func(e *matrixEnv, mine bool) (string, any) {
			return "/api/v1/seals/" + e.seals[mine] + "/grants", map[string]any{"principal": e.unique("grantee")}
		}, http.StatusCreated),
		"DELETE /api/v1/seals/{id}/grants/{principal}": {"seal.ungrant", func(e *matrixEnv, _ string, mine bool) matrixRequest {
			p := e.unique("grantee")
			return matrixRequest{path: "/api/v1/seals/" + e.grantedSeal(mine, p) + "/grants/" + p, okStatus: http.StatusNoContent}
		}},
		"POST /api/v1/seals/{id}/stamp": post("seal.stamp", func(e *matrixEnv, mine bool) (string, any) {
			return "/api/v1/seals/" + e.seals[mine] + "/stamp", map[string]any{"digest": hex.EncodeToString(digest("doc")), "property_info": "matrix", "approval_ref": "r1"}
		}, http.StatusCreated),
		"GET /api/v1/seals/{id}/stamps": get("stamp.list", sealPath("/stamps")),

		"GET /api/v1/principals": fixed("principal.list", "/api/v1/principals"),
		"POST /api/v1/principals": post("principal.create", func(e *matrixEnv, _ bool) (string, any) {
			return "/api/v1/principals", map[string]any{"name": e.unique("new"), "kind": "service", "department": ownDept, "roles": []string{"approval-system"}}
		}, http.StatusCreated),
		"GET /api/v1/principals/{name}": fixed("principal.read", "/api/v1/principals/aud"),
		"PATCH /api/v1/principals/{name}": post("principal.update", func(e *matrixEnv, _ bool) (string, any) {
			return "/api/v1/principals/" + e.freshPrincipal(), map[string]any{"department": otherDept}
		}, http.StatusOK),
		"POST /api/v1/principals/{name}/bindings": post("principal.bind", func(e *matrixEnv, _ bool) (string, any) {
			return "/api/v1/principals/aud/bindings", map[string]any{"kind": "serial", "value": randSerial()}
		}, http.StatusCreated),
		"DELETE /api/v1/principals/{name}/bindings": {"principal.bind", func(e *matrixEnv, _ string, _ bool) matrixRequest {
			s := randSerial()
			if _, err := e.svc.Access.Admin.BindCertificate(context.Background(), store.CertBinding{Kind: "serial", Value: s, Principal: "aud"}); err != nil {
				e.t.Fatal(err)
			}
			return matrixRequest{path: "/api/v1/principals/aud/bindings?kind=serial&value=" + s, okStatus: http.StatusNoContent}
		}},
		"GET /api/v1/principals/{name}/tokens": fixed("token.list", "/api/v1/principals/aud/tokens"),
		"POST /api/v1/principals/{name}/tokens": post("token.create", func(e *matrixEnv, _ bool) (string, any) {
			return "/api/v1/principals/aud/tokens", map[string]any{"ttl": "1h"}
		}, http.StatusCreated),
		"GET /api/v1/tokens": fixed("token.list", "/api/v1/tokens"),
		"POST /api/v1/tokens/{id}/revoke": post("token.revoke", func(e *matrixEnv, _ bool) (string, any) {
			return "/api/v1/tokens/" + e.freshToken() + "/revoke", map[string]any{}
		}, http.StatusNoContent),
		"GET /api/v1/audit":              fixed("audit.read", "/api/v1/audit?limit=5"),
		"POST /api/v1/audit/checkpoints": post("audit.checkpoint", func(*matrixEnv, bool) (string, any) { return "/api/v1/audit/checkpoints", map[string]any{} }, 0),
	}
}

// routeAction is the action the API maps a route to.
func routeAction(method, pattern string) string {
	m := api.RouteActions()
	if a, ok := m[method+" "+pattern]; ok {
		return a
	}
	return m["* "+pattern]
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestRouteActionsComplete: every route the API maps has a rule in the
// policy, and every action of the policy is used by a route.
func TestRouteActionsComplete(t *testing.T) {
	pol, err := policies.DefaultAuthz()
	if err != nil {
		t.Fatal(err)
	}
	for route, action := range api.RouteActions() {
		if !pol.Known(action) {
			t.Errorf("route %s maps to %s, which policies/authz.yaml does not declare", route, action)
		}
	}
	var unused []string
	mapped := map[string]bool{}
	for _, a := range api.RouteActions() {
		mapped[a] = true
	}
	for _, a := range pol.Actions() {
		if !mapped[a] {
			unused = append(unused, a)
		}
	}
	if !slices.Equal(unused, nil) {
		t.Errorf("actions no route uses: %v", unused)
	}
}
