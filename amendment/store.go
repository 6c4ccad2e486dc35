package amendment

import (
	"context"
	"time"
)

// Store is what the amendment service needs from persistence. A store
// applies each Change atomically together with its audit row, and publishes
// committed changes to subscribers.
type Store interface {
	// Create stores c.After (Version 1) and its audit row. An existing ID is
	// a conflict.
	Create(ctx context.Context, c Change) error
	// Update replaces c.Before with c.After if, and only if, the stored
	// version still equals c.Before.Version (compare-and-set), and appends
	// c's audit row in the same transaction. A lost race returns an error
	// matching ErrConflict; an unknown ID one matching ErrNotFound.
	Update(ctx context.Context, c Change) error
	// Get returns the current version; an unknown ID matches ErrNotFound.
	Get(ctx context.Context, id string) (*Amendment, error)
	// List returns the amendments that pass f, newest first.
	List(ctx context.Context, f Filter) ([]*Amendment, error)
	// Subscribe returns committed changes in commit order until ctx ends.
	// A subscriber that falls too far behind has its channel closed: it must
	// then re-read the state it cares about and subscribe again.
	Subscribe(ctx context.Context) <-chan Change
}

// Change is one transition: the audit event it writes and the amendment
// before (nil on create) and after.
type Change struct {
	// Event is the audit event type, one of the Event* constants.
	Event  string
	Actor  string
	At     time.Time
	Reason string
	Before *Amendment
	After  *Amendment
}

// AuditData is the JSON data of the audit row a change writes: before and
// after, so the lineage of every grant can be reconstructed from the trail.
func (c Change) AuditData() map[string]any {
	d := map[string]any{"after": c.After}
	if c.Before != nil {
		d["before"] = c.Before
	}
	if c.Reason != "" {
		d["reason"] = c.Reason
	}
	return d
}
