package pkcs11

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/emmansun/gmsm/sm2"
)

func testEnvelope(t *testing.T) (*envelope, *sm2.PrivateKey) {
	t.Helper()
	key, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := sm2.PublicKeyToECDH(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return &envelope{version: 1, algorithm: "sm2", keyID: []byte{1, 2, 3, 4},
		publicKey: pub.Bytes(), iv: bytes.Repeat([]byte{7}, 12), ciphertext: bytes.Repeat([]byte{9}, 48)}, key
}

func TestEnvelopeRoundTrip(t *testing.T) {
	e, key := testEnvelope(t)
	der, err := e.marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, pub, err := parseEnvelope(der)
	if err != nil {
		t.Fatal(err)
	}
	if got.version != e.version || got.algorithm != e.algorithm || !bytes.Equal(got.keyID, e.keyID) ||
		!bytes.Equal(got.publicKey, e.publicKey) || !bytes.Equal(got.iv, e.iv) || !bytes.Equal(got.ciphertext, e.ciphertext) {
		t.Errorf("round trip: %+v, want %+v", got, e)
	}
	if !pub.Equal(&key.PublicKey) {
		t.Error("parsed public key differs")
	}
}

func TestParseEnvelopeErrors(t *testing.T) {
	tests := []struct {
		name   string
		change func(e *envelope)
	}{
		{"version 2", func(e *envelope) { e.version = 2 }},
		{"version 0", func(e *envelope) { e.version = 0 }},
		{"algorithm", func(e *envelope) { e.algorithm = "ecdsa" }},
		{"empty IV", func(e *envelope) { e.iv = nil }},
		{"short IV", func(e *envelope) { e.iv = e.iv[:11] }},
		{"long IV", func(e *envelope) { e.iv = append(e.iv, 0) }},
		{"short ciphertext", func(e *envelope) { e.ciphertext = e.ciphertext[:47] }},
		{"ciphertext without tag", func(e *envelope) { e.ciphertext = e.ciphertext[:32] }},
		{"empty key ID", func(e *envelope) { e.keyID = nil }},
		{"compressed public key", func(e *envelope) { e.publicKey = e.publicKey[:33] }},
		{"public key not on the curve", func(e *envelope) { e.publicKey[64] ^= 1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, _ := testEnvelope(t)
			tt.change(e)
			der, err := e.marshal()
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := parseEnvelope(der); !errors.Is(err, ErrWrappedKeyInvalid) {
				t.Fatalf("parseEnvelope: %v, want ErrWrappedKeyInvalid", err)
			}
		})
	}
	e, _ := testEnvelope(t)
	der, _ := e.marshal()
	for _, bad := range [][]byte{nil, der[:len(der)-1], append(append([]byte(nil), der...), 0), []byte("garbage")} {
		if _, _, err := parseEnvelope(bad); !errors.Is(err, ErrWrappedKeyInvalid) {
			t.Errorf("parseEnvelope(%x): %v, want ErrWrappedKeyInvalid", bad, err)
		}
	}
}

// TestEnvelopeAAD checks that every bound field changes the AAD.
func TestEnvelopeAAD(t *testing.T) {
	e, _ := testEnvelope(t)
	base := envelopeAAD("ca", e)
	if !bytes.Equal(base, envelopeAAD("ca", e)) {
		t.Fatal("AAD is not deterministic")
	}
	changes := map[string]func(e *envelope) string{
		"label":   func(e *envelope) string { return "cb" },
		"key ID":  func(e *envelope) string { e.keyID = []byte{1, 2, 3, 5}; return "ca" },
		"public":  func(e *envelope) string { e.publicKey = append([]byte{4}, e.publicKey[2:]...); return "ca" },
		"alg":     func(e *envelope) string { e.algorithm = "sm9"; return "ca" },
		"version": func(e *envelope) string { e.version = 2; return "ca" },
	}
	for name, change := range changes {
		c := *e
		label := change(&c)
		if bytes.Equal(base, envelopeAAD(label, &c)) {
			t.Errorf("changing the %s leaves the AAD unchanged", name)
		}
	}
	// The IV and ciphertext are not AAD (GCM authenticates them anyway).
	c := *e
	c.iv = make([]byte, 12)
	if !bytes.Equal(base, envelopeAAD("ca", &c)) {
		t.Error("IV leaked into the AAD")
	}
}

func TestOpenScalar(t *testing.T) {
	key, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	scalar := key.D.FillBytes(make([]byte, 32))
	priv, err := openScalar(scalar, &key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if !priv.Equal(key) {
		t.Error("openScalar returned another key")
	}
	n := sm2.P256().Params().N
	tests := map[string][]byte{
		"wrong public key": scalar,
		"zero":             make([]byte, 32),
		"order":            n.FillBytes(make([]byte, 32)),
		"short":            scalar[:31],
		"long":             append([]byte{0}, scalar...),
	}
	for name, s := range tests {
		pub := &key.PublicKey
		if name == "wrong public key" {
			pub = &other.PublicKey
		}
		if _, err := openScalar(s, pub); !errors.Is(err, ErrWrappedKeyInvalid) {
			t.Errorf("%s: %v, want ErrWrappedKeyInvalid", name, err)
		}
	}
}

func TestZeroKey(t *testing.T) {
	key, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	words := key.D.Bits()
	zeroKey(key)
	for i, w := range words[:cap(words)] {
		if w != 0 {
			t.Fatalf("word %d of the scalar survived: %x", i, w)
		}
	}
	if key.D.Sign() != 0 {
		t.Error("D is not zero")
	}
	zeroKey(nil) // no panic
}
