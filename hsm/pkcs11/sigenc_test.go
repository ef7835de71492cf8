package pkcs11

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"errors"
	"math/big"
	"testing"
)

// refDER encodes r and s with encoding/asn1, an encoder independent of
// the cryptobyte code under test.
func refDER(t *testing.T, r, s []byte) []byte {
	t.Helper()
	der, err := asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(r), new(big.Int).SetBytes(s)})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestRawToDER(t *testing.T) {
	n := 32
	pad := func(b ...byte) []byte { return append(make([]byte, n-len(b)), b...) }
	high := bytes.Repeat([]byte{0xff}, n)
	tests := []struct {
		name string
		r, s []byte
	}{
		{"small values (leading zeros)", pad(1), pad(2)},
		{"high bit set needs a 0x00", high, pad(0x80)},
		{"one leading zero byte", pad(0x7f, 0xff, 0xff), append([]byte{0}, bytes.Repeat([]byte{0x80}, n-1)...)},
		{"full width", bytes.Repeat([]byte{0x12}, n), bytes.Repeat([]byte{0x7f}, n)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := append(append([]byte(nil), tt.r...), tt.s...)
			der, err := rawToDER(raw, n)
			if err != nil {
				t.Fatal(err)
			}
			if want := refDER(t, tt.r, tt.s); !bytes.Equal(der, want) {
				t.Fatalf("rawToDER = %x, want %x", der, want)
			}
			back, err := derToRaw(der, n)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(back, raw) {
				t.Fatalf("derToRaw(rawToDER(x)) = %x, want %x", back, raw)
			}
		})
	}
}

func TestRawToDERErrors(t *testing.T) {
	tests := []struct {
		name string
		raw  []byte
		n    int
	}{
		{"empty", nil, 32},
		{"odd length", make([]byte, 63), 32},
		{"too long", make([]byte, 66), 32},
		{"P-384 size for P-256", make([]byte, 96), 32},
		{"zero r", append(make([]byte, 32), bytes.Repeat([]byte{1}, 32)...), 32},
		{"zero s", append(bytes.Repeat([]byte{1}, 32), make([]byte, 32)...), 32},
		{"zero order size", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if der, err := rawToDER(tt.raw, tt.n); !errors.Is(err, errSigEncoding) {
				t.Fatalf("rawToDER = %x, %v; want errSigEncoding", der, err)
			}
		})
	}
}

func TestDERToRawErrors(t *testing.T) {
	n := 32
	good := refDER(t, []byte{1}, []byte{2})
	long := append([]byte{1}, make([]byte, 32)...) // 33 significant bytes
	tests := []struct {
		name string
		der  []byte
	}{
		{"empty", nil},
		{"trailing data", append(append([]byte(nil), good...), 0)},
		{"not a sequence", []byte{0x31, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x02}},
		{"one integer", []byte{0x30, 0x03, 0x02, 0x01, 0x01}},
		{"three integers", []byte{0x30, 0x09, 0x02, 0x01, 0x01, 0x02, 0x01, 0x02, 0x02, 0x01, 0x03}},
		{"non-minimal integer", []byte{0x30, 0x07, 0x02, 0x02, 0x00, 0x01, 0x02, 0x01, 0x02}},
		{"negative r", []byte{0x30, 0x06, 0x02, 0x01, 0xff, 0x02, 0x01, 0x02}},
		{"zero s", []byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x00}},
		{"r longer than the order", refDER(t, long, []byte{2})},
		{"truncated", good[:len(good)-1]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if raw, err := derToRaw(tt.der, n); !errors.Is(err, errSigEncoding) {
				t.Fatalf("derToRaw = %x, %v; want errSigEncoding", raw, err)
			}
		})
	}
}

// TestSignatureConversionWithGo converts real ECDSA signatures both ways
// and checks that they still verify.
func TestSignatureConversionWithGo(t *testing.T) {
	for _, curve := range []elliptic.Curve{elliptic.P256(), elliptic.P384()} {
		key, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		n := (curve.Params().N.BitLen() + 7) / 8
		for i := range 50 {
			d := sha256.Sum256([]byte{byte(i)})
			sig, err := ecdsa.SignASN1(rand.Reader, key, d[:])
			if err != nil {
				t.Fatal(err)
			}
			raw, err := derToRaw(sig, n)
			if err != nil {
				t.Fatal(err)
			}
			der, err := rawToDER(raw, n)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(der, sig) || !ecdsa.VerifyASN1(&key.PublicKey, d[:], der) {
				t.Fatalf("%s: conversion changed a valid signature: %x -> %x", curve.Params().Name, sig, der)
			}
		}
	}
}
