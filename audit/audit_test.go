package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"iter"
	"slices"
	"strings"
	"testing"
	"time"
)

func chain(t *testing.T, n int) []Event {
	t.Helper()
	base := time.Date(2026, 11, 29, 12, 0, 0, 123456789, time.UTC)
	prev := Genesis
	var out []Event
	for i := range n {
		e, err := NewEvent(base.Add(time.Duration(i)*time.Second), "amendment.requested", "alice@example.com", map[string]any{"i": i, "reason": "deploy"})
		if err != nil {
			t.Fatal(err)
		}
		e.Amendment = "a1"
		if err := e.Seal(int64(i+1), prev); err != nil {
			t.Fatal(err)
		}
		prev = e.Hash
		out = append(out, e)
	}
	return out
}

func events(l []Event) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		for _, e := range l {
			if !yield(e, nil) {
				return
			}
		}
	}
}

func TestVerifyIntact(t *testing.T) {
	l := chain(t, 5)
	sum, err := Verify(events(l))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if sum.Events != 5 || sum.LastSeq != 5 || sum.Head != l[4].Hash {
		t.Errorf("got %+v; want 5 events, last seq 5, head %s", sum, l[4].Hash)
	}
	if l[0].Time.Nanosecond()%1000 != 0 {
		t.Errorf("Seal kept nanoseconds %d; want microsecond precision", l[0].Time.Nanosecond())
	}
	if empty, err := Verify(events(nil)); err != nil || empty.Head != Genesis {
		t.Errorf("empty trail: got %+v, %v; want genesis head, no error", empty, err)
	}
}

func TestVerifyTampered(t *testing.T) {
	tests := []struct {
		name       string
		tamper     func([]Event) []Event
		wantPos    int64
		wantReason string
	}{
		{"edited data", func(l []Event) []Event {
			l[2].Data = json.RawMessage(`{"i":2,"reason":"nothing to see"}`)
			return l
		}, 3, "the row was edited"},
		{"edited actor", func(l []Event) []Event { l[1].Actor = "mallory@example.com"; return l }, 2, "the row was edited"},
		{"deleted middle row", func(l []Event) []Event { return slices.Delete(l, 1, 2) }, 2, "row 2 is missing"},
		{"inserted row", func(l []Event) []Event {
			forged := l[1]
			forged.Actor = "mallory@example.com"
			return slices.Insert(l, 2, forged)
		}, 3, "repeats or goes backwards"},
		{"reordered", func(l []Event) []Event { l[1], l[2] = l[2], l[1]; return l }, 2, "where 2 was expected"},
		{"renumbered after delete", func(l []Event) []Event {
			l = slices.Delete(l, 1, 2)
			for i := range l {
				l[i].Seq = int64(i + 1)
			}
			return l
		}, 2, "prev_hash does not match"},
		{"rehashed edit", func(l []Event) []Event {
			l[1].Actor = "mallory@example.com"
			if err := l[1].Seal(2, l[0].Hash); err != nil {
				panic(err)
			}
			return l
		}, 3, "prev_hash does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := tt.tamper(chain(t, 5))
			_, err := Verify(events(l))
			var be *BreakError
			if !errors.As(err, &be) {
				t.Fatalf("got %v; want a *BreakError", err)
			}
			if be.Position != tt.wantPos || !strings.Contains(be.Reason, tt.wantReason) {
				t.Errorf("got position %d reason %q; want position %d reason containing %q", be.Position, be.Reason, tt.wantPos, tt.wantReason)
			}
		})
	}
}

func TestCanonicalDataIgnoresFormatting(t *testing.T) {
	l := chain(t, 1)
	e := l[0]
	// What PostgreSQL's jsonb would hand back: other key order, other spacing.
	e.Data = json.RawMessage(`{ "reason" : "deploy", "i" : 0 }`)
	if _, err := Verify(events([]Event{e})); err != nil {
		t.Fatalf("reformatted data: %v; want the same hash", err)
	}
	e.Data = json.RawMessage(`{"reason":"deploy","i":0.0}`)
	if _, err := Verify(events([]Event{e})); err == nil {
		t.Fatal("changed number text verified; want a break")
	}
}

func TestExportJSONLines(t *testing.T) {
	l := chain(t, 3)
	var b bytes.Buffer
	n, err := Export(&b, events(l))
	if err != nil || n != 3 {
		t.Fatalf("Export: got %d, %v; want 3, nil", n, err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("got %d lines; want 3", len(lines))
	}
	var back []Event
	for _, line := range lines {
		var e Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		back = append(back, e)
	}
	if _, err := Verify(events(back)); err != nil {
		t.Errorf("exported trail does not verify: %v", err)
	}
}

func TestSealRejectsBadInput(t *testing.T) {
	e := Event{Time: time.Now(), Type: "x", Data: json.RawMessage(`{"a":`)}
	if err := e.Seal(1, Genesis); err == nil {
		t.Error("Seal with malformed data: got nil; want an error")
	}
	e.Data = nil
	if err := e.Seal(1, "nothex"); err == nil {
		t.Error("Seal with a bad prev hash: got nil; want an error")
	}
}
