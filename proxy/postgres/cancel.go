package postgres

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"
)

// cancelKey is what a backend is known by to cancel its query: a process
// ID and a secret (4 bytes in protocol 3.0).
type cancelKey struct {
	pid    uint32
	secret []byte
}

// serveCancel handles a CancelRequest: one with the key the proxy gave a
// live session cancels that session's running query upstream; any other
// is ignored, as PostgreSQL ignores it (the client learns nothing).
func (s *Server) serveCancel(body []byte) {
	if len(body) < 12 {
		return
	}
	pid := binary.BigEndian.Uint32(body[4:])
	s.mu.Lock()
	ss := s.keys[pid]
	s.mu.Unlock()
	if ss == nil || subtle.ConstantTimeCompare(ss.key.secret, body[8:]) != 1 {
		s.log.Debug().Uint32("pid", pid).Msg("cancel request with an unknown key ignored")
		return
	}
	ss.log.Info().Msg("cancel request")
	ss.cancelUpstream(s.ctx)
}

// cancelUpstream asks the target to cancel the session's running query.
func (ss *pgSession) cancelUpstream(ctx context.Context) {
	if err := ss.srv.sendCancel(ctx, ss.upAddr, ss.g.t.tls, ss.upKey); err != nil {
		ss.log.Warn().Err(err).Msg("cancel request to the target failed")
	}
}

// sendCancel sends a CancelRequest for key to the server at addr, over TLS
// when the session's connection is (so the key is not seen on the wire),
// and waits for the server to hang up: then it has the request.
func (s *Server) sendCancel(ctx context.Context, addr string, tc *tls.Config, key cancelKey) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
	defer cancel()
	c, err := s.cfg.Dial(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("pgproxy: cancel request to %s: %w", addr, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	var conn net.Conn = c
	if tc != nil {
		var req [8]byte
		binary.BigEndian.PutUint32(req[0:], 8)
		binary.BigEndian.PutUint32(req[4:], sslRequestCode)
		var resp [1]byte
		if _, err := c.Write(req[:]); err != nil {
			return fmt.Errorf("pgproxy: cancel request to %s: %w", addr, err)
		}
		if _, err := c.Read(resp[:]); err != nil {
			return fmt.Errorf("pgproxy: cancel request to %s: %w", addr, err)
		}
		if resp[0] != 'S' {
			return fmt.Errorf("pgproxy: cancel request to %s: %w", addr, errors.New("the server refused TLS"))
		}
		t := tls.Client(c, tc)
		if err := t.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("pgproxy: cancel request to %s: tls: %w", addr, err)
		}
		conn = t
	}
	msg := make([]byte, 12, 12+len(key.secret))
	binary.BigEndian.PutUint32(msg[0:], uint32(12+len(key.secret)))
	binary.BigEndian.PutUint32(msg[4:], cancelRequestCode)
	binary.BigEndian.PutUint32(msg[8:], key.pid)
	msg = append(msg, key.secret...)
	if _, err := conn.Write(msg); err != nil {
		return fmt.Errorf("pgproxy: cancel request to %s: %w", addr, err)
	}
	conn.SetReadDeadline(time.Now().Add(cutGrace))
	conn.Read(msg[:1])
	return nil
}
