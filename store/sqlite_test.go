package store_test

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/jitproxy/jitproxy/amendment"
	"github.com/jitproxy/jitproxy/audit"
	"github.com/jitproxy/jitproxy/store"
	"github.com/jitproxy/jitproxy/store/storetest"
)

// testBuffer keeps the suite's overflow test short.
const testBuffer = 16

func TestSQLiteConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openSQLite(t, filepath.Join(t.TempDir(), "jitproxy.db"))
	})
}

func testLogger(t *testing.T) zerolog.Logger {
	t.Helper()
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
}

// openSQLite opens the store at path and closes it at the end of the test.
func openSQLite(t *testing.T, path string) *store.SQLite {
	t.Helper()
	s, err := store.OpenSQLite(t.Context(), store.SQLiteConfig{Path: path, Logger: testLogger(t), EventBuffer: testBuffer})
	if err != nil {
		t.Fatalf("OpenSQLite(%s): %v", path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// rawDB opens the database file directly, as someone with access to the
// file would, and closes it at the end of the test.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func exec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

var t0 = time.Date(2025, 3, 1, 9, 30, 0, 123456000, time.UTC)

// seed writes n changes: amendment requests and approvals, and logins in
// between, so the trail mixes both kinds of rows.
func seed(t *testing.T, s *store.SQLite, n int) {
	t.Helper()
	ctx := t.Context()
	var cur *amendment.Amendment
	for i := range n {
		at := t0.Add(time.Duration(i) * time.Second)
		switch {
		case i%3 == 2:
			e, err := audit.NewEvent(at, audit.TypeLogin, "alice@example.com", map[string]int{"i": i})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.AppendAudit(ctx, e); err != nil {
				t.Fatalf("AppendAudit: %v", err)
			}
		case cur == nil || i%6 == 0:
			cur = &amendment.Amendment{ID: fmt.Sprintf("a%d", i), Version: 1, State: amendment.Requested, Requester: "alice@example.com",
				Resource: amendment.Resource{Target: "web-1", Kind: amendment.KindSSH, Login: "ubuntu"}, CreatedAt: at, UpdatedAt: at}
			if err := s.Create(ctx, amendment.Change{Event: amendment.EventRequested, Actor: "alice@example.com", At: at, After: cur}); err != nil {
				t.Fatalf("Create: %v", err)
			}
		default:
			next := cur.Clone()
			next.Version++
			next.State = amendment.Approved
			next.UpdatedAt = at
			if err := s.Update(ctx, amendment.Change{Event: amendment.EventApproved, Actor: "bob@example.com", At: at, Before: cur, After: next}); err != nil {
				t.Fatalf("Update: %v", err)
			}
			cur = next
		}
	}
}

func events(t *testing.T, s store.Store) []audit.Event {
	t.Helper()
	var es []audit.Event
	for e, err := range s.AuditEvents(t.Context(), 0) {
		if err != nil {
			t.Fatalf("AuditEvents: %v", err)
		}
		es = append(es, e)
	}
	return es
}

type migrationRow struct {
	Version   int
	Name      string
	AppliedAt string
}

func migrations(t *testing.T, path string) []migrationRow {
	t.Helper()
	rows, err := rawDB(t, path).Query(`SELECT version, name, applied_at FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var ms []migrationRow
	for rows.Next() {
		var m migrationRow
		if err := rows.Scan(&m.Version, &m.Name, &m.AppliedAt); err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ms
}

func TestSQLiteReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jitproxy.db")
	s := openSQLite(t, path)
	seed(t, s, 10)
	ls := store.LoginSession{TokenHash: "h1", Identity: amendment.Identity{Email: "alice@example.com", Groups: []string{"eng"}}, IssuedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	if err := s.CreateSession(t.Context(), ls); err != nil {
		t.Fatal(err)
	}
	list, err := s.List(t.Context(), amendment.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	trail := events(t, s)
	sum, err := audit.Verify(s.AuditEvents(t.Context(), 0))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	before := migrations(t, path)
	if len(before) == 0 || before[0].Version != 1 {
		t.Fatalf("schema_migrations = %+v; want migration 1 recorded", before)
	}

	s = openSQLite(t, path)
	if got := migrations(t, path); !reflect.DeepEqual(got, before) {
		t.Errorf("schema_migrations after reopening = %+v; want %+v (nothing re-applied)", got, before)
	}
	gotList, err := s.List(t.Context(), amendment.Filter{})
	if err != nil || !reflect.DeepEqual(gotList, list) {
		t.Errorf("List after reopening = %d amendments (%v); want the %d from before", len(gotList), err, len(list))
	}
	if got := events(t, s); !reflect.DeepEqual(got, trail) {
		t.Errorf("audit trail after reopening differs:\ngot  %+v\nwant %+v", got, trail)
	}
	if got, err := s.GetSession(t.Context(), "h1"); err != nil || !reflect.DeepEqual(got, ls) {
		t.Errorf("GetSession after reopening = %+v, %v; want %+v", got, err, ls)
	}

	// The chain continues where it stopped.
	e, err := s.AppendAudit(t.Context(), audit.Event{Time: t0, Type: audit.TypeLogout, Actor: "alice@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if e.Seq != sum.LastSeq+1 || e.PrevHash != sum.Head {
		t.Errorf("first event after reopening: seq %d prev_hash %s; want %d and %s", e.Seq, e.PrevHash, sum.LastSeq+1, sum.Head)
	}
	if _, err := audit.Verify(s.AuditEvents(t.Context(), 0)); err != nil {
		t.Errorf("audit.Verify after reopening and appending: %v", err)
	}
}

func TestSQLiteFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "nested")
	path := filepath.Join(dir, "jitproxy.db")
	s := openSQLite(t, path)
	seed(t, s, 3) // the -wal and -shm files exist while the store is open

	for _, tt := range []struct {
		path string
		want os.FileMode
	}{
		{dir, 0o700 | os.ModeDir},
		{path, 0o600},
		{path + "-wal", 0o600},
		{path + "-shm", 0o600},
	} {
		fi, err := os.Stat(tt.path)
		if err != nil {
			t.Errorf("stat: %v", err)
			continue
		}
		if got := fi.Mode(); got != tt.want {
			t.Errorf("mode of %s = %v; want %v", filepath.Base(tt.path), got, tt.want)
		}
	}
}

func TestSQLiteTightensLooseFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jitproxy.db")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil { // whatever the umask
		t.Fatal(err)
	}
	openSQLite(t, path)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("mode of an existing 0644 database after OpenSQLite = %v; want 0600", got)
	}
}

func TestSQLiteNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jitproxy.db")
	s := openSQLite(t, path)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	exec(t, rawDB(t, path), `INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, '9999_future.sql', 'x')`)

	s, err := store.OpenSQLite(t.Context(), store.SQLiteConfig{Path: path, Logger: testLogger(t)})
	if err == nil {
		s.Close()
		t.Fatal("OpenSQLite of a database with an unknown migration = nil error; want it refused")
	}
	if !errors.Is(err, store.ErrNewerSchema) || !strings.Contains(err.Error(), "9999") || !strings.Contains(err.Error(), "newer jitproxy") {
		t.Errorf("error = %q; want one matching store.ErrNewerSchema that names migration 9999 and a newer jitproxy", err)
	}
}

func TestSQLiteConfig(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		cfg     store.SQLiteConfig
		wantErr bool
		wantCap int
	}{
		{"no path", store.SQLiteConfig{}, true, 0},
		{"in-memory", store.SQLiteConfig{Path: ":memory:"}, true, 0},
		{"URI", store.SQLiteConfig{Path: "file:x.db?mode=memory"}, true, 0},
		{"negative buffer", store.SQLiteConfig{Path: filepath.Join(dir, "neg.db"), EventBuffer: -1}, true, 0},
		{"default buffer", store.SQLiteConfig{Path: filepath.Join(dir, "default.db")}, false, 1024},
		{"own buffer", store.SQLiteConfig{Path: filepath.Join(dir, "own.db"), EventBuffer: 3}, false, 3},
		{"odd characters in the path", store.SQLiteConfig{Path: filepath.Join(dir, "a dir?#%", "j.db")}, false, 1024},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := store.OpenSQLite(t.Context(), tt.cfg)
			if tt.wantErr {
				if err == nil {
					s.Close()
					t.Fatal("OpenSQLite = nil error; want the config refused")
				}
				return
			}
			if err != nil {
				t.Fatalf("OpenSQLite: %v", err)
			}
			defer s.Close()
			if got := cap(s.Subscribe(t.Context())); got != tt.wantCap {
				t.Errorf("subscriber buffer = %d; want %d", got, tt.wantCap)
			}
			if _, err := os.Stat(tt.cfg.Path); err != nil {
				t.Errorf("database file: %v", err)
			}
		})
	}
}

// TestSQLiteTwoHandles has two stores (two processes, say) write to one
// file at once: BEGIN IMMEDIATE and the busy timeout must serialize them
// without SQLITE_BUSY and without forking the chain.
func TestSQLiteTwoHandles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jitproxy.db")
	stores := []*store.SQLite{openSQLite(t, path), openSQLite(t, path)}
	const perWriter = 25
	var wg sync.WaitGroup
	errc := make(chan error, 2*len(stores)*perWriter)
	for i, s := range stores {
		for w := range 2 {
			wg.Go(func() {
				for j := range perWriter {
					_, err := s.AppendAudit(t.Context(), audit.Event{Time: t0, Type: audit.TypeLogin, Actor: fmt.Sprintf("s%d-w%d-%d", i, w, j)})
					if err != nil {
						errc <- err
					}
				}
			})
		}
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Errorf("AppendAudit: %v", err)
	}
	sum, err := audit.Verify(stores[0].AuditEvents(t.Context(), 0))
	if err != nil {
		t.Fatalf("audit.Verify: %v", err)
	}
	if want := int64(2 * len(stores) * perWriter); sum.Events != want {
		t.Errorf("events = %d; want %d", sum.Events, want)
	}
}

func TestSQLiteAuditIsAppendOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jitproxy.db")
	s := openSQLite(t, path)
	seed(t, s, 3)
	db := rawDB(t, path)
	for _, q := range []string{`UPDATE audit SET actor = 'mallory' WHERE seq = 1`, `DELETE FROM audit WHERE seq = 3`} {
		if _, err := db.Exec(q); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v; want it refused as append-only", q, err)
		}
	}
	if _, err := audit.Verify(s.AuditEvents(t.Context(), 0)); err != nil {
		t.Errorf("audit.Verify: %v", err)
	}
}

// storedEvent reads one row as the store would, for a forger to reseal.
func storedEvent(t *testing.T, s store.Store, seq int64) audit.Event {
	t.Helper()
	for _, e := range events(t, s) {
		if e.Seq == seq {
			return e
		}
	}
	t.Fatalf("no audit row %d", seq)
	return audit.Event{}
}

// insertRow writes e as a row, as a forger with the file would.
func insertRow(t *testing.T, db *sql.DB, e audit.Event) {
	t.Helper()
	exec(t, db, `INSERT INTO audit (seq, time, type, actor, amendment, session, data, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.Seq, e.Time.UTC().Format("2006-01-02T15:04:05.000000Z"), e.Type, e.Actor, e.Amendment, e.Session, string(e.Data), e.PrevHash, e.Hash)
}

// TestSQLiteTamperDetected edits the database file behind the store's back
// and checks that audit.Verify names the first bad row. The forger knows the
// hash algorithm (it is not secret) and drops the append-only triggers.
func TestSQLiteTamperDetected(t *testing.T) {
	const rows = 8
	tests := []struct {
		name         string
		tamper       func(t *testing.T, db *sql.DB, orig *store.SQLite)
		wantSeq      int64
		wantPosition int64
		wantReason   string
	}{
		{
			name: "edit a row's data",
			tamper: func(t *testing.T, db *sql.DB, _ *store.SQLite) {
				exec(t, db, `UPDATE audit SET data = json_set(data, '$.i', 999) WHERE seq = 3`)
			},
			wantSeq: 3, wantPosition: 3, wantReason: "hash does not match its contents",
		},
		{
			name: "edit a row's actor",
			tamper: func(t *testing.T, db *sql.DB, _ *store.SQLite) {
				exec(t, db, `UPDATE audit SET actor = 'mallory@example.com' WHERE seq = 5`)
			},
			wantSeq: 5, wantPosition: 5, wantReason: "hash does not match its contents",
		},
		{
			name: "edit a row's time",
			tamper: func(t *testing.T, db *sql.DB, _ *store.SQLite) {
				exec(t, db, `UPDATE audit SET time = '2020-01-01T00:00:00.000000Z' WHERE seq = 2`)
			},
			wantSeq: 2, wantPosition: 2, wantReason: "hash does not match its contents",
		},
		{
			name: "delete a middle row",
			tamper: func(t *testing.T, db *sql.DB, _ *store.SQLite) {
				exec(t, db, `DELETE FROM audit WHERE seq = 4`)
			},
			// BreakError.Seq is the seq of the row where the break shows
			// (5); the reason names the missing row.
			wantSeq: 5, wantPosition: 4, wantReason: "sequence number 5 where 4 was expected: row 4 is missing",
		},
		{
			name: "delete a middle row and renumber the rest",
			tamper: func(t *testing.T, db *sql.DB, _ *store.SQLite) {
				exec(t, db, `DELETE FROM audit WHERE seq = 4`)
				exec(t, db, `UPDATE audit SET seq = seq + 1000 WHERE seq > 4`)
				exec(t, db, `UPDATE audit SET seq = seq - 1001 WHERE seq > 1000`)
			},
			wantSeq: 4, wantPosition: 4, wantReason: "prev_hash does not match the hash of the row before",
		},
		{
			name: "insert a forged row at the end with a made-up hash",
			tamper: func(t *testing.T, db *sql.DB, orig *store.SQLite) {
				last := storedEvent(t, orig, rows)
				insertRow(t, db, audit.Event{Seq: rows + 1, Time: t0, Type: amendment.EventApproved, Actor: "mallory@example.com",
					Data: json.RawMessage(`{}`), PrevHash: last.Hash, Hash: strings.Repeat("ab", 32)})
			},
			wantSeq: rows + 1, wantPosition: rows + 1, wantReason: "hash does not match its contents",
		},
		{
			name: "insert a correctly sealed forged row in the middle",
			tamper: func(t *testing.T, db *sql.DB, orig *store.SQLite) {
				prev := storedEvent(t, orig, 2)
				exec(t, db, `UPDATE audit SET seq = seq + 1000 WHERE seq >= 3`)
				exec(t, db, `UPDATE audit SET seq = seq - 999 WHERE seq > 1000`)
				forged := audit.Event{Time: prev.Time, Type: amendment.EventApproved, Actor: "mallory@example.com", Amendment: "a0", Data: json.RawMessage(`{"forged":true}`)}
				if err := forged.Seal(3, prev.Hash); err != nil {
					t.Fatal(err)
				}
				insertRow(t, db, forged)
			},
			// The forged row itself checks out; the row after it does not.
			wantSeq: 4, wantPosition: 4, wantReason: "prev_hash does not match the hash of the row before",
		},
		{
			name: "swap two rows' seq",
			tamper: func(t *testing.T, db *sql.DB, _ *store.SQLite) {
				exec(t, db, `UPDATE audit SET seq = 1005 WHERE seq = 5`)
				exec(t, db, `UPDATE audit SET seq = 5 WHERE seq = 6`)
				exec(t, db, `UPDATE audit SET seq = 6 WHERE seq = 1005`)
			},
			wantSeq: 5, wantPosition: 5, wantReason: "prev_hash does not match the hash of the row before",
		},
		{
			name: "renumber from a row on",
			tamper: func(t *testing.T, db *sql.DB, _ *store.SQLite) {
				exec(t, db, `UPDATE audit SET seq = seq + 100 WHERE seq >= 6`)
			},
			wantSeq: 106, wantPosition: 6, wantReason: "sequence number 106 where 6 was expected",
		},
		{
			name: "edit data and reseal the row, but not the next",
			tamper: func(t *testing.T, db *sql.DB, orig *store.SQLite) {
				prev, e := storedEvent(t, orig, 4), storedEvent(t, orig, 5)
				e.Actor = "mallory@example.com"
				e.Data = json.RawMessage(`{"i":999}`)
				if err := e.Seal(5, prev.Hash); err != nil {
					t.Fatal(err)
				}
				exec(t, db, `UPDATE audit SET actor = ?, data = ?, hash = ? WHERE seq = 5`, e.Actor, string(e.Data), e.Hash)
			},
			wantSeq: 6, wantPosition: 6, wantReason: "prev_hash does not match the hash of the row before",
		},
		{
			name: "edit a prev_hash",
			tamper: func(t *testing.T, db *sql.DB, _ *store.SQLite) {
				exec(t, db, `UPDATE audit SET prev_hash = ? WHERE seq = 1`, strings.Repeat("1", 64))
			},
			wantSeq: 1, wantPosition: 1, wantReason: "prev_hash does not match the hash of the row before",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "jitproxy.db")
			s := openSQLite(t, path)
			seed(t, s, rows)
			if _, err := audit.Verify(s.AuditEvents(t.Context(), 0)); err != nil {
				t.Fatalf("audit.Verify before tampering: %v", err)
			}
			db := rawDB(t, path)
			exec(t, db, `DROP TRIGGER audit_no_update`)
			exec(t, db, `DROP TRIGGER audit_no_delete`)
			tt.tamper(t, db, s)

			_, err := audit.Verify(s.AuditEvents(t.Context(), 0))
			var be *audit.BreakError
			if !errors.As(err, &be) {
				t.Fatalf("audit.Verify after tampering: %v; want an *audit.BreakError", err)
			}
			if be.Seq != tt.wantSeq || be.Position != tt.wantPosition || !strings.Contains(be.Reason, tt.wantReason) {
				t.Errorf("break at position %d (seq %d): %q;\nwant position %d (seq %d): %q", be.Position, be.Seq, be.Reason, tt.wantPosition, tt.wantSeq, tt.wantReason)
			}
		})
	}
}

// TestSQLiteTruncationChangesHead: deleting the last rows leaves a chain
// that verifies, because every row left is intact. A chain alone cannot
// catch truncation; an auditor who pinned the head (Summary.Head) can, since
// the head changes. The same goes for rewriting every row from some point
// to the end.
func TestSQLiteTruncationChangesHead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jitproxy.db")
	s := openSQLite(t, path)
	seed(t, s, 6)
	pinned, err := audit.Verify(s.AuditEvents(t.Context(), 0))
	if err != nil {
		t.Fatal(err)
	}
	db := rawDB(t, path)
	exec(t, db, `DROP TRIGGER audit_no_delete`)
	exec(t, db, `DELETE FROM audit WHERE seq = (SELECT max(seq) FROM audit)`)

	now, err := audit.Verify(s.AuditEvents(t.Context(), 0))
	if err != nil {
		t.Fatalf("audit.Verify after deleting the last row: %v; want it to pass (a chain cannot see truncation)", err)
	}
	if now.Head == pinned.Head || now.Events != pinned.Events-1 || now.LastSeq != pinned.LastSeq-1 {
		t.Errorf("after deleting the last row: %+v; pinned %+v: want a different head and one event fewer", now, pinned)
	}
}

// TestSQLiteAuditUnreadableTime: a row whose time is not in the stored
// format is reported with its seq, not skipped.
func TestSQLiteAuditUnreadableTime(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jitproxy.db")
	s := openSQLite(t, path)
	seed(t, s, 3)
	db := rawDB(t, path)
	exec(t, db, `DROP TRIGGER audit_no_update`)
	exec(t, db, `UPDATE audit SET time = 'yesterday' WHERE seq = 2`)
	_, err := audit.Verify(s.AuditEvents(t.Context(), 0))
	if err == nil || !strings.Contains(err.Error(), "seq 2") {
		t.Errorf("audit.Verify: %v; want an error naming seq 2", err)
	}
}

// TestSQLiteCloseDuringWrites closes the store while writers run: every
// write either commits with its audit row or fails, nothing hangs, and the
// file is left clean (checkpointed, no -wal file).
func TestSQLiteCloseDuringWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jitproxy.db")
	s, err := store.OpenSQLite(t.Context(), store.SQLiteConfig{Path: path, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu sync.Mutex // guards ok
		ok int64
		wg sync.WaitGroup
	)
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				if _, err := s.AppendAudit(t.Context(), audit.Event{Time: t0, Type: audit.TypeLogin, Actor: fmt.Sprintf("w%d-%d", w, i)}); err != nil {
					return
				}
				mu.Lock()
				ok++
				mu.Unlock()
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("writers still running 30s after Close")
	}
	if _, err := os.Stat(path + "-wal"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Close, the -wal file: %v; want it gone (a clean close checkpoints)", err)
	}

	s = openSQLite(t, path)
	sum, err := audit.Verify(s.AuditEvents(t.Context(), 0))
	if err != nil {
		t.Fatalf("audit.Verify after reopening: %v", err)
	}
	if sum.Events != ok || ok == 0 {
		t.Errorf("events stored = %d; successful appends = %d (want equal, and some)", sum.Events, ok)
	}
}
