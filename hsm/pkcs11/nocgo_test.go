//go:build !cgo

package pkcs11

import (
	"context"
	"errors"
	"testing"
)

func TestNoCgo(t *testing.T) {
	if _, err := Open(context.Background(), Config{URI: "pkcs11:token=t"}); !errors.Is(err, ErrNoCgo) {
		t.Errorf("Open without cgo: %v, want ErrNoCgo", err)
	}
	if _, err := ListTokens(context.Background(), "/x.so"); !errors.Is(err, ErrNoCgo) {
		t.Errorf("ListTokens without cgo: %v, want ErrNoCgo", err)
	}
}
