package ca

import (
	"bytes"
	"crypto/rand"
	"errors"
	"math/big"
	"testing"
)

func TestNewSerialShape(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 2000; i++ {
		b, err := NewSerial(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != SerialBytes || b[0]&0x80 != 0 || b[0]&0x40 == 0 {
			t.Fatalf("serial %x: want %d bytes, top bit clear, next bit set", b, SerialBytes)
		}
		h := SerialHex(b)
		if len(h) != 2*SerialBytes {
			t.Fatalf("hex %q: want %d digits", h, 2*SerialBytes)
		}
		if seen[h] {
			t.Fatalf("duplicate serial %s after %d draws", h, i)
		}
		seen[h] = true
		if got := new(big.Int).SetBytes(b).Text(16); got != h {
			t.Fatalf("SerialHex %s != big.Int %s", h, got)
		}
	}
}

func TestNewSerialShortRead(t *testing.T) {
	if _, err := NewSerial(bytes.NewReader([]byte{1, 2, 3})); err == nil {
		t.Fatal("want error on short randomness")
	}
}

func TestNormalizeSerial(t *testing.T) {
	tests := []struct {
		in, want string
		bad      bool
	}{
		{in: "4A0B", want: "4a0b"},
		{in: "0x004a0b", want: "4a0b"},
		{in: "4a:0b", want: "4a0b"},
		{in: " 7f ", want: "7f"},
		{in: "", bad: true},
		{in: "0", bad: true},
		{in: "xyz", bad: true},
		{in: "-5", bad: true},
		{in: "1234567890123456789012345678901234567890ab", bad: true},
	}
	for _, tt := range tests {
		got, err := NormalizeSerial(tt.in)
		if tt.bad {
			if !errors.Is(err, ErrBadSerial) {
				t.Errorf("NormalizeSerial(%q) = %q, %v; want ErrBadSerial", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("NormalizeSerial(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestSerialDERContent(t *testing.T) {
	tests := []struct {
		in   string
		want []byte
	}{
		{"7f", []byte{0x7f}},
		{"80", []byte{0x00, 0x80}},
		{"abc", []byte{0x0a, 0xbc}},
		{"4a0b", []byte{0x4a, 0x0b}},
	}
	for _, tt := range tests {
		got, err := serialDERContent(tt.in)
		if err != nil || !bytes.Equal(got, tt.want) {
			t.Errorf("serialDERContent(%q) = %x, %v; want %x", tt.in, got, err, tt.want)
		}
	}
}

func TestAppendSerialDERMatchesDecode(t *testing.T) {
	for _, s := range []string{"7f", "80", "abc", "4a0b", "1", "ff", "0123", "4abcdef0123456789abcdef012345678"} {
		want, err := serialDERContent(s)
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendSerialDER(nil, s)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("appendSerialDER(%q) = %x, %v; want %x", s, got, err, want)
		}
	}
	for _, bad := range []string{"", "xz", "12345678901234567890123456789012345678901"} {
		if _, err := appendSerialDER(nil, bad); err == nil {
			t.Errorf("appendSerialDER(%q): want error", bad)
		}
	}
}
