package session

import (
	"context"
	"slices"
	"testing"
	"time"
)

const (
	warn5 = `jitproxy: access to ubuntu@web-1 ends in 5m (amendment {id} expires at 10:00 UTC); extend with: jitproxy extend {id} --for 30m --reason "..."`
	warn1 = `jitproxy: access to ubuntu@web-1 ends in 1m (amendment {id} expires at 10:00 UTC); extend with: jitproxy extend {id} --for 30m --reason "..."`
)

// TestWarnings: on fake time, an amendment active from 09:00 to 10:00.
func TestWarnings(t *testing.T) {
	type want struct {
		at      time.Duration // after 09:00
		message string        // {id} is the short id
	}
	tests := []struct {
		name        string
		warnings    []time.Duration // nil: the default
		registerAt  time.Duration
		interactive bool
		noWarn      bool // Session.Warn is nil
		want        []want
	}{
		{"interactive", nil, 0, true, false, []want{{55 * time.Minute, warn5}, {59 * time.Minute, warn1}}},
		{"not interactive", nil, 0, false, false, nil},
		{"no Warn func", nil, 0, true, true, nil},
		{"registered after the first warning", nil, 56 * time.Minute, true, false, []want{{59 * time.Minute, warn1}}},
		{"registered after both", nil, 59*time.Minute + 30*time.Second, true, false, nil},
		{"configured", []time.Duration{10 * time.Minute}, 0, true, false, []want{{50 * time.Minute,
			`jitproxy: access to ubuntu@web-1 ends in 10m (amendment {id} expires at 10:00 UTC); extend with: jitproxy extend {id} --for 30m --reason "..."`}}},
		{"none", []time.Duration{}, 0, true, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, fixtureConfig{fake: true, warnings: tt.warnings})
			a := f.active(t, "web-1", time.Hour)
			f.time.AdvanceTo(tt.registerAt)
			p := newProbe("s1", f.time.Now)
			s := p.session(a, tt.interactive)
			if tt.noWarn {
				s.Warn = nil
			}
			_, done, err := f.reg.Register(context.Background(), s)
			if err != nil {
				t.Fatal(err)
			}
			defer done("test")
			f.time.AdvanceTo(59*time.Minute + 59*time.Second)
			var got, wantW []warned
			got = p.warnings()
			for _, w := range tt.want {
				wantW = append(wantW, warned{t0.Add(w.at), line(w.message, a)})
			}
			if !slices.Equal(got, wantW) {
				t.Errorf("got %+v; want %+v", got, wantW)
			}
			if p.cutCount() != 0 {
				t.Fatalf("cut before expiry")
			}
			f.time.AdvanceTo(time.Hour)
			if _, at := p.firstCut(); !at.Equal(a.ExpiresAt) {
				t.Errorf("cut at %v; want at %v", at, a.ExpiresAt)
			}
		})
	}
}

// TestExtensionRearmsWarnings, on fake time: the extension moves the
// expiry and the warnings with it, and no session is touched.
func TestExtensionRearmsWarnings(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, fixtureConfig{fake: true})
	f.run(t)
	a := f.active(t, "web-1", time.Hour)
	r := f.register(t, "s1", a, true)
	f.time.AdvanceTo(55 * time.Minute)
	ext := must(f.svc.Extend(ctx, alice, a.ID, 30*time.Minute, "need longer"))(t)
	waitFor(t, "Run to move the timer", func() bool { return slices.Contains(f.time.armed(), ext.ExpiresAt) })
	if got, want := f.time.armed(), []time.Time{t0.Add(85 * time.Minute), t0.Add(89 * time.Minute), t0.Add(90 * time.Minute)}; !slices.Equal(got, want) {
		t.Errorf("armed %v; want %v", got, want)
	}
	f.time.AdvanceTo(61 * time.Minute)
	if n := r.cutCount(); n != 0 || r.ctx.Err() != nil {
		t.Fatalf("cut at the old expiry")
	}
	f.time.AdvanceTo(90*time.Minute - time.Second)
	if n := r.cutCount(); n != 0 {
		t.Fatalf("cut before the new expiry")
	}
	f.time.AdvanceTo(90 * time.Minute)
	want := []warned{
		{t0.Add(55 * time.Minute), line(warn5, a)},
		{t0.Add(85 * time.Minute), line(`jitproxy: access to ubuntu@web-1 ends in 5m (amendment {id} expires at 10:30 UTC); extend with: jitproxy extend {id} --for 30m --reason "..."`, a)},
		{t0.Add(89 * time.Minute), line(`jitproxy: access to ubuntu@web-1 ends in 1m (amendment {id} expires at 10:30 UTC); extend with: jitproxy extend {id} --for 30m --reason "..."`, a)},
	}
	if got := r.warnings(); !slices.Equal(got, want) {
		t.Errorf("got %+v; want %+v", got, want)
	}
	checkCutOnce(t, r, line("jitproxy: access to ubuntu@web-1 ended: amendment {id} expired", a), ErrExpired)
	if cause, at := r.firstCut(); !at.Equal(ext.ExpiresAt) || !cause.At.Equal(ext.ExpiresAt) {
		t.Errorf("cut at %v (cause.At %v); want %v", at, cause.At, ext.ExpiresAt)
	}
}
