package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/rs/zerolog"

	"github.com/jitproxy/jitproxy/amendment"
	"github.com/jitproxy/jitproxy/certs"
	"github.com/jitproxy/jitproxy/config"
	pgproxy "github.com/jitproxy/jitproxy/proxy/postgres"
	"github.com/jitproxy/jitproxy/recording"
	"github.com/jitproxy/jitproxy/session"
	"github.com/jitproxy/jitproxy/store"
)

// pgAccess answers the endpoint's live question: which active amendment
// lets this person use this role (and database) on this target? It chooses
// the way the API's db-token endpoint does.
type pgAccess struct {
	svc *amendment.Service
	log zerolog.Logger
}

func (a pgAccess) ActivePostgres(ctx context.Context, person, target, role, database string) (*amendment.Amendment, error) {
	want := amendment.Resource{Kind: amendment.KindPostgres, Target: target, Role: cmp.Or(role, "ROLE"), Database: database}
	hint := fmt.Sprintf("no active amendment for %s: run jitproxy request %s --role %s", want, target, want.Role)
	if database != "" {
		hint += " --database " + database
	}
	hint += " --for 1h --reason ..."
	am, err := a.svc.ActiveFor(ctx, person, target, func(r amendment.Resource) bool {
		return r.Kind == amendment.KindPostgres && (role == "" || r.Role == role) &&
			(database == "" || r.Database == "" || r.Database == database)
	}, hint)
	if err != nil && amendment.CodeOf(err) == "" {
		a.log.Error().Err(err).Str("person", person).Str("target", target).Msg("checking the live amendment failed")
		return nil, errors.New("jitproxy cannot check your access right now; try again in a moment")
	}
	return am, err
}

// newPostgresEndpoint builds the PostgreSQL endpoint over the configured
// targets. tokens must be the issuer the API hands tokens out with.
func newPostgresEndpoint(cfg *config.Config, tokens *certs.TokenIssuer, svc *amendment.Service, registry *session.Registry, recorder *recording.Recorder, st store.Store, log zerolog.Logger) (*pgproxy.Server, error) {
	var tlsCfg *tls.Config
	if cfg.Postgres.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.Postgres.TLSCertFile, cfg.Postgres.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("postgres.tls_cert_file: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	} else if !cfg.Postgres.AllowPlaintextLoopback {
		return nil, fmt.Errorf("postgres.tls_cert_file and tls_key_file: the PostgreSQL endpoint needs a certificate (tokens travel as passwords)")
	}
	targets := map[string]pgproxy.Target{}
	for _, t := range cfg.Targets.Postgres {
		pt := pgproxy.Target{Name: t.Name, Address: t.Address, Databases: t.Databases, Roles: map[string]pgproxy.Role{},
			TLS: pgproxy.UpstreamTLS{Mode: t.TLS.Mode, CAFile: t.TLS.CAFile, ServerName: t.TLS.ServerName, CertFile: t.TLS.CertFile, KeyFile: t.TLS.KeyFile}}
		for _, r := range t.Roles {
			secret := r.Password
			var pw func() (string, error)
			if secret.IsSet() {
				pw = secret.Value // read on every connection, never kept or logged
			}
			pt.Roles[r.Name] = pgproxy.Role{Name: r.Name, User: r.User, Password: pw}
		}
		targets[t.Name] = pt
	}
	return pgproxy.New(pgproxy.Config{
		TLS:                    tlsCfg,
		AllowPlaintextLoopback: cfg.Postgres.AllowPlaintextLoopback,
		Tokens:                 tokens,
		Targets:                targets,
		Access:                 pgAccess{svc, log},
		Registry:               registry,
		Recorder:               recorder,
		RequireRecording:       cfg.Recordings.Require,
		RecordParameters:       cfg.Postgres.RecordParameters,
		Audit:                  auditFunc(st, log),
		StartupTimeout:         cfg.Postgres.HandshakeTimeout.Std(),
		Logger:                 log.With().Str("component", "postgres").Logger(),
	})
}
