//go:build unix

package postgres

import (
	"io"
	"net"
	"os"
	"syscall"
)

// rawConn returns c's raw connection if the relay can read it itself (a
// TCP connection without TLS), or nil.
func rawConn(c net.Conn) syscall.RawConn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// rawRead is the function of the pipe's raw.Read (see stepRaw). Each
// call comes with input waiting, or possibly waiting: it reads into the
// pipe's buffer (taking one if it has none) and writes through what it can.
// It returns false to have the runtime wait for more input: after EAGAIN,
// or at once after a short read; true to return to step, with p.rerr set
// if the relay ended or failed.
func (p *pipe) rawRead(fd uintptr) bool {
	if p.buf == nil {
		p.buf = p.getBuf()
	}
	read := syscall.Read
	if p.sysRead != nil {
		read = p.sysRead
	}
	for {
		room := len(*p.buf) - p.n
		n, err := read(int(fd), (*p.buf)[p.n:])
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			p.idle()
			return false
		case err != nil:
			p.rerr = os.NewSyscallError("read", err)
			return true
		case n == 0:
			p.rerr = io.EOF
			return true
		}
		p.n += n
		if err := p.process(); err != nil {
			p.rerr = err
			return true
		}
		if n == room {
			return true
		}
		p.idle()
		return false
	}
}
