package certs

import "errors"

// Errors from loading the CA keys and from New.
var (
	ErrInvalidConfig = errors.New("invalid config")
	// ErrKeyFileMode is a key file that group or others may read or write.
	ErrKeyFileMode = errors.New("key file is readable or writable by group or others")
)

// Errors from minting a certificate: the request, not the CA, is wrong.
var (
	ErrBadKeyID        = errors.New("key ID is empty, too long or has control characters")
	ErrNoPrincipals    = errors.New("no principals")
	ErrBadPrincipal    = errors.New("principal is empty or has control characters")
	ErrBadValidity     = errors.New("invalid validity period")
	ErrValidityTooLong = errors.New("validity longer than the maximum")
	ErrBadPublicKey    = errors.New("public key not accepted")
	ErrBadSourceAddr   = errors.New("source address is not an IP address or CIDR prefix")
	ErrBadTokenField   = errors.New("person, amendment and target must each have 1 to 255 bytes")
)

// Errors from checking the certificate a client logs in with. Each message
// is one line a person can act on; the bastion may show it as it is.
var (
	ErrNotCertificate  = errors.New("only jitproxy certificates are accepted: run jitproxy login")
	ErrNotUserCert     = errors.New("a host certificate cannot log in; only jitproxy user certificates are accepted: run jitproxy login")
	ErrUnknownCA       = errors.New("certificate not signed by this jitproxy's user CA: run jitproxy login")
	ErrCertExpired     = errors.New("certificate expired: run jitproxy login")
	ErrCertNotYetValid = errors.New("certificate not yet valid: check this computer's clock, then run jitproxy login")
	ErrCertRevoked     = errors.New("certificate revoked: run jitproxy login")
	ErrCertInvalid     = errors.New("certificate invalid: run jitproxy login")
)

// Errors from verifying an upstream target's host key.
var (
	ErrNoHostKeys      = errors.New("no pinned host keys and no host CAs: jitproxy never skips host-key verification; set the target's host_keys or host_cas")
	ErrHostKeyMismatch = errors.New("host key is neither pinned nor certified by a trusted host CA: check the target's host_keys or host_cas")
)

// Errors from verifying a DB token. Verify wraps them with the target and
// the command that gets a new token.
var (
	ErrTokenInvalid     = errors.New("database token invalid")
	ErrTokenExpired     = errors.New("database token expired")
	ErrTokenWrongPerson = errors.New("database token was issued to another person")
	ErrTokenWrongTarget = errors.New("database token was issued for another target")
)
