package ssh

import (
	"errors"
	"net"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// errNoDeadlines is what chanConn's deadline methods return: the inner
// handshake is bounded by a timer that closes the connection instead.
var errNoDeadlines = errors.New("sshproxy: deadlines are not supported on a channel")

// chanConn is a direct-tcpip channel of an ssh -J outer connection as the
// net.Conn that a target's in-process server runs on. Its addresses are
// the outer connection's, so that a certificate's source-address option
// is checked against the client's real address.
type chanConn struct {
	gossh.Channel
	local, remote net.Addr
}

func (c *chanConn) LocalAddr() net.Addr                { return c.local }
func (c *chanConn) RemoteAddr() net.Addr               { return c.remote }
func (c *chanConn) SetDeadline(t time.Time) error      { return errNoDeadlines }
func (c *chanConn) SetReadDeadline(t time.Time) error  { return errNoDeadlines }
func (c *chanConn) SetWriteDeadline(t time.Time) error { return errNoDeadlines }
