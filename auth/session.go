package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"time"
)

// SessionTokenPrefix starts every jitproxy session token, so a leaked one is
// recognisable (secret scanners) and never confused with an IdP token.
const SessionTokenPrefix = "jpt_"

// Session is a logged-in CLI. Only the token's hash is ever stored.
type Session struct {
	TokenHash string // lowercase hex SHA-256 of the whole token, prefix included
	Identity  Identity
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// SessionStore is where the Broker keeps sessions. GetSession and
// DeleteSession return an error wrapping ErrSessionNotFound for an unknown hash.
type SessionStore interface {
	CreateSession(ctx context.Context, s Session) error
	GetSession(ctx context.Context, tokenHash string) (Session, error)
	DeleteSession(ctx context.Context, tokenHash string) error
}

// newSessionToken returns a fresh token (32 random bytes, base64url, with
// SessionTokenPrefix) and its hash.
func newSessionToken() (token, hash string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("auth: session token: %w", err)
	}
	token = SessionTokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	return token, hashSessionToken(token), nil
}

func hashSessionToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// MemorySessions is a SessionStore in memory, for tests and dev: sessions
// are lost on restart. Creating a session drops the ones that expired
// before it was issued.
type MemorySessions struct {
	mu       sync.Mutex         // guards sessions
	sessions map[string]Session // by token hash
}

var _ SessionStore = (*MemorySessions)(nil)

// NewMemorySessions returns an empty in-memory session store.
func NewMemorySessions() *MemorySessions {
	return &MemorySessions{sessions: make(map[string]Session)}
}

func (m *MemorySessions) CreateSession(_ context.Context, s Session) error {
	s.Identity.Groups = slices.Clone(s.Identity.Groups)
	m.mu.Lock()
	defer m.mu.Unlock()
	for h, old := range m.sessions {
		if !old.ExpiresAt.After(s.IssuedAt) {
			delete(m.sessions, h)
		}
	}
	if _, dup := m.sessions[s.TokenHash]; dup {
		return fmt.Errorf("auth: create session: duplicate token hash")
	}
	m.sessions[s.TokenHash] = s
	return nil
}

func (m *MemorySessions) GetSession(_ context.Context, tokenHash string) (Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sessions[tokenHash]
	if !ok {
		return Session{}, fmt.Errorf("auth: get session: %w", ErrSessionNotFound)
	}
	s.Identity.Groups = slices.Clone(s.Identity.Groups)
	return s, nil
}

func (m *MemorySessions) DeleteSession(_ context.Context, tokenHash string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.sessions[tokenHash]; !ok {
		return fmt.Errorf("auth: delete session: %w", ErrSessionNotFound)
	}
	delete(m.sessions, tokenHash)
	return nil
}
