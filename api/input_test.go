package api_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/jitproxy/jitproxy/api"
)

// TestBadInput sends requests that must be refused with a 4xx, a stable
// code and a message that says what to fix; none may change the store, and
// the server must go on serving.
func TestBadInput(t *testing.T) {
	e := newEnv(t, nil)
	id := e.create(t, "alice", api.RequestBody{Target: "web-1", Login: "ubuntu", Duration: "1h", Reason: "r"}).ID
	huge := `{"target":"web-1","login":"ubuntu","duration":"1h","reason":"` + strings.Repeat("x", 70<<10) + `"}`
	web := func(extra string) string { return `{"target":"web-1","login":"ubuntu","reason":"r"` + extra + `}` }

	tests := []struct {
		name        string
		user        string // "" means alice
		method      string // "" means POST
		path        string // "" means /api/v1/amendments; {id} is the existing amendment
		contentType string // "" means application/json; "none" sends none
		body        string
		chunked     bool // send without Content-Length

		want     int
		wantCode api.Code
		wantMsg  string
	}{
		{name: "oversized body", body: huge, want: 413, wantCode: api.CodePayloadTooLarge, wantMsg: "limit of 64 KiB"},
		{name: "oversized body, chunked", body: huge, chunked: true, want: 413, wantCode: api.CodePayloadTooLarge, wantMsg: "limit of 64 KiB"},
		{name: "truncated JSON", body: `{"target": "web-1",`, want: 400, wantCode: api.CodeBadRequest, wantMsg: "malformed JSON"},
		{name: "missing colon", body: `{"target" "web-1"}`, want: 400, wantCode: api.CodeBadRequest, wantMsg: "malformed JSON at byte 10"},
		{name: "trailing garbage", body: web(`,"duration":"1h"`) + ` x`, want: 400, wantCode: api.CodeBadRequest, wantMsg: "unexpected data after the JSON object"},
		{name: "two objects", body: web(`,"duration":"1h"`) + web(`,"duration":"1h"`), want: 400, wantCode: api.CodeBadRequest, wantMsg: "send exactly one object"},
		{name: "unknown field", body: web(`,"duration":"1h","hours":2`), want: 400, wantCode: api.CodeBadRequest, wantMsg: `unknown field "hours": the fields are target, login, role`},
		{name: "field name in another case", body: `{"Target":"web-1"}`, want: 400, wantCode: api.CodeBadRequest, wantMsg: `unknown field "Target"`},
		{name: "duplicate field", body: web(`,"duration":"1h","target":"prod-1"`), want: 400, wantCode: api.CodeBadRequest, wantMsg: `field "target" appears twice`},
		{name: "string for a boolean", body: web(`,"duration":"1h","read_only":"yes"`), want: 400, wantCode: api.CodeBadRequest, wantMsg: `field "read_only" must be true or false, not a string`},
		{name: "number for a duration", body: web(`,"duration":2`), want: 400, wantCode: api.CodeBadRequest, wantMsg: `field "duration" must be a string, not a number`},
		{name: "object for a string", body: web(`,"duration":{"h":2}`), want: 400, wantCode: api.CodeBadRequest, wantMsg: `field "duration" must be a string, not an object`},
		{name: "array body", body: `[{"target":"web-1"}]`, want: 400, wantCode: api.CodeBadRequest, wantMsg: "must be a JSON object, not an array"},
		{name: "null body", body: `null`, want: 400, wantCode: api.CodeBadRequest, wantMsg: "must be a JSON object, not null"},
		{name: "empty body", body: ``, want: 400, wantCode: api.CodeBadRequest, wantMsg: "the request body is empty"},
		{name: "no content type", contentType: "none", body: web(`,"duration":"1h"`), want: 415, wantCode: api.CodeUnsupportedMediaType, wantMsg: "Content-Type: application/json"},
		{name: "plain text", contentType: "text/plain", body: web(`,"duration":"1h"`), want: 415, wantCode: api.CodeUnsupportedMediaType, wantMsg: "Content-Type: application/json"},
		{name: "a form", contentType: "application/x-www-form-urlencoded", body: "target=web-1", want: 415, wantCode: api.CodeUnsupportedMediaType, wantMsg: "application/json"},
		{name: "negative duration", body: web(`,"duration":"-5m"`), want: 400, wantCode: api.CodeBadRequest, wantMsg: `duration: bad duration "-5m": it must be positive`},
		{name: "years", body: web(`,"duration":"10y"`), want: 400, wantCode: api.CodeBadRequest, wantMsg: `bad duration "10y": write e.g. 30m, 2h or 1d`},
		{name: "not a duration", body: web(`,"duration":"abc"`), want: 400, wantCode: api.CodeBadRequest, wantMsg: `bad duration "abc"`},
		{name: "over a year", body: web(`,"duration":"400d"`), want: 400, wantCode: api.CodeBadRequest, wantMsg: "the longest allowed is 366d"},
		{name: "no duration", body: web(``), want: 422, wantCode: api.CodePolicyViolation, wantMsg: "say for how long"},
		{name: "over the rule's maximum", body: web(`,"duration":"5h"`), want: 422, wantCode: api.CodePolicyViolation, wantMsg: "exceeds the maximum 4h"},
		{name: "start in the past", body: web(`,"duration":"1h","start":"2020-01-01T00:00:00Z"`), want: 422, wantCode: api.CodePolicyViolation, wantMsg: "start time 2020-01-01T00:00:00Z is in the past"},
		{name: "start too far ahead", body: web(`,"duration":"1h","start":"+48h"`), want: 422, wantCode: api.CodePolicyViolation, wantMsg: "more than 1d ahead"},
		{name: "start not a time", body: web(`,"duration":"1h","start":"tomorrow"`), want: 400, wantCode: api.CodeBadRequest, wantMsg: "neither an RFC 3339 time"},
		{name: "relative start not a duration", body: web(`,"duration":"1h","start":"+abc"`), want: 400, wantCode: api.CodeBadRequest, wantMsg: `start: bad duration "abc"`},
		{name: "unknown target", body: `{"target":"nope","login":"ubuntu","duration":"1h"}`, want: 422, wantCode: api.CodePolicyViolation, wantMsg: `unknown target "nope"`},
		{name: "no target", body: `{}`, want: 400, wantCode: api.CodeBadRequest, wantMsg: "say which target"},
		{name: "login with a newline", body: `{"target":"web-1","login":"ubu\nntu","duration":"1h"}`, want: 400, wantCode: api.CodeBadRequest, wantMsg: "login is not a valid name"},
		{name: "reason too long", body: `{"target":"web-1","login":"ubuntu","duration":"1h","reason":"` + strings.Repeat("x", 1001) + `"}`, want: 400, wantCode: api.CodeBadRequest, wantMsg: "at most 1000 characters"},
		{name: "role on an SSH target", body: `{"target":"web-1","role":"app_ro","duration":"1h","reason":"r"}`, want: 422, wantCode: api.CodePolicyViolation, wantMsg: "is an SSH target"},
		{name: "not in the rule's groups", user: "erin", body: web(`,"duration":"1h"`), want: 422, wantCode: api.CodePolicyViolation, wantMsg: "no rule of the contract lets erin@example.com"},

		{name: "unknown state", method: "GET", path: "/api/v1/amendments?state=active&state=bogus", want: 400, wantCode: api.CodeBadRequest,
			wantMsg: `unknown state "bogus": use one of requested, approved, active, expired, revoked, denied, withdrawn`},
		{name: "unknown state in a list", method: "GET", path: "/api/v1/amendments?state=active,gone", want: 400, wantCode: api.CodeBadRequest, wantMsg: `unknown state "gone"`},
		{name: "unknown query parameter", method: "GET", path: "/api/v1/amendments?status=active", want: 400, wantCode: api.CodeBadRequest, wantMsg: `unknown query parameter "status": use state, requester, target, limit`},
		{name: "zero limit", method: "GET", path: "/api/v1/amendments?limit=0", want: 400, wantCode: api.CodeBadRequest, wantMsg: "from 1 to 1000"},
		{name: "limit not a number", method: "GET", path: "/api/v1/amendments?limit=ten", want: 400, wantCode: api.CodeBadRequest, wantMsg: `limit "ten"`},
		{name: "unknown amendment", method: "GET", path: "/api/v1/amendments/0000000000000000", want: 404, wantCode: api.CodeNotFound, wantMsg: "no amendment 0000000000000000"},

		{name: "approve an unknown amendment", path: "/api/v1/amendments/nope/approve", body: `{}`, want: 404, wantCode: api.CodeNotFound, wantMsg: "no amendment nope"},
		{name: "approve with a reason field", user: "bob", path: "/api/v1/amendments/{id}/approve", body: `{"reason":"ok"}`, want: 400, wantCode: api.CodeBadRequest, wantMsg: `unknown field "reason": the fields are comment`},
		{name: "approve with no body", user: "bob", path: "/api/v1/amendments/{id}/approve", contentType: "none", want: 415, wantCode: api.CodeUnsupportedMediaType, wantMsg: "application/json"},
		{name: "extend by a negative duration", path: "/api/v1/amendments/{id}/extend", body: `{"duration":"-5m"}`, want: 400, wantCode: api.CodeBadRequest, wantMsg: "it must be positive"},
		{name: "extend by nothing", path: "/api/v1/amendments/{id}/extend", body: `{}`, want: 400, wantCode: api.CodeBadRequest, wantMsg: "duration: empty duration"},
		{name: "extend a requested one", path: "/api/v1/amendments/{id}/extend", body: `{"duration":"1h"}`, want: 409, wantCode: api.CodeInvalidState, wantMsg: "only active amendments can be extended"},
		{name: "deny with a number", user: "bob", path: "/api/v1/amendments/{id}/deny", body: `{"reason":7}`, want: 400, wantCode: api.CodeBadRequest, wantMsg: `field "reason" must be a string, not a number`},

		{name: "audit after a negative seq", user: "dave", method: "GET", path: "/api/v1/audit?after=-1", want: 400, wantCode: api.CodeBadRequest, wantMsg: "0 or more"},
		{name: "audit with an unknown parameter", user: "dave", method: "GET", path: "/api/v1/audit?since=1", want: 400, wantCode: api.CodeBadRequest, wantMsg: `unknown query parameter "since"`},

		{name: "identity without email", user: "nomail", method: "GET", path: "/api/v1/amendments", want: 403, wantCode: api.CodeForbidden, wantMsg: "your identity has no email"},

		{name: "method not allowed", method: "PUT", path: "/api/v1/amendments", body: `{}`, want: 405, wantCode: api.CodeMethodNotAllowed, wantMsg: "PUT is not allowed on /api/v1/amendments: use GET, HEAD, POST"},
		{name: "no such endpoint", method: "GET", path: "/api/v1/amendmentz", want: 404, wantCode: api.CodeNotFound, wantMsg: "no such endpoint GET /api/v1/amendmentz"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			beforeA, beforeE := e.counts(t)
			method, path, user := tt.method, tt.path, tt.user
			if method == "" {
				method = "POST"
			}
			if path == "" {
				path = "/api/v1/amendments"
			}
			if user == "" {
				user = "alice"
			}
			var body io.Reader = strings.NewReader(tt.body)
			if tt.chunked {
				body = io.MultiReader(body) // hides the length: sent chunked
			}
			req, err := http.NewRequest(method, e.url+strings.ReplaceAll(path, "{id}", id), body)
			if err != nil {
				t.Fatal(err)
			}
			switch tt.contentType {
			case "":
				req.Header.Set("Content-Type", "application/json")
			case "none":
			default:
				req.Header.Set("Content-Type", tt.contentType)
			}
			r := e.send(t, user, req)
			if r.status != tt.want {
				t.Fatalf("status %d; want %d (%s)", r.status, tt.want, r.body)
			}
			got := apiError(t, r)
			if got.Code != tt.wantCode || !strings.Contains(got.Message, tt.wantMsg) {
				t.Errorf("got %s %q; want %s containing %q", got.Code, got.Message, tt.wantCode, tt.wantMsg)
			}
			if afterA, afterE := e.counts(t); afterA != beforeA || afterE != beforeE {
				t.Errorf("store went from %d amendments, %d audit rows to %d, %d; want unchanged", beforeA, beforeE, afterA, afterE)
			}
			if r := e.do(t, "alice", "GET", "/api/v1/amendments/"+id, nil); r.status != http.StatusOK {
				t.Errorf("next request: status %d; want 200 (%s)", r.status, r.body)
			}
		})
	}
}

// TestUnauthenticated: every API endpoint refuses a caller the
// Authenticator does not know, with its sentence, before looking at
// anything else; health endpoints need no identity.
func TestUnauthenticated(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		name   string
		method string
		path   string
		body   any
		want   int
	}{
		{name: "request", method: "POST", path: "/api/v1/amendments", body: `{"target":"web-1"}`, want: 401},
		{name: "request with garbage", method: "POST", path: "/api/v1/amendments", body: `{{{`, want: 401},
		{name: "list", method: "GET", path: "/api/v1/amendments", want: 401},
		{name: "get", method: "GET", path: "/api/v1/amendments/x", want: 401},
		{name: "approve", method: "POST", path: "/api/v1/amendments/x/approve", body: `{}`, want: 401},
		{name: "deny", method: "POST", path: "/api/v1/amendments/x/deny", body: `{}`, want: 401},
		{name: "revoke", method: "POST", path: "/api/v1/amendments/x/revoke", body: `{}`, want: 401},
		{name: "extend", method: "POST", path: "/api/v1/amendments/x/extend", body: `{}`, want: 401},
		{name: "withdraw", method: "POST", path: "/api/v1/amendments/x/withdraw", body: `{}`, want: 401},
		{name: "whoami", method: "GET", path: "/api/v1/whoami", want: 401},
		{name: "audit", method: "GET", path: "/api/v1/audit", want: 401},
		{name: "audit verify", method: "GET", path: "/api/v1/audit/verify", want: 401},
		{name: "healthz", method: "GET", path: "/healthz", want: 200},
		{name: "readyz", method: "GET", path: "/readyz", want: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(t, "", tt.method, tt.path, tt.body)
			if r.status != tt.want {
				t.Fatalf("status %d; want %d (%s)", r.status, tt.want, r.body)
			}
			if tt.want != 401 {
				return
			}
			got := apiError(t, r)
			if got.Code != api.CodeUnauthenticated || got.Message != "not logged in: run jitproxy login" {
				t.Errorf("got %s %q; want unauthenticated %q", got.Code, got.Message, "not logged in: run jitproxy login")
			}
			if got := r.header.Get("WWW-Authenticate"); got == "" {
				t.Error("no WWW-Authenticate header")
			}
		})
	}
	if a, ev := e.counts(t); a != 0 || ev != 0 {
		t.Errorf("store holds %d amendments, %d audit rows; want none", a, ev)
	}
}
