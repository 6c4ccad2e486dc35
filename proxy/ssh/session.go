package ssh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	gossh "golang.org/x/crypto/ssh"

	"github.com/jitproxy/jitproxy/amendment"
)

// sshSession is one person's login to one target: the client's connection
// to the target's in-process server, the bastion's connection to the real
// sshd, and the channels relayed between them. It is bound to one
// amendment and ends when either connection does, or when it is cut.
type sshSession struct {
	srv  *Server
	id   string
	t    *target
	in   inbound
	conn net.Conn // the client's connection to the in-process server
	log  zerolog.Logger
	log0 zerolog.Logger // log before the login was known

	// handshake closes conn if the handshake (authorization included) takes
	// too long.
	handshake *time.Timer
	banners   banners // the auth banners sent during the handshake

	// Set by start during the handshake, before serve; read-only after.
	person, login string
	amend         *amendment.Amendment
	ctx           context.Context // cancelled with why the session ended
	cancel        context.CancelCauseFunc
	done          func(reason string) // ends the registration
	started       time.Time
	served        bool // serve ran: session.start was written
	upChans       <-chan gossh.NewChannel
	upReqs        <-chan *gossh.Request

	// upConn is the TCP connection under upstream, which a cut shuts
	// down; set with upstream.
	upConn net.Conn

	// wg counts the session's goroutines; serve waits for it.
	wg sync.WaitGroup

	bytesUp, bytesDown atomic.Int64 // relayed to the target, and to the client

	// mu guards upstream, upConn and client (each set once, by dial and serve,
	// before the goroutines that read them start; cut may read them
	// earlier), channels, nextChannel, cutCause, closing, ended and
	// noMoreSessions.
	mu             sync.Mutex
	upstream       gossh.Conn
	client         *gossh.ServerConn
	channels       map[*channel]struct{} // open session channels, for warnings
	nextChannel    int
	cutCause       error            // why the session was cut; nil if it was not
	closing        *time.Timer      // closes conn a grace period after a cut or the target's hang-up
	ended          bool             // serve is waiting for wg: no more goroutines
	noMoreSessions bool             // the client sent no-more-sessions@openssh.com
	globalQueue    []*gossh.Request // global requests waiting for globalWorker, in order
	globalBusy     bool             // globalWorker is running
}

// serve runs an authenticated session until the client's connection ends.
func (ss *sshSession) serve(sc *gossh.ServerConn, chans <-chan gossh.NewChannel, reqs <-chan *gossh.Request) {
	s := ss.srv
	ss.served = true
	ss.mu.Lock()
	ss.client = sc
	up := ss.upstream
	ss.mu.Unlock()
	if up == nil || ss.ctx.Err() != nil {
		// Cut while the handshake finished.
		sc.Close()
	}

	ss.log.Info().Time("expires_at", ss.amend.ExpiresAt).Msg("session started")
	s.audit(ss.ctx, "session.start", ss.person, ss.auditFields(map[string]any{
		"remote": ss.in.remote.String(), "path": ss.in.path, "expires_at": ss.amend.ExpiresAt,
	}))

	if up != nil {
		ss.wg.Go(func() { ss.upstreamLoop(up) })
	}
	// The client's channel opens and global requests, in one loop: a
	// channel is served by a goroutine of its own, a global request
	// answered here. It ends when the client's connection does.
	for chans != nil {
		select {
		case nc, ok := <-chans:
			if !ok {
				chans = nil
				continue
			}
			ss.wg.Go(func() { ss.openChannel(nc) })
		case req, ok := <-reqs:
			if !ok {
				reqs = nil
				continue
			}
			if !ss.queueGlobal(req) {
				ss.globalRequest(req)
			}
		}
	}
	ss.cancel(errClientClosed)
	if up != nil {
		up.Close()
	}
	sc.Close()
	ss.end()
}

// end waits for the session's goroutines, then ends the session: it
// closes both connections and, if the login was admitted, ends the
// registration, frees the person's slot and writes the end's audit row.
func (ss *sshSession) end() {
	ss.mu.Lock()
	ss.ended = true
	ss.mu.Unlock()
	ss.wg.Wait()

	s := ss.srv
	ss.mu.Lock()
	if ss.closing != nil {
		ss.closing.Stop()
	}
	up, cut := ss.upstream, ss.cutCause
	ss.mu.Unlock()
	if up != nil {
		up.Close()
	}
	ss.conn.Close()
	if !ss.admitted() {
		return
	}
	why := context.Cause(ss.ctx)
	if cut != nil {
		why = cut
		// Written here, not by the cut, which must not wait for the disk;
		// it lands before session.end.
		ss.log.Info().Str("cause", cut.Error()).Msg("session cut")
		s.audit(ss.ctx, "session.cut", amendment.SystemActor, ss.auditFields(map[string]any{"cause": cut.Error()}))
	}
	reason := why.Error()
	ss.done(reason)
	s.release(ss)
	if !ss.served {
		return // the handshake failed after the login was authorized
	}
	d := s.cfg.Now().Sub(ss.started)
	ss.log.Info().Str("reason", reason).Dur("duration", d).Int64("bytes_up", ss.bytesUp.Load()).
		Int64("bytes_down", ss.bytesDown.Load()).Msg("session ended")
	s.audit(ss.ctx, "session.end", ss.person, ss.auditFields(map[string]any{
		"reason": reason, "cut": cut != nil, "duration_ms": d.Milliseconds(),
		"bytes_up": ss.bytesUp.Load(), "bytes_down": ss.bytesDown.Load(),
	}))
}

// auditFields adds the session's identifying fields to f.
func (ss *sshSession) auditFields(f map[string]any) map[string]any {
	f["session"] = ss.id
	f["person"] = ss.person
	f["target"] = ss.t.Name
	f["login"] = ss.login
	if ss.amend != nil {
		f["amendment"] = ss.amend.ID
	}
	return f
}

// cut ends the session because its amendment ended (or the bastion is
// shutting down), and returns in microseconds: the registry calls it in a
// loop over every session of the amendment, and measures it. It waits for
// no reader, no disk and no client:
//
//  1. The target's connection is shut down (shutdown(2), both ways): the
//     target gets FIN now, and nothing more the person sends reaches it.
//  2. Each open session channel gets its goodbye, corked into one TCP
//     segment: the cause as one line on the person's stderr, exit status
//     255, and the channel's close. ssh prints the line and exits 255.
//  3. The client's connection is closed cutGrace after the goodbye was
//     written, unless the client hangs up first (ssh exits when its last
//     channel closes). It is not shut down for writing at once: during a
//     key exchange x/crypto queues the goodbye's packets and sends them
//     only when the exchange completes, which a FIN would cut short.
//
// Steps 2 and 3 run in a goroutine of the session's (see sayGoodbye); the
// cut does not wait for it. Waiting even a millisecond per session was
// measured to cost seconds at 1,000 sessions on a busy machine, where the
// goodbye goroutines queue behind the woken ssh and sshd processes. A
// client that stopped reading (its window or socket buffer full) cannot
// take its goodbye at once: that client alone waits (at most
// goodbyeStuck, then its connection is closed).
//
// "Socket closed", in the cut-latency histogram, is therefore the moment
// the target's connection is shut down, which is when the person's access
// ends: nothing more reaches the target. The client's connection follows
// its goodbye, typically within milliseconds (bench/ssh.sh measures when
// each ssh exits). The descriptors are closed, and the log line, the
// recordings and the audit rows written, by the session's own goroutines
// as they wind down: the client's connection when the client hangs up, or
// cutGrace after its goodbye.
func (ss *sshSession) cut(cause error) {
	ss.mu.Lock()
	if ss.cutCause != nil {
		ss.mu.Unlock()
		return
	}
	ss.cutCause = cause
	upConn, client := ss.upConn, ss.client
	chs := make([]*channel, 0, len(ss.channels))
	for ch := range ss.channels {
		chs = append(chs, ch)
	}
	ss.mu.Unlock()
	ss.cancel(cause)
	if upConn != nil {
		shutdown(upConn)
	}
	if client == nil {
		// Still in the handshake: the login's refusal says why (start
		// checks for the cut). Right after it, before serve has taken
		// the connection, serve sees the session ended and closes the
		// connection without a line: no channel is open to carry one.
		return
	}
	if len(chs) == 0 {
		ss.closeSoon() // no channel to say goodbye on
		return
	}
	ss.goSession(func() { ss.sayGoodbye(chs, cause) })
}

// sayGoodbye writes the cut's goodbye on each of chs (at least one),
// corked into one TCP segment, and has the client's connection closed
// cutGrace later.
func (ss *sshSession) sayGoodbye(chs []*channel, cause error) {
	// cutGrace runs from when the goodbye is written, not from the cut:
	// on a starved machine the goodbye may come late, and must still be
	// read. A client that has stopped reading holds the writes up; after
	// goodbyeStuck its connection is closed, which ends them.
	stuck := time.AfterFunc(goodbyeStuck, func() { ss.conn.Close() })
	defer func() {
		stuck.Stop()
		ss.closeSoon()
	}()
	uncork := cork(ss.conn)
	for _, ch := range chs {
		ch.goodbye(cause)
	}
	uncork()
}

// cutError returns why the session was cut, or nil.
func (ss *sshSession) cutError() error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.cutCause
}

// closeSoon closes the client's connection cutGrace from now, unless the
// session ends first.
func (ss *sshSession) closeSoon() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closing == nil {
		ss.closing = time.AfterFunc(cutGrace, func() { ss.conn.Close() })
	}
}

// goSession runs f as one of the session's goroutines, unless the session
// has ended; it reports whether it did.
func (ss *sshSession) goSession(f func()) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.ended {
		return false
	}
	ss.wg.Go(f)
	return true
}

// warn shows message on the stderr of every pty channel: the registry's
// warning ahead of expiry. It returns at once.
func (ss *sshSession) warn(message string) {
	ss.mu.Lock()
	var chs []*channel
	for ch := range ss.channels {
		if ch.interactive() {
			chs = append(chs, ch)
		}
	}
	ss.mu.Unlock()
	line := "\r\n" + oneLine(message) + "\r\n"
	for _, ch := range chs {
		ss.goSession(func() { ch.writeStderr([]byte(line)) })
	}
}

// queueGlobal hands req to globalWorker if it must not be answered in
// serve's loop: a forwarding request waits for the target's reply, and
// while serve waits the client's channel opens (and, once x/crypto's queues
// fill, all its data) wait too. Replies to global requests must keep the
// requests' order, so once one is queued every later one queues behind it
// until the worker is done. It reports false when serve should answer req
// itself.
func (ss *sshSession) queueGlobal(req *gossh.Request) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if !ss.globalBusy && !isForwardRequest(req.Type) {
		return false
	}
	ss.globalQueue = append(ss.globalQueue, req)
	if !ss.globalBusy {
		ss.globalBusy = true
		ss.wg.Go(ss.globalWorker)
	}
	return true
}

// globalWorker answers the queued global requests in order, and ends when
// none is left.
func (ss *sshSession) globalWorker() {
	for {
		ss.mu.Lock()
		if len(ss.globalQueue) == 0 {
			ss.globalBusy = false
			ss.globalQueue = nil
			ss.mu.Unlock()
			return
		}
		req := ss.globalQueue[0]
		ss.globalQueue = ss.globalQueue[1:]
		ss.mu.Unlock()
		ss.globalRequest(req)
	}
}

// isForwardRequest reports whether a global request asks for (or cancels)
// a remote forward, which goes to the target.
func isForwardRequest(typ string) bool {
	switch typ {
	case "tcpip-forward", "cancel-tcpip-forward", "streamlocal-forward@openssh.com", "cancel-streamlocal-forward@openssh.com":
		return true
	}
	return false
}

// globalRequest answers one of the client's global requests: port
// forwarding ones go upstream when the amendment allows it; keepalives
// and the rest get a polite no.
func (ss *sshSession) globalRequest(req *gossh.Request) {
	switch {
	case isForwardRequest(req.Type):
		if err := ss.mayForward(); err != nil {
			ss.log.Info().Str("request", req.Type).Str("reason", reasonOf(err)).Msg("remote forwarding refused")
			req.Reply(false, nil)
			return
		}
		ok, payload, err := ss.upstream.SendRequest(req.Type, req.WantReply, req.Payload)
		if err != nil {
			ok = false
		}
		req.Reply(ok, payload)
	case req.Type == "no-more-sessions@openssh.com":
		ss.mu.Lock()
		ss.noMoreSessions = true
		ss.mu.Unlock()
		req.Reply(true, nil)
	default: // keepalive@openssh.com, hostkeys-prove-00@openssh.com, ...
		req.Reply(false, nil)
	}
}

// recheck asks Access again whether the session's login is still allowed,
// before every new channel: a revocation must not wait for a timer.
func (ss *sshSession) recheck() error {
	if err := ss.cutError(); err != nil {
		return err
	}
	if ss.ctx.Err() != nil {
		return context.Cause(ss.ctx)
	}
	ctx, cancel := context.WithTimeout(ss.ctx, ss.srv.cfg.DialTimeout)
	defer cancel()
	a, err := ss.srv.cfg.Access.ActiveSSH(ctx, ss.person, ss.t.Name, ss.login)
	if err != nil {
		return &userError{msg: userLine(err), reason: "no amendment"}
	}
	if a == nil || !a.ActiveAt(ss.srv.cfg.Now()) {
		return refuse("no amendment", "no active amendment for %s@%s: run jitproxy request %s --login %s --for 1h --reason ...", ss.login, ss.t.Name, ss.t.Name, ss.login)
	}
	return nil
}

// mayForward says whether the session's amendment allows port forwarding.
func (ss *sshSession) mayForward() error {
	if !ss.amend.Resource.PortForwarding {
		return refuse("no port forwarding", "port forwarding is not part of amendment %s for %s@%s: ask for it with jitproxy request %s --login %s --port-forwarding ...",
			ss.amend.ShortID(), ss.login, ss.t.Name, ss.t.Name, ss.login)
	}
	return ss.recheck()
}

// openChannel serves a channel the client opens.
func (ss *sshSession) openChannel(nc gossh.NewChannel) {
	switch nc.ChannelType() {
	case "session":
		ss.mu.Lock()
		no := ss.noMoreSessions
		ss.mu.Unlock()
		if no {
			nc.Reject(gossh.Prohibited, "jitproxy: no more sessions on this connection (no-more-sessions@openssh.com)")
			return
		}
		if err := ss.recheck(); err != nil {
			ss.refuseChannel(nc, err)
			return
		}
		ss.openSession(nc)
	case "direct-tcpip", "direct-streamlocal@openssh.com":
		if err := ss.mayForward(); err != nil {
			ss.refuseChannel(nc, err)
			return
		}
		ss.forward(nc, ss.upstream.OpenChannel, "local forward")
	default:
		ss.refuseChannel(nc, refuse("channel type", "%s channels are not relayed", nc.ChannelType()))
	}
}

// refuseChannel rejects a channel open with the person's line for err.
func (ss *sshSession) refuseChannel(nc gossh.NewChannel, err error) {
	line := userLine(err)
	ss.log.Info().Str("channel_type", nc.ChannelType()).Str("reason", reasonOf(err)).Str("refusal", line).Msg("channel refused")
	nc.Reject(gossh.Prohibited, line)
}

// upstreamLoop serves the target's side of the session until the target
// hangs up (or a cut shuts its connection): its global requests get a no,
// and its channel opens are served as remote forwards (ssh -R) when the
// amendment allows them; agent and X11 channels never (the bastion
// refuses to ask for them in the first place). One goroutine does what
// x/crypto's DiscardRequests, a channel loop and a Wait would do in three.
func (ss *sshSession) upstreamLoop(up gossh.Conn) {
	chans, reqs := ss.upChans, ss.upReqs
	for chans != nil || reqs != nil {
		select {
		case nc, ok := <-chans:
			if !ok {
				chans = nil
				continue
			}
			ss.upstreamChannel(nc)
		case req, ok := <-reqs:
			if !ok {
				reqs = nil
				continue
			}
			if req.WantReply {
				req.Reply(false, nil)
			}
		}
	}
	err := up.Wait()
	// The target hung up (or a cut shut it): the channels end on their
	// own; the client gets a moment to hear about it.
	ss.cancel(fmt.Errorf("%w: %v", errUpstreamClosed, err))
	if ss.cutError() == nil {
		ss.closeSoon() // after a cut, sayGoodbye does
	}
}

// upstreamChannel serves one channel the target opens.
func (ss *sshSession) upstreamChannel(nc gossh.NewChannel) {
	switch nc.ChannelType() {
	case "forwarded-tcpip", "forwarded-streamlocal@openssh.com":
		// On a goroutine of its own from the check on: mayForward asks
		// for the live amendment, and the target's other requests must
		// not wait for that.
		ss.wg.Go(func() {
			if err := ss.mayForward(); err != nil {
				ss.refuseChannel(nc, err)
				return
			}
			ss.forward(nc, ss.client.OpenChannel, "remote forward")
		})
	default:
		ss.refuseChannel(nc, refuse("channel type", "%s channels are not relayed", nc.ChannelType()))
	}
}

// openSession opens the matching session channel upstream and relays the
// pair.
func (ss *sshSession) openSession(nc gossh.NewChannel) {
	uc, ureqs, err := ss.upstream.OpenChannel("session", nc.ExtraData())
	if err != nil {
		ss.refuseChannel(nc, ss.upstreamOpenError(err))
		return
	}
	cc, creqs, err := nc.Accept()
	if err != nil {
		uc.Close()
		return
	}
	ss.mu.Lock()
	ss.nextChannel++
	ch := &channel{
		ss:       ss,
		id:       fmt.Sprintf("c%d", ss.nextChannel),
		client:   cc,
		upstream: uc,
		started:  make(chan struct{}),
	}
	ss.channels[ch] = struct{}{}
	ss.mu.Unlock()
	ch.log = ss.log.With().Str("channel", ch.id).Logger()
	ch.run(creqs, ureqs)
	ss.mu.Lock()
	delete(ss.channels, ch)
	ss.mu.Unlock()
}

// upstreamOpenError is the person's line for a channel the target would
// not open.
func (ss *sshSession) upstreamOpenError(err error) error {
	if cut := ss.cutError(); cut != nil {
		return cut
	}
	var oe *gossh.OpenChannelError
	if errors.As(err, &oe) {
		return refuse("target refused channel", "%s refused the channel: %s", ss.t.Name, oneLine(oe.Message))
	}
	return refuse("target unreachable", "lost the connection to %s: %v", ss.t.Name, err)
}
