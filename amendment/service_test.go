package amendment_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jitproxy/jitproxy/amendment"
	"github.com/jitproxy/jitproxy/audit"
	"github.com/jitproxy/jitproxy/store"
)

// clock is a settable time source, so tests drive expiry in microseconds.
type clock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var (
	alice = amendment.Identity{Email: "alice@example.com", Groups: []string{"eng"}}
	eve   = amendment.Identity{Email: "eve@example.com", Groups: []string{"eng"}}
	bob   = amendment.Identity{Email: "bob@example.com", Groups: []string{"sre-leads"}}
	dave  = amendment.Identity{Email: "dave@example.com", Groups: []string{"sre-leads"}}
	carol = amendment.Identity{Email: "carol@example.com", Groups: []string{"security"}}
	root  = amendment.Identity{Email: "root@example.com", Groups: []string{"admins"}}
)

func contract() *amendment.Contract {
	return &amendment.Contract{
		Targets: map[string]amendment.Target{
			"web-1":  {Name: "web-1", Kind: amendment.KindSSH},
			"prod-1": {Name: "prod-1", Kind: amendment.KindSSH},
			"app-db": {Name: "app-db", Kind: amendment.KindPostgres},
		},
		Rules: []amendment.Rule{
			{Name: "eng-web", Groups: []string{"eng"}, Targets: []string{"web-*"}, Logins: []string{"ubuntu"},
				MaxDuration: 4 * time.Hour, Approvals: 1, ApproverGroups: []string{"sre-leads"}, ExtensionApprovals: 1,
				RequireReason: true, PendingTTL: 24 * time.Hour},
			{Name: "eng-prod", Groups: []string{"eng"}, Targets: []string{"prod-*"}, Logins: []string{"root"},
				MaxDuration: 2 * time.Hour, Approvals: 2, ApproverGroups: []string{"sre-leads"},
				TicketPattern: regexp.MustCompile(`^OPS-\d+$`), PendingTTL: time.Hour},
			{Name: "eng-db", Groups: []string{"eng"}, Targets: []string{"app-db"}, Roles: []string{"app_ro"}, Databases: []string{"app"},
				MaxDuration: 8 * time.Hour, PendingTTL: time.Hour},
		},
		AdminGroups:   []string{"admins"},
		AuditorGroups: []string{"security"},
	}
}

type fixture struct {
	svc   *amendment.Service
	store store.Store
	clock *clock
	path  string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{clock: &clock{t: time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)}, path: filepath.Join(t.TempDir(), "jitproxy.db")}
	f.open(t)
	return f
}

func (f *fixture) open(t *testing.T) {
	t.Helper()
	st, err := store.OpenSQLite(context.Background(), store.SQLiteConfig{Path: f.path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc, err := amendment.New(amendment.Config{Store: st, Contract: contract(), Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	f.svc, f.store = svc, st
}

func webReq() amendment.Request {
	return amendment.Request{Target: "web-1", Login: "ubuntu", Duration: time.Hour, Reason: "deploy hotfix"}
}

func prodReq() amendment.Request {
	return amendment.Request{Target: "prod-1", Login: "root", Duration: time.Hour, Ticket: "OPS-9"}
}

// auditTypes returns the audit event types written for amendment id, in order.
func (f *fixture) auditTypes(t *testing.T, id string) []string {
	t.Helper()
	var out []string
	for e, err := range f.store.AuditEvents(context.Background(), 0) {
		if err != nil {
			t.Fatal(err)
		}
		if e.Amendment == id {
			out = append(out, e.Type+" by "+e.Actor)
		}
	}
	return out
}

func (f *fixture) verify(t *testing.T) audit.Summary {
	t.Helper()
	sum, err := audit.Verify(f.store.AuditEvents(context.Background(), 0))
	if err != nil {
		t.Fatalf("audit chain: %v", err)
	}
	return sum
}

// TestLegalTransitions walks every legal path through the lifecycle and
// checks the state, the times and the audit rows each writes.
func TestLegalTransitions(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name      string
		run       func(t *testing.T, f *fixture) *amendment.Amendment
		wantState amendment.State
		wantAudit []string
	}{
		{"approve activates at once", func(t *testing.T, f *fixture) *amendment.Amendment {
			a := must(f.svc.Request(ctx, alice, webReq()))(t)
			a = must(f.svc.Approve(ctx, bob, a.ID, "ok"))(t)
			if !a.ActivatedAt.Equal(f.clock.Now()) || !a.ExpiresAt.Equal(f.clock.Now().Add(time.Hour)) {
				t.Errorf("window %v..%v; want now..now+1h", a.ActivatedAt, a.ExpiresAt)
			}
			return a
		}, amendment.Active, []string{"amendment.requested by alice@example.com", "amendment.approved by bob@example.com", "amendment.activated by jitproxy"}},
		{"auto-approval is a policy rule", func(t *testing.T, f *fixture) *amendment.Amendment {
			return must(f.svc.Request(ctx, alice, amendment.Request{Target: "app-db", Role: "app_ro", Duration: time.Hour}))(t)
		}, amendment.Active, []string{"amendment.requested by alice@example.com", "amendment.approved by policy:eng-db", "amendment.activated by jitproxy"}},
		{"two approvals needed", func(t *testing.T, f *fixture) *amendment.Amendment {
			a := must(f.svc.Request(ctx, alice, prodReq()))(t)
			a = must(f.svc.Approve(ctx, bob, a.ID, ""))(t)
			if a.State != amendment.Requested {
				t.Errorf("after one approval: %s; want requested", a.State)
			}
			return must(f.svc.Approve(ctx, dave, a.ID, ""))(t)
		}, amendment.Active, []string{"amendment.requested by alice@example.com", "amendment.approval_added by bob@example.com", "amendment.approved by dave@example.com", "amendment.activated by jitproxy"}},
		{"scheduled start", func(t *testing.T, f *fixture) *amendment.Amendment {
			r := webReq()
			r.StartAt = f.clock.Now().Add(2 * time.Hour)
			a := must(f.svc.Request(ctx, alice, r))(t)
			a = must(f.svc.Approve(ctx, bob, a.ID, ""))(t)
			if a.State != amendment.Approved {
				t.Errorf("before start: %s; want approved", a.State)
			}
			f.clock.Add(2*time.Hour + time.Minute)
			if _, err := f.svc.Tick(ctx); err != nil {
				t.Fatal(err)
			}
			a = must(f.store.Get(ctx, a.ID))(t)
			if !a.ActivatedAt.Equal(r.StartAt) || !a.ExpiresAt.Equal(r.StartAt.Add(time.Hour)) {
				t.Errorf("window %v..%v; want the scheduled %v..+1h", a.ActivatedAt, a.ExpiresAt, r.StartAt)
			}
			return a
		}, amendment.Active, []string{"amendment.requested by alice@example.com", "amendment.approved by bob@example.com", "amendment.activated by jitproxy"}},
		{"deny", func(t *testing.T, f *fixture) *amendment.Amendment {
			a := must(f.svc.Request(ctx, alice, webReq()))(t)
			return must(f.svc.Deny(ctx, bob, a.ID, "not during the freeze"))(t)
		}, amendment.Denied, []string{"amendment.requested by alice@example.com", "amendment.denied by bob@example.com"}},
		{"withdraw", func(t *testing.T, f *fixture) *amendment.Amendment {
			a := must(f.svc.Request(ctx, alice, webReq()))(t)
			return must(f.svc.Withdraw(ctx, alice, a.ID, ""))(t)
		}, amendment.Withdrawn, []string{"amendment.requested by alice@example.com", "amendment.withdrawn by alice@example.com"}},
		{"request TTL withdraws", func(t *testing.T, f *fixture) *amendment.Amendment {
			a := must(f.svc.Request(ctx, alice, webReq()))(t)
			f.clock.Add(24 * time.Hour)
			if _, err := f.svc.Tick(ctx); err != nil {
				t.Fatal(err)
			}
			return must(f.store.Get(ctx, a.ID))(t)
		}, amendment.Withdrawn, []string{"amendment.requested by alice@example.com", "amendment.withdrawn by jitproxy"}},
		{"revoke active, by the requester", func(t *testing.T, f *fixture) *amendment.Amendment {
			a := must(f.svc.Request(ctx, alice, webReq()))(t)
			must(f.svc.Approve(ctx, bob, a.ID, ""))(t)
			return must(f.svc.Revoke(ctx, alice, a.ID, "done early"))(t)
		}, amendment.Revoked, []string{"amendment.requested by alice@example.com", "amendment.approved by bob@example.com", "amendment.activated by jitproxy", "amendment.revoked by alice@example.com"}},
		{"revoke scheduled, by an admin", func(t *testing.T, f *fixture) *amendment.Amendment {
			r := webReq()
			r.StartAt = f.clock.Now().Add(time.Hour)
			a := must(f.svc.Request(ctx, alice, r))(t)
			must(f.svc.Approve(ctx, bob, a.ID, ""))(t)
			return must(f.svc.Revoke(ctx, root, a.ID, "incident"))(t)
		}, amendment.Revoked, []string{"amendment.requested by alice@example.com", "amendment.approved by bob@example.com", "amendment.revoked by root@example.com"}},
		{"expiry from stored time", func(t *testing.T, f *fixture) *amendment.Amendment {
			a := must(f.svc.Request(ctx, alice, webReq()))(t)
			a = must(f.svc.Approve(ctx, bob, a.ID, ""))(t)
			f.clock.Add(3 * time.Hour)
			if _, err := f.svc.Tick(ctx); err != nil {
				t.Fatal(err)
			}
			got := must(f.store.Get(ctx, a.ID))(t)
			if !got.EndedAt.Equal(a.ExpiresAt) {
				t.Errorf("ended at %v; want the stored expiry %v", got.EndedAt, a.ExpiresAt)
			}
			return got
		}, amendment.Expired, []string{"amendment.requested by alice@example.com", "amendment.approved by bob@example.com", "amendment.activated by jitproxy", "amendment.expired by jitproxy"}},
		{"extension with approval", func(t *testing.T, f *fixture) *amendment.Amendment {
			a := must(f.svc.Request(ctx, alice, webReq()))(t)
			a = must(f.svc.Approve(ctx, bob, a.ID, ""))(t)
			old := a.ExpiresAt
			a = must(f.svc.Extend(ctx, alice, a.ID, 30*time.Minute, "still debugging"))(t)
			if !a.ExpiresAt.Equal(old) || a.PendingExtension() == nil {
				t.Errorf("pending extension moved expiry to %v; want %v and a pending extension", a.ExpiresAt, old)
			}
			a = must(f.svc.Approve(ctx, bob, a.ID, ""))(t)
			if !a.ExpiresAt.Equal(old.Add(30*time.Minute)) || a.PendingExtension() != nil {
				t.Errorf("expiry %v; want %v, nothing pending", a.ExpiresAt, old.Add(30*time.Minute))
			}
			return a
		}, amendment.Active, []string{"amendment.requested by alice@example.com", "amendment.approved by bob@example.com", "amendment.activated by jitproxy", "amendment.extension_requested by alice@example.com", "amendment.extended by bob@example.com"}},
		{"extension by policy", func(t *testing.T, f *fixture) *amendment.Amendment {
			a := must(f.svc.Request(ctx, alice, amendment.Request{Target: "app-db", Role: "app_ro", Duration: time.Hour}))(t)
			a = must(f.svc.Extend(ctx, alice, a.ID, 2*time.Hour, ""))(t)
			if !a.ExpiresAt.Equal(a.ActivatedAt.Add(3 * time.Hour)) {
				t.Errorf("expiry %v; want activation + 3h", a.ExpiresAt)
			}
			return a
		}, amendment.Active, []string{"amendment.requested by alice@example.com", "amendment.approved by policy:eng-db", "amendment.activated by jitproxy", "amendment.extended by alice@example.com"}},
		{"extension denied keeps access", func(t *testing.T, f *fixture) *amendment.Amendment {
			a := must(f.svc.Request(ctx, alice, webReq()))(t)
			a = must(f.svc.Approve(ctx, bob, a.ID, ""))(t)
			must(f.svc.Extend(ctx, alice, a.ID, time.Hour, "more"))(t)
			a = must(f.svc.Deny(ctx, bob, a.ID, "finish tomorrow"))(t)
			if a.PendingExtension() != nil {
				t.Error("extension still pending after deny")
			}
			return a
		}, amendment.Active, []string{"amendment.requested by alice@example.com", "amendment.approved by bob@example.com", "amendment.activated by jitproxy", "amendment.extension_requested by alice@example.com", "amendment.extension_denied by bob@example.com"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			a := tt.run(t, f)
			if a.State != tt.wantState {
				t.Errorf("state: got %s; want %s", a.State, tt.wantState)
			}
			got := f.auditTypes(t, a.ID)
			if strings.Join(got, "\n") != strings.Join(tt.wantAudit, "\n") {
				t.Errorf("audit rows:\ngot  %q\nwant %q", got, tt.wantAudit)
			}
			if a.Version != int64(len(got)) {
				t.Errorf("version %d; want one per audit row (%d)", a.Version, len(got))
			}
			f.verify(t)
		})
	}
}

// TestIllegalTransitions checks every refusal and the sentence a person sees.
func TestIllegalTransitions(t *testing.T) {
	ctx := context.Background()
	type setup func(t *testing.T, f *fixture) *amendment.Amendment
	requested := func(t *testing.T, f *fixture) *amendment.Amendment {
		return must(f.svc.Request(ctx, alice, webReq()))(t)
	}
	active := func(t *testing.T, f *fixture) *amendment.Amendment {
		return must(f.svc.Approve(ctx, bob, requested(t, f).ID, ""))(t)
	}
	final := func(s amendment.State) setup {
		return func(t *testing.T, f *fixture) *amendment.Amendment {
			switch s {
			case amendment.Denied:
				return must(f.svc.Deny(ctx, bob, requested(t, f).ID, "no"))(t)
			case amendment.Withdrawn:
				return must(f.svc.Withdraw(ctx, alice, requested(t, f).ID, ""))(t)
			case amendment.Revoked:
				return must(f.svc.Revoke(ctx, bob, active(t, f).ID, "incident"))(t)
			default:
				a := active(t, f)
				f.clock.Add(2 * time.Hour)
				return a
			}
		}
	}
	tests := []struct {
		name     string
		setup    setup
		act      func(f *fixture, id string) error
		wantCode amendment.Code
		wantMsg  string // %s is the short id
	}{
		{"approve own", requested, func(f *fixture, id string) error { _, err := f.svc.Approve(ctx, alice, id, ""); return err },
			amendment.CodeForbidden, "you cannot approve your own amendment %s: ask someone in sre-leads"},
		{"approve, not an approver", requested, func(f *fixture, id string) error { _, err := f.svc.Approve(ctx, eve, id, ""); return err },
			amendment.CodeForbidden, `you may not approve amendment %s: rule "eng-web" needs an approver from sre-leads`},
		{"auditor approves", requested, func(f *fixture, id string) error { _, err := f.svc.Approve(ctx, carol, id, ""); return err },
			amendment.CodeForbidden, `you may not approve amendment %s: rule "eng-web" needs an approver from sre-leads`},
		{"approver approves twice", func(t *testing.T, f *fixture) *amendment.Amendment {
			a := must(f.svc.Request(ctx, alice, prodReq()))(t)
			return must(f.svc.Approve(ctx, bob, a.ID, ""))(t)
		}, func(f *fixture, id string) error { _, err := f.svc.Approve(ctx, bob, id, ""); return err },
			amendment.CodeInvalidState, "you already approved amendment %s; it needs 2 approval(s) in all"},
		{"approve active", active, func(f *fixture, id string) error { _, err := f.svc.Approve(ctx, dave, id, ""); return err },
			amendment.CodeInvalidState, "cannot approve amendment %s: it is active already"},
		{"deny active", active, func(f *fixture, id string) error { _, err := f.svc.Deny(ctx, dave, id, "no"); return err },
			amendment.CodeInvalidState, "cannot deny amendment %s: it is active already"},
		{"deny own", requested, func(f *fixture, id string) error { _, err := f.svc.Deny(ctx, alice, id, "no"); return err },
			amendment.CodeForbidden, "you cannot deny your own amendment %s: ask someone in sre-leads"},
		{"deny without reason", requested, func(f *fixture, id string) error { _, err := f.svc.Deny(ctx, bob, id, " "); return err },
			amendment.CodeBadRequest, "say why you deny with --reason"},
		{"withdraw someone else's", requested, func(f *fixture, id string) error { _, err := f.svc.Withdraw(ctx, bob, id, ""); return err },
			amendment.CodeForbidden, "only alice@example.com, who requested amendment %s, may withdraw it"},
		{"withdraw active", active, func(f *fixture, id string) error { _, err := f.svc.Withdraw(ctx, alice, id, ""); return err },
			amendment.CodeInvalidState, "amendment %s is active: give the access back with jitproxy revoke %[1]s --reason ..."},
		{"revoke requested", requested, func(f *fixture, id string) error { _, err := f.svc.Revoke(ctx, alice, id, "x"); return err },
			amendment.CodeInvalidState, "cannot revoke amendment %s: it is requested"},
		{"revoke by a peer", active, func(f *fixture, id string) error { _, err := f.svc.Revoke(ctx, eve, id, "x"); return err },
			amendment.CodeForbidden, "you may not revoke amendment %s: only its requester, its approvers and admins may"},
		{"auditor revokes", active, func(f *fixture, id string) error { _, err := f.svc.Revoke(ctx, carol, id, "x"); return err },
			amendment.CodeForbidden, "you may not revoke amendment %s: only its requester, its approvers and admins may"},
		{"extend requested", requested, func(f *fixture, id string) error {
			_, err := f.svc.Extend(ctx, alice, id, time.Hour, "x")
			return err
		}, amendment.CodeInvalidState, "cannot extend amendment %s: it is requested, and only active amendments can be extended"},
		{"extend someone else's", active, func(f *fixture, id string) error {
			_, err := f.svc.Extend(ctx, bob, id, time.Hour, "x")
			return err
		}, amendment.CodeForbidden, "only alice@example.com, who holds amendment %s, may extend it"},
		{"extend past the maximum", active, func(f *fixture, id string) error {
			_, err := f.svc.Extend(ctx, alice, id, 3*time.Hour+time.Minute, "x")
			return err
		}, amendment.CodePolicyViolation, `rule "eng-web": extending by 3h1m would make the amendment last 4h1m, over the maximum 4h (at most 3h more)`},
		{"extend without reason", active, func(f *fixture, id string) error {
			_, err := f.svc.Extend(ctx, alice, id, time.Hour, "")
			return err
		}, amendment.CodePolicyViolation, `rule "eng-web": a reason is required: say why with --reason`},
		{"extend twice while pending", func(t *testing.T, f *fixture) *amendment.Amendment {
			a := active(t, f)
			return must(f.svc.Extend(ctx, alice, a.ID, time.Hour, "x"))(t)
		}, func(f *fixture, id string) error { _, err := f.svc.Extend(ctx, alice, id, time.Hour, "y"); return err },
			amendment.CodeInvalidState, "amendment %s already has an extension waiting for approval"},
		{"approve denied", final(amendment.Denied), func(f *fixture, id string) error { _, err := f.svc.Approve(ctx, bob, id, ""); return err },
			amendment.CodeInvalidState, "cannot approve amendment %s: it is denied, which is final; request a new amendment instead"},
		{"approve withdrawn", final(amendment.Withdrawn), func(f *fixture, id string) error { _, err := f.svc.Approve(ctx, bob, id, ""); return err },
			amendment.CodeInvalidState, "cannot approve amendment %s: it is withdrawn, which is final; request a new amendment instead"},
		{"revoke revoked", final(amendment.Revoked), func(f *fixture, id string) error { _, err := f.svc.Revoke(ctx, bob, id, "x"); return err },
			amendment.CodeInvalidState, "cannot revoke amendment %s: it is revoked, which is final; request a new amendment instead"},
		{"revoke expired (expiry settled first)", final(amendment.Expired), func(f *fixture, id string) error {
			_, err := f.svc.Revoke(ctx, bob, id, "x")
			return err
		}, amendment.CodeInvalidState, "cannot revoke amendment %s: it is expired, which is final; request a new amendment instead"},
		{"approve after the request expired", func(t *testing.T, f *fixture) *amendment.Amendment {
			a := requested(t, f)
			f.clock.Add(25 * time.Hour)
			return a
		}, func(f *fixture, id string) error { _, err := f.svc.Approve(ctx, bob, id, ""); return err },
			amendment.CodeInvalidState, "cannot approve amendment %s: it is withdrawn, which is final; request a new amendment instead"},
		{"read someone else's", requested, func(f *fixture, id string) error { _, err := f.svc.Get(ctx, eve, id); return err },
			amendment.CodeNotFound, "no amendment %s that you may see"},
		{"unknown id", requested, func(f *fixture, id string) error { _, err := f.svc.Approve(ctx, bob, "nope", ""); return err },
			amendment.CodeNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			a := tt.setup(t, f)
			before := f.verify(t)
			stored := must(f.store.Get(ctx, a.ID))(t)
			err := tt.act(f, a.ID)
			if amendment.CodeOf(err) != tt.wantCode {
				t.Fatalf("got %v (code %q); want code %q", err, amendment.CodeOf(err), tt.wantCode)
			}
			if tt.wantMsg != "" {
				id := a.ID
				if !strings.Contains(tt.name, "read") {
					id = a.ShortID()
				}
				want := tt.wantMsg
				if strings.Contains(want, "%") {
					want = fmt.Sprintf(want, id)
				}
				if err.Error() != want {
					t.Errorf("message:\ngot  %q\nwant %q", err.Error(), want)
				}
			}
			// A refusal changes nothing but what time had made due.
			after := must(f.store.Get(ctx, a.ID))(t)
			if after.State == stored.State && after.Version != stored.Version {
				t.Errorf("refused action changed the amendment: version %d → %d", stored.Version, after.Version)
			}
			if sum := f.verify(t); sum.Events-before.Events > 1 {
				t.Errorf("refused action wrote %d audit rows", sum.Events-before.Events)
			}
		})
	}
}

// TestConcurrentActions races approvers, revokers and extenders on the same
// amendments: every final state is legal, no update is lost, the chain holds.
func TestConcurrentActions(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	c := contract()
	c.Rules[0].Approvals = 3
	c.Rules[0].ApproverGroups = []string{"sre-leads"}
	c.Rules[0].ExtensionApprovals = 0
	c.Rules[0].MaxDuration = 100 * time.Hour
	svc, err := amendment.New(amendment.Config{Store: f.store, Contract: c, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	approvers := make([]amendment.Identity, 6)
	for i := range approvers {
		approvers[i] = amendment.Identity{Email: fmt.Sprintf("lead%d@example.com", i), Groups: []string{"sre-leads"}}
	}
	const n = 8
	var ids []string
	for range n {
		ids = append(ids, must(svc.Request(ctx, alice, webReq()))(t).ID)
	}
	var wg sync.WaitGroup
	for i, id := range ids {
		for _, ap := range approvers {
			wg.Go(func() {
				if _, err := svc.Approve(ctx, ap, id, ""); err != nil && amendment.CodeOf(err) != amendment.CodeInvalidState {
					t.Errorf("approve: %v", err)
				}
			})
		}
		for range 4 {
			wg.Go(func() {
				if _, err := svc.Extend(ctx, alice, id, time.Minute, "more"); err != nil && amendment.CodeOf(err) != amendment.CodeInvalidState {
					t.Errorf("extend: %v", err)
				}
			})
		}
		if i%2 == 0 {
			wg.Go(func() {
				if _, err := svc.Revoke(ctx, root, id, "race"); err != nil && amendment.CodeOf(err) != amendment.CodeInvalidState {
					t.Errorf("revoke: %v", err)
				}
			})
		}
	}
	wg.Wait()
	f.verify(t)
	for i, id := range ids {
		a := must(f.store.Get(ctx, id))(t)
		rows := f.auditTypes(t, id)
		if a.Version != int64(len(rows)) {
			t.Errorf("%s: version %d but %d audit rows: an update was lost", id, a.Version, len(rows))
		}
		var approvals, extended int
		for _, r := range rows {
			switch {
			case strings.HasPrefix(r, amendment.EventApprovalAdded), strings.HasPrefix(r, amendment.EventApproved+" "):
				approvals++
			case strings.HasPrefix(r, amendment.EventExtended):
				extended++
			}
		}
		if approvals != len(a.Approvals) {
			t.Errorf("%s: %d approvals stored, %d approval rows", id, len(a.Approvals), approvals)
		}
		if a.State == amendment.Active || (a.State == amendment.Revoked && !a.ActivatedAt.IsZero()) {
			want := a.ActivatedAt.Add(time.Hour + time.Duration(extended)*time.Minute)
			if !a.ExpiresAt.Equal(want) {
				t.Errorf("%s: expiry %v; want %v after %d extensions", id, a.ExpiresAt, want, extended)
			}
		}
		switch {
		case a.State == amendment.Active && len(a.Approvals) != 3:
			t.Errorf("%s: active with %d approvals; want exactly 3 (no double count)", id, len(a.Approvals))
		case a.State == amendment.Revoked && (i%2 == 1 || a.EndedBy != root.Key()):
			t.Errorf("%s: revoked by %q; only even amendments are revoked, by root", id, a.EndedBy)
		case a.State != amendment.Active && a.State != amendment.Revoked:
			// A revoke that lands while the request is pending is refused,
			// so the approvals then activate it: active or revoked, nothing else.
			t.Errorf("%s: %s; want active or revoked", id, a.State)
		}
	}
}

// TestRestartExpires stops the store, lets time pass, and starts again: the
// first Tick (which the server runs before any listener opens) expires what
// expired in between, with an audit row.
func TestRestartExpires(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	a := must(f.svc.Request(ctx, alice, webReq()))(t)
	a = must(f.svc.Approve(ctx, bob, a.ID, ""))(t)
	if err := f.store.Close(); err != nil {
		t.Fatal(err)
	}
	f.clock.Add(90 * time.Minute)
	f.open(t)
	if got := must(f.store.Get(ctx, a.ID))(t); got.State != amendment.Active || got.ActiveAt(f.clock.Now()) {
		t.Fatalf("before tick: state %s, grants access %v; want a stale active that grants nothing", got.State, got.ActiveAt(f.clock.Now()))
	}
	if _, err := f.svc.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	got := must(f.store.Get(ctx, a.ID))(t)
	if got.State != amendment.Expired || !got.EndedAt.Equal(a.ExpiresAt) {
		t.Errorf("after restart: %s ended %v; want expired at %v", got.State, got.EndedAt, a.ExpiresAt)
	}
	rows := f.auditTypes(t, a.ID)
	if rows[len(rows)-1] != "amendment.expired by jitproxy" {
		t.Errorf("last audit row %q; want the expiry", rows[len(rows)-1])
	}
	f.verify(t)
}

// TestRunSettlesDeadlines runs the scheduler on the real clock with a short
// amendment and waits for the expiry to be written.
func TestRunSettlesDeadlines(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := newFixture(t)
	svc, err := amendment.New(amendment.Config{Store: f.store, Contract: contract()})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	a := must(svc.Request(ctx, alice, amendment.Request{Target: "app-db", Role: "app_ro", Duration: 300 * time.Millisecond}))(t)
	events := svc.Subscribe(ctx)
	deadline := time.After(10 * time.Second)
	for {
		select {
		case c := <-events:
			if c.After.ID == a.ID && c.Event == amendment.EventExpired {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Run: %v", err)
				}
				return
			}
		case <-deadline:
			t.Fatal("amendment not expired by Run within 10s")
		}
	}
}

func TestErrorsIs(t *testing.T) {
	err := fmt.Errorf("wrapped: %w", amendment.Errorf(amendment.CodeConflict, "x"))
	if !errors.Is(err, amendment.ErrConflict) || errors.Is(err, amendment.ErrNotFound) {
		t.Error("errors.Is does not match on the code")
	}
}

func must[T any](v T, err error) func(t *testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func TestShortIDs(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	a := must(f.svc.Request(ctx, alice, webReq()))(t)
	got := must(f.svc.Approve(ctx, bob, a.ShortID(), ""))(t)
	if got.ID != a.ID || got.State != amendment.Active {
		t.Errorf("approve by short id: got %s %s; want %s active", got.ID, got.State, a.ID)
	}
	if got := must(f.svc.Get(ctx, alice, a.ID[:5]))(t); got.ID != a.ID {
		t.Errorf("get by prefix: got %s; want %s", got.ID, a.ID)
	}
	if _, err := f.svc.Get(ctx, alice, a.ID[:3]); amendment.CodeOf(err) != amendment.CodeNotFound {
		t.Errorf("3-character prefix: got %v; want not_found (too short to look up)", err)
	}
	if _, err := f.svc.Get(ctx, alice, "ffff_"); amendment.CodeOf(err) != amendment.CodeNotFound {
		t.Errorf("unknown prefix: got %v; want not_found", err)
	}
}

func TestActiveFor(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	ubuntu := func(r amendment.Resource) bool { return r.Login == "ubuntu" }
	if _, err := f.svc.ActiveFor(ctx, alice.Key(), "web-1", ubuntu, "no active amendment for ubuntu@web-1"); err == nil || err.Error() != "no active amendment for ubuntu@web-1" || amendment.CodeOf(err) != amendment.CodeNotFound {
		t.Fatalf("before any request: got %v; want the hint as a not_found error", err)
	}
	short := must(f.svc.Request(ctx, alice, webReq()))(t)
	must(f.svc.Approve(ctx, bob, short.ID, ""))(t)
	r := webReq()
	r.Duration = 3 * time.Hour
	long := must(f.svc.Request(ctx, alice, r))(t)
	long = must(f.svc.Approve(ctx, bob, long.ID, ""))(t)
	got := must(f.svc.ActiveFor(ctx, alice.Key(), "web-1", ubuntu, "x"))(t)
	if got.ID != long.ID {
		t.Errorf("ActiveFor: got %s; want the longest-lasting %s", got.ID, long.ID)
	}
	if _, err := f.svc.ActiveFor(ctx, eve.Key(), "web-1", ubuntu, "x"); err == nil {
		t.Error("another person got alice's amendment")
	}
	if _, err := f.svc.ActiveFor(ctx, alice.Key(), "web-1", func(r amendment.Resource) bool { return r.Login == "root" }, "x"); err == nil {
		t.Error("a login the amendment does not grant matched")
	}
	if exp := must(f.svc.LatestExpiry(ctx, alice.Key(), amendment.KindSSH))(t); !exp.Equal(long.ExpiresAt) {
		t.Errorf("LatestExpiry: got %v; want %v", exp, long.ExpiresAt)
	}
	// Past the stored expiry, before anything wrote "expired": nothing.
	f.clock.Add(3*time.Hour + time.Second)
	if _, err := f.svc.ActiveFor(ctx, alice.Key(), "web-1", ubuntu, "x"); err == nil {
		t.Error("an amendment past its expiry still grants access")
	}
	if exp := must(f.svc.LatestExpiry(ctx, alice.Key(), amendment.KindSSH))(t); !exp.IsZero() {
		t.Errorf("LatestExpiry after expiry: got %v; want zero", exp)
	}
}
