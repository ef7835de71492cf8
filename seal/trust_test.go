package seal

import (
	"context"
	"crypto/rand"
	"crypto/x509/pkix"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
)

// issue makes a certificate for key signed by parent (nil: self-signed).
func issue(t *testing.T, serial int64, cn string, ca bool, key, parentKey *sm2.PrivateKey, parent []byte, from, to time.Time) []byte {
	t.Helper()
	tmpl := &smx509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: from, NotAfter: to, BasicConstraintsValid: true, IsCA: ca,
		KeyUsage: smx509.KeyUsageDigitalSignature, SubjectKeyId: []byte{byte(serial)},
	}
	if ca {
		tmpl.KeyUsage |= smx509.KeyUsageCertSign
	}
	issuer := tmpl
	if parent != nil {
		var err error
		if issuer, err = smx509.ParseCertificate(parent); err != nil {
			t.Fatal(err)
		}
	}
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestPoolTrust(t *testing.T) {
	key := func() *sm2.PrivateKey {
		k, err := sm2.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	rootKey, interKey, leafKey, rogueKey := key(), key(), key(), key()
	from, to := tCA, tCA.AddDate(10, 0, 0)
	root := issue(t, 1, "root", true, rootKey, rootKey, nil, from, to)
	inter := issue(t, 2, "issuing CA", true, interKey, rootKey, root, from, tCA.AddDate(5, 0, 0))
	leaf := issue(t, 3, "holder", false, leafKey, interKey, inter, from, tCA.AddDate(3, 0, 0))
	// Same issuer name as the issuing CA, signed by another key.
	rogueCA := issue(t, 2, "issuing CA", true, rogueKey, rogueKey, nil, from, to)
	forged := issue(t, 4, "forged", false, leafKey, rogueKey, rogueCA, from, to)

	withInter := mustTrust(t, root, inter)
	rootOnly := mustTrust(t, root)
	at := tCA.AddDate(1, 0, 0)
	tests := []struct {
		name  string
		trust *PoolTrust
		cert  []byte
		at    time.Time
		want  ChainStatus
	}{
		{"leaf via intermediate", withInter, leaf, at, ChainTrusted},
		{"intermediate itself", withInter, inter, at, ChainTrusted},
		{"intermediate missing", rootOnly, leaf, at, ChainUntrustedRoot},
		{"forged issuer signature", withInter, forged, at, ChainUntrustedRoot},
		{"leaf expired", withInter, leaf, tCA.AddDate(4, 0, 0), ChainInvalid},
		{"before notBefore", withInter, leaf, tCA.AddDate(-1, 0, 0), ChainInvalid},
		{"garbage", withInter, []byte{0x30, 0x01, 0x00}, at, ChainInvalid},
		// Checked again after the cache holds a good chain for leaf.
		{"leaf expired after caching", withInter, leaf, tCA.AddDate(4, 0, 0), ChainInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := tt.trust.VerifyChain(context.Background(), tt.cert, tt.at)
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != tt.want {
				t.Fatalf("status %s (%s), want %s", res.Status, res.Detail, tt.want)
			}
		})
	}

	if _, err := NewPoolTrust([][]byte{inter}); err == nil {
		t.Error("pool without a root accepted")
	}
	if _, err := NewPoolTrust([][]byte{[]byte("junk")}); err == nil {
		t.Error("junk certificate accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := withInter.VerifyChain(ctx, leaf, at); err == nil {
		t.Error("cancelled context accepted")
	}
}

// TestConcurrentVerify shares one cache and trust pool between goroutines
// (run with -race).
func TestConcurrentVerify(t *testing.T) {
	p := newTestPKI(t)
	der := stampTest(t, p, makeTestSeal(t, p))
	opts := fullOptions(t, p)
	opts.Cache = NewCache(4)
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 5; j++ {
				if r := Verify(context.Background(), der, opts); r.Verdict != VerdictValid {
					errs <- r.Reason
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
