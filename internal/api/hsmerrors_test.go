package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gmtrust/gmtrust/ca"
	"github.com/gmtrust/gmtrust/hsm"
	"github.com/gmtrust/gmtrust/hsm/pkcs11"
)

func TestWriteKeyError(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"token gone, wrapped twice", fmt.Errorf("ca: CA issuing signing: %w", fmt.Errorf("sigalg: SM2 signing: %w", pkcs11.ErrTokenUnavailable)), true},
		{"pool exhausted", fmt.Errorf("x: %w", pkcs11.ErrPoolExhausted), true},
		{"PIN refused on re-login", fmt.Errorf("x: %w", pkcs11.ErrPINIncorrect), true},
		{"tampered wrapped key is not an outage", fmt.Errorf("x: %w", pkcs11.ErrWrappedKeyInvalid), false},
		{"unknown key", fmt.Errorf("x: %w", hsm.ErrKeyNotFound), false},
		{"bad request", &ca.RequestError{Type: ca.ProblemBadCSR, Detail: "garbage"}, false},
		{"other", errors.New("disk full"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Deps{})
			w := httptest.NewRecorder()
			r := httptest.NewRequest(http.MethodPost, "/api/v1/certificates", nil)
			if got := s.writeKeyError(w, r, tc.err); got != tc.want {
				t.Fatalf("writeKeyError = %v, want %v", got, tc.want)
			}
			if !tc.want {
				if w.Body.Len() != 0 || w.Code != http.StatusOK {
					t.Errorf("wrote %d %q for an error it does not handle", w.Code, w.Body)
				}
				return
			}
			if w.Code != http.StatusServiceUnavailable || w.Header().Get("Content-Type") != "application/problem+json" || w.Header().Get("Retry-After") == "" {
				t.Fatalf("got %d %v", w.Code, w.Header())
			}
			var p Problem
			if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
				t.Fatal(err)
			}
			if p.Type != ProblemTypePrefix+ProblemKeyUnavailable || p.Status != http.StatusServiceUnavailable || p.Instance != "/api/v1/certificates" {
				t.Errorf("problem = %+v", p)
			}
		})
	}
}
