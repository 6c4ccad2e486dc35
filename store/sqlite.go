package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver (pure Go)

	"github.com/jitproxy/jitproxy/amendment"
)

// busyTimeout is how long a connection waits for a lock another process
// holds (another jitproxy process on the same file, a backup) before it
// fails with SQLITE_BUSY. Within one process writes never wait on SQLite's
// lock: they queue on SQLite.wsem.
const busyTimeout = 5 * time.Second

// SQLiteConfig configures the embedded SQLite store.
type SQLiteConfig struct {
	// Path is the database file, e.g. DATA/jitproxy.db. Its directory is
	// created with mode 0700 and the file with mode 0600 (a looser mode on
	// an existing file is tightened). Required.
	Path string
	// Logger receives open, migration and audit lines; the zero Logger logs
	// nothing.
	Logger zerolog.Logger
	// EventBuffer is how many committed changes a subscriber may fall
	// behind by before its channel is closed; 0 means 1024.
	EventBuffer int
}

// SQLite is the embedded store: one database file in WAL mode with
// synchronous=FULL (every commit is on disk before it returns, as an audit
// trail must be). Writes go through one connection, one at a time, each in
// a BEGIN IMMEDIATE transaction; reads use a pool of read-only connections
// and never wait for writes.
type SQLite struct {
	path string
	log  zerolog.Logger
	hub  *hub

	// w is the write pool: exactly one connection. wsem is held from the
	// start of a write transaction until its changes are published, so
	// commits and publishes happen in the same order; it is a channel so
	// that waiting for it ends with the caller's context.
	w    *sql.DB
	wsem chan struct{}
	// r is the read pool (query_only connections).
	r *sql.DB
	// audits batches concurrent AppendAudit calls (sqlite_audit.go).
	audits auditQueue

	mu     sync.Mutex // guards closed
	closed bool
}

var _ Store = (*SQLite)(nil)

// OpenSQLite opens (creating if needed) the database at cfg.Path, applies
// the embedded schema migrations that it lacks in one transaction, and
// returns the store. A database that records a migration this build does not
// know (written by a newer jitproxy) is refused with an error matching
// ErrNewerSchema.
func OpenSQLite(ctx context.Context, cfg SQLiteConfig) (*SQLite, error) {
	path, err := checkSQLiteConfig(cfg)
	if err != nil {
		return nil, err
	}
	if err := prepareFile(path, cfg.Logger); err != nil {
		return nil, err
	}
	s := &SQLite{
		path: path,
		log:  cfg.Logger,
		hub:  newHub(cfg.Logger, cfg.EventBuffer),
		wsem: make(chan struct{}, 1),
	}
	if err := s.open(ctx); err != nil {
		s.closePools()
		return nil, err
	}
	return s, nil
}

func checkSQLiteConfig(cfg SQLiteConfig) (string, error) {
	switch {
	case cfg.Path == "":
		return "", errors.New("store: open sqlite: Config.Path is empty: name the database file, e.g. DATA/jitproxy.db")
	case cfg.Path == ":memory:" || strings.HasPrefix(cfg.Path, "file:"):
		return "", fmt.Errorf("store: open sqlite: Config.Path %q is not a file path: the store needs a file (its reads and writes use separate connections)", cfg.Path)
	case cfg.EventBuffer < 0:
		return "", fmt.Errorf("store: open sqlite: Config.EventBuffer is %d: use a positive size, or 0 for the default", cfg.EventBuffer)
	}
	path, err := filepath.Abs(cfg.Path)
	if err != nil {
		return "", fmt.Errorf("store: open sqlite: %w", err)
	}
	return path, nil
}

// prepareFile creates the directory (0700) and the database file (0600)
// before SQLite does, because SQLite would create the file with 0644 less
// the umask, and creates its -wal and -shm files with the mode of the
// database file.
func prepareFile(path string, log zerolog.Logger) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("store: open sqlite: create data directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("store: open sqlite: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("store: open sqlite: %w", err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("store: open sqlite: %w", err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(p, 0o600); err != nil {
				return fmt.Errorf("store: open sqlite: restrict %s to mode 0600: %w", p, err)
			}
			log.Warn().Str("path", p).Stringer("was", fi.Mode().Perm()).Msg("store: database file was readable by others; set its mode to 0600")
		}
	}
	return nil
}

// sqliteDSN is a file: URI for path with the driver parameters in params.
// The path is escaped, so it may hold any character.
func sqliteDSN(path string, params url.Values) string {
	u := url.URL{Scheme: "file", Path: path, RawQuery: params.Encode()}
	return u.String()
}

func (s *SQLite) open(ctx context.Context) error {
	common := url.Values{
		"_busy_timeout": {fmt.Sprint(busyTimeout.Milliseconds())},
		"_foreign_keys": {"on"},
	}
	wp := url.Values{
		"_journal_mode": {"WAL"},
		"_synchronous":  {"FULL"},
		"_txlock":       {"immediate"},
	}
	for k, v := range common {
		wp[k] = v
	}
	var err error
	if s.w, err = sql.Open("sqlite", sqliteDSN(s.path, wp)); err != nil {
		return fmt.Errorf("store: open sqlite %s: %w", s.path, err)
	}
	s.w.SetMaxOpenConns(1)
	s.w.SetMaxIdleConns(1)
	s.w.SetConnMaxLifetime(0)
	s.w.SetConnMaxIdleTime(0)

	var mode string
	if err := s.w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("store: open sqlite %s: %w", s.path, err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("store: open sqlite %s: journal mode is %q, not wal (is the file on a file system without shared memory?)", s.path, mode)
	}
	applied, err := s.migrate(ctx)
	if err != nil {
		return err
	}

	rp := url.Values{"_query_only": {"on"}}
	for k, v := range common {
		rp[k] = v
	}
	if s.r, err = sql.Open("sqlite", sqliteDSN(s.path, rp)); err != nil {
		return fmt.Errorf("store: open sqlite %s: %w", s.path, err)
	}
	// Each AuditEvents iteration holds a read connection until it ends, so
	// allow a few more than there are cores.
	n := max(4, 2*runtime.GOMAXPROCS(0))
	s.r.SetMaxOpenConns(n)
	s.r.SetMaxIdleConns(n)
	if err := s.r.PingContext(ctx); err != nil {
		return fmt.Errorf("store: open sqlite %s: %w", s.path, err)
	}
	s.log.Info().Str("path", s.path).Ints("migrations_applied", applied).Msg("store: sqlite open")
	return nil
}

// write runs fn in a write transaction and, once it has committed and
// before the next write can start, runs committed (which publishes). A
// failed fn or commit rolls everything back and runs nothing.
func (s *SQLite) write(ctx context.Context, fn func(tx *sql.Tx) error, committed func()) error {
	select {
	case s.wsem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.wsem }()

	if err := s.inTx(ctx, fn); err != nil {
		return err
	}
	if committed != nil {
		committed()
	}
	return nil
}

// inTx runs fn in a write transaction (BEGIN IMMEDIATE) and commits it; a
// failed fn rolls it back. The caller holds wsem.
func (s *SQLite) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil) // BEGIN IMMEDIATE (see _txlock)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback() // the error that matters is fn's
		return err
	}
	return tx.Commit()
}

// Subscribe returns committed amendment changes in commit order until ctx
// ends or the store closes. See amendment.Store.Subscribe: a subscriber
// that falls behind by more than Config.EventBuffer changes has its channel
// closed. Only changes made through this SQLite value are published, not
// those another process writes to the same file.
func (s *SQLite) Subscribe(ctx context.Context) <-chan amendment.Change {
	return s.hub.subscribe(ctx)
}

// Ready reports whether both the read and the write connections answer.
func (s *SQLite) Ready(ctx context.Context) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return errors.New("store: ready: the store is closed")
	}
	if err := s.r.PingContext(ctx); err != nil {
		return fmt.Errorf("store: ready: %w", err)
	}
	if err := s.w.PingContext(ctx); err != nil {
		return fmt.Errorf("store: ready: %w", err)
	}
	return nil
}

// Close waits for a write in progress to commit and publish, closes every
// subscriber channel, then closes the database; calls after Close fail.
// Close is idempotent.
func (s *SQLite) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.wsem <- struct{}{}
	defer func() { <-s.wsem }() // queued writers then fail on the closed pool
	s.hub.close()
	if err := s.closePools(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	s.log.Info().Str("path", s.path).Msg("store: sqlite closed")
	return nil
}

func (s *SQLite) closePools() error {
	var errs []error
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	if s.w != nil {
		errs = append(errs, s.w.Close())
	}
	return errors.Join(errs...)
}

// timeLayout is how every time is stored: UTC, exactly six fractional
// digits. It is RFC 3339, round-trips at the microsecond precision that
// amendment and audit keep, and sorts correctly as text.
const timeLayout = "2006-01-02T15:04:05.000000Z"

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

func parseTime(s string) (time.Time, error) { return time.Parse(timeLayout, s) }
