// Package soft is the software backend of the key manager: a directory of
// private keys encrypted at rest, the zero-setup default.
//
// Each key is a PKCS#8 blob sealed with AES-256-GCM under a key derived
// with scrypt from a passphrase. The additional data binds each ciphertext
// to its label and algorithm, so a file copied under another name does not
// decrypt. Decrypted keys live only in this process's memory.
package soft

import (
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/scrypt"

	"github.com/gmtrust/gmtrust/hsm"
	"github.com/gmtrust/gmtrust/internal/sigalg"
)

// RefPrefix starts every reference this backend hands out.
const RefPrefix = "soft:"

const (
	metaFile      = "keystore.json"
	formatVersion = 1
	verifierText  = "gmtrust keystore verifier v1"
)

// ErrBadPassphrase is returned by Open when the passphrase does not match
// the one the keystore was created with.
var ErrBadPassphrase = errors.New("soft: wrong keystore passphrase")

var labelRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// KDFParams are the scrypt parameters, stored so they can be raised later
// without breaking existing keystores.
type KDFParams struct {
	N int `json:"n"`
	R int `json:"r"`
	P int `json:"p"`
}

// Default scrypt cost: about 50-100 ms once per process start.
const (
	kdfN = 1 << 15
	kdfR = 8
	kdfP = 1
)

type meta struct {
	Version  int       `json:"version"`
	KDF      KDFParams `json:"kdf"`
	Salt     []byte    `json:"salt"`
	Nonce    []byte    `json:"nonce"`
	Verifier []byte    `json:"verifier"`
}

type keyFile struct {
	Version    int    `json:"version"`
	Label      string `json:"label"`
	Algorithm  string `json:"algorithm"`
	Nonce      []byte `json:"nonce"`
	Ciphertext []byte `json:"ciphertext"`
}

// Keystore implements hsm.KeyManager over a directory.
type Keystore struct {
	dir  string
	aead cipher.AEAD

	mu      sync.Mutex
	signers map[string]crypto.Signer
}

var _ hsm.KeyManager = (*Keystore)(nil)

// Open opens the keystore in dir, creating it (with a fresh salt) when
// create is true and it does not exist yet.
func Open(dir string, passphrase []byte, create bool) (*Keystore, error) {
	if len(passphrase) == 0 {
		return nil, errors.New("soft: empty keystore passphrase")
	}
	m, err := readMeta(dir)
	switch {
	case errors.Is(err, os.ErrNotExist) && create:
		return initKeystore(dir, passphrase)
	case err != nil:
		return nil, err
	}
	if m.Version != formatVersion {
		return nil, fmt.Errorf("soft: keystore format version %d not supported", m.Version)
	}
	aead, err := deriveAEAD(passphrase, m.Salt, m.KDF)
	if err != nil {
		return nil, err
	}
	if _, err := aead.Open(nil, m.Nonce, m.Verifier, []byte(verifierText)); err != nil {
		return nil, ErrBadPassphrase
	}
	return &Keystore{dir: dir, aead: aead, signers: map[string]crypto.Signer{}}, nil
}

func readMeta(dir string) (*meta, error) {
	b, err := os.ReadFile(filepath.Join(dir, metaFile))
	if err != nil {
		return nil, fmt.Errorf("soft: reading keystore: %w", err)
	}
	var m meta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("soft: corrupt %s: %w", metaFile, err)
	}
	return &m, nil
}

func initKeystore(dir string, passphrase []byte) (*Keystore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("soft: %w", err)
	}
	m := meta{Version: formatVersion, KDF: KDFParams{N: kdfN, R: kdfR, P: kdfP}, Salt: make([]byte, 16)}
	if _, err := rand.Read(m.Salt); err != nil {
		return nil, err
	}
	aead, err := deriveAEAD(passphrase, m.Salt, m.KDF)
	if err != nil {
		return nil, err
	}
	m.Nonce = make([]byte, aead.NonceSize())
	if _, err := rand.Read(m.Nonce); err != nil {
		return nil, err
	}
	m.Verifier = aead.Seal(nil, m.Nonce, nil, []byte(verifierText))
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(dir, metaFile), b); err != nil {
		return nil, err
	}
	return &Keystore{dir: dir, aead: aead, signers: map[string]crypto.Signer{}}, nil
}

func deriveAEAD(passphrase, salt []byte, p KDFParams) (cipher.AEAD, error) {
	key, err := scrypt.Key(passphrase, salt, p.N, p.R, p.P, 32)
	if err != nil {
		return nil, fmt.Errorf("soft: deriving key: %w", err)
	}
	block, err := aes.NewCipher(key)
	clear(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func aad(label, alg string) []byte {
	return []byte("gmtrust-soft-key-v1|" + label + "|" + alg)
}

// CreateKey implements hsm.KeyManager.
func (k *Keystore) CreateKey(_ context.Context, label string, alg hsm.Algorithm) (string, crypto.PublicKey, error) {
	if !labelRE.MatchString(label) {
		return "", nil, fmt.Errorf("soft: invalid key label %q (letters, digits, '.', '_', '-'; at most 64)", label)
	}
	if _, err := hsm.ParseAlgorithm(string(alg)); err != nil {
		return "", nil, err
	}
	path := k.path(label)
	if _, err := os.Stat(path); err == nil {
		return "", nil, fmt.Errorf("%w: %q", hsm.ErrKeyExists, label)
	}
	priv, err := sigalg.GenerateKey(rand.Reader, string(alg))
	if err != nil {
		return "", nil, err
	}
	der, err := smx509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", nil, fmt.Errorf("soft: encoding key: %w", err)
	}
	kf := keyFile{Version: formatVersion, Label: label, Algorithm: string(alg), Nonce: make([]byte, k.aead.NonceSize())}
	if _, err := rand.Read(kf.Nonce); err != nil {
		return "", nil, err
	}
	kf.Ciphertext = k.aead.Seal(nil, kf.Nonce, der, aad(label, string(alg)))
	clear(der)
	b, err := json.MarshalIndent(kf, "", "  ")
	if err != nil {
		return "", nil, err
	}
	if err := writeFileExclusive(path, b); err != nil {
		if errors.Is(err, os.ErrExist) {
			return "", nil, fmt.Errorf("%w: %q", hsm.ErrKeyExists, label)
		}
		return "", nil, err
	}
	k.mu.Lock()
	k.signers[label] = priv
	k.mu.Unlock()
	return RefPrefix + label, priv.Public(), nil
}

// Signer implements hsm.KeyManager.
func (k *Keystore) Signer(_ context.Context, ref string) (crypto.Signer, error) {
	label, ok := strings.CutPrefix(ref, RefPrefix)
	if !ok || !labelRE.MatchString(label) {
		return nil, fmt.Errorf("soft: %q is not a software keystore reference", ref)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if s, ok := k.signers[label]; ok {
		return s, nil
	}
	b, err := os.ReadFile(k.path(label))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %q", hsm.ErrKeyNotFound, ref)
	}
	if err != nil {
		return nil, fmt.Errorf("soft: %w", err)
	}
	var kf keyFile
	if err := json.Unmarshal(b, &kf); err != nil {
		return nil, fmt.Errorf("soft: corrupt key file %q: %w", label, err)
	}
	if kf.Label != label || kf.Version != formatVersion {
		return nil, fmt.Errorf("soft: key file %q does not belong to that label", label)
	}
	der, err := k.aead.Open(nil, kf.Nonce, kf.Ciphertext, aad(label, kf.Algorithm))
	if err != nil {
		return nil, fmt.Errorf("soft: key %q fails authentication (tampered or wrong keystore)", label)
	}
	priv, err := smx509.ParsePKCS8PrivateKey(der)
	clear(der)
	if err != nil {
		return nil, fmt.Errorf("soft: key %q: %w", label, err)
	}
	s, ok := priv.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("soft: key %q is not a signing key", label)
	}
	k.signers[label] = s
	return s, nil
}

// Close forgets the decrypted keys.
func (k *Keystore) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	clear(k.signers)
	return nil
}

func (k *Keystore) path(label string) string {
	return filepath.Join(k.dir, label+".key")
}

// writeFileExclusive creates path with mode 0600, failing if it exists, and
// syncs file and directory so a crash right after cannot lose the key.
func writeFileExclusive(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("soft: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("soft: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("soft: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("soft: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	_ = os.Remove(tmp)
	if err := writeFileExclusive(tmp, b); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("soft: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("soft: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("soft: %w", err)
	}
	return nil
}
