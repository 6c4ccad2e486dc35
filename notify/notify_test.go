package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jitproxy/jitproxy/amendment"
	"github.com/rs/zerolog"
)

// base is the fixed instant of the fixtures.
var base = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

// delivery is one request a receiver got.
type delivery struct {
	header http.Header
	body   []byte
	at     time.Time
}

// event returns the payload's event field (JSON format only).
func (d delivery) event(t *testing.T) string {
	t.Helper()
	var p struct {
		Event string `json:"event"`
	}
	if err := json.Unmarshal(d.body, &p); err != nil {
		t.Fatalf("body %q: %v", d.body, err)
	}
	return p.Event
}

// receiver is a webhook endpoint on 127.0.0.1 that records every request
// before answering it.
type receiver struct {
	URL     string
	mu      sync.Mutex // guards got
	got     []delivery
	arrived chan struct{} // signalled (capacity 1) after each recorded request
}

// newReceiver starts a receiver. answer replies to the nth request
// (1-based); nil means 200 OK. The server stops when the test ends.
func newReceiver(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, n int)) *receiver {
	t.Helper()
	rc := &receiver{arrived: make(chan struct{}, 1)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		rc.mu.Lock()
		rc.got = append(rc.got, delivery{header: r.Header.Clone(), body: body, at: time.Now()})
		n := len(rc.got)
		rc.mu.Unlock()
		select {
		case rc.arrived <- struct{}{}:
		default:
		}
		if answer != nil {
			answer(w, r, n)
		}
	}))
	t.Cleanup(srv.Close)
	rc.URL = srv.URL
	return rc
}

// all returns what the receiver got so far.
func (rc *receiver) all() []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]delivery(nil), rc.got...)
}

// wait returns the deliveries once there are at least n, failing the test
// if that takes longer than within.
func (rc *receiver) wait(t *testing.T, n int, within time.Duration) []delivery {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		if got := rc.all(); len(got) >= n {
			return got
		}
		select {
		case <-rc.arrived:
		case <-deadline.C:
			t.Fatalf("receiver got %d requests in %s; want %d", len(rc.all()), within, n)
		}
	}
}

// eventually polls cond until it holds, failing the test after within.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// logBuffer collects log lines from several goroutines.
type logBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// feed is the test's side of Run's interface: the channels subscribe hands
// out and the lists active returns, in order; the last of each repeats.
type feed struct {
	mu    sync.Mutex // guards subs and loads
	chans []chan amendment.Change
	subs  int
	lists [][]*amendment.Amendment
	loads int
	// fail is how many loads fail before the lists are returned.
	fail int
}

func (f *feed) subscribe(ctx context.Context) <-chan amendment.Change {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.chans[min(f.subs, len(f.chans)-1)]
	f.subs++
	return c
}

func (f *feed) active(ctx context.Context) ([]*amendment.Amendment, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.loads++
	if f.loads <= f.fail {
		return nil, errors.New("store unavailable")
	}
	if len(f.lists) == 0 {
		return nil, nil
	}
	return f.lists[min(f.loads-f.fail-1, len(f.lists)-1)], nil
}

func (f *feed) counts() (subs, loads int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.subs, f.loads
}

// start creates a Notifier and runs it against f until the test ends,
// checking that Run then returns nil promptly. A zero cfg.Logger logs to
// the test.
func start(t *testing.T, cfg Config, f *feed) *Notifier {
	t.Helper()
	if reflect.ValueOf(cfg.Logger).IsZero() {
		cfg.Logger = zerolog.New(zerolog.NewTestWriter(t))
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx, f.subscribe, f.active) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v; want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return within 10s of its context ending")
		}
	})
	return n
}

// startChan runs a Notifier on one change channel that the test writes.
func startChan(t *testing.T, cfg Config) (*Notifier, chan<- amendment.Change) {
	t.Helper()
	ch := make(chan amendment.Change)
	return start(t, cfg, &feed{chans: []chan amendment.Change{ch}}), ch
}

// send hands c to Run, failing the test if Run does not take it in 5s.
func send(t *testing.T, ch chan<- amendment.Change, cs ...amendment.Change) {
	t.Helper()
	for _, c := range cs {
		select {
		case ch <- c:
		case <-time.After(5 * time.Second):
			t.Fatalf("Run did not take %s within 5s", c.Event)
		}
	}
}

// requested is a fresh request for ubuntu@web-1 made at base.
func requested() amendment.Change {
	a := &amendment.Amendment{
		ID:                "7f3a9c01d2e4b5a6",
		Version:           1,
		State:             amendment.Requested,
		Requester:         "alice@example.com",
		Rule:              "ops-ssh",
		Resource:          amendment.Resource{Target: "web-1", Kind: amendment.KindSSH, Login: "ubuntu"},
		Reason:            "deploy hotfix",
		Ticket:            "OPS-12",
		Duration:          2 * time.Hour,
		CreatedAt:         base,
		UpdatedAt:         base,
		RequestExpiresAt:  base.Add(time.Hour),
		RequiredApprovals: 1,
	}
	return amendment.Change{Event: amendment.EventRequested, Actor: a.Requester, At: base, Reason: a.Reason, After: a}
}

// next is the change that follows c: event by actor at at, with edit
// applied to a copy of c.After.
func next(c amendment.Change, event, actor, reason string, at time.Time, edit func(a *amendment.Amendment)) amendment.Change {
	a := c.After.Clone()
	a.Version++
	a.UpdatedAt = at
	if edit != nil {
		edit(a)
	}
	return amendment.Change{Event: event, Actor: actor, At: at, Reason: reason, Before: c.After, After: a}
}

// The usual lifecycle of the fixture.
func approved(c amendment.Change) amendment.Change {
	at := base.Add(5 * time.Minute)
	return next(c, amendment.EventApproved, "bob@example.com", "go ahead", at, func(a *amendment.Amendment) {
		a.State = amendment.Approved
		a.Approvals = append(a.Approvals, amendment.Approval{By: "bob@example.com", At: at, Comment: "go ahead"})
	})
}

func activated(c amendment.Change, expires time.Time) amendment.Change {
	at := c.At
	return next(c, amendment.EventActivated, amendment.SystemActor, "", at, func(a *amendment.Amendment) {
		a.State = amendment.Active
		a.ActivatedAt = at
		a.ExpiresAt = expires
	})
}

func extended(c amendment.Change, by time.Duration) amendment.Change {
	return next(c, amendment.EventExtended, "alice@example.com", "need more time", c.At, func(a *amendment.Amendment) {
		a.ExpiresAt = a.ExpiresAt.Add(by)
	})
}

func ended(c amendment.Change, event string, state amendment.State, actor, reason string) amendment.Change {
	at := c.At.Add(time.Minute)
	return next(c, event, actor, reason, at, func(a *amendment.Amendment) {
		a.State = state
		a.EndedAt, a.EndedBy, a.EndReason = at, actor, reason
	})
}

func TestNewValidates(t *testing.T) {
	ok := Webhook{URL: "https://hooks.example.com/x"}
	tests := []struct {
		name    string
		cfg     Config
		wantErr string // "" means valid
	}{
		{"minimal", Config{Webhooks: []Webhook{ok}}, ""},
		{"no webhooks", Config{}, ""},
		{"every option", Config{Webhooks: []Webhook{{URL: "http://127.0.0.1:9/h", Format: "slack", Events: []string{"expiring", "expired", "expiring"}, Secret: "s", Timeout: time.Second, ExpiringBefore: time.Minute, MaxAttempts: 2}}, QueueSize: 5, PublicURL: "https://jitproxy.example.com/", RetryBase: time.Millisecond}, ""},
		{"ftp URL", Config{Webhooks: []Webhook{{URL: "ftp://user:PASSWD@host/x?token=QTOKEN"}}}, "webhook 1: the URL must start with http:// or https://"},
		{"no host", Config{Webhooks: []Webhook{ok, {URL: "https:///x?token=QTOKEN"}}}, "webhook 2: the URL has no host"},
		{"relative URL", Config{Webhooks: []Webhook{{URL: "hooks.example.com/x"}}}, "must start with http:// or https://"},
		{"bad URL", Config{Webhooks: []Webhook{{URL: "http://PASSWD@[::1/x"}}}, "does not parse"},
		{"unknown format", Config{Webhooks: []Webhook{{URL: ok.URL, Format: "teams"}}}, `unknown format "teams"`},
		{"unknown event", Config{Webhooks: []Webhook{{URL: ok.URL, Events: []string{"approved", "withdrawn"}}}}, `unknown event "withdrawn"`},
		{"negative timeout", Config{Webhooks: []Webhook{{URL: ok.URL, Timeout: -1}}}, "Timeout is negative"},
		{"negative expiring before", Config{Webhooks: []Webhook{{URL: ok.URL, ExpiringBefore: -1}}}, "ExpiringBefore is negative"},
		{"negative attempts", Config{Webhooks: []Webhook{{URL: ok.URL, MaxAttempts: -1}}}, "MaxAttempts is negative"},
		{"negative queue", Config{Webhooks: []Webhook{ok}, QueueSize: -1}, "QueueSize is negative"},
		{"negative retry base", Config{Webhooks: []Webhook{ok}, RetryBase: -1}, "RetryBase is negative"},
		{"bad public URL", Config{Webhooks: []Webhook{ok}, PublicURL: "jitproxy.example.com"}, "PublicURL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("got %v; want no error", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("got no error; want one containing %q", tt.wantErr)
			case err != nil && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("got %q; want it to contain %q", err, tt.wantErr)
			}
			if err != nil && (strings.Contains(err.Error(), "PASSWD") || strings.Contains(err.Error(), "QTOKEN")) {
				t.Errorf("error %q repeats credentials from the URL", err)
			}
		})
	}
}

func TestNewDefaults(t *testing.T) {
	n, err := New(Config{Webhooks: []Webhook{{URL: "https://hooks.example.com/x"}}})
	if err != nil {
		t.Fatal(err)
	}
	h := n.hooks[0]
	got := []any{h.format, h.events, h.timeout, h.before, h.maxAttempts, len(h.q.items), h.retryBase}
	want := []any{"json", []string{"requested", "approved", "denied", "revoked", "expiring"}, 5 * time.Second, 10 * time.Minute, 5, 1000, time.Second}
	for i := range want {
		if g, w := got[i], want[i]; !equalJSON(t, g, w) {
			t.Errorf("default %d: got %v; want %v", i, g, w)
		}
	}
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	if err1 != nil || err2 != nil {
		t.Fatalf("marshal: %v, %v", err1, err2)
	}
	return bytes.Equal(x, y)
}

func TestRunRefuses(t *testing.T) {
	n, err := New(Config{Webhooks: []Webhook{{URL: "http://127.0.0.1:9/"}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := n.Run(ctx, nil, nil); err == nil {
		t.Errorf("Run without subscribe and active: got nil; want an error")
	}
	f := &feed{chans: []chan amendment.Change{make(chan amendment.Change)}}
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx, f.subscribe, f.active) }()
	eventually(t, 5*time.Second, "first Run never subscribed", func() bool { s, _ := f.counts(); return s > 0 })
	if err := n.Run(ctx, f.subscribe, f.active); err == nil {
		t.Errorf("second Run while the first runs: got nil; want an error")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: got %v; want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s of its context ending")
	}
}
