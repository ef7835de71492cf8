package main

import (
	"context"
	"crypto"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"github.com/spf13/cobra"

	"github.com/gmtrust/gmtrust/ca"
	"github.com/gmtrust/gmtrust/hsm"
	"github.com/gmtrust/gmtrust/hsm/pkcs11"
	"github.com/gmtrust/gmtrust/hsm/pkcs11uri"
	"github.com/gmtrust/gmtrust/internal/app"
	"github.com/gmtrust/gmtrust/internal/config"
	"github.com/gmtrust/gmtrust/internal/sigalg"
	"github.com/gmtrust/gmtrust/internal/store"
	"github.com/gmtrust/gmtrust/seal"
)

func newHSMCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "hsm", Short: "PKCS#11 tokens and the keys this instance signs with"}
	cmd.AddCommand(newHSMListTokensCmd(g), newHSMListKeysCmd(g), newHSMCreateKeyCmd(g), newHSMTestCmd(g))
	return cmd
}

func newHSMListTokensCmd(g *globals) *cobra.Command {
	var module string
	cmd := &cobra.Command{
		Use:   "list-tokens",
		Short: "List the tokens of a PKCS#11 module (default: the instance's module)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if module == "" {
				cfg, err := config.Load(g.dataDir, os.Getenv)
				if err != nil || cfg.KMS.Type != "pkcs11" {
					return errors.New("--module is required: --data-dir is not an instance with kms.type pkcs11")
				}
				u, err := pkcs11uri.Parse(cfg.KMS.URI)
				if err != nil {
					return fmt.Errorf("kms.uri: %w", err)
				}
				module = u.ModulePath
			}
			tokens, err := pkcs11.ListTokens(cmd.Context(), module)
			if err != nil {
				return err
			}
			if g.jsonOut {
				out := make([]map[string]any, 0, len(tokens))
				for _, t := range tokens {
					out = append(out, map[string]any{"slot": t.SlotID, "label": t.Label, "manufacturer": t.Manufacturer,
						"model": t.Model, "serial": t.Serial, "initialized": t.Initialized, "login_required": t.LoginRequired, "uri": t.URI})
				}
				return g.printJSON(out)
			}
			if len(tokens) == 0 {
				fmt.Fprintf(g.stdout, "no tokens in %s\n", module)
				return nil
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "SLOT\tLABEL\tMANUFACTURER\tMODEL\tSERIAL\tINITIALISED\tURI")
			for _, t := range tokens {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%t\t%s\n", t.SlotID, t.Label, t.Manufacturer, t.Model, t.Serial, t.Initialized, t.URI)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&module, "module", "", "PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so")
	return cmd
}

// openToken opens the token of the instance in --data-dir.
func (g *globals) openToken(ctx context.Context) (*config.Config, *pkcs11.Manager, error) {
	cfg, err := config.Load(g.dataDir, os.Getenv)
	if err != nil {
		return nil, nil, err
	}
	if cfg.KMS.Type != "pkcs11" {
		return nil, nil, fmt.Errorf("%s uses kms.type %s; this command needs pkcs11", g.dataDir, cfg.KMS.Type)
	}
	m, err := app.OpenPKCS11(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	return cfg, m, nil
}

func newHSMListKeysCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list-keys",
		Short: "List the signing keys on the instance's token and what uses them",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			cfg, m, err := g.openToken(ctx)
			if err != nil {
				return err
			}
			defer m.Close()
			keys, err := m.ListKeys(ctx)
			if err != nil {
				return err
			}
			// Which keys the instance uses is useful, not essential: a
			// token can be inspected while its database is down.
			users := map[string][]string{}
			if stored, err := loadStoredKeys(ctx, g.dataDir, cfg); err != nil {
				fmt.Fprintf(g.stderr, "gmtrust: not showing key users: %v\n", err)
			} else {
				for _, k := range stored {
					if label := refLabel(k.Ref); label != "" {
						users[label] = append(users[label], k.Use+" "+k.ID)
					}
				}
			}
			if g.jsonOut {
				out := make([]map[string]any, 0, len(keys))
				for _, k := range keys {
					out = append(out, map[string]any{"label": k.Label, "type": k.Type, "algorithm": k.Algorithm,
						"id": hex.EncodeToString(k.ID), "ref": k.Ref, "used_by": nonNil(users[k.Label])})
				}
				return g.printJSON(out)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "LABEL\tTYPE\tALGORITHM\tUSED BY\tREF")
			for _, k := range keys {
				alg := string(k.Algorithm)
				if alg == "" {
					alg = "-"
				}
				used := strings.Join(users[k.Label], ", ")
				if used == "" {
					used = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.Label, k.Type, alg, used, k.Ref)
			}
			return tw.Flush()
		},
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// refLabel is the object label a pkcs11: key reference names, or "".
func refLabel(ref string) string {
	u, err := pkcs11uri.Parse(ref)
	if err != nil {
		return ""
	}
	return u.Object
}

func newHSMCreateKeyCmd(g *globals) *cobra.Command {
	var label, alg string
	cmd := &cobra.Command{
		Use:   "create-key",
		Short: "Generate a key in the instance's key manager and print its reference and public key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if label == "" {
				return errors.New("--label is required")
			}
			a, err := hsm.ParseAlgorithm(alg)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			cfg, err := config.Load(g.dataDir, os.Getenv)
			if err != nil {
				return err
			}
			keys, err := app.OpenKeys(ctx, g.dataDir, cfg, os.Getenv, false)
			if err != nil {
				return err
			}
			defer keys.Close()
			ref, pub, err := keys.CreateKey(ctx, label, a)
			if err != nil {
				return err
			}
			spki, err := smx509.MarshalPKIXPublicKey(pub)
			if err != nil {
				return fmt.Errorf("encoding the public key: %w", err)
			}
			pubPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}))
			if g.jsonOut {
				return g.printJSON(map[string]string{"label": label, "algorithm": string(a), "ref": ref, "public_key": pubPEM})
			}
			fmt.Fprintf(g.stdout, "ref: %s\n%s", ref, pubPEM)
			return nil
		},
	}
	cmd.Flags().StringVar(&label, "label", "", "key label (CKA_LABEL), unique on the token")
	cmd.Flags().StringVar(&alg, "algorithm", "", "sm2, ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072 or rsa-4096")
	return cmd
}

// storedKey is a key the instance signs with, as the database records it.
type storedKey struct {
	Use  string // "CA", or a delegated signer's purpose
	ID   string
	Ref  string
	Cert []byte // the certificate the key must match
}

// storedKeys lists every key reference in the database: CA keys, the keys
// of delegated signers (OCSP responder, seal maker) and the holder keys of
// seals that are not revoked (one entry per key, however many seals share
// it).
func storedKeys(ctx context.Context, db *store.DB) ([]storedKey, error) {
	cas, err := db.CAs(ctx)
	if err != nil {
		return nil, err
	}
	var out []storedKey
	for _, c := range cas {
		out = append(out, storedKey{Use: "CA", ID: c.ID, Ref: c.KeyRef, Cert: c.DER})
	}
	for _, purpose := range []string{ca.PurposeOCSP, ca.PurposeSealMaker} {
		signers, err := db.Signers(ctx, purpose)
		if err != nil {
			return nil, err
		}
		for _, s := range signers {
			out = append(out, storedKey{Use: purpose, ID: s.ID, Ref: s.KeyRef, Cert: s.DER})
		}
	}
	reg, err := store.NewSeals(ctx, db)
	if err != nil {
		return nil, err
	}
	defer reg.Close()
	seen := map[string]bool{}
	for cursor := ""; ; {
		seals, next, err := reg.Seals(ctx, seal.Filter{Cursor: cursor, Limit: 500})
		if err != nil {
			return nil, err
		}
		for _, r := range seals {
			if r.Status == seal.SealRevoked || seen[r.HolderKeyRef] {
				continue
			}
			seen[r.HolderKeyRef] = true
			holder, err := db.Certificate(ctx, r.HolderCAID, r.HolderSerial)
			if err != nil {
				return nil, fmt.Errorf("seal %s holder certificate: %w", r.ID, err)
			}
			out = append(out, storedKey{Use: "seal", ID: r.ID, Ref: r.HolderKeyRef, Cert: holder.DER})
		}
		if next == "" {
			return out, nil
		}
		cursor = next
	}
}

func loadStoredKeys(ctx context.Context, dir string, cfg *config.Config) ([]storedKey, error) {
	db, err := store.Open(ctx, cfg.DatabaseDSN(dir), store.Options{})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	return storedKeys(ctx, db)
}

// keyTest is the outcome of testing one key.
type keyTest struct {
	Use        string  `json:"use"`
	ID         string  `json:"id"`
	Algorithm  string  `json:"algorithm,omitempty"`
	Ref        string  `json:"ref"`
	Signatures int     `json:"signatures"`
	PerSecond  float64 `json:"signatures_per_second"`
	Error      string  `json:"error,omitempty"`
}

// testKey signs and verifies with one key for about d with callers
// concurrent signers. The rate counts signing time only: verification,
// done in Go after each signature, is not what is being measured.
func testKey(ctx context.Context, keys hsm.KeyManager, k storedKey, d time.Duration, callers int, now func() time.Time) keyTest {
	res := keyTest{Use: k.Use, ID: k.ID, Ref: k.Ref}
	fail := func(err error) keyTest { res.Error = err.Error(); return res }
	signer, err := keys.Signer(ctx, k.Ref)
	if err != nil {
		return fail(err)
	}
	pub := signer.Public()
	alg, err := sigalg.ForPublicKey(pub)
	if err != nil {
		return fail(err)
	}
	res.Algorithm = alg.Name
	if len(k.Cert) > 0 {
		cert, err := smx509.ParseCertificate(k.Cert)
		if err != nil {
			return fail(fmt.Errorf("stored certificate: %w", err))
		}
		if eq, ok := pub.(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(cert.PublicKey) {
			return fail(errors.New("the key does not match the stored certificate"))
		}
	}
	var (
		mu      sync.Mutex
		n       int
		signing time.Duration
		first   error
		wg      sync.WaitGroup
	)
	start := now()
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine int
			var busy time.Duration
			var err error
			for i := 0; ; i++ {
				msg := fmt.Appendf(nil, "gmtrust hsm test %s %s caller %d #%d", k.Use, k.ID, c, i)
				t0 := now()
				sig, a, serr := sigalg.Sign(signer, msg)
				busy += now().Sub(t0)
				if serr != nil {
					err = fmt.Errorf("signature %d: %w", i+1, serr)
					break
				}
				if verr := sigalg.Verify(pub, a.OID, msg, sig); verr != nil {
					err = fmt.Errorf("signature %d does not verify: %w", i+1, verr)
					break
				}
				mine++
				if now().Sub(start) >= d || ctx.Err() != nil {
					break
				}
			}
			mu.Lock()
			defer mu.Unlock()
			n += mine
			signing += busy
			if err != nil && first == nil {
				first = err
			}
		}()
	}
	wg.Wait()
	res.Signatures = n
	if first != nil {
		return fail(first)
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	// Each caller was busy signing for signing/callers on average, so that
	// is the time the n signatures took together.
	if perCaller := signing / time.Duration(callers); perCaller > 0 {
		res.PerSecond = float64(n) / perCaller.Seconds()
	}
	return res
}

func newHSMTestCmd(g *globals) *cobra.Command {
	var d time.Duration
	var callers int
	cmd := &cobra.Command{
		Use:   "test",
		Short: "Sign and verify with every key the instance uses (CAs, OCSP signer, seal maker, seal holders) and print signatures/s",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if d <= 0 || callers < 1 || callers > 1024 {
				return errors.New("--duration must be positive and --callers between 1 and 1024")
			}
			ctx := cmd.Context()
			a, err := g.open(ctx)
			if err != nil {
				return err
			}
			defer a.Close()
			keys, err := storedKeys(ctx, a.Store)
			if err != nil {
				return err
			}
			var results []keyTest
			failed := 0
			for _, k := range keys {
				r := testKey(ctx, a.Keys, k, d, callers, time.Now)
				if r.Error != "" {
					failed++
				}
				results = append(results, r)
			}
			if g.jsonOut {
				if err := g.printJSON(results); err != nil {
					return err
				}
			} else {
				tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintf(tw, "USE\tID\tALGORITHM\tSIGNATURES\tSIGS/S\tRESULT\n")
				for _, r := range results {
					result := "ok"
					if r.Error != "" {
						result = "FAILED: " + r.Error
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%.0f\t%s\n", r.Use, r.ID, r.Algorithm, r.Signatures, r.PerSecond, result)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d keys failed", failed, len(results))
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&d, "duration", 2*time.Second, "how long to sign with each key")
	cmd.Flags().IntVar(&callers, "callers", 1, "concurrent signers per key")
	return cmd
}
