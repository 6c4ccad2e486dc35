package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jitproxy/jitproxy/amendment"
	"github.com/jitproxy/jitproxy/audit"
	"github.com/jitproxy/jitproxy/store"
)

// minBuffer is the smallest subscriber buffer the suite works with.
const minBuffer = 8

func subscribe(t *testing.T, s store.Store) <-chan amendment.Change {
	t.Helper()
	ch := s.Subscribe(testContext(t))
	if cap(ch) < minBuffer {
		t.Fatalf("subscriber channel buffer = %d; the suite needs at least %d", cap(ch), minBuffer)
	}
	return ch
}

// testSubscribeOrder has writers race on several amendments and checks that
// a subscriber sees every committed change once, in commit order (the
// order of the audit rows, which commit with them).
func testSubscribeOrder(t *testing.T, s store.Store) {
	ctx := testContext(t)
	clk := new(clock)
	ch := subscribe(t, s)
	// Nobody reads while the writers run, so stay within the buffer.
	const writers = 4
	perWriter := min(cap(ch), 40) / writers

	var (
		mu   sync.Mutex // guards made
		made = map[string]amendment.Change{}
	)
	key := func(c amendment.Change) string { return fmt.Sprintf("%s/%d", c.After.ID, c.After.Version) }
	errc := make(chan error, writers)
	for w := range writers {
		go func() {
			errc <- func() error {
				id := fmt.Sprintf("a-w%d", w)
				a := newAmendment(id, "alice@example.com", "web-1", clk.next())
				c := amendment.Change{Event: amendment.EventRequested, Actor: a.Requester, At: a.CreatedAt, After: a}
				for i := range perWriter {
					if i > 0 {
						c = change(c.After, amendment.EventApprovalAdded, fmt.Sprintf("approver-%d", i), clk.next(), nil)
					}
					var err error
					if i == 0 {
						err = s.Create(ctx, c)
					} else {
						err = s.Update(ctx, c)
					}
					if err != nil {
						return fmt.Errorf("writer %d change %d: %w", w, i, err)
					}
					mu.Lock()
					made[key(c)] = c
					mu.Unlock()
				}
				return nil
			}()
		}()
	}
	for range writers {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}

	rows := auditRows(t, s)
	if len(rows) != writers*perWriter {
		t.Fatalf("audit rows = %d; want %d", len(rows), writers*perWriter)
	}
	for i, row := range rows {
		got, ok := receive(t, ch)
		if !ok {
			t.Fatalf("subscriber channel closed after %d of %d changes", i, len(rows))
		}
		_, v := rowVersions(t, row)
		if got.After.ID != row.Amendment || got.After.Version != v || got.Event != row.Type {
			t.Fatalf("change %d published = %s v%d %s; the audit trail committed %s v%d %s there", i+1, got.After.ID, got.After.Version, got.Event, row.Amendment, v, row.Type)
		}
		sameChange(t, fmt.Sprintf("change %d published", i+1), got, made[key(got)])
	}
	if n := len(ch); n != 0 {
		t.Errorf("%d changes published beyond the %d committed", n, len(rows))
	}
}

// testSubscribeSlow checks that a subscriber that never reads gets its
// channel closed once it has fallen behind by more than its buffer, that
// it still gets every change up to then, in order, and that neither the
// writer nor another subscriber waits for it.
func testSubscribeSlow(t *testing.T, s store.Store) {
	ctx := testContext(t)
	clk := new(clock)
	slow := subscribe(t, s)
	fast := subscribe(t, s)
	n := cap(slow) + 3

	// The writer runs in its own goroutine so that a write that blocks on
	// the slow subscriber fails the test instead of hanging it. After each
	// write it waits for the fast subscriber to see it.
	made := make([]amendment.Change, 0, n)
	done := make(chan error, 1)
	go func() {
		done <- func() error {
			a := newAmendment("a-slow", "alice@example.com", "web-1", clk.next())
			c := amendment.Change{Event: amendment.EventRequested, Actor: a.Requester, At: a.CreatedAt, After: a}
			for i := range n {
				var err error
				if i == 0 {
					err = s.Create(ctx, c)
				} else {
					c = change(c.After, amendment.EventApprovalAdded, "bob@example.com", clk.next(), nil)
					err = s.Update(ctx, c)
				}
				if err != nil {
					return fmt.Errorf("change %d: %w", i+1, err)
				}
				made = append(made, c)
				select {
				case got, ok := <-fast:
					if !ok {
						return fmt.Errorf("the fast subscriber's channel closed at change %d", i+1)
					}
					if got.After.Version != c.After.Version {
						return fmt.Errorf("the fast subscriber got version %d; want %d", got.After.Version, c.After.Version)
					}
				case <-time.After(waitTimeout):
					return fmt.Errorf("the fast subscriber got nothing for change %d", i+1)
				}
			}
			return nil
		}()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * waitTimeout):
		t.Fatalf("%d writes with a subscriber that does not read did not finish in %v: writers are blocked", n, 2*waitTimeout)
	}

	for i := range cap(slow) {
		got, ok := receive(t, slow)
		if !ok {
			t.Fatalf("slow subscriber: channel closed after %d changes; want the first %d before it closes", i, cap(slow))
		}
		sameChange(t, fmt.Sprintf("slow subscriber change %d", i+1), got, made[i])
	}
	if got, ok := receive(t, slow); ok {
		t.Fatalf("slow subscriber: got v%d after falling %d changes behind with a buffer of %d; want its channel closed", got.After.Version, n, cap(slow))
	}
	select {
	case c, ok := <-fast:
		t.Errorf("fast subscriber: extra change (%v, open %v)", c.After, ok)
	default:
	}
}

func testSubscribeEnds(t *testing.T, s store.Store) {
	ctx := testContext(t)
	closed := func(name string, ch <-chan amendment.Change) {
		t.Helper()
		if c, ok := receive(t, ch); ok {
			t.Errorf("%s: got a change (%s); want the channel closed", name, c.Event)
		}
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	closed("subscribed with a cancelled context", s.Subscribe(cctx))

	cctx, cancel = context.WithCancel(ctx)
	ended := s.Subscribe(cctx)
	open := s.Subscribe(ctx)
	cancel()
	closed("after its context ended", ended)

	// The other subscriber still gets changes.
	c := create(t, s, newAmendment("a-ends", "alice@example.com", "web-1", t0))
	got, ok := receive(t, open)
	if !ok {
		t.Fatal("a live subscriber's channel closed when another one's context ended")
	}
	sameChange(t, "published change", got, c)

	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	closed("after Close", open)
	closed("subscribed after Close", s.Subscribe(ctx))
}

// testConcurrentWriters races many compare-and-set writers on one
// amendment: none may lose an update, see SQLITE_BUSY-style failures or
// break the chain.
func testConcurrentWriters(t *testing.T, s store.Store) {
	const workers, attempts = 16, 20
	ctx := testContext(t)
	clk := new(clock)
	id := create(t, s, newAmendment("a-race", "alice@example.com", "web-1", clk.next())).After.ID

	var (
		mu   sync.Mutex // guards won and errs
		won  = map[int64]amendment.Change{}
		errs []error
	)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range attempts {
				cur, err := s.Get(ctx, id)
				if err == nil {
					c := change(cur, amendment.EventApprovalAdded, fmt.Sprintf("worker-%d", w), clk.next(), func(a *amendment.Amendment) {
						a.Reason = fmt.Sprintf("worker %d attempt %d", w, i)
					})
					if err = s.Update(ctx, c); err == nil {
						mu.Lock()
						if prev, dup := won[c.After.Version]; dup {
							errs = append(errs, fmt.Errorf("version %d written twice, by %s and %s", c.After.Version, prev.Actor, c.Actor))
						}
						won[c.After.Version] = c
						mu.Unlock()
						continue
					}
				}
				if !errors.Is(err, amendment.ErrConflict) {
					mu.Lock()
					errs = append(errs, fmt.Errorf("worker %d attempt %d: %w", w, i, err))
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	if len(won) == 0 {
		t.Fatal("no update succeeded")
	}

	final := get(t, s, id)
	if want := int64(1 + len(won)); final.Version != want {
		t.Errorf("final version = %d; want %d (1 + %d successful updates)", final.Version, want, len(won))
	}
	sameAmendment(t, "final amendment", final, won[final.Version].After)

	var rows []audit.Event
	for _, e := range auditRows(t, s) {
		if e.Amendment == id {
			rows = append(rows, e)
		}
	}
	if len(rows) != 1+len(won) {
		t.Fatalf("audit rows for %s = %d; want %d (the create and one per successful update)", id, len(rows), 1+len(won))
	}
	for i, row := range rows {
		before, after := rowVersions(t, row)
		if after != int64(i+1) || (i > 0 && before != after-1) {
			t.Errorf("audit row %d records v%d→v%d; want v%d→v%d (versions strictly increase by one)", row.Seq, before, after, i, i+1)
		}
		if i > 0 {
			checkChangeRow(t, row, won[after])
		}
	}
	if sum := verify(t, s); sum.Events != int64(1+len(won)) {
		t.Errorf("verified %d events; want %d", sum.Events, 1+len(won))
	}
	t.Logf("%d of %d compare-and-set attempts won", len(won), workers*attempts)
}

func testReadyClose(t *testing.T, s store.Store) {
	ctx := testContext(t)
	if err := s.Ready(ctx); err != nil {
		t.Fatalf("Ready on an open store: %v", err)
	}
	for i := range 2 {
		if err := s.Close(); err != nil {
			t.Fatalf("Close #%d: %v; want nil (Close is idempotent)", i+1, err)
		}
	}
	if err := s.Ready(ctx); err == nil {
		t.Error("Ready after Close = nil; want an error")
	}
}
