package audit

import (
	"context"
	"crypto"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"
	tjsm2 "github.com/tjfoc/gmsm/sm2"
	tjx509 "github.com/tjfoc/gmsm/x509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/gmtrust/gmtrust/internal/sigalg"
)

func TestCheckpointAlgorithms(t *testing.T) {
	for _, alg := range []string{"sm2", "ecdsa-p256", "rsa-2048"} {
		t.Run(alg, func(t *testing.T) {
			pki := newTestPKI(t, alg)
			m := newMemLog(t, 3)
			cp := pki.checkpoint(t, m)
			if cp.Seq != 3 || string(cp.Hash) != string(m.head.Hash) {
				t.Fatalf("checkpoint %d %x, head %d %x", cp.Seq, cp.Hash, m.head.Seq, m.head.Hash)
			}
			if err := pki.verifier().VerifyCheckpoint(cp); err != nil {
				t.Fatal(err)
			}
			// Any change of what was signed breaks the signature.
			for name, mod := range map[string]func(c *Checkpoint){
				"seq":  func(c *Checkpoint) { c.Seq++ },
				"hash": func(c *Checkpoint) { c.Hash = GenesisHash() },
				"time": func(c *Checkpoint) { c.Time = c.Time.Add(time.Second) },
			} {
				c := *cp
				mod(&c)
				if err := pki.verifier().VerifyCheckpoint(&c); !errors.Is(err, ErrBadCheckpoint) {
					t.Errorf("%s changed: %v", name, err)
				}
			}
		})
	}
}

// TestCheckpointSM2Independent verifies an SM2 checkpoint signature with
// tjfoc/gmsm, which applies the default user ID itself.
func TestCheckpointSM2Independent(t *testing.T) {
	pki := newTestPKI(t, "sm2")
	cp := pki.checkpoint(t, newMemLog(t, 2))
	if !cp.Algorithm.Equal(sigalg.OIDSM2WithSM3) {
		t.Fatalf("algorithm %v", cp.Algorithm)
	}
	// tjfoc parses the embedded certificate and key itself.
	tcert, err := tjx509.ParseCertificate(cp.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	tpub, err := tjx509.ParseSm2PublicKey(tcert.RawSubjectPublicKeyInfo)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := cp.SignedBytes()
	if err != nil {
		t.Fatal(err)
	}
	in := cryptobyte.String(cp.Signature)
	var seq cryptobyte.String
	r, s := new(big.Int), new(big.Int)
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !seq.ReadASN1Integer(r) || !seq.ReadASN1Integer(s) {
		t.Fatal("signature is not DER SEQUENCE{r,s}")
	}
	if !tjsm2.Sm2Verify(tpub, msg, nil, r, s) {
		t.Fatal("tjfoc/gmsm rejects the checkpoint signature")
	}
}

func TestCheckpointTrust(t *testing.T) {
	pki := newTestPKI(t, "ecdsa-p256")
	cp := pki.checkpoint(t, newMemLog(t, 2))
	other := newTestPKI(t, "ecdsa-p256")
	tests := []struct {
		name string
		v    *CertVerifier
		cp   func() *Checkpoint
		want error
	}{
		{"trusted", pki.verifier(), func() *Checkpoint { return cp }, nil},
		{"other root", other.verifier(), func() *Checkpoint { return cp }, ErrUntrusted},
		{"not authorised", &CertVerifier{Roots: []*smx509.Certificate{pki.root}, Authorized: func(*smx509.Certificate) error {
			return errors.New("not the registered audit signer")
		}}, func() *Checkpoint { return cp }, ErrUntrusted},
		{"after the certificate expired", pki.verifier(), func() *Checkpoint {
			c, err := SignCheckpoint(pki.signer, pki.signerCert, Head{Seq: 2, Hash: cp.Hash}, t0.AddDate(2, 0, 0))
			if err != nil {
				t.Fatal(err)
			}
			return c
		}, ErrUntrusted},
		{"garbage certificate", pki.verifier(), func() *Checkpoint {
			c := *cp
			c.Certificate = []byte{0x30, 0x03, 0x02, 0x01}
			return &c
		}, ErrBadCheckpoint},
		{"unknown algorithm", pki.verifier(), func() *Checkpoint {
			c := *cp
			c.Algorithm = []int{1, 2, 3}
			return &c
		}, ErrBadCheckpoint},
	}
	for _, tt := range tests {
		err := tt.v.VerifyCheckpoint(tt.cp())
		if (tt.want == nil) != (err == nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestSignCheckpointKeyMismatch(t *testing.T) {
	pki := newTestPKI(t, "sm2")
	other := newTestPKI(t, "sm2")
	if _, err := SignCheckpoint(other.signer, pki.signerCert, Head{Seq: 1, Hash: GenesisHash()}, t0); err == nil {
		t.Fatal("signed with a key that does not match the certificate")
	}
	if _, err := SignCheckpoint(pki.signer, pki.signerCert, Head{Seq: 0}, t0); err == nil {
		t.Fatal("signed an empty head")
	}
}

func TestCheckpointer(t *testing.T) {
	pki := newTestPKI(t, "sm2")
	ctx := context.Background()
	m := &memLog{}
	keyCalls := 0
	key := func(ctx context.Context) (crypto.Signer, []byte, error) {
		keyCalls++
		return pki.keySource()(ctx)
	}
	c := NewCheckpointer(m, key, func() time.Time { return t0 }, nil)

	// Nothing to sign yet: the key is not even needed.
	if cp, err := c.Checkpoint(ctx); cp != nil || err != nil || keyCalls != 0 {
		t.Fatalf("empty log: %v %v, key used %d times", cp, err, keyCalls)
	}
	m.append(t, "alice", "token.create")
	cp, err := c.Checkpoint(ctx)
	if err != nil || cp == nil || cp.Seq != 1 {
		t.Fatalf("first checkpoint: %v %v", cp, err)
	}
	if cp, err := c.Checkpoint(ctx); cp != nil || err != nil {
		t.Fatalf("unchanged head signed again: %v %v", cp, err)
	}
	m.append(t, "alice", "token.revoke")
	if cp, err := c.Checkpoint(ctx); err != nil || cp == nil || cp.Seq != 2 {
		t.Fatalf("second checkpoint: %v %v", cp, err)
	}
	if len(m.checkpoints) != 2 {
		t.Fatalf("%d checkpoints stored", len(m.checkpoints))
	}

	failing := NewCheckpointer(&memLog{head: Head{Seq: 1, Hash: GenesisHash()}}, func(context.Context) (crypto.Signer, []byte, error) {
		return nil, nil, errors.New("token removed")
	}, nil, nil)
	if _, err := failing.Checkpoint(ctx); err == nil {
		t.Fatal("key failure not reported")
	}
}
