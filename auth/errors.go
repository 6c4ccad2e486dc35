package auth

import (
	"errors"
	"fmt"
	"net/http"
)

// Errors from verifying an ID token. Each one wraps ErrInvalidToken.
var (
	ErrInvalidToken     = errors.New("invalid ID token")
	ErrMalformedToken   = fmt.Errorf("%w: not a well-formed JWT", ErrInvalidToken)
	ErrWrongIssuer      = fmt.Errorf("%w: issued by another identity provider", ErrInvalidToken)
	ErrWrongAudience    = fmt.Errorf("%w: issued for another client", ErrInvalidToken)
	ErrTokenExpired     = fmt.Errorf("%w: expired", ErrInvalidToken)
	ErrBadSignature     = fmt.Errorf("%w: signature does not verify with the identity provider's published keys", ErrInvalidToken)
	ErrNonceMismatch    = fmt.Errorf("%w: nonce does not match this login", ErrInvalidToken)
	ErrNoEmail          = fmt.Errorf("%w: no email claim; ask your identity provider admin to release the email claim to jitproxy", ErrInvalidToken)
	ErrEmailNotVerified = fmt.Errorf("%w: email address is not verified at the identity provider", ErrInvalidToken)
)

// Errors from the identity provider and the login flows.
var (
	ErrIdPUnavailable       = errors.New("identity provider unavailable: check the issuer URL and that the provider is up, then try again")
	ErrInvalidConfig        = errors.New("invalid config")
	ErrInvalidRequest       = errors.New("invalid request")
	ErrInvalidRedirectURI   = errors.New("redirect_uri must be a loopback http URL with a port, such as http://127.0.0.1:PORT/callback or http://[::1]:PORT/callback")
	ErrInvalidCode          = errors.New("login code unknown, already used or expired: run `jitproxy login` again")
	ErrCodeVerifierMismatch = errors.New("code_verifier does not match the login's code_challenge: run `jitproxy login` again")
	ErrTooManyPending       = errors.New("too many logins in progress: try again in a minute")
	ErrLoginFailed          = errors.New("login failed")
	ErrLoginTimeout         = errors.New("timed out waiting for the login to finish: run `jitproxy login` again")
	ErrDeviceUnsupported    = errors.New("the identity provider does not support device login: run `jitproxy login` without --device")
	ErrDeviceDenied         = errors.New("device login was denied at the identity provider")
	ErrDeviceExpired        = errors.New("device login unknown or expired: run `jitproxy login --device` again")
	errSlowDown             = errors.New("polling too fast: slow down")
)

// Errors from checking a jitproxy session token.
var (
	ErrNotLoggedIn     = errors.New("not logged in: run `jitproxy login`")
	ErrSessionExpired  = errors.New("session expired: run `jitproxy login` again")
	ErrSessionRevoked  = errors.New("session token revoked or unknown: run `jitproxy login` again")
	ErrSessionNotFound = errors.New("session not found")
)

// wireError ties a sentinel error to its HTTP status and its stable code in
// the broker's JSON errors, so the CLI can turn a code back into the sentinel.
type wireError struct {
	err    error
	status int
	code   string
}

func wireErrors() []wireError {
	return []wireError{
		{ErrNotLoggedIn, http.StatusUnauthorized, "not_logged_in"},
		{ErrSessionExpired, http.StatusUnauthorized, "session_expired"},
		{ErrSessionRevoked, http.StatusUnauthorized, "session_revoked"},
		{ErrInvalidCode, http.StatusBadRequest, "invalid_grant"},
		{ErrCodeVerifierMismatch, http.StatusBadRequest, "invalid_code_verifier"},
		{ErrInvalidRedirectURI, http.StatusBadRequest, "invalid_redirect_uri"},
		{ErrInvalidRequest, http.StatusBadRequest, "invalid_request"},
		{ErrTooManyPending, http.StatusServiceUnavailable, "too_many_pending"},
		{ErrDeviceUnsupported, http.StatusNotImplemented, "device_unsupported"},
		{ErrDeviceDenied, http.StatusForbidden, "access_denied"},
		{ErrDeviceExpired, http.StatusBadRequest, "expired_token"},
		{errSlowDown, http.StatusBadRequest, "slow_down"},
		{ErrIdPUnavailable, http.StatusBadGateway, "idp_unavailable"},
		{ErrInvalidToken, http.StatusForbidden, "invalid_id_token"},
		{ErrLoginFailed, http.StatusForbidden, "login_failed"},
	}
}

// wireCode returns the HTTP status and code for err; unknown errors are server errors.
func wireCode(err error) (int, string) {
	for _, w := range wireErrors() {
		if errors.Is(err, w.err) {
			return w.status, w.code
		}
	}
	return http.StatusInternalServerError, "server_error"
}

// ServerError is an error answer from the jitproxy server's /auth routes.
// errors.Is matches it against the sentinel its code stands for.
type ServerError struct {
	Status  int    // HTTP status
	Code    string // stable code, such as "session_expired"
	Message string // one line for a person
}

func (e *ServerError) Error() string {
	return fmt.Sprintf("auth: jitproxy server: %s (%s)", e.Message, e.Code)
}

// Is reports whether target is the sentinel error for e.Code.
func (e *ServerError) Is(target error) bool {
	for _, w := range wireErrors() {
		if w.code == e.Code {
			return target == w.err
		}
	}
	return false
}
