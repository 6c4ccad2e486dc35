package store

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/jitproxy/jitproxy/audit"
)

// TestAppendAuditGroupCommit: appends that queue while the write lock is
// held commit together, in one transaction. The WAL shows it: a commit
// writes at least one frame (the audit table's last page), so n separate
// commits grow it by n frames or more, one group commit by a handful. The
// chain still verifies, and each caller got the event stored at its seq.
func TestAppendAuditGroupCommit(t *testing.T) {
	const n = 200
	path := filepath.Join(t.TempDir(), "j.db")
	s, err := OpenSQLite(t.Context(), SQLiteConfig{Path: path, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := t.Context()
	at := time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)
	if _, err := s.AppendAudit(ctx, audit.Event{Time: at, Type: audit.TypeLogin, Actor: "alice@example.com"}); err != nil {
		t.Fatal(err)
	}
	var pageSize int64
	if err := s.w.QueryRowContext(ctx, "PRAGMA page_size").Scan(&pageSize); err != nil {
		t.Fatal(err)
	}
	walSize := func() int64 {
		fi, err := os.Stat(path + "-wal")
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	before := walSize()

	got := make([]audit.Event, n)
	errs := make([]error, n)
	appendTogether(t, s, n, func(i int) {
		e, err := audit.NewEvent(at.Add(time.Duration(i)*time.Millisecond), audit.TypeSessionEnd, "alice@example.com", map[string]int{"i": i})
		if err == nil {
			e, err = s.AppendAudit(ctx, e)
		}
		got[i], errs[i] = e, err
	})

	for i, err := range errs {
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	frames := (walSize() - before) / (pageSize + 24)
	if frames >= n/4 {
		t.Errorf("%d appends grew the WAL by %d frames; want a handful (one commit), not one or more per append", n, frames)
	}
	t.Logf("%d queued appends: %d WAL frames", n, frames)

	stored := make(map[int64]audit.Event)
	sum, err := audit.Verify(func(yield func(audit.Event, error) bool) {
		for e, err := range s.AuditEvents(ctx, 0) {
			stored[e.Seq] = e
			if !yield(e, err) {
				return
			}
		}
	})
	if err != nil {
		t.Fatalf("the chain does not verify: %v", err)
	}
	if sum.Events != n+1 {
		t.Errorf("%d events; want %d", sum.Events, n+1)
	}
	for i, e := range got {
		if s := stored[e.Seq]; s.Hash != e.Hash || s.PrevHash != e.PrevHash || string(s.Data) != string(e.Data) {
			t.Errorf("append %d returned seq %d hash %s; the store holds hash %s there", i, e.Seq, e.Hash, s.Hash)
		}
	}
}

// TestAppendAuditGroupCommitFailures: in one group commit, an event that
// cannot be sealed fails alone, and a failed insert fails the whole batch
// with nothing of it stored; the chain verifies and the next append goes
// on from its old head. The insert failure is SQLite's own: a trigger
// aborts the insert of an event of type "poison".
func TestAppendAuditGroupCommitFailures(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.db")
	s, err := OpenSQLite(t.Context(), SQLiteConfig{Path: path, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := t.Context()
	if _, err := s.w.ExecContext(ctx, `CREATE TRIGGER poison BEFORE INSERT ON audit
		WHEN NEW.type = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned'); END`); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)
	ev := func(typ string, data string) audit.Event {
		return audit.Event{Time: at, Type: typ, Actor: "alice@example.com", Data: []byte(data)}
	}
	head, err := s.AppendAudit(ctx, ev(audit.TypeLogin, `{"i":0}`))
	if err != nil {
		t.Fatal(err)
	}

	// inOneBatch appends events as one batch and returns each one's error.
	inOneBatch := func(events ...audit.Event) []error {
		errs := make([]error, len(events))
		appendTogether(t, s, len(events), func(i int) { _, errs[i] = s.AppendAudit(ctx, events[i]) })
		return errs
	}
	errs := inOneBatch(ev(audit.TypeSessionEnd, `{"i":1}`), ev(audit.TypeSessionEnd, `{not json`), ev(audit.TypeSessionEnd, `{"i":3}`))
	if errs[0] != nil || errs[1] == nil || errs[2] != nil {
		t.Fatalf("a batch with one event that is not JSON: errors %v; want only the second to fail", errs)
	}
	errs = inOneBatch(ev(audit.TypeSessionEnd, `{"i":4}`), ev("poison", `{}`), ev(audit.TypeSessionEnd, `{"i":6}`))
	for i, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "poisoned") {
			t.Errorf("append %d of a batch whose insert failed: %v; want the insert's error", i, err)
		}
	}
	next, err := s.AppendAudit(ctx, ev(audit.TypeSessionEnd, `{"i":7}`))
	if err != nil {
		t.Fatal(err)
	}
	if next.Seq != head.Seq+3 {
		t.Errorf("the append after the failed batch got seq %d; want %d (the head, then two from the first batch)", next.Seq, head.Seq+3)
	}
	var data []string
	sum, err := audit.Verify(func(yield func(audit.Event, error) bool) {
		for e, err := range s.AuditEvents(ctx, 0) {
			data = append(data, string(e.Data))
			if !yield(e, err) {
				return
			}
		}
	})
	if err != nil {
		t.Fatalf("the chain does not verify: %v", err)
	}
	// A batch is stored in the order its appends arrived, which is the
	// scheduler's: 1 and 3 may be either way round.
	if len(data) == 4 {
		slices.Sort(data[1:3])
	}
	if want := []string{`{"i":0}`, `{"i":1}`, `{"i":3}`, `{"i":7}`}; sum.Events != 4 || !slices.Equal(data, want) {
		t.Errorf("stored data %q; want %q", data, want)
	}
}

// appendTogether runs do(0) to do(n-1), each an AppendAudit, on goroutines
// while it holds s's write lock, until all n have queued, so that they
// commit as one batch; it returns when all are done. It lets go of the
// lock before it fails, so that the store can still close.
func appendTogether(t *testing.T, s *SQLite, n int, do func(i int)) {
	t.Helper()
	s.wsem <- struct{}{}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { do(i) })
	}
	queued := 0
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		s.audits.mu.Lock()
		queued = len(s.audits.waiting)
		s.audits.mu.Unlock()
		if queued == n {
			break
		}
	}
	<-s.wsem
	wg.Wait()
	if queued != n {
		t.Fatalf("%d of %d appends queued while the write lock was held; they did not commit as one batch", queued, n)
	}
}
