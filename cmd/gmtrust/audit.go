package main

import (
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gmtrust/gmtrust/internal/api"
	"github.com/gmtrust/gmtrust/internal/app"
	"github.com/gmtrust/gmtrust/internal/audit"
	"github.com/gmtrust/gmtrust/internal/config"
	"github.com/gmtrust/gmtrust/internal/store"
)

func newAuditCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "The tamper-evident audit log: verify, checkpoint, list (works on --data-dir directly)"}
	cmd.AddCommand(newAuditVerifyCmd(g), newAuditCheckpointCmd(g), newAuditListCmd(g))
	return cmd
}

func newAuditVerifyCmd(g *globals) *cobra.Command {
	var trust []string
	cmd := &cobra.Command{
		Use:   "verify [--trust ROOT.pem]...",
		Short: "Walk the whole hash chain and check every checkpoint; exit 0 only when the log is intact",
		Long: `Walks every entry of the audit log in order (a page at a time: memory does not
grow with the log), recomputes each SM3 hash, follows the prev_hash links,
compares the head and every signed checkpoint, and names the first entry that
was altered, deleted or reordered, or the entries cut off the end.

It needs only the database, not the keys: an auditor can run it with a copy of
config.yaml and read access to the database. Checkpoint signatures are checked
against the instance's CA certificates from the database; --trust adds (and,
kept outside the database, pins) root certificates.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			var roots [][]byte
			for _, f := range trust {
				ders, err := readPEMCerts(f)
				if err != nil {
					return err
				}
				roots = append(roots, ders...)
			}
			cfg, err := config.Load(g.dataDir, os.Getenv)
			if err != nil {
				return err
			}
			db, err := store.Open(ctx, cfg.DatabaseDSN(g.dataDir), store.Options{Logger: g.logger("warn")})
			if err != nil {
				return err
			}
			defer db.Close()
			v, err := app.AuditVerifier(ctx, db, roots)
			if err != nil {
				return err
			}
			start := time.Now()
			rep, err := audit.Verify(ctx, db, v)
			if err != nil {
				return err
			}
			if g.jsonOut {
				problems := make([]map[string]any, 0, len(rep.Problems))
				for _, p := range rep.Problems {
					problems = append(problems, map[string]any{"kind": p.Kind, "seq": p.Seq, "detail": p.Detail})
				}
				if err := g.printJSON(map[string]any{
					"intact": rep.OK(), "entries": rep.Entries, "last_seq": rep.LastSeq, "head_seq": rep.Head.Seq,
					"head_hash": hex.EncodeToString(rep.Head.Hash), "checkpoints": rep.Checkpoints,
					"last_checkpoint": rep.LastCheckpoint, "problems": problems, "more_problems": rep.MoreProblems,
				}); err != nil {
					return err
				}
			} else {
				printAuditReport(g, rep, time.Since(start))
			}
			if !rep.OK() {
				return exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&trust, "trust", nil, "PEM file of root certificates to trust for checkpoint signatures, in addition to the instance's CAs")
	return cmd
}

func printAuditReport(g *globals, rep *audit.Report, took time.Duration) {
	if rep.OK() {
		fmt.Fprintf(g.stdout, "audit log intact: %d entries, head %d %s, %d checkpoints verified (last covers entry %d), checked in %s\n",
			rep.Entries, rep.Head.Seq, shortHex(rep.Head.Hash), rep.Checkpoints, rep.LastCheckpoint, took.Round(time.Millisecond))
		if rep.Entries > 0 && rep.LastCheckpoint < rep.LastSeq {
			fmt.Fprintf(g.stdout, "note: entries after %d are not yet covered by a signed checkpoint\n", rep.LastCheckpoint)
		}
		return
	}
	first := rep.First()
	fmt.Fprintf(g.stdout, "audit log NOT intact: first problem at entry %d: %s: %s\n", first.Seq, first.Kind, first.Detail)
	for _, p := range rep.Problems[1:] {
		fmt.Fprintf(g.stdout, "  also entry %d: %s: %s\n", p.Seq, p.Kind, p.Detail)
	}
	if rep.MoreProblems {
		fmt.Fprintf(g.stdout, "  (more problems not listed)\n")
	}
	fmt.Fprintf(g.stdout, "%d entries read, head %d, %d checkpoints verified\n", rep.Entries, rep.Head.Seq, rep.Checkpoints)
}

func shortHex(b []byte) string {
	if len(b) == 0 {
		return "-"
	}
	return hex.EncodeToString(b[:min(8, len(b))])
}

func readPEMCerts(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type == "CERTIFICATE" {
			out = append(out, blk.Bytes)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return out, nil
}

func newAuditCheckpointCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "checkpoint",
		Short: "Sign the current head of the audit log with the audit key now (made on first use)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withAdmin(cmd.Context(), func(x *app.AccessAdmin) error {
				cp, err := x.Checkpoint(cmd.Context())
				if err != nil {
					return err
				}
				if cp == nil {
					fmt.Fprintln(g.stdout, "nothing new to sign: the head is already covered by a checkpoint (or the log is empty)")
					return nil
				}
				if g.jsonOut {
					return g.printJSON(api.CheckpointJSON{Seq: cp.Seq, Hash: hex.EncodeToString(cp.Hash), Time: cp.Time.UTC(), Algorithm: cp.Algorithm.String()})
				}
				fmt.Fprintf(g.stdout, "checkpoint signed: entry %d, hash %s\n", cp.Seq, hex.EncodeToString(cp.Hash))
				return nil
			})
		},
	}
}

func newAuditListCmd(g *globals) *cobra.Command {
	var f store.AuditFilter
	var since, until string
	var all bool
	cmd := &cobra.Command{
		Use:   "list [--principal P] [--action A] [--object O] [--outcome success|failure|denied] [--since T] [--until T]",
		Short: "List audit entries, newest first (--action certificate. lists a family)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, t := range []struct {
				v   string
				dst *time.Time
			}{{since, &f.Since}, {until, &f.Until}} {
				if t.v == "" {
					continue
				}
				tt, err := time.Parse(time.RFC3339, t.v)
				if err != nil {
					return fmt.Errorf("times are RFC 3339 (2025-03-01T08:00:00Z): %w", err)
				}
				*t.dst = tt
			}
			return g.withAdmin(cmd.Context(), func(x *app.AccessAdmin) error {
				var items []api.AuditEntryJSON
				for {
					page, next, err := x.ListAudit(cmd.Context(), f)
					if err != nil {
						return err
					}
					for i := range page {
						items = append(items, api.AuditEntryToJSON(&page[i]))
					}
					if next == 0 || !all {
						break
					}
					f.Before = next
				}
				if g.jsonOut {
					if items == nil {
						items = []api.AuditEntryJSON{}
					}
					return g.printJSON(items)
				}
				tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "SEQ\tTIME\tPRINCIPAL\tACTION\tOBJECT\tOUTCOME\tDETAILS")
				for _, e := range items {
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.Time.Format(time.RFC3339), e.Principal, e.Action, e.Object, e.Outcome,
						strings.ReplaceAll(string(e.Details), "\t", " "))
				}
				return tw.Flush()
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.Principal, "principal", "", "only this principal (cli:USER for the command line, system for background work)")
	fl.StringVar(&f.Action, "action", "", "only this action, or a family ending in '.'")
	fl.StringVar(&f.Object, "object", "", "only this object (e.g. certificate/issuing/SERIAL)")
	fl.StringVar(&f.Outcome, "outcome", "", "success, failure or denied")
	fl.StringVar(&since, "since", "", "from this time (RFC 3339)")
	fl.StringVar(&until, "until", "", "before this time (RFC 3339)")
	fl.IntVar(&f.Limit, "limit", 100, "page size")
	fl.BoolVar(&all, "all", false, "follow every page")
	return cmd
}
