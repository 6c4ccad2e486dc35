package session

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestMetricsExistAtZero: before any session, each kind's live and
// started series are there, at 0, so that a scrape says "no sessions"
// rather than nothing.
func TestMetricsExistAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	NewMetrics(reg)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "kind" {
					seen[mf.GetName()+"/"+l.GetValue()] = true
				}
			}
		}
	}
	for _, name := range []string{"jitproxy_sessions_live", "jitproxy_sessions_started_total"} {
		for _, kind := range []string{"ssh", "postgres"} {
			if !seen[name+"/"+kind] {
				t.Errorf("no %s{kind=%q} series before the first session", name, kind)
			}
		}
	}
}
