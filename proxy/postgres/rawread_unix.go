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

// rawRead is the pipe's read on its raw connection (see readRaw): with
// input waiting it reads it into the pipe's buffer, taking one if it has
// none; with none it gives the buffer back (unless part of a message is in
// it) and has the runtime wait for input.
func (p *pipe) rawRead(fd uintptr) bool {
	if p.buf == nil {
		p.buf = p.getBuf()
	}
	for {
		n, err := syscall.Read(int(fd), (*p.buf)[p.n:])
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			if p.n == 0 {
				p.putBuf(p.buf)
				p.buf = nil
			}
			return false
		case err != nil:
			p.rerr = os.NewSyscallError("read", err)
		case n == 0:
			p.rerr = io.EOF
		default:
			p.rn = n
		}
		return true
	}
}
