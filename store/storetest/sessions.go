package storetest

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/jitproxy/jitproxy/amendment"
	"github.com/jitproxy/jitproxy/store"
)

// sessionStore is the login-session part of a backend (not yet in
// store.Store; the auth package will declare what it uses).
type sessionStore interface {
	CreateSession(ctx context.Context, s store.LoginSession) error
	GetSession(ctx context.Context, tokenHash string) (store.LoginSession, error)
	DeleteSession(ctx context.Context, tokenHash string) error
	DeleteExpiredSessions(ctx context.Context, before time.Time) (int64, error)
}

func testLoginSessions(t *testing.T, st store.Store) {
	s, ok := st.(sessionStore)
	if !ok {
		t.Fatalf("%T does not have the login-session methods (CreateSession, GetSession, DeleteSession, DeleteExpiredSessions)", st)
	}
	ctx := testContext(t)
	alice := amendment.Identity{Subject: "sub-1", Email: "alice@example.com", Name: "Alice", Groups: []string{"eng", "oncall"}}
	sessions := []store.LoginSession{
		{TokenHash: "h1", Identity: alice, IssuedAt: t0, ExpiresAt: t0.Add(time.Hour)},
		{TokenHash: "h2", Identity: amendment.Identity{Email: "bob@example.com"}, IssuedAt: t0, ExpiresAt: t0.Add(2 * time.Hour)},
		{TokenHash: "h3", Identity: alice, IssuedAt: t0.Add(time.Minute), ExpiresAt: t0.Add(3 * time.Hour)},
	}
	for _, ls := range sessions {
		if err := s.CreateSession(ctx, ls); err != nil {
			t.Fatalf("CreateSession(%s): %v", ls.TokenHash, err)
		}
	}
	for _, want := range sessions {
		got, err := s.GetSession(ctx, want.TokenHash)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("GetSession(%s) = %+v, %v; want %+v", want.TokenHash, got, err, want)
		}
	}

	dup := store.LoginSession{TokenHash: "h1", Identity: amendment.Identity{Email: "mallory@example.com"}, IssuedAt: t0, ExpiresAt: t0.Add(9 * time.Hour)}
	bad := []struct {
		name string
		ls   store.LoginSession
	}{
		{"duplicate token hash", dup},
		{"empty token hash", store.LoginSession{Identity: alice, IssuedAt: t0, ExpiresAt: t0.Add(time.Hour)}},
		{"no expiry", store.LoginSession{TokenHash: "h9", Identity: alice, IssuedAt: t0}},
	}
	for _, tt := range bad {
		if err := s.CreateSession(ctx, tt.ls); err == nil {
			t.Errorf("CreateSession with %s = nil; want an error", tt.name)
		}
	}
	if got, err := s.GetSession(ctx, "h1"); err != nil || !reflect.DeepEqual(got, sessions[0]) {
		t.Errorf("GetSession(h1) after a duplicate create = %+v, %v; want it unchanged", got, err)
	}
	if _, err := s.GetSession(ctx, "h9"); !errors.Is(err, store.ErrSessionNotFound) {
		t.Errorf("GetSession(h9) after a refused create: %v; want ErrSessionNotFound", err)
	}

	if _, err := s.GetSession(ctx, "unknown"); !errors.Is(err, store.ErrSessionNotFound) {
		t.Errorf("GetSession(unknown): %v; want an error matching store.ErrSessionNotFound", err)
	}
	if err := s.DeleteSession(ctx, "h2"); err != nil {
		t.Fatalf("DeleteSession(h2): %v", err)
	}
	if _, err := s.GetSession(ctx, "h2"); !errors.Is(err, store.ErrSessionNotFound) {
		t.Errorf("GetSession(h2) after DeleteSession: %v; want ErrSessionNotFound", err)
	}
	if err := s.DeleteSession(ctx, "h2"); !errors.Is(err, store.ErrSessionNotFound) {
		t.Errorf("DeleteSession(h2) again: %v; want an error matching store.ErrSessionNotFound", err)
	}
	if _, err := s.GetSession(ctx, "h1"); err != nil {
		t.Errorf("GetSession(h1) after deleting h2: %v; want it kept", err)
	}

	// A session is valid while now < ExpiresAt, so one that expires at
	// exactly before is removed.
	steps := []struct {
		before time.Time
		want   int64
		left   []string
		gone   []string
	}{
		{t0.Add(time.Hour - time.Microsecond), 0, []string{"h1", "h3"}, nil},
		{t0.Add(time.Hour), 1, []string{"h3"}, []string{"h1"}},
		{t0.Add(time.Hour), 0, []string{"h3"}, []string{"h1"}},
		{t0.Add(10 * time.Hour), 1, nil, []string{"h1", "h3"}},
	}
	for _, st := range steps {
		n, err := s.DeleteExpiredSessions(ctx, st.before)
		if err != nil || n != st.want {
			t.Errorf("DeleteExpiredSessions(%v) = %d, %v; want %d", st.before, n, err, st.want)
		}
		for _, h := range st.left {
			if _, err := s.GetSession(ctx, h); err != nil {
				t.Errorf("after DeleteExpiredSessions(%v): GetSession(%s): %v; want it kept", st.before, h, err)
			}
		}
		for _, h := range st.gone {
			if _, err := s.GetSession(ctx, h); !errors.Is(err, store.ErrSessionNotFound) {
				t.Errorf("after DeleteExpiredSessions(%v): GetSession(%s): %v; want it gone", st.before, h, err)
			}
		}
	}
}
