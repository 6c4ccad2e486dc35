package recording

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"
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

// writer is what a Cast and a QueryLog share: the file, its buffer and
// hash, the flusher, and the sidecar.
type writer struct {
	rec     *Recorder
	log     zerolog.Logger
	now     func() time.Time
	sidecar string // path of the sidecar file

	stop    chan struct{} // closed by close to end flushLoop
	flushed chan struct{} // closed when flushLoop has returned

	closeOnce sync.Once
	closeMeta Meta  // set once by close
	closeErr  error // set once by close

	// mu guards every field below, and the state of the Cast or QueryLog
	// that owns the writer (scratch buffers, UTF-8 tails, event times).
	mu     sync.Mutex
	hf     *hashingFile
	bw     *bufio.Writer
	meta   Meta
	err    error // the first write, flush or sync error, wrapped
	closed bool  // set by close: later writes are dropped
	dirty  bool  // bw holds bytes that have not reached the file
}

// create makes the directories for m and creates its recording file
// (mode 0600, never an existing one), setting m.Path.
func (r *Recorder) create(m *Meta, ext string) (*os.File, error) {
	path := filepath.Join(r.dir, relPath(m.Start, m.ID, ext))
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

// open writes header to f and flushes it, writes the sidecar (state open)
// and starts the flusher. On error it closes f; removing the file is up to
// the caller, which created it.
func (r *Recorder) open(m Meta, f file, header []byte) (*writer, error) {
	hf := &hashingFile{f: f, h: sha256.New()}
	w := &writer{
		rec:     r,
		log:     r.log.With().Str("recording", m.ID).Str("session", m.Session).Logger(),
		now:     r.now,
		sidecar: m.Path + sidecarSuffix,
		stop:    make(chan struct{}),
		flushed: make(chan struct{}),
		hf:      hf,
		bw:      bufio.NewWriterSize(hf, bufferSize),
		meta:    m,
	}
	if _, err := w.bw.Write(header); err != nil {
		f.Close()
		return nil, fmt.Errorf("recording: write %s header: %w", m.ID, err)
	}
	if err := w.bw.Flush(); err != nil {
		f.Close()
		return nil, fmt.Errorf("recording: write %s header: %w", m.ID, err)
	}
	if !r.track(w.sidecar) {
		f.Close()
		return nil, fmt.Errorf("%w: %s", ErrExists, m.Path)
	}
	if err := writeSidecar(w.sidecar, m); err != nil {
		r.untrack(w.sidecar)
		f.Close()
		return nil, err
	}
	go w.flushLoop(r.flushEvery)
	w.log.Debug().Str("path", m.Path).Msg("recording started")
	return w, nil
}

// flushLoop flushes the buffer every interval while it holds anything. The
// writer owns it: close ends it and waits for it.
func (w *writer) flushLoop(every time.Duration) {
	defer close(w.flushed)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			w.mu.Lock()
			if w.dirty && w.err == nil {
				w.flushLocked()
			}
			w.mu.Unlock()
		}
	}
}

// writable reports whether a write would be kept. w.mu must be held.
func (w *writer) writable() bool { return !w.closed && w.err == nil }

// write buffers p. w.mu must be held.
func (w *writer) write(p []byte) {
	if _, err := w.bw.Write(p); err != nil {
		w.fail(err)
		return
	}
	w.dirty = true
}

// flushLocked flushes the buffer to the file. w.mu must be held.
func (w *writer) flushLocked() {
	if err := w.bw.Flush(); err != nil {
		w.fail(err)
	}
	w.dirty = false
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

// Err returns the first write error, or nil.
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

// close ends the flusher, runs final (with w.mu held) to write what the
// owner still holds, flushes, syncs and closes the file, and rewrites the
// sidecar. Only the first call does anything; every call returns its result.
func (w *writer) close(reason string, final func()) (Meta, error) {
	w.closeOnce.Do(func() {
		close(w.stop)
		<-w.flushed

		w.mu.Lock()
		if final != nil && w.writable() {
			final()
		}
		w.closed = true
		if w.err == nil {
			w.flushLocked()
		}
		if err := w.hf.f.Sync(); err != nil && w.err == nil {
			w.fail(err)
		}
		if err := w.hf.f.Close(); err != nil && w.err == nil {
			w.fail(err)
		}
		m := w.meta
		m.End = w.now()
		m.EndReason = reason
		m.Bytes = w.hf.n
		m.SHA256 = hex.EncodeToString(w.hf.h.Sum(nil))
		m.State = StateClosed
		if w.err != nil {
			m.State = StateIncomplete
		}
		w.meta = m
		writeErr := w.err
		w.mu.Unlock()

		sideErr := writeSidecar(w.sidecar, m)
		w.rec.untrack(w.sidecar)
		w.closeMeta, w.closeErr = m, errors.Join(writeErr, sideErr)
		w.log.Debug().Str("state", m.State).Int64("bytes", m.Bytes).Str("end_reason", reason).Msg("recording closed")
	})
	return w.closeMeta, w.closeErr
}
