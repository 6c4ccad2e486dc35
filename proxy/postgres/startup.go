package postgres

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/rs/zerolog"
)

// Codes of the startup packets, and bounds on them.
const (
	sslRequestCode    = 80877103
	gssEncRequestCode = 80877104
	cancelRequestCode = 80877102
	protocolMajor3    = 3
	// maxStartupPacket is PostgreSQL's MAX_STARTUP_PACKET_LENGTH.
	maxStartupPacket = 10000
	minStartupPacket = 8
	// maxParams bounds the parameters of a StartupMessage.
	maxParams = 64
	// tlsHandshakeRecord starts a TLS ClientHello: a client that skips
	// SSLRequest (sslnegotiation=direct) opens with it.
	tlsHandshakeRecord = 0x16
	// alpnProtocol is the ALPN protocol of PostgreSQL over TLS.
	alpnProtocol = "postgresql"
)

// forwardedParams are the client's startup parameters passed on upstream;
// everything else is dropped (options could unset read-only; the proxy sets
// application_name itself).
var forwardedParams = []string{"client_encoding", "DateStyle", "TimeZone", "IntervalStyle", "extra_float_digits", "search_path"}

// errCancelRequest ends a connection that carried a CancelRequest: it is
// answered by closing, as PostgreSQL does.
var errCancelRequest = errors.New("cancel request")

// hello is what a client asked for in its StartupMessage.
type hello struct {
	person   string // the user parameter, lower-cased: the identity key
	target   string
	database string // "" when the client named only the target
	params   map[string]string
	secure   bool // the client spoke TLS
	// minor is the protocol minor version the client asked for, and
	// unknown the protocol options (_pq_.*) it sent: the proxy speaks 3.0
	// and says so when either is set.
	minor   uint32
	unknown []string
}

// handleConn runs one accepted connection: startup, then a cancel request
// or a session, and forgets it at the end. A session is served on a
// goroutine of its own: this one's stack grew through the handshake and the
// login, and a fresh one's stays small while the session idles.
func (s *Server) handleConn(c net.Conn) {
	ss := s.startConn(c)
	if ss == nil {
		s.conns.Forget(c)
		return
	}
	ss.begin()
	s.wg.Go(func() {
		defer s.conns.Forget(c)
		ss.serve()
	})
}

// startConn takes a connection through startup to a session ready to
// relay; it returns nil if the connection ended there (refused, or a
// cancel request).
func (s *Server) startConn(c net.Conn) *pgSession {
	log := s.log.With().Str("remote", c.RemoteAddr().String()).Logger()
	c.SetDeadline(time.Now().Add(s.cfg.StartupTimeout))
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.StartupTimeout)
	defer cancel()

	conn, h, err := s.negotiate(ctx, c)
	if err == nil {
		err = s.checkHello(c, h)
	}
	if err != nil {
		s.refuseStartup(ctx, conn, log, h, err)
		return nil
	}
	log = log.With().Str("person", h.person).Str("target", h.target).Logger()
	ss, err := s.login(ctx, conn, h, log)
	if err != nil {
		s.refuseStartup(ctx, conn, log, h, err)
		return nil
	}
	return ss
}

// refuseStartup answers a connection that will not become a session: a
// FATAL ErrorResponse saying why (unless the client is gone or it was a
// cancel request), a log line, and for a person an audit row.
func (s *Server) refuseStartup(ctx context.Context, conn net.Conn, log zerolog.Logger, h *hello, err error) {
	if errors.Is(err, errCancelRequest) {
		return
	}
	var ue *userError
	if !errors.As(err, &ue) {
		// The client went away, a handshake failed, a read timed out:
		// nobody to tell.
		log.Debug().Err(err).Msg("connection ended during startup")
		return
	}
	conn.SetWriteDeadline(time.Now().Add(cutGrace))
	conn.Write(fatal(ue.code, ue.msg))
	ev := log.Info().Str("sqlstate", ue.code).Str("reason", ue.reason).Str("why", ue.msg)
	if h == nil || h.person == "" {
		ev.Msg("connection refused")
		return
	}
	ev.Msg("session refused")
	s.audit(context.WithoutCancel(ctx), "session.refused", h.person, map[string]any{
		"person": h.person, "target": h.target, "database": h.database,
		"remote": conn.RemoteAddr().String(), "reason": ue.reason, "sqlstate": ue.code, "message": ue.msg,
	})
}

// negotiate reads startup packets until a StartupMessage: it answers
// SSLRequest with a TLS handshake, GSSENCRequest with 'N', and serves a
// CancelRequest (returning errCancelRequest). A client that starts with a
// TLS handshake right away (libpq 17's sslnegotiation=direct) gets one,
// if it names the protocol with ALPN. It returns the connection to go on
// with (TLS or not).
func (s *Server) negotiate(ctx context.Context, c net.Conn) (net.Conn, *hello, error) {
	conn, secure := c, false
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(conn, hdr[:]); err != nil {
			return conn, nil, err
		}
		if hdr[0] == tlsHandshakeRecord && !secure && s.tls != nil {
			tc := tls.Server(&prefixConn{Conn: conn, prefix: hdr[:]}, s.tls)
			if err := tc.HandshakeContext(ctx); err != nil {
				return conn, nil, fmt.Errorf("direct tls handshake: %w", err)
			}
			conn, secure = tc, true
			if tc.ConnectionState().NegotiatedProtocol != alpnProtocol {
				return conn, nil, refuse(codeProtocolViolation, "direct tls without alpn", "a TLS connection without the ALPN protocol %q: use a PostgreSQL client, or sslnegotiation=postgres", alpnProtocol)
			}
			continue
		}
		body, err := readStartupBody(conn, hdr, s.cfg.MaxMessageBytes)
		if err != nil {
			return conn, nil, err
		}
		code := binary.BigEndian.Uint32(body)
		switch {
		case code == sslRequestCode || code == gssEncRequestCode:
			if len(body) != 4 || secure {
				return conn, nil, refuse(codeProtocolViolation, "bad startup packet", "unexpected encryption request: this is a PostgreSQL endpoint; connect with psql")
			}
			if code == gssEncRequestCode || s.tls == nil {
				if _, err := conn.Write([]byte{'N'}); err != nil {
					return conn, nil, err
				}
				continue
			}
			if _, err := conn.Write([]byte{'S'}); err != nil {
				return conn, nil, err
			}
			tc := tls.Server(conn, s.tls)
			if err := tc.HandshakeContext(ctx); err != nil {
				return conn, nil, fmt.Errorf("tls handshake: %w", err)
			}
			conn, secure = tc, true
		case code == cancelRequestCode:
			s.serveCancel(body)
			return conn, nil, errCancelRequest
		case code>>16 == protocolMajor3:
			h, err := parseStartupMessage(body)
			if err != nil {
				return conn, nil, err
			}
			h.secure = secure
			return conn, h, nil
		default:
			return conn, nil, refuse(codeFeatureUnsupported, "unsupported protocol", "unsupported frontend protocol %d.%d: jitproxy speaks protocol 3; connect with psql", code>>16, code&0xffff)
		}
	}
}

// readStartupBody reads the body of the startup packet whose length header
// is hdr. A length out of bounds is refused from the header alone, before
// anything is allocated.
func readStartupBody(r io.Reader, hdr [4]byte, limit int) ([]byte, error) {
	n := int64(int32(binary.BigEndian.Uint32(hdr[:])))
	if n < minStartupPacket || n > int64(min(limit, maxStartupPacket)) {
		return nil, refuse(codeProtocolViolation, "bad startup packet", "invalid startup packet length %d: this is a PostgreSQL endpoint; connect with psql", n)
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, truncated(err, "startup packet")
	}
	return body, nil
}

// prefixConn is a net.Conn whose first bytes read are prefix.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(b, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// truncated turns the end of input in the middle of a message into a
// protocol violation that says so; other errors pass.
func truncated(err error, what string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return refuse(codeProtocolViolation, "truncated message", "truncated %s: the connection ended in the middle of it", what)
	}
	return err
}

// parseStartupMessage decodes a StartupMessage body (protocol 3.x).
func parseStartupMessage(body []byte) (*hello, error) {
	bad := refuse(codeProtocolViolation, "bad startup packet", "malformed startup message: connect with psql")
	h := &hello{minor: binary.BigEndian.Uint32(body) & 0xffff, params: make(map[string]string)}
	rest := body[4:]
	var user, database string
	var haveUser bool
	for {
		key, r, ok := cstring(rest)
		if !ok {
			return nil, bad
		}
		if len(key) == 0 {
			if len(r) != 0 {
				return nil, bad
			}
			break
		}
		val, r, ok := cstring(r)
		if !ok {
			return nil, bad
		}
		rest = r
		switch k := string(key); {
		case k == "user":
			user, haveUser = string(val), true
		case k == "database":
			database = string(val)
		case k == "replication":
			if v := strings.ToLower(string(val)); v != "false" && v != "off" && v != "no" && v != "0" {
				return nil, refuse(codeFeatureUnsupported, "replication", "jitproxy does not relay replication connections")
			}
		case strings.HasPrefix(k, "_pq_."):
			h.unknown = append(h.unknown, k)
		case slices.Contains(forwardedParams, k):
			h.params[k] = string(val)
		}
		if len(h.params)+len(h.unknown) > maxParams {
			return nil, bad
		}
	}
	if !haveUser || user == "" {
		return nil, refuse(codeInvalidAuthSpec, "no user", "no user name: set user to your jitproxy identity (your email), e.g. psql \"user=you@example.com dbname=TARGET sslmode=require\"")
	}
	h.person = strings.ToLower(strings.TrimSpace(user))
	if database == "" {
		// PostgreSQL's default is the user name, which is never a target.
		database = user
	}
	h.target, h.database, _ = strings.Cut(database, "/")
	return h, nil
}

// cstring splits a NUL-terminated string off b.
func cstring(b []byte) (s, rest []byte, ok bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return nil, nil, false
	}
	return b[:i], b[i+1:], true
}

// checkHello refuses what can be refused before the token is asked for: a
// connection without TLS (so the token is never sent in the clear) and a
// target that does not exist.
func (s *Server) checkHello(c net.Conn, h *hello) error {
	if !h.secure && !(s.cfg.AllowPlaintextLoopback && isLoopback(c.RemoteAddr())) {
		return refuse(codeInvalidAuthSpec, "no tls", "the jitproxy PostgreSQL endpoint requires TLS, so that your database token never crosses the network in the clear: connect with sslmode=require")
	}
	if _, ok := s.targets[h.target]; !ok {
		return refuse(codeInvalidAuthSpec, "not a target", "%q is not a jitproxy PostgreSQL target: set dbname to TARGET or TARGET/DATABASE (jitproxy targets lists them)", h.target)
	}
	return nil
}

// isLoopback reports whether addr is a loopback IP address.
func isLoopback(addr net.Addr) bool {
	ta, ok := addr.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// askPassword asks for the password (the DB token), first saying which
// protocol the proxy speaks if the client asked for more, and reads it.
func askPassword(conn net.Conn, h *hello, limit int) (string, error) {
	var out []byte
	if h.minor > 0 || len(h.unknown) > 0 {
		out, _ = (&pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: h.unknown}).Encode(out)
	}
	out, _ = (&pgproto3.AuthenticationCleartextPassword{}).Encode(out)
	if _, err := conn.Write(out); err != nil {
		return "", err
	}
	var hdr [5]byte
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		return "", err
	}
	if hdr[0] != 'p' {
		return "", refuse(codeProtocolViolation, "bad password message", "expected a password message (your database token), got message type %q", hdr[0])
	}
	n := int64(int32(binary.BigEndian.Uint32(hdr[1:])))
	if n < 5 || n-4 > int64(limit) {
		return "", refuse(codeProtocolViolation, "bad password message", "invalid password message length %d", n)
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(conn, body); err != nil {
		return "", truncated(err, "password message")
	}
	pw, rest, ok := cstring(body)
	if !ok || len(rest) != 0 {
		return "", refuse(codeProtocolViolation, "bad password message", "malformed password message")
	}
	return string(pw), nil
}
