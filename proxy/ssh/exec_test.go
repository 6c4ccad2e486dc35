package ssh

import (
	"strings"
	"testing"
	"time"

	"github.com/jitproxy/jitproxy/recording"
)

// TestExec runs a command through both ways in, with the real ssh.
func TestExec(t *testing.T) {
	e := newEnv(t, envOptions{})
	a := e.grant(e.login, time.Hour, false)
	tests := []struct {
		name string
		jump bool
		args []string
	}{
		{"single hop", false, []string{e.login + "@web-1"}},
		{"ssh -J", true, []string{"-J", e.jumpArg(), e.login + "@web-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.alice.run(tt.jump, "ssh", append(tt.args, "echo hello; id -un; echo oops >&2; exit 7")...)
			if want := "hello\n" + e.login + "\n"; r.stdout != want {
				t.Errorf("stdout %q; want %q (stderr %q)", r.stdout, want, r.stderr)
			}
			if !strings.Contains(r.stderr, "oops\n") {
				t.Errorf("stderr %q; want it to hold oops", r.stderr)
			}
			if r.code != 7 {
				t.Errorf("exit code %d; want 7 (stderr %q)", r.code, r.stderr)
			}
		})
	}
	rows := e.audit.find("session.start", map[string]any{"amendment": a.ID})
	if len(rows) != 2 {
		t.Errorf("%d session.start rows; want 2", len(rows))
	}
}

// TestInteractive drives a pty shell with scripted input and checks the
// exit status comes back and the recording holds the output.
func TestInteractive(t *testing.T) {
	e := newEnv(t, envOptions{})
	a := e.grant(e.login, time.Hour, false)
	tests := []struct {
		name string
		jump bool
		args []string
	}{
		{"single hop", false, []string{e.login + "@web-1"}},
		{"ssh -J", true, []string{"-J", e.jumpArg(), e.login + "@web-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := e.alice.startInteractive(tt.jump, tt.args...)
			s.expect("tty >/dev/null && echo pty-$((20+3))", "pty-23")
			s.expect("exit 3", "exit")
			s.wait(10 * time.Second)
			if s.code != 3 {
				t.Errorf("exit code %d; want 3 (stderr %q)", s.code, s.errOut.String())
			}
		})
	}
	// Each session's shell channel is recorded, output included, and
	// sealed with how it ended.
	for _, start := range e.audit.find("session.start", map[string]any{"amendment": a.ID}) {
		id := start.fields["session"].(string)
		sealed := e.audit.waitRow(t, "recording.sealed", map[string]any{"session": id})
		if got, want := sealed.fields["end_reason"], "exit 3"; got != want {
			t.Errorf("session %s: recording end reason %q; want %q", id, got, want)
		}
		if sum, _ := sealed.fields["sha256"].(string); len(sum) != 64 {
			t.Errorf("session %s: recording sha256 %q", id, sum)
		}
		if out := castOutput(t, e, id); !strings.Contains(out, "pty-23") {
			t.Errorf("session %s: recording output lacks pty-23:\n%s", id, out)
		}
	}
}

// castOutput returns the output events of a session's recordings.
func castOutput(t *testing.T, e *env, session string) string {
	t.Helper()
	metas, err := recording.Find(e.recDir, session)
	if err != nil || len(metas) == 0 {
		t.Fatalf("recordings of %s: %v, %d found", session, err, len(metas))
	}
	var b strings.Builder
	for _, m := range metas {
		if err := recording.VerifyFile(m); err != nil {
			t.Errorf("recording %s: %v", m.ID, err)
		}
		f := openFile(t, m.Path)
		_, events := recording.ReadCast(f)
		for ev, err := range events {
			if err != nil {
				t.Fatalf("read %s: %v", m.Path, err)
			}
			if ev.Type == "o" {
				b.WriteString(ev.Data)
			}
		}
	}
	return b.String()
}
