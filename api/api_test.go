package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/jitproxy/jitproxy/amendment"
	"github.com/jitproxy/jitproxy/api"
	"github.com/jitproxy/jitproxy/audit"
	"github.com/jitproxy/jitproxy/store"
)

// clock is a settable time source shared by the service and the API, so
// times in answers are exact.
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

// users are the people of the tests, by the X-Test-User name.
var users = map[string]amendment.Identity{
	"alice": {Email: "alice@example.com", Name: "Alice", Groups: []string{"eng"}},
	"bob":   {Email: "bob@example.com", Groups: []string{"leads"}},
	"carol": {Email: "carol@example.com", Groups: []string{"leads"}},
	"dave":  {Email: "dave@example.com", Groups: []string{"security"}},
	"erin":  {Email: "erin@example.com"},
	"root":  {Email: "root@example.com", Groups: []string{"admins"}},
	// nomail's identity provider does not release the email claim.
	"nomail": {Subject: "0042", Groups: []string{"eng", "security"}},
}

// headerAuth stands in for the auth package: it maps the X-Test-User header
// to an identity. That is not a mock of anything under test here: the API's
// whole contract with authentication is the Authenticator interface, OIDC
// token verification is the auth package's and is tested there, and
// everything behind the API (amendment service, SQLite store, audit chain)
// is the real thing.
type headerAuth struct{}

func (headerAuth) Authenticate(r *http.Request) (amendment.Identity, error) {
	name := r.Header.Get("X-Test-User")
	if name == "" {
		return amendment.Identity{}, errors.New("not logged in: run jitproxy login")
	}
	id, ok := users[name]
	if !ok {
		return amendment.Identity{}, errors.New("your session is not valid any more: run jitproxy login")
	}
	return id, nil
}

func testContract() *amendment.Contract {
	return &amendment.Contract{
		Targets: map[string]amendment.Target{
			"web-1":  {Name: "web-1", Kind: amendment.KindSSH, Logins: []string{"ubuntu", "deploy"}},
			"prod-1": {Name: "prod-1", Kind: amendment.KindSSH},
			"app-db": {Name: "app-db", Kind: amendment.KindPostgres, Roles: []string{"app_ro", "app_rw"}},
		},
		Rules: []amendment.Rule{
			{Name: "eng-web", Groups: []string{"eng"}, Targets: []string{"web-*"}, Logins: []string{"ubuntu"},
				MaxDuration: 4 * time.Hour, Approvals: 1, ApproverGroups: []string{"leads"},
				RequireReason: true, PendingTTL: time.Hour, MaxScheduleAhead: 24 * time.Hour},
			{Name: "eng-prod", Groups: []string{"eng"}, Targets: []string{"prod-*"}, Logins: []string{"root"},
				MaxDuration: 2 * time.Hour, Approvals: 2, ApproverGroups: []string{"leads"}, PendingTTL: time.Hour},
			{Name: "eng-db", Groups: []string{"eng"}, Targets: []string{"app-db"}, Roles: []string{"app_ro"}, Databases: []string{"app"},
				MaxDuration: 2 * time.Hour, ApproverGroups: []string{"leads"}, PendingTTL: time.Hour},
		},
		AdminGroups:   []string{"admins"},
		AuditorGroups: []string{"security"},
	}
}

// syncBuffer is a log sink the server's goroutines write while a test reads.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// lines returns the log lines, decoded.
func (s *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for l := range strings.Lines(s.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

type env struct {
	url    string
	client *http.Client
	store  *store.SQLite
	svc    *amendment.Service
	clock  *clock
	logs   *syncBuffer
	dbPath string
}

// newEnv starts the API on 127.0.0.1 with the real amendment service on a
// SQLite store in a temp dir. edit, if not nil, changes the Config first.
func newEnv(t *testing.T, edit func(*api.Config)) *env {
	t.Helper()
	e := &env{
		clock:  &clock{t: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)},
		logs:   &syncBuffer{},
		dbPath: filepath.Join(t.TempDir(), "jitproxy.db"),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := store.OpenSQLite(ctx, store.SQLiteConfig{Path: e.dbPath})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.store = st
	e.svc, err = amendment.New(amendment.Config{Store: st, Contract: testContract(), Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	cfg := api.Config{
		Amendments:    e.svc,
		Audit:         st,
		Ready:         st.Ready,
		Authenticator: headerAuth{},
		Logger:        zerolog.New(e.logs),
		Now:           e.clock.Now,
	}
	if edit != nil {
		edit(&cfg)
	}
	h, err := api.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h) // listens on 127.0.0.1:0
	t.Cleanup(srv.Close)
	e.url = srv.URL
	e.client = srv.Client()
	e.client.Timeout = 10 * time.Second
	return e
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// send makes one request as user ("" for nobody).
func (e *env) send(t *testing.T, user string, req *http.Request) response {
	t.Helper()
	if user != "" {
		req.Header.Set("X-Test-User", user)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", req.Method, req.URL.Path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// do sends body (nil for none, a string as is, anything else as JSON) with
// Content-Type: application/json.
func (e *env) do(t *testing.T, user, method, path string, body any) response {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.url+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return e.send(t, user, req)
}

// decode decodes a JSON response body into a T.
func decode[T any](t *testing.T, r response) T {
	t.Helper()
	var v T
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q; want application/json (body %s)", ct, r.body)
	}
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decoding %s: %v", r.body, err)
	}
	return v
}

// apiError decodes an error response.
func apiError(t *testing.T, r response) api.Error {
	t.Helper()
	b := decode[api.ErrorBody](t, r)
	if b.Error == nil {
		t.Fatalf("error response without an error: %s", r.body)
	}
	return *b.Error
}

// create requests access as user and returns the new amendment.
func (e *env) create(t *testing.T, user string, body api.RequestBody) api.Amendment {
	t.Helper()
	r := e.do(t, user, "POST", "/api/v1/amendments", body)
	if r.status != http.StatusCreated {
		t.Fatalf("create: status %d; want 201 (%s)", r.status, r.body)
	}
	return decode[api.Amendment](t, r)
}

// counts returns how many amendments and audit rows the store holds.
func (e *env) counts(t *testing.T) (amendments, events int) {
	t.Helper()
	ctx := context.Background()
	l, err := e.store.List(ctx, amendment.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range e.store.AuditEvents(ctx, 0) {
		if err != nil {
			t.Fatal(err)
		}
		events++
	}
	return len(l), events
}

var _ api.AuditTrail = (*store.SQLite)(nil)

// auditLines decodes a JSON-lines audit stream.
func auditLines(t *testing.T, body []byte) []audit.Event {
	t.Helper()
	var out []audit.Event
	for l := range strings.Lines(string(body)) {
		var ev audit.Event
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("audit line %q: %v", l, err)
		}
		out = append(out, ev)
	}
	return out
}

func TestNewValidates(t *testing.T) {
	st, err := store.OpenSQLite(context.Background(), store.SQLiteConfig{Path: filepath.Join(t.TempDir(), "j.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc, err := amendment.New(amendment.Config{Store: st, Contract: testContract()})
	if err != nil {
		t.Fatal(err)
	}
	ok := api.Config{Amendments: svc, Audit: st, Ready: st.Ready, Authenticator: headerAuth{}}
	noop := http.NotFoundHandler()
	tests := []struct {
		name string
		edit func(*api.Config)
		want string // substring of the error; "" means no error
	}{
		{name: "complete", edit: func(*api.Config) {}},
		{name: "no amendments", edit: func(c *api.Config) { c.Amendments = nil }, want: "Amendments is nil"},
		{name: "no audit", edit: func(c *api.Config) { c.Audit = nil }, want: "Audit is nil"},
		{name: "no ready", edit: func(c *api.Config) { c.Ready = nil }, want: "Ready is nil"},
		{name: "no authenticator", edit: func(c *api.Config) { c.Authenticator = nil }, want: "Authenticator is nil"},
		{name: "negative body limit", edit: func(c *api.Config) { c.MaxBodyBytes = -1 }, want: "MaxBodyBytes"},
		{name: "extra routes", edit: func(c *api.Config) {
			c.Extra = map[string]http.Handler{"/auth/": noop, "GET /metrics": noop}
		}},
		{name: "extra nil handler", edit: func(c *api.Config) { c.Extra = map[string]http.Handler{"/auth/": nil} }, want: `Extra["/auth/"] is nil`},
		{name: "extra conflicts", edit: func(c *api.Config) { c.Extra = map[string]http.Handler{"GET /healthz": noop} }, want: `Extra["GET /healthz"]`},
		{name: "extra malformed", edit: func(c *api.Config) { c.Extra = map[string]http.Handler{"GET": noop} }, want: `Extra["GET"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.edit(&cfg)
			_, err := api.New(cfg)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("got %v; want no error", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("got %v; want an error containing %q", err, tt.want)
			}
		})
	}
}
