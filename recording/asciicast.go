package recording

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"
)

// Terminal size a cast header gets when the session has no pty.
const (
	defaultWidth  = 80
	defaultHeight = 24
)

// SSHMeta describes the SSH channel a Cast records.
type SSHMeta struct {
	// Session is the session ID and Channel the channel within it; both
	// name the file, so they may hold only letters, digits, '.', '_' and
	// '-'.
	Session string
	Channel string
	// Person is the identity, Login the login on Target, Amendment the
	// amendment the session rides on.
	Person    string
	Login     string
	Target    string
	Amendment string
	// Command is the exec command, or "" for a shell.
	Command string
	// Width and Height are the pty size; 0 (no pty) means 80x24.
	Width, Height int
	// Term is the pty's TERM; "" means Env["TERM"].
	Term string
	// Env is the environment the client sent; the header keeps TERM and
	// SHELL only.
	Env map[string]string
}

// Header is the first line of an asciicast v2 file.
type Header struct {
	Version   int               `json:"version"`
	Width     int               `json:"width"`
	Height    int               `json:"height"`
	Timestamp int64             `json:"timestamp,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
	Title     string            `json:"title,omitempty"`
	Command   string            `json:"command,omitempty"`
}

// Cast records one SSH channel as an asciicast v2 file. Output, Input and
// Resize are safe for concurrent use with each other and with Close, and do
// not allocate once the scratch buffer has grown to the largest write.
type Cast struct {
	w           *writer
	recordInput bool
	start       time.Time // the time of elapsed 0

	// Guarded by w.mu.
	scratch []byte        // the event being encoded
	out, in utf8Tail      // incomplete UTF-8 at the end of the last o and i events
	last    time.Duration // elapsed time of the last event: times never go back
}

// StartSSH creates the recording file for one SSH channel, writes its
// header and its sidecar, and returns the Cast to record into. The Cast
// runs a flusher goroutine until Close: the caller must close it.
func (r *Recorder) StartSSH(m SSHMeta) (*Cast, error) {
	if !validID(m.Session) {
		return nil, fmt.Errorf("recording: session ID %q: use letters, digits, '.', '_' and '-'", m.Session)
	}
	if !validID(m.Channel) {
		return nil, fmt.Errorf("recording: channel ID %q: use letters, digits, '.', '_' and '-'", m.Channel)
	}
	meta := Meta{
		ID:        m.Session + "-" + m.Channel,
		Kind:      KindSSH,
		Session:   m.Session,
		Channel:   m.Channel,
		Person:    m.Person,
		Login:     m.Login,
		Target:    m.Target,
		Amendment: m.Amendment,
		Command:   m.Command,
		Start:     r.now(),
		State:     StateOpen,
	}
	f, err := r.create(&meta, ".cast")
	if err != nil {
		return nil, err
	}
	c, err := r.startCast(meta, m, f)
	if err != nil {
		os.Remove(meta.Path)
		return nil, err
	}
	return c, nil
}

// startCast writes the header of a cast to f and starts it.
func (r *Recorder) startCast(meta Meta, m SSHMeta, f file) (*Cast, error) {
	h := castHeader(meta, m)
	b, err := json.Marshal(h)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("recording: encode %s header: %w", meta.ID, err)
	}
	w, err := r.open(meta, f, append(b, '\n'))
	if err != nil {
		return nil, err
	}
	return &Cast{w: w, recordInput: r.recordInput, start: meta.Start, scratch: make([]byte, 0, 512)}, nil
}

// castHeader is the header of the cast that meta and m describe.
func castHeader(meta Meta, m SSHMeta) Header {
	h := Header{
		Version:   2,
		Width:     m.Width,
		Height:    m.Height,
		Timestamp: meta.Start.Unix(),
		Title:     fmt.Sprintf("%s@%s (%s)", m.Login, m.Target, m.Person),
		Command:   m.Command,
	}
	if m.Amendment != "" {
		h.Title = fmt.Sprintf("%s@%s (%s, amendment %s)", m.Login, m.Target, m.Person, m.Amendment)
	}
	if h.Width <= 0 || h.Height <= 0 {
		h.Width, h.Height = defaultWidth, defaultHeight
	}
	term := m.Term
	if term == "" {
		term = m.Env["TERM"]
	}
	if term != "" {
		h.Env = map[string]string{"TERM": term}
	}
	if sh := m.Env["SHELL"]; sh != "" {
		if h.Env == nil {
			h.Env = map[string]string{}
		}
		h.Env["SHELL"] = sh
	}
	return h
}

// Output records what the target sent to the user (stdout and stderr).
func (c *Cast) Output(p []byte) { c.data('o', &c.out, p) }

// Input records what the user typed; it does nothing unless
// Config.RecordInput is set.
func (c *Cast) Input(p []byte) {
	if c.recordInput {
		c.data('i', &c.in, p)
	}
}

// Resize records a window change to width columns and height rows.
func (c *Cast) Resize(width, height int) {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	if !c.w.writable() {
		return
	}
	b := c.begin('r')
	b = strconv.AppendInt(b, int64(width), 10)
	b = append(b, 'x')
	b = strconv.AppendInt(b, int64(height), 10)
	c.end(b)
}

// data records p as an event of type code, carrying an incomplete UTF-8
// sequence at its end in tail.
func (c *Cast) data(code byte, tail *utf8Tail, p []byte) {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	if !c.w.writable() {
		return
	}
	b := c.begin(code)
	n := len(b)
	b = tail.appendEscaped(b, p)
	if len(b) == n {
		c.scratch = b
		return // nothing whole to record yet
	}
	c.end(b)
}

// begin starts an event in the scratch buffer: `[elapsed, "code", "`.
// c.w.mu must be held.
func (c *Cast) begin(code byte) []byte {
	el := c.w.now().Sub(c.start)
	if el < c.last {
		el = c.last
	}
	c.last = el
	b := append(c.scratch[:0], '[')
	b = strconv.AppendFloat(b, el.Seconds(), 'f', 6, 64)
	b = append(b, ", \""...)
	b = append(b, code)
	b = append(b, "\", \""...)
	return b
}

// end finishes the event in b, keeps b as the scratch buffer and writes it.
// c.w.mu must be held.
func (c *Cast) end(b []byte) {
	b = append(b, "\"]\n"...)
	c.scratch = b
	c.w.write(b)
}

// Close records what is left of a character split at the end of the last
// write (as U+FFFD), flushes, syncs and closes the file, and rewrites the
// sidecar with the end, endReason, size and SHA-256. It returns the final
// metadata, and the first write error if there was one (then State is
// StateIncomplete). Calling Close again returns the same; writes after
// Close are dropped.
func (c *Cast) Close(endReason string) (Meta, error) {
	return c.w.close(endReason, func() {
		for _, t := range []struct {
			code byte
			tail *utf8Tail
		}{{'o', &c.out}, {'i', &c.in}} {
			if t.tail.n > 0 {
				c.end(t.tail.appendInvalid(c.begin(t.code)))
			}
		}
	})
}

// Err returns the first write error, or nil. After one, the recording
// drops everything else: the proxy decides whether the session goes on.
func (c *Cast) Err() error { return c.w.Err() }

// Meta returns the recording's metadata as it is now: State is StateOpen
// until Close.
func (c *Cast) Meta() Meta { return c.w.snapshot() }
