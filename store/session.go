package store

import (
	"errors"
	"time"

	"github.com/jitproxy/jitproxy/amendment"
)

// ErrSessionNotFound means no login session has the token hash asked for.
var ErrSessionNotFound = errors.New("login session not found")

// LoginSession is a proxy login session: what `jitproxy login` ends with.
// The store keeps only a hash of the session token, never the token. Times
// are kept in UTC at microsecond precision.
type LoginSession struct {
	TokenHash string
	Identity  amendment.Identity
	IssuedAt  time.Time
	ExpiresAt time.Time
}
