package pkcs11

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/asn1"
	"errors"
	"math/big"
	"strings"
	"testing"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"

	"github.com/gmtrust/gmtrust/internal/sigalg"
)

// refE computes e = SM3(ZA || M) from GB/T 32918.2 directly, independent
// of sm2.CalculateSM2Hash.
func refE(pub *ecdsa.PublicKey, uid, msg []byte) []byte {
	p := sm2.P256().Params()
	fe := func(x *big.Int) []byte { return x.FillBytes(make([]byte, 32)) }
	a := new(big.Int).Sub(p.P, big.NewInt(3))
	h := sm3.New()
	bits := len(uid) * 8
	h.Write([]byte{byte(bits >> 8), byte(bits)})
	h.Write(uid)
	for _, v := range []*big.Int{a, p.B, p.Gx, p.Gy} {
		h.Write(fe(v))
	}
	point, err := sm2.PublicKeyToECDH(pub)
	if err != nil {
		panic(err)
	}
	h.Write(point.Bytes()[1:]) // xA || yA
	za := h.Sum(nil)
	h.Reset()
	h.Write(za)
	h.Write(msg)
	return h.Sum(nil)
}

// fakeToken plays an SM2 token: it records what it is given and signs
// with a software key, hashing ZA itself when the vendor does and
// encoding the result as the vendor does.
type fakeToken struct {
	key      *sm2.PrivateKey
	hashesZA bool
	output   SigEncoding
	gotMech  uint
	gotData  []byte
	corrupt  func([]byte) []byte
}

func (f *fakeToken) sign(mech uint, data []byte) ([]byte, error) {
	f.gotMech, f.gotData = mech, append([]byte(nil), data...)
	e := data
	if f.hashesZA {
		e = refE(&f.key.PublicKey, []byte("1234567812345678"), data)
	}
	der, err := sm2.SignASN1(rand.Reader, f.key, e, nil) // nil opts: e is the hash
	if err != nil {
		return nil, err
	}
	out := der
	if f.output == EncodingRaw {
		var rs struct{ R, S *big.Int }
		if _, err := asn1.Unmarshal(der, &rs); err != nil {
			return nil, err
		}
		out = append(rs.R.FillBytes(make([]byte, 32)), rs.S.FillBytes(make([]byte, 32))...)
	}
	if f.corrupt != nil {
		out = f.corrupt(out)
	}
	return out, nil
}

func TestVendorTable(t *testing.T) {
	want := map[string]struct {
		keyType, keyGen, sign uint
		hashesZA              bool
		output                SigEncoding
	}{
		"tass":   {0x80000004, 0x80008001, 0x80008000, false, EncodingRaw},
		"sansec": {0x80000004, 0x80008001, 0x80008104, false, EncodingRaw},
		"luna":   {0x80000016, 0x80000B20, 0x80000B21, false, EncodingRaw},
		"ep11":   {0x80050002, 0x8005000A, 0x8005000B, false, EncodingAuto},
	}
	if got := Vendors(); len(got) != len(want) {
		t.Errorf("Vendors() has %d entries, want %d", len(got), len(want))
	}
	for name, w := range want {
		v, err := resolveVendor(name, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if v.Name != name || v.KeyType != w.keyType || v.KeyGenMechanism != w.keyGen || v.SignMechanism != w.sign ||
			v.HashesZA != w.hashesZA || v.Output != w.output || !bytes.Equal(v.ecParams(), oidSM2Curve) {
			t.Errorf("%s: %+v, want %+v", name, *v, w)
		}
	}
	// The curve OID bytes really are 1.2.156.10197.1.301.
	var oid asn1.ObjectIdentifier
	if _, err := asn1.Unmarshal(oidSM2Curve, &oid); err != nil || oid.String() != "1.2.156.10197.1.301" {
		t.Errorf("oidSM2Curve = %v (%v)", oid, err)
	}
	// Vendors returns a copy: changing it changes nothing.
	vs := Vendors()
	delete(vs, "tass")
	if _, err := resolveVendor("tass", nil); err != nil {
		t.Errorf("Vendors() exposed the internal table: %v", err)
	}
}

func TestResolveVendor(t *testing.T) {
	custom := &VendorSpec{KeyType: 1, KeyGenMechanism: 2, SignMechanism: 3, HashesZA: true, Output: EncodingDER, ECParams: []byte{9}}
	tests := []struct {
		name   string
		vendor string
		custom *VendorSpec
		err    string
		kek    bool
	}{
		{"none is KEK mode", "", nil, "", true},
		{"custom", "custom", custom, "", false},
		{"unknown", "hsmcorp", nil, "unknown vendor", false},
		{"custom without spec", "custom", nil, "needs Config.Custom", false},
		{"spec without custom", "", custom, "not \"custom\"", false},
		{"spec for a named vendor is ignored", "tass", custom, "", false},
		{"incomplete custom", "custom", &VendorSpec{KeyType: 1}, "needs KeyType", false},
		{"bad encoding", "custom", &VendorSpec{KeyType: 1, KeyGenMechanism: 2, SignMechanism: 3, Output: 7}, "encoding", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := resolveVendor(tt.vendor, tt.custom)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (v == nil) != tt.kek {
				t.Fatalf("spec = %+v, want KEK mode %v", v, tt.kek)
			}
		})
	}
	v, _ := resolveVendor("custom", custom)
	custom.ECParams[0] = 0
	if v.Name != "custom" || v.ecParams()[0] != 9 {
		t.Errorf("custom spec not copied: %+v", v)
	}
}

func TestSignSM2Vendors(t *testing.T) {
	key, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub := &key.PublicKey
	msg := []byte("电子印章 message to sign")
	defaultE := refE(pub, []byte("1234567812345678"), msg)
	specs := []VendorSpec{}
	for _, name := range []string{"tass", "sansec", "luna", "ep11"} {
		v, _ := resolveVendor(name, nil)
		specs = append(specs, *v)
	}
	specs = append(specs,
		VendorSpec{Name: "za-in-token-der", KeyType: 1, KeyGenMechanism: 2, SignMechanism: ckmSM3WithSM2, HashesZA: true, Output: EncodingDER},
		VendorSpec{Name: "za-in-token-raw", KeyType: 1, KeyGenMechanism: 2, SignMechanism: ckmLunaSM3SM2, HashesZA: true, Output: EncodingRaw},
		VendorSpec{Name: "ep11-sm3", KeyType: 1, KeyGenMechanism: 2, SignMechanism: ckmEP11SignSM3, HashesZA: true, Output: EncodingAuto},
	)
	for _, v := range specs {
		for _, tokenOut := range []SigEncoding{EncodingRaw, EncodingDER} {
			if v.Output != EncodingAuto && tokenOut != v.Output {
				continue
			}
			t.Run(v.Name+"/"+tokenOut.String(), func(t *testing.T) {
				tok := &fakeToken{key: key, hashesZA: v.HashesZA, output: tokenOut}
				sig, err := signSM2(&v, pub, msg, sm2.DefaultSM2SignerOpts, tok.sign)
				if err != nil {
					t.Fatal(err)
				}
				if tok.gotMech != v.SignMechanism {
					t.Errorf("token got mechanism %#x, want %#x", tok.gotMech, v.SignMechanism)
				}
				wantData := defaultE
				if v.HashesZA {
					wantData = msg
				}
				if !bytes.Equal(tok.gotData, wantData) {
					t.Errorf("token got %x, want %x (HashesZA %v)", tok.gotData, wantData, v.HashesZA)
				}
				if err := sigalg.Verify(pub, sigalg.OIDSM2WithSM3, msg, sig); err != nil {
					t.Errorf("signature does not verify: %v", err)
				}
				if _, err := derToRaw(sig, 32); err != nil {
					t.Errorf("result is not DER: %v", err)
				}
			})
		}
	}
}

func TestSignSM2Inputs(t *testing.T) {
	key, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub := &key.PublicKey
	msg := []byte("message")
	raw := VendorSpec{Name: "raw", SignMechanism: 5, Output: EncodingRaw}
	hashing := VendorSpec{Name: "hashing", SignMechanism: 6, HashesZA: true, Output: EncodingDER}

	// A custom ID is hashed into e.
	uid := []byte("alice@example.cn")
	tok := &fakeToken{key: key, output: EncodingRaw}
	sig, err := signSM2(&raw, pub, msg, sm2.NewSM2SignerOption(true, uid), tok.sign)
	if err != nil {
		t.Fatal(err)
	}
	if want := refE(pub, uid, msg); !bytes.Equal(tok.gotData, want) {
		t.Errorf("custom ID: token got %x, want %x", tok.gotData, want)
	}
	if !sm2.VerifyASN1WithSM2(pub, uid, msg, sig) {
		t.Error("custom ID signature does not verify")
	}

	// A precomputed e (no GM option) goes to the token unchanged.
	e := refE(pub, []byte("1234567812345678"), msg)
	for _, opts := range []crypto.SignerOpts{nil, crypto.Hash(0), sm2.NewSM2SignerOption(false, nil)} {
		tok = &fakeToken{key: key, output: EncodingRaw}
		sig, err = signSM2(&raw, pub, e, opts, tok.sign)
		if err != nil {
			t.Fatalf("opts %v: %v", opts, err)
		}
		if !bytes.Equal(tok.gotData, e) || !sm2.VerifyASN1WithSM2(pub, nil, msg, sig) {
			t.Errorf("opts %v: precomputed e not signed as is", opts)
		}
	}

	errTests := []struct {
		name string
		v    VendorSpec
		msg  []byte
		opts crypto.SignerOpts
		tok  *fakeToken
		want string
	}{
		{"short e", raw, e[:31], nil, &fakeToken{key: key}, "want 32"},
		{"e to a hashing token", hashing, e, nil, &fakeToken{key: key}, "hashes ZA in the token"},
		{"custom ID to a hashing token", hashing, msg, sm2.NewSM2SignerOption(true, uid), &fakeToken{key: key}, "default ID only"},
		{"token r||s truncated", raw, msg, sm2.DefaultSM2SignerOpts,
			&fakeToken{key: key, output: EncodingRaw, corrupt: func(b []byte) []byte { return b[:63] }}, "r||s is 63 bytes"},
		{"token DER with trailing byte", hashing, msg, sm2.DefaultSM2SignerOpts,
			&fakeToken{key: key, hashesZA: true, output: EncodingDER, corrupt: func(b []byte) []byte { return append(b, 0) }}, "not a DER SEQUENCE"},
		{"token says DER, vendor table says r||s", raw, msg, sm2.DefaultSM2SignerOpts,
			&fakeToken{key: key, output: EncodingDER}, "r||s is"},
		{"token signs a different e", raw, msg, sm2.DefaultSM2SignerOpts,
			&fakeToken{key: key, hashesZA: true, output: EncodingRaw}, "does not verify"},
		{"token flips a bit", raw, msg, sm2.DefaultSM2SignerOpts,
			&fakeToken{key: key, output: EncodingRaw, corrupt: func(b []byte) []byte { b[40] ^= 1; return b }}, "does not verify"},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			sig, err := signSM2(&tt.v, pub, tt.msg, tt.opts, tt.tok.sign)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("signSM2 = %x, %v; want error containing %q", sig, err, tt.want)
			}
		})
	}

	// A token error is passed on, wrapped.
	boom := errors.New("CKR_DEVICE_ERROR")
	_, err = signSM2(&raw, pub, msg, sm2.DefaultSM2SignerOpts, func(uint, []byte) ([]byte, error) { return nil, boom })
	if !errors.Is(err, boom) {
		t.Errorf("token error not wrapped: %v", err)
	}
}

// TestSM2Options pins the reading of gmsm's SM2SignerOption to the gmsm
// version in go.mod.
func TestSM2Options(t *testing.T) {
	var nilOpt *sm2.SM2SignerOption
	tests := []struct {
		name  string
		opts  crypto.SignerOpts
		whole bool
		uid   string
	}{
		{"default", sm2.DefaultSM2SignerOpts, true, "1234567812345678"},
		{"new default", sm2.NewSM2SignerOption(true, nil), true, "1234567812345678"},
		{"custom ID", sm2.NewSM2SignerOption(true, []byte("bob")), true, "bob"},
		{"not forced", sm2.NewSM2SignerOption(false, []byte("bob")), false, ""},
		{"hash", crypto.SHA256, false, ""},
		{"nil option pointer", nilOpt, false, ""},
		{"nil", nil, false, ""},
	}
	for _, tt := range tests {
		whole, uid, err := sm2Options(tt.opts)
		if err != nil || whole != tt.whole || string(uid) != tt.uid {
			t.Errorf("%s: sm2Options = %v, %q, %v; want %v, %q", tt.name, whole, uid, err, tt.whole, tt.uid)
		}
	}
}
