package session

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestRevokeCuts1000: in real time, one revoke cuts 1,000 sessions on one
// amendment, and none on another. It reports the cut latency from the
// revoke's commit (Change.At, which is the amendment's EndedAt) to each
// Cut returning, and asserts only that all are cut within 5s.
func TestRevokeCuts1000(t *testing.T) {
	const n = 1000
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	f := newFixture(t, fixtureConfig{metrics: NewMetrics(reg)})
	f.run(t)
	a := f.active(t, "web-1", time.Hour)
	rs := make([]registered, n)
	for i := range rs {
		rs[i] = f.register(t, fmt.Sprintf("s%04d", i), a, i%2 == 0)
	}
	other := f.register(t, "other", f.active(t, "web-2", time.Hour), true)
	defer other.done("test")
	if got := len(f.reg.ByAmendment(a.ID)); got != n {
		t.Fatalf("ByAmendment = %d sessions; want %d", got, n)
	}

	revoked := must(f.svc.Revoke(ctx, bob, a.ID, "incident 42"))(t)
	returned := time.Now() // the write, its fsync and the publish are done
	deadline := time.After(5 * time.Second)
	for _, r := range rs {
		select {
		case <-r.cut:
		case <-deadline:
			t.Fatalf("%d of %d sessions cut within 5s", n-f.reg.Live()+1, n)
		}
	}
	want := line("jitproxy: access to ubuntu@web-1 ended: amendment {id} revoked by bob@example.com: incident 42", a)
	lat := make([]time.Duration, n)
	for i, r := range rs {
		checkCutOnce(t, r, want, ErrRevoked)
		_, at := r.firstCut()
		lat[i] = at.Sub(revoked.EndedAt)
	}
	slices.Sort(lat)
	t.Logf("cut latency from the revoke's commit to Cut returning, %d sessions: p50 %v, p99 %v, max %v (the Revoke call returned after %v)",
		n, lat[n/2], lat[n*99/100], lat[n-1], returned.Sub(revoked.EndedAt))
	if got := f.reg.Live(); got != 1 {
		t.Errorf("Live() = %d; want 1", got)
	}
	if n := other.cutCount(); n != 0 {
		t.Errorf("the other amendment's session was cut")
	}
	waitFor(t, "the cuts to be counted", func() bool {
		return metricValue(t, reg, "jitproxy_session_cut_latency_seconds", "reason", "revoked") == n
	})
}
