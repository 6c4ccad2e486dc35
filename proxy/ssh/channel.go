package ssh

import (
	"context"
	"errors"
	"io"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/rs/zerolog"
	gossh "golang.org/x/crypto/ssh"

	"github.com/jitproxy/jitproxy/recording"
)

// channel is one session channel (a shell, an exec, a subsystem) relayed
// between the client and the target, and recorded.
//
// Recording: a shell or exec channel's output (stdout and stderr), its
// resizes and, if the Recorder is configured for it, its input go into an
// asciicast. A subsystem channel (sftp) gets a metadata-only recording:
// header, command "subsystem sftp", end reason and byte counts in the
// audit row, but not the binary protocol, which nobody can replay.
type channel struct {
	ss       *sshSession
	id       string // "c1", "c2", ...: with the session ID it names the recording
	log      zerolog.Logger
	client   gossh.Channel
	upstream gossh.Channel

	// closeMu guards claimed and bye, and is held while the client's
	// side is being closed, so that a second closer waits for the first
	// one's packets. claimed is set by whoever closes the client's side
	// first: finish when the target's side is done, goodbye (a cut, a
	// refused recording) or abort.
	closeMu sync.Mutex
	claimed bool
	// bye is the goodbye line the client was sent, for the recording; ""
	// if none was.
	bye string
	// tee is the recording that output, input and resizes go to; nil
	// before the shell, exec or subsystem request, and for subsystems.
	tee atomic.Pointer[recording.Cast]

	// started is closed once the channel's shell, exec or subsystem request
	// has gone upstream (or the client's requests have ended): the input
	// copier waits for it, so the client's data and EOF never overtake
	// the request they follow. sshd drops an EOF that arrives before the
	// exec, and `ssh host cat </dev/null` then hangs.
	started   chan struct{}
	startOnce sync.Once

	// errMu serializes writes to the client's stderr: x/crypto's
	// WriteExtended is not safe for concurrent writers to one stream, and
	// the stderr copier, warnings and the cut line all write there.
	errMu sync.Mutex

	mu       sync.Mutex // guards pty, term, width, height, env, cast, exit and endLabel
	pty      bool
	term     string
	width    int
	height   int
	env      map[string]string
	cast     *recording.Cast // the channel's recording, closed by closeRecording
	exit     *gossh.Request  // the target's exit-status or exit-signal, sent on after the output
	endLabel string          // how the channel ended, for the recording
}

// maxEnv caps the env requests a channel keeps for its recording.
const maxEnv = 64

// run relays the channel until both sides are done. It copies stdout
// itself, and owns four more goroutines: the input copier, the stderr
// copier, and the two request loops; it returns when all have.
func (ch *channel) run(creqs, ureqs <-chan *gossh.Request) {
	outc := make(chan error, 2) // the output copiers', so neither blocks on send
	inc := make(chan error, 1)  // the input copier's
	creqsDone := make(chan struct{})
	ureqsDone := make(chan struct{})
	go ch.copyInput(inc)
	go ch.copyOutput(outc, stderrWriter{ch}, ch.upstream.Stderr())
	go func() {
		defer close(creqsDone)
		ch.clientRequests(creqs)
	}()
	go func() {
		defer close(ureqsDone)
		ch.upstreamRequests(ureqs)
	}()

	// The target's side ends first in the normal course: output drained,
	// exit status sent, channel closed. Then the client hears the exit
	// status after the last byte of output, and the channel closes.
	ch.copyOutput(outc, ch.client, ch.upstream)
	for range 2 {
		if err := <-outc; err != nil {
			ch.abort(err)
		}
	}
	<-ureqsDone
	ch.finish()
	ch.closeMu.Lock()
	bye := ch.bye
	ch.closeMu.Unlock()
	if bye != "" {
		if c := ch.tee.Load(); c != nil {
			c.Output([]byte(bye)) // after the last output relayed
		}
	}
	if err := <-inc; err != nil {
		ch.log.Debug().Err(err).Msg("input copier")
	}
	<-creqsDone
	ch.upstream.Close()
	ch.closeRecording()
}

// copyInput copies what the person sends to the target, recording it as
// input (the Recorder drops it unless configured to keep input). At the
// client's EOF it sends EOF upstream. A write error means the target's
// side is closing, which run handles: it is not an error of the relay.
func (ch *channel) copyInput(errc chan<- error) {
	<-ch.started
	b := relayBuf{srv: ch.ss.srv}
	defer b.release()
	for {
		buf := b.buf()
		n, err := ch.client.Read(buf)
		if n > 0 {
			if c := ch.tee.Load(); c != nil {
				c.Input(buf[:n])
			}
			if _, werr := ch.upstream.Write(buf[:n]); werr != nil {
				errc <- nil
				return
			}
			ch.ss.bytesUp.Add(int64(n))
		}
		b.adapt(n)
		if err != nil {
			ch.upstream.CloseWrite()
			if errors.Is(err, io.EOF) {
				err = nil
			}
			errc <- err
			return
		}
	}
}

// markStarted lets the input copier go; see started.
func (ch *channel) markStarted() { ch.startOnce.Do(func() { close(ch.started) }) }

// copyOutput copies one of the target's output streams to the client,
// recording it. An error writing to the client ends the channel.
//
// Small writes coalesce on their own: a channel read returns everything
// the target has sent so far, up to the buffer (32 KiB once a read has
// filled the 2 KiB one, see relayBuf), so a burst of small packets leaves
// as one write (one SSH packet, one recording event), and a lone
// keystroke echo leaves at once.
func (ch *channel) copyOutput(errc chan<- error, dst io.Writer, src io.Reader) {
	b := relayBuf{srv: ch.ss.srv}
	defer b.release()
	for {
		buf := b.buf()
		n, err := src.Read(buf)
		if n > 0 {
			if c := ch.tee.Load(); c != nil {
				c.Output(buf[:n])
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				errc <- werr
				return
			}
			ch.ss.bytesDown.Add(int64(n))
		}
		b.adapt(n)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			errc <- err
			return
		}
	}
}

// stderrWriter writes to the client's stderr under errMu.
type stderrWriter struct{ ch *channel }

func (w stderrWriter) Write(p []byte) (int, error) { return w.ch.writeStderr(p) }

// writeStderr writes p to the client's stderr.
func (ch *channel) writeStderr(p []byte) (int, error) {
	ch.errMu.Lock()
	defer ch.errMu.Unlock()
	return ch.client.Stderr().Write(p)
}

// interactive reports whether the channel has a pty: a person at a
// terminal, who gets the registry's warnings.
func (ch *channel) interactive() bool {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.pty
}

// abort closes both sides after a relay error.
func (ch *channel) abort(err error) {
	ch.log.Debug().Err(err).Msg("relay error")
	ch.setEnd("relay error")
	ch.closeMu.Lock()
	defer ch.closeMu.Unlock()
	ch.claimed = true
	ch.client.Close()
	ch.upstream.Close()
}

// finish closes the client's side once the target's is done: with the
// target's exit status after the last output, or, if the session was cut
// (and the cut did not say goodbye already), with the cut's line.
func (ch *channel) finish() {
	if cause := ch.ss.cutError(); cause != nil {
		ch.goodbye(cause)
		return
	}
	ch.closeMu.Lock()
	defer ch.closeMu.Unlock()
	if ch.claimed {
		return
	}
	ch.claimed = true
	ch.mu.Lock()
	exit := ch.exit
	ch.mu.Unlock()
	if exit != nil {
		ch.client.SendRequest(exit.Type, false, exit.Payload)
	} else {
		ch.setEnd(endLabel(ch.ss.ctx))
	}
	ch.client.CloseWrite()
	ch.client.Close()
}

// goodbye ends the client's side of the channel for the reason err: its
// line on the person's stderr, exit status 255, then close (which implies
// EOF: no CloseWrite, which would race with the stdout copier's writes).
// ssh prints the line and exits 255. It writes three packets and waits
// for nothing else, so a cut can call it; run puts the line in the
// recording after the last output, and closes the target's side. If
// another close is being written, it returns when that one is.
func (ch *channel) goodbye(err error) {
	ch.closeMu.Lock()
	defer ch.closeMu.Unlock()
	if ch.claimed {
		return
	}
	line := "\r\n" + userLine(err) + "\r\n"
	ch.setEnd(err.Error())
	ch.bye, ch.claimed = line, true
	ch.writeStderr([]byte(line))
	ch.client.SendRequest("exit-status", false, gossh.Marshal(exitStatus{255}))
	ch.client.Close()
}

// endLabel is how a channel ended when the target sent no exit status.
func endLabel(ctx context.Context) string {
	if err := context.Cause(ctx); err != nil {
		return err.Error()
	}
	return "client closed"
}

// setEnd records how the channel ended, first reason wins.
func (ch *channel) setEnd(label string) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.endLabel == "" {
		ch.endLabel = label
	}
}

// exitStatus is the payload of an exit-status request (RFC 4254 6.10).
type exitStatus struct{ Status uint32 }

// exitSignal is the payload of an exit-signal request.
type exitSignal struct {
	Signal     string
	CoreDumped bool
	Message    string
	Lang       string
}

// upstreamRequests handles the target's channel requests: exit-status and
// exit-signal wait until the output is relayed; the rest go to the client.
func (ch *channel) upstreamRequests(reqs <-chan *gossh.Request) {
	for req := range reqs {
		switch req.Type {
		case "exit-status", "exit-signal":
			ch.mu.Lock()
			ch.exit = req
			ch.mu.Unlock()
			ch.setEnd(exitLabel(req))
			req.Reply(true, nil)
		default: // eow@openssh.com, keepalive@openssh.com, ...
			ok, err := ch.client.SendRequest(req.Type, req.WantReply, req.Payload)
			req.Reply(ok && err == nil, nil)
		}
	}
}

// exitLabel names an exit for the recording: "exit 0", "signal KILL".
func exitLabel(req *gossh.Request) string {
	if req.Type == "exit-status" {
		var e exitStatus
		if gossh.Unmarshal(req.Payload, &e) == nil {
			return "exit " + strconv.FormatUint(uint64(e.Status), 10)
		}
		return "exit"
	}
	var e exitSignal
	if gossh.Unmarshal(req.Payload, &e) == nil {
		return "signal " + e.Signal
	}
	return "signal"
}

// closeRecording closes the channel's recording with how the channel
// ended, and seals it in the audit trail.
func (ch *channel) closeRecording() {
	ch.mu.Lock()
	c, label := ch.cast, ch.endLabel
	ch.cast = nil
	ch.mu.Unlock()
	if c == nil {
		return
	}
	if label == "" {
		label = endLabel(ch.ss.ctx)
	}
	ch.tee.Store(nil)
	meta, err := c.Close(label)
	if err != nil {
		ch.log.Error().Err(err).Msg("recording did not close cleanly")
	}
	ss := ch.ss
	ss.srv.audit(ss.ctx, "recording.sealed", ss.person, ss.auditFields(map[string]any{
		"recording": meta.ID, "channel": ch.id, "sha256": meta.SHA256, "bytes": meta.Bytes,
		"state": meta.State, "end_reason": meta.EndReason, "path": meta.Path,
	}))
}
