// Command gmtrust is the gmtrust trust service: one binary to initialise
// an instance, serve it and administer it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/gmtrust/gmtrust/internal/app"
	"github.com/gmtrust/gmtrust/internal/audit"
)

// version is set with -ldflags at build time.
var version = "dev"

// globals are the flags every instance command shares.
type globals struct {
	dataDir  string
	jsonOut  bool
	logLevel string
	stdout   io.Writer
	stderr   io.Writer
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := newRoot(os.Stdout, os.Stderr).ExecuteContext(ctx)
	if err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "gmtrust:", err)
		os.Exit(1)
	}
}

// exitError carries an exit code for outcomes that are not failures of
// the command itself (e.g. a verification that says "invalid").
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "gmtrust",
		Short:         "gmtrust: SM2 certificate authority, OCSP responder and electronic seal service",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	// Whatever a command changes is audited as done from the command line
	// by the operating-system user running it.
	root.PersistentPreRun = func(cmd *cobra.Command, _ []string) {
		cmd.SetContext(audit.WithActor(cmd.Context(), audit.Actor{Principal: "cli:" + currentUser(), Source: "cli"}))
	}
	def := os.Getenv("GMTRUST_DATA_DIR")
	if def == "" {
		def = "./data"
	}
	root.PersistentFlags().StringVar(&g.dataDir, "data-dir", def, "instance data directory (env GMTRUST_DATA_DIR)")
	root.PersistentFlags().BoolVar(&g.jsonOut, "json", false, "print JSON instead of text")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "", "log level: debug, info, warn, error (default from config)")
	root.AddCommand(newInitCmd(g), newServeCmd(g), newCertCmd(g), newCRLCmd(g), newHSMCmd(g))
	root.AddCommand(newOCSPCmd(g))
	root.AddCommand(newPrincipalCmd(g), newTokenCmd(g), newAuditCmd(g))
	root.AddCommand(newSealCmd(g))
	return root
}

func (g *globals) logger(level string) *slog.Logger {
	if g.logLevel != "" {
		level = g.logLevel
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: l}))
}

// open opens the instance in --data-dir with a quiet logger for CLI use.
func (g *globals) open(ctx context.Context) (*app.App, error) {
	return app.Open(ctx, g.dataDir, app.Options{Logger: g.logger("warn")})
}

func (g *globals) printJSON(v any) error {
	enc := json.NewEncoder(g.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
