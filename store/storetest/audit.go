package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jitproxy/jitproxy/amendment"
	"github.com/jitproxy/jitproxy/audit"
	"github.com/jitproxy/jitproxy/store"
)

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

func testAuditChain(t *testing.T, s store.Store) {
	ctx := testContext(t)
	clk := new(clock)
	login := func() audit.Event {
		e, err := audit.NewEvent(clk.next(), audit.TypeLogin, "alice@example.com", map[string]string{"method": "pkce"})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	// Each step makes one change (or appends one event) and returns the
	// change it made, if any.
	steps := []struct {
		name string
		do   func() *amendment.Change
	}{
		{"create a", func() *amendment.Change {
			c := create(t, s, newAmendment("a", "alice@example.com", "web-1", clk.next()))
			return &c
		}},
		{"approve a", func() *amendment.Change {
			c := update(t, s, clk, "a", amendment.EventApproved, func(a *amendment.Amendment) { a.State = amendment.Approved })
			return &c
		}},
		{"login", func() *amendment.Change {
			if _, err := s.AppendAudit(ctx, login()); err != nil {
				t.Fatalf("AppendAudit: %v", err)
			}
			return nil
		}},
		{"create b", func() *amendment.Change {
			c := create(t, s, newAmendment("b", "bob@example.com", "app-db", clk.next()))
			return &c
		}},
		{"activate a", func() *amendment.Change {
			c := update(t, s, clk, "a", amendment.EventActivated, func(a *amendment.Amendment) { a.State = amendment.Active })
			return &c
		}},
		{"deny b", func() *amendment.Change {
			c := update(t, s, clk, "b", amendment.EventDenied, func(a *amendment.Amendment) { a.State = amendment.Denied })
			return &c
		}},
		{"revoke a", func() *amendment.Change {
			c := update(t, s, clk, "a", amendment.EventRevoked, func(a *amendment.Amendment) { a.State = amendment.Revoked })
			return &c
		}},
	}
	prev := audit.Genesis
	for i, st := range steps {
		c := st.do()
		rows := auditRows(t, s)
		if len(rows) != i+1 {
			t.Fatalf("after %q: %d audit rows; want %d (exactly one per change)", st.name, len(rows), i+1)
		}
		last := rows[i]
		if last.Seq != int64(i+1) || last.PrevHash != prev || !sha256Hex.MatchString(last.Hash) {
			t.Errorf("after %q: last row seq %d prev_hash %.12s… hash %q; want seq %d prev_hash %.12s… and a SHA-256 in hex", st.name, last.Seq, last.PrevHash, last.Hash, i+1, prev)
		}
		if c != nil {
			checkChangeRow(t, last, *c)
		}
		prev = last.Hash
	}
	sum := verify(t, s)
	if want := (audit.Summary{Events: int64(len(steps)), Head: prev, LastSeq: int64(len(steps))}); sum != want {
		t.Errorf("audit.Verify summary = %+v; want %+v", sum, want)
	}
}

func testAppendAudit(t *testing.T, s store.Store) {
	ctx := testContext(t)
	cet := time.FixedZone("CET", 3600)
	in := audit.Event{
		Time:    time.Date(2025, 3, 1, 10, 30, 0, 123456789, cet),
		Type:    audit.TypeSessionStart,
		Actor:   "alice@example.com",
		Session: "sess-1",
		Data:    json.RawMessage(`{ "target": "web-1", "b": [true, null], "a": 1.50, "s": "<é>" }`),
		// A caller's Seq and hashes are ignored: the store seals.
		Seq: 99, PrevHash: "feed", Hash: "beef",
	}
	got, err := s.AppendAudit(ctx, in)
	if err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	want := in
	want.Seq, want.PrevHash = 1, audit.Genesis
	want.Time = time.Date(2025, 3, 1, 9, 30, 0, 123456000, time.UTC)
	want.Data = json.RawMessage(`{"a":1.50,"b":[true,null],"s":"<é>","target":"web-1"}`)
	want.Hash = got.Hash
	if !reflect.DeepEqual(got, want) {
		t.Errorf("AppendAudit returned\n%+v\nwant\n%+v", got, want)
	}
	if !sha256Hex.MatchString(got.Hash) {
		t.Errorf("hash %q is not a SHA-256 in hex", got.Hash)
	}
	resealed := want
	if err := resealed.Seal(1, audit.Genesis); err != nil || resealed.Hash != got.Hash {
		t.Errorf("hash = %s; sealing the event again gives %s (%v)", got.Hash, resealed.Hash, err)
	}

	// An event without data, chained to the first.
	bare := audit.Event{Time: t0, Type: audit.TypeLogout, Actor: "alice@example.com"}
	second, err := s.AppendAudit(ctx, bare)
	if err != nil {
		t.Fatalf("AppendAudit without data: %v", err)
	}
	if second.Seq != 2 || second.PrevHash != got.Hash {
		t.Errorf("second event seq %d prev_hash %s; want 2 and %s", second.Seq, second.PrevHash, got.Hash)
	}

	stored := auditRows(t, s)
	if !reflect.DeepEqual(stored, []audit.Event{got, second}) {
		t.Errorf("stored events\n%+v\nwant what AppendAudit returned\n%+v", stored, []audit.Event{got, second})
	}

	bad := []struct {
		name string
		e    audit.Event
	}{
		{"no type", audit.Event{Time: t0, Actor: "alice@example.com"}},
		{"no time", audit.Event{Type: audit.TypeLogin, Actor: "alice@example.com"}},
		{"data not JSON", audit.Event{Time: t0, Type: audit.TypeLogin, Actor: "alice@example.com", Data: json.RawMessage(`{"a":`)}},
		{"data with trailing garbage", audit.Event{Time: t0, Type: audit.TypeLogin, Actor: "alice@example.com", Data: json.RawMessage(`{} {}`)}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := s.AppendAudit(ctx, tt.e); err == nil {
				t.Errorf("AppendAudit = %+v; want an error", got)
			}
			if n := len(auditRows(t, s)); n != 2 {
				t.Errorf("audit rows = %d; want 2 (a refused event writes nothing)", n)
			}
		})
	}
	verify(t, s)
}

func testAuditEventsAfter(t *testing.T, s store.Store) {
	ctx := testContext(t)
	for i := range 5 {
		if _, err := s.AppendAudit(ctx, audit.Event{Time: t0.Add(time.Duration(i) * time.Second), Type: audit.TypeLogin, Actor: "alice@example.com"}); err != nil {
			t.Fatalf("AppendAudit: %v", err)
		}
	}
	tests := []struct {
		after int64
		want  []int64
	}{
		{-1, []int64{1, 2, 3, 4, 5}},
		{0, []int64{1, 2, 3, 4, 5}},
		{2, []int64{3, 4, 5}},
		{4, []int64{5}},
		{5, nil},
		{99, nil},
	}
	for _, tt := range tests {
		var got []int64
		for _, e := range auditAfter(t, s, tt.after) {
			got = append(got, e.Seq)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("AuditEvents(%d) seqs = %v; want %v", tt.after, got, tt.want)
		}
	}

	// Stopping early releases what the iteration held: many early stops,
	// then a full read and a write still work.
	for range 64 {
		for e, err := range s.AuditEvents(ctx, 0) {
			if err != nil || e.Seq != 1 {
				t.Fatalf("first event = seq %d, %v; want seq 1", e.Seq, err)
			}
			break
		}
	}
	done := make(chan error, 1)
	go func() {
		_, err := audit.Verify(s.AuditEvents(ctx, 0))
		if err == nil {
			_, err = s.AppendAudit(ctx, audit.Event{Time: t0, Type: audit.TypeLogout, Actor: "alice@example.com"})
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("after 64 early stops: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("after 64 early stops, reading the trail blocks: iterations that stop early leak what they hold")
	}

	// A cancelled context ends the iteration with its error.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	var gotErr error
	n := 0
	for _, err := range s.AuditEvents(cctx, 0) {
		if err != nil {
			gotErr = err
			break
		}
		n++
	}
	if !errors.Is(gotErr, context.Canceled) {
		t.Errorf("AuditEvents with a cancelled context: %d events, error %v; want an error matching context.Canceled", n, gotErr)
	}
}

// testConcurrentAppendAudit: many goroutines append at once, among
// amendment changes (which append their own rows), one of them with data
// that is not JSON, one with a context already ended. Every good event is
// stored exactly once, as returned (its seq, prev_hash and hash), each
// goroutine's events in the order it appended them, and the whole chain
// verifies. The bad ones fail alone and store nothing.
func testConcurrentAppendAudit(t *testing.T, s store.Store) {
	ctx := testContext(t)
	const (
		writers = 32
		each    = 16
	)
	clk := new(clock)
	var wg sync.WaitGroup
	got := make([][]audit.Event, writers)
	errs := make(chan error, writers+4)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				e, err := audit.NewEvent(clk.next(), audit.TypeSessionEnd, "alice@example.com", map[string]int{"writer": w, "i": i})
				if err != nil {
					errs <- err
					return
				}
				sealed, err := s.AppendAudit(ctx, e)
				if err != nil {
					errs <- fmt.Errorf("writer %d, event %d: %w", w, i, err)
					return
				}
				got[w] = append(got[w], sealed)
			}
		})
	}
	const changes = 4
	wg.Go(func() {
		for i := range changes {
			a := newAmendment(fmt.Sprintf("c%d", i), "alice@example.com", "web-1", clk.next())
			c := amendment.Change{Event: amendment.EventRequested, Actor: a.Requester, At: a.CreatedAt, Reason: a.Reason, After: a.Clone()}
			if err := s.Create(ctx, c); err != nil {
				errs <- fmt.Errorf("Create(%s): %w", a.ID, err)
			}
		}
	})
	wg.Go(func() {
		bad := audit.Event{Time: t0, Type: audit.TypeLogin, Actor: "alice@example.com", Data: json.RawMessage(`{"a":`)}
		if e, err := s.AppendAudit(ctx, bad); err == nil {
			errs <- fmt.Errorf("AppendAudit with data that is not JSON = %+v; want an error", e)
		}
	})
	wg.Go(func() {
		ended, cancel := context.WithCancel(ctx)
		cancel()
		if e, err := s.AppendAudit(ended, audit.Event{Time: t0, Type: audit.TypeLogin, Actor: "mallory@example.com"}); err == nil {
			errs <- fmt.Errorf("AppendAudit with an ended context = %+v; want an error", e)
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}

	rows := auditRows(t, s)
	if want := writers*each + changes; len(rows) != want {
		t.Fatalf("%d audit rows; want %d", len(rows), want)
	}
	bySeq := make(map[int64]audit.Event, len(rows))
	for i, r := range rows {
		if r.Seq != int64(i+1) {
			t.Fatalf("row %d has seq %d; want %d", i, r.Seq, i+1)
		}
		if r.Actor == "mallory@example.com" {
			t.Errorf("the event with an ended context was stored: %+v", r)
		}
		bySeq[r.Seq] = r
	}
	for w, evs := range got {
		for i, e := range evs {
			if stored := bySeq[e.Seq]; !reflect.DeepEqual(stored, e) {
				t.Errorf("writer %d, event %d: AppendAudit returned\n%+v\nbut seq %d holds\n%+v", w, i, e, e.Seq, stored)
			}
			if i > 0 && e.Seq <= evs[i-1].Seq {
				t.Errorf("writer %d: event %d has seq %d, not after its previous one's %d", w, i, e.Seq, evs[i-1].Seq)
			}
		}
	}
	if sum := verify(t, s); sum.Events != int64(len(rows)) || sum.Head != rows[len(rows)-1].Hash {
		t.Errorf("verifier summary %+v; want %d events ending at %s", sum, len(rows), rows[len(rows)-1].Hash)
	}
}
