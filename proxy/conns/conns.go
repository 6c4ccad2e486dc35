// Package conns is what the SSH bastion and the PostgreSQL endpoint share
// in serving connections: the accept loop, which backs off on errors that
// pass (too many open files, timeouts) instead of spinning or giving up,
// and the set of listeners and accepted connections that a shutdown
// closes. Sessions, and what a shutdown says to them, stay with each
// proxy.
package conns

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// Set is a server's listeners and accepted connections. Its zero value is
// not usable: make one with New.
type Set struct {
	name      string // names the server in errors: "sshproxy", "pgproxy"
	errClosed error  // what Serve returns once Close has begun
	log       zerolog.Logger

	done chan struct{} // closed by Close

	mu        sync.Mutex // guards the fields below
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	closed    bool
}

// New returns an empty Set. name prefixes accept errors; errClosed is
// what Serve returns after Close.
func New(name string, errClosed error, log zerolog.Logger) *Set {
	return &Set{
		name:      name,
		errClosed: errClosed,
		log:       log,
		done:      make(chan struct{}),
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[net.Conn]struct{}),
	}
}

// Serve accepts connections on ln until Close, which makes it return
// errClosed; it closes ln. Each connection is tracked, then given to
// handle, which must not block (it starts the goroutine that serves c)
// and must see that Forget(c) is called when c is done.
func (s *Set) Serve(ln net.Listener, handle func(c net.Conn)) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return s.errClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		ln.Close()
	}()

	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				return s.errClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn().Err(err).Dur("retry_in", backoff).Msg("accept failed")
				t := time.NewTimer(backoff)
				select {
				case <-t.C:
				case <-s.done:
					t.Stop()
					return s.errClosed
				}
				continue
			}
			return fmt.Errorf("%s: accept: %w", s.name, err)
		}
		backoff = 0
		if !s.track(c) {
			c.Close()
			return s.errClosed
		}
		handle(c)
	}
}

// isClosed reports whether Close has begun.
func (s *Set) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// track adds an accepted connection; it reports false after Close.
func (s *Set) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

// Forget closes and forgets an accepted connection.
func (s *Set) Forget(c net.Conn) {
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Close stops accepting: it closes every listener, and Serve returns
// errClosed. Connections already accepted stay open until CloseAll.
func (s *Set) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	close(s.done)
	for ln := range s.listeners {
		ln.Close()
	}
}

// CloseAll closes every accepted connection not yet forgotten. It closes
// them outside the lock: a Close can wait (for a write made inside a raw
// read of the same socket), and Forget must not wait behind it.
func (s *Set) CloseAll() {
	s.mu.Lock()
	cs := slices.Collect(maps.Keys(s.conns))
	s.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}

// Drain is the end of a shutdown, after Close and after the server has
// cut its sessions: it waits for idle to be closed (the sessions ended;
// nil means there were none), at most grace (the time the cut lines get
// to reach people) or until ctx ends; then it closes every connection
// left (those still in their handshake included) and waits for wg, the
// server's goroutines, or for ctx to end, when it returns ctx's error.
func (s *Set) Drain(ctx context.Context, idle <-chan struct{}, grace time.Duration, wg *sync.WaitGroup) error {
	if idle != nil {
		t := time.NewTimer(grace)
		select {
		case <-idle:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	s.CloseAll()
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
