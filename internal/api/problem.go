package api

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/gmtrust/gmtrust/ca"
	"github.com/gmtrust/gmtrust/policies"
)

// ProblemTypePrefix starts every problem type URI; the rest is a stable
// slug that clients may switch on.
const ProblemTypePrefix = "urn:gmtrust:problem:"

// Problem is an RFC 9457 problem details object.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	// Rule names the policy rule that refused a request.
	Rule string `json:"rule,omitempty"`
}

func writeProblem(w http.ResponseWriter, r *http.Request, status int, slug, detail string) {
	writeProblemRule(w, r, status, slug, detail, "")
}

func writeProblemRule(w http.ResponseWriter, r *http.Request, status int, slug, detail, rule string) {
	p := Problem{Type: ProblemTypePrefix + slug, Title: http.StatusText(status), Status: status, Detail: detail, Rule: rule}
	if r != nil {
		p.Instance = r.URL.Path
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(p)
}

// writeError maps a domain error to a problem response; unknown errors
// become 500 without leaking their text.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	if s.writeKeyError(w, r, err) {
		return
	}
	var re *ca.RequestError
	var v *policies.Violation
	switch {
	case errors.As(err, &v):
		writeProblemRule(w, r, http.StatusUnprocessableEntity, "policy-violation", err.Error(), v.Rule)
	case errors.As(err, &re):
		status := http.StatusBadRequest
		switch re.Type {
		case ca.ProblemCSRTooLarge:
			status = http.StatusRequestEntityTooLarge
		case ca.ProblemUnknownCA:
			status = http.StatusNotFound
		case "already-revoked", "not-on-hold":
			status = http.StatusConflict
		}
		writeProblem(w, r, status, re.Type, err.Error())
	case errors.Is(err, ca.ErrNotFound):
		writeProblem(w, r, http.StatusNotFound, "not-found", err.Error())
	default:
		s.log.Error("request failed", "path", r.URL.Path, "err", err)
		writeProblem(w, r, http.StatusInternalServerError, "internal", "internal error; see the server log")
	}
}
