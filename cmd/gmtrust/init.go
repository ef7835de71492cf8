package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/gmtrust/gmtrust/hsm"
	"github.com/gmtrust/gmtrust/internal/api"
	"github.com/gmtrust/gmtrust/internal/app"
)

func newInitCmd(g *globals) *cobra.Command {
	var p app.InitParams
	var alg string
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a new instance: database, keys, root and issuing CA, OCSP signer, admin token",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := hsm.ParseAlgorithm(alg)
			if err != nil {
				return err
			}
			switch a {
			case hsm.SM2, hsm.ECDSAP256, hsm.ECDSAP384, hsm.RSA3072, hsm.RSA4096:
			default:
				return fmt.Errorf("CA algorithm %s is not offered (sm2, ecdsa-p256, ecdsa-p384, rsa-3072, rsa-4096)", a)
			}
			p.Dir, p.Algorithm = g.dataDir, a
			res, err := app.Init(cmd.Context(), p)
			if err != nil {
				return err
			}
			h := res.Hierarchy
			if g.jsonOut {
				return g.printJSON(map[string]any{
					"data_dir": g.dataDir, "admin_token_file": res.TokenFile, "algorithm": a,
					"root":        map[string]string{"id": h.Root.ID, "sha256": api.Fingerprint(h.Root.DER)},
					"issuing":     map[string]string{"id": h.Issuing.ID, "sha256": api.Fingerprint(h.Issuing.DER)},
					"ocsp_signer": map[string]string{"serial": h.OCSPCert.Serial, "sha256": api.Fingerprint(h.OCSPCert.DER)},
				})
			}
			fmt.Fprintf(g.stdout, "Initialised %s (%s)\n", g.dataDir, a)
			fmt.Fprintf(g.stdout, "  root CA     %s  SHA256 %s\n", h.Root.Name, api.Fingerprint(h.Root.DER))
			fmt.Fprintf(g.stdout, "  issuing CA  %s  SHA256 %s\n", h.Issuing.Name, api.Fingerprint(h.Issuing.DER))
			fmt.Fprintf(g.stdout, "  OCSP signer serial %s, valid until %s\n", h.OCSPCert.Serial, h.OCSPCert.NotAfter.UTC().Format("2006-01-02 15:04 MST"))
			fmt.Fprintf(g.stdout, "  admin token written to %s (mode 0600)\n", res.TokenFile)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&alg, "algorithm", "sm2", "CA key algorithm: sm2, ecdsa-p256, ecdsa-p384, rsa-3072, rsa-4096")
	f.StringVar(&p.Name, "name", "gmtrust CA", "CA name")
	f.StringVar(&p.PublicURL, "public-url", "http://127.0.0.1:8080", "URL relying parties use to reach this service (CRL, OCSP, AIA)")
	f.StringVar(&p.Listen, "listen", "127.0.0.1:8080", "address gmtrust serve listens on")
	f.StringVar(&p.Database, "database", "", "postgres:// DSN (default: SQLite file in the data directory)")
	f.StringVar(&p.KMS, "kms", "soft", "key manager: soft, or a pkcs11: URI")
	return cmd
}
