package pkcs11

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"testing"
)

// TestDigestInfo signs our DigestInfo with raw PKCS#1 v1.5 (hash 0) and
// verifies with crypto/rsa's own prefix for the hash: they must match.
func TestDigestInfo(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		hh := h.New()
		hh.Write([]byte("gmtrust"))
		digest := hh.Sum(nil)
		di, err := digestInfo(h, digest)
		if err != nil {
			t.Fatalf("%v: %v", h, err)
		}
		sig, err := rsa.SignPKCS1v15(nil, key, 0, di)
		if err != nil {
			t.Fatal(err)
		}
		if err := rsa.VerifyPKCS1v15(&key.PublicKey, h, digest, sig); err != nil {
			t.Errorf("%v: DigestInfo differs from crypto/rsa's: %v", h, err)
		}
	}
}

func TestDigestInfoErrors(t *testing.T) {
	tests := []struct {
		name   string
		h      crypto.Hash
		digest []byte
	}{
		{"no hash", 0, make([]byte, 32)},
		{"SHA-1", crypto.SHA1, make([]byte, 20)},
		{"SHA-224", crypto.SHA224, make([]byte, 28)},
		{"short digest", crypto.SHA256, make([]byte, 31)},
		{"long digest", crypto.SHA384, make([]byte, 64)},
	}
	for _, tt := range tests {
		if di, err := digestInfo(tt.h, tt.digest); err == nil {
			t.Errorf("%s: digestInfo = %x, want error", tt.name, di)
		}
	}
}

func TestPSSSaltLength(t *testing.T) {
	tests := []struct {
		name string
		opts rsa.PSSOptions
		bits int
		want int
		err  bool
	}{
		{"auto is maximal, 2048/SHA-256", rsa.PSSOptions{Hash: crypto.SHA256}, 2048, 256 - 32 - 2, false},
		{"auto, 3072/SHA-384", rsa.PSSOptions{Hash: crypto.SHA384}, 3072, 384 - 48 - 2, false},
		{"auto, odd modulus 2047 bits", rsa.PSSOptions{Hash: crypto.SHA256}, 2047, 256 - 32 - 2, false},
		{"auto, modulus 2049 bits (emLen from modBits-1)", rsa.PSSOptions{Hash: crypto.SHA256}, 2049, 256 - 32 - 2, false},
		{"auto, modulus 2050 bits", rsa.PSSOptions{Hash: crypto.SHA256}, 2050, 257 - 32 - 2, false},
		{"equals hash", rsa.PSSOptions{Hash: crypto.SHA512, SaltLength: rsa.PSSSaltLengthEqualsHash}, 2048, 64, false},
		{"explicit", rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: 20}, 2048, 20, false},
		{"explicit too long", rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: 223}, 2048, 0, true},
		{"negative", rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: -5}, 2048, 0, true},
		{"no hash", rsa.PSSOptions{}, 2048, 0, true},
		{"key too small", rsa.PSSOptions{Hash: crypto.SHA512}, 512, 0, true},
	}
	for _, tt := range tests {
		got, err := pssSaltLength(&tt.opts, tt.bits)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("%s: pssSaltLength = %d, %v; want %d, error %v", tt.name, got, err, tt.want, tt.err)
		}
	}
	if _, err := pssSaltLength(&rsa.PSSOptions{Hash: crypto.SHA1}, 2048); !errors.Is(err, ErrUnsupported) {
		t.Errorf("SHA-1: %v, want ErrUnsupported", err)
	}
}
