package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/jitproxy/jitproxy/amendment"
	"github.com/jitproxy/jitproxy/store"
)

func testCreateGetRoundTrip(t *testing.T, s store.Store) {
	want := fullAmendment("a-round-trip", t0)
	checkAllSet(t, "fullAmendment", reflect.ValueOf(*want))
	c := create(t, s, want)

	// The store keeps its own copy: changing what was passed in changes
	// nothing stored.
	c.After.Reason = "changed after Create"
	c.After.Approvals[0].By = "mallory@example.com"

	got := get(t, s, want.ID)
	sameAmendment(t, "Get after Create", got, want)
	for name, tm := range map[string]time.Time{"CreatedAt": got.CreatedAt, "ExpiresAt": got.ExpiresAt, "Approvals[0].At": got.Approvals[0].At} {
		if tm.Location() != time.UTC {
			t.Errorf("%s location = %v; want UTC", name, tm.Location())
		}
	}

	// Get returns a copy too.
	got.Reason = "changed after Get"
	sameAmendment(t, "second Get", get(t, s, want.ID), want)

	rows := auditRows(t, s)
	if len(rows) != 1 {
		t.Fatalf("audit rows after one Create = %d; want 1", len(rows))
	}
	c.After = want
	checkChangeRow(t, rows[0], c)
}

// checkAllSet fails if any field of v (recursively, through slices and
// pointers) is zero, so the round trip covers fields added later.
func checkAllSet(t *testing.T, path string, v reflect.Value) {
	t.Helper()
	if v.IsZero() {
		t.Errorf("%s is zero: set it, so the round trip covers it", path)
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		checkAllSet(t, path, v.Elem())
	case reflect.Slice:
		for i := range v.Len() {
			checkAllSet(t, fmt.Sprintf("%s[%d]", path, i), v.Index(i))
		}
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			return
		}
		for i := range v.NumField() {
			checkAllSet(t, path+"."+v.Type().Field(i).Name, v.Field(i))
		}
	}
}

func testCreateDuplicate(t *testing.T, s store.Store) {
	ctx := testContext(t)
	first := newAmendment("a-dup", "alice@example.com", "web-1", t0)
	create(t, s, first)
	ch := s.Subscribe(ctx)

	second := newAmendment("a-dup", "mallory@example.com", "web-2", t0.Add(time.Minute))
	err := s.Create(ctx, amendment.Change{Event: amendment.EventRequested, Actor: "mallory@example.com", At: second.CreatedAt, After: second})
	if !errors.Is(err, amendment.ErrConflict) {
		t.Fatalf("second Create of the same ID: error %v; want one matching amendment.ErrConflict", err)
	}
	sameAmendment(t, "Get after the duplicate", get(t, s, first.ID), first)
	if n := len(auditRows(t, s)); n != 1 {
		t.Errorf("audit rows = %d; want 1 (a refused Create writes none)", n)
	}
	// Nothing was published for the refused Create: the next change seen
	// is the next one made.
	other := create(t, s, newAmendment("a-other", "bob@example.com", "web-1", t0))
	got, ok := receive(t, ch)
	if !ok {
		t.Fatal("subscriber channel closed")
	}
	sameChange(t, "first published change", got, other)
}

func testGetUnknown(t *testing.T, s store.Store) {
	create(t, s, newAmendment("a-known", "alice@example.com", "web-1", t0))
	for _, id := range []string{"a-unknown", "", "A-KNOWN", "a-known "} {
		a, err := s.Get(testContext(t), id)
		if !errors.Is(err, amendment.ErrNotFound) || a != nil {
			t.Errorf("Get(%q) = %v, %v; want nil and an error matching amendment.ErrNotFound", id, a, err)
		}
	}
}

func testInvalidChanges(t *testing.T, s store.Store) {
	clk := new(clock)
	base := create(t, s, newAmendment("a-valid", "alice@example.com", "web-1", t0))
	good := func() amendment.Change {
		return change(base.After, amendment.EventApprovalAdded, "bob@example.com", clk.next(), nil)
	}
	fresh := func() amendment.Change {
		a := newAmendment("a-new", "alice@example.com", "web-1", t0)
		return amendment.Change{Event: amendment.EventRequested, Actor: "alice@example.com", At: t0, After: a}
	}
	tests := []struct {
		name   string
		create bool
		edit   func(c *amendment.Change)
	}{
		{"create without After", true, func(c *amendment.Change) { c.After = nil }},
		{"create without ID", true, func(c *amendment.Change) { c.After.ID = "" }},
		{"create without event", true, func(c *amendment.Change) { c.Event = "" }},
		{"create without time", true, func(c *amendment.Change) { c.At = time.Time{} }},
		{"create at version 2", true, func(c *amendment.Change) { c.After.Version = 2 }},
		{"update without Before", false, func(c *amendment.Change) { c.Before = nil }},
		{"update without After", false, func(c *amendment.Change) { c.After = nil }},
		{"update without event", false, func(c *amendment.Change) { c.Event = "" }},
		{"update without time", false, func(c *amendment.Change) { c.At = time.Time{} }},
		{"update to another ID", false, func(c *amendment.Change) { c.After.ID = "a-other" }},
		{"update skipping a version", false, func(c *amendment.Change) { c.After.Version += 1 }},
		{"update keeping the version", false, func(c *amendment.Change) { c.After.Version = c.Before.Version }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			var c amendment.Change
			if tt.create {
				c = fresh()
			} else {
				c = good()
			}
			tt.edit(&c)
			var err error
			if tt.create {
				err = s.Create(ctx, c)
			} else {
				err = s.Update(ctx, c)
			}
			if err == nil {
				t.Fatal("got no error; want the change refused")
			}
			if n := len(auditRows(t, s)); n != 1 {
				t.Errorf("audit rows = %d; want 1 (a refused change writes none)", n)
			}
			sameAmendment(t, "stored amendment", get(t, s, base.After.ID), base.After)
			if _, err := s.Get(ctx, "a-new"); !errors.Is(err, amendment.ErrNotFound) {
				t.Errorf("Get(a-new) after the refused create: %v; want not found", err)
			}
		})
	}
}

func testUpdateCAS(t *testing.T, s store.Store) {
	ctx := testContext(t)
	clk := new(clock)
	v1 := create(t, s, newAmendment("a-cas", "alice@example.com", "web-1", t0)).After
	ch := s.Subscribe(ctx)

	approve := change(v1, amendment.EventApproved, "bob@example.com", clk.next(), func(a *amendment.Amendment) {
		a.State = amendment.Approved
		a.Approvals = append(a.Approvals, amendment.Approval{By: "bob@example.com", At: a.UpdatedAt})
	})
	if err := s.Update(ctx, approve); err != nil {
		t.Fatalf("Update v1→v2: %v", err)
	}
	v2 := get(t, s, v1.ID)
	sameAmendment(t, "Get after Update", v2, approve.After)

	// A writer that still holds v1 loses.
	stale := change(v1, amendment.EventDenied, "carol@example.com", clk.next(), func(a *amendment.Amendment) { a.State = amendment.Denied })
	err := s.Update(ctx, stale)
	if !errors.Is(err, amendment.ErrConflict) {
		t.Fatalf("stale Update (v1 when v2 is stored): %v; want an error matching amendment.ErrConflict", err)
	}
	if errors.Is(err, amendment.ErrNotFound) {
		t.Errorf("stale Update error %v also matches ErrNotFound", err)
	}
	sameAmendment(t, "Get after the stale Update", get(t, s, v1.ID), v2)
	rows := auditRows(t, s)
	if len(rows) != 2 {
		t.Fatalf("audit rows = %d; want 2 (create and one update; a lost race writes none)", len(rows))
	}
	checkChangeRow(t, rows[1], approve)

	// A stale writer that guesses a version ahead loses too.
	ahead := change(v2, amendment.EventActivated, "jitproxy", clk.next(), nil)
	ahead.Before.Version, ahead.After.Version = 5, 6
	if err := s.Update(ctx, ahead); !errors.Is(err, amendment.ErrConflict) {
		t.Errorf("Update from version 5 when 2 is stored: %v; want a conflict", err)
	}

	// The change published is the one that won, then the next one, and
	// nothing for the refused ones.
	next := change(v2, amendment.EventActivated, "jitproxy", clk.next(), func(a *amendment.Amendment) { a.State = amendment.Active })
	if err := s.Update(ctx, next); err != nil {
		t.Fatalf("Update v2→v3: %v", err)
	}
	for i, want := range []amendment.Change{approve, next} {
		got, ok := receive(t, ch)
		if !ok {
			t.Fatal("subscriber channel closed")
		}
		sameChange(t, fmt.Sprintf("published change %d", i+1), got, want)
	}
	if n := len(ch); n != 0 {
		t.Errorf("%d more changes published; want none", n)
	}
}

func testUpdateUnknown(t *testing.T, s store.Store) {
	ctx := testContext(t)
	known := create(t, s, newAmendment("a-known", "alice@example.com", "web-1", t0)).After
	ghost := newAmendment("a-ghost", "alice@example.com", "web-1", t0)
	c := change(ghost, amendment.EventApproved, "bob@example.com", t0.Add(time.Second), nil)
	err := s.Update(ctx, c)
	if !errors.Is(err, amendment.ErrNotFound) {
		t.Fatalf("Update of an unknown ID: %v; want an error matching amendment.ErrNotFound", err)
	}
	if errors.Is(err, amendment.ErrConflict) {
		t.Errorf("Update of an unknown ID: %v also matches ErrConflict", err)
	}
	if _, err := s.Get(ctx, ghost.ID); !errors.Is(err, amendment.ErrNotFound) {
		t.Errorf("Get after the refused Update: %v; want not found (an Update never creates)", err)
	}
	if n := len(auditRows(t, s)); n != 1 {
		t.Errorf("audit rows = %d; want 1", n)
	}
	sameAmendment(t, "the other amendment", get(t, s, known.ID), known)
}

func testList(t *testing.T, s store.Store) {
	clk := new(clock)
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	// Created as requests, then moved to their states through Update, so
	// the filters see the current state.
	seed := []struct {
		id, requester, target string
		created               time.Time
		state                 amendment.State
	}{
		{"a1", "alice@example.com", "web-1", at(0), amendment.Requested},
		{"a2", "bob@example.com", "app-db", at(1), amendment.Active},
		{"a3", "alice@example.com", "app-db", at(2), amendment.Revoked},
		{"a5", "alice@example.com", "web-1", at(3), amendment.Active},
		{"a4", "carol@example.com", "web-1", at(3), amendment.Active}, // same time as a5: ID breaks the tie
	}
	for _, a := range seed {
		create(t, s, newAmendment(a.id, a.requester, a.target, a.created))
		if a.state != amendment.Requested {
			update(t, s, clk, a.id, amendment.EventActivated, func(x *amendment.Amendment) { x.State = a.state })
		}
	}
	tests := []struct {
		name string
		f    amendment.Filter
		want []string
	}{
		{"everything, newest first", amendment.Filter{}, []string{"a4", "a5", "a3", "a2", "a1"}},
		{"active", amendment.Filter{States: []amendment.State{amendment.Active}}, []string{"a4", "a5", "a2"}},
		{"active or revoked", amendment.Filter{States: []amendment.State{amendment.Revoked, amendment.Active}}, []string{"a4", "a5", "a3", "a2"}},
		{"requested (the current state, not the first)", amendment.Filter{States: []amendment.State{amendment.Requested}}, []string{"a1"}},
		{"expired: none", amendment.Filter{States: []amendment.State{amendment.Expired}}, nil},
		{"requester", amendment.Filter{Requester: "alice@example.com"}, []string{"a5", "a3", "a1"}},
		{"unknown requester", amendment.Filter{Requester: "nobody@example.com"}, nil},
		{"target", amendment.Filter{Target: "web-1"}, []string{"a4", "a5", "a1"}},
		{"requester and target", amendment.Filter{Requester: "alice@example.com", Target: "app-db"}, []string{"a3"}},
		{"all three", amendment.Filter{States: []amendment.State{amendment.Active}, Requester: "alice@example.com", Target: "web-1"}, []string{"a5"}},
		{"limit", amendment.Filter{Limit: 2}, []string{"a4", "a5"}},
		{"limit after filtering", amendment.Filter{Target: "app-db", Limit: 1}, []string{"a3"}},
		{"limit above the count", amendment.Filter{Requester: "bob@example.com", Limit: 10}, []string{"a2"}},
		{"id prefix", amendment.Filter{IDPrefix: "a"}, []string{"a4", "a5", "a3", "a2", "a1"}},
		{"whole id as prefix", amendment.Filter{IDPrefix: "a3"}, []string{"a3"}},
		{"id prefix matching none", amendment.Filter{IDPrefix: "b"}, nil},
		{"id prefix is not a pattern", amendment.Filter{IDPrefix: "_"}, nil},
	}
	var all []*amendment.Amendment
	for _, a := range seed {
		all = append(all, get(t, s, a.id))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.List(testContext(t), tt.f)
			if err != nil {
				t.Fatalf("List(%+v): %v", tt.f, err)
			}
			var ids []string
			for _, a := range got {
				ids = append(ids, a.ID)
				if !tt.f.Match(a) {
					t.Errorf("List returned %s (state %s, requester %s, target %s), which does not pass the filter", a.ID, a.State, a.Requester, a.Resource.Target)
				}
				i := slices.IndexFunc(all, func(x *amendment.Amendment) bool { return x.ID == a.ID })
				if i < 0 {
					t.Errorf("List returned unknown amendment %s", a.ID)
					continue
				}
				sameAmendment(t, "listed "+a.ID, a, all[i])
			}
			if !slices.Equal(ids, tt.want) {
				t.Errorf("List(%+v) = %v; want %v", tt.f, ids, tt.want)
			}
		})
	}
}
