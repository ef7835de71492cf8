package pkcs11

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"reflect"

	"github.com/emmansun/gmsm/sm2"
)

// SigEncoding is how a token returns an SM2 signature.
type SigEncoding int

const (
	// EncodingRaw is r||s, 32 bytes each.
	EncodingRaw SigEncoding = iota
	// EncodingDER is SEQUENCE{r, s}.
	EncodingDER
	// EncodingAuto takes a 64-byte output as r||s and anything else as
	// DER, for tokens whose documentation does not say. The signature is
	// verified before it is returned either way.
	EncodingAuto
)

func (e SigEncoding) String() string {
	switch e {
	case EncodingRaw:
		return "r||s"
	case EncodingDER:
		return "DER"
	case EncodingAuto:
		return "auto"
	}
	return fmt.Sprintf("SigEncoding(%d)", int(e))
}

// VendorSpec describes the vendor-defined PKCS#11 values for SM2 on one
// family of tokens. PKCS#11 itself defines no SM2 key type or mechanism.
//
// The built-in entries come from the vendors' public documentation and
// have NOT been run against real TASS, Sansec, Luna or EP11 hardware for
// gmtrust: only the conversions around the token call are tested (with a
// fake token). Because of that every vendor SM2 signature is verified in
// Go before it is returned, so a wrong entry yields an error, never a bad
// signature. Check an entry against your token's manual before production
// use, and prefer Vendor "custom" when in doubt.
type VendorSpec struct {
	Name string
	// KeyType is the CKA_KEY_TYPE of SM2 keys (a CKK_VENDOR_DEFINED value).
	KeyType uint
	// KeyGenMechanism generates an SM2 key pair.
	KeyGenMechanism uint
	// SignMechanism signs with an SM2 private key.
	SignMechanism uint
	// HashesZA says SignMechanism takes the whole message and computes
	// e = SM3(ZA || M) itself, with the default ID 1234567812345678. When
	// false the mechanism takes the 32-byte e, which gmtrust computes.
	HashesZA bool
	// Output is the encoding of SignMechanism's result.
	Output SigEncoding
	// ECParams is CKA_EC_PARAMS for key generation; nil means the DER
	// OID of the SM2 curve (1.2.156.10197.1.301), which most vendors
	// expect.
	ECParams []byte
}

// Vendor-defined values (CKK_VENDOR_DEFINED and CKM_VENDOR_DEFINED are
// 0x80000000). For every vendor the raw-sign mechanism (input e) is chosen
// over the vendor's "SM3 with SM2" one: gmtrust then computes ZA with the
// standard ID itself and does not depend on how the vendor hashes.
const (
	ckkTASS          = 0x80000004
	ckmTASSKeyGen    = 0x80008001
	ckmTASSSignRaw   = 0x80008000
	ckmSansecSignRaw = 0x80008104
	ckmSM3WithSM2    = 0x80008100 // TASS/Sansec, hashes ZA itself

	ckkLuna        = 0x80000016
	ckmLunaKeyGen  = 0x80000B20
	ckmLunaSM2DSA  = 0x80000B21
	ckmLunaSM3SM2  = 0x80000B22 // hashes ZA itself
	ckkEP11        = 0x80050002
	ckmEP11KeyGen  = 0x8005000A
	ckmEP11Sign    = 0x8005000B
	ckmEP11SignSM3 = 0x8005000C // hashes ZA itself
)

// oidSM2Curve is the DER encoding of OID 1.2.156.10197.1.301.
var oidSM2Curve = []byte{0x06, 0x08, 0x2a, 0x81, 0x1c, 0xcf, 0x55, 0x01, 0x82, 0x2d}

// Vendors returns the built-in vendor table (a fresh copy).
func Vendors() map[string]VendorSpec {
	return map[string]VendorSpec{
		"tass": {Name: "tass", KeyType: ckkTASS, KeyGenMechanism: ckmTASSKeyGen,
			SignMechanism: ckmTASSSignRaw, Output: EncodingRaw},
		"sansec": {Name: "sansec", KeyType: ckkTASS, KeyGenMechanism: ckmTASSKeyGen,
			SignMechanism: ckmSansecSignRaw, Output: EncodingRaw},
		"luna": {Name: "luna", KeyType: ckkLuna, KeyGenMechanism: ckmLunaKeyGen,
			SignMechanism: ckmLunaSM2DSA, Output: EncodingRaw},
		"ep11": {Name: "ep11", KeyType: ckkEP11, KeyGenMechanism: ckmEP11KeyGen,
			SignMechanism: ckmEP11Sign, Output: EncodingAuto},
	}
}

// resolveVendor picks the SM2 mechanisms for cfg; nil means KEK mode.
func resolveVendor(name string, custom *VendorSpec) (*VendorSpec, error) {
	switch name {
	case "":
		if custom != nil {
			return nil, errors.New(`pkcs11: Config.Custom is set but Vendor is not "custom"`)
		}
		return nil, nil
	case "custom":
		if custom == nil {
			return nil, errors.New(`pkcs11: Vendor "custom" needs Config.Custom`)
		}
		if custom.KeyType == 0 || custom.KeyGenMechanism == 0 || custom.SignMechanism == 0 {
			return nil, errors.New("pkcs11: custom VendorSpec needs KeyType, KeyGenMechanism and SignMechanism")
		}
		if custom.Output != EncodingRaw && custom.Output != EncodingDER && custom.Output != EncodingAuto {
			return nil, fmt.Errorf("pkcs11: custom VendorSpec has unknown output encoding %d", custom.Output)
		}
		s := *custom
		if s.Name == "" {
			s.Name = "custom"
		}
		s.ECParams = bytes.Clone(custom.ECParams)
		return &s, nil
	}
	s, ok := Vendors()[name]
	if !ok {
		return nil, fmt.Errorf("pkcs11: unknown vendor %q (want tass, sansec, luna, ep11 or custom)", name)
	}
	return &s, nil
}

func (v *VendorSpec) ecParams() []byte {
	if len(v.ECParams) > 0 {
		return v.ECParams
	}
	return oidSM2Curve
}

// tokenSignFunc performs C_SignInit(mech)+C_Sign(data) with the key.
type tokenSignFunc func(mech uint, data []byte) ([]byte, error)

const sm2Size = 32

// signSM2 applies the hsm.KeyManager SM2 convention for a vendor token:
// with sm2.SM2SignerOption forcing GM signing, msg is the whole message
// and ZA is computed with the option's ID; otherwise msg is the 32-byte e.
// The token output is converted to DER and verified against pub.
func signSM2(v *VendorSpec, pub *ecdsa.PublicKey, msg []byte, opts crypto.SignerOpts, sign tokenSignFunc) ([]byte, error) {
	e, input, err := sm2Input(v, pub, msg, opts)
	if err != nil {
		return nil, err
	}
	out, err := sign(v.SignMechanism, input)
	if err != nil {
		return nil, fmt.Errorf("pkcs11: %s SM2 sign: %w", v.Name, err)
	}
	var der []byte
	switch enc := v.Output; {
	case enc == EncodingRaw || enc == EncodingAuto && len(out) == 2*sm2Size:
		der, err = rawToDER(out, sm2Size)
	default:
		// Round-trip through r||s so that only strict DER of in-range
		// integers passes, then re-encode canonically.
		var raw []byte
		if raw, err = derToRaw(out, sm2Size); err == nil {
			der, err = rawToDER(raw, sm2Size)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("pkcs11: %s SM2 sign (%v output): %w", v.Name, v.Output, err)
	}
	if !sm2.VerifyASN1(pub, e, der) {
		return nil, fmt.Errorf("pkcs11: %s SM2 signature from the token does not verify (check the vendor mechanism, ZA handling and output encoding)", v.Name)
	}
	return der, nil
}

// sm2Input returns e and what the token must be given.
func sm2Input(v *VendorSpec, pub *ecdsa.PublicKey, msg []byte, opts crypto.SignerOpts) (e, input []byte, err error) {
	whole, uid, err := sm2Options(opts)
	if err != nil {
		return nil, nil, err
	}
	if !whole {
		// msg is already e = SM3(ZA || M).
		if v.HashesZA {
			return nil, nil, fmt.Errorf("%w: vendor %s hashes ZA in the token; pass the whole message with sm2.DefaultSM2SignerOpts", ErrUnsupported, v.Name)
		}
		if len(msg) != sm2Size {
			return nil, nil, fmt.Errorf("pkcs11: SM2 digest is %d bytes, want %d (pass the whole message with sm2.DefaultSM2SignerOpts)", len(msg), sm2Size)
		}
		return msg, msg, nil
	}
	e, err = sm2.CalculateSM2Hash(pub, msg, uid)
	if err != nil {
		return nil, nil, fmt.Errorf("pkcs11: SM2 hash: %w", err)
	}
	if v.HashesZA {
		if !bytes.Equal(uid, defaultSM2UID) {
			return nil, nil, fmt.Errorf("%w: vendor %s hashes ZA with the default ID only", ErrUnsupported, v.Name)
		}
		return e, msg, nil
	}
	return e, e, nil
}

var defaultSM2UID = []byte("1234567812345678")

// sm2Options reports whether opts asks for GM signing of a whole message
// and with which ID. gmsm keeps both in unexported fields and offers no
// accessor, so they are read by reflection; TestSM2Options pins this to
// the gmsm version in go.mod, and a changed layout gives an error here,
// never a signature over the wrong input.
func sm2Options(opts crypto.SignerOpts) (whole bool, uid []byte, err error) {
	o, ok := opts.(*sm2.SM2SignerOption)
	if !ok || o == nil {
		return false, nil, nil
	}
	if o == sm2.DefaultSM2SignerOpts {
		return true, defaultSM2UID, nil
	}
	v := reflect.ValueOf(o).Elem()
	force := v.FieldByName("forceGMSign")
	id := v.FieldByName("uid")
	if !force.IsValid() || force.Kind() != reflect.Bool || !id.IsValid() || id.Kind() != reflect.Slice || id.Type().Elem().Kind() != reflect.Uint8 {
		return false, nil, fmt.Errorf("%w: cannot read this gmsm version's SM2SignerOption", ErrUnsupported)
	}
	if !force.Bool() {
		return false, nil, nil
	}
	uid = bytes.Clone(id.Bytes())
	if len(uid) == 0 {
		uid = defaultSM2UID
	}
	return true, uid, nil
}
