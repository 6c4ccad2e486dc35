package notify

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jitproxy/jitproxy/amendment"
	"github.com/rs/zerolog"
)

// reply is how a test receiver answers one request.
type reply struct {
	status     int    // 0 means 200
	retryAfter string // Retry-After header, if any
	drop       bool   // close the connection without an answer
	hang       bool   // answer nothing until the client gives up
}

// replies answers the nth request with script[n-1], and 200 after the end
// of the script.
func replies(script ...reply) func(w http.ResponseWriter, r *http.Request, n int) {
	return func(w http.ResponseWriter, r *http.Request, n int) {
		if n > len(script) {
			return
		}
		rp := script[n-1]
		switch {
		case rp.drop:
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
		case rp.hang:
			<-r.Context().Done()
		default:
			if rp.retryAfter != "" {
				w.Header().Set("Retry-After", rp.retryAfter)
			}
			if rp.status != 0 {
				w.WriteHeader(rp.status)
			}
		}
	}
}

func TestRetries(t *testing.T) {
	tests := []struct {
		name         string
		script       []reply
		timeout      time.Duration
		wantAttempts int
		wantSent     uint64
		wantFailed   uint64
		minGap       time.Duration // least time between the first two attempts
	}{
		{name: "500 twice then 200", script: []reply{{status: 500}, {status: 500}}, wantAttempts: 3, wantSent: 1},
		{name: "400 is not retried", script: []reply{{status: 400}}, wantAttempts: 1, wantFailed: 1},
		{name: "redirect is not followed", script: []reply{{status: 302}}, wantAttempts: 1, wantFailed: 1},
		{name: "gives up after MaxAttempts", script: slices.Repeat([]reply{{status: 503}}, 10), wantAttempts: 4, wantFailed: 1},
		{name: "429 honours Retry-After", script: []reply{{status: 429, retryAfter: "1"}}, wantAttempts: 2, wantSent: 1, minGap: 900 * time.Millisecond},
		{name: "connection dropped", script: []reply{{drop: true}}, wantAttempts: 2, wantSent: 1},
		{name: "no answer in time", script: []reply{{hang: true}}, timeout: 200 * time.Millisecond, wantAttempts: 2, wantSent: 1, minGap: 150 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rc := newReceiver(t, replies(tt.script...))
			n, ch := startChan(t, Config{
				Webhooks:  []Webhook{{URL: rc.URL, MaxAttempts: 4, Timeout: tt.timeout}},
				RetryBase: time.Millisecond,
			})
			send(t, ch, requested())
			eventually(t, 10*time.Second, "the notification was neither sent nor given up", func() bool {
				s := n.Stats()
				return s.Sent+s.Failed > 0
			})
			got := rc.all()
			if len(got) != tt.wantAttempts {
				t.Errorf("attempts: got %d; want %d", len(got), tt.wantAttempts)
			}
			if s := n.Stats(); s.Sent != tt.wantSent || s.Failed != tt.wantFailed {
				t.Errorf("Stats: got %+v; want %d sent, %d failed", s, tt.wantSent, tt.wantFailed)
			}
			for i, d := range got {
				if i > 0 && d.header.Get("X-Jitproxy-Delivery") != got[0].header.Get("X-Jitproxy-Delivery") {
					t.Errorf("attempt %d has delivery ID %q; want the first attempt's %q", i+1, d.header.Get("X-Jitproxy-Delivery"), got[0].header.Get("X-Jitproxy-Delivery"))
				}
			}
			if tt.minGap > 0 && len(got) >= 2 {
				if gap := got[1].at.Sub(got[0].at); gap < tt.minGap {
					t.Errorf("second attempt came %s after the first; want at least %s", gap, tt.minGap)
				}
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name, header string
		want         time.Duration
	}{
		{"absent", "", 0},
		{"seconds", "3", 3 * time.Second},
		{"negative", "-3", 0},
		{"capped", "86400", maxRetryAfter},
		{"date", now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{"past date", now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"garbage", "soon", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := retryAfter(tt.header, now); got != tt.want {
				t.Errorf("got %s; want %s", got, tt.want)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	tests := []struct {
		attempt  int
		min, max time.Duration
	}{
		{1, 50 * time.Millisecond, 100 * time.Millisecond},
		{2, 100 * time.Millisecond, 200 * time.Millisecond},
		{4, 400 * time.Millisecond, 800 * time.Millisecond},
		{20, maxBackoff / 2, maxBackoff},
		{200, maxBackoff / 2, maxBackoff},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.attempt), func(t *testing.T) {
			for range 100 {
				if got := backoff(100*time.Millisecond, tt.attempt); got < tt.min || got > tt.max {
					t.Fatalf("got %s; want within [%s, %s]", got, tt.min, tt.max)
				}
			}
		})
	}
}

// numbered is a request for amendment number i.
func numbered(i int) amendment.Change {
	c := requested()
	c.After.ID = fmt.Sprintf("%016d", i)
	return c
}

func amendmentID(t *testing.T, d delivery) string {
	t.Helper()
	var p payload
	if err := json.Unmarshal(d.body, &p); err != nil {
		t.Fatal(err)
	}
	return p.Amendment.ID
}

func TestFullQueueDropsOldest(t *testing.T) {
	release := make(chan struct{})
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 1 {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
	})
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	var logs logBuffer
	n, ch := startChan(t, Config{
		Webhooks:  []Webhook{{URL: rc.URL, Timeout: time.Minute}},
		QueueSize: 10,
		Logger:    zerolog.New(&logs),
	})
	send(t, ch, numbered(0))
	rc.wait(t, 1, 10*time.Second) // number 0 is in flight, held
	for i := 1; i < 100; i++ {
		send(t, ch, numbered(i))
	}
	eventually(t, 5*time.Second, "the queue did not drop down to its size", func() bool { return n.Stats().Dropped == 89 })
	if s := n.Stats(); s.Queued != 10 {
		t.Errorf("Queued: got %d; want 10", s.Queued)
	}
	close(release)
	got := rc.wait(t, 11, 10*time.Second)
	var ids []string
	for _, d := range got {
		ids = append(ids, amendmentID(t, d))
	}
	want := []string{fmt.Sprintf("%016d", 0)}
	for i := 90; i < 100; i++ {
		want = append(want, fmt.Sprintf("%016d", i))
	}
	if !slices.Equal(ids, want) {
		t.Errorf("delivered: got %v; want the first (in flight) and the newest ten %v", ids, want)
	}
	if got := strings.Count(logs.String(), "dropped the oldest"); got != 89 {
		t.Errorf("got %d drop log lines; want 89", got)
	}
}

func TestHungWebhookBlocksNothing(t *testing.T) {
	hung := newReceiver(t, replies(slices.Repeat([]reply{{hang: true}}, 100000)...))
	good := newReceiver(t, nil)
	const changes = 2000
	n, ch := startChan(t, Config{
		Webhooks: []Webhook{
			{URL: hung.URL, Timeout: 200 * time.Millisecond, MaxAttempts: 1},
			{URL: good.URL},
		},
		QueueSize: changes + 10,
		RetryBase: time.Millisecond,
	})
	var slowest time.Duration
	startAt := time.Now()
	for i := range changes {
		t0 := time.Now()
		send(t, ch, numbered(i))
		if d := time.Since(t0); d > 100*time.Millisecond {
			t.Fatalf("the producer blocked %s on change %d; want at most 100ms", d, i)
		} else {
			slowest = max(slowest, d)
		}
	}
	total := time.Since(startAt)
	t.Logf("%d changes taken in %s; slowest send %s", changes, total, slowest)
	if total > 20*time.Second {
		t.Errorf("taking %d changes took %s; want at most 20s", changes, total)
	}
	got := good.wait(t, changes, 60*time.Second)
	if first, last := amendmentID(t, got[0]), amendmentID(t, got[changes-1]); first != fmt.Sprintf("%016d", 0) || last != fmt.Sprintf("%016d", changes-1) {
		t.Errorf("the good webhook got %s first and %s last; want every change in order", first, last)
	}
	eventually(t, 10*time.Second, "the hung webhook never timed out", func() bool { return n.Stats().Failed >= 1 })
	if s := n.Stats(); s.Dropped != 0 {
		t.Errorf("Dropped: got %d; want 0", s.Dropped)
	}
}

func TestLogsNoSecrets(t *testing.T) {
	rc := newReceiver(t, replies(slices.Repeat([]reply{{status: 500}}, 10)...))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	var logs logBuffer
	const secret = "s3cret-for-hmac"
	withCreds := strings.Replace(rc.URL, "http://", "http://user:PASSWD@", 1) + "/hooks/PATHTOKEN?token=QTOKEN"
	n, ch := startChan(t, Config{
		Webhooks: []Webhook{
			{URL: withCreds, Secret: secret, MaxAttempts: 2},
			{URL: "http://user:PASSWD@" + closed + "/hooks/PATHTOKEN?token=QTOKEN", Secret: secret, MaxAttempts: 2},
		},
		RetryBase: time.Millisecond,
		Logger:    zerolog.New(&logs).Level(zerolog.DebugLevel),
	})
	send(t, ch, requested())
	eventually(t, 10*time.Second, "both webhooks should give up", func() bool { return n.Stats().Failed == 2 })
	out := logs.String()
	for _, s := range []string{"PASSWD", "PATHTOKEN", "QTOKEN", secret} {
		if strings.Contains(out, s) {
			t.Errorf("the log contains %q:\n%s", s, out)
		}
	}
	for _, s := range []string{`"webhook_host":"` + rc.URL + `"`, `"webhook_host":"http://` + closed + `"`, "giving up", "500 Internal Server Error", "connection refused"} {
		if !strings.Contains(out, s) {
			t.Errorf("the log lacks %q:\n%s", s, out)
		}
	}
}
