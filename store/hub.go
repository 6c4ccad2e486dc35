package store

import (
	"context"
	"sync"

	"github.com/rs/zerolog"

	"github.com/jitproxy/jitproxy/amendment"
)

// defaultEventBuffer is how many changes a subscriber may fall behind by
// before its channel is closed, when the backend's Config says 0.
const defaultEventBuffer = 1024

// hub hands committed amendment changes to in-process subscribers. It does
// not order anything itself: a backend calls publish after each commit, in
// commit order (the SQLite backend publishes while it still holds its write
// lock; a PostgreSQL backend would publish from its LISTEN/NOTIFY stream).
//
// publish never blocks. A subscriber whose buffer is full has its channel
// closed instead: it gets every change up to the one that did not fit, then
// sees the channel closed, and must re-read the state it cares about and
// subscribe again. No change is ever silently skipped.
type hub struct {
	log    zerolog.Logger
	buffer int

	mu     sync.Mutex // guards subs and closed; held for every send and close of a subscriber channel
	subs   map[*subscriber]struct{}
	closed bool
}

type subscriber struct {
	ch chan amendment.Change
	// stop stops the context.AfterFunc that unsubscribes when the
	// subscriber's context ends.
	stop func() bool
}

func newHub(log zerolog.Logger, buffer int) *hub {
	if buffer <= 0 {
		buffer = defaultEventBuffer
	}
	return &hub{log: log, buffer: buffer, subs: make(map[*subscriber]struct{})}
}

// subscribe returns a channel of changes published from now on. It is
// closed when ctx ends, when the subscriber falls behind by more than the
// buffer, or when the hub closes; a closed hub returns a closed channel.
func (h *hub) subscribe(ctx context.Context) <-chan amendment.Change {
	ch := make(chan amendment.Change, h.buffer)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || ctx.Err() != nil {
		close(ch)
		return ch
	}
	s := &subscriber{ch: ch}
	h.subs[s] = struct{}{}
	// The AfterFunc may start before stop is set below, but it needs h.mu,
	// which is held until then.
	s.stop = context.AfterFunc(ctx, func() { h.unsubscribe(s) })
	return ch
}

func (h *hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[s]; ok {
		delete(h.subs, s)
		close(s.ch)
	}
}

// publish hands c to every subscriber, each its own deep copy, so that no
// subscriber can change what another one (or the writer) holds.
func (h *hub) publish(c amendment.Change) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		select {
		case s.ch <- cloneChange(c):
		default:
			s.stop()
			delete(h.subs, s)
			close(s.ch)
			h.log.Warn().Int("buffer", h.buffer).Str("event", c.Event).
				Msg("store: an amendment-change subscriber fell behind; closed its channel (it must re-read and subscribe again)")
		}
	}
}

// close closes every subscriber channel; later subscribers get a closed
// channel and later publishes go nowhere.
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	for s := range h.subs {
		s.stop()
		close(s.ch)
	}
	h.subs = nil
}

func cloneChange(c amendment.Change) amendment.Change {
	c.Before = c.Before.Clone()
	c.After = c.After.Clone()
	return c
}
