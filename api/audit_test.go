package api_test

import (
	"context"
	"database/sql"
	"iter"
	"net/http"
	"strings"
	"testing"

	"github.com/jitproxy/jitproxy/api"
	"github.com/jitproxy/jitproxy/audit"
)

// fillTrail makes a few transitions so the trail has rows.
func fillTrail(t *testing.T, e *env) {
	t.Helper()
	a := e.create(t, "alice", api.RequestBody{Target: "web-1", Login: "ubuntu", Duration: "1h", Reason: "r"})
	if r := e.do(t, "bob", "POST", "/api/v1/amendments/"+a.ID+"/approve", api.ApproveBody{}); r.status != 200 {
		t.Fatalf("approve: %d %s", r.status, r.body)
	}
	e.create(t, "alice", api.RequestBody{Target: "app-db", Role: "app_ro", Duration: "1h"})
}

func TestAuditStream(t *testing.T) {
	e := newEnv(t, nil)
	fillTrail(t, e)
	_, total := e.counts(t)
	if total < 5 {
		t.Fatalf("trail has %d rows; want at least 5 to test with", total)
	}
	tests := []struct {
		name      string
		user      string
		query     string
		want      int
		wantFirst int64 // seq of the first line
		wantLines int
	}{
		{name: "auditor reads all", user: "dave", want: 200, wantFirst: 1, wantLines: total},
		{name: "admin reads all", user: "root", want: 200, wantFirst: 1, wantLines: total},
		{name: "auditor reads after", user: "dave", query: "?after=2", want: 200, wantFirst: 3, wantLines: total - 2},
		{name: "after the end", user: "dave", query: "?after=1000", want: 200, wantLines: 0},
		{name: "requester", user: "alice", want: 403},
		{name: "approver", user: "bob", want: 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(t, tt.user, "GET", "/api/v1/audit"+tt.query, nil)
			if r.status != tt.want {
				t.Fatalf("status %d; want %d (%s)", r.status, tt.want, r.body)
			}
			if tt.want == http.StatusForbidden {
				got := apiError(t, r)
				if want := "reading the audit trail needs membership in one of security, admins"; got.Code != api.CodeForbidden || !strings.HasPrefix(got.Message, want) {
					t.Errorf("got %s %q; want forbidden %q…", got.Code, got.Message, want)
				}
				return
			}
			if ct := r.header.Get("Content-Type"); ct != "application/x-ndjson" {
				t.Errorf("Content-Type %q; want application/x-ndjson", ct)
			}
			lines := auditLines(t, r.body)
			if len(lines) != tt.wantLines {
				t.Fatalf("got %d lines; want %d", len(lines), tt.wantLines)
			}
			if len(lines) > 0 && lines[0].Seq != tt.wantFirst {
				t.Errorf("first seq %d; want %d", lines[0].Seq, tt.wantFirst)
			}
			if tt.wantFirst == 1 {
				// What the API streams is the trail itself: it verifies.
				sum, err := audit.Verify(trail(lines))
				if err != nil || sum.Events != int64(total) {
					t.Errorf("verify the stream: %+v, %v; want %d events intact", sum, err, total)
				}
			}
		})
	}
}

func TestAuditVerify(t *testing.T) {
	e := newEnv(t, nil)
	fillTrail(t, e)
	var last audit.Event
	for ev, err := range e.store.AuditEvents(context.Background(), 0) {
		if err != nil {
			t.Fatal(err)
		}
		last = ev
	}

	r := e.do(t, "alice", "GET", "/api/v1/audit/verify", nil)
	if r.status != http.StatusForbidden {
		t.Errorf("as alice: status %d; want 403", r.status)
	}
	r = e.do(t, "dave", "GET", "/api/v1/audit/verify", nil)
	if r.status != http.StatusOK {
		t.Fatalf("status %d; want 200 (%s)", r.status, r.body)
	}
	want := api.VerifyResult{OK: true, Events: last.Seq, Head: last.Hash, LastSeq: last.Seq}
	if got := decode[api.VerifyResult](t, r); got != want {
		t.Errorf("intact trail: got %+v; want %+v", got, want)
	}

	// Edit row 2 behind the store's back, as someone with the database file
	// would (dropping the append-only trigger first): verify must name it.
	db, err := sql.Open("sqlite", e.dbPath) // the driver the store registered
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{`DROP TRIGGER audit_no_update`, `UPDATE audit SET actor = 'mallory@example.com' WHERE seq = 2`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	r = e.do(t, "dave", "GET", "/api/v1/audit/verify", nil)
	got := decode[api.VerifyResult](t, r)
	if r.status != http.StatusOK || got.OK || got.Error == nil {
		t.Fatalf("tampered trail: status %d, %+v; want 200 with ok false and the break", r.status, got)
	}
	if got.Error.Seq != 2 || got.Error.Position != 2 || !strings.Contains(got.Error.Reason, "the row was edited") || got.Events != 1 || got.LastSeq != 1 {
		t.Errorf("tampered trail: got %+v, break %+v; want seq 2 at position 2 edited, 1 event intact", got, *got.Error)
	}
}

// trail yields events as a store would.
func trail(l []audit.Event) iter.Seq2[audit.Event, error] {
	return func(yield func(audit.Event, error) bool) {
		for _, ev := range l {
			if !yield(ev, nil) {
				return
			}
		}
	}
}
