package notify

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/jitproxy/jitproxy/amendment"
)

// activeSince is amendment id, active since start until expires, as the
// change that activated it.
func activeSince(id string, start, expires time.Time) amendment.Change {
	c := requested()
	a := c.After
	a.ID, a.Version, a.State = id, 3, amendment.Active
	a.ActivatedAt, a.ExpiresAt = start, expires
	return amendment.Change{Event: amendment.EventActivated, Actor: amendment.SystemActor, At: start, After: a}
}

// expiryLog renders deliveries as "event id +expires_at-since-start".
func expiryLog(t *testing.T, got []delivery, start time.Time) []string {
	t.Helper()
	var out []string
	for _, d := range got {
		var p payload
		if err := json.Unmarshal(d.body, &p); err != nil {
			t.Fatal(err)
		}
		at := "-"
		if !p.Amendment.ExpiresAt.IsZero() {
			at = "+" + p.Amendment.ExpiresAt.Sub(start).String()
		}
		out = append(out, p.Event+" "+p.Amendment.ID+" "+at)
	}
	return out
}

func TestExpiringWarnings(t *testing.T) {
	const lead = time.Hour
	ms := time.Millisecond
	tests := []struct {
		name string
		// drive sends changes; start is when the case began.
		drive func(t *testing.T, ch chan<- amendment.Change, start time.Time)
		quiet time.Duration // how long after start nothing more may come
		want  []string
	}{
		{
			name: "fires once",
			drive: func(t *testing.T, ch chan<- amendment.Change, start time.Time) {
				act := activeSince("a1", start, start.Add(lead+300*ms))
				send(t, ch, act)
				time.Sleep(800 * ms)
				// A change that keeps the expiry earns no second warning.
				send(t, ch, next(act, amendment.EventExtensionRequested, "alice@example.com", "", start, nil))
			},
			quiet: 1500 * ms,
			want:  []string{"amendment.expiring a1 +1h0m0.3s"},
		},
		{
			name: "rescheduled by an extension",
			drive: func(t *testing.T, ch chan<- amendment.Change, start time.Time) {
				act := activeSince("a1", start, start.Add(lead+800*ms))
				send(t, ch, act, extended(act, 600*ms))
			},
			quiet: 2 * time.Second,
			want:  []string{"amendment.expiring a1 +1h0m1.4s"},
		},
		{
			name: "warns again for a new expiry",
			drive: func(t *testing.T, ch chan<- amendment.Change, start time.Time) {
				act := activeSince("a1", start, start.Add(lead+200*ms))
				send(t, ch, act)
				time.Sleep(700 * ms)
				send(t, ch, extended(act, 800*ms))
			},
			quiet: 1600 * ms,
			want:  []string{"amendment.expiring a1 +1h0m0.2s", "amendment.expiring a1 +1h0m1s"},
		},
		{
			name: "not after revoke",
			drive: func(t *testing.T, ch chan<- amendment.Change, start time.Time) {
				act := activeSince("a1", start, start.Add(lead+500*ms))
				send(t, ch, act, ended(act, amendment.EventRevoked, amendment.Revoked, "carol@example.com", "incident over"))
			},
			quiet: time.Second,
			want:  []string{"amendment.revoked a1 +1h0m0.5s"},
		},
		{
			name: "a stale version is ignored",
			drive: func(t *testing.T, ch chan<- amendment.Change, start time.Time) {
				act := activeSince("a1", start, start.Add(lead+300*ms))
				send(t, ch, extended(act, 500*ms), act)
			},
			quiet: 1300 * ms,
			want:  []string{"amendment.expiring a1 +1h0m0.8s"},
		},
		{
			name: "granted for less than the lead",
			drive: func(t *testing.T, ch chan<- amendment.Change, start time.Time) {
				send(t, ch, activeSince("a1", start, start.Add(30*time.Minute)))
			},
			quiet: 500 * ms,
		},
		{
			name: "already expired",
			drive: func(t *testing.T, ch chan<- amendment.Change, start time.Time) {
				send(t, ch, activeSince("a1", start.Add(-2*time.Hour), start.Add(-time.Second)))
			},
			quiet: 500 * ms,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rc := newReceiver(t, nil)
			_, ch := startChan(t, Config{Webhooks: []Webhook{{URL: rc.URL, Events: []string{Expiring, Revoked}, ExpiringBefore: lead}}})
			start := time.Now()
			tt.drive(t, ch, start)
			time.Sleep(time.Until(start.Add(tt.quiet)))
			if got := expiryLog(t, rc.all(), start); !slices.Equal(got, tt.want) {
				t.Errorf("got %q; want %q", got, tt.want)
			}
		})
	}
}

func TestResubscribeReloads(t *testing.T) {
	const lead = time.Hour
	ms := time.Millisecond
	t0 := time.Now()
	a := activeSince("a1", t0, t0.Add(lead+600*ms))
	b := activeSince("b1", t0, t0.Add(lead+2*time.Second)) // revoked while the feed was closed
	c := activeSince("c1", t0, t0.Add(lead+2500*ms))       // activated while the feed was closed
	f := &feed{
		chans: []chan amendment.Change{make(chan amendment.Change), make(chan amendment.Change)},
		lists: [][]*amendment.Amendment{{a.After, b.After}, {a.After, c.After}},
	}
	rc := newReceiver(t, nil)
	start(t, Config{Webhooks: []Webhook{{URL: rc.URL, Events: []string{Expiring, Requested}, ExpiringBefore: lead}}}, f)
	rc.wait(t, 1, 5*time.Second) // a1's warning
	close(f.chans[0])
	eventually(t, 5*time.Second, "Run did not subscribe again and reload", func() bool {
		subs, loads := f.counts()
		return subs == 2 && loads == 2
	})
	send(t, f.chans[1], requested())
	time.Sleep(time.Until(t0.Add(3200 * ms)))
	want := []string{"amendment.expiring a1 +1h0m0.6s", "amendment.requested 7f3a9c01d2e4b5a6 -", "amendment.expiring c1 +1h0m2.5s"}
	if got := expiryLog(t, rc.all(), t0); !slices.Equal(got, want) {
		t.Errorf("got %q; want %q", got, want)
	}
	if subs, loads := f.counts(); subs != 2 || loads != 2 {
		t.Errorf("got %d subscriptions and %d loads; want 2 and 2", subs, loads)
	}
}

func TestReloadRetriedAfterError(t *testing.T) {
	const lead = time.Hour
	t0 := time.Now()
	a := activeSince("a1", t0, t0.Add(lead+300*time.Millisecond))
	f := &feed{
		chans: []chan amendment.Change{make(chan amendment.Change)},
		lists: [][]*amendment.Amendment{{a.After}},
		fail:  2,
	}
	rc := newReceiver(t, nil)
	start(t, Config{Webhooks: []Webhook{{URL: rc.URL, ExpiringBefore: lead}}, RetryBase: 10 * time.Millisecond}, f)
	got := expiryLog(t, rc.wait(t, 1, 5*time.Second), t0)
	if want := []string{"amendment.expiring a1 +1h0m0.3s"}; !slices.Equal(got, want) {
		t.Errorf("got %q; want %q", got, want)
	}
	if _, loads := f.counts(); loads != 3 {
		t.Errorf("got %d loads; want 3 (two failures, then success)", loads)
	}
}
