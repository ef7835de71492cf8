package app

import (
	"context"
	"errors"
	"net/http"

	"github.com/gmtrust/gmtrust/internal/api"
)

// Service is the whole HTTP service of `gmtrust serve`: the API with
// every route mounted (certificates, OCSP, seals, principals, tokens,
// audit), access control in front of all of them, and the background
// jobs. Tests that need "the real router" build it here too, so that
// they see exactly the routes the server has.
type Service struct {
	API    *api.Server
	OCSP   *OCSP
	Seals  *Seals
	Access *AccessService
	// Handler serves OCSP ahead of the API router (its hot path) and
	// everything else through it.
	Handler http.Handler
	app     *App
}

// NewService assembles the service of an opened instance; getenv gives
// the GMTRUST_* settings, which override config.yaml's ocsp: and seal:
// sections.
func (a *App) NewService(ctx context.Context, getenv func(string) string) (*Service, error) {
	// GMTRUST_OCSP_* and GMTRUST_SEAL_* fall back to config.yaml.
	getenv = a.Config.Settings(getenv)
	acc, err := a.NewAccessService(getenv)
	if err != nil {
		return nil, err
	}
	ocspOpts, err := OCSPOptionsFromEnv(getenv)
	if err != nil {
		return nil, err
	}
	oc, err := a.NewOCSP(ctx, ocspOpts)
	if err != nil {
		return nil, err
	}
	ready := a.ReadyChecks()
	ready["ocsp"] = oc.Responder.Ready
	srv := api.New(acc.Deps(api.Deps{
		Authority: a.Authority,
		Ready:     ready,
		Logger:    a.Logger,
		Metrics:   a.Registry,
		Now:       a.Now,
	}, a.Store))
	srv.MountAccess(acc.Admin)
	oc.Mount(srv.Router())
	sealOpts, err := SealOptionsFromEnv(getenv)
	if err != nil {
		oc.Close()
		return nil, err
	}
	seals, err := a.NewSeals(ctx, sealOpts)
	if err != nil {
		oc.Close()
		return nil, err
	}
	seals.Mount(srv)
	return &Service{API: srv, OCSP: oc, Seals: seals, Access: acc, Handler: oc.Handler.Mux(srv), app: a}, nil
}

// Run starts the background jobs (CRL refresh, OCSP pre-signing, audit
// checkpoints) until ctx ends.
func (s *Service) Run(ctx context.Context) {
	go s.app.Authority.RunCRLs(ctx, s.app.Store, s.app.Config.CRL.Refresh.Duration)
	go s.OCSP.Run(ctx)
	go s.Access.Run(ctx, s.app.Store)
}

// Close releases what the service holds; close it before the App.
func (s *Service) Close() error {
	return errors.Join(s.Seals.Close(), s.OCSP.Close())
}
