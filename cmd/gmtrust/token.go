package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gmtrust/gmtrust/internal/api"
	"github.com/gmtrust/gmtrust/internal/app"
	"github.com/gmtrust/gmtrust/internal/store"
)

func newTokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "API tokens of principals (works on --data-dir directly)"}
	cmd.AddCommand(newTokenCreateCmd(g), newTokenListCmd(g), newTokenRevokeCmd(g))
	return cmd
}

func newTokenCreateCmd(g *globals) *cobra.Command {
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "create NAME [--ttl 720h]",
		Short: "Create an API token for a principal; the token is printed once, alone on the last line",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withAdmin(cmd.Context(), func(x *app.AccessAdmin) error {
				secret, t, err := x.CreateToken(cmd.Context(), args[0], ttl)
				if err != nil {
					return err
				}
				if g.jsonOut {
					j := tokenView(t)
					j.Token = secret
					return g.printJSON(j)
				}
				fmt.Fprintf(g.stdout, "token %s for %s, expires %s (store it now: it is not shown again)\n",
					t.ID, t.Principal, t.ExpiresAt.UTC().Format(time.RFC3339))
				fmt.Fprintln(g.stdout, secret)
				return nil
			})
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", app.DefaultTokenTTL, "lifetime of the token")
	return cmd
}

func tokenView(t *store.Token) api.TokenJSON {
	j := api.TokenJSON{ID: t.ID, Principal: t.Principal, CreatedAt: t.CreatedAt.UTC()}
	for _, f := range []struct {
		src time.Time
		dst **time.Time
	}{{t.ExpiresAt, &j.ExpiresAt}, {t.LastUsedAt, &j.LastUsedAt}, {t.RevokedAt, &j.RevokedAt}} {
		if !f.src.IsZero() {
			u := f.src.UTC()
			*f.dst = &u
		}
	}
	return j
}

func newTokenListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list [NAME]",
		Short: "List tokens (of one principal), newest first; secrets are never shown",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			return g.withAdmin(cmd.Context(), func(x *app.AccessAdmin) error {
				ts, err := x.Tokens(cmd.Context(), name)
				if err != nil {
					return err
				}
				if g.jsonOut {
					out := make([]api.TokenJSON, 0, len(ts))
					for i := range ts {
						out = append(out, tokenView(&ts[i]))
					}
					return g.printJSON(out)
				}
				tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tPRINCIPAL\tEXPIRES\tLAST USED\tSTATE")
				now := time.Now()
				for _, t := range ts {
					state := "valid"
					switch {
					case !t.RevokedAt.IsZero():
						state = "revoked"
					case !t.Valid(now):
						state = "expired"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.ID, t.Principal, fmtTime(t.ExpiresAt), fmtTime(t.LastUsedAt), state)
				}
				return tw.Flush()
			})
		},
	}
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func newTokenRevokeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a token: it stops authenticating at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withAdmin(cmd.Context(), func(x *app.AccessAdmin) error {
				if err := x.RevokeToken(cmd.Context(), args[0]); err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "token %s revoked\n", args[0])
				return nil
			})
		},
	}
}
