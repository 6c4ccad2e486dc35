package session

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/jitproxy/jitproxy/amendment"
)

// Backoffs of Run when the store misbehaves.
const (
	// resubscribeMin and resubscribeMax bound the wait before subscribing
	// again when subscriptions keep closing at once (a closed store).
	resubscribeMin = 50 * time.Millisecond
	resubscribeMax = 5 * time.Second
	// quickClose is how short a subscription must be to count as closing
	// at once.
	quickClose = time.Second
	// rereadMin and rereadMax bound the wait before re-reading amendments
	// whose re-read failed.
	rereadMin = 250 * time.Millisecond
	rereadMax = 30 * time.Second
)

// Run follows amendment changes until ctx ends: a revocation (any change to
// a final state) cuts every session on that amendment at once, an extension
// moves its timers, and anything else only refreshes what the registry
// knows. It subscribes, then re-reads every bound amendment; and whenever
// the subscription is closed (it fell behind), it does so again, so that a
// lost notification can never leave a session alive past its amendment.
//
// When Run returns the registry is closed: its timers are stopped, it takes
// no new sessions, and the caller cuts the live ones with CutAll. Run waits
// for the cuts it started.
func (r *Registry) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.running || r.closed {
		r.mu.Unlock()
		return errors.New("session: Run called twice, or after CutAll")
	}
	r.running = true
	r.mu.Unlock()
	defer r.shutdown()

	backoff := resubscribeMin
	for first := true; ; first = false {
		if !first {
			r.log.Warn().Msg("session: the amendment change feed closed (fell behind); re-reading every bound amendment")
		}
		start := time.Now()
		r.follow(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) >= quickClose {
			backoff = resubscribeMin
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, resubscribeMax)
	}
}

// follow subscribes, re-reads what is bound, and handles changes until the
// subscription closes.
func (r *Registry) follow(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	changes := r.am.Subscribe(ctx)
	// Everything bound (or being bound) now is re-read after subscribing,
	// so every change is either in that read or on the channel.
	failed := r.reread(ctx, r.boundIDs())
	wait := rereadMin
	retry := time.NewTimer(wait)
	defer retry.Stop()
	if len(failed) == 0 {
		retry.Stop()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case c, ok := <-changes:
			if !ok {
				return
			}
			if c.After != nil {
				r.observe(c.After)
			}
		case <-retry.C:
			if failed = r.reread(ctx, failed); len(failed) > 0 {
				wait = min(2*wait, rereadMax)
				retry.Reset(wait)
			}
		}
	}
}

// boundIDs returns the amendments with sessions bound or being bound.
func (r *Registry) boundIDs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make([]string, 0, len(r.bindings)+len(r.pending))
	for id := range r.bindings {
		ids = append(ids, id)
	}
	for id := range r.pending {
		if r.bindings[id] == nil {
			ids = append(ids, id)
		}
	}
	return ids
}

// reread reads each amendment again and acts on what it finds; it returns
// the ids it could not read.
func (r *Registry) reread(ctx context.Context, ids []string) (failed []string) {
	for _, id := range ids {
		a, err := r.am.Get(ctx, id)
		switch {
		case errors.Is(err, amendment.ErrNotFound):
			r.vanished(id)
		case err != nil:
			if ctx.Err() != nil {
				return nil
			}
			r.log.Error().Err(err).Str("amendment", id).Msg("session: re-reading an amendment; will retry")
			failed = append(failed, id)
		default:
			r.observe(a)
		}
	}
	return failed
}

// vanished cuts the sessions of an amendment that the store no longer has
// (fail closed: nothing grants them access any more).
func (r *Registry) vanished(id string) {
	r.mu.Lock()
	b := r.bindings[id]
	if b == nil {
		r.mu.Unlock()
		return
	}
	why := ended{cause: Ended{Amendment: b.a.ShortID(), Reason: "amendment " + b.a.ShortID() + " no longer exists"}, label: "revoked"}
	ls := r.takeLocked(b)
	r.inflight.Add(1) // from Run's goroutine, before its Wait
	r.mu.Unlock()
	go func() {
		defer r.inflight.Done()
		r.cut(ls, why)
	}()
}

// observe acts on a version of an amendment from the change feed or a
// re-read, starting (and not waiting for) any cut it calls for.
func (r *Registry) observe(a *amendment.Amendment) {
	now := r.now()
	r.mu.Lock()
	ls, why := r.updateLocked(a, now)
	if len(ls) == 0 {
		r.mu.Unlock()
		return
	}
	r.inflight.Add(1) // from Run's goroutine, before its Wait
	r.mu.Unlock()
	go func() {
		defer r.inflight.Done()
		r.cut(ls, why)
	}()
}

// updateLocked records a, if it is newer than what the registry knows, and
// returns the sessions it ends (already removed from the registry) with
// why; an extension re-arms the amendment's timers. r.mu must be held.
func (r *Registry) updateLocked(a *amendment.Amendment, now time.Time) ([]*live, ended) {
	if p := r.pending[a.ID]; p != nil && (p.latest == nil || a.Version > p.latest.Version) {
		p.latest = a
	}
	b := r.bindings[a.ID]
	if b == nil || a.Version <= b.a.Version {
		return nil, ended{}
	}
	old := b.a
	b.a = a
	if a.State != amendment.Active || !now.Before(a.ExpiresAt) {
		return r.takeLocked(b), endedOf(a)
	}
	if !a.ExpiresAt.Equal(old.ExpiresAt) {
		r.armLocked(b, now)
		r.log.Info().Str("amendment", a.ID).Time("expires_at", a.ExpiresAt).Int("sessions", len(b.sessions)).
			Msg("session: amendment extended; timers moved, sessions untouched")
	}
	return nil, ended{}
}

// cut cuts every session in ls and returns when every Cut has. One loop
// walks ls, shared by up to GOMAXPROCS goroutines (the caller's and
// cutWorkers-1 more), each taking the next session: a session is cancelled
// with its cause and its Cut called, and its latency taken the moment Cut
// returns. A Cut takes tens of µs (most of it the shutdown(2) of the
// target's socket; BENCHMARKS.md measures 1,000 in 52 ms on one core); the
// metrics and log lines follow the loop, so that they do not delay the
// later cuts.
//
// A Cut must not block, but if one does, the sessions after it must not
// stay connected behind it: while no worker takes a new session for
// cutStall, another worker joins (see watchCut).
func (r *Registry) cut(ls []*live, why ended) {
	if len(ls) == 0 {
		return
	}
	lat := make([]time.Duration, len(ls))
	causes := make([]Ended, len(ls))
	var next, cut atomic.Int64
	all := make(chan struct{}) // closed when every Cut has returned
	loop := func() {
		for i := int(next.Add(1) - 1); i < len(ls); i = int(next.Add(1) - 1) {
			lat[i] = r.cutOne(ls[i], why, &causes[i])
			if cut.Add(1) == int64(len(ls)) {
				close(all)
			}
		}
	}
	for range min(cutWorkers(), len(ls)) - 1 {
		go loop()
	}
	stop := make(chan struct{})
	go r.watchCut(&next, len(ls), loop, stop)
	loop()
	<-all
	close(stop)
	for i, l := range ls {
		r.metrics.end(string(l.s.Kind), why.label, lat[i])
		c := &causes[i]
		l.log.Info().Str("state", c.State).Str("by", c.By).Str("reason", c.Reason).
			Dur("latency", lat[i]).Msg("session cut")
	}
}

// cutWorkers is how many goroutines share a cut's loop: one per core Go
// may use.
func cutWorkers() int { return runtime.GOMAXPROCS(0) }

// cutStall is how long a cut's loop may take no new session before
// watchCut adds a worker.
const cutStall = 50 * time.Millisecond

// watchCut adds a worker (loop) to a cut whenever its workers have taken
// no new session of the n for cutStall: every worker is then inside a Cut
// that blocks, which must not hold up the sessions after it. It returns
// when stop is closed.
func (r *Registry) watchCut(next *atomic.Int64, n int, loop func(), stop <-chan struct{}) {
	t := time.NewTicker(cutStall)
	defer t.Stop()
	seen := next.Load()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		taken := next.Load()
		if taken == seen && taken < int64(n) {
			r.log.Warn().Int64("cut", taken).Int("sessions", n).Dur("stalled", cutStall).
				Msg("session: a session's Cut is blocking; another worker cuts the sessions after it")
			go loop()
		}
		seen = taken
	}
}

// cutOne cancels l with why's cause (its own copy in cause, naming what l
// reached) and cuts it; it returns the cut latency, from why's origin to
// Cut returning, or -1 if why has no origin.
func (r *Registry) cutOne(l *live, why ended, cause *Ended) time.Duration {
	*cause = why.cause
	cause.Resource = l.s.Resource
	if cause.Amendment == "" {
		cause.Amendment = l.short
	}
	l.cancel(cause)
	l.s.Cut(cause)
	if why.origin.IsZero() {
		return -1
	}
	return max(r.now().Sub(why.origin), 0)
}

// shutdown closes the registry when Run returns: no new sessions, no
// timers; it waits for the timer callbacks and cuts in flight.
func (r *Registry) shutdown() {
	r.mu.Lock()
	r.closed = true
	for _, b := range r.bindings {
		r.stopLocked(b)
	}
	n := len(r.sessions)
	r.mu.Unlock()
	r.inflight.Wait()
	if n > 0 {
		r.log.Info().Int("sessions", n).Msg("session: registry closed with sessions live; cut them with CutAll")
	}
}
