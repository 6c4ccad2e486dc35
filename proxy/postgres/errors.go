package postgres

import (
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
)

// ErrServerClosed is what Serve returns after Shutdown.
var ErrServerClosed = errors.New("pgproxy: server closed")

// errShutdown is the cause of every session that Shutdown ends.
var errShutdown = errors.New("proxy shutting down")

// Ends of a session that are nobody's decision.
var (
	errClientClosed   = errors.New("client closed")
	errUpstreamClosed = errors.New("target closed the connection")
)

// The SQLSTATEs the proxy answers with.
const (
	codeConnectionFailure  = "08006" // connection_failure
	codeProtocolViolation  = "08P01" // protocol_violation
	codeRejectedConnection = "08004" // sqlserver_rejected_establishment_of_sqlconnection
	codeFeatureUnsupported = "0A000" // feature_not_supported
	codeInvalidAuthSpec    = "28000" // invalid_authorization_specification
	codeInvalidPassword    = "28P01" // invalid_password
	codeProgramLimit       = "54000" // program_limit_exceeded
	codeAdminShutdown      = "57P01" // admin_shutdown
	codeCannotConnectNow   = "57P03" // cannot_connect_now
	codeSystemError        = "58000" // system_error
	codeInternalError      = "XX000" // internal_error
)

// Bounds and forms of what people read.
const (
	severityFatal       = "FATAL"
	maxUserMessageBytes = 1000
	userMessagePrefix   = "jitproxy: "
	sqlstateLen         = 5
)

// userError is what a person sees when jitproxy refuses or ends their
// session: a FATAL ErrorResponse whose SQLSTATE says what kind of refusal
// it is and whose message is one line starting "jitproxy: " that says what
// to do next. Its text must never hold a secret.
type userError struct {
	code string // SQLSTATE
	msg  string
	// reason is the short machine-friendly reason for the audit row and
	// the log line ("no tls", "bad token", ...).
	reason string
}

func (e *userError) Error() string { return e.msg }

// refuse returns a userError with a formatted message.
func refuse(code, reason, format string, args ...any) *userError {
	return &userError{code: code, msg: userMessagePrefix + fmt.Sprintf(format, args...), reason: reason}
}

// refuseWith renders err, whose text is written for people (Access's,
// Registry's), as a userError: prefixed "jitproxy: " unless it already is.
func refuseWith(code, reason string, err error) *userError {
	msg := err.Error()
	if !strings.HasPrefix(msg, userMessagePrefix) {
		msg = userMessagePrefix + msg
	}
	return &userError{code: code, msg: msg, reason: reason}
}

// asUserError returns err as a userError; anything else is an internal
// failure, shown as such without its details (they are logged).
func asUserError(err error, session string) *userError {
	var ue *userError
	if errors.As(err, &ue) {
		return ue
	}
	return refuse(codeInternalError, "internal error", "internal error in the proxy; try again, and if it persists give the jitproxy admins session %s", session)
}

// fatal encodes a FATAL ErrorResponse carrying code and msg (made one
// line).
func fatal(code, msg string) []byte {
	b, _ := (&pgproto3.ErrorResponse{
		Severity:            severityFatal,
		SeverityUnlocalized: severityFatal,
		Code:                code,
		Message:             oneLine(msg),
	}).Encode(nil)
	return b
}

// oneLine cuts s at its first line break, drops other control characters
// (so a message cannot forge more terminal lines) and bounds its length.
func oneLine(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return -1
		}
		return r
	}, s)
	if len(s) > maxUserMessageBytes {
		s = strings.ToValidUTF8(s[:maxUserMessageBytes], "") + "…"
	}
	return s
}
