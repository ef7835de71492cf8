package api

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/gmtrust/gmtrust/ca"
	"github.com/gmtrust/gmtrust/policies"
)

type issueRequest struct {
	CSR          string `json:"csr"`
	Profile      string `json:"profile"`
	Department   string `json:"department"`
	CA           string `json:"ca,omitempty"`
	ValidityDays int    `json:"validity_days,omitempty"`
}

type issueResponse struct {
	Serial      string    `json:"serial"`
	CA          string    `json:"ca"`
	Certificate string    `json:"certificate"`
	Chain       []string  `json:"chain"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
}

func (s *Server) issue(w http.ResponseWriter, r *http.Request) {
	var req issueRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	if req.CSR == "" || req.Profile == "" {
		writeProblem(w, r, http.StatusBadRequest, "missing-field", "csr and profile are required")
		return
	}
	if req.ValidityDays < 0 {
		writeProblem(w, r, http.StatusBadRequest, "bad-validity", "validity_days must be positive")
		return
	}
	if !s.Allow(w, r, "certificate.issue", policies.Resource{ID: "certificate/new", Department: req.Department, Profile: req.Profile}) {
		return
	}
	p := PrincipalFrom(r.Context())
	out, err := s.d.Authority.Issue(r.Context(), ca.IssueRequest{
		CSR: []byte(req.CSR), Profile: req.Profile, Department: req.Department,
		RequesterDepartment: p.Department, RequestedBy: p.Name, CAID: req.CA,
		Validity: time.Duration(req.ValidityDays) * 24 * time.Hour,
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	resp := issueResponse{Serial: out.Certificate.Serial, CA: out.Certificate.CAID, Certificate: pemCert(out.Certificate.DER),
		NotBefore: out.Certificate.NotBefore.UTC(), NotAfter: out.Certificate.NotAfter.UTC()}
	for _, c := range out.Chain {
		resp.Chain = append(resp.Chain, pemCert(c))
	}
	w.Header().Set("Location", "/api/v1/certificates/"+out.Certificate.Serial)
	writeJSON(w, http.StatusCreated, resp)
}

// CertificateJSON is the API view of a certificate.
type CertificateJSON struct {
	Serial         string     `json:"serial"`
	CA             string     `json:"ca"`
	Status         string     `json:"status"`
	Reason         string     `json:"reason,omitempty"`
	RevokedAt      *time.Time `json:"revoked_at,omitempty"`
	InvalidityDate *time.Time `json:"invalidity_date,omitempty"`
	Profile        string     `json:"profile"`
	Department     string     `json:"department"`
	Subject        string     `json:"subject"`
	SANs           []string   `json:"sans"`
	KeyAlgorithm   string     `json:"key_algorithm"`
	NotBefore      time.Time  `json:"not_before"`
	NotAfter       time.Time  `json:"not_after"`
	RequestedBy    string     `json:"requested_by"`
	CreatedAt      time.Time  `json:"created_at"`
	Certificate    string     `json:"certificate,omitempty"`
}

// ToJSON converts a certificate to its API view; withPEM adds the PEM.
func ToJSON(c *ca.Certificate, withPEM bool) CertificateJSON {
	j := CertificateJSON{Serial: c.Serial, CA: c.CAID, Status: string(c.Status), Profile: c.Profile, Department: c.Department,
		Subject: c.Subject, SANs: c.SANs, KeyAlgorithm: c.KeyAlgorithm, NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(),
		RequestedBy: c.RequestedBy, CreatedAt: c.CreatedAt.UTC()}
	if j.SANs == nil {
		j.SANs = []string{}
	}
	if c.Status != ca.StatusGood {
		j.Reason = ca.ReasonName(c.Reason)
		t := c.RevokedAt.UTC()
		j.RevokedAt = &t
		if !c.InvalidityDate.IsZero() {
			d := c.InvalidityDate.UTC()
			j.InvalidityDate = &d
		}
	}
	if withPEM {
		j.Certificate = pemCert(c.DER)
	}
	return j
}

// certResource describes a certificate to the access policy.
func certResource(c *ca.Certificate) policies.Resource {
	return policies.Resource{ID: "certificate/" + c.CAID + "/" + c.Serial, Department: c.Department, Owner: c.RequestedBy, Profile: c.Profile}
}

// findAllowed loads the certificate of the request's {serial} and checks
// action on it; it answers the request itself when it returns nil.
func (s *Server) findAllowed(w http.ResponseWriter, r *http.Request, action string) *ca.Certificate {
	c, err := s.d.Authority.Find(r.Context(), chi.URLParam(r, "serial"))
	if err != nil {
		s.writeError(w, r, err)
		return nil
	}
	if !s.Allow(w, r, action, certResource(c)) {
		return nil
	}
	return c
}

func (s *Server) getCertificate(w http.ResponseWriter, r *http.Request) {
	c := s.findAllowed(w, r, "certificate.read")
	if c == nil {
		return
	}
	writeJSON(w, http.StatusOK, ToJSON(c, true))
}

func (s *Server) listCertificates(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := ca.Filter{CAID: q.Get("ca"), Status: ca.Status(q.Get("status")), Department: q.Get("department"), Profile: q.Get("profile"), Cursor: q.Get("cursor")}
	switch f.Status {
	case "", ca.StatusGood, ca.StatusRevoked, ca.StatusHold:
	default:
		writeProblem(w, r, http.StatusBadRequest, "bad-filter", "status must be good, revoked or hold")
		return
	}
	// A department-scoped reader lists its own department only.
	if d, _ := DecisionFrom(r.Context()); d.Scope != policies.ScopeAny {
		p := PrincipalFrom(r.Context())
		if d.Scope != policies.ScopeDepartment || p == nil || p.Department == "" ||
			(f.Department != "" && f.Department != p.Department) {
			s.deny(w, r, "certificate.list", "certificates?department="+f.Department,
				policies.AccessDecision{Rule: "certificates of other departments are not listed to this principal"})
			return
		}
		f.Department = p.Department
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 500 {
			writeProblem(w, r, http.StatusBadRequest, "bad-filter", "limit must be between 1 and 500")
			return
		}
		f.Limit = n
	}
	items, next, err := s.d.Authority.List(r.Context(), f)
	if err != nil {
		if errors.Is(err, ca.ErrInvalidRequest) {
			writeProblem(w, r, http.StatusBadRequest, "bad-cursor", err.Error())
			return
		}
		s.writeError(w, r, err)
		return
	}
	out := struct {
		Items      []CertificateJSON `json:"items"`
		NextCursor string            `json:"next_cursor,omitempty"`
	}{Items: make([]CertificateJSON, 0, len(items)), NextCursor: next}
	for i := range items {
		out.Items = append(out.Items, ToJSON(&items[i], false))
	}
	writeJSON(w, http.StatusOK, out)
}

type revokeRequest struct {
	Reason         string     `json:"reason"`
	InvalidityDate *time.Time `json:"invalidity_date,omitempty"`
}

func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	var req revokeRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	reason, err := ca.ParseReason(req.Reason)
	if err != nil {
		writeProblem(w, r, http.StatusBadRequest, ca.ProblemBadReason, err.Error())
		return
	}
	cur := s.findAllowed(w, r, "certificate.revoke")
	if cur == nil {
		return
	}
	rr := ca.RevokeRequest{Serial: cur.Serial, Reason: reason, By: PrincipalFrom(r.Context()).Name}
	if req.InvalidityDate != nil {
		rr.InvalidityDate = *req.InvalidityDate
	}
	c, err := s.d.Authority.Revoke(r.Context(), rr)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ToJSON(c, false))
}

func (s *Server) unhold(w http.ResponseWriter, r *http.Request) {
	cur := s.findAllowed(w, r, "certificate.unhold")
	if cur == nil {
		return
	}
	c, err := s.d.Authority.Unhold(r.Context(), cur.Serial, PrincipalFrom(r.Context()).Name)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ToJSON(c, false))
}
