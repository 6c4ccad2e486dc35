package ssh

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh/agent"
)

// TestPortForwarding runs ssh -L and ssh -R against an echo server, with
// an amendment that does not allow forwarding and with one that does.
func TestPortForwarding(t *testing.T) {
	e := newEnv(t, envOptions{})
	echo := echoServer(t)
	tests := []struct {
		name    string
		allowed bool
		remote  bool // -R, else -L
	}{
		{"-L refused", false, false},
		{"-R refused", false, true},
		{"-L allowed", true, false},
		{"-R allowed", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := e.grant(e.login, time.Hour, tt.allowed)
			t.Cleanup(func() { e.svc.Revoke(context.Background(), admin, a.ID, "next test") })
			port := freePort(t)
			spec := "127.0.0.1:" + port + ":" + echo
			flag := "-L"
			if tt.remote {
				flag = "-R"
			}
			stderr, exited := startForwarding(t, e, "-o", "ExitOnForwardFailure=yes", flag, spec)

			if tt.remote && !tt.allowed {
				// The target never listens: ssh gives up on its own.
				select {
				case <-exited:
				case <-time.After(30 * time.Second):
					t.Fatal("ssh -R did not exit")
				}
				if want := "Error: remote port forwarding failed for listen port " + port; !hasLine(stderr.String(), want) {
					t.Errorf("stderr:\n%s\nwant the line:\n%s", stderr.String(), want)
				}
				return
			}
			c := dialUntil(t, "127.0.0.1:"+port, exited)
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, "ping\n")
			got := make([]byte, 5)
			_, err := io.ReadFull(c, got)
			if tt.allowed {
				if err != nil || string(got) != "ping\n" {
					t.Errorf("echo through the forward: %q, %v; want ping", got, err)
				}
				return
			}
			if err == nil {
				t.Errorf("read %q through a refused forward; want EOF", got)
			}
			want := "administratively prohibited: jitproxy: port forwarding is not part of amendment " + a.ShortID() +
				" for " + e.login + "@web-1: ask for it with jitproxy request web-1 --login " + e.login + " --port-forwarding ..."
			waitFor(t, func() bool { return hasLineSuffix(stderr.String(), want) }, "stderr:\n%s\nwant a line ending:\n%s", stderr, want)
			t.Logf("ssh stderr:\n%s", stderr)
		})
	}
}

// TestAgentForwardingRefused asks for agent forwarding: the session runs
// without it, and the person is told.
func TestAgentForwardingRefused(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.grant(e.login, time.Hour, false)
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	keyring := agent.NewKeyring()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				agent.ServeAgent(keyring, c)
			}()
		}
	}()
	// The client config says IdentityAgent none, which hides the agent
	// from -A too: name it.
	r := e.alice.run(false, "ssh", "-o", "IdentityAgent="+sock, "-A", e.login+"@web-1", `echo "agent=${SSH_AUTH_SOCK:-none}"`)
	if r.code != 0 || r.stdout != "agent=none\n" {
		t.Errorf("exit %d, stdout %q; want 0, agent=none", r.code, r.stdout)
	}
	t.Logf("ssh stderr:\n%s", r.stderr)
	if !hasLine(r.stderr, agentRefused) {
		t.Errorf("stderr:\n%s\nwant the line:\n%s", r.stderr, agentRefused)
	}
}

// startForwarding starts alice's `ssh -N ARGS LOGIN@web-1` on the single
// hop, for its forwards, and stops it when the test ends (at the latest
// after 30 s); exited closes when ssh exits.
func startForwarding(t *testing.T, e *env, args ...string) (stderr *syncBuffer, exited <-chan struct{}) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	cmd := e.alice.command(ctx, false, nil, "ssh", append(append([]string{"-N"}, args...), e.login+"@web-1")...)
	stderr = &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return stderr, done
}

// echoServer listens on loopback and echoes every connection.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// dialUntil dials addr until it answers, or fails the test when exited
// closes first.
func dialUntil(t *testing.T, addr string, exited <-chan struct{}) net.Conn {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c
		}
		select {
		case <-exited:
			t.Fatalf("ssh exited before %s listened", addr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitFor waits up to 10s for cond, then fails with the message.
func waitFor(t *testing.T, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf(format, args...)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// hasLineSuffix reports whether a line of out ends with want.
func hasLineSuffix(out, want string) bool {
	for _, l := range strings.FieldsFunc(out, func(r rune) bool { return r == '\n' || r == '\r' }) {
		if strings.HasSuffix(l, want) {
			return true
		}
	}
	return false
}

// TestRemoteForwardsInOrder asks for three remote forwards at once, the
// last one on a port that is taken on the target: the bastion's worker
// answers them in the order asked (ssh matches replies to requests by
// order), so ssh names the taken port, and the other two forward.
func TestRemoteForwardsInOrder(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.grant(e.login, time.Hour, true)
	echo := echoServer(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { taken.Close() })
	_, busy, _ := net.SplitHostPort(taken.Addr().String())
	free1, free2 := freePort(t), freePort(t)

	stderr, exited := startForwarding(t, e,
		"-R", "127.0.0.1:"+free1+":"+echo,
		"-R", "127.0.0.1:"+free2+":"+echo,
		"-R", "127.0.0.1:"+busy+":"+echo)
	for _, port := range []string{free1, free2} {
		c := dialUntil(t, "127.0.0.1:"+port, exited)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "ping\n")
		got := make([]byte, 5)
		if _, err := io.ReadFull(c, got); err != nil || string(got) != "ping\n" {
			t.Errorf("echo through the forward on %s: %q, %v; want ping", port, got, err)
		}
		c.Close()
	}
	want := "Warning: remote port forwarding failed for listen port " + busy
	waitFor(t, func() bool { return hasLine(stderr.String(), want) }, "stderr:\n%s\nwant the line:\n%s", stderr, want)
	for _, port := range []string{free1, free2} {
		if hasLine(stderr.String(), "Warning: remote port forwarding failed for listen port "+port) {
			t.Errorf("ssh says the forward on %s failed: a reply went to the wrong request; stderr:\n%s", port, stderr)
		}
	}
}
