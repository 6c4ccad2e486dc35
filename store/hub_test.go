package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/jitproxy/jitproxy/amendment"
)

func testChange(v int64) amendment.Change {
	return amendment.Change{
		Event: amendment.EventApprovalAdded, Actor: "bob@example.com", At: time.Unix(v, 0).UTC(),
		Before: &amendment.Amendment{ID: "a", Version: v - 1},
		After:  &amendment.Amendment{ID: "a", Version: v, Approvals: []amendment.Approval{{By: "bob@example.com"}}},
	}
}

// drain returns what ch holds now and whether it is closed.
func drain(ch <-chan amendment.Change) (versions []int64, closed bool) {
	for {
		select {
		case c, ok := <-ch:
			if !ok {
				return versions, true
			}
			versions = append(versions, c.After.Version)
		default:
			return versions, false
		}
	}
}

func TestHub(t *testing.T) {
	tests := []struct {
		name      string
		buffer    int
		publish   int
		cancel    bool // cancel the subscriber's context before publishing
		close     bool // close the hub after publishing
		want      []int64
		wantClose bool
	}{
		{"within the buffer", 4, 3, false, false, []int64{1, 2, 3}, false},
		{"exactly the buffer", 4, 4, false, false, []int64{1, 2, 3, 4}, false},
		{"one over: closed after the buffer", 4, 5, false, false, []int64{1, 2, 3, 4}, true},
		{"far over", 4, 50, false, false, []int64{1, 2, 3, 4}, true},
		{"context ended", 4, 2, true, false, nil, true},
		{"hub closed", 4, 2, false, true, []int64{1, 2}, true},
		{"default buffer", 0, defaultEventBuffer, false, false, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHub(zerolog.Nop(), tt.buffer)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			ch := h.subscribe(ctx)
			if tt.cancel {
				cancel()
				waitClosed(t, ch)
			}
			for v := range tt.publish {
				h.publish(testChange(int64(v + 1)))
			}
			if tt.close {
				h.close()
			}
			got, closed := drain(ch)
			if tt.want == nil && tt.publish > 0 && !tt.cancel {
				tt.want = make([]int64, tt.publish)
				for i := range tt.want {
					tt.want[i] = int64(i + 1)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) || closed != tt.wantClose {
				t.Errorf("got %v, closed %v; want %v, closed %v", got, closed, tt.want, tt.wantClose)
			}
		})
	}
}

func waitClosed(t *testing.T, ch <-chan amendment.Change) {
	t.Helper()
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("got a change; want the channel closed")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("channel not closed within 5s")
	}
}

func TestHubOverflowClosesOnlyTheSlow(t *testing.T) {
	h := newHub(zerolog.Nop(), 2)
	slow := h.subscribe(t.Context())
	fast := h.subscribe(t.Context())
	for v := range int64(5) {
		h.publish(testChange(v + 1))
		if c := <-fast; c.After.Version != v+1 {
			t.Fatalf("fast got v%d; want v%d", c.After.Version, v+1)
		}
	}
	if got, closed := drain(slow); fmt.Sprint(got) != "[1 2]" || !closed {
		t.Errorf("slow: got %v, closed %v; want [1 2], closed", got, closed)
	}
	if got, closed := drain(fast); len(got) != 0 || closed {
		t.Errorf("fast: got %v more, closed %v; want nothing more and open", got, closed)
	}
	if n := len(h.subs); n != 1 {
		t.Errorf("%d subscribers registered; want 1", n)
	}
}

func TestHubCopiesPerSubscriber(t *testing.T) {
	h := newHub(zerolog.Nop(), 2)
	a, b := h.subscribe(t.Context()), h.subscribe(t.Context())
	c := testChange(2)
	h.publish(c)
	ca, cb := <-a, <-b
	ca.After.Approvals[0].By = "mallory@example.com"
	ca.Before.Version = 99
	if cb.After.Approvals[0].By != "bob@example.com" || cb.Before.Version != 1 {
		t.Errorf("a change made by one subscriber shows in another's: %+v", cb.After)
	}
	if c.After.Approvals[0].By != "bob@example.com" || c.Before.Version != 1 {
		t.Errorf("a change made by a subscriber shows in the publisher's value: %+v", c.After)
	}
}

func TestHubClose(t *testing.T) {
	h := newHub(zerolog.Nop(), 2)
	ch := h.subscribe(t.Context())
	h.close()
	h.close() // idempotent
	waitClosed(t, ch)
	waitClosed(t, h.subscribe(t.Context()))
	h.publish(testChange(1)) // goes nowhere, does not panic
}

// TestHubRace publishes while subscribers come, go and overflow; run with
// -race, it fails on a send to a closed channel or a data race.
func TestHubRace(t *testing.T) {
	h := newHub(zerolog.Nop(), 4)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for v := int64(1); ; v++ {
			select {
			case <-stop:
				return
			default:
				h.publish(testChange(v))
			}
		}
	})
	for range 4 {
		wg.Go(func() {
			for range 200 {
				ctx, cancel := context.WithCancel(t.Context())
				ch := h.subscribe(ctx)
				for range 3 {
					<-ch // may be closed already; that is fine
				}
				cancel()
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	h.close()
	close(stop)
	wg.Wait()
}
