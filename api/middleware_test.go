package api_test

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/jitproxy/jitproxy/api"
)

// extraRoutes are handlers mounted through Config.Extra, as the server
// mounts the login endpoints.
func extraRoutes() map[string]http.Handler {
	return map[string]http.Handler{
		"GET /auth/callback": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, "<p>logged in</p>")
		}),
		"/boom": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			panic("kaboom: secret detail")
		}),
		"/boom-late": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "partial")
			http.NewResponseController(w).Flush()
			panic("kaboom after the headers")
		}),
	}
}

func withExtra(c *api.Config) { c.Extra = extraRoutes() }

var requestID = regexp.MustCompile(`^[0-9a-f]{16}$`)

func TestResponseHeaders(t *testing.T) {
	e := newEnv(t, withExtra)
	tests := []struct {
		name        string
		user        string
		path        string
		wantStatus  int
		wantNoStore bool
	}{
		{name: "healthz", path: "/healthz", wantStatus: 200, wantNoStore: true},
		{name: "api", user: "alice", path: "/api/v1/amendments", wantStatus: 200, wantNoStore: true},
		{name: "unauthenticated", path: "/api/v1/whoami", wantStatus: 401, wantNoStore: true},
		{name: "unknown path", path: "/nope", wantStatus: 404, wantNoStore: true},
		{name: "extra route", path: "/auth/callback", wantStatus: 200},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(t, tt.user, "GET", tt.path, nil)
			if r.status != tt.wantStatus {
				t.Fatalf("status %d; want %d", r.status, tt.wantStatus)
			}
			if got := r.header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options %q; want nosniff", got)
			}
			if got := r.header.Get("Cache-Control") == "no-store"; got != tt.wantNoStore {
				t.Errorf("Cache-Control %q; want no-store %v", r.header.Get("Cache-Control"), tt.wantNoStore)
			}
			id := r.header.Get("X-Request-Id")
			if !requestID.MatchString(id) || seen[id] {
				t.Errorf("X-Request-Id %q; want 16 hex digits, new each request", id)
			}
			seen[id] = true
		})
	}
}

// TestRequestLog: one line per request with what an operator needs, and
// nothing a credential could leak through.
func TestRequestLog(t *testing.T) {
	e := newEnv(t, withExtra)
	req, err := http.NewRequest("GET", e.url+"/api/v1/whoami", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer tok-s3cret")
	who := e.send(t, "alice", req)
	login := e.do(t, "", "GET", "/auth/callback?code=authcode-s3cret&state=xyz", nil)
	denied := e.do(t, "", "GET", "/api/v1/whoami", nil)

	lines := e.logs.lines(t)
	if len(lines) != 3 {
		t.Fatalf("got %d log lines; want 3:\n%s", len(lines), e.logs)
	}
	tests := []struct {
		name string
		resp response
		want map[string]any
	}{
		{name: "authenticated", resp: who, want: map[string]any{"method": "GET", "path": "/api/v1/whoami", "status": 200.0, "identity": "alice@example.com", "message": "request"}},
		{name: "extra route", resp: login, want: map[string]any{"method": "GET", "path": "/auth/callback", "status": 200.0, "identity": ""}},
		{name: "unauthenticated", resp: denied, want: map[string]any{"path": "/api/v1/whoami", "status": 401.0, "identity": ""}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line := lines[i]
			if got, want := line["request_id"], tt.resp.header.Get("X-Request-Id"); got != want {
				t.Errorf("request_id %v; want %v", got, want)
			}
			for k, want := range tt.want {
				if got := line[k]; got != want {
					t.Errorf("%s = %v; want %v", k, got, want)
				}
			}
			if _, ok := line["duration"]; !ok {
				t.Error("no duration")
			}
		})
	}
	for _, secret := range []string{"tok-s3cret", "authcode-s3cret", "Authorization", "X-Test-User"} {
		if strings.Contains(e.logs.String(), secret) {
			t.Errorf("the log contains %q:\n%s", secret, e.logs)
		}
	}
}

func TestPanicRecovery(t *testing.T) {
	e := newEnv(t, withExtra)
	r := e.do(t, "", "GET", "/boom", nil)
	if r.status != http.StatusInternalServerError {
		t.Fatalf("status %d; want 500", r.status)
	}
	got := apiError(t, r)
	id := r.header.Get("X-Request-Id")
	if got.Code != api.CodeInternal || !strings.Contains(got.Message, id) || strings.Contains(got.Message, "kaboom") {
		t.Errorf("got %s %q; want internal naming request id %s and no detail", got.Code, got.Message, id)
	}
	if !strings.Contains(e.logs.String(), `"panic":"kaboom: secret detail"`) {
		t.Errorf("the log does not have the panic:\n%s", e.logs)
	}

	// After the status has gone out, the connection is cut instead.
	resp, err := e.client.Get(e.url + "/boom-late")
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Error("a response cut by a panic read as complete; want an error")
	}
	if !strings.Contains(e.logs.String(), `"path":"/boom-late","status":200`) || !strings.Contains(e.logs.String(), `"aborted":true`) {
		t.Errorf("the log does not record the cut response:\n%s", e.logs)
	}

	if r := e.do(t, "", "GET", "/healthz", nil); r.status != http.StatusOK {
		t.Errorf("after the panics: healthz %d; want 200", r.status)
	}
}

// TestStoreDown: an internal failure is a generic 500 whose detail is only
// in the log, and /readyz reports the store.
func TestStoreDown(t *testing.T) {
	e := newEnv(t, nil)
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		user     string
		path     string
		want     int
		wantCode api.Code
		wantMsg  string
	}{
		{name: "list", user: "alice", path: "/api/v1/amendments", want: 500, wantCode: api.CodeInternal, wantMsg: "something went wrong in jitproxy"},
		{name: "audit stream", user: "dave", path: "/api/v1/audit", want: 500, wantCode: api.CodeInternal, wantMsg: "something went wrong in jitproxy"},
		{name: "readyz", path: "/readyz", want: 503, wantCode: api.CodeNotReady, wantMsg: "not ready: store: ready: the store is closed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(t, tt.user, "GET", tt.path, nil)
			if r.status != tt.want {
				t.Fatalf("status %d; want %d (%s)", r.status, tt.want, r.body)
			}
			got := apiError(t, r)
			if got.Code != tt.wantCode || !strings.Contains(got.Message, tt.wantMsg) {
				t.Errorf("got %s %q; want %s containing %q", got.Code, got.Message, tt.wantCode, tt.wantMsg)
			}
			if tt.wantCode == api.CodeInternal && strings.Contains(got.Message, "store") {
				t.Errorf("the message %q leaks the internal error", got.Message)
			}
		})
	}
	if !strings.Contains(e.logs.String(), `"level":"error"`) {
		t.Errorf("no error logged:\n%s", e.logs)
	}
	if r := e.do(t, "", "GET", "/healthz", nil); r.status != http.StatusOK {
		t.Errorf("healthz %d; want 200: the process is alive", r.status)
	}
}

func TestBodyLimit(t *testing.T) {
	e := newEnv(t, func(c *api.Config) { c.MaxBodyBytes = 1 << 10 })
	pad := func(n int) string {
		b := `{"target":"web-1","login":"ubuntu","duration":"1h","reason":""}`
		return strings.Replace(b, `""`, `"`+strings.Repeat("x", n-len(b))+`"`, 1)
	}
	tests := []struct {
		name string
		size int
		want int
	}{
		{name: "at the limit", size: 1 << 10, want: 201},
		{name: "one byte over", size: 1<<10 + 1, want: 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := pad(tt.size)
			if len(body) != tt.size {
				t.Fatalf("body is %d bytes; want %d", len(body), tt.size)
			}
			r := e.do(t, "alice", "POST", "/api/v1/amendments", body)
			if r.status != tt.want {
				t.Fatalf("status %d; want %d (%s)", r.status, tt.want, r.body)
			}
			if got := apiErrorOrNil(t, r); tt.want == 413 && !strings.Contains(got, "limit of 1 KiB") {
				t.Errorf("message %q; want it to name the limit of 1 KiB", got)
			}
		})
	}
}

func apiErrorOrNil(t *testing.T, r response) string {
	t.Helper()
	if r.status < 400 {
		return ""
	}
	return apiError(t, r).Message
}
