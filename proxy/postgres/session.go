package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/rs/zerolog"

	"github.com/jitproxy/jitproxy/amendment"
	"github.com/jitproxy/jitproxy/recording"
	"github.com/jitproxy/jitproxy/session"
)

// pgSession is one person's connection to one target: the client's
// connection to the proxy and the proxy's to the target, bound to one
// amendment. It ends when either side hangs up, or when it is cut.
type pgSession struct {
	srv    *Server
	id     string
	person string
	g      grant
	client net.Conn
	log    zerolog.Logger

	// ctx is cancelled with why the session ended; set before it is
	// registered, so that a cut finds it.
	ctx    context.Context
	cancel context.CancelCauseFunc

	// Set by login before serve (before live); read-only after.
	done    func(reason string) // ends the registration
	upKey   cancelKey           // what the target knows it by
	upAddr  string              // the target's address the session is connected to
	key     cancelKey           // what the client knows it by (set by admit, after upKey)
	started time.Time
	qlog    *recording.QueryLog // nil: not recorded
	t       *tracker            // nil: not recorded

	bytesUp, bytesDown atomic.Int64 // relayed to the target, and to the client
	terminated         atomic.Bool  // the client sent Terminate

	mu       sync.Mutex // guards upstream, live, bye and cutCause
	upstream net.Conn
	live     bool       // the relay may start: deadlines set on the conns from now on stay
	bye      *userError // the FATAL the client gets at the next message boundary
	cutCause error      // why the session was cut; nil if it was not
}

// login takes a connection from its StartupMessage to a relaying session:
// token, access, registration, recording, upstream login, and the
// client's AuthenticationOk. On error nothing of the session is left but
// what refuseStartup writes.
func (s *Server) login(ctx context.Context, conn net.Conn, h *hello, log zerolog.Logger) (*pgSession, error) {
	token, err := askPassword(conn, h, s.cfg.MaxMessageBytes)
	if err != nil {
		return nil, err
	}
	g, err := s.authorize(ctx, h, token)
	if err != nil {
		return nil, err
	}
	ss := &pgSession{srv: s, id: newID(), person: h.person, g: g, client: conn}
	ss.log = log.With().Str("session", ss.id).Str("amendment", g.amend.ID).Str("resource", g.resource()).Logger()

	// The session's context is its own, set before the registry can cut
	// it; the registry's (a child) only adds its own causes.
	ss.ctx, ss.cancel = context.WithCancelCause(s.ctx)
	_, done, err := s.cfg.Registry.Register(ss.ctx, session.Session{
		ID:        ss.id,
		Person:    h.person,
		Target:    g.t.Name,
		Resource:  g.resource(),
		Kind:      amendment.KindPostgres,
		Amendment: g.amend,
		Cut:       func(cause *session.Ended) { ss.cut(cause) },
	})
	if err != nil {
		ss.cancel(err)
		switch {
		case errors.Is(err, session.ErrNoActiveAmendment):
			return nil, refuseWith(codeInvalidAuthSpec, "no amendment", err)
		case errors.Is(err, session.ErrClosed):
			return nil, refuse(codeAdminShutdown, "shutting down", "the PostgreSQL endpoint is shutting down; connect again in a moment")
		}
		ss.log.Error().Err(err).Msg("registering the session failed")
		return nil, asUserError(err, ss.id)
	}
	ss.done = done
	if err := ss.open(ctx, h); err != nil {
		ss.teardown(err)
		return nil, err
	}
	return ss, nil
}

// open logs in upstream, starts the recording, and gives the client the
// upstream's parameters, the proxy's own cancel key and ReadyForQuery.
func (ss *pgSession) open(ctx context.Context, h *hello) error {
	s := ss.srv
	deadline, _ := ctx.Deadline()
	cctx, cancel := context.WithDeadline(ss.ctx, deadline)
	defer cancel()
	up, err := s.connect(cctx, ss.g, h)
	if err != nil {
		if cut := ss.cutError(); cut != nil {
			return cut
		}
		return ss.upstreamRefusal(err)
	}
	ss.upKey = cancelKey{pid: up.PID, secret: up.SecretKey}
	ss.upAddr = up.Conn.RemoteAddr().String()
	up.Conn.SetDeadline(time.Time{})
	ss.mu.Lock()
	ss.upstream = up.Conn
	ss.mu.Unlock()
	if err := ss.startRecording(); err != nil {
		return err
	}
	if err := s.admit(ss); err != nil {
		return err
	}

	// The client hears what the target said about itself, but the
	// proxy's key: a cancel request must come through the proxy.
	out, _ := (&pgproto3.AuthenticationOk{}).Encode(nil)
	for _, k := range sortedKeys(up.ParameterStatuses) {
		out, _ = (&pgproto3.ParameterStatus{Name: k, Value: up.ParameterStatuses[k]}).Encode(out)
	}
	out, _ = (&pgproto3.BackendKeyData{ProcessID: ss.key.pid, SecretKey: ss.key.secret}).Encode(out)
	out, _ = (&pgproto3.ReadyForQuery{TxStatus: up.TxStatus}).Encode(out)
	if _, err := ss.client.Write(out); err != nil {
		return err
	}
	ss.client.SetDeadline(time.Time{})
	ss.mu.Lock()
	ss.live = ss.cutCause == nil
	cut := ss.cutCause
	ss.mu.Unlock()
	if cut != nil {
		return ss.cutError()
	}
	ss.started = s.cfg.Now()
	return nil
}

// startRecording starts the session's query log; without one the session
// runs only if the proxy does not require recordings.
func (ss *pgSession) startRecording() error {
	s := ss.srv
	if s.cfg.Recorder == nil {
		return nil
	}
	q, err := s.cfg.Recorder.StartPostgres(recording.PGMeta{
		Session:   ss.id,
		Person:    ss.person,
		Role:      ss.g.role.Name,
		Database:  ss.g.database,
		Target:    ss.g.t.Name,
		Amendment: ss.g.amend.ID,
	})
	if err != nil {
		ss.log.Error().Err(err).Bool("required", s.cfg.RequireRecording).Msg("recording did not start")
		if s.cfg.RequireRecording {
			return refuse(codeSystemError, "recording failed", "jitproxy could not start this session's recording, and %s may not be used unrecorded: try again, or give the jitproxy admins session %s", ss.g.t.Name, ss.id)
		}
		return nil
	}
	ss.qlog = q
	ss.t = newTracker(q, s.cfg.Now, s.cfg.RecordParameters)
	return nil
}

// begin logs and audits the start of the session, before serve relays.
func (ss *pgSession) begin() {
	ss.log.Info().Str("remote", ss.client.RemoteAddr().String()).Time("expires_at", ss.g.amend.ExpiresAt).Msg("session started")
	ss.srv.audit(ss.ctx, "session.start", ss.person, ss.auditFields(map[string]any{
		"remote": ss.client.RemoteAddr().String(), "expires_at": ss.g.amend.ExpiresAt, "recorded": ss.qlog != nil,
	}))
}

// serve relays until the session ends, then tears it down.
func (ss *pgSession) serve() {
	ss.teardown(ss.relay())
}

// relay runs the two copiers until both end: copyToUpstream on a goroutine
// of its own, copyToClient on this one. Then both connections close: the
// client's once it has heard the goodbye, if there is one (a cut, or its
// own protocol violation), at a message boundary; the target's once it has
// had a Terminate, if the client did not send one. The session ends with
// the error of the copier that ended first, unless it was cut, said
// goodbye or terminated.
func (ss *pgSession) relay() error {
	s := ss.srv
	up := s.newPipe(ss.client, ss.upstream, clientFramer{ss.t, &ss.terminated}, &ss.bytesUp)
	down := s.newPipe(ss.upstream, ss.client, serverFramer{ss.t}, &ss.bytesDown)

	var first atomic.Int32 // which copier ended first: 1 copyToUpstream, 2 copyToClient
	upErr := make(chan error, 1)
	go func() {
		err := ss.copyToUpstream(up)
		first.CompareAndSwap(0, 1)
		if ss.goodbye() == nil {
			// The client is gone or the target stopped reading, and
			// there is nothing to tell the client: end copyToClient now.
			ss.client.Close()
			ss.upstream.SetReadDeadline(time.Now())
		}
		upErr <- err
	}()
	downErr := ss.copyToClient(down)
	first.CompareAndSwap(0, 2)
	if ss.t != nil {
		ss.t.close()
	}
	// The write deadline first: the client-to-target pipe may be writing
	// to a target that stopped reading, from inside the client socket's
	// raw read (stepRaw), and closing the client socket waits for that.
	ss.upstream.SetWriteDeadline(time.Now().Add(cutGrace))
	ss.client.Close()
	err := <-upErr
	if up.atBoundary() && !ss.terminated.Load() {
		t, _ := (&pgproto3.Terminate{}).Encode(nil)
		ss.upstream.Write(t)
	}
	ss.upstream.Close()
	up.release()
	down.release()

	switch {
	case ss.cutError() != nil:
		return ss.cutError()
	case ss.goodbye() != nil:
		return ss.goodbye()
	case ss.terminated.Load():
		return errClientClosed
	case first.Load() == 2:
		return downErr
	}
	return err
}

// newPipe returns a pipe from src to dst that holds no relay buffer while
// it idles: src is read raw if it can be (TCP without TLS), else through a
// small buffer.
func (s *Server) newPipe(src, dst net.Conn, f framer, count *atomic.Int64) *pipe {
	p := &pipe{src: src, raw: rawConn(src), dst: dst, f: f, limit: s.maxRelayMessage, count: count, getBuf: s.getBuf, putBuf: s.putBuf}
	if p.raw == nil {
		p.small = make([]byte, smallReadSize)
	}
	return p
}

// copyToUpstream relays the client's messages to the target until either
// side fails. A protocol violation by the client becomes its goodbye.
func (ss *pgSession) copyToUpstream(p *pipe) error {
	for {
		if err := p.step(); err != nil {
			var ue *userError
			var we *writeError
			switch {
			case errors.As(err, &ue):
				ss.sayGoodbye(ue)
				return ue
			case errors.As(err, &we):
				return fmt.Errorf("%w: %v", errUpstreamClosed, we.err)
			case errors.Is(err, io.EOF):
				return errClientClosed
			}
			return fmt.Errorf("%w: %v", errClientClosed, err)
		}
	}
}

// copyToClient relays the target's messages to the client until either
// side fails. When the session has a goodbye (it was cut, or the client
// broke the protocol) it is interrupted, finishes the message it is in the
// middle of (within cutGrace), writes the goodbye and ends.
func (ss *pgSession) copyToClient(p *pipe) error {
	for {
		err := p.step()
		if err == nil {
			continue
		}
		var ue *userError
		if errors.As(err, &ue) {
			// The target sent what the proxy cannot frame.
			ss.log.Error().Str("why", ue.msg).Msg("the target broke the protocol")
			ss.sayGoodbye(refuse(codeProtocolViolation, "target protocol violation", "the target sent a malformed message; the session is closed (session %s)", ss.id))
		}
		var we *writeError
		if errors.As(err, &we) {
			return fmt.Errorf("%w: %v", errClientClosed, we.err)
		}
		bye := ss.goodbye()
		if bye == nil {
			if errors.Is(err, io.EOF) {
				return errUpstreamClosed
			}
			return fmt.Errorf("%w: %v", errUpstreamClosed, err)
		}
		if !p.atBoundary() && !p.stop {
			p.stop = true
			ss.upstream.SetReadDeadline(time.Now().Add(cutGrace))
			continue
		}
		if !p.atBoundary() {
			return bye
		}
		ss.client.SetWriteDeadline(time.Now().Add(cutGrace))
		ss.client.Write(fatal(bye.code, bye.msg))
		return bye
	}
}

// sayGoodbye makes bye the FATAL the client gets at the next message
// boundary, and interrupts the relay to get there; the first goodbye wins.
func (ss *pgSession) sayGoodbye(bye *userError) {
	ss.mu.Lock()
	if ss.bye != nil {
		ss.mu.Unlock()
		return
	}
	ss.bye = bye
	live, up := ss.live, ss.upstream
	ss.mu.Unlock()
	if live {
		now := time.Now()
		ss.client.SetWriteDeadline(now.Add(cutGrace))
		up.SetWriteDeadline(now.Add(cutGrace)) // a target that stopped reading
		up.SetReadDeadline(now)
	}
}

// goodbye returns the session's goodbye, or nil.
func (ss *pgSession) goodbye() *userError {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.bye
}

// cut ends the session because its amendment ended (or the proxy is
// shutting down), and returns at once, in microseconds: the registry calls
// it for every session of the amendment in one loop, and measures it. The target is asked to cancel the running query; the client gets
// cause as a FATAL at the next message boundary; then the target gets a
// Terminate and both connections close.
func (ss *pgSession) cut(cause error) {
	ss.mu.Lock()
	if ss.cutCause != nil {
		ss.mu.Unlock()
		return
	}
	ss.cutCause = cause
	live := ss.live
	ss.mu.Unlock()
	ss.cancel(cause)
	if live && (ss.t == nil || ss.t.busy()) {
		ss.srv.wg.Go(func() { ss.cancelUpstream(context.WithoutCancel(ss.ctx)) })
	}
	ss.sayGoodbye(&userError{code: codeAdminShutdown, msg: oneLine(cause.Error()), reason: "cut"})
	// The log line and the session.cut row are teardown's: the registry
	// cuts an amendment's sessions in one loop, and an fsync here would
	// hold up every cut after this one.
}

// cutError returns why the session was cut, as its user error; nil if it
// was not.
func (ss *pgSession) cutError() error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.cutCause == nil {
		return nil
	}
	return &userError{code: codeAdminShutdown, msg: oneLine(ss.cutCause.Error()), reason: "cut"}
}

// shutdownCause is the cut cause of a session that Shutdown ends.
func (ss *pgSession) shutdownCause() error {
	return &session.Ended{Amendment: ss.g.amend.ShortID(), Resource: ss.g.resource(), Reason: errShutdown.Error()}
}

// teardown ends a registered session: it closes both connections, ends
// the registration, frees the cancel key, seals the recording and writes
// the end's audit row. It reads the cut once: a cut that lands while it
// runs changes none of what it writes.
func (ss *pgSession) teardown(why error) {
	s := ss.srv
	ss.mu.Lock()
	up := ss.upstream
	cut := ss.cutCause
	if cut != nil {
		why = cut
	}
	ss.mu.Unlock()
	if up != nil {
		up.Close()
	}
	if cut != nil {
		ss.log.Info().Str("cause", cut.Error()).Msg("session cut")
		s.audit(context.WithoutCancel(ss.ctx), "session.cut", amendment.SystemActor, ss.auditFields(map[string]any{
			"cause": cut.Error(),
		}))
	}
	var ue *userError
	reason := why.Error()
	if errors.As(why, &ue) && ue.reason != "cut" {
		reason = ue.reason + ": " + ue.msg
	}
	ss.cancel(why)
	ss.done(reason)
	s.release(ss)
	if ss.t != nil {
		// What was running when the session ended is recorded too.
		code := codeConnectionFailure
		if cut != nil {
			code = codeAdminShutdown
		}
		ss.t.abandon(code, reason)
	}
	ss.seal(reason)
	if ss.started.IsZero() {
		return // never served
	}
	d := s.cfg.Now().Sub(ss.started)
	ss.log.Info().Str("reason", reason).Dur("duration", d).Int64("bytes_up", ss.bytesUp.Load()).
		Int64("bytes_down", ss.bytesDown.Load()).Msg("session ended")
	s.audit(context.WithoutCancel(ss.ctx), "session.end", ss.person, ss.auditFields(map[string]any{
		"reason": reason, "cut": cut != nil, "duration_ms": d.Milliseconds(),
		"bytes_up": ss.bytesUp.Load(), "bytes_down": ss.bytesDown.Load(),
	}))
}

// seal closes the recording with why the session ended, and writes its
// SHA-256 to the audit trail.
func (ss *pgSession) seal(reason string) {
	if ss.qlog == nil {
		return
	}
	meta, err := ss.qlog.Close(reason)
	if err != nil {
		ss.log.Error().Err(err).Msg("recording did not close cleanly")
	}
	ss.srv.audit(context.WithoutCancel(ss.ctx), "recording.sealed", ss.person, ss.auditFields(map[string]any{
		"recording": meta.ID, "sha256": meta.SHA256, "bytes": meta.Bytes,
		"state": meta.State, "end_reason": meta.EndReason, "path": meta.Path,
	}))
}

// auditFields adds the session's identifying fields to f.
func (ss *pgSession) auditFields(f map[string]any) map[string]any {
	f["session"] = ss.id
	f["person"] = ss.person
	f["target"] = ss.g.t.Name
	f["role"] = ss.g.role.Name
	f["database"] = ss.g.database
	f["amendment"] = ss.g.amend.ID
	return f
}
