package session

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jitproxy/jitproxy/amendment"
)

// Metrics are the registry's Prometheus metrics. A nil *Metrics records
// nothing.
type Metrics struct {
	live       *prometheus.GaugeVec
	started    *prometheus.CounterVec
	refused    *prometheus.CounterVec
	cut        *prometheus.CounterVec
	cutLatency *prometheus.HistogramVec
}

// cutLatencyBuckets run from 100µs to 30s in steps of about 1.6x: a cut is
// expected to take well under a millisecond, and the interesting part of
// the histogram is how far the tail reaches, which under load has been
// seconds.
var cutLatencyBuckets = prometheus.ExponentialBucketsRange(100e-6, 30, 28)

// NewMetrics creates the registry's metrics and registers them with reg
// (nil means they are kept but not registered). It panics if reg already
// has them, as prometheus.MustRegister does.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		live: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "jitproxy_sessions_live",
			Help: "Live proxied sessions, by kind (ssh, postgres).",
		}, []string{"kind"}),
		started: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitproxy_sessions_started_total",
			Help: "Sessions bound to an active amendment, by kind.",
		}, []string{"kind"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitproxy_sessions_refused_total",
			Help: "Sessions refused at registration, by kind and reason (the amendment's state, not_found, not_started, closed, error).",
		}, []string{"kind", "reason"}),
		cut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitproxy_sessions_cut_total",
			Help: "Sessions cut, by kind and reason (expired, revoked, shutdown).",
		}, []string{"kind", "reason"}),
		cutLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "jitproxy_session_cut_latency_seconds",
			Help:    "Time from the expiry instant or the revoke's commit to the session's cut function returning (its goodbye written and its sockets shut down), by reason.",
			Buckets: cutLatencyBuckets,
		}, []string{"reason"}),
	}
	// Each kind's series exist from the start, at 0: a dashboard or an
	// alert sees "no sessions", not "no data", before the first one.
	for _, kind := range []amendment.TargetKind{amendment.KindSSH, amendment.KindPostgres} {
		m.live.WithLabelValues(string(kind))
		m.started.WithLabelValues(string(kind))
	}
	if reg != nil {
		reg.MustRegister(m.live, m.started, m.refused, m.cut, m.cutLatency)
	}
	return m
}

func (m *Metrics) start(kind string) {
	if m == nil {
		return
	}
	m.started.WithLabelValues(kind).Inc()
	m.live.WithLabelValues(kind).Inc()
}

// end counts a session that left the registry; reason is empty for a
// normal end, else the cut's reason, and latency < 0 means not measured.
func (m *Metrics) end(kind, reason string, latency time.Duration) {
	if m == nil {
		return
	}
	m.live.WithLabelValues(kind).Dec()
	if reason == "" {
		return
	}
	m.cut.WithLabelValues(kind, reason).Inc()
	if latency >= 0 {
		m.cutLatency.WithLabelValues(reason).Observe(latency.Seconds())
	}
}

func (m *Metrics) refuse(kind, reason string) {
	if m == nil {
		return
	}
	m.refused.WithLabelValues(kind, reason).Inc()
}
