// Package ssh is jitproxy's SSH bastion: it authenticates people by jitproxy
// certificate, serves each target in-process with a host certificate for
// that target, authorizes the inner login against the live amendment, and
// relays and records every channel to the real sshd upstream. It does not
// decide policy, mint certificates or keep session state beyond a
// connection: Access, Authority and Registry do.
//
// Two ways in share one listener: ssh -J (the first line is the client's
// SSH identification; the bastion is an SSH server whose direct-tcpip
// channels to a target are each served by that target's in-process server)
// and the single hop (the first line is a preamble, see PreambleTarget, and
// the connection goes straight to the target's in-process server).
package ssh

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/jitproxy/jitproxy/proxy/conns"
)

// cutGrace is how long a cut session's client connection stays open after
// the goodbye is written (or the target hung up), so that the line saying
// why reaches the person before the socket closes. The client normally
// hangs up first; the upstream connection is shut down at once.
const cutGrace = time.Second

// goodbyeStuck is how long a cut's goodbye may wait for a client that has
// stopped reading (its window or socket buffer full) before the client's
// connection is closed without it.
const goodbyeStuck = 10 * time.Second

// Server is the SSH bastion. Serve it on any number of listeners; Shutdown
// ends it.
type Server struct {
	cfg     Config
	targets map[string]*target
	log     zerolog.Logger

	// ctx ends when Shutdown starts; it is the parent of every session's.
	ctx    context.Context
	cancel context.CancelCauseFunc

	// bufs holds the big relay buffers (*[bufSize]byte) that copiers take
	// while their reads are large (see relayBuf), so a copier allocates
	// nothing per write and an idle one holds none.
	bufs sync.Pool

	// wg counts the connection goroutines Serve starts; each waits for
	// the goroutines it starts (a session's, through its own WaitGroup)
	// before it returns. Shutdown waits for wg.
	wg sync.WaitGroup

	// conns is the listeners and the accepted connections.
	conns *conns.Set

	mu        sync.Mutex               // guards sessions, perPerson, closed and idle
	sessions  map[*sshSession]struct{} // admitted sessions not yet ended
	perPerson map[string]int           // admitted sessions by person
	closed    bool                     // Shutdown has begun
	idle      chan struct{}            // closed (and replaced) whenever sessions becomes empty
}

// New validates cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	targets, err := cfg.check()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	return &Server{
		cfg:       cfg,
		targets:   targets,
		log:       cfg.Logger,
		ctx:       ctx,
		cancel:    cancel,
		conns:     conns.New("sshproxy", ErrServerClosed, cfg.Logger),
		sessions:  make(map[*sshSession]struct{}),
		perPerson: make(map[string]int),
		idle:      make(chan struct{}),
	}, nil
}

// Serve accepts connections on ln until Shutdown, which makes it return
// ErrServerClosed. It closes ln.
func (s *Server) Serve(ln net.Listener) error {
	return s.conns.Serve(ln, func(c net.Conn) {
		s.wg.Go(func() {
			rest := s.handleConn(c)
			if rest == nil {
				s.conns.Forget(c)
				return
			}
			s.wg.Go(func() {
				defer s.conns.Forget(c)
				rest()
			})
		})
	})
}

// handleConn reads the first line of an accepted connection and serves it
// the way it came in. For a session to a target it returns the rest of
// the session, for the caller to run on a fresh goroutine (see
// serveTarget); else it returns nil once the connection is done.
func (s *Server) handleConn(c net.Conn) func() {
	log := s.log.With().Str("remote", c.RemoteAddr().String()).Logger()
	c.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	first, rest, err := sniff(c)
	if err != nil {
		// Garbage, a half-open connection or a port scan: one line for
		// whoever is there, one for the log, and nobody else notices.
		ev := log.Debug()
		if errors.Is(err, errBadPreamble) {
			ev = log.Info()
		}
		ev.Err(err).Msg("connection refused before the SSH handshake")
		if errors.Is(err, errBadPreamble) {
			c.Write([]byte(PreambleError + "jitproxy: this is the jitproxy SSH bastion: connect with ssh -J or the block jitproxy ssh-config prints\r\n"))
		}
		return nil
	}
	c.SetDeadline(time.Time{})
	pc := &prefixConn{Conn: c, rest: rest}
	if first.target == "" {
		s.serveBastion(pc, log)
		return nil
	}
	t, ok := s.targets[first.target]
	if !ok {
		ue := notATarget(first.target)
		log.Info().Str("target", first.target).Msg("preamble names no target")
		c.Write([]byte(PreambleError + ue.msg + "\r\n"))
		return nil
	}
	return s.serveTarget(pc, t, inbound{path: pathSingleHop, remote: c.RemoteAddr()}, log)
}

// notATarget is the refusal of a name that is not a configured target.
func notATarget(name string) *userError {
	return &userError{
		msg:    "jitproxy is not an open relay: " + oneLine(name) + " is not a jitproxy target; connect to a target by the name jitproxy ssh-config gives it",
		reason: "not a target",
	}
}

// Shutdown stops accepting, cuts every live session with the cause "proxy
// shutting down" (the person sees that line), closes every connection and
// waits for every goroutine the server started, or for ctx to end, when
// it returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	sessions := make([]*sshSession, 0, len(s.sessions))
	for ss := range s.sessions {
		sessions = append(sessions, ss)
	}
	idle := s.idle
	if len(s.sessions) == 0 {
		idle = nil
	}
	s.mu.Unlock()
	s.conns.Close()
	s.cancel(errShutdown)

	for _, ss := range sessions {
		ss.cut(ss.shutdownCause())
	}
	// Give the cut lines their grace, then close whatever is left: the
	// connections still handshaking and the ssh -J outer connections.
	return s.conns.Drain(ctx, idle, cutGrace, &s.wg)
}

// admit counts a new session for person; it refuses one over
// MaxSessionsPerPerson, and every session after Shutdown has begun.
func (s *Server) admit(ss *sshSession) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return refuse("shutting down", "the bastion is shutting down; connect again in a moment")
	}
	if n := s.perPerson[ss.person]; n >= s.cfg.MaxSessionsPerPerson {
		noun := "sessions"
		if n == 1 {
			noun = "session"
		}
		return refuse("too many sessions", "you are at the limit of %d open %s through jitproxy; close one and connect again", n, noun)
	}
	s.perPerson[ss.person]++
	s.sessions[ss] = struct{}{}
	return nil
}

// release forgets an admitted session.
func (s *Server) release(ss *sshSession) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.sessions[ss]; !ok {
		return
	}
	delete(s.sessions, ss)
	if s.perPerson[ss.person]--; s.perPerson[ss.person] <= 0 {
		delete(s.perPerson, ss.person)
	}
	if len(s.sessions) == 0 {
		close(s.idle)
		s.idle = make(chan struct{})
	}
}

// audit writes one audit row. A row is written even when ctx has ended:
// the end of a session is when its rows matter most.
func (s *Server) audit(ctx context.Context, typ, actor string, fields map[string]any) {
	s.cfg.Audit(context.WithoutCancel(ctx), typ, actor, fields)
}

func (s *Server) getBuf() *[bufSize]byte {
	if b, ok := s.bufs.Get().(*[bufSize]byte); ok {
		return b
	}
	return new([bufSize]byte)
}

func (s *Server) putBuf(b *[bufSize]byte) { s.bufs.Put(b) }

// newID returns a random session ID: 16 hex digits, which also name the
// session's recordings.
func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
