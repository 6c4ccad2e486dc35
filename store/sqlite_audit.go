package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"iter"

	"github.com/jitproxy/jitproxy/amendment"
	"github.com/jitproxy/jitproxy/audit"
)

// AppendAudit seals e onto the end of the chain and stores it. e needs a
// Type and a Time; its Data, if any, must be JSON.
func (s *SQLite) AppendAudit(ctx context.Context, e audit.Event) (audit.Event, error) {
	switch {
	case e.Type == "":
		return audit.Event{}, errors.New("store: append audit: the event has no type")
	case e.Time.IsZero():
		return audit.Event{}, fmt.Errorf("store: append audit %s: the event has no time", e.Type)
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		return s.appendAudit(ctx, tx, &e)
	}, func() { s.committed(e, nil) })
	if err != nil {
		return audit.Event{}, fmt.Errorf("store: append audit %s: %w", e.Type, err)
	}
	return e, nil
}

// appendAudit seals e onto the last row of the chain and inserts it, in tx.
// Only one write transaction runs at a time, so the last row cannot change
// under it.
func (s *SQLite) appendAudit(ctx context.Context, tx *sql.Tx, e *audit.Event) error {
	var (
		seq  int64
		prev = audit.Genesis
	)
	err := tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1`).Scan(&seq, &prev)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	if err := e.Seal(seq+1, prev); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO audit
		(seq, time, type, actor, amendment, session, data, prev_hash, hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.Seq, formatTime(e.Time), e.Type, e.Actor, e.Amendment, e.Session, string(e.Data), e.PrevHash, e.Hash)
	return err
}

// committed runs after a write commits, still in commit order: it logs the
// audit row for the SIEM (without its data) and publishes the change, if
// the write was one.
func (s *SQLite) committed(e audit.Event, c *amendment.Change) {
	s.log.Info().Int64("seq", e.Seq).Time("time", e.Time).Str("type", e.Type).Str("actor", e.Actor).
		Str("amendment", e.Amendment).Str("session", e.Session).Str("hash", e.Hash).Msg("audit")
	if c != nil {
		s.hub.publish(*c)
	}
}

// AuditEvents yields the stored audit events with seq > after, in seq
// order, streaming from one read connection (and one read snapshot) that
// it holds until the loop ends. A failure is yielded once, as the last
// pair.
func (s *SQLite) AuditEvents(ctx context.Context, after int64) iter.Seq2[audit.Event, error] {
	return func(yield func(audit.Event, error) bool) {
		rows, err := s.r.QueryContext(ctx, `SELECT seq, time, type, actor, amendment, session, data, prev_hash, hash
			FROM audit WHERE seq > ? ORDER BY seq`, after)
		if err != nil {
			yield(audit.Event{}, fmt.Errorf("store: audit events: %w", err))
			return
		}
		defer rows.Close()
		for rows.Next() {
			var (
				e        audit.Event
				tm, data string
			)
			if err := rows.Scan(&e.Seq, &tm, &e.Type, &e.Actor, &e.Amendment, &e.Session, &data, &e.PrevHash, &e.Hash); err != nil {
				yield(audit.Event{}, fmt.Errorf("store: audit events: %w", err))
				return
			}
			if e.Time, err = parseTime(tm); err != nil {
				yield(audit.Event{}, fmt.Errorf("store: audit events: row seq %d: unreadable time: %w", e.Seq, err))
				return
			}
			e.Data = json.RawMessage(data)
			if !yield(e, nil) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			yield(audit.Event{}, fmt.Errorf("store: audit events: %w", err))
		}
	}
}
