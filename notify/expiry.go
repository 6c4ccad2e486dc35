package notify

import (
	"time"

	"github.com/jitproxy/jitproxy/amendment"
)

// expiry decides when to warn that an active amendment is about to expire:
// for each webhook that wants expiring warnings, ExpiringBefore before
// ExpiresAt, at most once per amendment and expiry time. An extension moves
// the warning; revocation or expiry drops it. Only Run's goroutine uses it,
// so it has no lock.
type expiry struct {
	hooks []*hook // the webhooks that want expiring warnings
	byID  map[string]*tracked
}

// tracked is one active amendment and which of its warnings are done.
type tracked struct {
	a *amendment.Amendment // the newest version seen
	// done[i] is whether hooks[i]'s warning for a.ExpiresAt is sent, or
	// was not due (the amendment started inside the warning window).
	done []bool
}

// warning is one due warning for one webhook.
type warning struct {
	hook *hook
	a    *amendment.Amendment
}

func newExpiry(hooks []*hook) *expiry {
	e := &expiry{byID: make(map[string]*tracked)}
	for _, h := range hooks {
		if h.wants(Expiring) {
			e.hooks = append(e.hooks, h)
		}
	}
	return e
}

// update tracks a's newest version: an active amendment is (re)scheduled,
// any other is dropped. An older version than the one tracked is ignored.
func (e *expiry) update(a *amendment.Amendment) {
	if len(e.hooks) == 0 {
		return
	}
	t := e.byID[a.ID]
	if t != nil && a.Version < t.a.Version {
		return
	}
	if a.State != amendment.Active || a.ExpiresAt.IsZero() {
		delete(e.byID, a.ID)
		return
	}
	if t == nil {
		t = &tracked{done: make([]bool, len(e.hooks))}
		e.byID[a.ID] = t
	} else if !t.a.ExpiresAt.Equal(a.ExpiresAt) {
		clear(t.done) // a new expiry earns a new warning
	}
	t.a = a
}

// reload replaces what is tracked with the amendments active now, keeping
// which warnings were sent for an unchanged expiry.
func (e *expiry) reload(active []*amendment.Amendment) {
	if len(e.hooks) == 0 {
		return
	}
	keep := make(map[string]bool, len(active))
	for _, a := range active {
		if a.State == amendment.Active {
			e.update(a)
			keep[a.ID] = true
		}
	}
	for id := range e.byID {
		if !keep[id] {
			delete(e.byID, id)
		}
	}
}

// due returns the warnings due at now and marks them done. Amendments whose
// expiry has passed are dropped unwarned: the expired event says the rest.
func (e *expiry) due(now time.Time) []warning {
	var out []warning
	for id, t := range e.byID {
		if !now.Before(t.a.ExpiresAt) {
			delete(e.byID, id)
			continue
		}
		for i, h := range e.hooks {
			at := t.a.ExpiresAt.Add(-h.before)
			if t.done[i] || now.Before(at) {
				continue
			}
			t.done[i] = true
			if t.a.ActivatedAt.After(at) {
				continue // granted for less than the warning lead: nothing new to say
			}
			out = append(out, warning{hook: h, a: t.a})
		}
	}
	return out
}

// next returns when due next has something to do; zero if never.
func (e *expiry) next() time.Time {
	var next time.Time
	earlier := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	for _, t := range e.byID {
		earlier(t.a.ExpiresAt)
		for i, h := range e.hooks {
			if !t.done[i] {
				earlier(t.a.ExpiresAt.Add(-h.before))
			}
		}
	}
	return next
}
