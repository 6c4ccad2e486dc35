package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"slices"
	"sync"

	"github.com/jitproxy/jitproxy/amendment"
	"github.com/jitproxy/jitproxy/audit"
)

// maxAuditBatch caps how many appends one group commit writes, so that a
// flood of appenders still commits in bounded steps.
const maxAuditBatch = 512

// auditQueue batches concurrent AppendAudit calls into group commits: one
// write transaction, so one fsync, for every append waiting when the
// write lock comes free. It is ready to use as its zero value.
type auditQueue struct {
	mu      sync.Mutex     // guards waiting
	waiting []*auditAppend // appends not yet taken by a group commit, in arrival order
}

// auditAppend is one AppendAudit call waiting in the queue.
type auditAppend struct {
	ctx  context.Context
	e    audit.Event   // sealed by the group commit
	err  error         // the append's, or its whole batch's, error
	done chan struct{} // closed when e or err is final
}

// AppendAudit seals e onto the end of the chain and stores it. e needs a
// Type and a Time; its Data, if any, must be JSON.
//
// Concurrent calls are committed together (group commit): each caller
// queues its event, and whichever caller next holds the write lock takes
// every queued event (up to maxAuditBatch), in arrival order, and appends
// them in one BEGIN IMMEDIATE transaction, so one fsync for all. The chain
// is exactly what appending them one by one would make, and each caller
// gets its own sealed event back. An event that cannot be sealed (data
// that is not JSON) fails alone; a failed insert or commit fails every
// event of its batch, none of which is stored. A caller whose ctx ends
// before its event is taken gets ctx's error and nothing is stored; once
// taken, the event's fate is its batch's, and the caller waits for it.
func (s *SQLite) AppendAudit(ctx context.Context, e audit.Event) (audit.Event, error) {
	switch {
	case e.Type == "":
		return audit.Event{}, errors.New("store: append audit: the event has no type")
	case e.Time.IsZero():
		return audit.Event{}, fmt.Errorf("store: append audit %s: the event has no time", e.Type)
	}
	a := &auditAppend{ctx: ctx, e: e, done: make(chan struct{})}
	q := &s.audits
	q.mu.Lock()
	q.waiting = append(q.waiting, a)
	q.mu.Unlock()

	for {
		select {
		case <-a.done:
			return a.result()
		case s.wsem <- struct{}{}:
			// The write lock: commit what is queued (this call's event,
			// unless an earlier holder took it), then let go.
			func() {
				defer func() { <-s.wsem }()
				s.commitAudits(q.take())
			}()
			select {
			case <-a.done:
				return a.result()
			default: // not in that batch (it was full): go round again
			}
		case <-ctx.Done():
			if q.withdraw(a) {
				return audit.Event{}, fmt.Errorf("store: append audit %s: %w", e.Type, ctx.Err())
			}
			<-a.done // taken: its batch decides
			return a.result()
		}
	}
}

func (a *auditAppend) result() (audit.Event, error) {
	if a.err != nil {
		return audit.Event{}, fmt.Errorf("store: append audit %s: %w", a.e.Type, a.err)
	}
	return a.e, nil
}

// take removes and returns the queued appends, oldest first, at most
// maxAuditBatch of them.
func (q *auditQueue) take() []*auditAppend {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := min(len(q.waiting), maxAuditBatch)
	batch := slices.Clone(q.waiting[:n])
	q.waiting = slices.Delete(q.waiting, 0, n)
	return batch
}

// withdraw removes a from the queue; it reports false if a group commit
// has taken it already.
func (q *auditQueue) withdraw(a *auditAppend) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	i := slices.Index(q.waiting, a)
	if i < 0 {
		return false
	}
	q.waiting = slices.Delete(q.waiting, i, i+1)
	return true
}

// commitAudits appends batch in one write transaction and settles every
// append in it. The caller holds wsem. The transaction runs to its end
// even if a caller's ctx ends meanwhile (it is short, and the others'
// events are in it); an append whose ctx has ended when the transaction
// is about to start is dropped with ctx's error.
func (s *SQLite) commitAudits(batch []*auditAppend) {
	if len(batch) == 0 {
		return
	}
	defer func() {
		// A panic settles every append of the batch still waiting, so
		// that none of their callers waits forever, then goes on up.
		if p := recover(); p != nil {
			for _, a := range batch {
				a.settle(fmt.Errorf("group commit panicked: %v", p))
			}
			panic(p)
		}
	}()
	var live []*auditAppend
	for _, a := range batch {
		if err := a.ctx.Err(); err != nil {
			a.settle(err)
			continue
		}
		live = append(live, a)
	}
	if len(live) == 0 {
		return
	}
	ctx := context.WithoutCancel(live[0].ctx)
	var sealed []*auditAppend
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		seq, prev, err := lastAudit(ctx, tx)
		if err != nil {
			return err
		}
		for _, a := range live {
			e := a.e
			if err := e.Seal(seq+1, prev); err != nil {
				a.settle(err) // this event alone: nothing of it was written
				continue
			}
			if err := insertAudit(ctx, tx, &e); err != nil {
				return err
			}
			a.e = e
			seq, prev = e.Seq, e.Hash
			sealed = append(sealed, a)
		}
		return nil
	})
	if err != nil {
		for _, a := range live {
			a.settle(err) // settle does nothing to the ones already settled
		}
		return
	}
	for _, a := range sealed {
		s.committed(a.e, nil)
		a.settle(nil)
	}
}

// settle makes err (nil: a.e is stored) a's result, once.
func (a *auditAppend) settle(err error) {
	select {
	case <-a.done:
		return
	default:
	}
	a.err = err
	close(a.done)
}

// appendAudit seals e onto the last row of the chain and inserts it, in tx.
// Only one write transaction runs at a time, so the last row cannot change
// under it.
func (s *SQLite) appendAudit(ctx context.Context, tx *sql.Tx, e *audit.Event) error {
	seq, prev, err := lastAudit(ctx, tx)
	if err != nil {
		return err
	}
	if err := e.Seal(seq+1, prev); err != nil {
		return err
	}
	return insertAudit(ctx, tx, e)
}

// lastAudit returns the seq and hash of the chain's last row, or 0 and
// audit.Genesis for an empty chain.
func lastAudit(ctx context.Context, tx *sql.Tx) (int64, string, error) {
	var (
		seq  int64
		prev = audit.Genesis
	)
	err := tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1`).Scan(&seq, &prev)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, "", err
	}
	return seq, prev, nil
}

// insertAudit inserts the sealed event e, in tx.
func insertAudit(ctx context.Context, tx *sql.Tx, e *audit.Event) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO audit
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
