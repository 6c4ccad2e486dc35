package ssh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/rs/zerolog"
	gossh "golang.org/x/crypto/ssh"

	"github.com/jitproxy/jitproxy/amendment"
	"github.com/jitproxy/jitproxy/certs"
	"github.com/jitproxy/jitproxy/recording"
	"github.com/jitproxy/jitproxy/session"
)

// Defaults for zero Config fields.
const (
	defaultHandshakeTimeout     = 10 * time.Second
	defaultDialTimeout          = 10 * time.Second
	defaultMaxSessionsPerPerson = 10
)

// Authority is the subset of *certs.Authority that the bastion uses.
type Authority interface {
	// CheckUserCert accepts only a user certificate from a trusted
	// jitproxy user CA, valid now; its KeyId names the person. Its errors
	// are written for people.
	CheckUserCert(conn gossh.ConnMetadata, key gossh.PublicKey) (*gossh.Certificate, error)
	// HostSigner returns the host-certificate signer to present as
	// hostname.
	HostSigner(hostname string) (gossh.Signer, error)
	// UpstreamSigner returns a fresh per-session user certificate signer
	// for login on a target.
	UpstreamSigner(login, keyID string, validBefore time.Time) (gossh.Signer, error)
}

// Access says whether a person may log in to a target now.
type Access interface {
	// ActiveSSH returns the newest active SSH amendment for exactly
	// (person, target, login), or an error whose text is the refusal the
	// person reads, such as "no active amendment for ubuntu@web-1: run
	// jitproxy request web-1 --login ubuntu --for 1h --reason ...".
	ActiveSSH(ctx context.Context, person, target, login string) (*amendment.Amendment, error)
}

// Registry is the subset of *session.Registry that the bastion uses.
type Registry interface {
	// Register binds a session to its amendment before a byte is relayed.
	// The registry calls s.Cut when the amendment ends and s.Warn before
	// it does; done ends the registration. Its errors are written for
	// people.
	Register(ctx context.Context, s session.Session) (context.Context, func(reason string), error)
}

// Recorder is the subset of *recording.Recorder that the bastion uses.
type Recorder interface {
	StartSSH(m recording.SSHMeta) (*recording.Cast, error)
}

// Target is one upstream SSH host.
type Target struct {
	// Name is what people write (ssh ubuntu@web-1) and what the host
	// certificate the bastion presents names. It equals its key in
	// Config.Targets.
	Name string
	// Address is the target sshd's host:port.
	Address string
	// HostKeys are the target's pinned host keys and HostCAs the CAs whose
	// host certificates for Name it accepts. At least one of the two:
	// the bastion never skips host-key verification.
	HostKeys []gossh.PublicKey
	HostCAs  []gossh.PublicKey
}

// Config configures a Server.
type Config struct {
	// Authority checks people's certificates and mints the bastion's host
	// and upstream certificates (a *certs.Authority). Required.
	Authority Authority
	// Targets are the SSH targets, by name. Nothing else is reachable.
	Targets map[string]Target
	// Access authorizes each login, at connection time and again on every
	// new channel. Required.
	Access Access
	// Registry binds each session to its amendment and cuts it when the
	// amendment ends. Required.
	Registry Registry
	// Recorder records every session channel; nil means nothing is
	// recorded (and New refuses RequireRecording).
	Recorder Recorder
	// RequireRecording refuses a session channel whose recording cannot
	// start. False lets it run unrecorded, with a log line.
	RequireRecording bool
	// Audit writes an audit row: session.start, session.end, session.cut,
	// session.refused, recording.sealed. nil means none.
	Audit func(ctx context.Context, typ, actor string, fields map[string]any)
	// BastionHostname is the name people give ssh -J, which the bastion's
	// own host certificate names. Required.
	BastionHostname string
	// HandshakeTimeout bounds each SSH handshake and the preamble line;
	// 0 means 10s.
	HandshakeTimeout time.Duration
	// DialTimeout bounds the TCP dial to a target; 0 means 10s.
	DialTimeout time.Duration
	// MaxSessionsPerPerson caps one person's live sessions across all
	// targets; 0 means 10.
	MaxSessionsPerPerson int
	// Logger gets one line per connection and session event; the zero
	// Logger logs nothing.
	Logger zerolog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Dial connects to targets; nil means a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// target is a configured Target with what New derived from it.
type target struct {
	Target
	port        string // Address's port, accepted besides 22 in direct-tcpip
	hostKeyFunc gossh.HostKeyCallback
}

// errConfig prefixes every Config error.
var errConfig = errors.New("sshproxy: invalid config")

// check validates cfg, fills in defaults and builds the targets.
func (cfg *Config) check() (map[string]*target, error) {
	switch {
	case cfg.Authority == nil:
		return nil, fmt.Errorf("%w: Authority is nil", errConfig)
	case cfg.Access == nil:
		return nil, fmt.Errorf("%w: Access is nil", errConfig)
	case cfg.Registry == nil:
		return nil, fmt.Errorf("%w: Registry is nil", errConfig)
	case cfg.Recorder == nil && cfg.RequireRecording:
		return nil, fmt.Errorf("%w: RequireRecording without a Recorder", errConfig)
	case cfg.BastionHostname == "":
		return nil, fmt.Errorf("%w: BastionHostname is empty", errConfig)
	case cfg.HandshakeTimeout < 0 || cfg.DialTimeout < 0 || cfg.MaxSessionsPerPerson < 0:
		return nil, fmt.Errorf("%w: negative HandshakeTimeout, DialTimeout or MaxSessionsPerPerson", errConfig)
	}
	if cfg.HandshakeTimeout == 0 {
		cfg.HandshakeTimeout = defaultHandshakeTimeout
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = defaultDialTimeout
	}
	if cfg.MaxSessionsPerPerson == 0 {
		cfg.MaxSessionsPerPerson = defaultMaxSessionsPerPerson
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
		if t.Name != name {
			return nil, fmt.Errorf("%w: target %q has Name %q", errConfig, name, t.Name)
		}
		if err := CheckTargetName(name); err != nil {
			return nil, fmt.Errorf("%w: %w", errConfig, err)
		}
		_, port, err := net.SplitHostPort(t.Address)
		if err != nil {
			return nil, fmt.Errorf("%w: target %s: Address %q is not host:port: %w", errConfig, name, t.Address, err)
		}
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return nil, fmt.Errorf("%w: target %s: Address %q has no numeric port", errConfig, name, t.Address)
		}
		hk, err := certs.HostKeyCallback(name, t.HostKeys, t.HostCAs)
		if err != nil {
			return nil, fmt.Errorf("%w: target %s: %w", errConfig, name, err)
		}
		targets[name] = &target{Target: t, port: port, hostKeyFunc: hk}
	}
	return targets, nil
}
