package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/emmansun/gmsm/sm3"
	"github.com/spf13/cobra"

	"github.com/gmtrust/gmtrust/internal/api"
	"github.com/gmtrust/gmtrust/internal/app"
	"github.com/gmtrust/gmtrust/internal/config"
	"github.com/gmtrust/gmtrust/internal/store"
	"github.com/gmtrust/gmtrust/seal"
)

// Exit codes of `gmtrust seal verify`; 1 stays "the command failed".
const (
	exitInvalid       = 2
	exitIndeterminate = 3
)

func newSealCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "seal", Short: "Verify, inspect and list electronic seals and seal signatures (GB/T 38540, GM/T 0031); grant who may stamp"}
	cmd.AddCommand(newSealVerifyCmd(g), newSealInspectCmd(g), newSealListCmd(g),
		newSealGrantCmd(g, true), newSealGrantCmd(g, false), newSealGrantsCmd(g))
	return cmd
}

// withSeals opens the instance in --data-dir and runs fn with its seal
// service and the caller the CLI acts as: whoever can read the data
// directory holds its keys, so the instance administrator, recorded in
// the audit log as cli:<user> (like `cert revoke`).
func (g *globals) withSeals(ctx context.Context, fn func(s *app.Seals, c seal.Caller) error) error {
	opts, err := app.SealOptionsFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	a, err := g.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	s, err := a.NewSeals(ctx, opts)
	if err != nil {
		return err
	}
	defer s.Close()
	return fn(s, seal.Caller{Name: "cli:" + currentUser(), Roles: []string{seal.RoleAdmin}})
}

// newSealGrantCmd is `seal grant` (add) or `seal ungrant`.
func newSealGrantCmd(g *globals, add bool) *cobra.Command {
	use, short := "grant SEAL_ID PRINCIPAL", "Let a principal stamp with a seal"
	if !add {
		use, short = "ungrant SEAL_ID PRINCIPAL", "Withdraw a principal's grant of a seal"
	}
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withSeals(cmd.Context(), func(s *app.Seals, c seal.Caller) error {
				if !add {
					if err := s.Service.DeleteGrant(cmd.Context(), c, args[0], args[1]); err != nil {
						return err
					}
					fmt.Fprintf(g.stdout, "%s may no longer stamp with seal %s\n", args[1], args[0])
					return nil
				}
				gr, err := s.Service.AddGrant(cmd.Context(), c, args[0], args[1])
				if err != nil {
					return err
				}
				if g.jsonOut {
					return g.printJSON(api.ToGrantJSON(*gr))
				}
				fmt.Fprintf(g.stdout, "%s may stamp with seal %s\n", gr.Principal, gr.SealID)
				return nil
			})
		},
	}
}

func newSealGrantsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "grants SEAL_ID",
		Short: "List who may stamp with a seal",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withSeals(cmd.Context(), func(s *app.Seals, c seal.Caller) error {
				gs, err := s.Service.Grants(cmd.Context(), c, args[0])
				if err != nil {
					return err
				}
				if g.jsonOut {
					out := make([]api.GrantJSON, 0, len(gs))
					for _, gr := range gs {
						out = append(out, api.ToGrantJSON(gr))
					}
					return g.printJSON(out)
				}
				tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "PRINCIPAL\tGRANTED BY\tSINCE")
				for _, gr := range gs {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", gr.Principal, gr.GrantedBy, gr.CreatedAt.UTC().Format(time.RFC3339))
				}
				return tw.Flush()
			})
		},
	}
}

func newSealVerifyCmd(g *globals) *cobra.Command {
	var document, digestHex string
	var trust []string
	cmd := &cobra.Command{
		Use:   "verify SIGNATURE [--document FILE | --digest HEX] [--trust PEM]...",
		Short: "Verify a seal signature (SES_Signature, DER, PEM or base64); exit 0 only when valid",
		Long: `Verify a seal signature and print one line per check and the verdict.

Trust anchors are the instance's CAs when --data-dir is given or ./data holds
an instance, plus every certificate in the --trust files. With an instance,
revocation comes from its certificate status and the seal's state from its
seal registry; without one, both stay undecided and the verdict is at best
indeterminate.

Exit status: 0 valid, 2 invalid, 3 indeterminate, 1 the command failed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if document != "" && digestHex != "" {
				return errors.New("give --document or --digest, not both")
			}
			sig, err := readSealInput(args[0])
			if err != nil {
				return err
			}
			var digest []byte
			switch {
			case document != "":
				if digest, err = sm3File(document); err != nil {
					return err
				}
			case digestHex != "":
				if digest, err = hex.DecodeString(strings.TrimSpace(digestHex)); err != nil || len(digest) != sm3.Size {
					return fmt.Errorf("--digest: want the SM3 digest as %d hex digits", 2*sm3.Size)
				}
			}
			var extra [][]byte
			for _, f := range trust {
				certs, err := readCertificates(f)
				if err != nil {
					return err
				}
				extra = append(extra, certs...)
			}
			dir, err := g.sealInstance(cmd)
			if err != nil {
				return err
			}
			v, err := app.OpenSealVerifier(cmd.Context(), dir, extra, app.Options{Logger: g.logger("warn")})
			if err != nil {
				return err
			}
			defer v.Close()
			rep := v.Verifier.Verify(cmd.Context(), sig, nil, digest)
			if g.jsonOut {
				if err := g.printJSON(rep); err != nil {
					return err
				}
			} else {
				printReport(g.stdout, rep, dir)
			}
			switch rep.Verdict {
			case seal.VerdictValid:
				return nil
			case seal.VerdictInvalid:
				return exitError{code: exitInvalid}
			}
			return exitError{code: exitIndeterminate}
		},
	}
	f := cmd.Flags()
	f.StringVar(&document, "document", "", "the protected document: its SM3 digest must equal dataHash")
	f.StringVar(&digestHex, "digest", "", "the SM3 digest of the protected document, in hex")
	f.StringArrayVar(&trust, "trust", nil, "PEM (or DER) file of trusted root and intermediate certificates; repeatable")
	return cmd
}

// sealInstance returns the data directory to verify against: --data-dir
// (or GMTRUST_DATA_DIR) when given, which must hold an instance, else
// ./data when it holds one, else "" (no instance).
func (g *globals) sealInstance(cmd *cobra.Command) (string, error) {
	given := cmd.Flags().Changed("data-dir") || os.Getenv("GMTRUST_DATA_DIR") != ""
	_, err := os.Stat(filepath.Join(g.dataDir, config.FileName))
	switch {
	case err == nil:
		return g.dataDir, nil
	case given:
		return "", fmt.Errorf("--data-dir %s holds no gmtrust instance (no %s)", g.dataDir, config.FileName)
	}
	return "", nil
}

func printReport(w io.Writer, r *seal.Report, dir string) {
	if r.Seal != nil {
		fmt.Fprintf(w, "seal:      %s (esID %s, type %d, valid %s .. %s)\n", r.Seal.Name, r.Seal.ESID, r.Seal.Type,
			r.Seal.ValidStart.UTC().Format(time.RFC3339), r.Seal.ValidEnd.UTC().Format(time.RFC3339))
		fmt.Fprintf(w, "maker:     %s\n", r.Seal.Maker)
	}
	if r.Signer != "" {
		fmt.Fprintf(w, "signer:    %s\n", r.Signer)
	}
	if !r.Time.IsZero() {
		fmt.Fprintf(w, "time:      %s (claimed by the signer)\n", r.Time.UTC().Format(time.RFC3339))
	}
	if r.PropertyInfo != "" {
		fmt.Fprintf(w, "property:  %s\n", r.PropertyInfo)
	}
	if dir == "" {
		fmt.Fprintln(w, "instance:  none (trust from --trust only; no revocation or registry information)")
	} else {
		fmt.Fprintf(w, "instance:  %s\n", dir)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range r.Checks {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", c.Name, c.Result, c.Detail)
	}
	tw.Flush()
	line := "verdict:   " + r.Verdict
	if r.Reason != "" {
		line += " (" + r.Reason + ")"
	}
	fmt.Fprintln(w, line)
}

func newSealInspectCmd(g *globals) *cobra.Command {
	var pictureOut string
	cmd := &cobra.Command{
		Use:   "inspect FILE [--picture-out FILE]",
		Short: "Print the decoded structure of a seal (.esl) or seal signature, v4 or v1; verifies nothing",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			der, err := readSealInput(args[0])
			if err != nil {
				return err
			}
			sum, err := seal.Inspect(der)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			if pictureOut != "" {
				pic, err := sealPicture(der, sum.Kind)
				if err != nil {
					return err
				}
				if err := os.WriteFile(pictureOut, pic, 0o644); err != nil {
					return err
				}
			}
			if g.jsonOut {
				return g.printJSON(sum)
			}
			fmt.Fprint(g.stdout, sum.String())
			if pictureOut != "" {
				fmt.Fprintf(g.stdout, "%-16s %s\n", "picture out:", pictureOut)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&pictureOut, "picture-out", "", "write the seal picture to this file")
	return cmd
}

// sealPicture returns the picture bytes of a seal or signature.
func sealPicture(der []byte, kind string) ([]byte, error) {
	if kind == "signature" {
		sig, err := seal.ParseSignature(der)
		if err != nil {
			return nil, err
		}
		return sig.Seal.Picture.Data, nil
	}
	s, err := seal.ParseSeal(der)
	if err != nil {
		return nil, err
	}
	return s.Picture.Data, nil
}

func newSealListCmd(g *globals) *cobra.Command {
	var department, status string
	cmd := &cobra.Command{
		Use:   "list [--department D] [--status active|suspended|revoked]",
		Short: "List the instance's seals, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := seal.Filter{Department: department, Limit: 500}
			if status != "" {
				st, err := seal.ParseSealState(status)
				if err != nil {
					return err
				}
				f.Status = st
			}
			a, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer a.Close()
			reg, err := store.NewSeals(cmd.Context(), a.Store)
			if err != nil {
				return err
			}
			defer reg.Close()
			recs, err := allSeals(cmd.Context(), reg, f)
			if err != nil {
				return err
			}
			if g.jsonOut {
				out := make([]map[string]any, 0, len(recs))
				for _, r := range recs {
					out = append(out, map[string]any{"id": r.ID, "esid": r.ESID, "name": r.Name, "type": seal.TypeName(r.Type),
						"department": r.Department, "status": r.Status.String(), "valid_start": r.ValidStart.UTC(), "valid_end": r.ValidEnd.UTC(),
						"holder_certificate_serial": r.HolderSerial})
				}
				return g.printJSON(out)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tESID\tSTATUS\tTYPE\tDEPARTMENT\tVALID UNTIL\tNAME")
			for _, r := range recs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.ESID, r.Status, seal.TypeName(r.Type), r.Department,
					r.ValidEnd.UTC().Format(time.RFC3339), r.Name)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&department, "department", "", "only seals of this department")
	cmd.Flags().StringVar(&status, "status", "", "only seals in this status")
	return cmd
}

func allSeals(ctx context.Context, reg *store.Seals, f seal.Filter) ([]seal.Record, error) {
	var out []seal.Record
	for {
		page, next, err := reg.Seals(ctx, f)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if next == "" {
			return out, nil
		}
		f.Cursor = next
	}
}

// readSealInput reads a seal or signature file: DER as is, or a PEM block,
// or base64 text (as approval systems store them).
func readSealInput(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// Base64 of the largest accepted DER, with line breaks.
	b, err := io.ReadAll(io.LimitReader(f, 2*seal.MaxInputSize))
	if err != nil {
		return nil, err
	}
	if len(b) > 0 && b[0] == 0x30 {
		return b, nil
	}
	if p, _ := pem.Decode(b); p != nil {
		return p.Bytes, nil
	}
	text := strings.Join(strings.Fields(string(b)), "")
	if der, err := base64.StdEncoding.DecodeString(text); err == nil && len(der) > 0 {
		return der, nil
	}
	if der, err := base64.RawStdEncoding.DecodeString(text); err == nil && len(der) > 0 {
		return der, nil
	}
	// Let the parser say what is wrong with it.
	return b, nil
}

// sm3File hashes a file as it streams.
func sm3File(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sm3.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return h.Sum(nil), nil
}

// readCertificates reads every CERTIFICATE block of a PEM file, or one DER
// certificate.
func readCertificates(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	rest := b
	for {
		var p *pem.Block
		p, rest = pem.Decode(rest)
		if p == nil {
			break
		}
		if p.Type == "CERTIFICATE" {
			out = append(out, p.Bytes)
		}
	}
	if len(out) == 0 {
		if len(bytes.TrimSpace(b)) == 0 || b[0] != 0x30 {
			return nil, fmt.Errorf("%s: no certificate (want PEM CERTIFICATE blocks or one DER certificate)", path)
		}
		out = append(out, b)
	}
	return out, nil
}
