package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jitproxy/jitproxy/amendment"
	"github.com/jitproxy/jitproxy/audit"
)

// Create stores c.After (which must be Version 1) and its audit row in one
// transaction, then publishes c. An existing ID is a conflict
// (amendment.ErrConflict) and writes nothing.
func (s *SQLite) Create(ctx context.Context, c amendment.Change) error {
	if err := checkChange(c, false); err != nil {
		return fmt.Errorf("store: create: %w", err)
	}
	a := c.After
	data, ev, err := encodeChange(c)
	if err != nil {
		return fmt.Errorf("store: create %s: %w", a.ID, err)
	}
	var domain error
	err = s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO amendments
			(id, version, state, requester, target, created_at, updated_at, data)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO NOTHING`,
			a.ID, a.Version, string(a.State), a.Requester, a.Resource.Target,
			formatTime(a.CreatedAt), formatTime(a.UpdatedAt), data)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			domain = amendment.Errorf(amendment.CodeConflict, "amendment %s already exists", a.ID)
			return domain
		}
		return s.appendAudit(ctx, tx, &ev)
	}, func() { s.committed(ev, &c) })
	if domain != nil {
		return domain
	}
	if err != nil {
		return fmt.Errorf("store: create %s: %w", a.ID, err)
	}
	return nil
}

// Update replaces c.Before with c.After if the stored version still equals
// c.Before.Version, and appends c's audit row, in one transaction; then it
// publishes c. A lost race matches amendment.ErrConflict, an unknown ID
// amendment.ErrNotFound; either writes nothing.
func (s *SQLite) Update(ctx context.Context, c amendment.Change) error {
	if err := checkChange(c, true); err != nil {
		return fmt.Errorf("store: update: %w", err)
	}
	a := c.After
	data, ev, err := encodeChange(c)
	if err != nil {
		return fmt.Errorf("store: update %s: %w", a.ID, err)
	}
	var domain error
	err = s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE amendments
			SET version = ?, state = ?, requester = ?, target = ?, created_at = ?, updated_at = ?, data = ?
			WHERE id = ? AND version = ?`,
			a.Version, string(a.State), a.Requester, a.Resource.Target,
			formatTime(a.CreatedAt), formatTime(a.UpdatedAt), data,
			a.ID, c.Before.Version)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			var now int64
			err := tx.QueryRowContext(ctx, `SELECT version FROM amendments WHERE id = ?`, a.ID).Scan(&now)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				domain = notFound(a.ID)
			case err != nil:
				return err
			default:
				domain = amendment.Errorf(amendment.CodeConflict, "amendment %s changed since version %d (it is at version %d now)", a.ID, c.Before.Version, now)
			}
			return domain
		}
		return s.appendAudit(ctx, tx, &ev)
	}, func() { s.committed(ev, &c) })
	if domain != nil {
		return domain
	}
	if err != nil {
		return fmt.Errorf("store: update %s: %w", a.ID, err)
	}
	return nil
}

// checkChange refuses a change no correct caller makes, before anything is
// written.
func checkChange(c amendment.Change, update bool) error {
	switch {
	case c.After == nil:
		return errors.New("change has no After")
	case c.After.ID == "":
		return errors.New("amendment has no ID")
	case c.Event == "":
		return fmt.Errorf("change of amendment %s has no Event", c.After.ID)
	case c.At.IsZero():
		return fmt.Errorf("change of amendment %s has no time (At)", c.After.ID)
	}
	if !update {
		if c.After.Version != 1 {
			return fmt.Errorf("new amendment %s has version %d, not 1", c.After.ID, c.After.Version)
		}
		return nil
	}
	switch {
	case c.Before == nil:
		return fmt.Errorf("change of amendment %s has no Before", c.After.ID)
	case c.Before.ID != c.After.ID:
		return fmt.Errorf("change turns amendment %s into %s", c.Before.ID, c.After.ID)
	case c.After.Version != c.Before.Version+1:
		return fmt.Errorf("change of amendment %s goes from version %d to %d, not %d", c.After.ID, c.Before.Version, c.After.Version, c.Before.Version+1)
	}
	return nil
}

// encodeChange returns the amendment as stored and the (unsealed) audit row
// the change writes.
func encodeChange(c amendment.Change) (string, audit.Event, error) {
	data, err := json.Marshal(c.After)
	if err != nil {
		return "", audit.Event{}, err
	}
	ev, err := audit.NewEvent(c.At, c.Event, c.Actor, c.AuditData())
	if err != nil {
		return "", audit.Event{}, err
	}
	ev.Amendment = c.After.ID
	return string(data), ev, nil
}

func notFound(id string) error {
	return amendment.Errorf(amendment.CodeNotFound, "no amendment %s", id)
}

// Get returns the current version of amendment id.
func (s *SQLite) Get(ctx context.Context, id string) (*amendment.Amendment, error) {
	var data string
	err := s.r.QueryRowContext(ctx, `SELECT data FROM amendments WHERE id = ?`, id).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound(id)
	}
	if err != nil {
		return nil, fmt.Errorf("store: get %s: %w", id, err)
	}
	a, err := decodeAmendment(data)
	if err != nil {
		return nil, fmt.Errorf("store: get %s: %w", id, err)
	}
	return a, nil
}

// List returns the amendments that pass f, newest first (by CreatedAt, then
// by ID).
func (s *SQLite) List(ctx context.Context, f amendment.Filter) ([]*amendment.Amendment, error) {
	if f.Limit < 0 {
		return nil, amendment.Errorf(amendment.CodeBadRequest, "the limit must be positive (or 0 for no limit), not %d", f.Limit)
	}
	var (
		where []string
		args  []any
	)
	if len(f.States) > 0 {
		where = append(where, "state IN (?"+strings.Repeat(", ?", len(f.States)-1)+")")
		for _, st := range f.States {
			args = append(args, string(st))
		}
	}
	if f.Requester != "" {
		where = append(where, "requester = ?")
		args = append(args, f.Requester)
	}
	if f.Target != "" {
		where = append(where, "target = ?")
		args = append(args, f.Target)
	}
	if f.IDPrefix != "" {
		// substr, not LIKE: the prefix is data, never a pattern.
		where = append(where, "substr(id, 1, ?) = ?")
		args = append(args, len(f.IDPrefix), f.IDPrefix)
	}
	q := `SELECT data FROM amendments`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY created_at DESC, id`
	if f.Limit > 0 {
		q += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list: %w", err)
	}
	defer rows.Close()
	var out []*amendment.Amendment
	for rows.Next() {
		var data string
		if err := rows.Scan(&data); err != nil {
			return nil, fmt.Errorf("store: list: %w", err)
		}
		a, err := decodeAmendment(data)
		if err != nil {
			return nil, fmt.Errorf("store: list: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list: %w", err)
	}
	return out, nil
}

func decodeAmendment(data string) (*amendment.Amendment, error) {
	var a amendment.Amendment
	if err := json.Unmarshal([]byte(data), &a); err != nil {
		return nil, fmt.Errorf("decode stored amendment: %w", err)
	}
	return &a, nil
}
