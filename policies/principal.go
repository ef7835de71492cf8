package policies

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// MaxPrincipalName bounds a principal's name, in bytes.
const MaxPrincipalName = 64

// ErrPrincipalName is returned for a name no principal can have.
var ErrPrincipalName = errors.New("policies: invalid principal name")

// CheckPrincipalName enforces the form of principal names: 1 to
// MaxPrincipalName bytes of letters (any script), digits, '.', '-', '_'
// or '@'. Names appear in the audit log and in URLs, so no spaces,
// slashes or colons ("cli:" marks command-line actors). Everything that
// names a principal (accounts, seal grants) is checked against it, so a
// name that could never log in is refused where it is given.
func CheckPrincipalName(name string) error {
	if name == "" || len(name) > MaxPrincipalName {
		return fmt.Errorf("%w: must have 1 to %d bytes", ErrPrincipalName, MaxPrincipalName)
	}
	for _, r := range name {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && !strings.ContainsRune(".-_@", r) {
			return fmt.Errorf("%w: %q: only letters, digits, '.', '-', '_' and '@' are allowed", ErrPrincipalName, name)
		}
	}
	return nil
}
