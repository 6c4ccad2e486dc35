// Package session is the registry of live proxied sessions: each is bound to
// one active amendment before a byte is relayed, and is cut, with a reason
// the person sees, the moment that amendment expires or is revoked. It does
// not relay, record or authorize anything: the proxies do, and tell it how to
// cut and warn a session.
package session

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/jitproxy/jitproxy/amendment"
)

// amendments is the subset of amendment.Store that session uses: the
// store's own Get (unauthenticated, and without settling anything) and its
// change feed.
type amendments interface {
	// Get returns the current version of amendment id; an unknown id
	// matches amendment.ErrNotFound.
	Get(ctx context.Context, id string) (*amendment.Amendment, error)
	// Subscribe returns committed changes until ctx ends. The channel is
	// closed early if the subscriber falls behind: it must then re-read
	// and subscribe again.
	Subscribe(ctx context.Context) <-chan amendment.Change
}

// Stopper is a timer that NewTimer armed; *time.Timer is one.
type Stopper interface {
	// Stop prevents the timer's function from running; it reports false
	// if the function has already started (or the timer was stopped).
	Stop() bool
}

// Config configures a Registry.
type Config struct {
	// Amendments is the amendment store: Register re-reads each session's
	// amendment through it, Run follows its changes. Required.
	Amendments amendments
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// NewTimer calls f in its own goroutine once d has passed, unless
	// stopped; it must not call f before it returns. nil means
	// time.AfterFunc.
	NewTimer func(d time.Duration, f func()) Stopper
	// Warnings are how long before its amendment's expiry an interactive
	// session is warned, once for each; nil means 5m and 1m, and an empty
	// non-nil slice means never.
	Warnings []time.Duration
	// Logger receives one line per session registered, refused, ended and
	// cut; the zero Logger logs nothing.
	Logger zerolog.Logger
	// Metrics records the registry's metrics; nil means none.
	Metrics *Metrics
}

// Session describes one live proxied session to Register.
type Session struct {
	// ID names the session in logs, metrics and the audit trail; no two
	// live sessions share one.
	ID string
	// Person is who is connected (the identity key, a lower-cased email).
	Person string
	// Target is the target's name, e.g. web-1.
	Target string
	// Resource is what the person reached, as they see it named:
	// ubuntu@web-1, app_ro@app-db/app. Empty means the amendment's.
	Resource string
	// Kind is the proxy that serves it: amendment.KindSSH or
	// amendment.KindPostgres.
	Kind amendment.TargetKind
	// Interactive marks a session with a person at a terminal; only those
	// are warned before expiry.
	Interactive bool
	// Amendment is the live amendment the session rides on. Register
	// re-reads it by ID and decides on the stored state, not on this copy.
	Amendment *amendment.Amendment

	// Cut ends the session's connections now, and shows the person
	// cause (one line) where the protocol allows. The registry calls it
	// at most once, and never after the session's done func has run
	// first; it calls it without holding its lock, in a loop over every
	// session of the amendment that a few goroutines share (the caller's
	// among them), concurrently with other sessions' Cut. The cut latency
	// is taken when it returns, and the next session waits for it: it
	// must take microseconds, not wait for the network, a lock another
	// goroutine may hold for long, or the disk. Write the goodbye if it
	// cannot block, shut the sockets (shutdown(2)), and leave closing,
	// logging and audit rows to the session's own goroutines. Required.
	Cut func(cause *Ended)
	// Warn shows the person one line ahead of expiry (interactive
	// sessions only). It may run concurrently with Cut and must not block
	// for long. nil means the session is never warned.
	Warn func(message string)
}

// Registry holds the live sessions, one expiry timer (and its warning
// timers) per amendment they ride on, and follows amendment changes (Run) to
// cut them.
type Registry struct {
	am       amendments
	now      func() time.Time
	newTimer func(time.Duration, func()) Stopper
	warnings []time.Duration
	log      zerolog.Logger
	metrics  *Metrics

	mu       sync.Mutex               // guards sessions, bindings (and each binding's fields), pending, running and closed
	sessions map[string]*live         // by session ID
	bindings map[string]*binding      // by amendment ID; only amendments with live sessions
	pending  map[string]*registration // by amendment ID; Registers between their Get and their bind
	running  bool                     // Run has started
	closed   bool                     // no new sessions, no timers (Run returned, or CutAll)
	// inflight counts timer callbacks and the cuts Run started, for Run
	// to wait on; Add only from Run's goroutine, or under mu while
	// !closed, so that no Add can follow Run's Wait.
	inflight sync.WaitGroup
}

// live is one registered session.
type live struct {
	s      Session
	short  string // the amendment's short id
	b      *binding
	cancel context.CancelCauseFunc
	log    zerolog.Logger
	start  time.Time
}

// registration tracks the Registers in flight for one amendment, so that a
// change seen while they read the store is not lost: the newest version
// seen wins at bind time.
type registration struct {
	n      int
	latest *amendment.Amendment
}

// New validates cfg and returns a Registry. Call Run to follow amendment
// changes.
func New(cfg Config) (*Registry, error) {
	if cfg.Amendments == nil {
		return nil, errors.New("session: Config.Amendments is nil")
	}
	for _, w := range cfg.Warnings {
		if w <= 0 {
			return nil, fmt.Errorf("session: Config.Warnings has %v: each warning must be a positive time before expiry", w)
		}
	}
	r := &Registry{
		am:       cfg.Amendments,
		now:      cfg.Now,
		newTimer: cfg.NewTimer,
		warnings: slices.Clone(cfg.Warnings),
		log:      cfg.Logger,
		metrics:  cfg.Metrics,
		sessions: make(map[string]*live),
		bindings: make(map[string]*binding),
		pending:  make(map[string]*registration),
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.newTimer == nil {
		r.newTimer = func(d time.Duration, f func()) Stopper { return time.AfterFunc(d, f) }
	}
	if cfg.Warnings == nil {
		r.warnings = []time.Duration{5 * time.Minute, time.Minute}
	}
	return r, nil
}

// Register binds s to its amendment before the proxy relays a byte. It
// re-reads the amendment from the store (new connections and channels
// re-check live state): one that is not active now refuses the session with
// a *Refused that says why. Otherwise it arms (or reuses) the amendment's
// expiry timer and returns the session's context, cancelled with the *Ended
// cause when the session is cut, and done, which the proxy calls with a
// reason when the session ends normally (it unregisters the session, and
// cancels the context with ErrDone; calling it again, or after a cut, does
// nothing). The proxy must call done however the session ends.
//
// ctx bounds the read and is the parent of the session's context: pass the
// connection's context, not a handshake deadline.
func (r *Registry) Register(ctx context.Context, s Session) (context.Context, func(reason string), error) {
	if err := checkSession(s); err != nil {
		return nil, nil, err
	}
	id := s.Amendment.ID
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		r.metrics.refuse(string(s.Kind), "closed")
		return nil, nil, fmt.Errorf("session: register %s: %w", s.ID, ErrClosed)
	}
	p := r.pending[id]
	if p == nil {
		p = &registration{}
		r.pending[id] = p
	}
	p.n++
	r.mu.Unlock()

	a, err := r.am.Get(ctx, id)
	now := r.now()

	r.mu.Lock()
	if p.n--; p.n == 0 {
		delete(r.pending, id)
	}
	if err != nil {
		r.mu.Unlock()
		if !errors.Is(err, amendment.ErrNotFound) {
			r.metrics.refuse(string(s.Kind), "error")
			return nil, nil, fmt.Errorf("session: register %s: read amendment %s: %w", s.ID, id, err)
		}
		return nil, nil, r.refuse(s, nil, now)
	}
	// The newest version anyone has seen is the truth: an event may have
	// overtaken the read.
	if b := r.bindings[id]; b != nil && b.a.Version > a.Version {
		a = b.a
	}
	if p.latest != nil && p.latest.Version > a.Version {
		a = p.latest
	}
	if s.Resource == "" {
		s.Resource = a.Resource.String()
	}
	if !a.ActiveAt(now) {
		// What ended this amendment ends its other sessions too, now.
		ls, why := r.updateLocked(a, now)
		r.mu.Unlock()
		r.cut(ls, why)
		return nil, nil, r.refuse(s, a, now)
	}
	if r.closed {
		r.mu.Unlock()
		r.metrics.refuse(string(s.Kind), "closed")
		return nil, nil, fmt.Errorf("session: register %s: %w", s.ID, ErrClosed)
	}
	if _, dup := r.sessions[s.ID]; dup {
		r.mu.Unlock()
		return nil, nil, fmt.Errorf("session: register %s: a live session already has that id", s.ID)
	}
	r.updateLocked(a, now) // a is active, so this cuts nothing
	b := r.bindings[id]
	if b == nil {
		b = &binding{a: a, sessions: make(map[*live]struct{})}
		r.bindings[id] = b
		r.armLocked(b, now)
	}
	sctx, cancel := context.WithCancelCause(ctx)
	l := &live{
		s:      s,
		short:  a.ShortID(),
		b:      b,
		cancel: cancel,
		start:  now,
		log: r.log.With().Str("session", s.ID).Str("person", s.Person).Str("target", s.Target).
			Str("resource", s.Resource).Str("amendment", id).Logger(),
	}
	b.sessions[l] = struct{}{}
	r.sessions[s.ID] = l
	r.mu.Unlock()

	r.metrics.start(string(s.Kind))
	l.log.Info().Str("kind", string(s.Kind)).Time("expires_at", a.ExpiresAt).Msg("session bound to amendment")
	return sctx, func(reason string) { r.done(l, reason) }, nil
}

func checkSession(s Session) error {
	switch {
	case s.ID == "":
		return errors.New("session: register: Session.ID is empty")
	case s.Amendment == nil || s.Amendment.ID == "":
		return fmt.Errorf("session: register %s: Session.Amendment is missing", s.ID)
	case s.Cut == nil:
		return fmt.Errorf("session: register %s: Session.Cut is nil", s.ID)
	case s.Kind != amendment.KindSSH && s.Kind != amendment.KindPostgres:
		return fmt.Errorf("session: register %s: Session.Kind is %q: use ssh or postgres", s.ID, s.Kind)
	}
	return nil
}

// refuse counts, logs and returns the refusal of s (a nil: no such
// amendment).
func (r *Registry) refuse(s Session, a *amendment.Amendment, now time.Time) error {
	if s.Resource == "" {
		s.Resource = s.Target
	}
	ref := refusal(s.Amendment.ID, s.Resource, s.Target, a, now)
	r.metrics.refuse(string(s.Kind), refusalLabel(ref, a))
	r.log.Info().Str("session", s.ID).Str("person", s.Person).Str("target", s.Target).
		Str("amendment", s.Amendment.ID).Str("why", ref.Error()).Msg("session refused")
	return ref
}

// done unregisters l after a normal end; it does nothing if l is gone.
func (r *Registry) done(l *live, reason string) {
	r.mu.Lock()
	if r.sessions[l.s.ID] != l {
		r.mu.Unlock()
		return
	}
	r.detachLocked(l)
	r.mu.Unlock()
	l.cancel(fmt.Errorf("%w: %s", ErrDone, reason))
	r.metrics.end(string(l.s.Kind), "", -1)
	l.log.Info().Str("reason", reason).Dur("duration", r.now().Sub(l.start)).Msg("session ended")
}

// detachLocked removes l from the registry, and its binding when l was the
// last session on it. r.mu must be held.
func (r *Registry) detachLocked(l *live) {
	delete(r.sessions, l.s.ID)
	delete(l.b.sessions, l)
	if len(l.b.sessions) == 0 {
		r.unbindLocked(l.b)
	}
}

// Live returns how many sessions are registered.
func (r *Registry) Live() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sessions)
}

// ByAmendment returns the IDs of the live sessions bound to amendment id
// (its full ID), sorted.
func (r *Registry) ByAmendment(id string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.bindings[id]
	if b == nil {
		return nil
	}
	ids := make([]string, 0, len(b.sessions))
	for l := range b.sessions {
		ids = append(ids, l.s.ID)
	}
	slices.Sort(ids)
	return ids
}

// CutAll cuts every live session with cause, e.g. &Ended{Reason: "proxy
// shutting down"} (each session's copy gets its own Resource and
// Amendment), and returns when every Cut has returned. The registry takes
// no new sessions afterwards.
func (r *Registry) CutAll(cause *Ended) {
	r.mu.Lock()
	r.closed = true
	ls := slices.Collect(maps.Values(r.sessions))
	for _, b := range r.bindings {
		r.unbindLocked(b)
	}
	clear(r.sessions)
	r.mu.Unlock()
	r.cut(ls, ended{cause: *cause, label: "shutdown"})
}
