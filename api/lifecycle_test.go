package api_test

import (
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jitproxy/jitproxy/amendment"
	"github.com/jitproxy/jitproxy/api"
)

// step is one request of a scenario. "{id}" in path is the amendment the
// scenario's first step created.
type step struct {
	name   string
	user   string
	method string
	path   string
	body   any
	// advance moves the clock before the request.
	advance time.Duration

	want      int             // HTTP status
	wantState amendment.State // for answers that are an amendment
	wantCode  api.Code        // for error answers
	wantMsg   string          // substring of the error message
	check     func(t *testing.T, e *env, body []byte)
}

const amendments = "/api/v1/amendments"

func TestLifecycle(t *testing.T) {
	webReq := api.RequestBody{Target: "web-1", Login: "ubuntu", Duration: "2h", Reason: "deploy the hotfix", Ticket: "OPS-1"}
	scenarios := []struct {
		name  string
		steps []step
	}{
		{name: "request, approve, extend, revoke", steps: []step{
			{name: "request", user: "alice", method: "POST", path: amendments, body: webReq, want: 201, wantState: amendment.Requested,
				check: func(t *testing.T, e *env, body []byte) {
					a := decode[api.Amendment](t, response{header: http.Header{"Content-Type": {"application/json"}}, body: body})
					want := api.Amendment{Target: "web-1", Kind: amendment.KindSSH, Login: "ubuntu", Duration: "2h", Requester: "alice@example.com",
						Rule: "eng-web", Reason: "deploy the hotfix", Ticket: "OPS-1", RequiredApprovals: 1, Version: 1}
					got := api.Amendment{Target: a.Target, Kind: a.Kind, Login: a.Login, Duration: a.Duration, Requester: a.Requester,
						Rule: a.Rule, Reason: a.Reason, Ticket: a.Ticket, RequiredApprovals: a.RequiredApprovals, Version: a.Version}
					if !reflect.DeepEqual(got, want) {
						t.Errorf("got %+v; want %+v", got, want)
					}
					if a.ShortID != a.ID[:8] || !a.CreatedAt.Equal(e.clock.Now()) || !a.RequestExpiresAt.Equal(e.clock.Now().Add(time.Hour)) {
						t.Errorf("short_id %q, created_at %v, request_expires_at %v; want %q, %v, %v", a.ShortID, a.CreatedAt, a.RequestExpiresAt, a.ID[:8], e.clock.Now(), e.clock.Now().Add(time.Hour))
					}
					for _, absent := range []string{`"activated_at"`, `"expires_at"`, `"ended_at"`, `"start_at"`, `"role"`, `"time_left"`} {
						if strings.Contains(string(body), absent) {
							t.Errorf("body has %s; want it omitted: %s", absent, body)
						}
					}
				}},
			{name: "listed for the requester", user: "alice", method: "GET", path: amendments + "?state=requested&requester=me", want: 200,
				check: wantListed(true)},
			{name: "listed for an approver by target", user: "bob", method: "GET", path: amendments + "?target=web-1&state=requested,approved", want: 200,
				check: wantListed(true)},
			{name: "not listed under other states", user: "alice", method: "GET", path: amendments + "?state=active&state=denied", want: 200,
				check: wantListed(false)},
			{name: "not listed for someone who may not see it", user: "erin", method: "GET", path: amendments, want: 200,
				check: wantListed(false)},
			{name: "get as the approver", user: "bob", method: "GET", path: amendments + "/{id}", want: 200, wantState: amendment.Requested},
			{name: "get as a stranger", user: "erin", method: "GET", path: amendments + "/{id}", want: 404, wantCode: api.CodeNotFound, wantMsg: "that you may see"},
			{name: "the requester cannot approve", user: "alice", method: "POST", path: amendments + "/{id}/approve", body: api.ApproveBody{},
				want: 403, wantCode: api.CodeForbidden, wantMsg: "you cannot approve your own amendment"},
			{name: "a non-approver cannot approve", user: "erin", method: "POST", path: amendments + "/{id}/approve", body: api.ApproveBody{},
				want: 403, wantCode: api.CodeForbidden, wantMsg: "needs an approver from leads"},
			{name: "approve activates", user: "bob", method: "POST", path: amendments + "/{id}/approve", body: api.ApproveBody{Comment: "go ahead"},
				advance: time.Minute, want: 200, wantState: amendment.Active,
				check: func(t *testing.T, e *env, body []byte) {
					a := decodeAmendment(t, body)
					if len(a.Approvals) != 1 || a.Approvals[0].By != "bob@example.com" || a.Approvals[0].Comment != "go ahead" {
						t.Errorf("approvals %+v; want bob's with his comment", a.Approvals)
					}
					if want := e.clock.Now().Add(2 * time.Hour); !a.ExpiresAt.Equal(want) || !a.ActivatedAt.Equal(e.clock.Now()) {
						t.Errorf("window %v–%v; want %v–%v", a.ActivatedAt, a.ExpiresAt, e.clock.Now(), want)
					}
				}},
			{name: "approving again", user: "bob", method: "POST", path: amendments + "/{id}/approve", body: api.ApproveBody{},
				want: 409, wantCode: api.CodeInvalidState, wantMsg: "it is active already"},
			{name: "whoami shows it with time left", user: "alice", method: "GET", path: "/api/v1/whoami", advance: 30 * time.Minute, want: 200,
				check: func(t *testing.T, e *env, body []byte) {
					w := decodeAs[api.Whoami](t, body)
					if w.Identity.Email != "alice@example.com" || w.Identity.Name != "Alice" || !slices.Equal(w.Identity.Groups, []string{"eng"}) {
						t.Errorf("identity %+v; want alice's", w.Identity)
					}
					if len(w.Amendments) != 1 || w.Amendments[0].TimeLeft != "1h30m" {
						t.Errorf("amendments %+v; want one with time_left 1h30m", w.Amendments)
					}
				}},
			{name: "only the holder extends", user: "bob", method: "POST", path: amendments + "/{id}/extend", body: api.ExtendBody{Duration: "1h", Reason: "more"},
				want: 403, wantCode: api.CodeForbidden, wantMsg: "may extend it"},
			{name: "extend", user: "alice", method: "POST", path: amendments + "/{id}/extend", body: api.ExtendBody{Duration: "1h", Reason: "the migration is slow"},
				want: 200, wantState: amendment.Active,
				check: func(t *testing.T, e *env, body []byte) {
					a := decodeAmendment(t, body)
					if want := a.ActivatedAt.Add(3 * time.Hour); !a.ExpiresAt.Equal(want) {
						t.Errorf("expires_at %v; want %v", a.ExpiresAt, want)
					}
					if len(a.Extensions) != 1 || a.Extensions[0].Duration != "1h" || a.Extensions[0].Pending || a.Extensions[0].AppliedAt.IsZero() {
						t.Errorf("extensions %+v; want one applied 1h extension", a.Extensions)
					}
				}},
			{name: "extend past the rule's maximum", user: "alice", method: "POST", path: amendments + "/{id}/extend", body: api.ExtendBody{Duration: "2h", Reason: "more"},
				want: 422, wantCode: api.CodePolicyViolation, wantMsg: "over the maximum 4h (at most 1h more)"},
			{name: "revoke without a reason", user: "bob", method: "POST", path: amendments + "/{id}/revoke", body: api.ReasonBody{},
				want: 400, wantCode: api.CodeBadRequest, wantMsg: "say why you revoke"},
			{name: "revoke", user: "bob", method: "POST", path: amendments + "/{id}/revoke", body: api.ReasonBody{Reason: "done here"},
				want: 200, wantState: amendment.Revoked,
				check: func(t *testing.T, e *env, body []byte) {
					a := decodeAmendment(t, body)
					if a.EndedBy != "bob@example.com" || a.EndReason != "done here" || !a.EndedAt.Equal(e.clock.Now()) {
						t.Errorf("ended %v by %q for %q; want now by bob for %q", a.EndedAt, a.EndedBy, a.EndReason, "done here")
					}
				}},
			{name: "approving a final one", user: "carol", method: "POST", path: amendments + "/{id}/approve", body: api.ApproveBody{},
				want: 409, wantCode: api.CodeInvalidState, wantMsg: "which is final"},
			{name: "whoami after", user: "alice", method: "GET", path: "/api/v1/whoami", want: 200,
				check: func(t *testing.T, e *env, body []byte) {
					if w := decodeAs[api.Whoami](t, body); len(w.Amendments) != 0 {
						t.Errorf("amendments %+v; want none", w.Amendments)
					}
				}},
		}},
		{name: "withdraw", steps: []step{
			{name: "request", user: "alice", method: "POST", path: amendments, body: webReq, want: 201, wantState: amendment.Requested},
			{name: "someone else withdraws", user: "bob", method: "POST", path: amendments + "/{id}/withdraw", body: api.ReasonBody{},
				want: 403, wantCode: api.CodeForbidden, wantMsg: "may withdraw it"},
			{name: "withdraw", user: "alice", method: "POST", path: amendments + "/{id}/withdraw", body: api.ReasonBody{Reason: "not needed"},
				want: 200, wantState: amendment.Withdrawn},
			{name: "withdraw again", user: "alice", method: "POST", path: amendments + "/{id}/withdraw", body: api.ReasonBody{},
				want: 409, wantCode: api.CodeInvalidState, wantMsg: "which is final"},
		}},
		{name: "deny", steps: []step{
			{name: "request", user: "alice", method: "POST", path: amendments, body: webReq, want: 201, wantState: amendment.Requested},
			{name: "deny without a reason", user: "carol", method: "POST", path: amendments + "/{id}/deny", body: api.ReasonBody{Reason: "  "},
				want: 400, wantCode: api.CodeBadRequest, wantMsg: "say why you deny"},
			{name: "the requester cannot deny", user: "alice", method: "POST", path: amendments + "/{id}/deny", body: api.ReasonBody{Reason: "x"},
				want: 403, wantCode: api.CodeForbidden, wantMsg: "your own amendment"},
			{name: "deny", user: "carol", method: "POST", path: amendments + "/{id}/deny", body: api.ReasonBody{Reason: "use the runbook"},
				want: 200, wantState: amendment.Denied},
			{name: "revoke a denied one", user: "root", method: "POST", path: amendments + "/{id}/revoke", body: api.ReasonBody{Reason: "x"},
				want: 409, wantCode: api.CodeInvalidState, wantMsg: "which is final"},
		}},
		{name: "two approvals", steps: []step{
			{name: "request", user: "alice", method: "POST", path: amendments, body: api.RequestBody{Target: "prod-1", Login: "root", Duration: "30m"},
				want: 201, wantState: amendment.Requested},
			{name: "first approval", user: "bob", method: "POST", path: amendments + "/{id}/approve", body: api.ApproveBody{},
				want: 200, wantState: amendment.Requested},
			{name: "the same approver again", user: "bob", method: "POST", path: amendments + "/{id}/approve", body: api.ApproveBody{},
				want: 409, wantCode: api.CodeInvalidState, wantMsg: "you already approved"},
			{name: "second approval", user: "carol", method: "POST", path: amendments + "/{id}/approve", body: api.ApproveBody{},
				want: 200, wantState: amendment.Active},
			{name: "the requester gives it back", user: "alice", method: "POST", path: amendments + "/{id}/revoke", body: api.ReasonBody{Reason: "finished early"},
				want: 200, wantState: amendment.Revoked},
		}},
		{name: "policy approves", steps: []step{
			{name: "request", user: "alice", method: "POST", path: amendments, body: api.RequestBody{Target: "app-db", Role: "app_ro", Duration: "1h", ReadOnly: true},
				want: 201, wantState: amendment.Active,
				check: func(t *testing.T, e *env, body []byte) {
					a := decodeAmendment(t, body)
					if a.Database != "app" || !a.ReadOnly || a.Role != "app_ro" || len(a.Approvals) != 1 || a.Approvals[0].By != "policy:eng-db" {
						t.Errorf("got %+v; want app_ro@app-db/app, read-only, approved by policy", a)
					}
				}},
		}},
		{name: "scheduled start", steps: []step{
			{name: "request", user: "alice", method: "POST", path: amendments, body: api.RequestBody{Target: "web-1", Login: "ubuntu", Duration: "1h", Reason: "window", Start: "+30m"},
				want: 201, wantState: amendment.Requested,
				check: func(t *testing.T, e *env, body []byte) {
					if a := decodeAmendment(t, body); !a.StartAt.Equal(e.clock.Now().Add(30 * time.Minute)) {
						t.Errorf("start_at %v; want %v", a.StartAt, e.clock.Now().Add(30*time.Minute))
					}
				}},
			{name: "approved, waiting for its start", user: "bob", method: "POST", path: amendments + "/{id}/approve", body: api.ApproveBody{},
				want: 200, wantState: amendment.Approved},
			{name: "whoami counts the whole duration", user: "alice", method: "GET", path: "/api/v1/whoami", want: 200,
				check: func(t *testing.T, e *env, body []byte) {
					w := decodeAs[api.Whoami](t, body)
					if len(w.Amendments) != 1 || w.Amendments[0].TimeLeft != "1h" {
						t.Errorf("amendments %+v; want one with time_left 1h", w.Amendments)
					}
				}},
		}},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			var id string
			for _, st := range sc.steps {
				e.clock.Add(st.advance)
				path := strings.ReplaceAll(st.path, "{id}", id)
				r := e.do(t, st.user, st.method, path, st.body)
				if r.status != st.want {
					t.Fatalf("%s: status %d; want %d (%s)", st.name, r.status, st.want, r.body)
				}
				if id == "" && r.status == http.StatusCreated {
					id = decode[api.Amendment](t, r).ID
					if got, want := r.header.Get("Location"), amendments+"/"+id; got != want {
						t.Errorf("%s: Location %q; want %q", st.name, got, want)
					}
				}
				if st.wantState != "" {
					if got := decode[api.Amendment](t, r).State; got != st.wantState {
						t.Errorf("%s: state %s; want %s", st.name, got, st.wantState)
					}
				}
				if st.wantCode != "" {
					got := apiError(t, r)
					if got.Code != st.wantCode || !strings.Contains(got.Message, st.wantMsg) {
						t.Errorf("%s: got %s %q; want %s containing %q", st.name, got.Code, got.Message, st.wantCode, st.wantMsg)
					}
				}
				if st.check != nil {
					st.check(t, e, r.body)
				}
				if t.Failed() {
					t.Logf("after step %q", st.name)
				}
			}
			// Every transition the API made is on the audit trail, intact.
			r := e.do(t, "dave", "GET", "/api/v1/audit/verify", nil)
			if v := decode[api.VerifyResult](t, r); !v.OK {
				t.Errorf("audit verify: %+v; want ok", v)
			}
		})
	}
}

func decodeAs[T any](t *testing.T, body []byte) T {
	t.Helper()
	return decode[T](t, response{header: http.Header{"Content-Type": {"application/json"}}, body: body})
}

func decodeAmendment(t *testing.T, body []byte) api.Amendment {
	t.Helper()
	return decodeAs[api.Amendment](t, body)
}

// wantListed checks whether a list answer holds exactly the one amendment
// the scenario created (true) or none (false).
func wantListed(want bool) func(t *testing.T, e *env, body []byte) {
	return func(t *testing.T, e *env, body []byte) {
		t.Helper()
		l := decodeAs[api.AmendmentList](t, body)
		if l.Amendments == nil {
			t.Errorf("amendments is null; want a list: %s", body)
		}
		if got := len(l.Amendments) == 1; got != want {
			t.Errorf("listed %d amendments; want listed %v", len(l.Amendments), want)
		}
	}
}
