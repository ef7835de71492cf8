package seal

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmtrust/gmtrust/internal/testutil"
)

// detSigner signs deterministically (RFC 6979 with SM3, gmsm's nil
// rand), so that a signature over e and one over the whole message with
// the same e are the same bytes.
type detSigner struct{ k *sm2.PrivateKey }

func (s detSigner) Public() crypto.PublicKey { return s.k.Public() }
func (s detSigner) Sign(_ io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	return s.k.Sign(nil, msg, opts)
}

// sealOfSize makes a v4 seal whose DER is within 8 bytes of size, by
// padding the picture (magic bytes first, so MakeSeal accepts it).
func sealOfSize(t *testing.T, p *testPKI, size int) []byte {
	t.Helper()
	spec := testSpec(t, p)
	base := makeTestSeal(t, p)
	n := len(spec.Picture.Data) + size - len(base)
	for range 3 { // length bytes grow with the picture: converge
		spec.Picture.Data = append(bytes.Clone(spec.Picture.Data[:8]), bytes.Repeat([]byte{0x5a}, n-8)...)
		der, err := MakeSeal(context.Background(), spec, p.makerDER, p.makerKey)
		if err != nil {
			t.Fatal(err)
		}
		if d := len(der) - size; d >= -8 && d <= 8 { // the maker signature's length varies
			return der
		}
		n += size - len(der)
	}
	t.Fatalf("cannot make a seal of %d bytes", size)
	return nil
}

// verifyTjfoc checks a signature over signed with tjfoc/gmsm, an SM2
// implementation independent of the one that made it, and the standard
// ID, as TestInteropTjfoc does.
func verifyTjfoc(t *testing.T, certDER, signed, sig []byte) {
	t.Helper()
	if !tjfocVerify(t, certDER, signed, sig) {
		t.Fatal("tjfoc/gmsm rejects the signature")
	}
}

// TestStampHasher: stamps made from a cached SM3 state are the bytes
// stampUnchecked makes, their e is SM3(ZA || TBS_Sign), and they verify
// with our verifier and with tjfoc/gmsm, for propertyInfo lengths that
// change the TBS_Sign header (and the IA5String's own length form), on a
// seal whose TBS_Sign length takes two bytes and on one where it crosses
// to three.
func TestStampHasher(t *testing.T) {
	p := newTestPKI(t)
	hash := docHash(testDocument)
	small := makeTestSeal(t, p)
	near64K := sealOfSize(t, p, 65000)
	// TBS_Sign content = version (3) + seal + timeInfo (17) + dataHash
	// (35) + propertyInfo and its header (4 from 256 bytes on): cross is
	// the longest propertyInfo with which the content still fits in
	// 65 535 bytes, that is in two length bytes.
	cross := 65535 - (3 + len(near64K) + 17 + 35 + 4)
	holder, err := smx509.ParseCertificate(p.holderDER)
	if err != nil {
		t.Fatal(err)
	}
	pub := holder.PublicKey.(*ecdsa.PublicKey)
	signer := detSigner{p.holderKey}
	opts := fullOptions(t, p)
	opts.Cache = NewCache(16) // the maker signature is checked once

	lengths := []int{0, 10, 127, 128, 200, 255, 256, 1000, MaxPropertyInfo}
	for _, sc := range []struct {
		name    string
		sealDER []byte
		lengths []int
	}{
		{"small seal", small, lengths},
		{"seal near 64 KiB", near64K, append([]int{cross, cross + 1}, lengths...)},
	} {
		h, err := newStampHasher(sc.sealDER, pub)
		if err != nil || h == nil {
			t.Fatalf("newStampHasher: %v, %v", h, err)
		}
		headers := map[string]bool{}
		headerFor := func(n int) []byte {
			tail, err := tbsTail(hash, strings.Repeat("p", n), tSign)
			if err != nil {
				t.Fatal(err)
			}
			return appendTLVHeader(nil, 0x30, len(versionV4DER)+len(sc.sealDER)+len(tail))
		}
		for _, n := range sc.lengths {
			t.Run(fmt.Sprintf("%s/propertyInfo=%d", sc.name, n), func(t *testing.T) {
				prop := strings.Repeat("p", n)
				want, err := stampUnchecked(sc.sealDER, p.holderDER, signer, hash, prop, tSign)
				if err != nil {
					t.Fatal(err)
				}
				wantSig, err := ParseSignature(want)
				if err != nil {
					t.Fatal(err)
				}
				// e from the cached state, on a miss and on a hit.
				tail, err := tbsTail(hash, prop, tSign)
				if err != nil {
					t.Fatal(err)
				}
				header := headerFor(n)
				headers[string(header)] = true
				wantE, err := sm2.CalculateSM2Hash(pub, wantSig.RawTBS, nil)
				if err != nil {
					t.Fatal(err)
				}
				for _, pass := range []string{"first", "cached"} {
					e, err := h.digest(header, tail)
					if err != nil || !bytes.Equal(e, wantE) {
						t.Fatalf("%s e = %x, %v; want SM3(ZA || TBS_Sign) = %x", pass, e, err, wantE)
					}
				}

				got, err := h.stamp(p.holderDER, signer, hash, prop, tSign)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatal("the cached-state stamp differs from stampUnchecked's")
				}
				if h.mode.Load() != signDigest {
					t.Fatalf("mode %d after a gmsm key signed e, want signDigest", h.mode.Load())
				}
				// A randomised signer, as in production, and both
				// verifiers.
				got, err = h.stamp(p.holderDER, p.holderKey, hash, prop, tSign)
				if err != nil {
					t.Fatal(err)
				}
				o := opts
				o.Data = testDocument
				if r := Verify(context.Background(), got, o); r.Verdict != VerdictValid {
					t.Fatalf("verdict %s: %s (failing %v)", r.Verdict, r.Reason, failing(r))
				}
				_, sp := testutil.SealSignatureParts(t, got)
				verifyTjfoc(t, sp.Cert, sp.Signed, sp.Sig)
			})
		}
		if sc.name == "seal near 64 KiB" {
			// The boundary is where the test means it to be.
			for n, want := range map[int]int{cross: 4, cross + 1: 5} {
				if hd := headerFor(n); len(hd) != want || !headers[string(hd)] {
					t.Errorf("propertyInfo of %d bytes: header %x, want %d bytes", n, hd, want)
				}
			}
		}
	}
}

// TestStampHasherNotSM2: keys other than SM2 take the ordinary path.
func TestStampHasherNotSM2(t *testing.T) {
	if h, err := newStampHasher([]byte{0x30, 0}, &ecdsa.PublicKey{}); h != nil || err != nil {
		t.Fatalf("newStampHasher(ECDSA) = %v, %v; want nil, nil", h, err)
	}
}

// fussySigner is an SM2 signer with the behaviours a key manager's signer
// may have.
type fussySigner struct {
	k    *sm2.PrivateKey
	kind string // "conforming", "hashes-za" (refuses e), "naive" (hashes whatever it gets), "broken"
	// digests and wholes count what the signer was asked to sign.
	digests, wholes atomic.Int32
}

func (s *fussySigner) Public() crypto.PublicKey { return s.k.Public() }

func (s *fussySigner) Sign(r io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	_, whole := opts.(*sm2.SM2SignerOption)
	if whole {
		s.wholes.Add(1)
	} else {
		s.digests.Add(1)
	}
	switch s.kind {
	case "hashes-za":
		if !whole {
			return nil, errors.New("pkcs11: unsupported: vendor hashes ZA in the token")
		}
	case "naive":
		opts = sm2.DefaultSM2SignerOpts
	case "broken":
		return nil, errors.New("token gone")
	}
	return s.k.Sign(r, msg, opts)
}

// TestStampHasherSignerModes: the first stamp decides whether a seal's
// signer gets e or the whole TBS_Sign; every stamp verifies either way.
func TestStampHasherSignerModes(t *testing.T) {
	p := newTestPKI(t)
	sealDER := makeTestSeal(t, p)
	hash := docHash(testDocument)
	for _, tc := range []struct {
		kind                    string
		wantMode                int32
		wantDigests, wantWholes int32 // after three stamps
		wantErr                 bool
	}{
		{kind: "conforming", wantMode: signDigest, wantDigests: 3},
		// Refuses e once, then gets the whole message.
		{kind: "hashes-za", wantMode: signWhole, wantDigests: 1, wantWholes: 3},
		// Signs SM3(ZA || e): the check on the first stamp catches it.
		{kind: "naive", wantMode: signWhole, wantDigests: 1, wantWholes: 3},
		// Nothing works: nothing is decided.
		{kind: "broken", wantMode: signUndecided, wantDigests: 3, wantWholes: 3, wantErr: true},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			s := &fussySigner{k: p.holderKey, kind: tc.kind}
			h, err := newStampHasher(sealDER, p.holderKey.Public())
			if err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				der, err := h.stamp(p.holderDER, s, hash, fmt.Sprintf("doc-%d", i), tSign)
				if tc.wantErr {
					if err == nil {
						t.Fatal("stamp with a broken signer succeeded")
					}
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				sig, err := ParseSignature(der)
				if err != nil {
					t.Fatal(err)
				}
				if !sm2.VerifyASN1WithSM2(&p.holderKey.PublicKey, nil, sig.RawTBS, sig.Value) {
					t.Fatalf("stamp %d does not verify", i)
				}
			}
			if m := h.mode.Load(); m != tc.wantMode {
				t.Errorf("mode %d, want %d", m, tc.wantMode)
			}
			if d, w := s.digests.Load(), s.wholes.Load(); d != tc.wantDigests || w != tc.wantWholes {
				t.Errorf("signer asked for %d digests and %d whole messages, want %d and %d", d, w, tc.wantDigests, tc.wantWholes)
			}
		})
	}
}

// TestStampHasherBounded: distinct headers beyond maxPrefixStates do not
// grow the cache, and concurrent stamps (run with -race) all verify.
func TestStampHasherBounded(t *testing.T) {
	p := newTestPKI(t)
	sealDER := makeTestSeal(t, p)
	hash := docHash(testDocument)
	h, err := newStampHasher(sealDER, p.holderKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4*(maxPrefixStates+10))
	for g := range 4 {
		wg.Go(func() {
			for n := range maxPrefixStates + 10 {
				der, err := h.stamp(p.holderDER, p.holderKey, hash, strings.Repeat("x", n*(g+1)%MaxPropertyInfo), tSign)
				if err != nil {
					errs <- err
					return
				}
				sig, err := ParseSignature(der)
				if err != nil {
					errs <- err
					return
				}
				if !sm2.VerifyASN1WithSM2(&p.holderKey.PublicKey, nil, sig.RawTBS, sig.Value) {
					errs <- fmt.Errorf("stamp with propertyInfo of %d bytes does not verify", n)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	h.mu.Lock()
	n := len(h.states)
	h.mu.Unlock()
	if n == 0 || n > maxPrefixStates {
		t.Fatalf("%d cached states, want 1..%d", n, maxPrefixStates)
	}
}

func TestAppendDERLength(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want []byte
	}{
		{0, []byte{0}}, {127, []byte{0x7f}}, {128, []byte{0x81, 0x80}}, {255, []byte{0x81, 0xff}},
		{256, []byte{0x82, 1, 0}}, {65535, []byte{0x82, 0xff, 0xff}}, {65536, []byte{0x83, 1, 0, 0}},
	} {
		if got := appendDERLength(nil, tc.n); !bytes.Equal(got, tc.want) {
			t.Errorf("appendDERLength(%d) = %x, want %x", tc.n, got, tc.want)
		}
	}
}
