package ssh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
)

// The single-hop preamble. A ProxyCommand (`jitproxy ssh-proxy %h`) opens a
// TCP connection to the bastion and, before any SSH byte, writes one line
// naming the target (a configured target name: no spaces, no control
// characters, the line at most MaxPreambleLine bytes):
//
//	JITPROXY-TARGET web-1\r\n
//
// then relays the ssh client's bytes both ways; no round trip waits for an
// answer. The bastion answers with its SSH version line, as the target's
// in-process server, and the client's one SSH session terminates at
// jitproxy. If it refuses the line, it answers instead with one line and
// closes:
//
//	JITPROXY-ERROR jitproxy is not an open relay: web-9 is not a jitproxy target; ...\r\n
//
// ssh does not show lines that come before its server's version, so the
// ProxyCommand must print the refusal on its own stderr, which ssh shows:
// ProxyCommand returns it as a *RefusedError for that. A connection whose
// first line starts with "SSH-" is the ssh -J path; anything else is
// refused the same way and closed.
const (
	// PreambleTarget starts the line that names the target.
	PreambleTarget = "JITPROXY-TARGET "
	// PreambleError starts the line the bastion refuses a preamble with.
	PreambleError = "JITPROXY-ERROR "
	// MaxPreambleLine is the longest first line the bastion reads, CRLF
	// included.
	MaxPreambleLine = 256
)

// sshPrefix starts the identification line of every SSH peer.
const sshPrefix = "SSH-"

// closedEarly is the reason given when the bastion closes the connection
// without a refusal line.
const closedEarly = "jitproxy: the bastion closed the connection before the SSH handshake"

// WritePreamble writes the line that names target, the first thing a
// ProxyCommand sends to the bastion.
func WritePreamble(w io.Writer, target string) error {
	if err := CheckTargetName(target); err != nil {
		return err
	}
	_, err := io.WriteString(w, PreambleTarget+target+"\r\n")
	return err
}

// CheckTargetName refuses names that cannot be a target: empty, with spaces
// or control characters, or too long for the preamble line. A
// ProxyCommand calls it before it dials the bastion.
func CheckTargetName(target string) error {
	if target == "" || len(PreambleTarget)+len(target)+2 > MaxPreambleLine {
		return fmt.Errorf("sshproxy: target name %q: 1 to %d bytes", target, MaxPreambleLine-len(PreambleTarget)-2)
	}
	for i := 0; i < len(target); i++ {
		if c := target[i]; c <= ' ' || c == 0x7f {
			return fmt.Errorf("sshproxy: target name %q has a space or control character", target)
		}
	}
	return nil
}

// RefusedError is the bastion's refusal of a preamble, as ProxyCommand
// returns it: Reason is the line for the person, without the
// JITPROXY-ERROR prefix.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return e.Reason }

// ProxyCommand is the client side of the single-hop path, what the
// ssh-config's ProxyCommand runs: it writes the preamble for target on conn,
// then copies stdin to conn and conn to stdout until the bastion's side ends
// or ctx does, and closes conn. A refusal from the bastion comes back as a
// *RefusedError, whose text the caller prints to stderr (ssh shows a
// ProxyCommand's stderr) before exiting non-zero. It does not wait for the
// stdin copier, which ends when ssh closes our stdin or a write to the
// closed conn fails: the caller is a process that exits next.
func ProxyCommand(ctx context.Context, conn net.Conn, target string, stdin io.Reader, stdout io.Writer) error {
	if err := CheckTargetName(target); err != nil {
		conn.Close()
		return err
	}
	return proxyCommand(ctx, conn, PreambleTarget+target+"\r\n", stdin, stdout)
}

// proxyCommand is ProxyCommand with the preamble line as it is sent.
func proxyCommand(ctx context.Context, conn net.Conn, preamble string, stdin io.Reader, stdout io.Writer) error {
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if _, err := io.WriteString(conn, preamble); err != nil {
		return fmt.Errorf("sshproxy: write preamble: %w", err)
	}
	go func() {
		io.CopyBuffer(conn, stdin, make([]byte, bufSize))
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	}()
	err := proxyDown(conn, stdout)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// proxyDown copies the bastion's side of conn to stdout, turning a
// JITPROXY-ERROR first line into a *RefusedError.
func proxyDown(conn net.Conn, stdout io.Writer) error {
	buf := make([]byte, bufSize)
	n, err := io.ReadAtLeast(conn, buf[:MaxPreambleLine], len(sshPrefix))
	if n == 0 {
		if errors.Is(err, io.EOF) {
			return &RefusedError{Reason: closedEarly}
		}
		return fmt.Errorf("sshproxy: read from bastion: %w", err)
	}
	if bytes.HasPrefix([]byte(PreambleError), buf[:min(n, len(PreambleError))]) {
		return ReadRefusal(conn, buf[:n])
	}
	if _, err := stdout.Write(buf[:n]); err != nil {
		return err
	}
	if _, err = io.CopyBuffer(stdout, conn, buf); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// ReadRefusal reads the rest of the bastion's refusal from r, once its
// first bytes, got (none if the connection closed at once), started like
// PreambleError, and returns it as a *RefusedError: the line, or that the
// bastion closed before the SSH handshake. It reads up to the end of the
// line, at most MaxPreambleLine bytes in all; a deadline that passes
// while it reads comes back as the error it is.
func ReadRefusal(r io.Reader, got []byte) error {
	buf := make([]byte, MaxPreambleLine)
	n := copy(buf, got)
	var err error
	for err == nil && n < len(buf) && (n < len(PreambleError) || bytes.IndexByte(buf[:n], '\n') < 0) {
		var m int
		m, err = r.Read(buf[n:])
		n += m
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	got = buf[:n]
	if k := min(n, len(PreambleError)); string(got[:k]) != PreambleError[:k] {
		return fmt.Errorf("sshproxy: the bastion answered %q: neither an SSH version nor a refusal; check that the bastion address jitproxy certs saved is a jitproxy bastion, and run jitproxy certs again", got)
	}
	if n < len(PreambleError) {
		return &RefusedError{Reason: closedEarly}
	}
	line, _, _ := bytes.Cut(got[len(PreambleError):], []byte("\n"))
	return &RefusedError{Reason: strings.TrimSpace(string(line))}
}

// firstLine is what sniff found at the start of a connection.
type firstLine struct {
	// target is the preamble's target; "" for an SSH client (the -J path).
	target string
}

// errBadPreamble is a first line that is neither an SSH identification
// nor a well-formed preamble.
var errBadPreamble = errors.New("not an SSH client and not a JITPROXY-TARGET line")

// sniff reads the start of c and says which way in it is. It returns the
// bytes it read past the preamble (the start of the SSH stream), which the
// caller must hand on with prefixConn. The caller bounds it with a deadline.
func sniff(c net.Conn) (firstLine, []byte, error) {
	var buf [MaxPreambleLine]byte
	n := 0
	for {
		m, err := c.Read(buf[n:])
		n += m
		got := buf[:n]
		if n >= len(sshPrefix) && string(got[:len(sshPrefix)]) == sshPrefix {
			return firstLine{}, bytes.Clone(got), nil
		}
		if n < len(sshPrefix) && string(got) == sshPrefix[:n] && err == nil {
			continue // the start of "SSH-" in pieces
		}
		if !bytes.HasPrefix(got, []byte(PreambleTarget)) && !bytes.HasPrefix([]byte(PreambleTarget), got) {
			return firstLine{}, nil, errBadPreamble
		}
		if i := bytes.IndexByte(got, '\n'); i >= 0 {
			line := bytes.TrimSuffix(got[len(PreambleTarget):i], []byte("\r"))
			target := string(line)
			if CheckTargetName(target) != nil {
				return firstLine{}, nil, errBadPreamble
			}
			return firstLine{target: target}, bytes.Clone(got[i+1:]), nil
		}
		if err != nil {
			return firstLine{}, nil, err
		}
		if n == len(buf) {
			return firstLine{}, nil, fmt.Errorf("%w: first line longer than %d bytes", errBadPreamble, MaxPreambleLine)
		}
	}
}

// prefixConn is a net.Conn whose first reads return rest, the bytes sniff
// read past the preamble.
type prefixConn struct {
	net.Conn
	rest []byte // read only by the one goroutine that reads the conn
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.rest) > 0 {
		n := copy(p, c.rest)
		c.rest = c.rest[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// bufSize is the relay buffer: one SSH channel packet's worth (x/crypto's
// channelMaxPacket is 32 KiB), so one read can fill one packet.
const bufSize = 32 << 10
