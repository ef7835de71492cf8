package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gmtrust/gmtrust/ca"
	"github.com/gmtrust/gmtrust/internal/api"
	"github.com/gmtrust/gmtrust/internal/app"
)

func newCertCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "cert", Short: "Issue, revoke, list and show certificates (works on --data-dir directly)"}
	cmd.AddCommand(newCertIssueCmd(g), newCertRevokeCmd(g), newCertUnholdCmd(g), newCertListCmd(g), newCertShowCmd(g))
	return cmd
}

func newCertIssueCmd(g *globals) *cobra.Command {
	var csrFile, profile, department, caID, out string
	var days int
	cmd := &cobra.Command{
		Use:   "issue --csr FILE --profile NAME",
		Short: "Issue a certificate from a PKCS#10 CSR",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			csr, err := os.ReadFile(csrFile)
			if err != nil {
				return err
			}
			a, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer a.Close()
			res, err := a.Authority.Issue(cmd.Context(), ca.IssueRequest{
				CSR: csr, Profile: profile, Department: department, RequestedBy: "cli:" + currentUser(), CAID: caID,
				Validity: time.Duration(days) * 24 * time.Hour,
			})
			if err != nil {
				return err
			}
			pemOut := api.ToJSON(res.Certificate, true).Certificate
			if out != "" {
				if err := os.WriteFile(out, []byte(pemOut), 0o644); err != nil {
					return err
				}
			}
			if g.jsonOut {
				chain := make([]string, 0, len(res.Chain))
				for _, c := range res.Chain {
					chain = append(chain, api.ToJSON(&ca.Certificate{DER: c}, true).Certificate)
				}
				return g.printJSON(map[string]any{"serial": res.Certificate.Serial, "certificate": pemOut, "chain": chain, "not_after": res.Certificate.NotAfter.UTC()})
			}
			fmt.Fprintf(g.stdout, "issued serial %s (%s, until %s)\n", res.Certificate.Serial, res.Certificate.Subject, res.Certificate.NotAfter.UTC().Format(time.RFC3339))
			if out == "" {
				fmt.Fprint(g.stdout, pemOut)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&csrFile, "csr", "", "PKCS#10 CSR file (PEM or DER)")
	f.StringVar(&profile, "profile", "", "certificate profile (see policies/profiles)")
	f.StringVar(&department, "department", "", "department the certificate belongs to")
	f.StringVar(&caID, "ca", "", "issuing CA id (default: the instance's issuing CA)")
	f.StringVar(&out, "out", "", "write the certificate PEM to this file")
	f.IntVar(&days, "days", 0, "validity in days (default: the profile's)")
	_ = cmd.MarkFlagRequired("csr")
	_ = cmd.MarkFlagRequired("profile")
	return cmd
}

func newCertRevokeCmd(g *globals) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "revoke SERIAL --reason R",
		Short: "Revoke a certificate (RFC 5280 reason names; certificateHold can be lifted with unhold)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			code, err := ca.ParseReason(reason)
			if err != nil {
				return err
			}
			return g.changeStatus(cmd.Context(), "revoked", func(ctx context.Context, a *app.App) (*ca.Certificate, error) {
				return a.Authority.Revoke(ctx, ca.RevokeRequest{Serial: args[0], Reason: code, By: "cli:" + currentUser()})
			})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "unspecified", "revocation reason (keyCompromise, superseded, cessationOfOperation, affiliationChanged, certificateHold, ...)")
	return cmd
}

func newCertUnholdCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "unhold SERIAL",
		Short: "Lift a certificateHold",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.changeStatus(cmd.Context(), "unheld", func(ctx context.Context, a *app.App) (*ca.Certificate, error) {
				return a.Authority.Unhold(ctx, args[0], "cli:"+currentUser())
			})
		},
	}
}

// changeStatus opens the instance, applies a revocation-status change and
// publishes a fresh CRL right away: the server regenerates CRLs on its
// own, but a change made from the CLI should not wait for its timer.
//
// The OCSP responder is wired first, as in the server, so that the
// change re-signs the certificate's stored responses before it returns:
// a responder process serving from the database never hands out the old
// status after the command has answered (with PostgreSQL the re-signing
// also NOTIFYs running servers to drop their cached copy; on SQLite they
// notice within their poll interval). Without a working responder
// nothing is changed.
func (g *globals) changeStatus(ctx context.Context, verb string, change func(context.Context, *app.App) (*ca.Certificate, error)) error {
	a, err := g.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	opts, err := app.OCSPOptionsFromEnv(a.Config.Settings(os.Getenv))
	if err != nil {
		return err
	}
	opts.NoPresign = true // this process only re-signs what it changes
	oc, err := a.NewOCSP(ctx, opts)
	if err != nil {
		return fmt.Errorf("nothing %s: the OCSP responder, which re-signs the certificate's responses: %w", verb, err)
	}
	defer oc.Close()
	c, err := change(ctx, a)
	if err != nil {
		return err
	}
	if _, err := a.Authority.GenerateCRL(ctx, c.CAID); err != nil {
		return fmt.Errorf("%s, but CRL generation failed: %w", verb, err)
	}
	return g.printCert(c, false)
}

func newCertShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show SERIAL",
		Short: "Show one certificate",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer a.Close()
			c, err := a.Authority.Find(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return g.printCert(c, true)
		},
	}
}

func newCertListCmd(g *globals) *cobra.Command {
	var f ca.Filter
	var status string
	var all bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List certificates, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f.Status = ca.Status(status)
			a, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer a.Close()
			var items []api.CertificateJSON
			for {
				page, next, err := a.Authority.List(cmd.Context(), f)
				if err != nil {
					return err
				}
				for i := range page {
					items = append(items, api.ToJSON(&page[i], false))
				}
				if next == "" || !all {
					break
				}
				f.Cursor = next
			}
			if g.jsonOut {
				if items == nil {
					items = []api.CertificateJSON{}
				}
				return g.printJSON(items)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SERIAL\tSTATUS\tPROFILE\tDEPARTMENT\tNOT AFTER\tSUBJECT")
			for _, c := range items {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.Serial, c.Status, c.Profile, c.Department, c.NotAfter.Format("2006-01-02"), c.Subject)
			}
			return tw.Flush()
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&status, "status", "", "good, revoked or hold")
	fl.StringVar(&f.Department, "department", "", "only this department")
	fl.StringVar(&f.Profile, "profile", "", "only this profile")
	fl.IntVar(&f.Limit, "limit", 100, "page size")
	fl.BoolVar(&all, "all", false, "follow every page")
	return cmd
}

func (g *globals) printCert(c *ca.Certificate, withPEM bool) error {
	j := api.ToJSON(c, withPEM)
	if g.jsonOut {
		return g.printJSON(j)
	}
	fmt.Fprintf(g.stdout, "serial:      %s\n", j.Serial)
	fmt.Fprintf(g.stdout, "ca:          %s\n", j.CA)
	fmt.Fprintf(g.stdout, "status:      %s\n", j.Status)
	if j.RevokedAt != nil {
		fmt.Fprintf(g.stdout, "reason:      %s\nrevoked at:  %s\n", j.Reason, j.RevokedAt.Format(time.RFC3339))
	}
	fmt.Fprintf(g.stdout, "subject:     %s\n", j.Subject)
	if len(j.SANs) > 0 {
		fmt.Fprintf(g.stdout, "SANs:        %s\n", strings.Join(j.SANs, ", "))
	}
	fmt.Fprintf(g.stdout, "profile:     %s\ndepartment:  %s\nkey:         %s\n", j.Profile, j.Department, j.KeyAlgorithm)
	fmt.Fprintf(g.stdout, "validity:    %s .. %s\n", j.NotBefore.Format(time.RFC3339), j.NotAfter.Format(time.RFC3339))
	if withPEM {
		fmt.Fprint(g.stdout, j.Certificate)
	}
	return nil
}

func currentUser() string {
	if u := os.Getenv("SUDO_USER"); u != "" {
		return u
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "unknown"
}
