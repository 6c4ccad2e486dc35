//go:build !unix

package postgres

import (
	"net"
	"syscall"
)

// rawConn returns nil: elsewhere than on Unix the relay reads through
// net.Conn, into buffers it keeps.
func rawConn(net.Conn) syscall.RawConn { return nil }

func (p *pipe) rawRead(uintptr) bool { panic("unreachable") }
