package session

import (
	"slices"
	"sync"
	"time"

	"github.com/jitproxy/jitproxy/amendment"
)

// binding is one amendment that live sessions ride on: the newest version
// seen (always active while bound), its sessions, and its timers. Every
// field is guarded by Registry.mu.
type binding struct {
	a        *amendment.Amendment
	sessions map[*live]struct{}
	expiry   *timer   // fires at a.ExpiresAt
	warns    []*timer // fire at a.ExpiresAt minus each warning still ahead
}

// timer is one armed timer. Its callback acts only while the timer is
// still the one its binding holds, so a callback that Stop was too late to
// prevent does nothing.
type timer struct {
	stop   Stopper
	before time.Duration // warnings: how long before expiry
}

// armLocked (re)arms b's expiry and warning timers for b.a.ExpiresAt.
// Warnings already due at now are not armed. r.mu must be held.
func (r *Registry) armLocked(b *binding, now time.Time) {
	r.stopLocked(b)
	if r.closed {
		return
	}
	r.armExpiryLocked(b, now)
	for _, w := range r.warnings {
		at := b.a.ExpiresAt.Add(-w)
		if !at.After(now) {
			continue
		}
		t := &timer{before: w}
		t.stop = r.newTimer(at.Sub(now), func() { r.warn(b, t) })
		b.warns = append(b.warns, t)
	}
}

func (r *Registry) armExpiryLocked(b *binding, now time.Time) {
	t := &timer{}
	t.stop = r.newTimer(b.a.ExpiresAt.Sub(now), func() { r.expire(b, t) })
	b.expiry = t
}

// stopLocked stops b's timers. r.mu must be held.
func (r *Registry) stopLocked(b *binding) {
	if b.expiry != nil {
		b.expiry.stop.Stop()
		b.expiry = nil
	}
	for _, t := range b.warns {
		t.stop.Stop()
	}
	b.warns = nil
}

// unbindLocked forgets b and stops its timers; its sessions are the
// caller's to detach or cut. r.mu must be held.
func (r *Registry) unbindLocked(b *binding) {
	r.stopLocked(b)
	if r.bindings[b.a.ID] == b {
		delete(r.bindings, b.a.ID)
	}
}

// current reports whether t is still an armed timer of b, and b still
// bound. r.mu must be held.
func (r *Registry) current(b *binding, t *timer) bool {
	return !r.closed && r.bindings[b.a.ID] == b && (b.expiry == t || slices.Contains(b.warns, t))
}

// expire runs when b's amendment reaches its stored expiry: it cuts every
// session on it, without waiting for the store to write the expired row.
func (r *Registry) expire(b *binding, t *timer) {
	r.mu.Lock()
	if !r.current(b, t) {
		r.mu.Unlock()
		return
	}
	now := r.now()
	if now.Before(b.a.ExpiresAt) {
		// The wall clock went back since the timer was armed: wait for
		// the rest.
		r.armExpiryLocked(b, now)
		r.mu.Unlock()
		return
	}
	why := endedOf(b.a)
	ls := r.takeLocked(b)
	r.inflight.Add(1)
	r.mu.Unlock()
	defer r.inflight.Done()
	r.cut(ls, why)
}

// warn runs at one warning before b's expiry: it warns every interactive
// session on it.
func (r *Registry) warn(b *binding, t *timer) {
	r.mu.Lock()
	if !r.current(b, t) {
		r.mu.Unlock()
		return
	}
	b.warns = slices.DeleteFunc(b.warns, func(w *timer) bool { return w == t })
	a := b.a
	var ls []*live
	for l := range b.sessions {
		if l.s.Interactive && l.s.Warn != nil {
			ls = append(ls, l)
		}
	}
	r.inflight.Add(1)
	r.mu.Unlock()
	defer r.inflight.Done()

	var wg sync.WaitGroup
	for _, l := range ls {
		wg.Go(func() {
			l.s.Warn(warning(l.s.Resource, a, t.before))
			l.log.Info().Dur("before", t.before).Msg("session warned of expiry")
		})
	}
	wg.Wait()
}

// warning is the line an interactive session sees before expiry:
//
//	jitproxy: access to ubuntu@web-1 ends in 5m (amendment 7f3a9c01 expires at 15:04 UTC); extend with: jitproxy extend 7f3a9c01 --for 30m --reason "..."
func warning(resource string, a *amendment.Amendment, before time.Duration) string {
	id := a.ShortID()
	return "jitproxy: access to " + oneLine(resource) + " ends in " + amendment.FormatDuration(before) +
		" (amendment " + id + " expires at " + a.ExpiresAt.UTC().Format("15:04") + " UTC); extend with: jitproxy extend " +
		id + ` --for 30m --reason "..."`
}

// takeLocked unbinds b and removes all its sessions from the registry,
// returning them for the caller to cut. r.mu must be held.
func (r *Registry) takeLocked(b *binding) []*live {
	ls := make([]*live, 0, len(b.sessions))
	for l := range b.sessions {
		delete(r.sessions, l.s.ID)
		ls = append(ls, l)
	}
	clear(b.sessions)
	r.unbindLocked(b)
	return ls
}
