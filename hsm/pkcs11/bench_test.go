//go:build cgo

package pkcs11

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	p11 "github.com/miekg/pkcs11"

	"github.com/gmtrust/gmtrust/hsm"
	"github.com/gmtrust/gmtrust/internal/sigalg"
)

// runCallers splits b.N signatures over callers goroutines and reports
// signatures per second.
func runCallers(b *testing.B, callers int, sign func() error) {
	b.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if err := sign(); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sigs/s")
}

// signOnce returns a function making one signature the way sigalg does
// (digest for ECDSA/RSA, whole message for SM2), without verification.
func signOnce(s crypto.Signer) func() error {
	msg := []byte("gmtrust benchmark message: a to-be-signed certificate is about this long ...")
	d := sha256.Sum256(msg)
	if sm2.IsSM2PublicKey(s.Public()) {
		return func() error { _, err := s.Sign(rand.Reader, msg, sm2.DefaultSM2SignerOpts); return err }
	}
	return func() error { _, err := s.Sign(rand.Reader, d[:], crypto.SHA256); return err }
}

// BenchmarkSign compares signing through the session pool with the same
// algorithm in pure Go, at 1, 2 and 8 concurrent callers.
func BenchmarkSign(b *testing.B) {
	ctx := context.Background()
	m := openTest(b, Config{PoolSize: 8, PlaintextTTL: DefaultPlaintextTTL})
	m0 := openTest(b, Config{PoolSize: 8}) // KEK mode, decrypt per signature
	type target struct {
		name string
		m    *Manager
		alg  hsm.Algorithm
	}
	for _, tg := range []target{
		{"ecdsa-p256", m, hsm.ECDSAP256},
		{"rsa-2048", m, hsm.RSA2048},
		{"sm2-kek", m, hsm.SM2},
		{"sm2-kek-ttl0", m0, hsm.SM2},
	} {
		ref, _, err := tg.m.CreateKey(ctx, uniqueLabel(b, "bench-"+tg.name), tg.alg)
		if err != nil {
			b.Fatal(err)
		}
		tokenSigner, err := tg.m.Signer(ctx, ref)
		if err != nil {
			b.Fatal(err)
		}
		goSigner, err := sigalg.GenerateKey(rand.Reader, string(tg.alg))
		if err != nil {
			b.Fatal(err)
		}
		backends := []struct {
			name string
			s    crypto.Signer
		}{{"pkcs11", tokenSigner}, {"go", goSigner}}
		for _, be := range backends {
			if tg.name == "sm2-kek-ttl0" && be.name == "go" {
				continue // same as sm2-kek/go
			}
			for _, callers := range []int{1, 2, 8} {
				b.Run(fmt.Sprintf("%s/%s/callers=%d", tg.name, be.name, callers), func(b *testing.B) {
					runCallers(b, callers, signOnce(be.s))
				})
			}
		}
	}
}

// BenchmarkP256Overhead measures what the pool (session checkout, module
// lock, retry wrapper, DER conversion) adds over bare C_SignInit+C_Sign on
// one session with a known handle.
func BenchmarkP256Overhead(b *testing.B) {
	ctx := context.Background()
	m := openTest(b, Config{PoolSize: 2})
	label := uniqueLabel(b, "bench-raw")
	ref, _, err := m.CreateKey(ctx, label, hsm.ECDSAP256)
	if err != nil {
		b.Fatal(err)
	}
	signer, err := m.Signer(ctx, ref)
	if err != nil {
		b.Fatal(err)
	}
	d := sha256.Sum256([]byte("m"))

	b.Run("raw-C_Sign", func(b *testing.B) {
		s, err := m.acquire(ctx)
		if err != nil {
			b.Fatal(err)
		}
		defer m.release(s)
		c := m.mod.ctx
		var h p11.ObjectHandle
		err = m.mod.with(s.gen, func(c *p11.Ctx) error {
			h, err = signer.(*tokenSigner).obj.handle(c, s)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		mech := []*p11.Mechanism{p11.NewMechanism(p11.CKM_ECDSA, nil)}
		b.ResetTimer()
		for range b.N {
			if err := c.SignInit(s.h, mech, h); err != nil {
				b.Fatal(err)
			}
			if _, err := c.Sign(s.h, d[:]); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sigs/s")
	})
	b.Run("pool", func(b *testing.B) {
		for range b.N {
			if _, err := signer.Sign(nil, d[:], crypto.SHA256); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sigs/s")
	})
	// find-per-op is the alternative to caching handles per module
	// initialisation: C_FindObjects before every signature.
	b.Run("pool-find-per-op", func(b *testing.B) {
		tmpl := signer.(*tokenSigner).obj.tmpl
		mech := []*p11.Mechanism{p11.NewMechanism(p11.CKM_ECDSA, nil)}
		for range b.N {
			err := m.do(ctx, func(c *p11.Ctx, s *session) error {
				hs, err := findObjects(c, s, tmpl, 2)
				if err != nil {
					return err
				}
				if err := c.SignInit(s.h, mech, hs[0]); err != nil {
					return err
				}
				_, err = c.Sign(s.h, d[:])
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sigs/s")
	})
}

// BenchmarkP256OverheadInterleaved alternates raw C_Sign, the pool, and
// the pool with a find per operation within each iteration, so that the
// load of a shared machine hits all three alike, and reports the mean
// time of each and the pool's overhead over raw C_Sign.
func BenchmarkP256OverheadInterleaved(b *testing.B) {
	ctx := context.Background()
	m := openTest(b, Config{PoolSize: 2})
	ref, _, err := m.CreateKey(ctx, uniqueLabel(b, "bench-mix"), hsm.ECDSAP256)
	if err != nil {
		b.Fatal(err)
	}
	signer, err := m.Signer(ctx, ref)
	if err != nil {
		b.Fatal(err)
	}
	ts := signer.(*tokenSigner)
	d := sha256.Sum256([]byte("m"))
	mech := []*p11.Mechanism{p11.NewMechanism(p11.CKM_ECDSA, nil)}
	// The raw path owns one session for the whole run; the pool has the other.
	raw, err := m.acquire(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer m.release(raw)
	var h p11.ObjectHandle
	if err := m.mod.with(raw.gen, func(c *p11.Ctx) error { h, err = ts.obj.handle(c, raw); return err }); err != nil {
		b.Fatal(err)
	}
	c := m.mod.ctx
	var tRaw, tPool, tFind time.Duration
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if err := c.SignInit(raw.h, mech, h); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Sign(raw.h, d[:]); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := signer.Sign(nil, d[:], crypto.SHA256); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		err := m.do(ctx, func(c *p11.Ctx, s *session) error {
			hs, err := findObjects(c, s, ts.obj.tmpl, 2)
			if err != nil {
				return err
			}
			if err := c.SignInit(s.h, mech, hs[0]); err != nil {
				return err
			}
			_, err = c.Sign(s.h, d[:])
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		tRaw += t1.Sub(t0)
		tPool += t2.Sub(t1)
		tFind += t3.Sub(t2)
	}
	n := float64(b.N)
	b.ReportMetric(float64(tRaw.Nanoseconds())/n, "raw-ns/sig")
	b.ReportMetric(float64(tPool.Nanoseconds())/n, "pool-ns/sig")
	b.ReportMetric(float64(tFind.Nanoseconds())/n, "find-per-op-ns/sig")
	b.ReportMetric(100*(float64(tPool)/float64(tRaw)-1), "pool-overhead-%")
}

// BenchmarkAcquireRelease isolates the pool's checkout cost.
func BenchmarkAcquireRelease(b *testing.B) {
	m := openTest(b, Config{PoolSize: 2, AcquireTimeout: time.Second})
	ctx := context.Background()
	for range b.N {
		s, err := m.acquire(ctx)
		if err != nil {
			b.Fatal(err)
		}
		m.release(s)
	}
}
