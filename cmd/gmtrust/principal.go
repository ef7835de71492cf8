package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/gmtrust/gmtrust/internal/api"
	"github.com/gmtrust/gmtrust/internal/app"
	"github.com/gmtrust/gmtrust/internal/store"
)

func newPrincipalCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "principal",
		Short: "People and services that use the API, their roles and client certificates (works on --data-dir directly)",
	}
	cmd.AddCommand(newPrincipalAddCmd(g), newPrincipalListCmd(g), newPrincipalShowCmd(g), newPrincipalUpdateCmd(g),
		newPrincipalFlagCmd(g, "disable", true), newPrincipalFlagCmd(g, "enable", false), newPrincipalBindCmd(g, true), newPrincipalBindCmd(g, false))
	return cmd
}

// withAdmin opens the instance in --data-dir and runs fn with its
// access administration.
func (g *globals) withAdmin(ctx context.Context, fn func(x *app.AccessAdmin) error) error {
	a, err := g.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	x, err := a.NewAccessAdmin()
	if err != nil {
		return err
	}
	return fn(x)
}

func newPrincipalAddCmd(g *globals) *cobra.Command {
	var p store.Principal
	var serials, subjects []string
	cmd := &cobra.Command{
		Use:   "add NAME --role ROLE [--role ROLE]... [--department D] [--kind person|service]",
		Short: "Create a principal (roles: admin, ra-officer, seal-admin, approval-system, auditor)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p.Name = args[0]
			return g.withAdmin(cmd.Context(), func(x *app.AccessAdmin) error {
				if err := x.CreatePrincipal(cmd.Context(), &p); err != nil {
					return err
				}
				for _, b := range bindings(serials, subjects) {
					b.Principal = p.Name
					if _, err := x.BindCertificate(cmd.Context(), b); err != nil {
						return fmt.Errorf("principal %s created, but binding %s %q failed: %w", p.Name, b.Kind, b.Value, err)
					}
				}
				return g.printPrincipal(cmd.Context(), x, p.Name)
			})
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&p.Roles, "role", nil, "role to grant (repeat for several)")
	f.StringVar(&p.Department, "department", "", "department the principal belongs to (scopes ra-officer and seal-admin)")
	f.StringVar(&p.Kind, "kind", store.KindPerson, "person or service (an approval system)")
	f.StringSliceVar(&serials, "bind-serial", nil, "accept the client certificate with this serial (hex) for this principal")
	f.StringSliceVar(&subjects, "bind-subject", nil, "accept client certificates with this exact subject (as in `gmtrust cert show`)")
	_ = cmd.MarkFlagRequired("role")
	return cmd
}

func bindings(serials, subjects []string) []store.CertBinding {
	var out []store.CertBinding
	for _, s := range serials {
		out = append(out, store.CertBinding{Kind: store.BindSerial, Value: s})
	}
	for _, s := range subjects {
		out = append(out, store.CertBinding{Kind: store.BindSubject, Value: s})
	}
	return out
}

func (g *globals) printPrincipal(ctx context.Context, x *app.AccessAdmin, name string) error {
	p, err := x.Principal(ctx, name)
	if err != nil {
		return err
	}
	bs, err := x.CertBindings(ctx, name)
	if err != nil {
		return err
	}
	if g.jsonOut {
		j := api.PrincipalJSON{Name: p.Name, Kind: p.Kind, Department: p.Department, Roles: p.Roles, Disabled: p.Disabled,
			CreatedAt: p.CreatedAt.UTC(), UpdatedAt: p.UpdatedAt.UTC()}
		for _, b := range bs {
			j.Bindings = append(j.Bindings, api.BindingJSON{Kind: b.Kind, Value: b.Value})
		}
		return g.printJSON(j)
	}
	state := "enabled"
	if p.Disabled {
		state = "disabled"
	}
	fmt.Fprintf(g.stdout, "principal %s (%s, %s)\n  department: %s\n  roles: %s\n", p.Name, p.Kind, state, orNone(p.Department), strings.Join(p.Roles, ", "))
	for _, b := range bs {
		fmt.Fprintf(g.stdout, "  client certificate %s: %s\n", b.Kind, b.Value)
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func newPrincipalListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List principals",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withAdmin(cmd.Context(), func(x *app.AccessAdmin) error {
				ps, err := x.Principals(cmd.Context())
				if err != nil {
					return err
				}
				if g.jsonOut {
					out := make([]api.PrincipalJSON, 0, len(ps))
					for _, p := range ps {
						out = append(out, api.PrincipalJSON{Name: p.Name, Kind: p.Kind, Department: p.Department, Roles: p.Roles,
							Disabled: p.Disabled, CreatedAt: p.CreatedAt.UTC(), UpdatedAt: p.UpdatedAt.UTC()})
					}
					return g.printJSON(out)
				}
				tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tKIND\tDEPARTMENT\tROLES\tSTATE")
				for _, p := range ps {
					state := "enabled"
					if p.Disabled {
						state = "disabled"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Name, p.Kind, orNone(p.Department), strings.Join(p.Roles, ","), state)
				}
				return tw.Flush()
			})
		},
	}
}

func newPrincipalShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME",
		Short: "Show a principal, its roles and client certificate bindings",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withAdmin(cmd.Context(), func(x *app.AccessAdmin) error {
				return g.printPrincipal(cmd.Context(), x, args[0])
			})
		},
	}
}

func newPrincipalUpdateCmd(g *globals) *cobra.Command {
	var roles []string
	var department string
	cmd := &cobra.Command{
		Use:   "update NAME [--role ROLE]... [--department D]",
		Short: "Replace a principal's roles or move it to another department",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var u store.PrincipalUpdate
			if cmd.Flags().Changed("role") {
				u.Roles = roles
				if u.Roles == nil {
					u.Roles = []string{}
				}
			}
			if cmd.Flags().Changed("department") {
				u.Department = &department
			}
			if u.Roles == nil && u.Department == nil {
				return fmt.Errorf("nothing to change: give --role or --department")
			}
			return g.withAdmin(cmd.Context(), func(x *app.AccessAdmin) error {
				if _, err := x.UpdatePrincipal(cmd.Context(), args[0], u); err != nil {
					return err
				}
				return g.printPrincipal(cmd.Context(), x, args[0])
			})
		},
	}
	cmd.Flags().StringSliceVar(&roles, "role", nil, "the principal's roles (replaces them all)")
	cmd.Flags().StringVar(&department, "department", "", "the principal's department")
	return cmd
}

func newPrincipalFlagCmd(g *globals, verb string, disabled bool) *cobra.Command {
	short := "Disable a principal: its tokens and certificates stop authenticating at once"
	if !disabled {
		short = "Enable a disabled principal"
	}
	return &cobra.Command{
		Use:   verb + " NAME",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withAdmin(cmd.Context(), func(x *app.AccessAdmin) error {
				if _, err := x.UpdatePrincipal(cmd.Context(), args[0], store.PrincipalUpdate{Disabled: &disabled}); err != nil {
					return err
				}
				return g.printPrincipal(cmd.Context(), x, args[0])
			})
		},
	}
}

func newPrincipalBindCmd(g *globals, bind bool) *cobra.Command {
	var serials, subjects []string
	use, short := "bind", "Accept client certificates with a serial or subject as this principal"
	if !bind {
		use, short = "unbind", "Stop accepting a client certificate serial or subject for this principal"
	}
	cmd := &cobra.Command{
		Use:   use + " NAME (--serial HEX | --subject DN)...",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			bs := bindings(serials, subjects)
			if len(bs) == 0 {
				return fmt.Errorf("give --serial or --subject")
			}
			return g.withAdmin(cmd.Context(), func(x *app.AccessAdmin) error {
				for _, b := range bs {
					var err error
					if bind {
						b.Principal = args[0]
						_, err = x.BindCertificate(cmd.Context(), b)
					} else {
						err = x.UnbindCertificate(cmd.Context(), args[0], b.Kind, b.Value)
					}
					if err != nil {
						return err
					}
				}
				return g.printPrincipal(cmd.Context(), x, args[0])
			})
		},
	}
	cmd.Flags().StringSliceVar(&serials, "serial", nil, "certificate serial number (hex)")
	cmd.Flags().StringSliceVar(&subjects, "subject", nil, "exact certificate subject, as `gmtrust cert show` prints it")
	return cmd
}
