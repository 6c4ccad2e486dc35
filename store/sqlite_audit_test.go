package store

import (
	"os"
	"path/filepath"
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

	s.wsem <- struct{}{} // hold the write lock while the appenders queue
	got := make([]audit.Event, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			e, err := audit.NewEvent(at.Add(time.Duration(i)*time.Millisecond), audit.TypeSessionEnd, "alice@example.com", map[string]int{"i": i})
			if err == nil {
				e, err = s.AppendAudit(ctx, e)
			}
			got[i], errs[i] = e, err
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.audits.mu.Lock()
		queued := len(s.audits.waiting)
		s.audits.mu.Unlock()
		if queued == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d appends queued", queued, n)
		}
		time.Sleep(time.Millisecond)
	}
	<-s.wsem
	wg.Wait()

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
