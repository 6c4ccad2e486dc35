package ssh

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jitproxy/jitproxy/amendment"
)

// TestCut ends amendments under live interactive sessions: ssh exits 255
// with the registry's line on stderr, and the recording says how it ended.
func TestCut(t *testing.T) {
	e := newEnv(t, envOptions{})
	revoke := func(t *testing.T, a *amendment.Amendment) {
		if _, err := e.svc.Revoke(context.Background(), admin, a.ID, "incident 42"); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name     string
		jump     bool
		duration time.Duration
		end      func(t *testing.T, a *amendment.Amendment) // nil: let it expire
		want     func(a *amendment.Amendment) string
	}{
		{"revoke, single hop", false, time.Hour, revoke, func(a *amendment.Amendment) string {
			return "jitproxy: access to " + e.login + "@web-1 ended: amendment " + a.ShortID() + " revoked by root@example.com: incident 42"
		}},
		{"revoke, ssh -J", true, time.Hour, revoke, func(a *amendment.Amendment) string {
			return "jitproxy: access to " + e.login + "@web-1 ended: amendment " + a.ShortID() + " revoked by root@example.com: incident 42"
		}},
		{"expiry", false, 4 * time.Second, nil, func(a *amendment.Amendment) string {
			return "jitproxy: access to " + e.login + "@web-1 ended: amendment " + a.ShortID() + " expired"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := e.grant(e.login, tt.duration, false)
			args := []string{e.login + "@web-1"}
			if tt.jump {
				args = append([]string{"-J", e.jumpArg()}, args...)
			}
			s := e.alice.startInteractive(tt.jump, args...)
			if tt.end != nil {
				tt.end(t, a)
			}
			s.wait(15 * time.Second)
			t.Logf("ssh stderr: %q", s.errOut.String())
			want := tt.want(a)
			if s.code != 255 {
				t.Errorf("exit code %d; want 255", s.code)
			}
			if !hasLine(s.errOut.String(), want) {
				t.Errorf("stderr:\n%q\nwant the line:\n%s", s.errOut.String(), want)
			}
			if n := strings.Count(s.errOut.String(), "jitproxy:"); n != 1 {
				t.Errorf("stderr has %d jitproxy lines; want 1:\n%s", n, s.errOut.String())
			}
			start := e.audit.waitRow(t, "session.start", map[string]any{"amendment": a.ID})
			id := start.fields["session"]
			e.audit.waitRow(t, "session.cut", map[string]any{"session": id, "cause": want})
			end := e.audit.waitRow(t, "session.end", map[string]any{"session": id})
			if end.fields["reason"] != want || end.fields["cut"] != true {
				t.Errorf("session.end reason %q, cut %v; want %q, true", end.fields["reason"], end.fields["cut"], want)
			}
			sealed := e.audit.waitRow(t, "recording.sealed", map[string]any{"session": id})
			if sealed.fields["end_reason"] != want {
				t.Errorf("recording end reason %q; want %q", sealed.fields["end_reason"], want)
			}
		})
	}
}

// TestExtension keeps a session alive past its amendment's first expiry,
// warns the person ahead of the new one, and cuts it then.
func TestExtension(t *testing.T) {
	e := newEnv(t, envOptions{warnings: []time.Duration{2 * time.Second}})
	a := e.grant(e.login, 3*time.Second, false)
	// Keepalives every second, two unanswered ending the session: the
	// bastion must answer them.
	s := e.alice.startInteractive(false, "-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=2", e.login+"@web-1")
	a, err := e.svc.Extend(context.Background(), alice, a.ID, 3*time.Second, "need more")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(a.ExpiresAt.Add(-3*time.Second)) + 500*time.Millisecond) // past the first expiry
	s.expect("echo still-$((40+2))", "still-42")
	s.wait(10 * time.Second)
	want := "jitproxy: access to " + e.login + "@web-1 ended: amendment " + a.ShortID() + " expired"
	if s.code != 255 || !hasLine(s.errOut.String(), want) {
		t.Errorf("exit code %d, stderr:\n%s\nwant 255 and the line:\n%s", s.code, s.errOut.String(), want)
	}
	warning := "jitproxy: access to " + e.login + "@web-1 ends in 2s (amendment " + a.ShortID() + " expires at " +
		a.ExpiresAt.UTC().Format("15:04") + ` UTC); extend with: jitproxy extend ` + a.ShortID() + ` --for 30m --reason "..."`
	if !hasLine(s.errOut.String(), warning) {
		t.Errorf("stderr:\n%s\nwant the warning:\n%s", s.errOut.String(), warning)
	}
}
