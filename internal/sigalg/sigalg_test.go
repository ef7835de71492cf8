package sigalg

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"io"
	"testing"

	"github.com/emmansun/gmsm/sm2"
)

// recordingSigner is an SM2 signer that notes what it was asked to sign
// and can refuse digests, as a PKCS#11 vendor that hashes ZA in the token
// does.
type recordingSigner struct {
	*sm2.PrivateKey
	refuse error
	got    []byte
	opts   crypto.SignerOpts
}

func (s *recordingSigner) Sign(r io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	s.got, s.opts = bytes.Clone(msg), opts
	if s.refuse != nil {
		return nil, s.refuse
	}
	return s.PrivateKey.Sign(r, msg, opts)
}

func TestSignSM2Digest(t *testing.T) {
	sm2Key, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("TBS_Sign bytes")
	e, err := sm2.CalculateSM2Hash(&sm2Key.PublicKey, msg, nil)
	if err != nil {
		t.Fatal(err)
	}
	errToken := errors.New("token hashes ZA itself")
	for _, tc := range []struct {
		name    string
		signer  *recordingSigner
		ecdsa   bool
		e       []byte
		wantErr error // nil: the signature must verify over msg
	}{
		{name: "gmsm key", signer: &recordingSigner{PrivateKey: sm2Key}, e: e},
		{name: "signer refuses digests", signer: &recordingSigner{PrivateKey: sm2Key, refuse: errToken}, e: e, wantErr: errToken},
		{name: "short digest", signer: &recordingSigner{PrivateKey: sm2Key}, e: e[:31], wantErr: errAny},
		{name: "ECDSA key", ecdsa: true, e: e, wantErr: ErrNotSM2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var signer crypto.Signer = tc.signer
			if tc.ecdsa {
				signer = ecKey
			}
			sig, err := SignSM2Digest(rand.Reader, signer, tc.e)
			if tc.wantErr != nil {
				if err == nil || (tc.wantErr != errAny && !errors.Is(err, tc.wantErr)) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// The signer got e itself, with options that do not ask it
			// to hash ZA.
			if !bytes.Equal(tc.signer.got, e) || tc.signer.opts != crypto.Hash(0) {
				t.Fatalf("signer got %x with %v, want e with crypto.Hash(0)", tc.signer.got, tc.signer.opts)
			}
			// A signature over e is the SM2 signature over the message.
			if err := Verify(&sm2Key.PublicKey, OIDSM2WithSM3, msg, sig); err != nil {
				t.Fatalf("does not verify over the message: %v", err)
			}
			if err := Verify(&sm2Key.PublicKey, OIDSM2WithSM3, []byte("other"), sig); err == nil {
				t.Fatal("verifies over another message")
			}
		})
	}
}

// errAny stands for "some error" in test tables.
var errAny = errors.New("any error")
