package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// CreateSession stores a new login session. A session with the same token
// hash already stored is an error (it means a token was reused).
func (s *SQLite) CreateSession(ctx context.Context, ls LoginSession) error {
	switch {
	case ls.TokenHash == "":
		return errors.New("store: create session: the token hash is empty")
	case ls.ExpiresAt.IsZero():
		return errors.New("store: create session: the session has no expiry")
	}
	id, err := json.Marshal(ls.Identity)
	if err != nil {
		return fmt.Errorf("store: create session: %w", err)
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO sessions (token_hash, identity, issued_at, expires_at)
			VALUES (?, ?, ?, ?) ON CONFLICT (token_hash) DO NOTHING`,
			ls.TokenHash, string(id), formatTime(ls.IssuedAt), formatTime(ls.ExpiresAt))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return errors.New("a session with this token hash already exists")
		}
		return nil
	}, nil)
	if err != nil {
		return fmt.Errorf("store: create session: %w", err)
	}
	return nil
}

// GetSession returns the login session with tokenHash, or an error matching
// ErrSessionNotFound. It does not look at the expiry: the caller compares
// ExpiresAt with its own clock.
func (s *SQLite) GetSession(ctx context.Context, tokenHash string) (LoginSession, error) {
	var id, issued, expires string
	err := s.r.QueryRowContext(ctx, `SELECT identity, issued_at, expires_at FROM sessions WHERE token_hash = ?`, tokenHash).
		Scan(&id, &issued, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return LoginSession{}, fmt.Errorf("store: get session: %w", ErrSessionNotFound)
	}
	if err != nil {
		return LoginSession{}, fmt.Errorf("store: get session: %w", err)
	}
	ls := LoginSession{TokenHash: tokenHash}
	if err := json.Unmarshal([]byte(id), &ls.Identity); err != nil {
		return LoginSession{}, fmt.Errorf("store: get session: identity: %w", err)
	}
	if ls.IssuedAt, err = parseTime(issued); err != nil {
		return LoginSession{}, fmt.Errorf("store: get session: %w", err)
	}
	if ls.ExpiresAt, err = parseTime(expires); err != nil {
		return LoginSession{}, fmt.Errorf("store: get session: %w", err)
	}
	return ls, nil
}

// DeleteSession removes the login session with tokenHash (a logout). An
// unknown hash is an error matching ErrSessionNotFound.
func (s *SQLite) DeleteSession(ctx context.Context, tokenHash string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE token_hash = ?`, tokenHash)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrSessionNotFound
		}
		return nil
	}, nil)
	if err != nil {
		return fmt.Errorf("store: delete session: %w", err)
	}
	return nil
}

// DeleteExpiredSessions removes the login sessions whose ExpiresAt is at or
// before before (a session is valid only while now < ExpiresAt), and returns
// how many it removed.
func (s *SQLite) DeleteExpiredSessions(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE expires_at <= ?`, formatTime(before))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	}, nil)
	if err != nil {
		return 0, fmt.Errorf("store: delete expired sessions: %w", err)
	}
	return n, nil
}
