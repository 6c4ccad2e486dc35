package ssh

import (
	"errors"
	"fmt"
	"strings"
)

// ErrServerClosed is what Serve returns after Shutdown.
var ErrServerClosed = errors.New("sshproxy: server closed")

// errShutdown is the cause of every session that Shutdown ends.
var errShutdown = errors.New("proxy shutting down")

// Ends of a session that are nobody's decision.
var (
	errClientClosed   = errors.New("client closed")
	errUpstreamClosed = errors.New("target closed the connection")
)

// userError is what a person sees when jitproxy refuses or ends their
// access: one line starting "jitproxy: " that says what happened and what
// to do next. It is rendered as an SSH auth banner, a channel-open failure
// message, a line on the session's stderr, or a JITPROXY-ERROR line,
// whichever the person's ssh shows at that point. Its text must never hold
// a secret.
type userError struct {
	msg string
	// reason is the short machine-friendly reason for the audit row and
	// the log line ("no amendment", "not a target", ...).
	reason string
}

func (e *userError) Error() string { return e.msg }

// refuse returns a userError with a formatted message; reason names the
// kind of refusal for audit and logs.
func refuse(reason, format string, args ...any) *userError {
	return &userError{msg: "jitproxy: " + fmt.Sprintf(format, args...), reason: reason}
}

// userLine renders any error as the one line a person sees: a userError
// as it is, anything else (the errors Access, Registry and certs return are
// written for people) prefixed with "jitproxy: " unless it already is, and
// cut at the first line break.
func userLine(err error) string {
	var ue *userError
	if errors.As(err, &ue) {
		return oneLine(ue.msg)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "jitproxy: ") {
		msg = "jitproxy: " + msg
	}
	return oneLine(msg)
}

// reasonOf is the short reason of err for audit rows and logs.
func reasonOf(err error) string {
	var ue *userError
	if errors.As(err, &ue) && ue.reason != "" {
		return ue.reason
	}
	return err.Error()
}

// oneLine cuts s at its first line break and drops other control
// characters, so a message cannot forge more terminal lines.
func oneLine(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return -1
		}
		return r
	}, s)
}
