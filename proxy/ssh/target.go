package ssh

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/rs/zerolog"
	gossh "golang.org/x/crypto/ssh"

	"github.com/jitproxy/jitproxy/amendment"
	"github.com/jitproxy/jitproxy/session"
)

// serveTarget serves one connection to a target's in-process server: the
// SSH server that presents the target's host certificate, authenticates
// the person by certificate, authorizes the login against the live
// amendment (registering the session and dialing the target before it says
// yes), and then relays every channel upstream. c is a TCP connection
// (single hop) or a direct-tcpip channel (-J).
//
// It returns once the session is established, with the rest of it (nil if
// it ended before): the caller runs that on a fresh goroutine and lets
// this one end. This goroutine's stack grew through two handshakes and the
// login; a fresh one stays small for as long as the session idles, where
// this one's would shrink only by halves at garbage collections.
func (s *Server) serveTarget(c net.Conn, t *target, in inbound, log zerolog.Logger) (rest func()) {
	signer, err := s.cfg.Authority.HostSigner(t.Name)
	if err != nil {
		log.Error().Err(err).Str("target", t.Name).Msg("no host certificate for the target")
		return nil
	}
	ss := &sshSession{
		srv:      s,
		id:       newID(),
		t:        t,
		in:       in,
		conn:     c,
		channels: make(map[*channel]struct{}),
	}
	ss.ctx, ss.cancel = context.WithCancelCause(s.ctx)
	ss.log = log.With().Str("session", ss.id).Str("target", t.Name).Str("path", in.path).Logger()
	ss.log0 = ss.log
	conf := &gossh.ServerConfig{
		Config:                    serverCrypto(),
		PublicKeyCallback:         s.checkCert(&ss.banners),
		VerifiedPublicKeyCallback: ss.authorize,
		ServerVersion:             serverVersion,
	}
	conf.AddHostKey(signer)
	// The handshake timer covers the key exchange and authentication; the
	// authorization that registers the session and dials the target moves
	// it on by the time those take.
	ss.handshake = time.AfterFunc(s.cfg.HandshakeTimeout, func() { c.Close() })
	sc, chans, reqs, err := gossh.NewServerConn(c, conf)
	ss.handshake.Stop()
	if err != nil {
		ss.log.Info().Err(err).Msg("handshake failed")
		ss.cancel(fmt.Errorf("handshake: %w", err))
		ss.end()
		return nil
	}
	return func() { ss.serve(sc, chans, reqs) } // serve cancels ss.ctx as it ends
}

// authorize is the VerifiedPublicKeyCallback of a target's server: the key
// is a valid certificate and the client holds its private key; now the
// person must hold an active amendment for this login on this target.
// Everything a session needs before a byte is relayed happens here, so
// that every refusal reaches the person as an auth banner, the one line
// that ssh shows before "Permission denied".
func (ss *sshSession) authorize(conn gossh.ConnMetadata, _ gossh.PublicKey, perms *gossh.Permissions, _ string) (*gossh.Permissions, error) {
	person, login := perms.Extensions[extPerson], conn.User()
	if err := ss.start(person, login); err != nil {
		line := userLine(err)
		ss.log.Info().Str("person", person).Str("login", login).Str("reason", reasonOf(err)).Str("refusal", line).Msg("login refused")
		ss.srv.audit(ss.srv.ctx, "session.refused", person, map[string]any{
			"person": person, "target": ss.t.Name, "login": login, "path": ss.in.path,
			"remote": ss.in.remote.String(), "reason": reasonOf(err), "message": line,
		})
		return nil, ss.banners.show(err, line, true)
	}
	return perms, nil
}

// start admits the session for person as login: the live amendment, the
// per-person limit, the registry, the upstream connection. On error it has
// undone what it did.
func (ss *sshSession) start(person, login string) (err error) {
	s := ss.srv
	if ss.in.person != "" && person != ss.in.person {
		return refuse("person mismatch", "the certificate for %s is not the one you logged in to the bastion with (%s): use one jitproxy certificate for both hops", person, ss.in.person)
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.DialTimeout+2*s.cfg.HandshakeTimeout)
	defer cancel()
	ss.handshake.Reset(s.cfg.DialTimeout + 3*s.cfg.HandshakeTimeout)

	a, err := s.cfg.Access.ActiveSSH(ctx, person, ss.t.Name, login)
	if err != nil {
		return &userError{msg: userLine(err), reason: "no amendment"}
	}
	if a == nil || !a.ActiveAt(s.cfg.Now()) || !strings.EqualFold(a.Requester, person) || a.Resource.Target != ss.t.Name || a.Resource.Login != login {
		// Access said yes to something else: fail closed.
		return refuse("no amendment", "no active amendment for %s@%s: run jitproxy request %s --login %s --for 1h --reason ...", login, ss.t.Name, ss.t.Name, login)
	}
	ss.person, ss.login, ss.amend = person, login, a
	ss.log = ss.log0.With().Str("person", person).Str("login", login).Str("amendment", a.ID).Logger()

	if err := s.admit(ss); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			s.release(ss)
		}
	}()
	// The registry's context ends with the cut's cause, and it calls Cut,
	// which cancels ss.ctx with the same cause: ss.ctx is all we need.
	_, done, err := s.cfg.Registry.Register(s.ctx, session.Session{
		ID:          ss.id,
		Person:      person,
		Target:      ss.t.Name,
		Resource:    login + "@" + ss.t.Name,
		Kind:        amendment.KindSSH,
		Interactive: true, // a login may open a shell at any time; Warn writes only to pty channels
		Amendment:   a,
		Cut:         func(e *session.Ended) { ss.cut(e) },
		Warn:        ss.warn,
	})
	if err != nil {
		return &userError{msg: userLine(err), reason: "registry refused"}
	}
	defer func() {
		if err != nil {
			done("refused: " + reasonOf(err))
		}
	}()
	if err := ss.dial(ctx); err != nil {
		return err
	}
	if err := ss.cutError(); err != nil {
		return err // cut while dialing
	}
	ss.done = done
	ss.started = s.cfg.Now()
	return nil
}

// admitted reports whether start has succeeded. Only the handshake
// goroutine calls it, before serve.
func (ss *sshSession) admitted() bool { return ss.done != nil }

// shutdownCause is the cut cause Shutdown gives the session.
func (ss *sshSession) shutdownCause() *session.Ended {
	return &session.Ended{Amendment: ss.amend.ShortID(), Resource: ss.login + "@" + ss.t.Name, Reason: errShutdown.Error()}
}
