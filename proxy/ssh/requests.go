package ssh

import (
	"maps"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jitproxy/jitproxy/recording"
)

// Channel request payloads (RFC 4254 6.2, 6.4, 6.5, 6.7).
type (
	ptyRequest struct {
		Term                  string
		Columns, Rows         uint32
		WidthPixels, HeightPx uint32
		Modes                 string
	}
	envRequest struct {
		Name, Value string
	}
	execRequest struct {
		Command string
	}
	windowChange struct {
		Columns, Rows         uint32
		WidthPixels, HeightPx uint32
	}
)

// Lines for the requests the bastion never relays. ssh sends agent
// forwarding without asking for a reply, so the person would not know it
// is missing unless told on stderr.
const (
	agentRefused = "jitproxy: agent forwarding is not relayed through jitproxy; this session runs without it"
	x11Refused   = "jitproxy: X11 forwarding is not relayed through jitproxy; this session runs without it"
)

// clientRequests handles the client's channel requests in order: it
// notes what the recording needs, starts the recording before the shell,
// exec or subsystem request goes upstream, refuses agent and X11
// forwarding, and relays the rest with the target's answer. It returns
// when the client's side of the channel is closed, and closes the
// target's.
func (ch *channel) clientRequests(reqs <-chan *gossh.Request) {
	defer ch.upstream.Close()
	defer ch.markStarted()
	for req := range reqs {
		switch req.Type {
		case "pty-req":
			var p ptyRequest
			if gossh.Unmarshal(req.Payload, &p) != nil {
				req.Reply(false, nil)
				continue
			}
			ch.mu.Lock()
			ch.pty, ch.term, ch.width, ch.height = true, p.Term, int(p.Columns), int(p.Rows)
			ch.mu.Unlock()
		case "env":
			var e envRequest
			if gossh.Unmarshal(req.Payload, &e) == nil {
				ch.mu.Lock()
				if ch.env == nil {
					ch.env = make(map[string]string)
				}
				if len(ch.env) < maxEnv {
					ch.env[e.Name] = e.Value
				}
				ch.mu.Unlock()
			}
		case "window-change":
			var w windowChange
			if gossh.Unmarshal(req.Payload, &w) == nil {
				ch.mu.Lock()
				ch.width, ch.height = int(w.Columns), int(w.Rows)
				ch.mu.Unlock()
				if c := ch.tee.Load(); c != nil {
					c.Resize(int(w.Columns), int(w.Rows))
				}
			}
		case "shell", "exec", "subsystem":
			if err := ch.startRecording(req); err != nil {
				// A refused request makes ssh exit before it prints the
				// stderr that came with it: accept, then end the channel
				// with the line.
				req.Reply(true, nil)
				ch.markStarted()
				ch.goodbye(err)
				ch.upstream.Close()
				continue
			}
		case "auth-agent-req@openssh.com":
			ch.log.Info().Msg("agent forwarding refused")
			ch.writeStderr([]byte(agentRefused + "\r\n"))
			req.Reply(false, nil)
			continue
		case "x11-req":
			ch.log.Info().Msg("X11 forwarding refused")
			ch.writeStderr([]byte(x11Refused + "\r\n"))
			req.Reply(false, nil)
			continue
		}
		ok, err := ch.upstream.SendRequest(req.Type, req.WantReply, req.Payload)
		req.Reply(ok && err == nil, nil)
		switch req.Type {
		case "shell", "exec", "subsystem":
			ch.markStarted()
		}
	}
}

// startRecording starts the channel's recording as its shell, exec or
// subsystem request goes upstream. A recording that cannot start refuses
// the request when recording is required, and is logged otherwise.
func (ch *channel) startRecording(req *gossh.Request) error {
	ss := ch.ss
	rec := ss.srv.cfg.Recorder
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if rec == nil || ch.cast != nil {
		return nil // not recording, or a second start that the target refuses
	}
	var command string
	switch req.Type {
	case "exec", "subsystem":
		var e execRequest
		if gossh.Unmarshal(req.Payload, &e) != nil {
			return refuse("malformed request", "malformed %s request", req.Type)
		}
		command = e.Command
		if req.Type == "subsystem" {
			command = "subsystem " + e.Command
		}
	}
	c, err := rec.StartSSH(recording.SSHMeta{
		Session:   ss.id,
		Channel:   ch.id,
		Person:    ss.person,
		Login:     ss.login,
		Target:    ss.t.Name,
		Amendment: ss.amend.ID,
		Command:   command,
		Width:     ch.width,
		Height:    ch.height,
		Term:      ch.term,
		Env:       maps.Clone(ch.env),
	})
	if err != nil {
		ch.log.Error().Err(err).Msg("recording did not start")
		if ss.srv.cfg.RequireRecording {
			return refuse("recording failed", "this session cannot be recorded and recording is required, so it did not start; try again, and tell a jitproxy administrator if it lasts")
		}
		return nil
	}
	ch.cast = c
	if req.Type != "subsystem" {
		ch.tee.Store(c)
	}
	return nil
}
