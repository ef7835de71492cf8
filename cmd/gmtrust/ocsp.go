package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/gmtrust/gmtrust/internal/app"
	"github.com/gmtrust/gmtrust/internal/config"
)

func newOCSPCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ocsp",
		Short: "OCSP responder",
	}
	cmd.AddCommand(newOCSPServeCmd(g))
	return cmd
}

func newOCSPServeCmd(g *globals) *cobra.Command {
	var listen, database string
	var readOnly bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve only the OCSP responder, against the instance's database",
		Long: `Serve only the OCSP responder (POST /ocsp, GET /ocsp/{base64}, /healthz,
/readyz, /metrics) from the data directory's configuration.

With --database postgres://... it answers from that PostgreSQL database: run
several of these behind a load balancer to scale out. They read the responses
the pre-signers keep in the database and evict revoked certificates from their
caches on PostgreSQL NOTIFY.

When the instance's keys can be opened (the keystore passphrase or the HSM is
available) it also signs on demand (nonces, unknown serials), pre-signs and
renews the OCSP signing certificate; otherwise, or with --read-only, it serves
stored responses only.

Settings beyond the flags come from the ocsp: section of config.yaml and the
GMTRUST_OCSP_* variables that override it (see README).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serveOCSP(cmd.Context(), g, listen, database, readOnly)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "", "listen address (default from config, env GMTRUST_LISTEN)")
	cmd.Flags().StringVar(&database, "database", "", "PostgreSQL DSN shared with the CA (default: the configured database)")
	cmd.Flags().BoolVar(&readOnly, "read-only", false, "do not open keys: serve stored responses only")
	return cmd
}

func serveOCSP(ctx context.Context, g *globals, listen, database string, readOnly bool) error {
	cfg, err := config.Load(g.dataDir, os.Getenv)
	if err != nil {
		return err
	}
	opts, err := app.OCSPOptionsFromEnv(cfg.Settings(os.Getenv))
	if err != nil {
		return err
	}
	inst, err := app.OpenOCSP(ctx, g.dataDir, database, readOnly, app.Options{Logger: g.logger("info")}, opts)
	if err != nil {
		return err
	}
	defer inst.Close()
	if listen == "" {
		listen = inst.Config.Listen
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	hs := &http.Server{
		Handler:           inst.Router(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	bg, cancelBG := context.WithCancel(context.Background())
	defer cancelBG()
	go inst.OCSP.Run(bg)

	mode := "signing"
	if inst.ReadOnly {
		mode = "read-only"
	}
	fmt.Fprintf(g.stdout, "gmtrust %s OCSP responder (%s) on http://%s%s for CAs %v\n", version, mode, ln.Addr(), app.OCSPPrefix, inst.OCSP.Responder.CAIDs())
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	inst.Logger.Info("shutting down: draining in-flight requests")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
