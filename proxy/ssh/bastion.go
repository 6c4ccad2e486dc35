package ssh

import (
	"errors"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"
	gossh "golang.org/x/crypto/ssh"

	"github.com/jitproxy/jitproxy/certs"
)

// serverVersion is the identification line both in-process servers send.
const serverVersion = "SSH-2.0-jitproxy"

// extPerson is the Permissions extension that carries the person a
// certificate names from the key check to the code after the handshake.
const extPerson = "jitproxy-person@jitproxy"

// Ways in, as logs and audit rows name them.
const (
	pathSingleHop = "single-hop"
	pathJump      = "jump"
)

// inbound is how a connection to a target's in-process server arrived.
type inbound struct {
	path string
	// remote is the client's address as the bastion's TCP connection shows
	// it (also on the -J path, where the inner connection is a channel).
	remote net.Addr
	// person is, on the -J path, the person the outer hop authenticated;
	// the inner login must be theirs too.
	person string
}

// serveBastion serves an ssh -J client: the outer SSH server, whose only
// business is direct-tcpip channels to targets, each served by that
// target's in-process server.
func (s *Server) serveBastion(c net.Conn, log zerolog.Logger) {
	signer, err := s.cfg.Authority.HostSigner(s.cfg.BastionHostname)
	if err != nil {
		log.Error().Err(err).Msg("no host certificate for the bastion")
		return
	}
	conf := &gossh.ServerConfig{
		Config:            serverCrypto(),
		PublicKeyCallback: s.checkCert(&banners{}),
		ServerVersion:     serverVersion,
	}
	conf.AddHostKey(signer)
	handshake := time.AfterFunc(s.cfg.HandshakeTimeout, func() { c.Close() })
	sc, chans, reqs, err := gossh.NewServerConn(c, conf)
	handshake.Stop()
	if err != nil {
		log.Info().Err(err).Str("path", pathJump).Msg("bastion handshake failed")
		return
	}
	defer sc.Close()
	person := sc.Permissions.Extensions[extPerson]
	blog := log.With().Str("person", person).Str("path", pathJump).Logger()
	blog.Debug().Msg("bastion login")

	var wg sync.WaitGroup // this connection's goroutines
	defer wg.Wait()
	wg.Go(func() { gossh.DiscardRequests(reqs) })
	for nc := range chans {
		if nc.ChannelType() != "direct-tcpip" {
			blog.Info().Str("channel_type", nc.ChannelType()).Msg("bastion channel refused")
			nc.Reject(gossh.Prohibited, "jitproxy: the bastion only forwards to targets: ssh -J BASTION LOGIN@TARGET")
			continue
		}
		wg.Go(func() {
			if rest := s.jump(sc, nc, person, log, blog); rest != nil {
				wg.Go(rest) // on a fresh goroutine: see serveTarget
			}
		})
	}
}

// directTCPIP is the payload of a direct-tcpip channel open (RFC 4254 7.2).
type directTCPIP struct {
	Host       string
	Port       uint32
	OriginHost string
	OriginPort uint32
}

// jump serves one direct-tcpip channel of the outer connection: if it
// names a target, with the target's in-process server. log is the
// connection's logger, blog the outer login's. Like serveTarget, it
// returns the rest of an established session, for a fresh goroutine.
func (s *Server) jump(sc *gossh.ServerConn, nc gossh.NewChannel, person string, log, blog zerolog.Logger) (rest func()) {
	var d directTCPIP
	if err := gossh.Unmarshal(nc.ExtraData(), &d); err != nil {
		nc.Reject(gossh.ConnectionFailed, "jitproxy: malformed direct-tcpip request")
		return nil
	}
	t, err := s.jumpTarget(d.Host, d.Port)
	if err != nil {
		blog.Info().Str("target", d.Host).Uint32("port", d.Port).Str("reason", reasonOf(err)).Msg("direct-tcpip refused")
		s.audit(s.ctx, "session.refused", person, map[string]any{
			"person": person, "target": d.Host, "port": d.Port, "path": pathJump, "reason": reasonOf(err), "message": userLine(err),
		})
		nc.Reject(gossh.Prohibited, userLine(err))
		return nil
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		return nil
	}
	discarded := make(chan struct{})
	go func() {
		defer close(discarded)
		gossh.DiscardRequests(reqs)
	}()
	conn := &chanConn{Channel: ch, local: sc.LocalAddr(), remote: sc.RemoteAddr()}
	end := func() {
		conn.Close()
		<-discarded // ends with the channel
	}
	serve := s.serveTarget(conn, t, inbound{path: pathJump, remote: sc.RemoteAddr(), person: person}, log)
	if serve == nil {
		end()
		return nil
	}
	return func() {
		defer end()
		serve()
	}
}

// jumpTarget returns the target a direct-tcpip channel may reach: a
// configured target's name, on port 22 or its own port. Anything else (an
// address, an unknown name, another port) is refused: the bastion is not an
// open relay.
func (s *Server) jumpTarget(host string, port uint32) (*target, error) {
	t, ok := s.targets[host]
	if !ok {
		return nil, notATarget(host)
	}
	if p := strconv.FormatUint(uint64(port), 10); p != "22" && p != t.port {
		return nil, &userError{
			msg:    "jitproxy is not an open relay: connect to " + host + " on port 22, not " + strconv.FormatUint(uint64(port), 10),
			reason: "wrong port",
		}
	}
	return t, nil
}

// checkCert returns the PublicKeyCallback of both in-process servers: only
// a valid jitproxy user certificate passes, and the person it names rides
// in the Permissions. A refused key gets its reason as an auth banner, as
// b allows.
func (s *Server) checkCert(b *banners) func(gossh.ConnMetadata, gossh.PublicKey) (*gossh.Permissions, error) {
	return func(conn gossh.ConnMetadata, key gossh.PublicKey) (*gossh.Permissions, error) {
		cert, err := s.cfg.Authority.CheckUserCert(conn, key)
		if err != nil {
			return nil, b.show(err, certRefusal(err), !errors.Is(err, certs.ErrNotCertificate))
		}
		return &gossh.Permissions{
			CriticalOptions: cert.CriticalOptions,
			Extensions:      map[string]string{extPerson: cert.KeyId},
		}, nil
	}
}

// banners decides which refusals one connection's client is shown as auth
// banners (ssh prints each on stderr): the first specific one (a refused
// certificate or login), and the refusal of a plain key only if nothing
// was said before, so that ssh offering its plain key after its
// certificate does not bury the real reason under a second line. Only
// the connection's handshake goroutine uses it.
type banners struct {
	said, saidSpecific bool
}

// show returns err as a banner error with line, or err alone if the
// client has heard enough.
func (b *banners) show(err error, line string, specific bool) error {
	if b.saidSpecific || (!specific && b.said) {
		return err
	}
	b.said = true
	b.saidSpecific = specific
	return &gossh.BannerError{Err: err, Message: line + "\r\n"}
}

// certRefusals are the certs errors whose text a person may read as it is.
var certRefusals = []error{
	certs.ErrNotCertificate, certs.ErrNotUserCert, certs.ErrUnknownCA, certs.ErrCertExpired,
	certs.ErrCertNotYetValid, certs.ErrCertRevoked, certs.ErrCertInvalid,
}

// certRefusal is the line a person sees for a refused key: the certs
// sentinel's text, never the detail around it.
func certRefusal(err error) string {
	for _, e := range certRefusals {
		if errors.Is(err, e) {
			return "jitproxy: " + e.Error()
		}
	}
	return "jitproxy: key refused: run jitproxy login"
}
