package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/gmtrust/gmtrust/ca"
	"github.com/gmtrust/gmtrust/internal/audit"
	"github.com/gmtrust/gmtrust/internal/store"
)

// AccessAdmin is what the administration endpoints need
// (app.AccessAdmin): principals, their certificate bindings and tokens,
// and the audit log.
type AccessAdmin interface {
	Principals(ctx context.Context) ([]store.Principal, error)
	Principal(ctx context.Context, name string) (*store.Principal, error)
	CreatePrincipal(ctx context.Context, p *store.Principal) error
	UpdatePrincipal(ctx context.Context, name string, u store.PrincipalUpdate) (*store.Principal, error)
	CertBindings(ctx context.Context, principal string) ([]store.CertBinding, error)
	BindCertificate(ctx context.Context, b store.CertBinding) (*store.CertBinding, error)
	UnbindCertificate(ctx context.Context, principal, kind, value string) error
	Tokens(ctx context.Context, principal string) ([]store.Token, error)
	CreateToken(ctx context.Context, principal string, ttl time.Duration) (string, *store.Token, error)
	RevokeToken(ctx context.Context, id string) error
	ListAudit(ctx context.Context, f store.AuditFilter) ([]audit.Entry, int64, error)
	Checkpoint(ctx context.Context) (*audit.Checkpoint, error)
}

// MountAccess serves the administration of principals, tokens and the
// audit log under /api/v1 (rules in policies/authz.yaml: admin for
// changes, admin and auditor for reading).
func (s *Server) MountAccess(x AccessAdmin) {
	h := &accessHandlers{s: s, x: x}
	r := s.router
	r.Get("/api/v1/principals", h.listPrincipals)
	r.Post("/api/v1/principals", h.createPrincipal)
	r.Get("/api/v1/principals/{name}", h.getPrincipal)
	r.Patch("/api/v1/principals/{name}", h.updatePrincipal)
	r.Post("/api/v1/principals/{name}/bindings", h.bind)
	r.Delete("/api/v1/principals/{name}/bindings", h.unbind)
	r.Get("/api/v1/principals/{name}/tokens", h.listTokens)
	r.Post("/api/v1/principals/{name}/tokens", h.createToken)
	r.Get("/api/v1/tokens", h.listTokens)
	r.Post("/api/v1/tokens/{id}/revoke", h.revokeToken)
	r.Get("/api/v1/audit", h.listAudit)
	r.Post("/api/v1/audit/checkpoints", h.checkpoint)
}

type accessHandlers struct {
	s *Server
	x AccessAdmin
}

// PrincipalJSON is the API view of a principal.
type PrincipalJSON struct {
	Name       string        `json:"name"`
	Kind       string        `json:"kind"`
	Department string        `json:"department"`
	Roles      []string      `json:"roles"`
	Disabled   bool          `json:"disabled"`
	CreatedAt  time.Time     `json:"created_at"`
	UpdatedAt  time.Time     `json:"updated_at"`
	Bindings   []BindingJSON `json:"bindings,omitempty"`
}

// BindingJSON is a client certificate binding.
type BindingJSON struct {
	Kind  string `json:"kind"`
	Value string `json:"value"`
}

func principalJSON(p *store.Principal) PrincipalJSON {
	return PrincipalJSON{Name: p.Name, Kind: p.Kind, Department: p.Department, Roles: p.Roles, Disabled: p.Disabled,
		CreatedAt: p.CreatedAt.UTC(), UpdatedAt: p.UpdatedAt.UTC()}
}

// accessError maps administration errors to problems.
func (h *accessHandlers) accessError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, store.ErrInvalid):
		writeProblem(w, r, http.StatusBadRequest, "invalid-request", err.Error())
	case errors.Is(err, store.ErrDuplicate):
		writeProblem(w, r, http.StatusConflict, "exists", err.Error())
	case errors.Is(err, ca.ErrNotFound):
		writeProblem(w, r, http.StatusNotFound, "not-found", err.Error())
	case errors.Is(err, ErrInvalidAccessRequest):
		writeProblem(w, r, http.StatusBadRequest, "invalid-request", err.Error())
	default:
		h.s.writeError(w, r, err)
	}
}

// ErrInvalidAccessRequest is wrapped by an AccessAdmin for requests it
// refuses as malformed (unknown roles, bad token lifetimes): 400.
var ErrInvalidAccessRequest = errors.New("invalid access request")

func (h *accessHandlers) listPrincipals(w http.ResponseWriter, r *http.Request) {
	ps, err := h.x.Principals(r.Context())
	if err != nil {
		h.accessError(w, r, err)
		return
	}
	out := make([]PrincipalJSON, 0, len(ps))
	for i := range ps {
		out = append(out, principalJSON(&ps[i]))
	}
	writeJSON(w, http.StatusOK, out)
}

type createPrincipalRequest struct {
	Name       string   `json:"name"`
	Kind       string   `json:"kind"`
	Department string   `json:"department"`
	Roles      []string `json:"roles"`
}

func (h *accessHandlers) createPrincipal(w http.ResponseWriter, r *http.Request) {
	var req createPrincipalRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	p := &store.Principal{Name: req.Name, Kind: req.Kind, Department: req.Department, Roles: req.Roles}
	if err := h.x.CreatePrincipal(r.Context(), p); err != nil {
		h.accessError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/principals/"+p.Name)
	writeJSON(w, http.StatusCreated, principalJSON(p))
}

func (h *accessHandlers) getPrincipal(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	p, err := h.x.Principal(r.Context(), name)
	if err != nil {
		h.accessError(w, r, err)
		return
	}
	bs, err := h.x.CertBindings(r.Context(), name)
	if err != nil {
		h.accessError(w, r, err)
		return
	}
	j := principalJSON(p)
	for _, b := range bs {
		j.Bindings = append(j.Bindings, BindingJSON{Kind: b.Kind, Value: b.Value})
	}
	writeJSON(w, http.StatusOK, j)
}

type updatePrincipalRequest struct {
	Department *string  `json:"department"`
	Roles      []string `json:"roles"`
	Disabled   *bool    `json:"disabled"`
}

func (h *accessHandlers) updatePrincipal(w http.ResponseWriter, r *http.Request) {
	var req updatePrincipalRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	if req.Department == nil && req.Roles == nil && req.Disabled == nil {
		writeProblem(w, r, http.StatusBadRequest, "missing-field", "nothing to change: give department, roles or disabled")
		return
	}
	p, err := h.x.UpdatePrincipal(r.Context(), chi.URLParam(r, "name"), store.PrincipalUpdate{
		Department: req.Department, Roles: req.Roles, Disabled: req.Disabled,
	})
	if err != nil {
		h.accessError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, principalJSON(p))
}

func (h *accessHandlers) bind(w http.ResponseWriter, r *http.Request) {
	var req BindingJSON
	if !decodeJSON(w, r, &req) {
		return
	}
	b, err := h.x.BindCertificate(r.Context(), store.CertBinding{Kind: req.Kind, Value: req.Value, Principal: chi.URLParam(r, "name")})
	if err != nil {
		h.accessError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, BindingJSON{Kind: b.Kind, Value: b.Value})
}

func (h *accessHandlers) unbind(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("kind") == "" || q.Get("value") == "" {
		writeProblem(w, r, http.StatusBadRequest, "missing-field", "kind and value query parameters are required")
		return
	}
	if err := h.x.UnbindCertificate(r.Context(), chi.URLParam(r, "name"), q.Get("kind"), q.Get("value")); err != nil {
		h.accessError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// TokenJSON is the API view of a token: never its secret or hash.
type TokenJSON struct {
	ID         string     `json:"id"`
	Principal  string     `json:"principal"`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  *time.Time `json:"expires_at,omitempty"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
	// Token is the secret, present only in the answer that creates it.
	Token string `json:"token,omitempty"`
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func tokenJSON(t *store.Token) TokenJSON {
	return TokenJSON{ID: t.ID, Principal: t.Principal, CreatedAt: t.CreatedAt.UTC(), ExpiresAt: optTime(t.ExpiresAt),
		LastUsedAt: optTime(t.LastUsedAt), RevokedAt: optTime(t.RevokedAt)}
}

func (h *accessHandlers) listTokens(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	if name != "" {
		if _, err := h.x.Principal(r.Context(), name); err != nil {
			h.accessError(w, r, err)
			return
		}
	}
	ts, err := h.x.Tokens(r.Context(), name)
	if err != nil {
		h.accessError(w, r, err)
		return
	}
	out := make([]TokenJSON, 0, len(ts))
	for i := range ts {
		out = append(out, tokenJSON(&ts[i]))
	}
	writeJSON(w, http.StatusOK, out)
}

type createTokenRequest struct {
	// TTL is a Go duration ("720h"); empty means the default.
	TTL string `json:"ttl"`
}

func (h *accessHandlers) createToken(w http.ResponseWriter, r *http.Request) {
	var req createTokenRequest
	if !decodeJSONLimit(w, r, &req, MaxBodySize, true) {
		return
	}
	var ttl time.Duration
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil {
			writeProblem(w, r, http.StatusBadRequest, "bad-ttl", "ttl must be a duration such as 720h")
			return
		}
		ttl = d
	}
	secret, t, err := h.x.CreateToken(r.Context(), chi.URLParam(r, "name"), ttl)
	if err != nil {
		h.accessError(w, r, err)
		return
	}
	j := tokenJSON(t)
	j.Token = secret
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, j)
}

func (h *accessHandlers) revokeToken(w http.ResponseWriter, r *http.Request) {
	if err := h.x.RevokeToken(r.Context(), chi.URLParam(r, "id")); err != nil {
		h.accessError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// AuditEntryJSON is one audit log entry.
type AuditEntryJSON struct {
	Seq       int64           `json:"seq"`
	Time      time.Time       `json:"time"`
	Principal string          `json:"principal"`
	Action    string          `json:"action"`
	Object    string          `json:"object"`
	Outcome   string          `json:"outcome"`
	RequestID string          `json:"request_id,omitempty"`
	Details   json.RawMessage `json:"details"`
	PrevHash  string          `json:"prev_hash"`
	Hash      string          `json:"hash"`
}

// AuditEntryToJSON converts an entry for the API and the CLI.
func AuditEntryToJSON(e *audit.Entry) AuditEntryJSON {
	det := json.RawMessage(e.Details)
	if !json.Valid(det) {
		det, _ = json.Marshal(e.Details) // a tampered row: show it as a string
	}
	return AuditEntryJSON{Seq: e.Seq, Time: e.Time.UTC(), Principal: e.Principal, Action: e.Action, Object: e.Object,
		Outcome: e.Outcome, RequestID: e.RequestID, Details: det, PrevHash: hexString(e.PrevHash), Hash: hexString(e.Hash)}
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 2*len(b))
	for i, c := range b {
		out[2*i], out[2*i+1] = digits[c>>4], digits[c&15]
	}
	return string(out)
}

// listAudit pages through the audit log, newest first:
// ?principal=&action=&object=&outcome=&since=&until=&cursor=&limit=
// (action "certificate." selects a family; times in RFC 3339).
func (h *accessHandlers) listAudit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := store.AuditFilter{Principal: q.Get("principal"), Action: q.Get("action"), Object: q.Get("object"), Outcome: q.Get("outcome")}
	for _, t := range []struct {
		name string
		dst  *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if v := q.Get(t.name); v != "" {
			tt, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				writeProblem(w, r, http.StatusBadRequest, "bad-filter", t.name+" must be an RFC 3339 time")
				return
			}
			*t.dst = tt
		}
	}
	if v := q.Get("cursor"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			writeProblem(w, r, http.StatusBadRequest, "bad-cursor", "cursor must be a cursor from a previous page")
			return
		}
		f.Before = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > store.MaxLimit {
			writeProblem(w, r, http.StatusBadRequest, "bad-filter", "limit must be between 1 and 500")
			return
		}
		f.Limit = n
	}
	es, next, err := h.x.ListAudit(r.Context(), f)
	if err != nil {
		h.accessError(w, r, err)
		return
	}
	out := struct {
		Items      []AuditEntryJSON `json:"items"`
		NextCursor string           `json:"next_cursor,omitempty"`
	}{Items: make([]AuditEntryJSON, 0, len(es))}
	for i := range es {
		out.Items = append(out.Items, AuditEntryToJSON(&es[i]))
	}
	if next > 0 {
		out.NextCursor = strconv.FormatInt(next, 10)
	}
	writeJSON(w, http.StatusOK, out)
}

// CheckpointJSON is a signed audit checkpoint.
type CheckpointJSON struct {
	Seq       int64     `json:"seq"`
	Hash      string    `json:"hash"`
	Time      time.Time `json:"time"`
	Algorithm string    `json:"algorithm"`
}

func (h *accessHandlers) checkpoint(w http.ResponseWriter, r *http.Request) {
	cp, err := h.x.Checkpoint(r.Context())
	if err != nil {
		h.accessError(w, r, err)
		return
	}
	if cp == nil {
		writeJSON(w, http.StatusOK, map[string]any{"checkpoint": nil, "detail": "nothing new to sign"})
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"checkpoint": CheckpointJSON{Seq: cp.Seq, Hash: hexString(cp.Hash), Time: cp.Time.UTC(), Algorithm: cp.Algorithm.String()}})
}
