package session

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jitproxy/jitproxy/amendment"
	"github.com/jitproxy/jitproxy/store"
)

func TestRegisterRefuses(t *testing.T) {
	ctx := context.Background()
	web := amendment.Request{Target: "web-1", Login: "ubuntu", Duration: time.Hour, Reason: "deploy hotfix"}
	tests := []struct {
		name string
		// setup returns the amendment the session names, with fake time
		// at t0 (09:00 UTC).
		setup     func(t *testing.T, f *fixture) *amendment.Amendment
		want      string // {id} is the short id
		wantIs    []error
		wantNotIs []error
		wantLabel string
	}{
		{
			name: "unknown",
			setup: func(t *testing.T, f *fixture) *amendment.Amendment {
				return &amendment.Amendment{ID: "0123456789abcdef", Resource: amendment.Resource{Target: "web-1", Kind: amendment.KindSSH, Login: "ubuntu"}}
			},
			want:      "jitproxy: no active amendment for ubuntu@web-1: amendment {id} does not exist; ask for access with: jitproxy request web-1 ...",
			wantIs:    []error{ErrNoActiveAmendment},
			wantNotIs: []error{ErrExpired, ErrRevoked},
			wantLabel: "not_found",
		},
		{
			name: "requested",
			setup: func(t *testing.T, f *fixture) *amendment.Amendment {
				return must(f.svc.Request(ctx, alice, web))(t)
			},
			want:      "jitproxy: no active amendment for ubuntu@web-1: amendment {id} is waiting for approval; see it with: jitproxy show {id}",
			wantIs:    []error{ErrNoActiveAmendment},
			wantNotIs: []error{ErrExpired, ErrRevoked},
			wantLabel: "requested",
		},
		{
			name: "approved, starting later",
			setup: func(t *testing.T, f *fixture) *amendment.Amendment {
				req := web
				req.StartAt = t0.Add(2 * time.Hour)
				a := must(f.svc.Request(ctx, alice, req))(t)
				return must(f.svc.Approve(ctx, bob, a.ID, "ok"))(t)
			},
			want:      "jitproxy: no active amendment for ubuntu@web-1: amendment {id} is approved from 2026-11-29 11:00 UTC; connect again then",
			wantIs:    []error{ErrNoActiveAmendment},
			wantLabel: "approved",
		},
		{
			name: "denied",
			setup: func(t *testing.T, f *fixture) *amendment.Amendment {
				a := must(f.svc.Request(ctx, alice, web))(t)
				return must(f.svc.Deny(ctx, bob, a.ID, "use staging"))(t)
			},
			want:      "jitproxy: no active amendment for ubuntu@web-1: amendment {id} was denied by bob@example.com: use staging; ask for access with: jitproxy request web-1 ...",
			wantIs:    []error{ErrNoActiveAmendment},
			wantLabel: "denied",
		},
		{
			name: "revoked",
			setup: func(t *testing.T, f *fixture) *amendment.Amendment {
				a := f.active(t, "web-1", time.Hour)
				return must(f.svc.Revoke(ctx, bob, a.ID, "incident 42"))(t)
			},
			want:      "jitproxy: access to ubuntu@web-1 ended: amendment {id} revoked by bob@example.com: incident 42",
			wantIs:    []error{ErrNoActiveAmendment, ErrRevoked},
			wantNotIs: []error{ErrExpired},
			wantLabel: "revoked",
		},
		{
			name: "expired",
			setup: func(t *testing.T, f *fixture) *amendment.Amendment {
				a := f.active(t, "web-1", time.Hour)
				f.time.Advance(2 * time.Hour)
				if _, err := f.svc.Tick(ctx); err != nil {
					t.Fatal(err)
				}
				if a = must(f.st.Get(ctx, a.ID))(t); a.State != amendment.Expired {
					t.Fatalf("state %s; want expired", a.State)
				}
				return a
			},
			want:      "jitproxy: access to ubuntu@web-1 ended: amendment {id} expired",
			wantIs:    []error{ErrNoActiveAmendment, ErrExpired},
			wantNotIs: []error{ErrRevoked},
			wantLabel: "expired",
		},
		{
			// The expired row is not written yet (no scheduler ran), but
			// ActiveAt is false: fail closed.
			name: "active but past its expiry",
			setup: func(t *testing.T, f *fixture) *amendment.Amendment {
				a := f.active(t, "web-1", time.Hour)
				f.time.Advance(time.Hour)
				if a = must(f.st.Get(ctx, a.ID))(t); a.State != amendment.Active {
					t.Fatalf("state %s; want still active in the store", a.State)
				}
				return a
			},
			want:      "jitproxy: access to ubuntu@web-1 ended: amendment {id} expired",
			wantIs:    []error{ErrNoActiveAmendment, ErrExpired},
			wantLabel: "expired",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			f := newFixture(t, fixtureConfig{fake: true, metrics: NewMetrics(reg)})
			a := tt.setup(t, f)
			p := newProbe("s1", f.time.Now)
			sctx, done, err := f.reg.Register(ctx, p.session(a, true))
			if err == nil {
				done("test")
				t.Fatalf("Register: accepted; want refused")
			}
			if sctx != nil || done != nil {
				t.Errorf("Register returned a context or done func with its error")
			}
			if got, want := err.Error(), line(tt.want, a); got != want {
				t.Errorf("got %q; want %q", got, want)
			}
			var ref *Refused
			if !errors.As(err, &ref) {
				t.Errorf("got %T; want a *Refused", err)
			}
			for _, target := range tt.wantIs {
				if !errors.Is(err, target) {
					t.Errorf("errors.Is(err, %v) = false; want true", target)
				}
			}
			for _, target := range tt.wantNotIs {
				if errors.Is(err, target) {
					t.Errorf("errors.Is(err, %v) = true; want false", target)
				}
			}
			if got := f.reg.Live(); got != 0 {
				t.Errorf("Live() = %d; want 0", got)
			}
			if got := metricValue(t, reg, "jitproxy_sessions_refused_total", "kind", "ssh", "reason", tt.wantLabel); got != 1 {
				t.Errorf("refused{ssh,%s} = %v; want 1", tt.wantLabel, got)
			}
			if p.cutCount() != 0 {
				t.Errorf("a refused session was cut")
			}
		})
	}
}

func TestRegisterChecksSession(t *testing.T) {
	f := newFixture(t, fixtureConfig{fake: true})
	a := f.active(t, "web-1", time.Hour)
	ok := newProbe("s1", nil).session(a, false)
	tests := []struct {
		name   string
		modify func(s *Session)
		want   string
	}{
		{"no id", func(s *Session) { s.ID = "" }, "Session.ID is empty"},
		{"no amendment", func(s *Session) { s.Amendment = nil }, "Session.Amendment is missing"},
		{"no cut", func(s *Session) { s.Cut = nil }, "Session.Cut is nil"},
		{"bad kind", func(s *Session) { s.Kind = "rdp" }, `Session.Kind is "rdp"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ok
			tt.modify(&s)
			_, _, err := f.reg.Register(context.Background(), s)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v; want an error containing %q", err, tt.want)
			}
			if errors.Is(err, ErrNoActiveAmendment) {
				t.Errorf("a programming error matches ErrNoActiveAmendment")
			}
		})
	}
	// Two live sessions cannot share an id.
	r := f.register(t, "dup", a, false)
	defer r.done("test")
	if _, _, err := f.reg.Register(context.Background(), r.session(a, false)); err == nil || !strings.Contains(err.Error(), "already has that id") {
		t.Errorf("duplicate id: got %v; want refused", err)
	}
}

// TestRegisterSeesChangeDuringRead: a revocation that Run sees while a
// Register is reading the (then still active) amendment is not lost.
func TestRegisterSeesChangeDuringRead(t *testing.T) {
	ctx := context.Background()
	gate := &gatedGet{release: make(chan struct{}), read: make(chan struct{}, 1)}
	f := newFixture(t, fixtureConfig{fake: true, amendments: func(st *store.SQLite) amendments { gate.amendments = st; return gate }})
	f.run(t)
	a := f.active(t, "web-1", time.Hour)
	other := f.register(t, "other", f.active(t, "web-2", time.Hour), false)
	defer other.done("test")

	gate.hold.Store(true)
	errc := make(chan error, 1)
	go func() {
		_, done, err := f.reg.Register(ctx, newProbe("s1", f.time.Now).session(a, false))
		if err == nil {
			done("test")
		}
		errc <- err
	}()
	<-gate.read // Register has read the active version
	must(f.svc.Revoke(ctx, bob, a.ID, "incident 42"))(t)
	waitFor(t, "Run to see the revocation", func() bool {
		f.reg.mu.Lock()
		defer f.reg.mu.Unlock()
		p := f.reg.pending[a.ID]
		return p != nil && p.latest != nil && p.latest.State == amendment.Revoked
	})
	close(gate.release)
	err := <-errc
	if !errors.Is(err, ErrRevoked) {
		t.Fatalf("got %v; want the session refused as revoked", err)
	}
	if got, want := err.Error(), line("jitproxy: access to ubuntu@web-1 ended: amendment {id} revoked by bob@example.com: incident 42", a); got != want {
		t.Errorf("got %q; want %q", got, want)
	}
}
