package postgres

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"syscall"
)

// relayBufSize is the size of each relay buffer: reads and writes go
// through in chunks of up to this many bytes.
const relayBufSize = 64 << 10

// smallReadSize is the size of the buffer a pipe without a raw connection
// (TLS) reads into while it idles (see pipe.small): most client messages
// fit.
const smallReadSize = 2 << 10

// errBoundary stops a pipe at a message boundary (see pipe.stop).
var errBoundary = errors.New("at a message boundary")

// malformed is the error of a message the proxy cannot parse.
func malformed(typ byte) error {
	return refuse(codeProtocolViolation, "malformed message", "malformed %q message", typ)
}

// framer is one direction's view of the messages going through a pipe.
type framer interface {
	// kind says whether messages of type typ are held whole and shown to
	// message; an error refuses the type (before any of it goes through).
	kind(typ byte) (whole bool, err error)
	// streamed sees the header of a message that streams through (n is
	// its body's length), once.
	streamed(typ byte, n int)
	// message sees a message held whole, once, before it goes through.
	message(typ byte, body []byte) error
}

// pipe is one direction of the relay: it reads src in big chunks, frames
// the messages by their headers, shows its framer the ones the proxy
// records, and writes everything through to dst unchanged, one chunk at a
// time: all that one read brought goes out in one write, so a batch of
// messages costs one write, not one per message. Only messages the framer
// wants whole are ever held whole; the rest (DataRow, CopyData, ...)
// stream through at any size.
type pipe struct {
	src io.Reader
	// raw, when not nil, is src's raw connection, which the pipe then
	// reads itself: it takes a buffer only once there is input, and gives
	// it back while it waits for more, so an idle session holds no relay
	// buffer; and after a read that took all there was it waits for more
	// without the read that would only say so (see stepRaw). nil means
	// src.Read, into a buffer the pipe keeps.
	raw syscall.RawConn
	dst io.Writer
	f   framer
	buf *[]byte // nil while the pipe holds none (see raw and small)
	n   int     // bytes buffered in *buf, not yet written
	// readFn is rawRead as a func value, made once; rerr is how it ended.
	readFn func(fd uintptr) bool
	rerr   error
	// small, when not nil, keeps a pipe without raw from holding a relay
	// buffer while it idles: after a read that did not fill the room it
	// had and left nothing buffered, the pipe gives its buffer back and
	// reads next into small, taking a buffer again once input comes. A
	// read that fills small goes through on its own, and the next read is
	// into a buffer: a burst longer than small costs one more write (over
	// TLS, whose reads return a record at most, one more per record of a
	// bulk transfer). nil means the pipe keeps its buffer.
	small []byte
	// skip is how many bytes of the current streamed message are still to
	// come: while it is not 0, dst is in the middle of a message.
	skip int
	// limit bounds the messages held whole.
	limit int
	// stop makes the pipe end at the next message boundary, with
	// errBoundary.
	stop bool
	// count is added the bytes written through.
	count *atomic.Int64
	// getBuf and putBuf get and give back relay buffers (see Server.bufs).
	getBuf func() *[]byte
	putBuf func(*[]byte)
	// sysRead, if set, stands in for read(2) in rawRead: tests count the
	// system calls with it.
	sysRead func(fd int, b []byte) (int, error)
}

// atBoundary reports whether dst is between two messages.
func (p *pipe) atBoundary() bool { return p.skip == 0 }

// step reads from src and writes through whatever can go: once, or (when
// the pipe reads raw) for as long as short reads keep taking all there is.
// It returns nil only when there may be more input to read at once.
func (p *pipe) step() error {
	if p.raw != nil {
		return p.stepRaw()
	}
	var m, room int
	var rerr error
	switch {
	case p.buf == nil && p.small != nil:
		m, rerr = p.src.Read(p.small)
		room = len(p.small)
		if m > 0 {
			p.buf = p.getBuf()
			copy(*p.buf, p.small[:m])
		}
	default:
		if p.buf == nil {
			p.buf = p.getBuf()
		}
		room = len(*p.buf) - p.n
		m, rerr = p.src.Read((*p.buf)[p.n:])
	}
	p.n += m
	if m > 0 || p.stop {
		if err := p.process(); err != nil {
			return err
		}
	}
	if p.small != nil && p.n == 0 && m < room {
		// Nothing more is waiting, it seems: idle without a buffer.
		p.release()
	}
	return rerr
}

// process frames the buffered bytes: every whole message and every byte
// of a streamed one goes through in one write; a message held whole but not
// yet complete stays buffered, the buffer growing to hold it.
func (p *pipe) process() error {
	var buf []byte // empty when the pipe holds no buffer (stopping while it waits)
	if p.buf != nil {
		buf = (*p.buf)[:p.n]
	}
	i, need := 0, 0
	var perr error
	for i < len(buf) || p.stop {
		if p.skip > 0 {
			k := min(p.skip, len(buf)-i)
			i += k
			p.skip -= k
			if p.skip > 0 {
				break
			}
			continue
		}
		if p.stop {
			perr = errBoundary
			break
		}
		if len(buf)-i < 5 {
			break
		}
		typ := buf[i]
		l := int(int32(binary.BigEndian.Uint32(buf[i+1:])))
		if l < 4 {
			perr = refuse(codeProtocolViolation, "malformed message", "invalid message length %d of a %q message", l, typ)
			break
		}
		whole, err := p.f.kind(typ)
		if err != nil {
			perr = err
			break
		}
		if !whole {
			p.f.streamed(typ, l-4)
			i += 5
			p.skip = l - 4
			continue
		}
		if l+1 > p.limit {
			perr = refuse(codeProgramLimit, "message too long", "a %q message of %d bytes is over jitproxy's limit of %d bytes for messages it records", typ, l+1, p.limit)
			break
		}
		if len(buf)-i < l+1 {
			need = l + 1
			break
		}
		if err := p.f.message(typ, buf[i+5:i+1+l]); err != nil {
			perr = err
			break
		}
		i += l + 1
	}
	if i > 0 {
		if _, err := p.dst.Write(buf[:i]); err != nil {
			return &writeError{err}
		}
		p.count.Add(int64(i))
	}
	if p.buf == nil {
		return perr
	}
	p.n = copy(*p.buf, buf[i:])
	if perr != nil {
		return perr
	}
	switch {
	case need > len(*p.buf):
		// Room for the whole message: rare, and only as large as allowed.
		b := make([]byte, need)
		copy(b, (*p.buf)[:p.n])
		p.putBuf(p.buf)
		p.buf = &b
	case need == 0 && len(*p.buf) > relayBufSize && p.n <= relayBufSize:
		// Back to a pooled buffer after a large message.
		b := p.getBuf()
		copy(*b, (*p.buf)[:p.n])
		p.buf = b
	}
	return nil
}

// stepRaw relays from raw inside one raw.Read, whose function (rawRead)
// reads, frames and writes through until a read fills the buffer (more is
// waiting: step again), src ends, or the relay fails. Between reads it has
// the runtime wait for input, holding no buffer. A read shorter than the
// room it had took all that the socket held, so the pipe then waits at
// once rather than read again only to learn there is nothing (EAGAIN):
// that saves a read per message batch, two syscalls per transaction of a
// request-response client. It is safe because the runtime's poller is
// edge-triggered: input that comes after the read wakes the wait, input
// that came before it was read; and within one raw.Read the runtime never
// forgets a wake-up (it does at the start of each). The deadlines still
// interrupt: the runtime checks them before each wait, and a full read
// returns to step, whose next raw.Read checks them too. A Close of src
// waits for the write in progress to dst: give dst a write deadline first.
func (p *pipe) stepRaw() error {
	if p.readFn == nil {
		p.readFn = p.rawRead
	}
	p.rerr = nil
	if err := p.raw.Read(p.readFn); err != nil {
		return err
	}
	return p.rerr
}

// idle gives the buffer back while the pipe waits for input, unless part
// of a message is in it.
func (p *pipe) idle() {
	if p.n == 0 {
		p.release()
	}
}

// release gives the pipe's buffer back: while it idles, or once it has
// ended.
func (p *pipe) release() {
	if p.buf != nil {
		p.putBuf(p.buf)
		p.buf = nil
	}
}

// writeError is a failed write to a pipe's dst: that side is gone.
type writeError struct{ err error }

func (e *writeError) Error() string { return fmt.Sprintf("write: %v", e.err) }
func (e *writeError) Unwrap() error { return e.err }

// clientFramer sees the frontend messages a client sends: it refuses what
// no frontend may send after startup, and tells the tracker (if the
// session is recorded) what the proxy records.
type clientFramer struct {
	t *tracker // nil: not recorded
	// terminated is set when the client sends Terminate: whichever side
	// then hangs up first, the client ended the session.
	terminated *atomic.Bool
}

func (f clientFramer) kind(typ byte) (bool, error) {
	switch typ {
	case 'Q', 'P', 'B', 'E', 'C', 'F':
		return f.t != nil, nil
	case 'D', 'S', 'H', 'X', 'd', 'c', 'f':
		return false, nil
	}
	return false, refuse(codeProtocolViolation, "bad message", "invalid frontend message type %q: this is a PostgreSQL endpoint; connect with psql", typ)
}

func (f clientFramer) streamed(typ byte, n int) {
	if typ == 'X' {
		f.terminated.Store(true)
	}
	if f.t == nil {
		return
	}
	switch typ {
	case 'D', 'S':
		f.t.sent(typ)
	case 'd':
		f.t.sentCopyData(n)
	}
}

func (f clientFramer) message(typ byte, body []byte) error {
	switch typ {
	case 'Q':
		return f.t.sentQuery(body)
	case 'P':
		return f.t.sentParse(body)
	case 'B':
		return f.t.sentBind(body)
	case 'E':
		return f.t.sentExecute(body)
	case 'C':
		return f.t.sentClose(body)
	case 'F':
		return f.t.sentFunctionCall(body)
	}
	return nil
}

// serverFramer sees the backend messages a target sends and tells the
// tracker (if the session is recorded) what ends each statement. It
// refuses nothing: the target is trusted to speak PostgreSQL.
type serverFramer struct {
	t *tracker // nil: not recorded
}

func (f serverFramer) kind(typ byte) (bool, error) {
	return f.t != nil && (typ == 'C' || typ == 'E'), nil
}

func (f serverFramer) streamed(typ byte, n int) {
	t := f.t
	if t == nil {
		return
	}
	switch typ {
	case 'D':
		t.dataRows++
	case 'd':
		t.copyOut += int64(n)
	case '1':
		t.answered('P')
	case '2':
		t.answered('B')
	case '3':
		t.answered('C')
	case 'T', 'n':
		t.answered('D')
	case 's', 'I':
		t.executeDone()
	case 'G', 'H', 'W':
		t.copyStarted()
	case 'Z':
		t.readyForQuery()
	}
}

func (f serverFramer) message(typ byte, body []byte) error {
	switch typ {
	case 'C':
		f.t.commandComplete(body)
	case 'E':
		f.t.errorResponse(body)
	}
	return nil
}
