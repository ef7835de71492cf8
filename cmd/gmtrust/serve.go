package main

import (
	"context"
	"crypto/tls"
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

// serveTLS are the HTTPS options of serve.
type serveTLS struct {
	enabled bool
	hosts   []string
}

func newServeCmd(g *globals) *cobra.Command {
	var listen string
	var st serveTLS
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the HTTP API, CRLs and CA certificates",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serve(cmd.Context(), g, listen, st)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "", "listen address (default from config, env GMTRUST_LISTEN)")
	cmd.Flags().BoolVar(&st.enabled, "tls", false, "serve HTTPS with a server certificate from this CA (server-tls, ECDSA P-256 key in the key manager) and accept client certificates (staff-sign) from it")
	cmd.Flags().StringSliceVar(&st.hosts, "tls-host", nil, "extra DNS name or IP for the server certificate (the listen host and the public URL host are always included)")
	return cmd
}

func serve(ctx context.Context, g *globals, listen string, st serveTLS) error {
	a, err := app.Open(ctx, g.dataDir, app.Options{Logger: g.logger("info")})
	if err != nil {
		return err
	}
	defer a.Close()
	log := a.Logger
	if listen == "" {
		listen = a.Config.Listen
	}
	svc, err := a.NewService(ctx, os.Getenv)
	if err != nil {
		return err
	}
	defer svc.Close()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	scheme := "http"
	var serverTLS *app.ServerTLS
	if st.enabled {
		serverTLS, err = a.NewServerTLS(ctx, app.TLSHosts(listen, a.Config.PublicURL, st.hosts))
		if err != nil {
			ln.Close()
			return err
		}
		ln = tls.NewListener(ln, serverTLS.Config())
		scheme = "https"
	}
	hs := &http.Server{
		// OCSP requests go straight to the responder, past the API's
		// router and middleware: it is the hot path.
		Handler:           svc.Handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	bg, cancelBG := context.WithCancel(context.Background())
	defer cancelBG()
	svc.Run(bg)
	if serverTLS != nil {
		go serverTLS.Run(bg, time.Hour)
	}

	fmt.Fprintf(g.stdout, "gmtrust %s serving on %s://%s (API under /api/v1, public URL %s)\n", version, scheme, ln.Addr(), a.Config.PublicURL)
	if serverTLS != nil {
		fmt.Fprintf(g.stdout, "  TLS server certificate SHA256 %s\n", api.Fingerprint(serverTLS.Certificate()))
	}
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
