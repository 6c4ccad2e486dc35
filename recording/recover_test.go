package recording

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"iter"
	"os"
	"strings"
	"testing"
	"time"
)

// abandon stops w as kill -9 would: it takes no more writes, the file is
// closed without writing what is still pending, and the sidecar still
// says open.
func (w *writer) abandon() {
	w.closeOnce.Do(func() {
		w.mu.Lock()
		w.closed = true
		for w.queued {
			w.cond.Wait()
		}
		w.hf.f.Close()
		w.mu.Unlock()
		w.rec.detach(w)
	})
}

// cutFrame returns the first half of s compressed as one zstd frame, as a
// writer killed mid-write leaves the last frame.
func cutFrame(t *testing.T, s string) string {
	t.Helper()
	enc, err := newEncoder()
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	f := enc.EncodeAll([]byte(s), nil)
	return string(f[:len(f)/2])
}

// waitFor polls cond every few milliseconds for up to 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRecoverIncomplete(t *testing.T) {
	tests := []struct {
		name    string
		start   func(t *testing.T, r *Recorder, clk *clock) (w *writer, count func(path string) int)
		partial string // what the crash left of the last line
	}{
		{"ssh", func(t *testing.T, r *Recorder, clk *clock) (*writer, func(string) int) {
			c, err := r.StartSSH(sshMeta())
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range []string{"one\r\n", "two\r\n"} {
				clk.Advance(time.Second)
				c.Output([]byte(s))
			}
			return c.w, func(path string) int { _, events, _ := readEvents(t, path); return len(events) }
		}, `[3.000000, "o", "thr`},
		{"postgres", func(t *testing.T, r *Recorder, clk *clock) (*writer, func(string) int) {
			q, err := r.StartPostgres(pgMeta())
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range statements()[:2] {
				q.Log(s)
			}
			return q.w, func(path string) int {
				f, err := os.Open(path)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				_, seq := ReadQueryLog(f)
				n := 0
				for _, err := range seq {
					if err != nil {
						break
					}
					n++
				}
				return n
			}
		}, `{"type":"statement","time":"2026-11-29T12:00:09Z","kind":"que`},
	}
	for _, tt := range tests {
		for _, comp := range compressions {
			t.Run(tt.name+"/"+string(comp), func(t *testing.T) { testRecover(t, comp, tt.start, tt.partial) })
		}
	}
}

func testRecover(t *testing.T, comp Compression, start func(t *testing.T, r *Recorder, clk *clock) (w *writer, count func(path string) int), partial string) {
	r1, clk := newRecorder(t, Config{FlushInterval: 20 * time.Millisecond, Compression: comp})
	w, count := start(t, r1, clk)
	path := w.snapshot().Path
	waitFor(t, "the flusher wrote 2 records", func() bool { return count(path) == 2 })
	w.abandon()

	// The crash cut a line short.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if comp == CompressionZstd {
		partial = cutFrame(t, partial+"\n")
	}
	if _, err := f.WriteString(partial); err != nil {
		t.Fatal(err)
	}
	f.Close()
	mtime := t0.Add(time.Hour)
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}

	r2, err := New(Config{Dir: r1.dir})
	if err != nil {
		t.Fatal(err)
	}
	got, err := r2.RecoverIncomplete()
	if err != nil {
		t.Fatalf("RecoverIncomplete: %v", err)
	}
	if len(got) != 1 {
		t.Fatalf("got %d recovered; want 1", len(got))
	}
	m := got[0]
	b := readFile(t, path)
	sum := sha256.Sum256(b)
	if m.State != StateIncomplete || m.EndReason != EndReasonCrashed || !m.End.Equal(mtime) ||
		m.SHA256 != hex.EncodeToString(sum[:]) || m.Bytes != int64(len(b)) || m.Path != path {
		t.Errorf("got %+v; want incomplete, %q, end %v, sha256 %x of %d bytes at %s", m, EndReasonCrashed, mtime, sum, len(b), path)
	}
	side, err := readSidecar(path + sidecarSuffix)
	if err != nil || fmt.Sprint(side) != fmt.Sprint(m) {
		t.Errorf("sidecar: got %+v, %v; want %+v", side, err, m)
	}
	if err := VerifyFile(m); err != nil {
		t.Errorf("VerifyFile: %v", err)
	}
	if n := count(path); n != 2 {
		t.Errorf("read %d records of the crashed file; want the 2 complete ones", n)
	}
	if again, err := r2.RecoverIncomplete(); err != nil || len(again) != 0 {
		t.Errorf("second RecoverIncomplete: got %d, %v; want none", len(again), err)
	}
}

func TestReadCastTruncated(t *testing.T) {
	r, clk := newRecorder(t, Config{})
	c := startCast(t, r)
	for _, s := range []string{"one\r\n", "two\r\n"} {
		clk.Advance(time.Second)
		c.Output([]byte(s))
	}
	m, err := c.Close("exit")
	if err != nil {
		t.Fatal(err)
	}
	whole := string(readPlain(t, m.Path))
	lines := strings.SplitAfter(whole, "\n")
	tests := []struct {
		name          string
		content       string
		wantEvents    int
		wantTruncated bool
		wantErr       bool
	}{
		{"whole", whole, 2, false, false},
		{"no final newline", strings.TrimSuffix(whole, "\n"), 2, false, false},
		{"cut mid-event", whole + `[3.0, "o", "thr`, 2, true, false},
		{"cut mid-escape", whole + `[3.0, "o", "a\u00`, 2, true, false},
		{"cut after the time", whole + `[3.0`, 2, true, false},
		{"header only", lines[0], 0, false, false},
		{"garbage in the middle", lines[0] + "not json\n" + lines[1], 0, false, true},
		{"wrong arity", lines[0] + `[1.0, "o"]` + "\n", 0, false, true},
		{"negative time", lines[0] + `[-1.0, "o", "x"]` + "\n", 0, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, seq := ReadCast(strings.NewReader(tt.content))
			if h.Version != 2 || h.Width != 100 {
				t.Errorf("header: got %+v; want version 2, width 100", h)
			}
			n, truncated, bad := countEvents(seq)
			if n != tt.wantEvents || truncated != tt.wantTruncated || bad != tt.wantErr {
				t.Errorf("got %d events, truncated %v, error %v; want %d, %v, %v", n, truncated, bad, tt.wantEvents, tt.wantTruncated, tt.wantErr)
			}
		})
	}
}

func TestReadCastBadHeader(t *testing.T) {
	tests := []struct {
		name    string
		content string
	}{
		{"empty", ""},
		{"not json", "hello\n"},
		{"version 1", `{"version":1,"width":80,"height":24}` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, seq := ReadCast(strings.NewReader(tt.content))
			if h.Version != 0 {
				t.Errorf("header: got %+v; want zero", h)
			}
			var errs int
			for _, err := range seq {
				if err == nil {
					t.Error("got an event; want only an error")
				}
				errs++
			}
			if errs != 1 {
				t.Errorf("got %d errors; want 1", errs)
			}
		})
	}
}

func TestRecoverSkipsOpenAndMissing(t *testing.T) {
	crashed, _ := newRecorder(t, Config{})
	r, err := New(Config{Dir: crashed.dir, Now: newClock().Now})
	if err != nil {
		t.Fatal(err)
	}
	live := startCast(t, r)

	q, err := crashed.StartPostgres(pgMeta())
	if err != nil {
		t.Fatal(err)
	}
	q.w.abandon()
	lost := q.Meta().Path
	if err := os.Remove(lost); err != nil {
		t.Fatal(err)
	}

	got, err := r.RecoverIncomplete()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != "p7" || got[0].State != StateIncomplete || got[0].SHA256 != "" ||
		!strings.Contains(got[0].EndReason, "missing") {
		t.Errorf("got %+v; want only p7, incomplete, no hash, the file missing", got)
	}
	side, err := readSidecar(live.Meta().Path + sidecarSuffix)
	if err != nil || side.State != StateOpen {
		t.Errorf("live recording's sidecar: got %+v, %v; want still open", side, err)
	}
}

// countEvents reads seq to its end: how many events it gave, whether it
// ended with ErrTruncated, and whether it gave any other error.
func countEvents(seq iter.Seq2[Event, error]) (n int, truncated, bad bool) {
	for _, err := range seq {
		switch {
		case errors.Is(err, ErrTruncated):
			truncated = true
		case err != nil:
			bad = true
		default:
			n++
		}
	}
	return n, truncated, bad
}
