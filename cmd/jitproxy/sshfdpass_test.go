//go:build unix

package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	sshproxy "github.com/jitproxy/jitproxy/proxy/ssh"
)

// fakeBastion accepts one connection on loopback, checks the preamble,
// answers with chunks (a pause between them), and then either closes or
// sends everything else it reads to got.
type fakeBastion struct {
	ln       net.Listener
	preamble chan string // the first line it read
	got      chan string // what came after it, when keepOpen
}

func startFakeBastion(t *testing.T, chunks []string, keepOpen bool) *fakeBastion {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &fakeBastion{ln: ln, preamble: make(chan string, 1), got: make(chan string, 1)}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		line, _ := r.ReadString('\n')
		b.preamble <- line
		for i, ch := range chunks {
			if i > 0 {
				time.Sleep(50 * time.Millisecond)
			}
			c.Write([]byte(ch))
		}
		if !keepOpen {
			return
		}
		rest, _ := io.ReadAll(r)
		b.got <- string(rest)
	}()
	return b
}

// dial connects to the fake bastion as ssh-proxy does.
func (b *fakeBastion) dial(t *testing.T) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", b.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return c.(*net.TCPConn)
}

// socketPair is what ssh gives a ProxyCommand with ProxyUseFdpass yes:
// ours is the ProxyCommand's standard output, theirs is ssh's end.
func socketPair(t *testing.T) (ours, theirs *os.File) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs = os.NewFile(uintptr(fds[0]), "proxycommand-stdout"), os.NewFile(uintptr(fds[1]), "ssh-end")
	t.Cleanup(func() { ours.Close(); theirs.Close() })
	return ours, theirs
}

// receiveFD does what ssh's mm_receive_fd does: one byte, one descriptor.
// It returns -1 when the other end closed without sending one.
func receiveFD(t *testing.T, f *os.File) int {
	t.Helper()
	buf := make([]byte, 1)
	oob := make([]byte, syscall.CmsgSpace(4))
	n, oobn, _, _, err := syscall.Recvmsg(int(f.Fd()), buf, oob, 0)
	if err != nil {
		t.Fatalf("recvmsg: %v", err)
	}
	if n == 0 && oobn == 0 {
		return -1
	}
	msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("control messages: %v, %d; want one", err, len(msgs))
	}
	fds, err := syscall.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		t.Fatalf("unix rights: %v, %v; want one descriptor", err, fds)
	}
	if n != 1 {
		t.Errorf("sent %d bytes of data with the descriptor; want 1 (ssh checks)", n)
	}
	return fds[0]
}

// TestPassBastionConn runs the fd-passing ProxyCommand against a fake
// bastion, through a real Unix socket pair: an SSH answer hands over the
// socket with every byte of the answer still unread, TCP_NODELAY on and in
// blocking mode; a refusal comes back as the line's text and hands over
// nothing; silence times out.
func TestPassBastionConn(t *testing.T) {
	tests := []struct {
		name     string
		answer   []string
		keepOpen bool
		timeout  time.Duration
		want     string // the refusal's reason or the error's text; "" = handed over
	}{
		{name: "SSH version line", answer: []string{"SSH-2.0-jitproxy\r\n"}, keepOpen: true},
		{name: "version line in pieces", answer: []string{"S", "SH-2.0-jit", "proxy\r\n"}, keepOpen: true},
		{name: "a line ssh judges itself", answer: []string{"hello\r\nSSH-2.0-jitproxy\r\n"}, keepOpen: true},
		{name: "refusal", answer: []string{sshproxy.PreambleError + "jitproxy is not an open relay: web-9 is not a jitproxy target\r\n"},
			want: "jitproxy is not an open relay: web-9 is not a jitproxy target"},
		{name: "refusal in pieces", answer: []string{"JITPROXY-", "ERROR jitproxy: no", " such target\r\n"}, keepOpen: true,
			want: "jitproxy: no such target"},
		{name: "refusal without its line end", answer: []string{sshproxy.PreambleError + "jitproxy: gone"},
			want: "jitproxy: gone"},
		{name: "closed at once", want: "jitproxy: the bastion closed the connection before the SSH handshake"},
		{name: "closed mid-refusal", answer: []string{"JITPROXY-ERR"}, want: "jitproxy: the bastion closed the connection before the SSH handshake"},
		{name: "neither", answer: []string{"JITPROXY-OK\r\n"}, want: "neither an SSH version nor a refusal"},
		{name: "silent", keepOpen: true, timeout: 300 * time.Millisecond, want: "no answer from the jitproxy bastion"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := startFakeBastion(t, tt.answer, tt.keepOpen)
			ours, theirs := socketPair(t)
			timeout := tt.timeout
			if timeout == 0 {
				timeout = 5 * time.Second
			}
			err := passBastionConn(context.Background(), b.dial(t), "web-1", ours, timeout)
			if got := <-b.preamble; got != "JITPROXY-TARGET web-1\r\n" {
				t.Errorf("preamble %q; want %q", got, "JITPROXY-TARGET web-1\r\n")
			}
			ours.Close() // as ssh-proxy exits
			if tt.want != "" {
				var refused *sshproxy.RefusedError
				switch {
				case err == nil:
					t.Fatalf("handed over; want %q", tt.want)
				case errors.As(err, &refused) && refused.Reason != tt.want:
					t.Errorf("refused with %q; want %q", refused.Reason, tt.want)
				case refused == nil && !strings.Contains(err.Error(), tt.want):
					t.Errorf("error %v; want %q", err, tt.want)
				}
				if fd := receiveFD(t, theirs); fd >= 0 {
					syscall.Close(fd)
					t.Errorf("a descriptor was handed over after %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("passBastionConn: %v", err)
			}
			fd := receiveFD(t, theirs)
			if fd < 0 {
				t.Fatal("nothing handed over")
			}
			if v, err := syscall.GetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY); err != nil || v == 0 {
				t.Errorf("TCP_NODELAY on the handed-over socket: %d, %v; want on", v, err)
			}
			conn := os.NewFile(uintptr(fd), "bastion")
			defer conn.Close()
			if nb, err := nonblocking(fd); err != nil || nb {
				t.Errorf("handed-over socket non-blocking: %v, %v; want blocking, as OpenSSH's own", nb, err)
			}
			want := strings.Join(tt.answer, "")
			got := make([]byte, len(want))
			if _, err := io.ReadFull(conn, got); err != nil || string(got) != want {
				t.Errorf("ssh read %q, %v; want the whole answer %q", got, err, want)
			}
			conn.Write([]byte("SSH-2.0-OpenSSH_9.2\r\n"))
			syscall.Shutdown(fd, syscall.SHUT_WR)
			if got := <-b.got; got != "SSH-2.0-OpenSSH_9.2\r\n" {
				t.Errorf("the bastion got %q after the preamble; want ssh's bytes", got)
			}
		})
	}
}

// TestPassBastionConnBadName: a name that cannot be a target is refused
// before a byte goes to the bastion, with the relay's error.
func TestPassBastionConnBadName(t *testing.T) {
	b := startFakeBastion(t, nil, false)
	ours, _ := socketPair(t)
	err := passBastionConn(context.Background(), b.dial(t), "web 1", ours, time.Second)
	if err == nil || !strings.Contains(err.Error(), "has a space or control character") {
		t.Errorf("passBastionConn(\"web 1\"): %v; want the target name refused", err)
	}
	if got := <-b.preamble; got != "" {
		t.Errorf("the bastion got %q; want nothing", got)
	}
}

// TestFdpassUnavailable: only a Unix socket, as ssh's ProxyUseFdpass makes
// standard output, can take the connection; a pipe (ProxyUseFdpass off) or
// a TCP socket makes ssh-proxy relay instead.
func TestFdpassUnavailable(t *testing.T) {
	ours, _ := socketPair(t)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tcp, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	tests := []struct {
		name string
		out  *os.File
		want bool // available
	}{
		{name: "unix socket pair", out: ours, want: true},
		{name: "pipe", out: pw},
		{name: "tcp socket", out: tcp},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			why := fdpassUnavailable(tt.out)
			if got := why == nil; got != tt.want {
				t.Errorf("available %v (%v); want %v", got, why, tt.want)
			}
		})
	}
}

// nonblocking reports whether fd's open file has O_NONBLOCK set.
func nonblocking(fd int) (bool, error) {
	fl, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFL, 0)
	if errno != 0 {
		return false, errno
	}
	return fl&syscall.O_NONBLOCK != 0, nil
}
