package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"
	gossh "golang.org/x/crypto/ssh"

	"github.com/jitproxy/jitproxy/amendment"
	"github.com/jitproxy/jitproxy/api"
	"github.com/jitproxy/jitproxy/audit"
	"github.com/jitproxy/jitproxy/certs"
	"github.com/jitproxy/jitproxy/config"
	sshproxy "github.com/jitproxy/jitproxy/proxy/ssh"
	"github.com/jitproxy/jitproxy/recording"
	"github.com/jitproxy/jitproxy/session"
	"github.com/jitproxy/jitproxy/store"
)

// newAuthority loads (or, on first start, makes) the SSH CAs: key files
// from the config, or generated in DATA_DIR/ca.
func newAuthority(cfg *config.Config) (*certs.Authority, error) {
	userCA, hostCA := cfg.SSH.UserCAKeyFile, cfg.SSH.HostCAKeyFile
	if userCA == "" {
		userCA = filepath.Join(cfg.DataDir(), "ca", "user_ca")
	}
	if hostCA == "" {
		hostCA = filepath.Join(cfg.DataDir(), "ca", "host_ca")
	}
	return certs.New(certs.Config{
		UserCAKeyFile:  userCA,
		HostCAKeyFile:  hostCA,
		TrustedUserCAs: cfg.SSH.TrustedUserCAKeys,
		MaxUserCertTTL: cfg.SSH.UserCertTTL.Std(),
	})
}

func sshCredentials(cfg *config.Config, a *certs.Authority) *api.SSHCredentials {
	if cfg.Server.SSHListen == "" {
		return nil
	}
	return &api.SSHCredentials{Authority: a, Bastion: cfg.Server.SSHAddress()}
}

func durations(ds []config.Duration) []time.Duration {
	if ds == nil {
		return nil
	}
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Std()
	}
	return out
}

// sshAccess answers the bastion's live question: which active amendment
// lets this person log in as this login on this target?
type sshAccess struct {
	svc *amendment.Service
	log zerolog.Logger
}

func (a sshAccess) ActiveSSH(ctx context.Context, person, target, login string) (*amendment.Amendment, error) {
	hint := fmt.Sprintf("no active amendment for %s@%s: run jitproxy request %s --login %s --for 1h --reason ...", login, target, target, login)
	am, err := a.svc.ActiveFor(ctx, person, target, func(r amendment.Resource) bool {
		return r.Kind == amendment.KindSSH && r.Login == login
	}, hint)
	if err != nil && amendment.CodeOf(err) == "" {
		// A store failure: fail closed, and tell the person something
		// they can act on rather than the internal error (it is logged).
		a.log.Error().Err(err).Str("person", person).Str("target", target).Msg("checking the live amendment failed")
		return nil, errors.New("jitproxy cannot check your access right now; try again in a moment")
	}
	return am, err
}

// newBastion builds the SSH bastion over the configured targets.
func newBastion(cfg *config.Config, authority *certs.Authority, svc *amendment.Service, registry *session.Registry, recorder *recording.Recorder, st store.Store, log zerolog.Logger) (*sshproxy.Server, error) {
	targets := map[string]sshproxy.Target{}
	for i, t := range cfg.Targets.SSH {
		keys, err := parseKeys(t.HostKeys)
		if err != nil {
			return nil, fmt.Errorf("targets.ssh[%d].host_keys: %w", i, err)
		}
		cas, err := parseKeys(t.HostCAs)
		if err != nil {
			return nil, fmt.Errorf("targets.ssh[%d].host_cas: %w", i, err)
		}
		targets[t.Name] = sshproxy.Target{Name: t.Name, Address: t.Address, HostKeys: keys, HostCAs: cas}
	}
	host, _, err := net.SplitHostPort(cfg.Server.SSHAddress())
	if err != nil {
		return nil, fmt.Errorf("server.ssh_public_address: %w", err)
	}
	return sshproxy.New(sshproxy.Config{
		Authority:            authority,
		Targets:              targets,
		Access:               sshAccess{svc, log},
		Registry:             registry,
		Recorder:             recorder,
		RequireRecording:     cfg.Recordings.Require,
		Audit:                auditFunc(st, log),
		BastionHostname:      host,
		HandshakeTimeout:     cfg.SSH.HandshakeTimeout.Std(),
		MaxSessionsPerPerson: maxSessions(cfg.SSH.MaxSessionsPerPerson),
		Logger:               log.With().Str("component", "ssh").Logger(),
	})
}

// maxSessions translates the config's per-person session limit, where 0
// means no limit, to the bastion's, where 0 means its default.
func maxSessions(n int) int {
	if n == 0 {
		return math.MaxInt
	}
	return n
}

// auditFunc adapts the store to the proxies' audit hook: the session and
// amendment fields go into their own columns too, so an auditor can select
// every row of one session.
func auditFunc(st store.Store, log zerolog.Logger) func(ctx context.Context, typ, actor string, fields map[string]any) {
	return func(ctx context.Context, typ, actor string, fields map[string]any) {
		e, err := audit.NewEvent(time.Now(), typ, actor, fields)
		if err == nil {
			e.Session, _ = fields["session"].(string)
			e.Amendment, _ = fields["amendment"].(string)
			_, err = st.AppendAudit(ctx, e)
		}
		if err != nil {
			log.Error().Err(err).Str("type", typ).Str("actor", actor).Msg("writing an audit row failed")
		}
	}
}

func parseKeys(lines []string) ([]gossh.PublicKey, error) {
	var out []gossh.PublicKey
	for _, l := range lines {
		k, _, _, _, err := gossh.ParseAuthorizedKey([]byte(l))
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

// startDevTargets starts the demo sshd and the demo PostgreSQL for the
// config's dev_sshd and dev_postgres targets and fills in their addresses,
// pinned host key and login. A missing server package leaves its target
// unreachable, and the log says why. stop ends what was started.
func startDevTargets(ctx context.Context, cfg *config.Config, authority *certs.Authority, log zerolog.Logger) (stop func(), err error) {
	var stops []func()
	stop = func() {
		for _, f := range stops {
			f()
		}
	}
	for i := range cfg.Targets.SSH {
		t := &cfg.Targets.SSH[i]
		if !t.DevSSHD {
			continue
		}
		d, err := startDevSSHD(ctx, filepath.Join(cfg.DataDir(), "demo-sshd"), authority.TrustedUserCAKeys(), log)
		if err != nil {
			stop()
			return nil, err
		}
		if d == nil {
			continue
		}
		stops = append(stops, d.Stop)
		t.Address = d.Addr
		t.HostKeys = []string{string(gossh.MarshalAuthorizedKey(d.HostKey))}
		t.Logins = []string{d.Login}
		log.Info().Str("target", t.Name).Str("address", d.Addr).Str("login", d.Login).Msg("demo SSH target started")
	}
	for i := range cfg.Targets.Postgres {
		t := &cfg.Targets.Postgres[i]
		if !t.DevPostgres {
			continue
		}
		d, err := startDevPostgres(ctx, devPostgresDir(cfg.DataDir()), t, log)
		if err != nil {
			stop()
			return nil, err
		}
		if d == nil {
			continue
		}
		stops = append(stops, d.Stop)
		t.Address = d.Addr
		log.Info().Str("target", t.Name).Str("address", d.Addr).Msg("demo PostgreSQL target started")
	}
	if cfg.Postgres.TLSCertFile == "" && cfg.Server.PostgresListen != "" {
		if cfg.Postgres.TLSCertFile, cfg.Postgres.TLSKeyFile, err = devTLSCert(cfg.DataDir()); err != nil {
			stop()
			return nil, err
		}
	}
	return stop, nil
}
