package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gmtrust/gmtrust/ca"
	"github.com/gmtrust/gmtrust/internal/config"
	"github.com/gmtrust/gmtrust/internal/store"
	"github.com/gmtrust/gmtrust/ocsp"
)

// OCSPPrefix is where the responder is served; certificates carry
// PublicURL + OCSPPrefix as their AIA OCSP URL.
const OCSPPrefix = "/ocsp"

// OCSPOptions configure an instance's OCSP responder. config.yaml has no
// OCSP section yet; OCSPOptionsFromEnv reads GMTRUST_OCSP_* variables.
type OCSPOptions struct {
	Responder ocsp.Config
	Presign   ocsp.PresignConfig
	// NoPresign disables the pre-signing worker (responses are then
	// signed on demand, or by another process's worker).
	NoPresign bool
	// PollInterval is how often revocation events are polled for
	// changes made by processes that do not notify (store default 250ms).
	PollInterval time.Duration
	// RenewInterval is how often the OCSP signer is checked (10 min).
	RenewInterval time.Duration
}

// OCSPOptionsFromEnv reads the responder settings from the environment:
//
//	GMTRUST_OCSP_HASHES          pre-signed CertID hashes (sha1,sha256,sm3)
//	GMTRUST_OCSP_VALIDITY        nextUpdate - thisUpdate (24h)
//	GMTRUST_OCSP_CACHE_ENTRIES   in-memory cache bound (100000)
//	GMTRUST_OCSP_CACHE_MAX_AGE   cache entry age cap (60s)
//	GMTRUST_OCSP_VERIFY_MAX_AGE  longest a cache entry goes without a status read (10m)
//	GMTRUST_OCSP_HTTP_MAX_AGE    Cache-Control max-age cap for GET (1h)
//	GMTRUST_OCSP_PRESIGN         "off" disables the pre-signing worker
//	GMTRUST_OCSP_PRESIGN_RATE    signatures per second (2000; -1 unlimited)
//	GMTRUST_OCSP_PRESIGN_INTERVAL pause between pre-signing rounds (1m)
func OCSPOptionsFromEnv(getenv func(string) string) (OCSPOptions, error) {
	var o OCSPOptions
	var errs []error
	if v := getenv("GMTRUST_OCSP_HASHES"); v != "" {
		for name := range strings.SplitSeq(v, ",") {
			h, err := ocsp.HashByName(name)
			if err != nil {
				errs = append(errs, fmt.Errorf("GMTRUST_OCSP_HASHES: %w", err))
				continue
			}
			o.Responder.Hashes = append(o.Responder.Hashes, h)
		}
	}
	durations := map[string]*time.Duration{
		"GMTRUST_OCSP_VALIDITY":         &o.Responder.Validity,
		"GMTRUST_OCSP_CACHE_MAX_AGE":    &o.Responder.CacheMaxAge,
		"GMTRUST_OCSP_VERIFY_MAX_AGE":   &o.Responder.VerifyMaxAge,
		"GMTRUST_OCSP_HTTP_MAX_AGE":     &o.Responder.HTTPMaxAge,
		"GMTRUST_OCSP_PRESIGN_INTERVAL": &o.Presign.Interval,
	}
	for env, dst := range durations {
		if v := getenv(env); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				errs = append(errs, fmt.Errorf("%s: want a positive duration such as 24h, got %q", env, v))
				continue
			}
			*dst = d
		}
	}
	if v := getenv("GMTRUST_OCSP_CACHE_ENTRIES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			errs = append(errs, fmt.Errorf("GMTRUST_OCSP_CACHE_ENTRIES: want a positive number, got %q", v))
		}
		o.Responder.CacheEntries = n
	}
	if v := getenv("GMTRUST_OCSP_PRESIGN_RATE"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f == 0 {
			errs = append(errs, fmt.Errorf("GMTRUST_OCSP_PRESIGN_RATE: want signatures per second (-1: unlimited), got %q", v))
		}
		o.Presign.Rate = f
	}
	switch v := strings.ToLower(getenv("GMTRUST_OCSP_PRESIGN")); v {
	case "", "on", "true", "1":
	case "off", "false", "0":
		o.NoPresign = true
	default:
		errs = append(errs, fmt.Errorf("GMTRUST_OCSP_PRESIGN: want on or off, got %q", v))
	}
	return o, errors.Join(errs...)
}

// OCSP is a wired responder: the responder, its pre-signer (nil without
// keys), its HTTP handler and its store.
type OCSP struct {
	Responder *ocsp.Responder
	Presigner *ocsp.Presigner
	Handler   *ocsp.Handler
	Store     *store.OCSP

	opts OCSPOptions
	log  *slog.Logger
}

// ocspCAs returns the CAs that have a delegated OCSP signer: those the
// responder can answer for.
func ocspCAs(ctx context.Context, db *store.DB, cas []ca.CARecord) ([]ca.CARecord, error) {
	signers, err := db.Signers(ctx, ca.PurposeOCSP)
	if err != nil {
		return nil, err
	}
	var out []ca.CARecord
	for _, c := range cas {
		for _, s := range signers {
			if s.CAID == c.ID {
				out = append(out, c)
				break
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no CA has an OCSP signer (run gmtrust init)")
	}
	return out, nil
}

// NewOCSP wires the OCSP responder of an opened instance and registers it
// as the Authority's revocation listener, so a revocation re-signs its
// responses before Revoke returns. Start its background work with Run and
// serve Handler under OCSPPrefix (Mount).
func (a *App) NewOCSP(ctx context.Context, o OCSPOptions) (*OCSP, error) {
	oc, err := newOCSP(ctx, a.Config, a.Dir, a.Store, a.Authority.CAs(), a.Keys, a.Authority, a.Logger, a.Registry, a.Now, o)
	if err != nil {
		return nil, err
	}
	a.Authority.AddListener(oc.Responder)
	return oc, nil
}

func newOCSP(ctx context.Context, cfg *config.Config, dir string, db *store.DB, cas []ca.CARecord, keys ocsp.KeySource, renewer ocsp.Renewer,
	log *slog.Logger, reg prometheus.Registerer, now func() time.Time, o OCSPOptions) (*OCSP, error) {
	served, err := ocspCAs(ctx, db, cas)
	if err != nil {
		return nil, fmt.Errorf("ocsp: %w", err)
	}
	st, err := store.NewOCSP(ctx, db, store.OCSPOptions{DSN: cfg.DatabaseDSN(dir), PollInterval: o.PollInterval, Logger: log})
	if err != nil {
		return nil, err
	}
	d := ocsp.Deps{
		CAs: served, Store: st, Signers: db, Locker: db, Now: now, Logger: log, Metrics: reg,
	}
	if keys != nil {
		d.Keys = keys
		d.Renewer = renewer
	}
	resp, err := ocsp.New(ctx, o.Responder, d)
	if err != nil {
		st.Close()
		return nil, err
	}
	oc := &OCSP{Responder: resp, Handler: ocsp.NewHandler(resp, OCSPPrefix), Store: st, opts: o, log: log}
	if keys != nil && !o.NoPresign {
		oc.Presigner = ocsp.NewPresigner(resp, st, db, o.Presign)
	}
	return oc, nil
}

// Mount serves the responder at OCSPPrefix and below.
func (o *OCSP) Mount(r chi.Router) {
	r.Handle(OCSPPrefix, o.Handler)
	r.Handle(OCSPPrefix+"/*", o.Handler)
}

// Run does the responder's background work until ctx ends: the
// pre-signing worker (with keys), signer renewal, listening for
// invalidations from other processes, and renewing cached responses in
// use before their cache age runs out.
func (o *OCSP) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { o.Responder.RunRefresher(ctx) })
	wg.Go(func() {
		if err := o.Store.ListenInvalidations(ctx, o.Responder.Evict, o.Responder.FlushCache, o.Responder.InvalidationsApplied); err != nil {
			o.log.Error("ocsp: invalidation listener stopped", "err", err)
		}
	})
	if !o.Responder.ReadOnly() {
		wg.Go(func() { o.Responder.RunSignerRenewal(ctx, o.opts.RenewInterval) })
	}
	if o.Presigner != nil {
		wg.Go(func() { o.Presigner.Run(ctx) })
	}
	wg.Wait()
}

// Close releases the store statements.
func (o *OCSP) Close() error { return o.Store.Close() }

// ReadyCheck fails while the responder cannot sign (no usable signer) or
// the database does not answer.
func (o *OCSP) ReadyCheck(db *store.DB) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		if err := db.Ping(ctx); err != nil {
			return err
		}
		if o.Responder.ReadOnly() {
			return nil // it serves what others signed
		}
		return o.Responder.Ready(ctx)
	}
}

// OCSPInstance is a standalone responder (`gmtrust ocsp serve`): the
// database, the key manager when available, and the responder.
type OCSPInstance struct {
	Config   *config.Config
	Store    *store.DB
	OCSP     *OCSP
	Registry *prometheus.Registry
	Logger   *slog.Logger
	// ReadOnly is set when no keys were opened: the instance serves stored
	// responses only, and neither pre-signs nor renews.
	ReadOnly bool
	close    func() error
}

// OpenOCSP opens a data directory for a standalone responder. database,
// when set, overrides the configured database (PostgreSQL only: several
// standalone responders share it). With readOnly, or when the keys cannot
// be opened, the responder serves stored responses only.
func OpenOCSP(ctx context.Context, dir, database string, readOnly bool, opts Options, o OCSPOptions) (*OCSPInstance, error) {
	opts.defaults()
	if database != "" && !config.IsPostgres(database) {
		return nil, fmt.Errorf("--database %q: a standalone responder shares the CA's PostgreSQL database; give a postgres:// DSN (for SQLite, use the data directory's own database)", database)
	}
	if database != "" {
		base := opts.Getenv
		opts.Getenv = func(k string) string {
			if k == "GMTRUST_DATABASE" {
				return database
			}
			return base(k)
		}
	}
	getenv := opts.Getenv
	cfg, err := config.Load(dir, getenv)
	if err != nil {
		return nil, err
	}
	if !readOnly {
		// With keys it is a full instance minus the API: it pre-signs and
		// renews the signer like `gmtrust serve`.
		a, err := Open(ctx, dir, opts)
		if err == nil {
			var renewer ocsp.Renewer = a.Authority
			if !config.IsPostgres(a.Config.Database) {
				// SQLite's lock is per process: leave renewal to
				// `gmtrust serve`, or two processes could both renew.
				renewer = nil
			}
			oc, err := newOCSP(ctx, a.Config, a.Dir, a.Store, a.Authority.CAs(), a.Keys, renewer, a.Logger, a.Registry, a.Now, o)
			if err != nil {
				a.Close()
				return nil, err
			}
			return &OCSPInstance{Config: a.Config, Store: a.Store, OCSP: oc, Registry: a.Registry, Logger: a.Logger,
				close: func() error { return errors.Join(oc.Close(), a.Close()) }}, nil
		}
		opts.Logger.Warn("ocsp: cannot open the instance with its keys; serving stored responses only", "err", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	db, err := store.Open(ctx, cfg.DatabaseDSN(dir), store.Options{Now: opts.Now, Logger: opts.Logger})
	if err != nil {
		return nil, err
	}
	cas, err := db.CAs(ctx)
	if err != nil {
		db.Close()
		return nil, err
	}
	oc, err := newOCSP(ctx, cfg, dir, db, cas, nil, nil, opts.Logger, reg, opts.Now, o)
	if err != nil {
		db.Close()
		return nil, err
	}
	return &OCSPInstance{Config: cfg, Store: db, OCSP: oc, Registry: reg, Logger: opts.Logger, ReadOnly: true,
		close: func() error { return errors.Join(oc.Close(), db.Close()) }}, nil
}

// Close releases everything.
func (i *OCSPInstance) Close() error { return i.close() }

// Router returns the standalone responder's routes: the responder under
// OCSPPrefix, /healthz, /readyz and /metrics.
func (i *OCSPInstance) Router() http.Handler {
	r := chi.NewRouter()
	i.OCSP.Mount(r)
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	check := i.OCSP.ReadyCheck(i.Store)
	r.Get("/readyz", func(w http.ResponseWriter, req *http.Request) {
		ctx, cancel := context.WithTimeout(req.Context(), 5*time.Second)
		defer cancel()
		if err := check(ctx); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	r.Handle("/metrics", promhttp.HandlerFor(i.Registry, promhttp.HandlerOpts{}))
	return r
}
