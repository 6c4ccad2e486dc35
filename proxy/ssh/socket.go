package ssh

import (
	"net"
	"syscall"
)

// rawConn returns the descriptor access of c when it is a socket (also
// inside a prefixConn), or nil for anything else, such as a -J channel.
func rawConn(c net.Conn) syscall.RawConn {
	if pc, ok := c.(*prefixConn); ok {
		c = pc.Conn
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

// shutdown shuts the target's connection c down both ways without waiting
// for the goroutines reading it, unlike Close, which waits for them to let
// go of the descriptor: shutdown(2) queues a FIN after the bytes already
// written and wakes its readers. A connection that is not a socket is
// closed. The descriptor itself is closed later, by the session's own
// goroutines.
func shutdown(c net.Conn) {
	if raw := rawConn(c); raw != nil {
		var serr error
		if raw.Control(func(fd uintptr) { serr = shutdownFD(fd) }) == nil && serr == nil {
			return
		}
	}
	c.Close()
}

// cork holds back c's small writes until uncork (TCP_CORK, on Linux), so
// that the packets of a goodbye leave as one segment; it does nothing
// for other connections and systems. It returns the uncork.
func cork(c net.Conn) (uncork func()) {
	raw := rawConn(c)
	if raw == nil || raw.Control(func(fd uintptr) { setCork(fd, true) }) != nil {
		return func() {}
	}
	return func() { raw.Control(func(fd uintptr) { setCork(fd, false) }) }
}
