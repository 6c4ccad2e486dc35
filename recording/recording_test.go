package recording

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// t0 is when every test recording starts.
var t0 = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

// clock is a Now that moves only when told.
type clock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func newClock() *clock { return &clock{t: t0} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newRecorder returns a Recorder on a fresh directory with a fake clock;
// cfg's zero Dir and Now are filled in.
func newRecorder(t *testing.T, cfg Config) (*Recorder, *clock) {
	t.Helper()
	clk := newClock()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.Now == nil {
		cfg.Now = clk.Now
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r, clk
}

// sshMeta is the channel most tests record.
func sshMeta() SSHMeta {
	return SSHMeta{
		Session:   "s1",
		Channel:   "0",
		Person:    "alice@example.com",
		Login:     "ubuntu",
		Target:    "web-1",
		Amendment: "a1b2",
		Width:     100,
		Height:    30,
		Term:      "xterm-256color",
		Env:       map[string]string{"SHELL": "/bin/bash", "LANG": "C.UTF-8"},
	}
}

// startCast starts a cast of sshMeta and closes it at the end of the test
// if the test did not.
func startCast(t *testing.T, r *Recorder) *Cast {
	t.Helper()
	c, err := r.StartSSH(sshMeta())
	if err != nil {
		t.Fatalf("StartSSH: %v", err)
	}
	t.Cleanup(func() { c.Close("test over") })
	return c
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -update rewrites it)\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// readFile reads path or fails the test.
func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readEvents reads every event of the cast at path; truncated reports
// whether the sequence ended with ErrTruncated.
func readEvents(t *testing.T, path string) (h Header, events []Event, truncated bool) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, seq := ReadCast(f)
	for e, err := range seq {
		if errors.Is(err, ErrTruncated) {
			truncated = true
			break
		}
		if err != nil {
			t.Fatalf("ReadCast %s: %v", path, err)
		}
		events = append(events, e)
	}
	return h, events, truncated
}

// readPlain returns the plain content of the recording at path, whether
// it is stored compressed or not.
func readPlain(t *testing.T, path string) []byte {
	t.Helper()
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return b
}

// compressions is every Compression, for tests that run with each.
var compressions = []Compression{CompressionZstd, CompressionNone}

// outputText is the concatenated data of the output events.
func outputText(events []Event) string {
	var b bytes.Buffer
	for _, e := range events {
		if e.Type == "o" {
			b.WriteString(e.Data)
		}
	}
	return b.String()
}

// checkLines fails the test unless every line of b is valid JSON.
func checkLines(t *testing.T, b []byte) {
	t.Helper()
	for i, line := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
		if !json.Valid(line) {
			t.Errorf("line %d is not JSON: %q", i+1, line)
		}
	}
}

// failingFile is a file that accepts limit bytes and then fails every
// write with err, as a full disk does.
type failingFile struct {
	mu    sync.Mutex // guards buf
	buf   bytes.Buffer
	limit int
	err   error
}

func (f *failingFile) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	room := f.limit - f.buf.Len()
	if room >= len(p) {
		return f.buf.Write(p)
	}
	n, _ := f.buf.Write(p[:max(room, 0)])
	return n, f.err
}

func (f *failingFile) Sync() error  { return nil }
func (f *failingFile) Close() error { return nil }

func (f *failingFile) Bytes() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return bytes.Clone(f.buf.Bytes())
}

var _ io.Writer = (*failingFile)(nil)

func TestNewConfig(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cfg     Config
		wantErr bool
	}{
		{"ok", Config{Dir: filepath.Join(dir, "rec")}, false},
		{"no dir", Config{}, true},
		{"negative flush", Config{Dir: dir, FlushInterval: -time.Second}, true},
		{"zstd", Config{Dir: filepath.Join(dir, "zstd"), Compression: CompressionZstd}, false},
		{"none", Config{Dir: filepath.Join(dir, "none"), Compression: CompressionNone}, false},
		{"unknown compression", Config{Dir: dir, Compression: "gzip"}, true},
		{"dir is a file", Config{Dir: notDir}, true},
		{"dir under a file", Config{Dir: filepath.Join(notDir, "rec")}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(tt.cfg)
			if (err != nil) != tt.wantErr {
				t.Fatalf("New: got error %v; want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if r.flushEvery != time.Second {
				t.Errorf("flush interval: got %v; want 1s", r.flushEvery)
			}
			fi, err := os.Stat(tt.cfg.Dir)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != 0o700 {
				t.Errorf("dir mode: got %v; want 0700", got)
			}
		})
	}
}
