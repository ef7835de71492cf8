package ca

import (
	"errors"
	"fmt"
)

// ErrInvalidRequest marks every error caused by what the caller sent
// (as opposed to a failure of the CA itself).
var ErrInvalidRequest = errors.New("invalid request")

// RequestError is a rejected request: Type is a stable machine-readable
// name (the API turns it into a problem type), Detail says which rule.
type RequestError struct {
	Type   string
	Detail string
	Err    error
}

func (e *RequestError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Type, e.Detail, e.Err)
	}
	return e.Type + ": " + e.Detail
}

// Unwrap lets errors.Is find both ErrInvalidRequest and the cause.
func (e *RequestError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrInvalidRequest, e.Err}
	}
	return []error{ErrInvalidRequest}
}

// Problem types the CA reports.
const (
	ProblemBadCSR         = "bad-csr"
	ProblemCSRTooLarge    = "csr-too-large"
	ProblemCSRSignature   = "csr-signature"
	ProblemUnknownProfile = "unknown-profile"
	ProblemPolicy         = "policy-violation"
	ProblemUnknownCA      = "unknown-ca"
	ProblemBadReason      = "bad-reason"
	ProblemBadSerial      = "bad-serial"
)

func reqErr(typ, detail string, err error) error {
	return &RequestError{Type: typ, Detail: detail, Err: err}
}
