package session

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jitproxy/jitproxy/amendment"
)

// revokedCopy is a's next version, revoked now: what the change feed
// delivers when someone revokes it. The benchmarks hand it to the registry
// directly, so they time the registry, not the store's commit.
func revokedCopy(a *amendment.Amendment, version int64) *amendment.Amendment {
	r := a.Clone()
	r.Version = version
	r.State = amendment.Revoked
	r.EndedAt, r.EndedBy, r.EndReason = time.Now(), "bob@example.com", "incident 42"
	return r
}

// BenchmarkRegisterCut: one session registered (a read of the real SQLite
// store, the bind, the timers armed) and cut by its amendment's revocation.
func BenchmarkRegisterCut(b *testing.B) {
	f := newFixture(b, fixtureConfig{discardLogs: true})
	a := f.active(b, "web-1", time.Hour)
	ctx := context.Background()
	cut := make(chan struct{}, 1)
	s := Session{ID: "s1", Person: alice.Key(), Target: "web-1", Resource: "ubuntu@web-1", Kind: amendment.KindSSH,
		Interactive: true, Amendment: a, Cut: func(*Ended) { cut <- struct{}{} }, Warn: func(string) {}}
	version := a.Version
	for b.Loop() {
		if _, _, err := f.reg.Register(ctx, s); err != nil {
			b.Fatal(err)
		}
		version++ // each revocation looks newer than the last
		f.reg.observe(revokedCopy(a, version))
		<-cut
	}
}

// BenchmarkCut1000: 1,000 sessions on one amendment, cut by its
// revocation; one op is all 1,000 Cut functions returned. It also reports
// the latency to the slowest Cut's return (max-µs) and the 99th percentile
// (p99-µs), measured from the revoke's time.
func BenchmarkCut1000(b *testing.B) {
	const n = 1000
	f := newFixture(b, fixtureConfig{discardLogs: true})
	a := f.active(b, "web-1", time.Hour)
	ctx := context.Background()
	var (
		mu   sync.Mutex // guards done
		done []time.Time
		all  = make(chan struct{}, 1)
	)
	cutFn := func(*Ended) {
		at := time.Now()
		mu.Lock()
		defer mu.Unlock()
		if done = append(done, at); len(done) == n {
			all <- struct{}{}
		}
	}
	var lat []time.Duration
	version := a.Version
	for b.Loop() {
		b.StopTimer()
		done = done[:0]
		for i := range n {
			s := Session{ID: fmt.Sprintf("s%04d", i), Person: alice.Key(), Target: "web-1", Resource: "ubuntu@web-1",
				Kind: amendment.KindSSH, Amendment: a, Cut: cutFn}
			if _, _, err := f.reg.Register(ctx, s); err != nil {
				b.Fatal(err)
			}
		}
		version++
		rev := revokedCopy(a, version)
		b.StartTimer()
		rev.EndedAt = time.Now()
		f.reg.observe(rev)
		<-all
		b.StopTimer()
		mu.Lock()
		for _, at := range done {
			lat = append(lat, at.Sub(rev.EndedAt))
		}
		mu.Unlock()
		b.StartTimer()
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		b.ReportMetric(float64(lat[len(lat)-1].Microseconds()), "max-µs")
	}
}
