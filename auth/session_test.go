package auth

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestMemorySessions(t *testing.T) {
	ctx := context.Background()
	m := NewMemorySessions()
	t0 := time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)
	alice := Session{TokenHash: "h-alice", Identity: Identity{Email: "alice@example.com", Groups: []string{"dev"}}, IssuedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	bob := Session{TokenHash: "h-bob", Identity: Identity{Email: "bob@example.com"}, IssuedAt: t0.Add(2 * time.Hour), ExpiresAt: t0.Add(3 * time.Hour)}

	steps := []struct {
		name string
		do   func() error
		want error
	}{
		{"create alice", func() error { return m.CreateSession(ctx, alice) }, nil},
		{"create alice twice", func() error { return m.CreateSession(ctx, alice) }, errAny},
		{"get alice", func() error { return wantEmail(m, "h-alice", "alice@example.com") }, nil},
		{"get unknown", func() error { _, err := m.GetSession(ctx, "nope"); return err }, ErrSessionNotFound},
		// bob's session is issued after alice's expired: creating it drops hers.
		{"create bob", func() error { return m.CreateSession(ctx, bob) }, nil},
		{"alice pruned", func() error { _, err := m.GetSession(ctx, "h-alice"); return err }, ErrSessionNotFound},
		{"delete bob", func() error { return m.DeleteSession(ctx, "h-bob") }, nil},
		{"delete bob again", func() error { return m.DeleteSession(ctx, "h-bob") }, ErrSessionNotFound},
	}
	for _, s := range steps {
		err := s.do()
		switch {
		case s.want == errAny && err == nil:
			t.Errorf("%s: got nil; want an error", s.name)
		case s.want != errAny && (!errors.Is(err, s.want) || (s.want == nil) != (err == nil)):
			t.Errorf("%s: got %v; want %v", s.name, err, s.want)
		}
	}
}

// errAny stands for "some error" in a table.
var errAny = errors.New("any error")

func wantEmail(m *MemorySessions, hash, email string) error {
	s, err := m.GetSession(context.Background(), hash)
	if err != nil {
		return err
	}
	s.Identity.Groups[0] = "mutated" // callers cannot change the stored copy
	again, _ := m.GetSession(context.Background(), hash)
	if s.Identity.Email != email || again.Identity.Groups[0] != "dev" {
		return errors.New("wrong or aliased session")
	}
	return nil
}

func TestNewSessionToken(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		tok, hash, err := newSessionToken()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(tok, SessionTokenPrefix) || len(tok) != 47 || seen[tok] {
			t.Fatalf("token %q: want a fresh jpt_ token of 47 characters", tok)
		}
		if hash != hashSessionToken(tok) || len(hash) != 64 || strings.Contains(hash, tok[4:]) {
			t.Fatalf("hash %q of %q: want the 64-hex SHA-256", hash, tok)
		}
		seen[tok] = true
	}
}
