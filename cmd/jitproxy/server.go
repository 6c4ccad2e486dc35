package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"golang.org/x/term"

	"github.com/jitproxy/jitproxy/amendment"
	"github.com/jitproxy/jitproxy/api"
	"github.com/jitproxy/jitproxy/audit"
	"github.com/jitproxy/jitproxy/auth"
	"github.com/jitproxy/jitproxy/certs"
	"github.com/jitproxy/jitproxy/config"
	"github.com/jitproxy/jitproxy/notify"
	pgproxy "github.com/jitproxy/jitproxy/proxy/postgres"
	sshproxy "github.com/jitproxy/jitproxy/proxy/ssh"
	"github.com/jitproxy/jitproxy/recording"
	"github.com/jitproxy/jitproxy/session"
	"github.com/jitproxy/jitproxy/store"
)

// Timeouts of the API listener.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	idleTimeout       = 2 * time.Minute
	// writeTimeout is long because the audit export streams.
	writeTimeout = 10 * time.Minute
)

// newLogger builds the process logger from the log section: JSON, or
// human-readable console output when format is console, or auto on a
// terminal. Logs go to w (stderr).
func newLogger(c config.Log, w *os.File) (zerolog.Logger, error) {
	level, err := zerolog.ParseLevel(c.Level)
	if err != nil || c.Level == "" {
		level = zerolog.InfoLevel
	}
	var out io.Writer = w
	if c.Format == "console" || (c.Format != "json" && term.IsTerminal(int(w.Fd()))) {
		out = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(out).Level(level).With().Timestamp().Logger(), nil
}

// serverOptions are what dev mode adds to a plain serve.
type serverOptions struct {
	// extra are more routes on the API listener (the dev IdP).
	extra map[string]http.Handler
	// clientSecret overrides the config's OIDC client secret (dev mode
	// generates one per run for its own IdP).
	clientSecret string
	// devTargets starts the demo sshd and PostgreSQL for the targets marked
	// dev_sshd and dev_postgres.
	devTargets bool
	// ready is called once the API listener accepts connections.
	ready func(addr string)
}

// runServer runs jitproxy until ctx ends, then shuts down gracefully:
// listeners closed, requests in flight finished (up to the shutdown
// timeout), background work stopped, the store closed.
func runServer(ctx context.Context, cfg *config.Config, log zerolog.Logger, opts serverOptions) (err error) {
	dataDir := cfg.DataDir()
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	st, err := store.OpenSQLite(ctx, store.SQLiteConfig{Path: filepath.Join(dataDir, dbFileName), Logger: log.With().Str("component", "store").Logger()})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := st.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("closing the store: %w", cerr)
		}
	}()

	authority, err := newAuthority(cfg)
	if err != nil {
		return err
	}
	if opts.devTargets {
		stop, err := startDevTargets(ctx, cfg, authority, log)
		if err != nil {
			return err
		}
		defer stop()
	}

	svc, err := amendment.New(amendment.Config{Store: st, Contract: cfg.Contract(), Logger: log.With().Str("component", "amendment").Logger()})
	if err != nil {
		return err
	}
	// Expire what expired while we were down, before any listener opens.
	if _, err := svc.Tick(ctx); err != nil {
		return fmt.Errorf("settling amendments at start: %w", err)
	}

	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	registry, err := session.New(session.Config{
		Amendments: st,
		Warnings:   durations(cfg.SSH.WarnBefore),
		Logger:     log.With().Str("component", "session").Logger(),
		Metrics:    session.NewMetrics(metrics),
	})
	if err != nil {
		return err
	}
	recorder, err := recording.New(recording.Config{Dir: cfg.Recordings.Dir, RecordInput: cfg.Recordings.RecordInput, Compression: recording.Compression(cfg.Recordings.Compression), Logger: log.With().Str("component", "recording").Logger()})
	if err != nil {
		return err
	}
	crashed, err := recorder.RecoverIncomplete()
	if err != nil {
		return fmt.Errorf("recordings: %w", err)
	}
	for _, m := range crashed {
		appendAudit(ctx, st, log, audit.TypeRecordingSealed, m.Person, m)
	}

	secret := opts.clientSecret
	if secret == "" && cfg.OIDC.ClientSecret.IsSet() {
		if secret, err = cfg.OIDC.ClientSecret.Value(); err != nil {
			return fmt.Errorf("oidc.client_secret: %w", err)
		}
	}
	publicURL := strings.TrimRight(cfg.Server.PublicURL, "/")
	verifier, err := auth.NewVerifier(auth.VerifierConfig{
		Issuer:       cfg.OIDC.Issuer,
		ClientID:     cfg.OIDC.ClientID,
		ClientSecret: secret,
		RedirectURL:  publicURL + "/auth/callback",
		Scopes:       cfg.OIDC.Scopes,
		EmailClaim:   cfg.OIDC.Claims.Email,
		NameClaim:    cfg.OIDC.Claims.Name,
		GroupsClaim:  cfg.OIDC.Claims.Groups,
		Logger:       log.With().Str("component", "oidc").Logger(),
	})
	if err != nil {
		return err
	}
	broker, err := auth.NewBroker(auth.BrokerConfig{
		Verifier:        verifier,
		Sessions:        sessionStore{st},
		SessionLifetime: cfg.OIDC.SessionTTL.Std(),
		OnLogin: func(ctx context.Context, id auth.Identity) {
			appendAudit(ctx, st, log, audit.TypeLogin, id.Email, map[string]any{"issuer": id.Issuer, "subject": id.Subject, "groups": id.Groups})
		},
		Logger: log.With().Str("component", "login").Logger(),
	})
	if err != nil {
		return err
	}
	defer broker.Close()

	tokens, err := certs.NewTokenIssuer(certs.TokenConfig{KeyFile: filepath.Join(dataDir, "db_token_key"), MaxTTL: max(cfg.Postgres.TokenTTL.Std(), time.Minute)})
	if err != nil {
		return err
	}
	extra := map[string]http.Handler{
		"/auth/":       broker,
		"GET /metrics": promhttp.HandlerFor(metrics, promhttp.HandlerOpts{}),
	}
	for p, h := range opts.extra {
		extra[p] = h
	}
	handler, err := api.New(api.Config{
		Amendments:    svc,
		Audit:         st,
		Ready:         st.Ready,
		Authenticator: authenticator{broker},
		Logger:        log.With().Str("component", "api").Logger(),
		MaxBodyBytes:  cfg.Server.MaxBodyBytes,
		Extra:         extra,
		SSH:           sshCredentials(cfg, authority),
		DB:            &api.DBCredentials{Tokens: tokens, Endpoint: cfg.Server.PostgresAddress(), TTL: cfg.Postgres.TokenTTL.Std()},
		AuditLog:      st,
	})
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.Server.APIListen)
	if err != nil {
		return fmt.Errorf("API listener: %w", err)
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          nil,
	}

	// Background work: every goroutine below ends when bg is cancelled,
	// and wg waits for them before the store closes.
	bg, stopBG := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { stopBG(); wg.Wait() }()
	wg.Go(func() {
		if err := svc.Run(bg); err != nil {
			log.Error().Err(err).Msg("amendment scheduler stopped")
		}
	})
	wg.Go(func() {
		if err := registry.Run(bg); err != nil {
			log.Error().Err(err).Msg("session registry stopped")
		}
	})
	var proxies []interface{ Shutdown(context.Context) error }
	if cfg.Server.SSHListen != "" {
		bastion, err := newBastion(cfg, authority, svc, registry, recorder, st, log)
		if err != nil {
			ln.Close()
			return err
		}
		sln, err := net.Listen("tcp", cfg.Server.SSHListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("SSH listener: %w", err)
		}
		wg.Go(func() {
			if err := bastion.Serve(sln); err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, sshproxy.ErrServerClosed) {
				log.Error().Err(err).Msg("SSH bastion stopped")
			}
		})
		proxies = append(proxies, bastion)
		log.Info().Str("ssh", sln.Addr().String()).Msg("SSH bastion listening")
	}
	if cfg.Server.PostgresListen != "" {
		endpoint, err := newPostgresEndpoint(cfg, tokens, svc, registry, recorder, st, log)
		if err != nil {
			ln.Close()
			return err
		}
		pln, err := net.Listen("tcp", cfg.Server.PostgresListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("PostgreSQL listener: %w", err)
		}
		wg.Go(func() {
			if err := endpoint.Serve(pln); err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, pgproxy.ErrServerClosed) {
				log.Error().Err(err).Msg("PostgreSQL endpoint stopped")
			}
		})
		proxies = append(proxies, endpoint)
		log.Info().Str("postgres", pln.Addr().String()).Msg("PostgreSQL endpoint listening")
	}
	if hooks := cfg.Notifications.Webhooks; len(hooks) > 0 {
		n, err := newNotifier(cfg, log)
		if err != nil {
			ln.Close()
			return err
		}
		wg.Go(func() {
			if err := n.Run(bg, svc.Subscribe, func(ctx context.Context) ([]*amendment.Amendment, error) {
				return st.List(ctx, amendment.Filter{States: []amendment.State{amendment.Active}})
			}); err != nil {
				log.Error().Err(err).Msg("notifier stopped")
			}
		})
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info().Str("api", ln.Addr().String()).Str("public_url", publicURL).Str("data_dir", dataDir).Str("version", version).Msg("jitproxy serving")
	if opts.ready != nil {
		opts.ready(ln.Addr().String())
	}

	select {
	case err := <-serveErr:
		return fmt.Errorf("API listener: %w", err)
	case <-ctx.Done():
	}
	log.Info().Msg("shutting down: closing listeners, finishing requests in flight")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout.Std())
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn().Err(err).Msg("requests still in flight at the shutdown timeout were cut")
		srv.Close()
	}
	for _, p := range proxies {
		if err := p.Shutdown(sctx); err != nil {
			log.Warn().Err(err).Msg("proxy shutdown")
		}
	}
	stopBG()
	wg.Wait()
	log.Info().Msg("stopped")
	return nil
}

func newNotifier(cfg *config.Config, log zerolog.Logger) (*notify.Notifier, error) {
	var hooks []notify.Webhook
	for i, w := range cfg.Notifications.Webhooks {
		h := notify.Webhook{URL: w.URL, Format: w.Format, Events: w.Events, Timeout: w.Timeout.Std(), ExpiringBefore: w.ExpiringBefore.Std()}
		if w.Secret.IsSet() {
			s, err := w.Secret.Value()
			if err != nil {
				return nil, fmt.Errorf("notifications.webhooks[%d].secret: %w", i, err)
			}
			h.Secret = s
		}
		hooks = append(hooks, h)
	}
	return notify.New(notify.Config{Webhooks: hooks, Logger: log.With().Str("component", "notify").Logger(), PublicURL: cfg.Server.PublicURL})
}

// appendAudit writes an audit row for an event that changes no amendment.
// A failure is logged: the action it records already happened.
func appendAudit(ctx context.Context, st store.Store, log zerolog.Logger, typ, actor string, data any) {
	e, err := audit.NewEvent(time.Now(), typ, actor, data)
	if err == nil {
		_, err = st.AppendAudit(ctx, e)
	}
	if err != nil {
		log.Error().Err(err).Str("type", typ).Str("actor", actor).Msg("writing an audit row failed")
	}
}

// authenticator adapts the login broker to the API: a session token names
// an identity.
type authenticator struct{ b *auth.Broker }

func (a authenticator) Authenticate(r *http.Request) (amendment.Identity, error) {
	id, err := a.b.Authenticate(r)
	if err != nil {
		return amendment.Identity{}, err
	}
	return toIdentity(id), nil
}

func toIdentity(id auth.Identity) amendment.Identity {
	return amendment.Identity{Subject: id.Subject, Issuer: id.Issuer, Email: id.Email, Name: id.Name, Groups: id.Groups}
}

// sessionStore keeps the broker's login sessions in the store.
type sessionStore struct{ st *store.SQLite }

func (s sessionStore) CreateSession(ctx context.Context, ss auth.Session) error {
	return s.st.CreateSession(ctx, store.LoginSession{TokenHash: ss.TokenHash, Identity: toIdentity(ss.Identity), IssuedAt: ss.IssuedAt, ExpiresAt: ss.ExpiresAt})
}

func (s sessionStore) GetSession(ctx context.Context, hash string) (auth.Session, error) {
	ls, err := s.st.GetSession(ctx, hash)
	if errors.Is(err, store.ErrSessionNotFound) {
		return auth.Session{}, fmt.Errorf("%w", auth.ErrSessionNotFound)
	}
	if err != nil {
		return auth.Session{}, err
	}
	id := ls.Identity
	return auth.Session{
		TokenHash: ls.TokenHash,
		Identity:  auth.Identity{Subject: id.Subject, Issuer: id.Issuer, Email: id.Email, Name: id.Name, Groups: id.Groups},
		IssuedAt:  ls.IssuedAt,
		ExpiresAt: ls.ExpiresAt,
	}, nil
}

func (s sessionStore) DeleteSession(ctx context.Context, hash string) error {
	err := s.st.DeleteSession(ctx, hash)
	if errors.Is(err, store.ErrSessionNotFound) {
		return fmt.Errorf("%w", auth.ErrSessionNotFound)
	}
	return err
}
