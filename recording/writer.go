package recording

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/rs/zerolog"
)

// Limits on what one recording holds in memory.
const (
	// maxPending is how many bytes the callers of one recording may have
	// appended and no worker has taken yet. Past it, Output and Log wait
	// (back-pressure): nothing recorded is dropped, nothing grows without
	// bound. A worker holds at most one more batch of that size.
	maxPending = 1 << 20
	// handoff is how much pending makes the caller hand the recording to
	// a worker at once. Less waits for the flusher's next visit, so a
	// stream of small writes (a shell's echo) wakes no goroutine per write.
	handoff = 128 << 10
	// frameTarget is how much file content (before compression) a worker
	// gathers at most before it writes it out as one zstd frame; it writes
	// out the rest of a batch at the batch's end.
	frameTarget = 1 << 20
	// escapeStep is how many raw bytes are escaped between two checks of
	// frameTarget, which bounds the content buffer at about frameTarget +
	// 6*escapeStep.
	escapeStep = 64 << 10
	// contentCap bounds the content buffer: a frame's worth, plus what
	// escaping one step can add (6 bytes for each byte at most), plus an
	// event's start and end.
	contentCap = frameTarget + 6*escapeStep + 4<<10
)

// file is what a recording is written to: the *os.File that create opens,
// or in tests a device or a writer that fails on purpose.
type file interface {
	io.Writer
	Sync() error
	Close() error
}

// hashingFile passes writes on to f and hashes and counts the bytes f
// accepted, so the SHA-256 covers exactly what is in the file without
// reading it back.
type hashingFile struct {
	f file
	h hash.Hash
	n int64
}

func (w *hashingFile) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	return n, err
}

// writer is what a Cast and a QueryLog share: the pending buffer their
// callers append to, the file with its hash, and the sidecar. A worker of
// the Recorder's pool turns pending bytes into file content (encode),
// compresses it and writes it; one worker at a time per writer, so the
// file keeps the order of the calls.
type writer struct {
	rec     *Recorder
	pool    *pool
	log     zerolog.Logger
	now     func() time.Time
	sidecar string // path of the sidecar file
	zenc    *zstd.Encoder
	// encode appends the file content for one batch of pending bytes to
	// w.content, calling w.spill when it may have grown past frameTarget.
	// It runs on the worker that owns the writer, or in close.
	encode func(batch []byte) error
	// final appends what the owner still holds at close (a split UTF-8
	// tail) to w.content, at the time close was called; nil means nothing.
	final func(at time.Time)

	closeOnce sync.Once
	closeMeta Meta  // set once by close
	closeErr  error // set once by close

	// mu guards the fields below, up to the next comment, and the state of
	// the Cast or QueryLog that the callers touch (event times).
	mu        sync.Mutex
	cond      sync.Cond // L is &mu; broadcast when a worker takes or finishes a batch
	pending   []byte    // appended by the callers, not yet taken by a worker
	spare     []byte    // the last batch's buffer, for the next swap
	queued    bool      // in the pool's queue or being worked on: pending has an owner
	flushWant bool      // the flusher asked for everything to reach the file
	unflushed bool      // bytes were appended since the flusher last looked
	meta      Meta
	err       error // the first write, flush or sync error, wrapped
	closed    bool  // set by close: later writes are dropped

	// Owned by the worker that dequeued the writer, or by close once no
	// worker has it (queued false).
	hf *hashingFile
	// content and zbuf are lent by the worker for one batch (nil between
	// batches, so a recording holds no encoding buffer; close and open use
	// their own).
	content []byte // file content not yet written (before compression)
	zbuf    []byte // the compressed frame being written
}

// scratch is a worker's encoding buffers, lent to each writer it works on.
type scratch struct {
	content, zbuf []byte
}

// create makes the directories for m and creates its recording file
// (mode 0600, never an existing one), setting m.Path.
func (r *Recorder) create(m *Meta, ext string) (*os.File, error) {
	path := filepath.Join(r.dir, relPath(m.Start, m.ID, r.ext(ext)))
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("recording: create %s: %w", filepath.Dir(path), err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("%w: %s", ErrExists, path)
	}
	if err != nil {
		return nil, fmt.Errorf("recording: create %s: %w", path, err)
	}
	m.Path = path
	return f, nil
}

// open writes header to f (one frame of its own), writes the sidecar
// (state open) and registers the writer with the Recorder's pool. On error
// it closes f; removing the file is up to the caller, which created it.
// The caller sets encode (and final) before the first write.
func (r *Recorder) open(m Meta, f file, header []byte) (*writer, error) {
	w := &writer{
		rec:     r,
		log:     r.log.With().Str("recording", m.ID).Str("session", m.Session).Logger(),
		now:     r.now,
		sidecar: m.Path + sidecarSuffix,
		zenc:    r.zenc,
		hf:      &hashingFile{f: f, h: sha256.New()},
		meta:    m,
	}
	w.cond.L = &w.mu
	w.content = header
	err := w.spill()
	w.content, w.zbuf = nil, nil
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("recording: write %s header: %w", m.ID, err)
	}
	if !r.track(w.sidecar) {
		f.Close()
		return nil, fmt.Errorf("%w: %s", ErrExists, m.Path)
	}
	release := r.diskSlot()
	err = writeSidecar(w.sidecar, m)
	release()
	if err != nil {
		r.untrack(w.sidecar)
		f.Close()
		return nil, err
	}
	r.attach(w)
	w.log.Debug().Str("path", m.Path).Msg("recording started")
	return w, nil
}

// writable reports whether a write would be kept. w.mu must be held.
func (w *writer) writable() bool { return !w.closed && w.err == nil }

// reserve waits until pending has room for n more bytes, or holds nothing
// (a single write larger than maxPending goes in whole). It reports whether
// the write is to be kept. w.mu must be held.
func (w *writer) reserve(n int) bool {
	for w.writable() && len(w.pending) > 0 && len(w.pending)+n > maxPending {
		w.queue()
		w.cond.Wait()
	}
	return w.writable()
}

// appended notes what the caller has just appended to pending, and hands
// the recording to a worker once pending has reached handoff; smaller
// amounts wait for the flusher. w.mu must be held.
func (w *writer) appended() {
	w.unflushed = true
	if len(w.pending) >= handoff {
		w.queue()
	}
}

// grow makes room in pending for n more bytes. Small recordings grow as
// append grows them; one that reaches handoff is a bulk transfer, and gets
// the whole maxPending at once, so that it allocates nothing after its
// first two batches (pending and spare take turns).
func (w *writer) grow(n int) {
	need := len(w.pending) + n
	if need <= cap(w.pending) || need < handoff {
		return
	}
	w.pending = slices.Grow(w.pending, max(need, maxPending+escapeStep)-len(w.pending))
}

// queue puts the writer in its pool's queue unless a worker has it
// already. w.mu must be held.
func (w *writer) queue() {
	if !w.queued {
		w.queued = true
		w.pool.enqueue(w)
	}
}

// spill writes out the file content gathered so far: compressed as one
// zstd frame, or as it is. It runs on the writer's owner (see content).
func (w *writer) spill() error {
	if len(w.content) == 0 {
		return nil
	}
	out := w.content
	if w.zenc != nil {
		if need := w.zenc.MaxEncodedSize(len(w.content)); cap(w.zbuf) < need {
			if len(w.content) >= frameTarget {
				need = w.zenc.MaxEncodedSize(contentCap) // once for a bulk transfer
			}
			w.zbuf = make([]byte, 0, need)
		}
		w.zbuf = w.zenc.EncodeAll(w.content, w.zbuf[:0])
		out = w.zbuf
	}
	w.content = w.content[:0]
	_, err := w.hf.Write(out)
	return err
}

// spillIfFull writes out the content once it has reached frameTarget.
func (w *writer) spillIfFull() error {
	if len(w.content) < frameTarget {
		return nil
	}
	return w.spill()
}

// work handles one batch: it is what a pool worker runs for a writer it
// dequeued, with the worker's buffers. It takes pending, encodes it and
// writes it out, as one frame or more, and queues the writer again if
// handoff bytes were appended meanwhile.
func (w *writer) work(s *scratch) {
	w.mu.Lock()
	batch := w.pending
	w.pending, w.spare = w.spare[:0], nil
	w.flushWant = false // the whole batch reaches the file below
	failed := w.err != nil
	w.mu.Unlock()
	w.cond.Broadcast() // room in pending

	var err error
	if !failed && len(batch) > 0 {
		w.content, w.zbuf = s.content[:0], s.zbuf
		if len(batch) >= handoff && cap(w.content) < contentCap {
			w.content = slices.Grow(w.content, contentCap)
		}
		err = w.encode(batch)
		if err == nil {
			err = w.spill()
		}
		s.content, s.zbuf = w.content, w.zbuf
		w.content, w.zbuf = nil, nil
	}

	w.mu.Lock()
	w.spare = batch[:0]
	if err != nil {
		w.fail(err)
	}
	if w.err != nil {
		w.pending, w.spare = nil, nil
	}
	if len(w.pending) >= handoff || w.flushWant {
		w.pool.enqueue(w)
	} else {
		w.queued = false
	}
	w.mu.Unlock()
	w.cond.Broadcast() // done with a batch: close and reserve may go on
}

// tick is the flusher's visit, once per flush interval: a writer that was
// written since the last visit gets flushed; one that was not, and that no
// worker holds, gives its buffers back.
func (w *writer) tick() {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.closed || w.err != nil:
	case w.unflushed:
		w.unflushed = false
		if len(w.pending) > 0 { // else a worker has it all already
			w.flushWant = true
			w.queue()
		}
	case !w.queued && len(w.pending) == 0:
		// Idle for a whole interval: everything is in the file.
		w.pending, w.spare = nil, nil
	}
}

// fail remembers the first error; every later write is dropped. w.mu must
// be held.
func (w *writer) fail(err error) {
	if w.err != nil {
		return
	}
	w.err = fmt.Errorf("recording: write %s: %w", w.meta.ID, err)
	w.log.Error().Err(err).Msg("recording write failed; the rest of the session is not recorded")
}

// Err returns the first write error, or nil. Writes happen on the
// Recorder's workers, so an error shows here some time after the call whose
// bytes failed, at the latest when Close returns.
func (w *writer) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// snapshot returns the metadata as it is now.
func (w *writer) snapshot() Meta {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.meta
}

// close stops taking writes, waits for a worker that has the writer to
// finish its batch, encodes what is still pending, runs final to write
// what the owner still holds, writes out the rest, syncs and closes the
// file, and rewrites the sidecar. Only the first call does anything; every
// call returns its result.
func (w *writer) close(reason string) (Meta, error) {
	w.closeOnce.Do(func() {
		end := w.now() // before any wait for the disk
		w.mu.Lock()
		w.closed = true
		w.cond.Broadcast() // writers waiting for room: drop their bytes
		for w.queued {
			w.cond.Wait()
		}
		// No worker has the writer, and none will again: a closed writer
		// takes no writes and the flusher skips it, so once its last batch
		// is done nothing queues it. Its file and buffers are close's now, so the last write, the fsync
		// and the close run without the lock, as a worker's batch does:
		// the Recorder's flusher, Meta and Err need not wait for the disk.
		failed := w.err != nil
		w.mu.Unlock()
		release := w.rec.diskSlot()
		var errs []error
		if !failed {
			err := w.encode(w.pending)
			if err == nil && w.final != nil {
				w.final(end)
			}
			if err == nil {
				err = w.spill()
			}
			errs = append(errs, err)
		}
		errs = append(errs, w.hf.f.Sync(), w.hf.f.Close())
		w.mu.Lock()
		for _, err := range errs {
			if err != nil {
				w.fail(err)
			}
		}
		m := w.meta
		m.End = end
		m.EndReason = reason
		m.Bytes = w.hf.n
		m.SHA256 = hex.EncodeToString(w.hf.h.Sum(nil))
		m.State = StateClosed
		if w.err != nil {
			m.State = StateIncomplete
		}
		w.meta = m
		w.pending, w.spare, w.content, w.zbuf = nil, nil, nil, nil
		writeErr := w.err
		w.mu.Unlock()

		sideErr := writeSidecar(w.sidecar, m)
		release()
		w.rec.detach(w)
		w.rec.untrack(w.sidecar)
		w.closeMeta, w.closeErr = m, errors.Join(writeErr, sideErr)
		w.log.Debug().Str("state", m.State).Int64("bytes", m.Bytes).Str("end_reason", reason).Msg("recording closed")
	})
	return w.closeMeta, w.closeErr
}
