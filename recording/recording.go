// Package recording writes and reads session recordings: asciicast v2 for
// SSH, JSON lines for PostgreSQL, each with a metadata record and a SHA-256
// that the audit trail seals. It does not decide what is recorded or seal
// anything itself: the proxies call it, and the caller writes the audit rows.
//
// Files are stored zstd-compressed by default (ID.cast.zst, ID.jsonl.zst),
// as concatenated zstd frames, one or more per flush, so a crash leaves the
// file readable up to its last flush; Config.Compression CompressionNone
// keeps plain files. The readers (ReadCast, ReadQueryLog, Open) take either.
// The SHA-256 covers the file's bytes as stored.
//
// Recording is off the caller's path: Output, Input, Resize and Log only
// append to the recording's pending buffer (one copy, no allocation once
// warm). A pool of at most GOMAXPROCS (and 4) worker goroutines per
// Recorder escapes, compresses, hashes and writes each recording's batches,
// one batch of a recording at a time, so the file keeps the order of the
// calls. A caller hands its recording to a worker once 128 KiB is pending,
// and waits once 1 MiB is (back-pressure: nothing is dropped). One flusher
// goroutine writes out every recording with pending bytes once per
// FlushInterval, and takes the buffers of recordings idle for a whole
// interval. The pool runs only while the Recorder has a recording open; an
// idle recording holds no buffer and no goroutine.
package recording

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/rs/zerolog"
)

// The kinds of recording.
const (
	KindSSH      = "ssh"
	KindPostgres = "postgres"
)

// The states of a recording, as its sidecar says.
const (
	// StateOpen is a recording being written, or one whose writer stopped
	// before closing it (RecoverIncomplete turns those into StateIncomplete).
	StateOpen = "open"
	// StateClosed is a recording closed normally: SHA256 covers every byte.
	StateClosed = "closed"
	// StateIncomplete is a recording that does not hold the whole session:
	// the proxy stopped before closing it, or a write failed. SHA256 still
	// covers exactly the bytes on disk.
	StateIncomplete = "incomplete"
)

// EndReasonCrashed is the EndReason RecoverIncomplete gives a recording that
// was still open when the proxy stopped.
const EndReasonCrashed = "proxy stopped before the recording was closed"

// Sentinel errors, checked with errors.Is.
var (
	// ErrExists means a recording with the same ID is already on disk for
	// that day: session and channel IDs must be unique.
	ErrExists = errors.New("recording: a recording with this ID already exists")
	// ErrTruncated ends a read sequence whose last line is cut short, as a
	// writer killed mid-write leaves it: every event before it is intact.
	ErrTruncated = errors.New("recording: the last line is cut short (the writer stopped mid-write)")
	// ErrMismatch means a recording file does not match the SHA-256 or size
	// its metadata holds: it was changed after it was sealed.
	ErrMismatch = errors.New("recording: the file does not match its metadata")
	// ErrNotSealed means the metadata holds no SHA-256 yet (StateOpen).
	ErrNotSealed = errors.New("recording: the recording is still open and has no SHA-256")
)

// Defaults for zero Config fields.
const defaultFlushInterval = time.Second

// Compression says how recording files are stored.
type Compression string

// The values of Config.Compression.
const (
	// CompressionZstd stores each recording as concatenated zstd frames
	// (ID.cast.zst, ID.jsonl.zst); `zstd -dc FILE` gives the plain file.
	CompressionZstd Compression = "zstd"
	// CompressionNone stores plain asciicast and JSON-lines files (ID.cast,
	// ID.jsonl).
	CompressionNone Compression = "none"
)

// Config configures a Recorder.
type Config struct {
	// Dir is the root of the recordings tree; it is created with mode 0700
	// if missing. Required.
	Dir string
	// RecordInput records what SSH users type ("i" events). False means
	// Cast.Input drops it: keystrokes include passwords typed at prompts.
	RecordInput bool
	// Compression is how files are stored: CompressionZstd or
	// CompressionNone. "" means CompressionZstd.
	Compression Compression
	// FlushInterval bounds how long a written event may sit in memory before
	// it reaches the file (the Recorder's one flusher goroutine flushes every
	// recording with unwritten bytes this often), so a crash of the proxy
	// loses at most that much; fsync happens only at Close. 0 means 1s.
	FlushInterval time.Duration
	// Now is the clock for start, end and event times; nil means time.Now.
	Now func() time.Time
	// Logger receives write failures and recoveries; the zero Logger logs
	// nothing. Lines name recordings by ID and never hold recorded data.
	Logger zerolog.Logger
}

// Recorder starts recordings under one directory. It is safe for
// concurrent use.
type Recorder struct {
	dir         string
	recordInput bool
	flushEvery  time.Duration
	now         func() time.Time
	log         zerolog.Logger
	compression Compression
	zenc        *zstd.Encoder // shared by every recording (EncodeAll is safe for concurrent use); nil for CompressionNone

	// disk holds a slot for each recording syncing files (maxSyncing).
	disk chan struct{}

	mu     sync.Mutex          // guards active and pool
	active map[string]struct{} // sidecar paths of recordings this Recorder has started and not yet closed
	pool   *pool               // the workers and flusher while a recording is open; nil while none is
}

// maxSyncing bounds how many recordings sync files at once: a close's
// last write and its three fsyncs (the file, the sidecar, the directory),
// or a start's sidecar. Each holds an OS thread while the disk works, and
// the cut of an amendment with thousands of sessions (or as many sessions
// starting at once) would otherwise put thousands of threads into the disk
// at once (Go stops the process at 10,000). Sixteen still lets the
// filesystem's journal commit many fsyncs together.
const maxSyncing = 16

// diskSlot waits for one of the maxSyncing slots and returns its release.
func (r *Recorder) diskSlot() (release func()) {
	r.disk <- struct{}{}
	return func() { <-r.disk }
}

// New validates cfg, creates cfg.Dir if needed and returns a Recorder.
func New(cfg Config) (*Recorder, error) {
	if cfg.Dir == "" {
		return nil, errors.New("recording: Config.Dir is empty")
	}
	if cfg.FlushInterval < 0 {
		return nil, errors.New("recording: Config.FlushInterval is negative")
	}
	switch cfg.Compression {
	case "":
		cfg.Compression = CompressionZstd
	case CompressionZstd, CompressionNone:
	default:
		return nil, fmt.Errorf("recording: Config.Compression %q: use %q or %q", cfg.Compression, CompressionZstd, CompressionNone)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("recording: create %s: %w", cfg.Dir, err)
	}
	r := &Recorder{
		dir:         cfg.Dir,
		recordInput: cfg.RecordInput,
		flushEvery:  cfg.FlushInterval,
		now:         cfg.Now,
		log:         cfg.Logger,
		compression: cfg.Compression,
		disk:        make(chan struct{}, maxSyncing),
		active:      make(map[string]struct{}),
	}
	if r.compression == CompressionZstd {
		enc, err := newEncoder()
		if err != nil {
			return nil, err
		}
		r.zenc = enc
	}
	if r.flushEvery == 0 {
		r.flushEvery = defaultFlushInterval
	}
	if r.now == nil {
		r.now = time.Now
	}
	return r, nil
}

// Meta describes one recording. It is what the sidecar file holds and what
// the audit trail seals.
type Meta struct {
	// ID names the recording: "SESSION-CHANNEL" for SSH, "SESSION" for
	// PostgreSQL.
	ID   string `json:"id"`
	Kind string `json:"kind"`
	// Session is the session ID; Channel the SSH channel within it.
	Session string `json:"session"`
	Channel string `json:"channel,omitempty"`
	// Person is the identity the session belongs to.
	Person string `json:"person"`
	// Login is the SSH login on the target.
	Login string `json:"login,omitempty"`
	// Role and Database are the PostgreSQL role and database.
	Role     string `json:"role,omitempty"`
	Database string `json:"database,omitempty"`
	Target   string `json:"target"`
	// Amendment is the amendment the session rode on.
	Amendment string `json:"amendment,omitempty"`
	// Command is the SSH exec command, or "" for a shell.
	Command string `json:"command,omitempty"`
	// Start is when recording began; End when it was closed (zero while
	// open).
	Start time.Time `json:"start"`
	End   time.Time `json:"end,omitzero"`
	// EndReason says why the session ended: "exit", "client closed",
	// "expired", "revoked by bob: reason", "proxy shutdown",
	// EndReasonCrashed, ...
	EndReason string `json:"end_reason,omitempty"`
	// Bytes is the size of the recording file, the bytes SHA256 covers.
	Bytes int64 `json:"bytes"`
	// SHA256 is the hex SHA-256 of the whole recording file as closed; ""
	// while open.
	SHA256 string `json:"sha256,omitempty"`
	// State is StateOpen, StateClosed or StateIncomplete.
	State string `json:"state"`
	// Path is the recording file, DIR/YYYY/MM/DD/ID.cast.zst (or
	// .jsonl.zst; .cast and .jsonl with CompressionNone), the date the UTC
	// day of Start. The sidecar, ID.cast.zst.meta.json beside it,
	// stores only the file name, so the tree can be moved; every Meta this
	// package returns has the full path.
	Path string `json:"path"`
}

// validID reports whether s can name a recording file: letters, digits,
// '.', '_' and '-', not starting with '.', at most 128 bytes.
func validID(s string) bool {
	if s == "" || len(s) > 128 || s[0] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// sidecarSuffix ends every sidecar file name: the recording's file name
// followed by it.
const sidecarSuffix = ".meta.json"

// relPath is where a recording with id, started at start, lives under the
// recordings directory: YYYY/MM/DD/ID.ext, the date in UTC.
func relPath(start time.Time, id, ext string) string {
	return filepath.Join(start.UTC().Format("2006/01/02"), id+ext)
}

// track records that the recording with sidecar path is open; it reports
// false if it already is.
func (r *Recorder) track(sidecar string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.active[sidecar]; ok {
		return false
	}
	r.active[sidecar] = struct{}{}
	return true
}

// untrack forgets an open recording.
func (r *Recorder) untrack(sidecar string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.active, sidecar)
}

// isOpen reports whether this Recorder has the recording with sidecar path
// open.
func (r *Recorder) isOpen(sidecar string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.active[sidecar]
	return ok
}
