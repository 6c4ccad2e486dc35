package session

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jitproxy/jitproxy/amendment"
)

// checkCutOnce checks that r was cut exactly once with want as its line
// (matching wantIs, unless nil), and that its context was cancelled with
// that same cause.
func checkCutOnce(t *testing.T, r registered, want string, wantIs error) {
	t.Helper()
	if n := r.cutCount(); n != 1 {
		t.Errorf("%s: Cut called %d times; want 1", r.id, n)
		return
	}
	cause, _ := r.firstCut()
	if got := cause.Error(); got != want {
		t.Errorf("%s: got %q; want %q", r.id, got, want)
	}
	if wantIs != nil && !errors.Is(cause, wantIs) {
		t.Errorf("%s: errors.Is(cause, %v) = false", r.id, wantIs)
	}
	select {
	case <-r.ctx.Done():
	default:
		t.Errorf("%s: context not cancelled", r.id)
		return
	}
	var got *Ended
	if !errors.As(context.Cause(r.ctx), &got) || *got != *cause {
		t.Errorf("%s: context cause %v; want %v", r.id, context.Cause(r.ctx), cause)
	}
}

func TestRevokeCuts(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	f := newFixture(t, fixtureConfig{fake: true, metrics: NewMetrics(reg)})
	f.run(t)
	a := f.active(t, "web-1", time.Hour)
	b := f.active(t, "web-2", time.Hour)
	var onA []registered
	for i := range 3 {
		onA = append(onA, f.register(t, fmt.Sprintf("a%d", i), a, i == 0))
	}
	onB := f.register(t, "b0", b, true)

	revoked := must(f.svc.Revoke(ctx, bob, a.ID, "incident 42"))(t)
	want := line("jitproxy: access to ubuntu@web-1 ended: amendment {id} revoked by bob@example.com: incident 42", a)
	for _, r := range onA {
		cause := r.waitCut(t, 5*time.Second)
		if !cause.At.Equal(revoked.EndedAt) || cause.By != "bob@example.com" || cause.Reason != "incident 42" || cause.State != "revoked" {
			t.Errorf("%s: cause %+v; want revoked by bob at %v", r.id, *cause, revoked.EndedAt)
		}
	}
	// Metrics are counted after each Cut returns.
	waitFor(t, "the cuts to be counted", func() bool {
		return metricValue(t, reg, "jitproxy_sessions_cut_total", "kind", "ssh", "reason", "revoked") == 3
	})
	for _, r := range onA {
		checkCutOnce(t, r, want, ErrRevoked)
		r.done("client closed") // after the cut: nothing
	}
	if got := f.reg.ByAmendment(a.ID); got != nil {
		t.Errorf("ByAmendment(revoked) = %v; want none", got)
	}
	// The other amendment's session is untouched.
	if n := onB.cutCount(); n != 0 {
		t.Errorf("b0 cut %d times; want 0", n)
	}
	if onB.ctx.Err() != nil {
		t.Errorf("b0 context ended: %v", context.Cause(onB.ctx))
	}
	if got, want := f.reg.ByAmendment(b.ID), []string{"b0"}; !slices.Equal(got, want) {
		t.Errorf("ByAmendment(b) = %v; want %v", got, want)
	}
	if got := f.reg.Live(); got != 1 {
		t.Errorf("Live() = %d; want 1", got)
	}
	// A normal end: done unregisters and cancels with ErrDone, once.
	onB.done("client closed")
	onB.done("client closed")
	if !errors.Is(context.Cause(onB.ctx), ErrDone) {
		t.Errorf("b0 context cause %v; want ErrDone", context.Cause(onB.ctx))
	}
	if got := f.reg.Live(); got != 0 {
		t.Errorf("Live() = %d; want 0", got)
	}
	if n := onB.cutCount(); n != 0 {
		t.Errorf("b0 cut after done")
	}
	for _, m := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"jitproxy_sessions_live", []string{"kind", "ssh"}, 0},
		{"jitproxy_sessions_started_total", []string{"kind", "ssh"}, 4},
		{"jitproxy_sessions_cut_total", []string{"kind", "ssh", "reason", "revoked"}, 3},
		{"jitproxy_session_cut_latency_seconds", []string{"reason", "revoked"}, 3},
	} {
		if got := metricValue(t, reg, m.name, m.labels...); got != m.want {
			t.Errorf("%s%v = %v; want %v", m.name, m.labels, got, m.want)
		}
	}
}

// TestDoneRacesCut: a session whose done races its cut is cut at most once
// and ends either way; one that does not race is cut exactly once.
func TestDoneRacesCut(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, fixtureConfig{fake: true})
	f.run(t)
	a, b := f.active(t, "web-1", time.Hour), f.active(t, "web-2", time.Hour)
	const n = 200
	var rs []registered
	for i := range n {
		rs = append(rs, f.register(t, fmt.Sprintf("s%03d", i), a, false))
	}
	// The racing half ends while the revoke commits and Run cuts, spread
	// over about as long as the revoke takes.
	begin := time.Now()
	must(f.svc.Revoke(ctx, bob, b.ID, "timing"))(t)
	took := time.Since(begin)
	var wg sync.WaitGroup
	for i, r := range rs[:n/2] {
		wg.Go(func() {
			time.Sleep(time.Duration(i) * 3 * took / (n / 2))
			r.done("client closed")
		})
	}
	must(f.svc.Revoke(ctx, bob, a.ID, "incident 42"))(t)
	wg.Wait()
	for _, r := range rs {
		waitFor(t, r.id+" to end", func() bool { return r.ctx.Err() != nil })
	}
	waitFor(t, "every session to leave", func() bool { return f.reg.Live() == 0 })
	want := line("jitproxy: access to ubuntu@web-1 ended: amendment {id} revoked by bob@example.com: incident 42", a)
	var raced, cut int
	for i, r := range rs {
		if i >= n/2 {
			checkCutOnce(t, r, want, ErrRevoked)
			continue
		}
		switch got := r.cutCount(); {
		case got > 1:
			t.Errorf("%s: Cut called %d times", r.id, got)
		case got == 1:
			cut++
			checkCutOnce(t, r, want, ErrRevoked)
		default:
			raced++
			if !errors.Is(context.Cause(r.ctx), ErrDone) {
				t.Errorf("%s: not cut, context cause %v; want ErrDone", r.id, context.Cause(r.ctx))
			}
		}
	}
	t.Logf("of %d racing sessions: %d ended by done first, %d cut first", n/2, raced, cut)
}

// TestExpiryCutsFromTimer: in real time, with no scheduler writing the
// expired row, the session is cut at the stored ExpiresAt, not before.
func TestExpiryCutsFromTimer(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, fixtureConfig{})
	f.run(t)
	a := f.active(t, "web-1", 300*time.Millisecond)
	r := f.register(t, "s1", a, true)
	other := f.register(t, "long", f.active(t, "web-2", time.Hour), false)
	defer other.done("test")

	cause := r.waitCut(t, time.Until(a.ExpiresAt)+5*time.Second)
	_, at := r.firstCut()
	if at.Before(a.ExpiresAt) {
		t.Errorf("cut at %v, %v before the expiry %v", at, a.ExpiresAt.Sub(at), a.ExpiresAt)
	}
	t.Logf("cut %v after the stored expiry", at.Sub(a.ExpiresAt))
	if !cause.At.Equal(a.ExpiresAt) {
		t.Errorf("cause.At = %v; want %v", cause.At, a.ExpiresAt)
	}
	checkCutOnce(t, r, line("jitproxy: access to ubuntu@web-1 ended: amendment {id} expired", a), ErrExpired)
	// No store event caused it: the store still says active.
	if got := must(f.st.Get(ctx, a.ID))(t); got.State != amendment.Active {
		t.Errorf("store state %s; want active (no scheduler ran)", got.State)
	}
	// The scheduler's expired row, arriving later, does nothing more.
	if _, err := f.svc.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the expired row", func() bool { return must(f.st.Get(ctx, a.ID))(t).State == amendment.Expired })
	time.Sleep(50 * time.Millisecond)
	if n := r.cutCount(); n != 1 {
		t.Errorf("Cut called %d times; want 1", n)
	}
	if n := other.cutCount(); n != 0 {
		t.Errorf("the other amendment's session was cut")
	}
}

// TestExtensionMovesDeadline, in real time: a session survives its
// amendment's first expiry and is cut at the extended one.
func TestExtensionMovesDeadline(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, fixtureConfig{})
	f.run(t)
	a := f.active(t, "web-1", 400*time.Millisecond)
	r := f.register(t, "s1", a, true)
	ext := must(f.svc.Extend(ctx, alice, a.ID, 600*time.Millisecond, "need longer"))(t)
	if !ext.ExpiresAt.Equal(a.ExpiresAt.Add(600 * time.Millisecond)) {
		t.Fatalf("extended to %v; want %v", ext.ExpiresAt, a.ExpiresAt.Add(600*time.Millisecond))
	}
	time.Sleep(time.Until(a.ExpiresAt.Add(200 * time.Millisecond)))
	if n := r.cutCount(); n != 0 {
		cause, _ := r.firstCut()
		t.Fatalf("cut at the first expiry: %v", cause)
	}
	if r.ctx.Err() != nil {
		t.Fatalf("context ended at the first expiry")
	}
	r.waitCut(t, time.Until(ext.ExpiresAt)+5*time.Second)
	if _, at := r.firstCut(); at.Before(ext.ExpiresAt) {
		t.Errorf("cut at %v, before the extended expiry %v", at, ext.ExpiresAt)
	}
	checkCutOnce(t, r, line("jitproxy: access to ubuntu@web-1 ended: amendment {id} expired", a), ErrExpired)
}

// TestOneTimerPerAmendment: sessions on one amendment share its timers;
// the last one to leave stops them.
func TestOneTimerPerAmendment(t *testing.T) {
	f := newFixture(t, fixtureConfig{fake: true, warnings: []time.Duration{5 * time.Minute}})
	a := f.active(t, "web-1", time.Hour)
	b := f.active(t, "web-2", 2*time.Hour)
	var rs []registered
	for i := range 3 {
		rs = append(rs, f.register(t, fmt.Sprintf("a%d", i), a, true))
	}
	rb := f.register(t, "b0", b, true)
	want := []time.Time{a.ExpiresAt.Add(-5 * time.Minute), a.ExpiresAt, b.ExpiresAt.Add(-5 * time.Minute), b.ExpiresAt}
	if got := f.time.armed(); !slices.Equal(got, want) {
		t.Errorf("armed %v; want %v", got, want)
	}
	for _, r := range rs {
		r.done("test")
	}
	want = want[2:]
	if got := f.time.armed(); !slices.Equal(got, want) {
		t.Errorf("after the last session of a: armed %v; want %v", got, want)
	}
	rb.done("test")
	if got := f.time.armed(); len(got) != 0 {
		t.Errorf("with no sessions: armed %v; want none", got)
	}
}

func TestCutAll(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := newFixture(t, fixtureConfig{fake: true, metrics: NewMetrics(reg)})
	f.run(t)
	a, b := f.active(t, "web-1", time.Hour), f.active(t, "app-db", time.Hour)
	web := f.register(t, "s1", a, true)
	db := f.register(t, "s2", b, false)

	f.reg.CutAll(&Ended{Reason: "proxy shutting down"})
	checkCutOnce(t, web, "jitproxy: access to ubuntu@web-1 ended: proxy shutting down", nil)
	checkCutOnce(t, db, "jitproxy: access to app_ro@app-db/app ended: proxy shutting down", nil)
	if cause, _ := db.firstCut(); cause.Amendment != b.ShortID() {
		t.Errorf("cause.Amendment = %q; want %q", cause.Amendment, b.ShortID())
	}
	if got := f.reg.Live(); got != 0 {
		t.Errorf("Live() = %d; want 0", got)
	}
	if got := f.time.armed(); len(got) != 0 {
		t.Errorf("armed %v; want no timers", got)
	}
	_, _, err := f.reg.Register(context.Background(), newProbe("s3", nil).session(a, false))
	if !errors.Is(err, ErrClosed) {
		t.Errorf("Register after CutAll: got %v; want ErrClosed", err)
	}
	for _, m := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"jitproxy_sessions_cut_total", []string{"kind", "ssh", "reason", "shutdown"}, 1},
		{"jitproxy_sessions_cut_total", []string{"kind", "postgres", "reason", "shutdown"}, 1},
		{"jitproxy_sessions_live", []string{"kind", "postgres"}, 0},
		{"jitproxy_sessions_refused_total", []string{"kind", "ssh", "reason", "closed"}, 1},
	} {
		if got := metricValue(t, reg, m.name, m.labels...); got != m.want {
			t.Errorf("%s%v = %v; want %v", m.name, m.labels, got, m.want)
		}
	}
}

// TestRunEnds: when its context ends Run returns, its timers are stopped
// and the registry takes no new sessions; the live ones stay for CutAll.
func TestRunEnds(t *testing.T) {
	f := newFixture(t, fixtureConfig{fake: true})
	a := f.active(t, "web-1", time.Hour)
	r := f.register(t, "s1", a, true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.reg.Run(ctx) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	if got := f.time.armed(); len(got) != 0 {
		t.Errorf("armed %v; want none after Run", got)
	}
	if _, _, err := f.reg.Register(context.Background(), newProbe("s2", nil).session(a, false)); !errors.Is(err, ErrClosed) {
		t.Errorf("Register after Run: got %v; want ErrClosed", err)
	}
	if err := f.reg.Run(context.Background()); err == nil {
		t.Errorf("second Run: got nil; want an error")
	}
	if got := f.reg.Live(); got != 1 {
		t.Errorf("Live() = %d; want 1", got)
	}
	f.reg.CutAll(&Ended{Reason: "proxy shutting down"})
	checkCutOnce(t, r, "jitproxy: access to ubuntu@web-1 ended: proxy shutting down", nil)
}

// TestTimerFiringEarly: a timer that fires before the stored expiry by the
// registry's clock (the wall clock was set back) cuts nothing yet; the
// registry waits for the rest.
func TestTimerFiringEarly(t *testing.T) {
	var early atomic.Bool
	f := newFixture(t, fixtureConfig{fake: true, warnings: []time.Duration{}, newTimer: func(ft *fakeTime) func(time.Duration, func()) Stopper {
		return func(d time.Duration, fn func()) Stopper {
			if early.CompareAndSwap(false, true) {
				d -= 10 * time.Minute
			}
			return ft.NewTimer(d, fn)
		}
	}})
	a := f.active(t, "web-1", time.Hour)
	r := f.register(t, "s1", a, false)
	f.time.AdvanceTo(50 * time.Minute)
	if n := r.cutCount(); n != 0 {
		t.Fatalf("cut at 09:50, before the expiry")
	}
	f.time.AdvanceTo(time.Hour)
	checkCutOnce(t, r, line("jitproxy: access to ubuntu@web-1 ended: amendment {id} expired", a), ErrExpired)
	if _, at := r.firstCut(); !at.Equal(a.ExpiresAt) {
		t.Errorf("cut at %v; want %v", at, a.ExpiresAt)
	}
}

// TestCutsInOneLoop: an amendment's sessions are cut by a loop that a few
// goroutines share (one per core), not by a goroutine each: while the
// cuts run, the process has nowhere near one more goroutine per session.
// Every Cut still runs, once, with its own cause.
func TestCutsInOneLoop(t *testing.T) {
	const n = 200
	f := newFixture(t, fixtureConfig{fake: true})
	f.run(t)
	a := f.active(t, "web-1", time.Hour)
	var (
		peak atomic.Int64
		cuts sync.WaitGroup
	)
	cuts.Add(n)
	rs := make([]registered, n)
	for i := range n {
		p := newProbe(fmt.Sprintf("s%03d", i), nil)
		s := p.session(a, false)
		s.Cut = func(cause *Ended) {
			for g := int64(runtime.NumGoroutine()); ; {
				old := peak.Load()
				if g <= old || peak.CompareAndSwap(old, g) {
					break
				}
			}
			p.Cut(cause)
			cuts.Done()
		}
		rs[i] = f.registerAs(t, p, s)
	}
	base := int64(runtime.NumGoroutine())
	must(f.svc.Revoke(context.Background(), bob, a.ID, "incident 42"))(t)
	waitCuts(t, &cuts)
	if extra, limit := peak.Load()-base, int64(runtime.GOMAXPROCS(0)+8); extra > limit {
		t.Errorf("%d more goroutines while cutting %d sessions; want at most %d (one loop, not a goroutine each)", extra, n, limit)
	}
	want := line("jitproxy: access to ubuntu@web-1 ended: amendment {id} revoked by bob@example.com: incident 42", a)
	for _, r := range rs {
		checkCutOnce(t, r, want, ErrRevoked)
	}
}

// registerAs registers s (a session of p's, with its own Cut) for p,
// failing t if the registry refuses it.
func (f *fixture) registerAs(t *testing.T, p *probe, s Session) registered {
	t.Helper()
	ctx, done, err := f.reg.Register(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	return registered{probe: p, ctx: ctx, done: done}
}

// waitCuts waits for every Cut that cuts counts, failing t after 10 s.
func waitCuts(t *testing.T, cuts *sync.WaitGroup) {
	t.Helper()
	done := make(chan struct{})
	go func() { cuts.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("not every session was cut")
	}
}

// TestCutPastABlockingCut: a Cut must not block, but if one does, the
// other sessions of the amendment are cut all the same. With one worker
// (GOMAXPROCS=1) the loop stops at the first Cut, which blocks until the
// end of the test; the watchdog adds a worker for the rest.
func TestCutPastABlockingCut(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	const n = 5
	f := newFixture(t, fixtureConfig{fake: true})
	f.run(t)
	a := f.active(t, "web-1", time.Hour)
	release := make(chan struct{})
	defer close(release)
	var first atomic.Bool
	ps := make([]*probe, n)
	for i := range n {
		p := newProbe(fmt.Sprintf("s%d", i), nil)
		s := p.session(a, false)
		s.Cut = func(cause *Ended) {
			p.Cut(cause)
			if first.CompareAndSwap(false, true) {
				<-release // whichever Cut runs first blocks
			}
		}
		f.registerAs(t, p, s)
		ps[i] = p
	}
	must(f.svc.Revoke(context.Background(), bob, a.ID, "incident 42"))(t)
	for _, p := range ps {
		p.waitCut(t, 10*time.Second) // each has had its Cut called, the blocked one too
	}
}
