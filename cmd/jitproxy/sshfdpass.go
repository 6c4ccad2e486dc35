//go:build unix

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	sshproxy "github.com/jitproxy/jitproxy/proxy/ssh"
)

// The fd-passing single hop (`ssh-proxy --fdpass`, with ssh's
// ProxyUseFdpass yes). ssh gives the ProxyCommand one end of a Unix socket
// pair as its standard output and waits for a connected socket on it
// (SCM_RIGHTS). ssh-proxy connects to the bastion, writes the preamble,
// peeks at the answer without consuming it, and on an SSH version line
// hands the socket to ssh and exits: ssh then talks to the bastion itself,
// with no relay process between them. On a JITPROXY-ERROR line it prints
// the reason, as the relay does, and exits 255 without handing anything
// over. The bastion sees the same bytes either way.

// fdpassUnavailable says why out cannot take a file descriptor from us: nil
// when it is a Unix socket, which is what ssh makes the ProxyCommand's
// standard output when ProxyUseFdpass is on.
func fdpassUnavailable(out *os.File) error {
	sa, err := syscall.Getsockname(int(out.Fd()))
	if errors.Is(err, syscall.ENOTSOCK) {
		return errors.New("standard output is not a socket (ssh's ProxyUseFdpass is off)")
	}
	if err != nil {
		return fmt.Errorf("standard output: %w", err)
	}
	if _, ok := sa.(*syscall.SockaddrUnix); !ok {
		return errors.New("standard output is not a Unix socket (ssh's ProxyUseFdpass is off)")
	}
	return nil
}

// passBastionConn is the fd-passing ProxyCommand: it writes the preamble
// for target on conn, waits (at most timeout) for the bastion's first line,
// and sends conn's socket over out with SCM_RIGHTS. A refusal comes back as
// a *sshproxy.RefusedError, exactly as sshproxy.ProxyCommand returns it,
// and nothing is sent. conn is closed on return; ssh keeps its own copy of
// the socket.
func passBastionConn(ctx context.Context, conn *net.TCPConn, target string, out *os.File, timeout time.Duration) error {
	defer conn.Close()
	if err := sshproxy.CheckTargetName(target); err != nil {
		return err // refused as the relay refuses it
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	conn.SetDeadline(time.Now().Add(timeout))
	if err := sshproxy.WritePreamble(conn, target); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("sshproxy: write preamble: %w", err)
	}
	if err := peekAnswer(conn); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("no answer from the jitproxy bastion at %s within %s: check that jitproxy serves there and is not overloaded, then try again", conn.RemoteAddr(), timeout)
		}
		return err
	}
	return sendConn(conn, out)
}

// peekAnswer waits for the bastion's first byte and says whether the
// answer is a refusal (JITPROXY-ERROR ..., returned as a
// *sshproxy.RefusedError with the line's text) or anything else (nil: the
// SSH version line, or whatever ssh should see and judge itself). The first
// byte decides, whatever the chunking: 'J' starts a refusal. It looks with
// MSG_PEEK, so that ssh still reads every byte of an answer it is handed;
// only a refusal, which ends the connection, is read for real. The caller
// bounds it with a deadline.
func peekAnswer(conn *net.TCPConn) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var first [1]byte
	var n int
	var perr error
	err = rc.Read(func(fd uintptr) bool {
		for {
			n, _, perr = syscall.Recvfrom(int(fd), first[:], syscall.MSG_PEEK)
			if perr != syscall.EINTR {
				break
			}
		}
		if perr == syscall.EAGAIN {
			perr = nil
			return false // nothing yet: wait until the socket is readable
		}
		return true
	})
	if err != nil {
		return err
	}
	if perr != nil {
		return fmt.Errorf("sshproxy: read from bastion: %w", perr)
	}
	if n > 0 && first[0] != sshproxy.PreambleError[0] {
		return nil
	}
	// A refusal, or the connection closed: read the line (the bastion
	// closes after it), as the relay does.
	return sshproxy.ReadRefusal(conn, nil)
}

// sendConn hands conn's socket to the process at the other end of out, in
// blocking mode as OpenSSH's own sockets are, with one byte of data (what
// ssh's mm_receive_fd expects).
func sendConn(conn *net.TCPConn, out *os.File) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		if serr = syscall.SetNonblock(int(fd), false); serr != nil {
			return
		}
		for {
			serr = syscall.Sendmsg(int(out.Fd()), []byte{0}, syscall.UnixRights(int(fd)), nil, 0)
			if serr != syscall.EINTR {
				return
			}
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("sshproxy: pass the bastion connection to ssh: %w", err)
	}
	return nil
}
