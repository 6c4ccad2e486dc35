package recording

import (
	"sync"
	"time"
)

// maxWorkers caps the goroutines that encode, compress and write
// recordings for one Recorder.
const maxWorkers = 4

// pool is the goroutines that write a Recorder's recordings: a few workers,
// each taking one writer at a time from a queue, and one flusher. The
// Recorder starts a pool with its first open recording and stops it when
// the last one closes (attach, detach): the open recordings own it.
type pool struct {
	mu      sync.Mutex
	cond    sync.Cond            // L is &mu; signalled when queue grows or stop is set
	queue   []*writer            // writers with work, each at most once (writer.queued)
	open    map[*writer]struct{} // every open writer, for the flusher
	stopped bool                 // set by stop: workers return once queue is empty

	stopFlush chan struct{} // closed by stop to end flushLoop
	wg        sync.WaitGroup
}

// attach adds w to the Recorder's pool, starting one if none runs.
func (r *Recorder) attach(w *writer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pool == nil {
		r.pool = startPool(r.flushEvery)
	}
	p := r.pool
	w.pool = p
	p.mu.Lock()
	p.open[w] = struct{}{}
	p.mu.Unlock()
}

// detach removes a closed w from its pool; the last one out stops the
// pool and waits for its goroutines.
func (r *Recorder) detach(w *writer) {
	p := w.pool
	r.mu.Lock()
	p.mu.Lock()
	delete(p.open, w)
	last := len(p.open) == 0
	p.mu.Unlock()
	if last && r.pool == p {
		r.pool = nil
	}
	r.mu.Unlock()
	if last {
		p.stop()
	}
}

// startPool starts the workers and the flusher.
func startPool(flushEvery time.Duration) *pool {
	p := &pool{open: make(map[*writer]struct{}), stopFlush: make(chan struct{})}
	p.cond.L = &p.mu
	n := poolSize()
	p.wg.Add(n + 1)
	for range n {
		go p.work()
	}
	go p.flushLoop(flushEvery)
	return p
}

// stop ends the pool's goroutines and waits for them. Every writer has
// closed by then, so the queue is empty.
func (p *pool) stop() {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	p.cond.Broadcast()
	close(p.stopFlush)
	p.wg.Wait()
}

// enqueue puts w at the end of the queue. The caller holds w.mu and has
// set w.queued.
func (p *pool) enqueue(w *writer) {
	p.mu.Lock()
	p.queue = append(p.queue, w)
	p.mu.Unlock()
	p.cond.Signal()
}

// next takes the writer at the front of the queue, waiting for one; nil
// once the pool is stopped.
func (p *pool) next() *writer {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.queue) == 0 {
		if p.stopped {
			return nil
		}
		p.cond.Wait()
	}
	w := p.queue[0]
	n := copy(p.queue, p.queue[1:])
	p.queue[n] = nil
	p.queue = p.queue[:n]
	return w
}

// work is one worker: it handles one batch of one writer at a time, so a
// busy recording cannot starve the others (it goes to the back of the
// queue after each batch).
func (p *pool) work() {
	defer p.wg.Done()
	var s scratch
	for {
		w := p.next()
		if w == nil {
			return
		}
		w.work(&s)
	}
}

// flushLoop visits every open writer once per interval (writer.tick).
func (p *pool) flushLoop(every time.Duration) {
	defer p.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	var ws []*writer
	for {
		select {
		case <-p.stopFlush:
			return
		case <-t.C:
		}
		p.mu.Lock()
		ws = ws[:0]
		for w := range p.open {
			ws = append(ws, w)
		}
		p.mu.Unlock()
		for _, w := range ws {
			w.tick()
		}
		clear(ws)
	}
}
