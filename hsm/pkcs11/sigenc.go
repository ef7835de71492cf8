package pkcs11

import (
	"errors"
	"fmt"
	"math/big"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// errSigEncoding is wrapped by the conversions below.
var errSigEncoding = errors.New("pkcs11: malformed signature from token")

// rawToDER converts the r||s output of CKM_ECDSA (and most vendor SM2
// mechanisms) to the DER SEQUENCE{r, s} that X.509 and Go expect. n is the
// byte length of the group order; each half must be exactly n bytes.
func rawToDER(raw []byte, n int) ([]byte, error) {
	if n <= 0 || len(raw) != 2*n {
		return nil, fmt.Errorf("%w: r||s is %d bytes, want %d", errSigEncoding, len(raw), 2*n)
	}
	r := new(big.Int).SetBytes(raw[:n])
	s := new(big.Int).SetBytes(raw[n:])
	if r.Sign() == 0 || s.Sign() == 0 {
		return nil, fmt.Errorf("%w: zero r or s", errSigEncoding)
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1BigInt(r)
		b.AddASN1BigInt(s)
	})
	return b.Bytes()
}

// derToRaw converts a DER SEQUENCE{r, s} to r||s with each half left-padded
// to n bytes. It accepts only DER: no trailing data, minimal positive
// integers that fit in n bytes.
func derToRaw(der []byte, n int) ([]byte, error) {
	var r, s big.Int
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() ||
		!seq.ReadASN1Integer(&r) || !seq.ReadASN1Integer(&s) || !seq.Empty() {
		return nil, fmt.Errorf("%w: not a DER SEQUENCE of two INTEGERs", errSigEncoding)
	}
	if r.Sign() <= 0 || s.Sign() <= 0 {
		return nil, fmt.Errorf("%w: r and s must be positive", errSigEncoding)
	}
	if (r.BitLen()+7)/8 > n || (s.BitLen()+7)/8 > n {
		return nil, fmt.Errorf("%w: r or s longer than %d bytes", errSigEncoding, n)
	}
	out := make([]byte, 2*n)
	r.FillBytes(out[:n])
	s.FillBytes(out[n:])
	return out, nil
}
