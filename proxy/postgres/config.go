package postgres

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"

	"github.com/jitproxy/jitproxy/amendment"
	"github.com/jitproxy/jitproxy/certs"
	"github.com/jitproxy/jitproxy/recording"
	"github.com/jitproxy/jitproxy/session"
)

// Defaults for zero Config fields.
const (
	defaultStartupTimeout  = 10 * time.Second
	defaultDialTimeout     = 10 * time.Second
	defaultMaxMessageBytes = 1 << 20
)

// Tokens verifies DB tokens (a *certs.TokenIssuer).
type Tokens interface {
	// Verify checks token in constant time and that it was issued to
	// person for target and has not expired. Its errors wrap
	// certs.ErrTokenInvalid, ErrTokenExpired, ErrTokenWrongPerson or
	// ErrTokenWrongTarget.
	Verify(token, person, target string) (certs.Token, error)
}

// Access says whether a person may use a PostgreSQL target now.
type Access interface {
	// ActivePostgres returns the person's active amendment for role on
	// target and database; an empty role or database matches any, and of
	// several the one that lasts longest wins. With none, the error's text
	// is the refusal the person reads, such as "no active amendment for
	// app_ro@app-db/app: run jitproxy request app-db --role app_ro
	// --database app --for 1h --reason ...". The proxy asks on every new
	// connection: a revocation must not wait for a token to expire.
	ActivePostgres(ctx context.Context, person, target, role, database string) (*amendment.Amendment, error)
}

// Registry is the subset of *session.Registry that the proxy uses.
type Registry interface {
	// Register binds a session to its amendment before a byte is relayed;
	// the registry calls s.Cut when the amendment ends, and done ends the
	// registration. Its errors are written for people.
	Register(ctx context.Context, s session.Session) (context.Context, func(reason string), error)
}

// Recorder is the subset of *recording.Recorder that the proxy uses.
type Recorder interface {
	StartPostgres(m recording.PGMeta) (*recording.QueryLog, error)
}

// Target is one upstream PostgreSQL server.
type Target struct {
	// Name is what people write as the database (dbname=app-db or
	// dbname=app-db/app). It equals its key in Config.Targets and has no
	// '/'.
	Name string
	// Address is the server's host:port.
	Address string
	// Databases are the databases people may reach on it; empty means any
	// the amendment allows.
	Databases []string
	// Roles are the PostgreSQL roles amendments name, by role name.
	Roles map[string]Role
	// TLS says how the proxy connects to the server.
	TLS UpstreamTLS
}

// Role is how the proxy logs in to a target for one role. People never see
// these credentials.
type Role struct {
	// Name is the role as amendments name it; it equals its key in
	// Target.Roles.
	Name string
	// User is the PostgreSQL user the proxy logs in as; "" means Name.
	User string
	// Password returns the user's password; it is called for each
	// connection (so a rotated secret is picked up), and its result is
	// never logged. nil means no password (client-certificate or trust
	// authentication).
	Password func() (string, error)
}

// UpstreamTLS is how the proxy secures its connection to a target.
type UpstreamTLS struct {
	// Mode is "disable", "require" (encrypt, verify nothing; verify-ca
	// when CAFile is set, as libpq does), "verify-ca" (the server's
	// certificate chains to CAFile) or "verify-full" (and names
	// ServerName). "" means verify-full.
	Mode string
	// CAFile holds the PEM CA certificates to verify the server with; ""
	// means the system roots.
	CAFile string
	// ServerName is the name the server's certificate must carry under
	// verify-full; "" means the host of Target.Address.
	ServerName string
	// CertFile and KeyFile are a PEM client certificate and key, for
	// servers that authenticate the proxy by certificate; both or neither.
	CertFile, KeyFile string
}

// Config configures a Server.
type Config struct {
	// TLS is the certificate the endpoint presents to psql. Required
	// unless AllowPlaintextLoopback.
	TLS *tls.Config
	// AllowPlaintextLoopback accepts connections without TLS from loopback
	// addresses (a developer's own machine). Otherwise a connection
	// without TLS is refused before its token is asked for.
	AllowPlaintextLoopback bool
	// Tokens verifies the DB token psql sends as its password. Required.
	Tokens Tokens
	// Targets are the PostgreSQL targets, by name. Nothing else is
	// reachable.
	Targets map[string]Target
	// Access authorizes each connection against the live amendment.
	// Required.
	Access Access
	// Registry binds each session to its amendment and cuts it when the
	// amendment ends. Required.
	Registry Registry
	// Recorder records every session's statements; nil means nothing is
	// recorded (and New refuses RequireRecording).
	Recorder Recorder
	// RequireRecording refuses a session whose recording cannot start.
	// False lets it run unrecorded, with a log line.
	RequireRecording bool
	// RecordParameters records the values of extended-protocol
	// parameters; false records only how many there were (values may hold
	// personal data or secrets).
	RecordParameters bool
	// Audit writes an audit row: session.start, session.end, session.cut,
	// session.refused, recording.sealed. nil means none.
	Audit func(ctx context.Context, typ, actor string, fields map[string]any)
	// StartupTimeout bounds everything from accept to the first
	// ReadyForQuery: TLS handshake, startup, token, access check and the
	// upstream login. 0 means 10s.
	StartupTimeout time.Duration
	// DialTimeout bounds each TCP dial to a target (logins and cancel
	// requests); 0 means 10s.
	DialTimeout time.Duration
	// MaxMessageBytes bounds every message the proxy reads whole before a
	// session starts (startup packets are also held to PostgreSQL's own
	// 10000 bytes, and the password message): a length over it is refused
	// from its header, before anything is allocated. 0 means 1 MiB. In the
	// relay, the messages the proxy decodes to record them (Query, Parse,
	// Bind, Execute, Close up; CommandComplete, ErrorResponse down) may be
	// up to max(MaxMessageBytes, 64 MiB), and everything else (DataRow,
	// CopyData, ...) streams through at any size PostgreSQL accepts.
	MaxMessageBytes int
	// Logger gets one line per connection and session event; the zero
	// Logger logs nothing. Tokens and passwords never reach it.
	Logger zerolog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Dial connects to targets; nil means a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// target is a configured Target with what New derived from it.
type target struct {
	Target
	host, port string
	tls        *tls.Config // nil: no TLS
	pg         *pgconn.Config
}

// errConfig prefixes every Config error.
var errConfig = errors.New("pgproxy: invalid config")

// check validates cfg, fills in defaults and builds the targets.
func (cfg *Config) check() (map[string]*target, error) {
	switch {
	case cfg.TLS == nil && !cfg.AllowPlaintextLoopback:
		return nil, fmt.Errorf("%w: TLS is nil: people's tokens would cross the network in the clear (set AllowPlaintextLoopback for loopback-only development)", errConfig)
	case cfg.TLS != nil && len(cfg.TLS.Certificates) == 0 && cfg.TLS.GetCertificate == nil && cfg.TLS.GetConfigForClient == nil:
		return nil, fmt.Errorf("%w: TLS has no certificate", errConfig)
	case cfg.Tokens == nil:
		return nil, fmt.Errorf("%w: Tokens is nil", errConfig)
	case cfg.Access == nil:
		return nil, fmt.Errorf("%w: Access is nil", errConfig)
	case cfg.Registry == nil:
		return nil, fmt.Errorf("%w: Registry is nil", errConfig)
	case cfg.Recorder == nil && cfg.RequireRecording:
		return nil, fmt.Errorf("%w: RequireRecording without a Recorder", errConfig)
	case cfg.StartupTimeout < 0 || cfg.DialTimeout < 0 || cfg.MaxMessageBytes < 0:
		return nil, fmt.Errorf("%w: negative StartupTimeout, DialTimeout or MaxMessageBytes", errConfig)
	}
	if cfg.StartupTimeout == 0 {
		cfg.StartupTimeout = defaultStartupTimeout
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = defaultDialTimeout
	}
	if cfg.MaxMessageBytes == 0 {
		cfg.MaxMessageBytes = defaultMaxMessageBytes
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Dial == nil {
		cfg.Dial = (&net.Dialer{}).DialContext
	}
	if cfg.Audit == nil {
		cfg.Audit = func(context.Context, string, string, map[string]any) {}
	}
	targets := make(map[string]*target, len(cfg.Targets))
	for name, t := range cfg.Targets {
		tt, err := cfg.buildTarget(name, t)
		if err != nil {
			return nil, fmt.Errorf("%w: target %s: %w", errConfig, name, err)
		}
		targets[name] = tt
	}
	return targets, nil
}

func (cfg *Config) buildTarget(name string, t Target) (*target, error) {
	switch {
	case t.Name != name:
		return nil, fmt.Errorf("Name is %q", t.Name)
	case name == "" || strings.ContainsAny(name, "/\x00") || len(name) > 255:
		return nil, errors.New("a target name has 1 to 255 bytes and no '/'")
	case len(t.Roles) == 0:
		return nil, errors.New("no Roles: amendments could name none")
	}
	for rn, r := range t.Roles {
		if r.Name != rn {
			return nil, fmt.Errorf("role %q has Name %q", rn, r.Name)
		}
	}
	host, port, err := net.SplitHostPort(t.Address)
	if err != nil {
		return nil, fmt.Errorf("Address %q is not host:port: %w", t.Address, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return nil, fmt.Errorf("Address %q has no numeric port", t.Address)
	}
	tc, err := upstreamTLSConfig(t.TLS, host)
	if err != nil {
		return nil, err
	}
	pg, err := baseConnConfig(host, port)
	if err != nil {
		return nil, err
	}
	pg.TLSConfig = tc
	return &target{Target: t, host: host, port: port, tls: tc, pg: pg}, nil
}

// upstreamTLSConfig builds the TLS configuration of a target's mode, with
// libpq's meaning of each mode.
func upstreamTLSConfig(u UpstreamTLS, host string) (*tls.Config, error) {
	mode := u.Mode
	if mode == "" {
		mode = "verify-full"
	}
	if mode == "disable" {
		if u.CAFile != "" || u.CertFile != "" || u.KeyFile != "" || u.ServerName != "" {
			return nil, errors.New(`TLS mode "disable" with CAFile, CertFile, KeyFile or ServerName set: say what you mean`)
		}
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	var roots *x509.CertPool
	if u.CAFile != "" {
		pem, err := os.ReadFile(u.CAFile)
		if err != nil {
			return nil, fmt.Errorf("TLS CAFile: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("TLS CAFile %s holds no PEM certificate", u.CAFile)
		}
	}
	if (u.CertFile == "") != (u.KeyFile == "") {
		return nil, errors.New("TLS CertFile and KeyFile go together")
	}
	if u.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(u.CertFile, u.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("TLS client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	if mode == "require" && u.CAFile != "" {
		mode = "verify-ca"
	}
	switch mode {
	case "require":
		c.InsecureSkipVerify = true
	case "verify-ca":
		// Verify the chain but not the name, as libpq does.
		c.InsecureSkipVerify = true
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the server sent no certificate")
			}
			opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool()}
			for _, ic := range cs.PeerCertificates[1:] {
				opts.Intermediates.AddCert(ic)
			}
			_, err := cs.PeerCertificates[0].Verify(opts)
			return err
		}
	case "verify-full":
		c.RootCAs = roots
		c.ServerName = u.ServerName
		if c.ServerName == "" {
			c.ServerName = host
		}
	default:
		return nil, fmt.Errorf("TLS Mode %q: use disable, require, verify-ca or verify-full", u.Mode)
	}
	return c, nil
}

// baseConnConfig returns the pgconn configuration of a target that each
// connection copies and completes. pgconn insists on configurations made by
// ParseConfig, which also reads the process's PG* environment: every
// setting that matters is spelled out, so that none of it leaks in.
func baseConnConfig(host, port string) (*pgconn.Config, error) {
	cs := "host=" + quoteConnValue(host) + " port=" + port +
		" user=jitproxy dbname=postgres password=unused sslmode=disable" +
		" sslrootcert='' sslcert='' sslkey='' target_session_attrs=any"
	pg, err := pgconn.ParseConfig(cs)
	if err != nil {
		return nil, fmt.Errorf("connection settings: %w", err)
	}
	pg.Fallbacks = nil
	pg.ValidateConnect = nil
	pg.AfterConnect = nil
	pg.ConnectTimeout = 0
	pg.RuntimeParams = nil
	pg.OnNotice = nil
	pg.OnNotification = nil
	return pg, nil
}

// quoteConnValue quotes v for a keyword/value connection string.
func quoteConnValue(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}
