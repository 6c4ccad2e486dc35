package session

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jitproxy/jitproxy/amendment"
)

// TestLostNotifications: a change that the registry's subscription never
// delivers (it fell behind, and the store closed it) still takes effect,
// because Run re-reads every bound amendment when it subscribes again.
func TestLostNotifications(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		// lose makes the change to a that the subscription loses.
		lose func(t *testing.T, f *fixture, a *amendment.Amendment)
		// check waits for, and checks, its effect on r.
		check func(t *testing.T, f *fixture, a *amendment.Amendment, r registered)
	}{
		{
			name: "revoke",
			lose: func(t *testing.T, f *fixture, a *amendment.Amendment) {
				must(f.svc.Revoke(ctx, bob, a.ID, "incident 42"))(t)
			},
			check: func(t *testing.T, f *fixture, a *amendment.Amendment, r registered) {
				r.waitCut(t, 5*time.Second)
				checkCutOnce(t, r, line("jitproxy: access to ubuntu@web-1 ended: amendment {id} revoked by bob@example.com: incident 42", a), ErrRevoked)
			},
		},
		{
			name: "extension",
			lose: func(t *testing.T, f *fixture, a *amendment.Amendment) {
				must(f.svc.Extend(ctx, alice, a.ID, time.Hour, "need longer"))(t)
			},
			check: func(t *testing.T, f *fixture, a *amendment.Amendment, r registered) {
				// a was extended by 30m (to prove Run consumes), then by 1h.
				newExpiry := a.ExpiresAt.Add(90 * time.Minute)
				waitFor(t, "the timer to move", func() bool { return slices.Contains(f.time.armed(), newExpiry) })
				f.time.AdvanceTo(2*time.Hour + 29*time.Minute)
				if n := r.cutCount(); n != 0 {
					t.Fatalf("cut before the extended expiry")
				}
				f.time.AdvanceTo(2*time.Hour + 30*time.Minute)
				checkCutOnce(t, r, line("jitproxy: access to ubuntu@web-1 ended: amendment {id} expired", a), ErrExpired)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, fixtureConfig{fake: true, eventBuffer: 1})
			f.run(t)
			a := f.active(t, "web-1", time.Hour)
			r := f.register(t, "s1", a, true)
			// Run is subscribed and consuming: it moves the timer.
			ext := must(f.svc.Extend(ctx, alice, a.ID, 30*time.Minute, "first"))(t)
			waitFor(t, "Run to follow the first extension", func() bool { return slices.Contains(f.time.armed(), ext.ExpiresAt) })

			// Stall Run (it needs the registry's lock to handle a change)
			// while a burst of unrelated changes overflows its one-change
			// buffer, so the store closes its subscription; then the
			// change to lose.
			f.reg.mu.Lock()
			f.active(t, "app-db", time.Hour) // requested, approved, activated
			f.active(t, "app-db", time.Hour)
			tt.lose(t, f, a)
			f.reg.mu.Unlock()

			tt.check(t, f, a, r)
			if !strings.Contains(f.logs.String(), "fell behind") {
				t.Errorf("Run did not report falling behind; logs:\n%s", f.logs)
			}
		})
	}
}

// TestRevokedBeforeRun: a revocation committed before Run subscribes is
// found by its first re-read.
func TestRevokedBeforeRun(t *testing.T) {
	f := newFixture(t, fixtureConfig{fake: true})
	a := f.active(t, "web-1", time.Hour)
	r := f.register(t, "s1", a, false)
	must(f.svc.Revoke(context.Background(), bob, a.ID, "incident 42"))(t)
	time.Sleep(20 * time.Millisecond)
	if n := r.cutCount(); n != 0 {
		t.Fatalf("cut without Run")
	}
	f.run(t)
	r.waitCut(t, 5*time.Second)
	checkCutOnce(t, r, line("jitproxy: access to ubuntu@web-1 ended: amendment {id} revoked by bob@example.com: incident 42", a), ErrRevoked)
}
