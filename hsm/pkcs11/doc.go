// Package pkcs11 is the PKCS#11 backend of hsm.KeyManager: keys are made
// and used inside a token (a hardware security module, or SoftHSM2 in
// tests) through github.com/miekg/pkcs11, which needs cgo. A binary built
// with CGO_ENABLED=0 gets the same API, failing with ErrNoCgo.
//
// # Keys and references
//
// A Manager serves one token, named in Config.URI (RFC 7512, see package
// hsm/pkcs11uri) by label, with the module path and a PIN source.
// CreateKey returns the key's own URI as its reference, for example
//
//	pkcs11:token=gmtrust;object=issuing-ca;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/gmtrust/pin
//
// References never carry a pin-value, since they are stored in databases.
// Signer accepts such a reference (token and module, when present, must be
// the Manager's). ECDSA P-256/P-384 and RSA keys are generated in the
// token as token objects with CKA_SENSITIVE true and CKA_EXTRACTABLE
// false; the token signs a digest computed in Go (CKM_ECDSA, CKM_RSA_PKCS
// with a DigestInfo built here, CKM_RSA_PKCS_PSS for *rsa.PSSOptions) and
// the signers return standard encodings (DER for ECDSA).
//
// # Sessions and failures
//
// Each operation takes a logged-in session from a bounded pool and gives
// it back afterwards: a session is never shared by two goroutines, which
// crashes SoftHSM. Callers wait up to Config.AcquireTimeout for a free
// session (ErrPoolExhausted). When an operation fails because the session,
// token or module went away (the CKR_SESSION_*, CKR_DEVICE_*,
// CKR_TOKEN_NOT_PRESENT, CKR_USER_NOT_LOGGED_IN and
// CKR_CRYPTOKI_NOT_INITIALIZED codes, or any failure while the token no
// longer answers C_GetTokenInfo), every pooled session is dropped, the
// module is re-initialised if it was finalised, a new session is opened
// and logged in, and the operation is retried once; if that fails too the
// error wraps ErrTokenUnavailable. A token that is missing makes the
// module re-initialise to rescan for it at most once per second, so a
// token that comes back is used again without reopening the Manager.
// Object handles are cached per module initialisation.
//
// The library itself is loaded and C_Initialize'd once per process and
// module path, shared by all Managers of that path, and finalised when the
// last one closes. PKCS#11 login state is per process and token: a second
// Manager for a token that is already logged in is not re-checked against
// its PIN.
//
// # SM2
//
// PKCS#11 defines no SM2 mechanisms. On tokens whose vendor does (Config
// Vendor "tass", "sansec", "luna", "ep11", or "custom" with a VendorSpec),
// SM2 keys are generated and used in the token with the vendor-defined
// values, gmtrust computes e = SM3(ZA || M) unless the vendor mechanism
// does, converts r||s to DER, and verifies each signature before
// returning it. The vendor table is taken from vendor documentation and
// HAS NOT BEEN RUN AGAINST A REAL VENDOR HSM for gmtrust; only the
// conversions (with a fake token) and the plumbing (against SoftHSM, with
// ECDSA standing in for the vendor mechanism) are tested.
//
// On tokens without SM2 (SoftHSM, most generic HSMs) SM2 keys use KEK mode:
// an AES-256 key (the KEK, label Config.KEKLabel) is created once in the
// token, sensitive and not extractable. CreateKey generates the SM2 key in
// Go, has the token encrypt its 32-byte scalar with CKM_AES_GCM under a
// random 96-bit IV generated here, with additional data binding the
// ciphertext to the key's label, key ID, algorithm and public key, and
// stores only IV, ciphertext and public key in a CKO_DATA object
// (CKA_APPLICATION "gmtrust-sm2-kek"). To sign, the token decrypts; the
// IV and lengths are checked before the token is called (SoftHSM accepts
// an empty IV), the scalar must match the stored public key, and any
// failure is ErrWrappedKeyInvalid: no signature is made with a damaged or
// substituted key. The plaintext key stays in memory for
// Config.PlaintextTTL (0: only for one signature), then it is zeroised,
// as it is on Close.
//
// What KEK mode protects: SM2 keys at rest. A copy of the token's storage,
// a backup, or a database or file dump is useless without the KEK, which
// never leaves the token, and a modified or relabelled key blob is
// refused. What it does not protect: the running process. Code running in
// gmtrust (or anyone who can read its memory or log in to the token with
// its PIN) can have keys decrypted and sign, and while a key is cached the
// scalar is in process memory. Zeroisation is best effort: Go may have
// copied the value (gmsm caches a derived key until the key is collected,
// and the PKCS#11 binding frees, without wiping, its C buffer). An SM2
// key in KEK mode is therefore a software key with encrypted storage, not
// an HSM key; use a vendor SM2 mechanism where the key must never be in
// host memory.
package pkcs11
