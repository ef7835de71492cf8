package ca

import (
	"fmt"
	"strings"
)

// RFC 5280 5.3.1 CRLReason codes.
const (
	ReasonUnspecified          = 0
	ReasonKeyCompromise        = 1
	ReasonCACompromise         = 2
	ReasonAffiliationChanged   = 3
	ReasonSuperseded           = 4
	ReasonCessationOfOperation = 5
	ReasonCertificateHold      = 6
	ReasonRemoveFromCRL        = 8
	ReasonPrivilegeWithdrawn   = 9
	ReasonAACompromise         = 10
)

// reasonNames are the RFC 5280 names, indexed by code; 7 is unused.
var reasonNames = [...]string{
	0: "unspecified", 1: "keyCompromise", 2: "cACompromise", 3: "affiliationChanged",
	4: "superseded", 5: "cessationOfOperation", 6: "certificateHold", 7: "",
	8: "removeFromCRL", 9: "privilegeWithdrawn", 10: "aACompromise",
}

// ReasonName returns the RFC 5280 name of a reason code.
func ReasonName(code int) string {
	if code >= 0 && code < len(reasonNames) && reasonNames[code] != "" {
		return reasonNames[code]
	}
	return fmt.Sprintf("reason(%d)", code)
}

// ParseReason maps an RFC 5280 reason name (case-insensitive) to its code.
// removeFromCRL is refused: it only has a meaning in delta CRLs, and a
// hold is lifted with Unhold.
func ParseReason(name string) (int, error) {
	if name == "" {
		return ReasonUnspecified, nil
	}
	for code, n := range reasonNames {
		if n != "" && strings.EqualFold(n, name) {
			if code == ReasonRemoveFromCRL {
				break
			}
			return code, nil
		}
	}
	return 0, fmt.Errorf("%w: unknown revocation reason %q (want an RFC 5280 name such as keyCompromise, superseded, cessationOfOperation, certificateHold)", ErrInvalidRequest, name)
}
