package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
)

func newCRLCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "crl", Short: "Certificate revocation lists"}
	var caID, out string
	gen := &cobra.Command{
		Use:   "generate",
		Short: "Build, sign and store a new CRL for every CA (or one with --ca)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out != "" && caID == "" {
				return fmt.Errorf("--out needs --ca: one file holds one CA's CRL")
			}
			a, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer a.Close()
			ids := []string{caID}
			if caID == "" {
				ids = ids[:0]
				for _, c := range a.Authority.CAs() {
					ids = append(ids, c.ID)
				}
			}
			var res []map[string]any
			for _, id := range ids {
				crl, err := a.Authority.GenerateCRL(cmd.Context(), id)
				if err != nil {
					return err
				}
				if out != "" {
					if err := os.WriteFile(out, crl.DER, 0o644); err != nil {
						return err
					}
				}
				res = append(res, map[string]any{"ca": id, "number": crl.Number, "this_update": crl.ThisUpdate.UTC(), "next_update": crl.NextUpdate.UTC(), "size": len(crl.DER)})
				if !g.jsonOut {
					fmt.Fprintf(g.stdout, "CA %s: CRL #%d, %d bytes, next update %s\n", id, crl.Number, len(crl.DER), crl.NextUpdate.UTC().Format(time.RFC3339))
				}
			}
			if g.jsonOut {
				return g.printJSON(res)
			}
			return nil
		},
	}
	gen.Flags().StringVar(&caID, "ca", "", "only this CA")
	gen.Flags().StringVar(&out, "out", "", "with --ca: also write the DER CRL here")
	cmd.AddCommand(gen)
	return cmd
}
