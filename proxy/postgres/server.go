// Package postgres is jitproxy's PostgreSQL endpoint: it takes stock psql
// over TLS, checks a short-lived jitproxy token against the live amendment,
// connects upstream with credentials the person never sees, and relays and
// records every statement until the amendment ends. It does not decide
// policy, issue tokens or keep state beyond a connection: Access, Tokens
// and Registry do.
//
// Authentication upstream (SCRAM-SHA-256, md5, password, client
// certificates, TLS) is pgconn's; after it the proxy hijacks the raw
// connection and relays messages by their headers, decoding only what it
// records.
package postgres

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/jitproxy/jitproxy/proxy/conns"
)

// cutGrace is how long a cut or shut-down session may take to reach a
// message boundary and say goodbye before its connections are closed
// regardless.
const cutGrace = time.Second

// Server is the PostgreSQL endpoint. Serve it on any number of listeners;
// Shutdown ends it.
type Server struct {
	cfg     Config
	targets map[string]*target
	log     zerolog.Logger
	// tls is Config.TLS offering ALPN "postgresql"; nil without TLS.
	tls *tls.Config
	// maxRelayMessage bounds the messages the relay holds whole.
	maxRelayMessage int

	// ctx ends when Shutdown starts; it is the parent of every session's.
	ctx    context.Context
	cancel context.CancelCauseFunc

	// bufs holds relay buffers (*[]byte of relayBufSize), so a session
	// allocates none in the steady state and an ended one gives its back.
	bufs sync.Pool

	// wg counts every goroutine the server starts; Shutdown waits for it.
	wg sync.WaitGroup

	// conns is the listeners and the accepted connections.
	conns *conns.Set

	mu       sync.Mutex              // guards sessions, keys, closed and idle
	sessions map[*pgSession]struct{} // sessions past startup not yet ended
	keys     map[uint32]*pgSession   // by the process ID the proxy gave the client
	closed   bool                    // Shutdown has begun
	idle     chan struct{}           // closed (and replaced) whenever sessions becomes empty
}

// maxRecordedMessage is the least bound on the messages the relay decodes.
const maxRecordedMessage = 64 << 20

// New validates cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	targets, err := cfg.check()
	if err != nil {
		return nil, err
	}
	var tc *tls.Config
	if cfg.TLS != nil {
		tc = cfg.TLS.Clone()
		if !slices.Contains(tc.NextProtos, alpnProtocol) {
			tc.NextProtos = append(tc.NextProtos, alpnProtocol)
		}
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	return &Server{
		cfg:             cfg,
		targets:         targets,
		tls:             tc,
		log:             cfg.Logger.With().Str("component", "pgproxy").Logger(),
		maxRelayMessage: max(cfg.MaxMessageBytes, maxRecordedMessage),
		ctx:             ctx,
		cancel:          cancel,
		conns:           conns.New("pgproxy", ErrServerClosed, cfg.Logger),
		sessions:        make(map[*pgSession]struct{}),
		keys:            make(map[uint32]*pgSession),
		idle:            make(chan struct{}),
	}, nil
}

// Serve accepts connections on ln until Shutdown, which makes it return
// ErrServerClosed. It closes ln.
func (s *Server) Serve(ln net.Listener) error {
	return s.conns.Serve(ln, func(c net.Conn) { s.wg.Go(func() { s.handleConn(c) }) })
}

// Shutdown stops accepting, cuts every live session with the cause "proxy
// shutting down" (psql shows that line), closes every connection and waits
// for every goroutine the server started, or for ctx to end, when it
// returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	sessions := make([]*pgSession, 0, len(s.sessions))
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
	// Give the goodbyes their grace, then close whatever is left,
	// connections still in startup included.
	return s.conns.Drain(ctx, idle, cutGrace, &s.wg)
}

// admit adds a session past startup and gives it the cancel key the client
// will know it by: a random process ID no other live session has, and a
// random secret. It refuses every session after Shutdown has begun.
func (s *Server) admit(ss *pgSession) error {
	var b [8]byte
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return refuse(codeAdminShutdown, "shutting down", "the PostgreSQL endpoint is shutting down; connect again in a moment")
	}
	for {
		rand.Read(b[:])
		// Positive, as PostgreSQL's own process IDs are.
		pid := binary.BigEndian.Uint32(b[:4]) & 0x7fffffff
		if _, taken := s.keys[pid]; pid == 0 || taken {
			continue
		}
		ss.key = cancelKey{pid: pid, secret: append([]byte(nil), b[4:]...)}
		s.keys[pid] = ss
		break
	}
	s.sessions[ss] = struct{}{}
	return nil
}

// release forgets an admitted session and its cancel key.
func (s *Server) release(ss *pgSession) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.sessions[ss]; !ok {
		return
	}
	delete(s.sessions, ss)
	delete(s.keys, ss.key.pid)
	if len(s.sessions) == 0 {
		close(s.idle)
		s.idle = make(chan struct{})
	}
}

// audit writes one audit row.
func (s *Server) audit(ctx context.Context, typ, actor string, fields map[string]any) {
	s.cfg.Audit(ctx, typ, actor, fields)
}

// getBuf returns a relay buffer.
func (s *Server) getBuf() *[]byte {
	if b, ok := s.bufs.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, relayBufSize)
	return &b
}

// putBuf gives back a relay buffer; one that grew to hold a large message
// is dropped rather than kept.
func (s *Server) putBuf(b *[]byte) {
	if cap(*b) == relayBufSize {
		*b = (*b)[:relayBufSize]
		s.bufs.Put(b)
	}
}

// newID returns a random session ID: 16 hex digits, which also name the
// session's recording.
func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
