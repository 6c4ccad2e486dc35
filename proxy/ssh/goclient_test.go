package ssh

import (
	"bytes"
	"context"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jitproxy/jitproxy/certs"
	"github.com/jitproxy/jitproxy/recording"
)

// goClient logs in to target through the single hop with x/crypto's
// client and alice's certificate, verifying the host certificate against
// the jitproxy host CA.
func (e *env) goClient(t testing.TB, target, login string) *gossh.Client {
	t.Helper()
	signer := e.alice.signer(t)
	hostKey, err := certs.HostKeyCallback(target, nil, e.ca.HostCAKeys())
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := WritePreamble(c, target); err != nil {
		t.Fatal(err)
	}
	conn, chans, reqs, err := gossh.NewClientConn(c, target+":22", &gossh.ClientConfig{
		User:            login,
		Auth:            []gossh.AuthMethod{gossh.PublicKeys(signer)},
		HostKeyCallback: hostKey,
	})
	if err != nil {
		t.Fatal(err)
	}
	client := gossh.NewClient(conn, chans, reqs)
	t.Cleanup(func() { client.Close() })
	return client
}

// signer is the client's certificate signer.
func (c *client) signer(t testing.TB) gossh.Signer {
	t.Helper()
	keyPEM, err := os.ReadFile(c.key)
	if err != nil {
		t.Fatal(err)
	}
	key, err := gossh.ParsePrivateKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	certLine, err := os.ReadFile(c.cert)
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := gossh.ParseAuthorizedKey(certLine)
	if err != nil {
		t.Fatal(err)
	}
	s, err := gossh.NewCertSigner(pub.(*gossh.Certificate), key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestChannelRequests relays the requests OpenSSH's tests above do not
// send: env, a resize (recorded), a signal, and a second channel on the
// same connection; then a revocation refuses new channels.
func TestChannelRequests(t *testing.T) {
	e := newEnv(t, envOptions{})
	a := e.grant(e.login, time.Hour, false)
	client := e.goClient(t, "web-1", e.login)

	sess, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	sess.Stdout = &out
	stdin, err := sess.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Setenv("LANG", "C.UTF-8"); err != nil {
		t.Fatal(err)
	}
	if err := sess.RequestPty("xterm-256color", 24, 80, gossh.TerminalModes{}); err != nil {
		t.Fatal(err)
	}
	if err := sess.Start(`echo "lang=$LANG"; exec cat`); err != nil {
		t.Fatal(err)
	}
	if err := sess.WindowChange(40, 120); err != nil {
		t.Fatal(err)
	}
	// sshd 9.2 relays no signal to a root session ("session signalling
	// requires privilege separation"), but its log shows the request
	// arrived.
	if err := sess.Signal(gossh.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the resize reaches the recording before the exit
	stdin.Write([]byte("\x04"))        // ^D: cat sees EOF on the pty and exits
	if err := sess.Wait(); err != nil {
		t.Errorf("Wait: %v", err)
	}
	if !strings.Contains(out.String(), "lang=C.UTF-8") {
		t.Errorf("output %q; want lang=C.UTF-8 (env relayed)", out.String())
	}
	waitFor(t, func() bool { return strings.Contains(e.sshd.log.String(), "session_signal_req") }, "sshd never got the signal request:\n%s", e.sshd.log)

	// A second session channel on the same connection.
	sess2, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	got, err := sess2.Output("echo second")
	if err != nil || string(got) != "second\n" {
		t.Errorf("second channel: %q, %v", got, err)
	}

	start := e.audit.waitRow(t, "session.start", map[string]any{"amendment": a.ID})
	id := start.fields["session"].(string)
	e.audit.waitRow(t, "recording.sealed", map[string]any{"session": id, "channel": "c1", "end_reason": "exit 0"})
	metas, err := recording.Find(e.recDir, id)
	if err != nil {
		t.Fatal(err)
	}
	var resized bool
	for _, m := range metas {
		if m.Channel != "c1" {
			continue
		}
		h, events := recording.ReadCast(openFile(t, m.Path))
		if h.Width != 80 || h.Height != 24 || h.Env["TERM"] != "xterm-256color" {
			t.Errorf("header %dx%d %v; want 80x24 TERM=xterm-256color", h.Width, h.Height, h.Env)
		}
		for ev, err := range events {
			if err != nil {
				t.Fatal(err)
			}
			resized = resized || ev.Type == "r" && ev.Data == "120x40"
		}
	}
	if !resized {
		t.Error("the recording has no resize to 120x40")
	}

	// Revoked: the connection is cut, and no new channel opens.
	if _, err := e.svc.Revoke(context.Background(), admin, a.ID, "done"); err != nil {
		t.Fatal(err)
	}
	e.audit.waitRow(t, "session.cut", map[string]any{"session": id})
	if _, err := client.NewSession(); err == nil {
		t.Error("a new channel opened after the revocation")
	}
}

// TestRecheckOnNewChannel revokes nothing the registry hears about: Access
// alone says no, and the next channel is refused with its line.
func TestRecheckOnNewChannel(t *testing.T) {
	var deny atomic.Bool
	e := newEnv(t, envOptions{configure: func(c *Config) {
		inner := c.Access
		c.Access = accessFunc(func(ctx context.Context, person, target, login string) (*amendmentT, error) {
			if deny.Load() {
				return nil, errorString("jitproxy: no active amendment for " + login + "@" + target + ": it was withdrawn a moment ago")
			}
			return inner.ActiveSSH(ctx, person, target, login)
		})
	}})
	e.grant(e.login, time.Hour, false)
	client := e.goClient(t, "web-1", e.login)
	if _, err := client.NewSession(); err != nil {
		t.Fatal(err)
	}
	deny.Store(true)
	_, err := client.NewSession()
	want := "jitproxy: no active amendment for " + e.login + "@web-1: it was withdrawn a moment ago"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("second channel: %v; want a refusal saying %q", err, want)
	}
}
