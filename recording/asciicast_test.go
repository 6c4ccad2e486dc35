package recording

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestCastGolden records one session with each Compression: the plain
// content is the golden file either way, and the plain file's sidecar too.
func TestCastGolden(t *testing.T) {
	for _, comp := range compressions {
		t.Run(string(comp), func(t *testing.T) { testCastGolden(t, comp) })
	}
}

func testCastGolden(t *testing.T, comp Compression) {
	r, clk := newRecorder(t, Config{RecordInput: true, Compression: comp})
	c := startCast(t, r)
	clk.Advance(500 * time.Millisecond)
	c.Output([]byte("ubuntu@web-1:~$ "))
	clk.Advance(1200 * time.Millisecond)
	c.Input([]byte("echo \"caf\xc3"))
	c.Input([]byte("\xa9\"\r"))
	clk.Advance(100 * time.Millisecond)
	c.Output([]byte("echo \"caf\xc3"))
	clk.Advance(1 * time.Millisecond)
	c.Output([]byte("\xa9\"\r\n\x1b[1mcaf\xc3\xa9\x1b[0m \\o/ \xf0\x9f\x98"))
	c.Output([]byte("\x80\t\xff\r\n"))
	clk.Advance(2 * time.Second)
	c.Resize(120, 40)
	clk.Advance(250 * time.Millisecond)
	c.Output([]byte("ubuntu@web-1:~$ exit\r\n"))
	clk.Advance(time.Second)
	m, err := c.Close("exit")
	if err != nil {
		t.Fatalf("Close: %v", err)
	}
	b := readPlain(t, m.Path)
	checkLines(t, b)
	golden(t, "ssh.cast", b)
	wantPath := filepath.Join(r.dir, "2026", "11", "29", "s1-0.cast")
	if comp == CompressionNone {
		golden(t, "ssh.cast.meta.json", readFile(t, m.Path+sidecarSuffix))
	} else {
		wantPath += ".zst"
		raw := readFile(t, m.Path)
		sum := sha256.Sum256(raw)
		if !bytes.HasPrefix(raw, zstdMagic) || m.SHA256 != hex.EncodeToString(sum[:]) || m.Bytes != int64(len(raw)) {
			t.Errorf("got %+v; want a zstd file with sha256 %x of its %d bytes", m, sum, len(raw))
		}
		if err := VerifyFile(m); err != nil {
			t.Errorf("VerifyFile: %v", err)
		}
	}
	if m.Path != wantPath {
		t.Errorf("path: got %s; want %s", m.Path, wantPath)
	}
	for _, p := range []string{m.Path, m.Path + sidecarSuffix} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o600 {
			t.Errorf("%s mode: got %v; want 0600", p, got)
		}
	}
	for _, p := range []string{filepath.Join(r.dir, "2026"), filepath.Join(r.dir, "2026", "11", "29")} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o700 {
			t.Errorf("%s mode: got %v; want 0700", p, got)
		}
	}
}

func TestCastHeader(t *testing.T) {
	tests := []struct {
		name string
		edit func(*SSHMeta)
		want Header
	}{
		{"shell with pty", func(*SSHMeta) {}, Header{Version: 2, Width: 100, Height: 30, Timestamp: t0.Unix(),
			Env: map[string]string{"TERM": "xterm-256color", "SHELL": "/bin/bash"}, Title: "ubuntu@web-1 (alice@example.com, amendment a1b2)"}},
		{"exec without pty", func(m *SSHMeta) {
			m.Command, m.Width, m.Height, m.Term, m.Env, m.Amendment = "uptime", 0, 0, "", nil, ""
		}, Header{Version: 2, Width: 80, Height: 24, Timestamp: t0.Unix(), Title: "ubuntu@web-1 (alice@example.com)", Command: "uptime"}},
		{"TERM from env", func(m *SSHMeta) { m.Term, m.Env = "", map[string]string{"TERM": "vt100"} }, Header{Version: 2, Width: 100, Height: 30,
			Timestamp: t0.Unix(), Env: map[string]string{"TERM": "vt100"}, Title: "ubuntu@web-1 (alice@example.com, amendment a1b2)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newRecorder(t, Config{})
			sm := sshMeta()
			tt.edit(&sm)
			c, err := r.StartSSH(sm)
			if err != nil {
				t.Fatal(err)
			}
			m, err := c.Close("exit")
			if err != nil {
				t.Fatal(err)
			}
			if m.Command != sm.Command {
				t.Errorf("meta command: got %q; want %q", m.Command, sm.Command)
			}
			got, _, _ := readEvents(t, m.Path)
			gj, _ := json.Marshal(got)
			wj, _ := json.Marshal(tt.want)
			if !bytes.Equal(gj, wj) {
				t.Errorf("got %s; want %s", gj, wj)
			}
		})
	}
}

func TestCastBadIDs(t *testing.T) {
	tests := []struct {
		name             string
		session, channel string
	}{
		{"empty session", "", "0"},
		{"empty channel", "s1", ""},
		{"slash", "s1/../../etc", "0"},
		{"dot dot", "..", "0"},
		{"hidden", ".s1", "0"},
		{"space", "s 1", "0"},
		{"too long", strings.Repeat("a", 129), "0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newRecorder(t, Config{})
			sm := sshMeta()
			sm.Session, sm.Channel = tt.session, tt.channel
			if c, err := r.StartSSH(sm); err == nil {
				c.Close("test")
				t.Fatalf("StartSSH(%q, %q): got no error; want one", tt.session, tt.channel)
			}
			if ms, _ := List(r.dir); len(ms) != 0 {
				t.Errorf("got %d recordings; want none", len(ms))
			}
		})
	}
}

func TestCastClose(t *testing.T) {
	r, clk := newRecorder(t, Config{})
	c := startCast(t, r)
	c.Output([]byte("hello\r\n"))
	clk.Advance(time.Second)
	m, err := c.Close("client closed")
	if err != nil {
		t.Fatalf("Close: %v", err)
	}
	b := readFile(t, m.Path)
	sum := sha256.Sum256(b)
	if want := hex.EncodeToString(sum[:]); m.SHA256 != want {
		t.Errorf("SHA256: got %s; want %s", m.SHA256, want)
	}
	if m.Bytes != int64(len(b)) {
		t.Errorf("Bytes: got %d; want %d", m.Bytes, len(b))
	}
	if m.State != StateClosed || m.EndReason != "client closed" || !m.End.Equal(t0.Add(time.Second)) {
		t.Errorf("got state %q, reason %q, end %v; want closed, client closed, %v", m.State, m.EndReason, m.End, t0.Add(time.Second))
	}
	side, err := readSidecar(m.Path + sidecarSuffix)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(side) != fmt.Sprint(m) {
		t.Errorf("sidecar: got %+v; want %+v", side, m)
	}
	if err := VerifyFile(m); err != nil {
		t.Errorf("VerifyFile: %v", err)
	}

	// Writes after Close are dropped; Close again returns the same.
	c.Output([]byte("late"))
	c.Input([]byte("late"))
	c.Resize(1, 1)
	m2, err := c.Close("again")
	if err != nil || fmt.Sprint(m2) != fmt.Sprint(m) {
		t.Errorf("second Close: got %+v, %v; want %+v, nil", m2, err, m)
	}
	if after := readFile(t, m.Path); !bytes.Equal(after, b) {
		t.Errorf("file changed after Close: %q", after)
	}
	if err := c.Err(); err != nil {
		t.Errorf("Err: %v", err)
	}

	// An edited file no longer verifies.
	edited := bytes.Clone(b)
	edited[len(edited)/2] ^= 1
	if err := os.WriteFile(m.Path, edited, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := VerifyFile(m); !errors.Is(err, ErrMismatch) {
		t.Errorf("VerifyFile of edited file: got %v; want ErrMismatch", err)
	}
	if err := os.WriteFile(m.Path, append(b, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := VerifyFile(m); !errors.Is(err, ErrMismatch) {
		t.Errorf("VerifyFile of extended file: got %v; want ErrMismatch", err)
	}
}

func TestCastInputOff(t *testing.T) {
	r, _ := newRecorder(t, Config{})
	c := startCast(t, r)
	c.Input([]byte("hunter2\r"))
	c.Output([]byte("ok"))
	m, err := c.Close("exit")
	if err != nil {
		t.Fatal(err)
	}
	_, events, _ := readEvents(t, m.Path)
	for _, e := range events {
		if e.Type == "i" {
			t.Errorf("got input event %+v with RecordInput off; want none", e)
		}
	}
	if len(events) != 1 {
		t.Errorf("got %d events; want 1", len(events))
	}
}

func TestCastFlush(t *testing.T) {
	r, clk := newRecorder(t, Config{FlushInterval: 20 * time.Millisecond})
	c := startCast(t, r)
	path := c.Meta().Path
	for i := range 3 {
		clk.Advance(time.Second)
		c.Output(fmt.Appendf(nil, "line %d\r\n", i))
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, events, truncated := readEvents(t, path)
		if len(events) == 3 && !truncated {
			if got, want := outputText(events), "line 0\r\nline 1\r\nline 2\r\n"; got != want {
				t.Fatalf("got %q; want %q", got, want)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10s the file holds %d events (truncated %v); want 3 flushed within the 20ms interval", len(events), truncated)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if m := c.Meta(); m.State != StateOpen {
		t.Errorf("state before Close: got %q; want open", m.State)
	}
}

func TestCastConcurrent(t *testing.T) {
	r, clk := newRecorder(t, Config{RecordInput: true, FlushInterval: time.Millisecond})
	c := startCast(t, r)
	const writers, writes = 4, 200
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range writes {
				switch w {
				case 0:
					c.Resize(80+i%40, 24)
				case 1:
					c.Input([]byte("é"))
				default:
					c.Output([]byte("héllo 😀\r\n"))
					clk.Advance(time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	m, err := c.Close("exit")
	if err != nil {
		t.Fatal(err)
	}
	checkLines(t, readPlain(t, m.Path))
	_, events, truncated := readEvents(t, m.Path)
	if truncated {
		t.Error("closed cast reads as truncated")
	}
	counts := map[string]int{}
	var last time.Duration
	for _, e := range events {
		counts[e.Type]++
		if e.Elapsed < last {
			t.Errorf("event time went back: %v after %v", e.Elapsed, last)
		}
		last = e.Elapsed
		if e.Type == "o" && e.Data != "héllo 😀\r\n" {
			t.Errorf("output event %q; want whole writes", e.Data)
		}
	}
	want := map[string]int{"r": writes, "i": writes, "o": 2 * writes}
	if fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Errorf("got %v events; want %v", counts, want)
	}
}

func TestCastNoAllocs(t *testing.T) {
	r, _ := newRecorder(t, Config{RecordInput: true})
	c := startCast(t, r)
	small := bytes.Repeat([]byte("a\x1b[0m\"é"), 14)[:100]
	big := bytes.Repeat([]byte("total 42\r\ndrwxr-xr-x \x1b[01;34mdir\x1b[0m café 😀\r\n"), 1024)[:32<<10]
	tests := []struct {
		name string
		f    func()
	}{
		{"output 100 B", func() { c.Output(small) }},
		{"output 32 KiB", func() { c.Output(big) }},
		{"input", func() { c.Input(small) }},
		{"resize", func() { c.Resize(132, 43) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.f() // grow the scratch buffer
			if got := testing.AllocsPerRun(200, tt.f); got != 0 {
				t.Errorf("got %v allocations per call; want 0", got)
			}
		})
	}
}

func BenchmarkCastOutput(b *testing.B) {
	line := []byte("drwxr-xr-x  2 ubuntu ubuntu 4096 Nov 29 12:00 \x1b[01;34mcafé\x1b[0m \"x\"\r\n")
	for _, size := range []int{100, 32 << 10} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			r, err := New(Config{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			c, err := r.StartSSH(sshMeta())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close("done")
			p := bytes.Repeat(line, size/len(line)+1)[:size]
			c.Output(p)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				c.Output(p)
			}
			b.StopTimer()
			if err := c.Err(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

func TestCastDiskErrors(t *testing.T) {
	t.Run("recording path is a directory", func(t *testing.T) {
		r, _ := newRecorder(t, Config{})
		if err := os.MkdirAll(filepath.Join(r.dir, "2026", "11", "29", "s1-0"+r.ext(".cast")), 0o700); err != nil {
			t.Fatal(err)
		}
		if _, err := r.StartSSH(sshMeta()); !errors.Is(err, ErrExists) {
			t.Errorf("StartSSH: got %v; want ErrExists", err)
		}
	})
	t.Run("day directory is a file", func(t *testing.T) {
		r, _ := newRecorder(t, Config{})
		if err := os.WriteFile(filepath.Join(r.dir, "2026"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := r.StartSSH(sshMeta()); err == nil || !errors.Is(err, syscall.ENOTDIR) {
			t.Errorf("StartSSH: got %v; want ENOTDIR", err)
		}
	})
	t.Run("sidecar path is a directory", func(t *testing.T) {
		r, _ := newRecorder(t, Config{})
		path := filepath.Join(r.dir, "2026", "11", "29", "s1-0"+r.ext(".cast"))
		if err := os.MkdirAll(path+sidecarSuffix, 0o700); err != nil {
			t.Fatal(err)
		}
		if _, err := r.StartSSH(sshMeta()); err == nil {
			t.Fatal("StartSSH: got no error; want one")
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("recording file left behind: %v", err)
		}
	})
	t.Run("sidecar unwritable at close", func(t *testing.T) {
		r, _ := newRecorder(t, Config{})
		c := startCast(t, r)
		c.Output([]byte("x"))
		side := c.Meta().Path + sidecarSuffix
		if err := os.Remove(side); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(side, 0o700); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Close("exit"); err == nil {
			t.Error("Close: got no error; want one")
		}
	})
	t.Run("dev full", func(t *testing.T) {
		f, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
		if err != nil {
			t.Skipf("no /dev/full: %v", err)
		}
		r, _ := newRecorder(t, Config{})
		meta := Meta{ID: "s1-0", Kind: KindSSH, Session: "s1", Start: t0, State: StateOpen, Path: filepath.Join(r.dir, "s1-0.cast")}
		if _, err := r.startCast(meta, sshMeta(), f); !errors.Is(err, syscall.ENOSPC) {
			t.Errorf("startCast on /dev/full: got %v; want ENOSPC", err)
		}
	})
	for _, comp := range compressions {
		t.Run("disk fills up while recording/"+string(comp), func(t *testing.T) { testDiskFills(t, comp) })
	}
}

// testDiskFills records onto a disk that fills up after 300 bytes: the
// error shows in Err and Close, and the seal covers the bytes the disk took.
func testDiskFills(t *testing.T, comp Compression) {
	r, _ := newRecorder(t, Config{FlushInterval: time.Millisecond, Compression: comp})
	ff := &failingFile{limit: 300, err: syscall.ENOSPC}
	meta := Meta{ID: "s1-0", Kind: KindSSH, Session: "s1", Start: t0, State: StateOpen, Path: filepath.Join(r.dir, "s1-0.cast")}
	c, err := r.startCast(meta, sshMeta(), ff)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		// Hex digests: they do not compress below 300 bytes.
		c.Output(fmt.Appendf(nil, "%x\r\n", sha256.Sum256([]byte{byte(i)})))
	}
	deadline := time.Now().Add(10 * time.Second)
	for c.Err() == nil && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := c.Err(); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Err: got %v; want ENOSPC", err)
	}
	c.Output([]byte("dropped"))
	m, err := c.Close("exit")
	if !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Close: got %v; want ENOSPC", err)
	}
	if m.State != StateIncomplete {
		t.Errorf("state: got %q; want incomplete", m.State)
	}
	written := ff.Bytes()
	sum := sha256.Sum256(written)
	if m.SHA256 != hex.EncodeToString(sum[:]) || m.Bytes != int64(len(written)) || len(written) != 300 {
		t.Errorf("got %d bytes, sha256 %s; want the 300 bytes the disk took, sha256 %x", m.Bytes, m.SHA256, sum)
	}
	side, err := readSidecar(meta.Path + sidecarSuffix)
	if err != nil || side.State != StateIncomplete {
		t.Errorf("sidecar: got %+v, %v; want state incomplete", side, err)
	}
}
