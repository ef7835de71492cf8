package api

import (
	"errors"
	"net/http"

	"github.com/gmtrust/gmtrust/hsm/pkcs11"
)

// ProblemKeyUnavailable is the problem type of a request that failed
// because a signing key could not be used right now: the HSM token is
// gone, its module was finalised, it refuses the PIN after a re-login, or
// every session stayed busy. The request itself was fine and can be
// retried; the key manager reconnects on its own once the token is back.
const ProblemKeyUnavailable = "key-unavailable"

// keyRetryAfter is the Retry-After hint, in seconds, for key outages. The
// PKCS#11 backend rescans for a missing token at most once a second.
const keyRetryAfter = "5"

// keyUnavailable reports whether err is a key manager outage as opposed
// to a bad request or a bug.
func keyUnavailable(err error) bool {
	return errors.Is(err, pkcs11.ErrTokenUnavailable) ||
		errors.Is(err, pkcs11.ErrPoolExhausted) ||
		errors.Is(err, pkcs11.ErrPINIncorrect)
}

// writeKeyError answers a key manager outage with 503 problem+json and
// reports whether err was one. It belongs at the top of writeError, so
// that every handler that signs (issuance, revocation with a new CRL, CRL
// and OCSP responses, seals) maps outages the same way.
func (s *Server) writeKeyError(w http.ResponseWriter, r *http.Request, err error) bool {
	if !keyUnavailable(err) {
		return false
	}
	s.log.Warn("signing key unavailable", "path", r.URL.Path, "err", err)
	w.Header().Set("Retry-After", keyRetryAfter)
	writeProblem(w, r, http.StatusServiceUnavailable, ProblemKeyUnavailable,
		"the signing key is temporarily unavailable (HSM token not reachable); retry later")
	return true
}
