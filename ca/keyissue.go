package ca

import (
	"context"
	"crypto"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmtrust/gmtrust/policies"
)

// KeyIssueRequest asks for a certificate for a key the service holds
// itself (server-side key generation, as seal servers do): there is no
// CSR, so the subject and public key come from the caller.
type KeyIssueRequest struct {
	PublicKey           crypto.PublicKey
	Subject             pkix.Name
	Emails              []string
	Profile             string
	Department          string
	RequesterDepartment string
	RequestedBy         string
	CAID                string
	Validity            time.Duration
}

// IssueForKey issues a certificate for a public key under a profile, with
// the same checks and recording as Issue.
func (a *Authority) IssueForKey(ctx context.Context, req KeyIssueRequest) (*Issued, error) {
	iss, err := a.issuerFor(req.CAID)
	if err != nil {
		return nil, err
	}
	prof, err := a.profiles.Get(req.Profile)
	if err != nil {
		return nil, reqErr(ProblemUnknownProfile, fmt.Sprintf("no profile %q", req.Profile), err)
	}
	subject, err := asn1.Marshal(req.Subject.ToRDNSequence())
	if err != nil {
		return nil, reqErr(ProblemBadCSR, "subject", err)
	}
	parsed, err := parseName(subject)
	if err != nil {
		return nil, err
	}
	spki, err := smx509.MarshalPKIXPublicKey(req.PublicKey)
	if err != nil {
		return nil, reqErr(ProblemBadCSR, "public key", err)
	}
	dec, err := prof.Check(policies.Request{
		Subject: parsed, RawSubject: subject, PublicKey: req.PublicKey, EmailAddresses: req.Emails,
		Department: req.Department, RequesterDepartment: req.RequesterDepartment, Validity: req.Validity,
	})
	if err != nil {
		return nil, reqErr(ProblemPolicy, fmt.Sprintf("profile %s", prof.Name), err)
	}
	c, err := a.issueLeaf(ctx, iss, leafSpec{
		subject: subject, subjectName: parsed.String(), spki: spki, pub: req.PublicKey, emails: req.Emails,
		decision: dec, profile: prof.Name, department: req.Department, requestedBy: req.RequestedBy,
	})
	if err != nil {
		return nil, err
	}
	a.metrics.issued.WithLabelValues(c.CAID, c.Profile).Inc()
	return &Issued{Certificate: c, Chain: a.Chain(iss.rec.ID)}, nil
}
