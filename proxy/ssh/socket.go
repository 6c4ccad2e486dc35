package ssh

import (
	"net"
	"syscall"
)

// shutdown shuts c down both ways without waiting for the goroutines
// reading it, unlike Close, which waits for them to let go of the
// descriptor: a TCP connection (also inside a prefixConn) gets
// shutdown(2), which queues a FIN after the bytes already written and
// wakes its readers. Anything
// else (a -J channel) is closed: its close follows the data already sent
// on it (its CloseWrite would race with the inner transport's writes).
// The descriptor itself is closed later, by the session's own goroutines.
func shutdown(c net.Conn) {
	if pc, ok := c.(*prefixConn); ok {
		c = pc.Conn
	}
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			var serr error
			err := raw.Control(func(fd uintptr) { serr = shutdownFD(fd) })
			if err == nil && serr == nil {
				return
			}
		}
	}
	c.Close()
}

// cork holds back c's small writes until uncork (TCP_CORK, on Linux), so
// that the packets of a goodbye leave as one segment; it does nothing
// for other connections and systems. It returns the uncork.
func cork(c net.Conn) (uncork func()) {
	if pc, ok := c.(*prefixConn); ok {
		c = pc.Conn
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return func() {}
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return func() {}
	}
	if raw.Control(func(fd uintptr) { setCork(fd, true) }) != nil {
		return func() {}
	}
	return func() { raw.Control(func(fd uintptr) { setCork(fd, false) }) }
}
