package auth

import (
	"sync"
	"time"
)

// pending holds short-lived login state (login transactions, one-time
// codes, device logins) in memory, each with its own expiry, and at most max
// at once. Expired entries are dropped on every add and never returned.
type pending[T any] struct {
	now func() time.Time
	max int

	mu    sync.Mutex // guards items
	items map[string]pendingItem[T]
}

type pendingItem[T any] struct {
	val     T
	expires time.Time
}

func newPending[T any](max int, now func() time.Time) *pending[T] {
	return &pending[T]{now: now, max: max, items: make(map[string]pendingItem[T])}
}

// add stores val under key until expires, or fails with ErrTooManyPending.
func (p *pending[T]) add(key string, val T, expires time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	for k, it := range p.items {
		if !now.Before(it.expires) {
			delete(p.items, k)
		}
	}
	if len(p.items) >= p.max {
		return ErrTooManyPending
	}
	p.items[key] = pendingItem[T]{val: val, expires: expires}
	return nil
}

// take removes and returns the live entry under key: each entry is handed out once.
func (p *pending[T]) take(key string) (T, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	it, ok := p.items[key]
	delete(p.items, key)
	if !ok || !p.now().Before(it.expires) {
		var zero T
		return zero, false
	}
	return it.val, true
}

// update runs fn on the live entry under key, under the lock, and removes
// the entry if fn says so. It reports whether there was a live entry.
func (p *pending[T]) update(key string, fn func(*T) (remove bool)) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	it, ok := p.items[key]
	if !ok || !p.now().Before(it.expires) {
		delete(p.items, key)
		return false
	}
	if fn(&it.val) {
		delete(p.items, key)
	} else {
		p.items[key] = it
	}
	return true
}
