package notify

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jitproxy/jitproxy/amendment"
)

// Timing of Run.
const (
	// resubscribeEvery is the least time between two subscriptions, so a
	// store that keeps closing the channel at once is not hammered.
	resubscribeEvery = time.Second
	// reloadTimeout bounds one load of the active amendments.
	reloadTimeout = 30 * time.Second
	// maxTimerWait caps how long Run sleeps before checking expiry
	// warnings against Now again, so a clock step is noticed.
	maxTimerWait = time.Minute
)

// Run reports changes until ctx ends, then returns nil once the delivery
// workers have stopped; notifications still queued are then logged and
// left. It returns an error only if called without subscribe or active,
// or while it is already running.
//
// subscribe returns committed changes (amendment.Store.Subscribe); when its
// channel closes, Run subscribes again and reloads. active returns the
// amendments active now; Run calls it after each subscription, so expiring
// warnings are scheduled after a restart and a lost event cannot leave a
// warning behind. Changes missed while the channel was closed are not
// reported.
//
// Run never waits on a webhook: each has its own queue and worker.
func (n *Notifier) Run(ctx context.Context, subscribe func(context.Context) <-chan amendment.Change, active func(context.Context) ([]*amendment.Amendment, error)) error {
	if subscribe == nil || active == nil {
		return errors.New("notify: Run needs subscribe and active")
	}
	if !n.running.CompareAndSwap(false, true) {
		return errors.New("notify: Run is already running")
	}
	defer n.running.Store(false)
	if len(n.hooks) == 0 {
		<-ctx.Done()
		return nil
	}

	ctx, cancel := context.WithCancel(ctx)
	var workers sync.WaitGroup
	defer workers.Wait()
	defer cancel()
	for _, h := range n.hooks {
		workers.Go(func() { h.run(ctx) })
	}
	n.consume(ctx, subscribe, active)
	return nil
}

// consume is Run's loop: changes in, notifications queued, expiry warnings
// on time. It returns when ctx ends.
func (n *Notifier) consume(ctx context.Context, subscribe func(context.Context) <-chan amendment.Change, active func(context.Context) ([]*amendment.Amendment, error)) {
	exp := newExpiry(n.hooks)
	warn := time.NewTimer(0) // fires when exp.next() is due
	defer warn.Stop()
	resubscribe := time.NewTimer(0) // fires when it is time to subscribe
	defer resubscribe.Stop()
	reload := time.NewTimer(0) // fires when it is time to retry a failed reload
	reload.Stop()
	defer reload.Stop()

	var (
		changes      <-chan amendment.Change // nil while not subscribed
		subscribedAt time.Time
		reloads      int // failed reloads in a row
	)
	load := func() {
		lctx, cancel := context.WithTimeout(ctx, reloadTimeout)
		list, err := active(lctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				reloads++
				wait := backoff(n.retryBase, reloads)
				n.log.Error().Err(err).Dur("retry_in", wait).Msg("loading active amendments for expiry warnings")
				reload.Reset(wait)
			}
			return
		}
		reloads = 0
		reload.Stop()
		exp.reload(list)
	}

	for {
		select {
		case <-ctx.Done():
			return
		case <-resubscribe.C:
			changes, subscribedAt = subscribe(ctx), time.Now()
			load()
		case <-reload.C:
			load()
		case c, ok := <-changes:
			if !ok {
				changes = nil
				n.log.Warn().Msg("amendment change feed closed (fell behind?): subscribing again and reloading")
				resubscribe.Reset(max(resubscribeEvery-time.Since(subscribedAt), 0))
				continue
			}
			n.handle(c, exp)
		case <-warn.C:
			now := n.now()
			for _, w := range exp.due(now) {
				n.send(w.hook, amendment.Change{Event: EventExpiring, Actor: amendment.SystemActor, At: now, After: w.a}, now, nil)
			}
		}
		if next := exp.next(); next.IsZero() {
			warn.Stop()
		} else {
			warn.Reset(min(max(next.Sub(n.now()), 0), maxTimerWait))
		}
	}
}

// handle tracks c for expiry warnings and queues its notifications.
func (n *Notifier) handle(c amendment.Change, exp *expiry) {
	if c.After == nil {
		return
	}
	exp.update(c.After)
	name := eventName(c.Event)
	if name == "" || name == Expiring {
		return
	}
	now := n.now()
	bodies := make(map[string][]byte, 2) // by format: every webhook in a format gets the same body
	for _, h := range n.hooks {
		if h.wants(name) {
			n.send(h, c, now, bodies)
		}
	}
}

// send renders c for h (reusing a body from cache, if given, by format) and
// queues it.
func (n *Notifier) send(h *hook, c amendment.Change, now time.Time, cache map[string][]byte) {
	body, ok := cache[h.format]
	if !ok {
		var err error
		if body, err = n.render(h.format, c, now); err != nil {
			h.log.Error().Err(fmt.Errorf("notify: render %s: %w", c.Event, err)).Str("amendment", c.After.ShortID()).Msg("cannot write notification")
			return
		}
		if cache != nil {
			cache[h.format] = body
		}
	}
	h.enqueue(c.Event, c.After.ShortID(), body)
}
