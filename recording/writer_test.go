package recording

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// gateFile is a file whose writes after the first (the header) wait
// while the gate is closed, as a disk that has fallen behind.
type gateFile struct {
	failingFile
	open   chan struct{} // closed to let writes through
	once   sync.Once
	header sync.Once
}

func newGateFile() *gateFile {
	return &gateFile{failingFile: failingFile{limit: 1 << 40}, open: make(chan struct{})}
}

func (g *gateFile) Write(p []byte) (int, error) {
	first := false
	g.header.Do(func() { first = true })
	if !first {
		<-g.open
	}
	return g.failingFile.Write(p)
}

func (g *gateFile) release() { g.once.Do(func() { close(g.open) }) }

// TestCastBackPressure stalls the disk while a relay writes 8 MiB: Output
// blocks once the recording is maxPending behind, holds no more than that,
// and once the disk moves again every byte reaches the file.
func TestCastBackPressure(t *testing.T) {
	for _, comp := range compressions {
		t.Run(string(comp), func(t *testing.T) {
			r, _ := newRecorder(t, Config{Compression: comp})
			g := newGateFile()
			meta := Meta{ID: "s1-0", Kind: KindSSH, Session: "s1", Start: t0, State: StateOpen, Path: filepath.Join(r.dir, "s1-0.cast")}
			c, err := r.startCast(meta, sshMeta(), g)
			if err != nil {
				t.Fatal(err)
			}
			defer g.release()

			chunk := bytes.Repeat([]byte("0123456789abcdef"), 2048) // 32 KiB
			const chunks = 256                                      // 8 MiB
			var written sync.WaitGroup
			progress := make(chan int, chunks)
			written.Add(1)
			go func() {
				defer written.Done()
				for i := range chunks {
					c.Output(chunk)
					progress <- i
				}
			}()
			// The worker takes one batch and blocks in Write; the relay
			// fills pending again and then waits.
			var done int
			deadline := time.After(200 * time.Millisecond)
		wait:
			for {
				select {
				case <-progress:
					done++
				case <-deadline:
					break wait
				}
			}
			if done >= chunks {
				t.Fatal("all 8 MiB went through a stalled disk; want Output to block")
			}
			c.w.mu.Lock()
			held := len(c.w.pending)
			c.w.mu.Unlock()
			if held > maxPending {
				t.Errorf("pending holds %d bytes; want at most %d", held, maxPending)
			}
			// pending, the batch the worker holds, and what it has encoded
			// into a frame that has yet to reach the disk.
			if max := 2*maxPending + frameTarget + len(chunk); done*len(chunk) > max {
				t.Errorf("%d bytes accepted while the disk stalled; want at most %d", done*len(chunk), max)
			}

			g.release()
			written.Wait()
			m, err := c.Close("exit")
			if err != nil {
				t.Fatal(err)
			}
			if m.Bytes != int64(len(g.Bytes())) {
				t.Errorf("Bytes %d; the file holds %d", m.Bytes, len(g.Bytes()))
			}
			_, seq := ReadCast(bytes.NewReader(g.Bytes()))
			var got int
			for e, err := range seq {
				if err != nil {
					t.Fatal(err)
				}
				if e.Data != string(chunk) {
					t.Fatalf("event %d holds %d bytes; want the 32 KiB chunk", got, len(e.Data))
				}
				got++
			}
			if got != chunks {
				t.Errorf("read %d events; want %d: nothing may be dropped", got, chunks)
			}
		})
	}
}

// TestIdleCastHoldsNothing checks that a recording idle for a flush
// interval holds no buffer, and that the Recorder's goroutines end with its
// last recording.
func TestIdleCastHoldsNothing(t *testing.T) {
	before := runtime.NumGoroutine()
	r, _ := newRecorder(t, Config{FlushInterval: 5 * time.Millisecond})
	c := startCast(t, r)
	c.Output(bytes.Repeat([]byte("x"), 300<<10)) // past handoff: a worker takes it
	c.Output([]byte("$ "))
	waitFor(t, "the idle cast gives its buffers back", func() bool {
		c.w.mu.Lock()
		defer c.w.mu.Unlock()
		return !c.w.queued && c.w.pending == nil && c.w.spare == nil && c.w.content == nil && c.w.zbuf == nil
	})
	_, events, _ := readEvents(t, c.Meta().Path)
	if len(events) != 2 || events[1].Data != "$ " {
		t.Errorf("got %d events before Close; want both flushed", len(events))
	}
	if _, err := c.Close("exit"); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	p := r.pool
	r.mu.Unlock()
	if p != nil {
		t.Error("the pool still runs with no recording open")
	}
	waitFor(t, "goroutines back to where they were", func() bool { return runtime.NumGoroutine() <= before })
}

// TestReadCompressedDamage reads compressed casts cut short and damaged: a
// cut frame ends with ErrTruncated after every event before it; the damage
// made here (a broken block) is an error, not a silent end. Readers do not
// catch every damage (frames carry no checksum): the SHA-256 sealed in
// the audit trail does, and VerifyFile checks it.
func TestReadCompressedDamage(t *testing.T) {
	r, clk := newRecorder(t, Config{FlushInterval: time.Millisecond})
	c := startCast(t, r)
	clk.Advance(time.Second)
	c.Output([]byte("one\r\n"))
	waitFor(t, "the first event flushed", func() bool { _, e, _ := readEvents(t, c.Meta().Path); return len(e) == 1 })
	clk.Advance(time.Second)
	c.Output([]byte(strings.Repeat("two\r\n", 1000)))
	m, err := c.Close("exit")
	if err != nil {
		t.Fatal(err)
	}
	whole := readFile(t, m.Path)
	second := bytes.LastIndex(whole, zstdMagic) // the frame holding "two"
	if second <= 0 {
		t.Fatalf("no second frame in %x", whole)
	}
	damaged := bytes.Clone(whole)
	damaged[len(damaged)-2] ^= 0xff
	tests := []struct {
		name          string
		content       []byte
		wantEvents    int
		wantTruncated bool
		wantErr       bool
	}{
		{"whole", whole, 2, false, false},
		{"cut in the last frame", whole[:second+(len(whole)-second)/2], 1, true, false},
		{"cut after the magic", whole[:second+4], 1, true, false},
		{"damaged", damaged, 1, false, true},
		{"garbage after the frames", append(bytes.Clone(whole), "junk"...), 2, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, seq := ReadCast(bytes.NewReader(tt.content))
			n, truncated, bad := countEvents(seq)
			if n != tt.wantEvents || truncated != tt.wantTruncated || bad != tt.wantErr {
				t.Errorf("got %d events, truncated %v, error %v; want %d, %v, %v", n, truncated, bad, tt.wantEvents, tt.wantTruncated, tt.wantErr)
			}
		})
	}
	// Open gives the plain bytes, as `recordings export` writes them.
	f, err := Open(m.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var plain bytes.Buffer
	if _, err := plain.ReadFrom(f); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(plain.Bytes(), []byte(`{"version":2`)) || !bytes.Contains(plain.Bytes(), []byte(`"one\r\n"`)) {
		t.Errorf("Open: got %.80q…; want the plain cast", plain.Bytes())
	}
	if fi, err := os.Stat(m.Path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode: %v, %v; want 0600", fi, err)
	}
}

// TestCastHugeWrite records one write larger than maxPending: it arrives
// whole, split into events of at most maxPending bytes (so pending stays
// bounded), with a character cut by a split kept whole.
func TestCastHugeWrite(t *testing.T) {
	r, _ := newRecorder(t, Config{})
	c := startCast(t, r)
	big := bytes.Repeat([]byte("é\x00x"), (3*maxPending)/4+7) // splits a character at each cut
	c.Output(big)
	m, err := c.Close("exit")
	if err != nil {
		t.Fatal(err)
	}
	_, events, truncated := readEvents(t, m.Path)
	if got := outputText(events); got != string(big) || truncated || len(events) < 3 {
		t.Errorf("got %d events, %d bytes, truncated %v; want %d bytes in at least 3 events", len(events), len(got), truncated, len(big))
	}
}

// TestCastLargeEventAfterSmall: an event that fills a frame part-way
// through, after a smaller one in the same batch, still ends with its
// closing `"]`: every event parses, with both formats.
func TestCastLargeEventAfterSmall(t *testing.T) {
	for _, comp := range []Compression{CompressionNone, CompressionZstd} {
		t.Run(string(comp), func(t *testing.T) {
			r, _ := newRecorder(t, Config{Compression: comp})
			c := startCast(t, r)
			first := bytes.Repeat([]byte{1}, 100<<10) // 600 KiB once escaped
			second := bytes.Repeat([]byte("a"), 900<<10)
			c.Output(first)
			c.Output(second)
			c.Output([]byte("tail"))
			m, err := c.Close("exit")
			if err != nil {
				t.Fatal(err)
			}
			_, events, truncated := readEvents(t, m.Path)
			want := string(first) + string(second) + "tail"
			if got := outputText(events); got != want || truncated {
				t.Errorf("got %d events, %d bytes, truncated %v; want %d bytes", len(events), len(got), truncated, len(want))
			}
		})
	}
}

// syncGate is a file whose Sync waits for release, counting how many
// wait at once.
type syncGate struct {
	failingFile
	g *gate
}

type gate struct {
	mu        sync.Mutex
	in, most  int
	entered   chan struct{} // one send per Sync that starts waiting
	open      chan struct{}
	closeOnce sync.Once
}

func (f *syncGate) Sync() error {
	g := f.g
	g.mu.Lock()
	g.in++
	g.most = max(g.most, g.in)
	g.mu.Unlock()
	g.entered <- struct{}{}
	<-g.open
	g.mu.Lock()
	g.in--
	g.mu.Unlock()
	return nil
}

// TestCloseBounded closes more recordings at once than maxSyncing, on a
// disk whose fsync waits: no more than maxSyncing are in the disk at a
// time, and once it moves every recording closes, its end time the
// moment Close was called, not when its turn came.
func TestCloseBounded(t *testing.T) {
	r, clk := newRecorder(t, Config{})
	const n = maxSyncing + 8
	g := &gate{entered: make(chan struct{}, n), open: make(chan struct{})}
	t.Cleanup(func() { g.closeOnce.Do(func() { close(g.open) }) })
	casts := make([]*Cast, n)
	for i := range casts {
		id := fmt.Sprintf("s%d-0", i)
		meta := Meta{ID: id, Kind: KindSSH, Session: fmt.Sprintf("s%d", i), Start: t0, State: StateOpen, Path: filepath.Join(r.dir, id+".cast")}
		c, err := r.startCast(meta, sshMeta(), &syncGate{failingFile: failingFile{limit: 1 << 30}, g: g})
		if err != nil {
			t.Fatal(err)
		}
		c.Output([]byte("hello\r\n"))
		casts[i] = c
	}
	closedAt := clk.Now()
	metas := make([]Meta, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, c := range casts {
		wg.Go(func() { metas[i], errs[i] = c.Close("exit 0") })
	}
	for range maxSyncing {
		<-g.entered
	}
	select {
	case <-g.entered:
		t.Fatalf("a recording entered fsync beyond the %d allowed at once", maxSyncing)
	case <-time.After(200 * time.Millisecond):
	}
	clk.Advance(time.Minute) // the others' turn comes later
	g.closeOnce.Do(func() { close(g.open) })
	wg.Wait()
	if g.most != maxSyncing {
		t.Errorf("%d recordings in fsync at once at most; want %d", g.most, maxSyncing)
	}
	for i, m := range metas {
		if errs[i] != nil || m.State != StateClosed || !m.End.Equal(closedAt) {
			t.Errorf("recording %d: %v, state %q, end %v; want closed, ending %v", i, errs[i], m.State, m.End, closedAt)
		}
	}
}
