package ssh

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jitproxy/jitproxy/recording"
)

// TestBadConnections opens garbage, oversized and half-open connections
// next to a live session: each is closed (with a line where a line can be
// read), and the session does not notice.
func TestBadConnections(t *testing.T) {
	e := newEnv(t, envOptions{handshakeTimeout: time.Second})
	e.grant(e.login, time.Hour, false)
	s := e.alice.startInteractive(false, e.login+"@web-1")
	refusal := PreambleError + "jitproxy: this is the jitproxy SSH bastion: connect with ssh -J or the block jitproxy ssh-config prints\r\n"
	tests := []struct {
		name string
		send string
		want string // what the bastion answers before it closes
	}{
		{"garbage", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", refusal},
		{"line too long", PreambleTarget + strings.Repeat("x", 2*MaxPreambleLine), refusal},
		{"unknown target", PreambleTarget + "web-9\r\n", PreambleError + notATarget("web-9").msg + "\r\n"},
		{"half-open, silent", "", ""},
		{"half a preamble", "JITPROXY-TAR", ""},
		{"SSH client that stalls", "SSH-2.0-stall\r\n", "SSH-2.0-jitproxy\r\n"},
		{"preamble, then a stall", PreambleTarget + "web-1\r\n", "SSH-2.0-jitproxy\r\n"},
	}
	t.Run("connections", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel() // the half-open ones wait out the handshake timeout together
				c, err := net.Dial("tcp", e.addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				io.WriteString(c, tt.send)
				c.SetDeadline(time.Now().Add(5 * time.Second))
				start := time.Now()
				r := bufio.NewReader(c)
				if tt.want != "" {
					line, err := r.ReadString('\n')
					if line != tt.want {
						t.Errorf("first line %q, %v; want %q", line, err, tt.want)
					}
				}
				// Then the bastion closes, at once or at the handshake timeout.
				_, err = io.Copy(io.Discard, r)
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Errorf("still open after %v", time.Since(start))
				}
			})
		}
	})
	s.expect("echo alive-$((1+1))", "alive-2")
}

// TestMaxSessionsPerPerson refuses a person's session over the limit,
// and takes one again when a session ends.
func TestMaxSessionsPerPerson(t *testing.T) {
	e := newEnv(t, envOptions{maxSessions: 1})
	e.grant(e.login, time.Hour, false)
	s := e.alice.startInteractive(false, e.login+"@web-1")
	r := e.alice.run(false, "ssh", e.login+"@web-1", "true")
	t.Logf("ssh stderr:\n%s", r.stderr)
	want := "jitproxy: you are at the limit of 1 open session through jitproxy; close one and connect again"
	if r.code != 255 || !hasLine(r.stderr, want) {
		t.Errorf("exit %d, stderr:\n%s\nwant 255 and the line:\n%s", r.code, r.stderr, want)
	}
	s.expect("exit 0", "exit")
	s.wait(10 * time.Second)
	waitFor(t, func() bool {
		return e.alice.run(false, "ssh", e.login+"@web-1", "true").code == 0
	}, "no session after the first ended")
}

// TestShutdown shuts the bastion down under a live session: the person
// sees why, and nothing is left running.
func TestShutdown(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.grant(e.login, time.Hour, false)
	single := e.alice.startInteractive(false, e.login+"@web-1")
	jump := e.alice.startInteractive(true, "-J", e.jumpArg(), e.login+"@web-1")
	idle, err := net.Dial("tcp", e.addr) // a connection still deciding what it is
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	want := "jitproxy: access to " + e.login + "@web-1 ended: proxy shutting down"
	for _, s := range []*interactive{single, jump} {
		s.wait(10 * time.Second)
		t.Logf("ssh stderr: %q", s.errOut.String())
		if s.code != 255 || !hasLine(s.errOut.String(), want) {
			t.Errorf("exit %d, stderr:\n%s\nwant 255 and the line:\n%s", s.code, s.errOut.String(), want)
		}
	}
	idle.SetDeadline(time.Now().Add(time.Second))
	if _, err := idle.Read(make([]byte, 1)); err == nil {
		t.Error("a connection accepted before Shutdown is still open")
	}
	if r := e.alice.run(false, "ssh", e.login+"@web-1", "true"); r.code != 255 {
		t.Errorf("ssh after Shutdown: exit %d; want 255", r.code)
	}
}

// failingRecorder cannot start a recording.
type failingRecorder struct{}

func (failingRecorder) StartSSH(recording.SSHMeta) (*recording.Cast, error) {
	return nil, errors.New("recording: disk full")
}

// TestRecordingFailure refuses a session channel whose recording cannot
// start when recording is required, and lets it run when it is not.
func TestRecordingFailure(t *testing.T) {
	tests := []struct {
		name     string
		required bool
		wantCode int
		wantOut  string
		wantLine string
	}{
		{"required", true, 255, "", "jitproxy: this session cannot be recorded and recording is required, so it did not start; try again, and tell a jitproxy administrator if it lasts"},
		{"not required", false, 0, "ran\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envOptions{configure: func(c *Config) {
				c.Recorder, c.RequireRecording = failingRecorder{}, tt.required
			}})
			e.grant(e.login, time.Hour, false)
			r := e.alice.run(false, "ssh", e.login+"@web-1", "echo ran")
			t.Logf("ssh stderr:\n%s", r.stderr)
			if r.code != tt.wantCode || r.stdout != tt.wantOut {
				t.Errorf("exit %d, stdout %q; want %d, %q (stderr %s)", r.code, r.stdout, tt.wantCode, tt.wantOut, r.stderr)
			}
			if tt.wantLine != "" && !hasLine(r.stderr, tt.wantLine) {
				t.Errorf("stderr:\n%s\nwant the line:\n%s", r.stderr, tt.wantLine)
			}
		})
	}
}
