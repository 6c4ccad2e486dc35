// Package storetest is the conformance suite that every store backend runs
// unchanged: it checks store.Store (and the login-session methods) through
// the interface alone. It does not test what is backend specific: files,
// schema migrations, connection pools, tampering with the database.
package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jitproxy/jitproxy/amendment"
	"github.com/jitproxy/jitproxy/audit"
	"github.com/jitproxy/jitproxy/store"
)

// Run runs the suite. open returns a new, empty store for one subtest and
// closes it in t.Cleanup (some subtests close it earlier themselves, so
// Close must be idempotent). A store's subscriber buffer must hold at least
// 8 changes; keep it small (16, say) so the overflow test stays fast.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"CreateGetRoundTrip", testCreateGetRoundTrip},
		{"CreateDuplicateIsConflict", testCreateDuplicate},
		{"GetUnknownIsNotFound", testGetUnknown},
		{"InvalidChangesWriteNothing", testInvalidChanges},
		{"UpdateCompareAndSet", testUpdateCAS},
		{"UpdateUnknownIsNotFound", testUpdateUnknown},
		{"ListFilters", testList},
		{"ChangesChainAuditRows", testAuditChain},
		{"AppendAudit", testAppendAudit},
		{"ConcurrentAppendAudit", testConcurrentAppendAudit},
		{"AuditEventsAfter", testAuditEventsAfter},
		{"SubscribeCommitOrder", testSubscribeOrder},
		{"SubscribeSlowSubscriberClosed", testSubscribeSlow},
		{"SubscribeEnds", testSubscribeEnds},
		{"ConcurrentWriters", testConcurrentWriters},
		{"LoginSessions", testLoginSessions},
		{"ReadyAndClose", testReadyClose},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			if s == nil {
				t.Fatal("open returned a nil store")
			}
			tt.fn(t, s)
		})
	}
}

// waitTimeout bounds every wait for something another goroutine does, so a
// blocked store fails the test instead of hanging it.
const waitTimeout = 30 * time.Second

// t0 has microseconds, as every stored time does.
var t0 = time.Date(2025, 3, 1, 9, 30, 0, 123456000, time.UTC)

// clock hands out distinct, increasing change times.
type clock struct{ n atomic.Int64 }

func (c *clock) next() time.Time { return t0.Add(time.Duration(c.n.Add(1)) * time.Millisecond) }

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// fullAmendment returns an amendment with every field set, so that a round
// trip that loses any field shows.
func fullAmendment(id string, created time.Time) *amendment.Amendment {
	at := func(m int) time.Time { return created.Add(time.Duration(m) * time.Minute) }
	return &amendment.Amendment{
		ID:        id,
		Version:   1,
		State:     amendment.Active,
		Requester: "alice@example.com",
		Rule:      "oncall",
		Resource: amendment.Resource{
			Target: "app-db", Kind: amendment.KindPostgres, Login: "ubuntu",
			Role: "app_ro", Database: "app", PortForwarding: true, ReadOnly: true,
		},
		Reason:            "INC-42: slow queries — check the \"orders\" index <now>",
		Ticket:            "INC-42",
		Duration:          90*time.Minute + 1500*time.Microsecond,
		CreatedAt:         created,
		UpdatedAt:         at(5),
		StartAt:           at(1),
		RequestExpiresAt:  at(60 * 24),
		ActivatedAt:       at(2),
		ExpiresAt:         at(92),
		EndedAt:           at(50),
		EndedBy:           "carol@example.com",
		EndReason:         "done early",
		RequiredApprovals: 2,
		Approvals: []amendment.Approval{
			{By: "bob@example.com", At: at(1), Comment: "ok"},
			{By: "dave@example.com", At: at(2), Comment: "fine by me"},
		},
		Extensions: []*amendment.Extension{{
			Duration: 30 * time.Minute, Reason: "migration is slow", RequestedBy: "alice@example.com", RequestedAt: at(30),
			Approvals: []amendment.Approval{{By: "bob@example.com", At: at(31), Comment: "ok"}},
			Applied:   at(31), Denied: at(32), DeniedBy: "dave@example.com",
		}},
	}
}

// newAmendment returns a fresh request, version 1.
func newAmendment(id, requester, target string, created time.Time) *amendment.Amendment {
	return &amendment.Amendment{
		ID: id, Version: 1, State: amendment.Requested, Requester: requester, Rule: "oncall",
		Resource: amendment.Resource{Target: target, Kind: amendment.KindSSH, Login: "ubuntu"},
		Reason:   "test", Duration: time.Hour, CreatedAt: created, UpdatedAt: created,
		RequestExpiresAt: created.Add(24 * time.Hour), RequiredApprovals: 1,
	}
}

// create stores a and returns the change it made.
func create(t *testing.T, s store.Store, a *amendment.Amendment) amendment.Change {
	t.Helper()
	c := amendment.Change{Event: amendment.EventRequested, Actor: a.Requester, At: a.CreatedAt, Reason: a.Reason, After: a.Clone()}
	if err := s.Create(testContext(t), c); err != nil {
		t.Fatalf("Create(%s): %v", a.ID, err)
	}
	return c
}

// change returns the next version of cur, changed by fn.
func change(cur *amendment.Amendment, event, actor string, at time.Time, fn func(a *amendment.Amendment)) amendment.Change {
	next := cur.Clone()
	next.Version = cur.Version + 1
	next.UpdatedAt = at
	if fn != nil {
		fn(next)
	}
	return amendment.Change{Event: event, Actor: actor, At: at, Reason: "because", Before: cur.Clone(), After: next}
}

// update applies a change made by fn to the stored version of id.
func update(t *testing.T, s store.Store, clk *clock, id, event string, fn func(a *amendment.Amendment)) amendment.Change {
	t.Helper()
	cur := get(t, s, id)
	c := change(cur, event, "bob@example.com", clk.next(), fn)
	if err := s.Update(testContext(t), c); err != nil {
		t.Fatalf("Update(%s v%d→v%d): %v", id, c.Before.Version, c.After.Version, err)
	}
	return c
}

func get(t *testing.T, s store.Store, id string) *amendment.Amendment {
	t.Helper()
	a, err := s.Get(testContext(t), id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return a
}

// sameAmendment fails unless got and want are equal in every field,
// including times (to the instant and in UTC).
func sameAmendment(t *testing.T, what string, got, want *amendment.Amendment) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\ngot  %s\nwant %s", what, jsonOf(t, got), jsonOf(t, want))
	}
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal %T: %v", v, err)
	}
	return string(b)
}

// canonical re-encodes JSON with sorted keys and exact numbers, so two
// encodings of the same value compare equal.
func canonical(t *testing.T, b []byte) string {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("decode %q: %v", b, err)
	}
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	return string(out)
}

// auditRows returns the whole stored trail.
func auditRows(t *testing.T, s store.Store) []audit.Event {
	t.Helper()
	return auditAfter(t, s, 0)
}

func auditAfter(t *testing.T, s store.Store, after int64) []audit.Event {
	t.Helper()
	var es []audit.Event
	for e, err := range s.AuditEvents(testContext(t), after) {
		if err != nil {
			t.Fatalf("AuditEvents(%d): %v", after, err)
		}
		es = append(es, e)
	}
	return es
}

// verify checks the whole trail with audit.Verify.
func verify(t *testing.T, s store.Store) audit.Summary {
	t.Helper()
	sum, err := audit.Verify(s.AuditEvents(testContext(t), 0))
	if err != nil {
		t.Fatalf("audit.Verify: %v", err)
	}
	return sum
}

// checkChangeRow fails unless e is the audit row change c writes.
func checkChangeRow(t *testing.T, e audit.Event, c amendment.Change) {
	t.Helper()
	if e.Type != c.Event || e.Actor != c.Actor || !e.Time.Equal(c.At) || e.Time.Location() != time.UTC ||
		e.Amendment != c.After.ID || e.Session != "" {
		t.Errorf("audit row %d = {type %q actor %q time %v amendment %q session %q}; want {%q %q %v %q \"\"}",
			e.Seq, e.Type, e.Actor, e.Time, e.Amendment, e.Session, c.Event, c.Actor, c.At, c.After.ID)
	}
	want, err := json.Marshal(c.AuditData())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := canonical(t, e.Data), canonical(t, want); got != want {
		t.Errorf("audit row %d data:\ngot  %s\nwant %s", e.Seq, got, want)
	}
}

// rowVersions decodes the before and after versions of an amendment row.
func rowVersions(t *testing.T, e audit.Event) (before, after int64) {
	t.Helper()
	var d struct {
		Before *amendment.Amendment `json:"before"`
		After  *amendment.Amendment `json:"after"`
	}
	if err := json.Unmarshal(e.Data, &d); err != nil || d.After == nil {
		t.Fatalf("audit row %d: data %s: no amendment in it (%v)", e.Seq, e.Data, err)
	}
	if d.Before != nil {
		before = d.Before.Version
	}
	return before, d.After.Version
}

// receive waits for the next change on ch.
func receive(t *testing.T, ch <-chan amendment.Change) (amendment.Change, bool) {
	t.Helper()
	select {
	case c, ok := <-ch:
		return c, ok
	case <-time.After(waitTimeout):
		t.Fatalf("no change and no close on the subscriber channel within %v", waitTimeout)
		return amendment.Change{}, false
	}
}

// sameChange fails unless got is the change want.
func sameChange(t *testing.T, what string, got, want amendment.Change) {
	t.Helper()
	if got.Event != want.Event || got.Actor != want.Actor || !got.At.Equal(want.At) || got.Reason != want.Reason {
		t.Errorf("%s = {%s %s %v %q}; want {%s %s %v %q}", what, got.Event, got.Actor, got.At, got.Reason, want.Event, want.Actor, want.At, want.Reason)
	}
	sameAmendment(t, what+" Before", got.Before, want.Before)
	sameAmendment(t, what+" After", got.After, want.After)
}
