package audit

import (
	"encoding/json"
	"fmt"
	"io"
	"iter"
)

// BreakError names the first row where the chain does not hold.
type BreakError struct {
	// Seq is the sequence number of the bad row as stored; when a row is
	// missing, that of the row that shows the gap (Reason names the missing one).
	Seq int64
	// Position is the row's 1-based position in stored order.
	Position int64
	Reason   string
}

func (e *BreakError) Error() string {
	return fmt.Sprintf("audit trail broken at row %d (seq %d): %s", e.Position, e.Seq, e.Reason)
}

// Summary describes a verified trail.
type Summary struct {
	Events int64
	// Head is the hash of the last event (Genesis for an empty trail). An
	// auditor who keeps it can later prove the trail was not truncated.
	Head    string
	LastSeq int64
}

// Verifier checks events one at a time, in stored order, so a trail of any
// length is verified in constant memory.
type Verifier struct {
	prev string
	pos  int64
	seq  int64
}

// NewVerifier starts at the genesis of a trail.
func NewVerifier() *Verifier { return &Verifier{prev: Genesis} }

// Next checks the next stored event; the first failure is a *BreakError.
func (v *Verifier) Next(e Event) error {
	v.pos++
	want := v.seq + 1
	fail := func(format string, args ...any) error {
		return &BreakError{Seq: e.Seq, Position: v.pos, Reason: fmt.Sprintf(format, args...)}
	}
	switch {
	case e.Seq < want:
		return fail("sequence number %d repeats or goes backwards (expected %d): a row was inserted or reordered", e.Seq, want)
	case e.Seq > want:
		return fail("sequence number %d where %d was expected: row %d is missing", e.Seq, want, want)
	case e.PrevHash != v.prev:
		return fail("prev_hash does not match the hash of the row before: a row before it was deleted, inserted or changed")
	}
	h, err := e.computeHash()
	if err != nil {
		return fail("%v", err)
	}
	if h != e.Hash {
		return fail("hash does not match its contents: the row was edited")
	}
	v.prev, v.seq = e.Hash, e.Seq
	return nil
}

// Summary reports what has been verified so far.
func (v *Verifier) Summary() Summary { return Summary{Events: v.pos, Head: v.prev, LastSeq: v.seq} }

// Verify checks a whole trail given in stored order. An error from the
// source is returned as is; a chain failure is a *BreakError.
func Verify(events iter.Seq2[Event, error]) (Summary, error) {
	v := NewVerifier()
	for e, err := range events {
		if err != nil {
			return v.Summary(), err
		}
		if err := v.Next(e); err != nil {
			return v.Summary(), err
		}
	}
	return v.Summary(), nil
}

// Export writes events as JSON lines, one event per line, in stored order,
// and returns how many it wrote.
func Export(w io.Writer, events iter.Seq2[Event, error]) (int64, error) {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	var n int64
	for e, err := range events {
		if err != nil {
			return n, err
		}
		if err := enc.Encode(e); err != nil {
			return n, fmt.Errorf("audit: export: %w", err)
		}
		n++
	}
	return n, nil
}
