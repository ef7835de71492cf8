package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/gmtrust/gmtrust/internal/api"
	"github.com/gmtrust/gmtrust/internal/app"
)

func newServeCmd(g *globals) *cobra.Command {
	var listen string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the HTTP API, CRLs and CA certificates",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serve(cmd.Context(), g, listen)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "", "listen address (default from config, env GMTRUST_LISTEN)")
	return cmd
}

func serve(ctx context.Context, g *globals, listen string) error {
	a, err := app.Open(ctx, g.dataDir, app.Options{Logger: g.logger("info")})
	if err != nil {
		return err
	}
	defer a.Close()
	log := a.Logger
	if listen == "" {
		listen = a.Config.Listen
	}
	srv := api.New(api.Deps{
		Authority: a.Authority,
		Auth:      &app.TokenAuth{Store: a.Store, Now: a.Now},
		Ready:     a.ReadyChecks(),
		Logger:    log,
		Metrics:   a.Registry,
		Now:       a.Now,
	})
	ocspOpts, err := app.OCSPOptionsFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	oc, err := a.NewOCSP(ctx, ocspOpts)
	if err != nil {
		return err
	}
	defer oc.Close()
	oc.Mount(srv.Router())
	sealOpts, err := app.SealOptionsFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	seals, err := a.NewSeals(ctx, sealOpts)
	if err != nil {
		return err
	}
	seals.Mount(srv)
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	hs := &http.Server{
		// OCSP requests go straight to the responder, past the API's
		// router and middleware: it is the hot path.
		Handler:           oc.Handler.Mux(srv),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	bg, cancelBG := context.WithCancel(context.Background())
	defer cancelBG()
	go a.Authority.RunCRLs(bg, a.Store, a.Config.CRL.Refresh.Duration)
	go oc.Run(bg)

	fmt.Fprintf(g.stdout, "gmtrust %s serving on http://%s (API under /api/v1, public URL %s)\n", version, ln.Addr(), a.Config.PublicURL)
	fmt.Fprintf(g.stdout, "  admin token: %s\n", filepath.Join(a.Dir, app.AdminTokenFile))
	for _, c := range a.Authority.CAs() {
		fmt.Fprintf(g.stdout, "  CA %-8s %s  SHA256 %s\n", c.ID, c.Name, api.Fingerprint(c.DER))
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: draining in-flight requests")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	cancelBG()
	log.Info("stopped")
	return nil
}
