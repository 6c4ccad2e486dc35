package session

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/jitproxy/jitproxy/amendment"
	"github.com/jitproxy/jitproxy/store"
)

// The tests run the real SQLite store and the real amendment service; only
// time is faked, where a test says so.

var (
	alice = amendment.Identity{Email: "alice@example.com", Groups: []string{"eng"}}
	bob   = amendment.Identity{Email: "bob@example.com", Groups: []string{"sre-leads"}}
)

// t0 is when fake time starts.
var t0 = time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)

func contract() *amendment.Contract {
	return &amendment.Contract{
		Targets: map[string]amendment.Target{
			"web-1":  {Name: "web-1", Kind: amendment.KindSSH},
			"web-2":  {Name: "web-2", Kind: amendment.KindSSH},
			"app-db": {Name: "app-db", Kind: amendment.KindPostgres},
		},
		Rules: []amendment.Rule{
			{Name: "web", Groups: []string{"eng"}, Targets: []string{"web-*"}, Logins: []string{"ubuntu"},
				MaxDuration: 4 * time.Hour, Approvals: 1, ApproverGroups: []string{"sre-leads"},
				PendingTTL: 24 * time.Hour},
			{Name: "db", Groups: []string{"eng"}, Targets: []string{"app-db"}, Roles: []string{"app_ro"}, Databases: []string{"app"},
				MaxDuration: 8 * time.Hour, PendingTTL: time.Hour},
		},
		AdminGroups: []string{"admins"},
	}
}

type fixtureConfig struct {
	// fake runs the service and the registry on fakeTime; false means real
	// time.
	fake        bool
	eventBuffer int
	warnings    []time.Duration
	metrics     *Metrics
	// amendments wraps the store as the registry sees it; nil means the
	// store itself.
	amendments func(*store.SQLite) amendments
	// newTimer wraps the fake timer factory; nil means it as it is.
	newTimer func(ft *fakeTime) func(time.Duration, func()) Stopper
	// discardLogs encodes log lines and throws them away, instead of
	// keeping them in fixture.logs (benchmarks).
	discardLogs bool
}

type fixture struct {
	st   *store.SQLite
	svc  *amendment.Service
	reg  *Registry
	time *fakeTime // nil in real time
	logs *syncBuffer
}

func newFixture(t testing.TB, cfg fixtureConfig) *fixture {
	t.Helper()
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, store.SQLiteConfig{Path: filepath.Join(t.TempDir(), "j.db"), EventBuffer: cfg.eventBuffer})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{st: st, logs: &syncBuffer{}}
	acfg := amendment.Config{Store: st, Contract: contract()}
	rcfg := Config{Amendments: st, Warnings: cfg.warnings, Metrics: cfg.metrics, Logger: zerolog.New(f.logs)}
	if cfg.discardLogs {
		rcfg.Logger = zerolog.New(io.Discard)
	}
	if cfg.amendments != nil {
		rcfg.Amendments = cfg.amendments(st)
	}
	if cfg.fake {
		f.time = &fakeTime{now: t0}
		acfg.Now, rcfg.Now, rcfg.NewTimer = f.time.Now, f.time.Now, f.time.NewTimer
		if cfg.newTimer != nil {
			rcfg.NewTimer = cfg.newTimer(f.time)
		}
	}
	if f.svc, err = amendment.New(acfg); err != nil {
		t.Fatal(err)
	}
	if f.reg, err = New(rcfg); err != nil {
		t.Fatal(err)
	}
	return f
}

// run runs the registry's Run until the test ends.
func (f *fixture) run(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.reg.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// active returns a fresh active amendment for alice on target (web-1,
// web-2: ssh as ubuntu; app-db: postgres as app_ro) lasting d.
func (f *fixture) active(t testing.TB, target string, d time.Duration) *amendment.Amendment {
	t.Helper()
	ctx := context.Background()
	req := amendment.Request{Target: target, Login: "ubuntu", Duration: d, Reason: "deploy hotfix"}
	if target == "app-db" {
		req = amendment.Request{Target: target, Role: "app_ro", Database: "app", Duration: d, Reason: "check order 1234"}
	}
	a, err := f.svc.Request(ctx, alice, req)
	if err != nil {
		t.Fatal(err)
	}
	if a.State != amendment.Active {
		if a, err = f.svc.Approve(ctx, bob, a.ID, "ok"); err != nil {
			t.Fatal(err)
		}
	}
	if a.State != amendment.Active {
		t.Fatalf("amendment %s is %s; want active", a.ID, a.State)
	}
	return a
}

// probe is one session's end of the proxy: it records what the registry
// does to it.
type probe struct {
	id   string
	time func() time.Time
	cut  chan struct{} // closed by the first Cut

	mu    sync.Mutex // guards cuts, cutAt and warns
	cuts  []*Ended
	cutAt time.Time // when the first Cut returned
	warns []warned
}

type warned struct {
	at      time.Time
	message string
}

func newProbe(id string, now func() time.Time) *probe {
	if now == nil {
		now = time.Now
	}
	return &probe{id: id, time: now, cut: make(chan struct{})}
}

func (p *probe) Cut(cause *Ended) {
	at := p.time()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cuts = append(p.cuts, cause)
	if len(p.cuts) == 1 {
		p.cutAt = at
		close(p.cut)
	}
}

func (p *probe) Warn(message string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.warns = append(p.warns, warned{p.time(), message})
}

func (p *probe) cutCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.cuts)
}

func (p *probe) firstCut() (*Ended, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.cuts) == 0 {
		return nil, time.Time{}
	}
	return p.cuts[0], p.cutAt
}

func (p *probe) warnings() []warned {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.warns)
}

// waitCut waits up to d for the probe's first cut.
func (p *probe) waitCut(t testing.TB, d time.Duration) *Ended {
	t.Helper()
	select {
	case <-p.cut:
	case <-time.After(d):
		t.Fatalf("session %s was not cut within %v", p.id, d)
	}
	e, _ := p.firstCut()
	return e
}

// session describes an ssh session of alice as ubuntu on a's target.
func (p *probe) session(a *amendment.Amendment, interactive bool) Session {
	return Session{
		ID:          p.id,
		Person:      alice.Key(),
		Target:      a.Resource.Target,
		Resource:    a.Resource.String(),
		Kind:        a.Resource.Kind,
		Interactive: interactive,
		Amendment:   a,
		Cut:         p.Cut,
		Warn:        p.Warn,
	}
}

// registered is a session that Register accepted.
type registered struct {
	*probe
	ctx  context.Context
	done func(string)
}

func (f *fixture) register(t testing.TB, id string, a *amendment.Amendment, interactive bool) registered {
	t.Helper()
	var now func() time.Time
	if f.time != nil {
		now = f.time.Now
	}
	p := newProbe(id, now)
	ctx, done, err := f.reg.Register(context.Background(), p.session(a, interactive))
	if err != nil {
		t.Fatalf("Register(%s): %v", id, err)
	}
	return registered{p, ctx, done}
}

// waitFor polls cond until it holds, for up to 5s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// fakeTime is a clock and a timer factory that only move when Advance
// moves them; timer functions run in Advance's goroutine, each at its
// deadline, in deadline order.
type fakeTime struct {
	mu     sync.Mutex // guards now and timers
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	ft   *fakeTime
	at   time.Time
	f    func()
	done bool // fired or stopped; guarded by ft.mu
}

func (ft *fakeTime) Now() time.Time {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	return ft.now
}

func (ft *fakeTime) NewTimer(d time.Duration, f func()) Stopper {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	t := &fakeTimer{ft: ft, at: ft.now.Add(d), f: f}
	ft.timers = append(ft.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.ft.mu.Lock()
	defer t.ft.mu.Unlock()
	was := !t.done
	t.done = true
	return was
}

// Advance moves the clock by d, running every timer that comes due.
func (ft *fakeTime) Advance(d time.Duration) {
	ft.mu.Lock()
	end := ft.now.Add(d)
	ft.mu.Unlock()
	for {
		ft.mu.Lock()
		var next *fakeTimer
		for _, t := range ft.timers {
			if !t.done && !t.at.After(end) && (next == nil || t.at.Before(next.at)) {
				next = t
			}
		}
		if next == nil {
			ft.now = end
			ft.mu.Unlock()
			return
		}
		next.done = true
		if next.at.After(ft.now) {
			ft.now = next.at
		}
		ft.mu.Unlock()
		next.f()
	}
}

// AdvanceTo moves the clock to t0+offset.
func (ft *fakeTime) AdvanceTo(offset time.Duration) { ft.Advance(t0.Add(offset).Sub(ft.Now())) }

// armed returns the deadlines of the timers not yet fired or stopped,
// sorted.
func (ft *fakeTime) armed() []time.Time {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	var out []time.Time
	for _, t := range ft.timers {
		if !t.done {
			out = append(out, t.at)
		}
	}
	slices.SortFunc(out, time.Time.Compare)
	return out
}

// syncBuffer is a log sink that tests read while the registry writes.
type syncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// line fills a wanted message: {id} is a's short id.
func line(format string, a *amendment.Amendment) string {
	return strings.ReplaceAll(format, "{id}", a.ShortID())
}

// must returns v, or fails the test with err.
func must[T any](v T, err error) func(t testing.TB) T {
	return func(t testing.TB) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// metricValue returns the value of a counter or gauge, or the sample count
// of a histogram, with the given label pairs; 0 if there is none.
func metricValue(t testing.TB, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue metrics
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return 0
}

// gatedGet is the real store, except that the first Get after hold is set
// tells read and then waits for release before returning what it read.
type gatedGet struct {
	amendments
	hold    atomic.Bool
	read    chan struct{}
	release chan struct{}
}

func (g *gatedGet) Get(ctx context.Context, id string) (*amendment.Amendment, error) {
	a, err := g.amendments.Get(ctx, id)
	if g.hold.CompareAndSwap(true, false) {
		g.read <- struct{}{}
		<-g.release
	}
	return a, err
}
