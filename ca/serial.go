package ca

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"
)

// SerialBytes is the length of the serial numbers gmtrust makes: 16 bytes
// of which 126 bits are random (RFC 5280 allows up to 20 octets; CA/B
// Forum asks for at least 64 bits of entropy).
const SerialBytes = 16

// NewSerial returns a random positive serial number of a fixed length.
// The top bit is cleared so the DER INTEGER needs no leading zero, and the
// next one is set so the number never shrinks: every serial is exactly
// SerialBytes long and 2*SerialBytes hex digits.
func NewSerial(r io.Reader) ([]byte, error) {
	b := make([]byte, SerialBytes)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("ca: reading randomness for serial: %w", err)
	}
	b[0] = b[0]&0x7f | 0x40
	return b, nil
}

// ErrBadSerial is returned for serial numbers that cannot be one of ours.
var ErrBadSerial = errors.New("invalid serial number")

// SerialHex is the canonical text form: lower-case hex without leading
// zeros ("0" for zero).
func SerialHex(b []byte) string {
	for len(b) > 1 && b[0] == 0 {
		b = b[1:]
	}
	s := hex.EncodeToString(b)
	if len(s) > 1 && s[0] == '0' {
		s = s[1:]
	}
	return s
}

// NormalizeSerial accepts a serial in hex (any case, optional "0x",
// optional ':' separators as OpenSSL prints them) and returns its
// canonical form.
func NormalizeSerial(s string) (string, error) {
	s = strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(s), "0x"), "0X")
	s = strings.ReplaceAll(s, ":", "")
	if s == "" || len(s) > 40 {
		return "", fmt.Errorf("%w: %q", ErrBadSerial, s)
	}
	n, ok := new(big.Int).SetString(s, 16)
	if !ok || n.Sign() <= 0 {
		return "", fmt.Errorf("%w: %q", ErrBadSerial, s)
	}
	return n.Text(16), nil
}

// SerialFromBig formats a certificate's serial number canonically.
func SerialFromBig(n *big.Int) string { return n.Text(16) }

// serialDERContent returns the content octets of the DER INTEGER for a
// canonical hex serial (positive by construction).
func serialDERContent(s string) ([]byte, error) {
	if len(s)%2 == 1 {
		s = "0" + s
	}
	b, err := hex.DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("%w: %q", ErrBadSerial, s)
	}
	for len(b) > 1 && b[0] == 0 && b[1]&0x80 == 0 {
		b = b[1:]
	}
	if b[0]&0x80 != 0 {
		b = append([]byte{0}, b...)
	}
	return b, nil
}
