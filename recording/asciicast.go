package recording

import (
	"encoding/binary"
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
// Resize are safe for concurrent use with each other and with Close. They
// copy the bytes into the recording's pending buffer and return, without
// allocating once it has grown; the Recorder's workers escape, compress
// and write them. When the workers are maxPending bytes behind, they wait.
type Cast struct {
	w           *writer
	recordInput bool
	start       time.Time // the time of elapsed 0

	last time.Duration // elapsed time of the last event, guarded by w.mu: times never go back

	// Owned by the writer's worker (see writer.content).
	out, in utf8Tail // incomplete UTF-8 at the end of the last o and i events
}

// StartSSH creates the recording file for one SSH channel, writes its
// header and its sidecar, and returns the Cast to record into. The caller
// must close it: the Recorder's goroutines run while it has a recording
// open.
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
	c := &Cast{recordInput: r.recordInput, start: meta.Start}
	w, err := r.open(meta, f, append(b, '\n'))
	if err != nil {
		return nil, err
	}
	w.encode, w.final = c.encode, c.final
	c.w = w
	return c, nil
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
func (c *Cast) Output(p []byte) { c.record('o', p) }

// Input records what the user typed; it does nothing unless
// Config.RecordInput is set.
func (c *Cast) Input(p []byte) {
	if c.recordInput {
		c.record('i', p)
	}
}

// Resize records a window change to width columns and height rows.
func (c *Cast) Resize(width, height int) {
	var b [48]byte
	d := strconv.AppendInt(b[:0], int64(width), 10)
	d = append(d, 'x')
	d = strconv.AppendInt(d, int64(height), 10)
	c.record('r', d)
}

// recordHeader is the size of an event's header in the pending buffer:
// the code, the elapsed time in nanoseconds and the data's length.
const recordHeader = 1 + 8 + 4

// record appends p to the pending buffer as events of type code, raw: the
// worker escapes them (encode). A write larger than maxPending becomes
// several events with the same time, so pending stays bounded.
func (c *Cast) record(code byte, p []byte) {
	for len(p) > maxPending {
		c.recordOne(code, p[:maxPending])
		p = p[maxPending:]
	}
	c.recordOne(code, p)
}

// recordOne appends one event to the pending buffer.
func (c *Cast) recordOne(code byte, p []byte) {
	if len(p) == 0 {
		return
	}
	w := c.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.reserve(recordHeader + len(p)) {
		return
	}
	el := w.now().Sub(c.start)
	if el < c.last {
		el = c.last
	}
	c.last = el
	w.grow(recordHeader + len(p))
	w.pending = append(w.pending, code)
	w.pending = binary.LittleEndian.AppendUint64(w.pending, uint64(el))
	w.pending = binary.LittleEndian.AppendUint32(w.pending, uint32(len(p)))
	w.pending = append(w.pending, p...)
	w.appended()
}

// encode turns a batch of raw events into asciicast lines in w.content,
// writing out a frame whenever it is full.
func (c *Cast) encode(batch []byte) error {
	w := c.w
	for len(batch) >= recordHeader {
		code := batch[0]
		el := time.Duration(binary.LittleEndian.Uint64(batch[1:]))
		n := int(binary.LittleEndian.Uint32(batch[9:]))
		data := batch[recordHeader : recordHeader+n]
		batch = batch[recordHeader+n:]

		var tail *utf8Tail
		switch code {
		case 'o':
			tail = &c.out
		case 'i':
			tail = &c.in
		}
		mark := len(w.content)
		w.content = appendEventStart(w.content, el, code)
		body := len(w.content)
		// kept: the event was started for good. A spill may write its
		// start out and empty w.content part-way through, so only this
		// says whether it needs its closing `"]`.
		kept := false
		for first := true; len(data) > 0 || first; first = false {
			step := data[:min(len(data), escapeStep)]
			data = data[len(step):]
			if tail == nil {
				w.content = appendEscaped(w.content, step)
			} else {
				w.content = tail.appendEscaped(w.content, step)
			}
			if first && len(w.content) == body {
				w.content = w.content[:mark] // nothing whole to record yet
				break
			}
			kept = true
			if len(data) > 0 {
				if err := w.spillIfFull(); err != nil {
					return err
				}
			}
		}
		if kept {
			w.content = append(w.content, "\"]\n"...)
		}
		if err := w.spillIfFull(); err != nil {
			return err
		}
	}
	return nil
}

// appendEventStart appends the start of an event: `[elapsed, "code", "`.
func appendEventStart(b []byte, el time.Duration, code byte) []byte {
	b = append(b, '[')
	b = strconv.AppendFloat(b, el.Seconds(), 'f', 6, 64)
	b = append(b, ", \""...)
	b = append(b, code)
	b = append(b, "\", \""...)
	return b
}

// final records what is left of a character split at the end of the last
// output or input (as U+FFFD), at the time of closing. It runs in close,
// which owns the writer by then.
func (c *Cast) final(at time.Time) {
	el := max(at.Sub(c.start), c.last)
	for _, t := range []struct {
		code byte
		tail *utf8Tail
	}{{'o', &c.out}, {'i', &c.in}} {
		if t.tail.n > 0 {
			c.w.content = appendEventStart(c.w.content, el, t.code)
			c.w.content = t.tail.appendInvalid(c.w.content)
			c.w.content = append(c.w.content, "\"]\n"...)
		}
	}
}

// Close records what is left of a character split at the end of the last
// write (as U+FFFD), flushes, syncs and closes the file, and rewrites the
// sidecar with the end, endReason, size and SHA-256. It returns the final
// metadata, and the first write error if there was one (then State is
// StateIncomplete). Calling Close again returns the same; writes after
// Close are dropped.
func (c *Cast) Close(endReason string) (Meta, error) { return c.w.close(endReason) }

// Err returns the first write error, or nil. After one, the recording
// drops everything else: the proxy decides whether the session goes on.
func (c *Cast) Err() error { return c.w.Err() }

// Meta returns the recording's metadata as it is now: State is StateOpen
// until Close.
func (c *Cast) Meta() Meta { return c.w.snapshot() }
