package ssh

import (
	"bytes"
	"io"
	"path/filepath"
	"testing"

	"github.com/jitproxy/jitproxy/recording"
)

// chunks is a reader that returns n chunks of p, then EOF.
type chunks struct {
	p []byte
	n int
}

func (c *chunks) Read(b []byte) (int, error) {
	if c.n == 0 {
		return 0, io.EOF
	}
	c.n--
	return copy(b, c.p), nil
}

// TestCopierDoesNotAllocate copies output through a channel's copier, with
// and without a recording: once warm, a write allocates nothing. A copier
// allocates its small buffer once (see relayBuf), and under the race
// detector a sync.Pool may drop the big one; so at most two a run.
func TestCopierDoesNotAllocate(t *testing.T) {
	rec, err := recording.New(recording.Config{Dir: filepath.Join(t.TempDir(), "rec")})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		record bool
	}{{"unrecorded", false}, {"recorded", true}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch := &channel{ss: &sshSession{srv: &Server{}}, id: "c1"}
			if tt.record {
				c, err := rec.StartSSH(recording.SSHMeta{Session: "alloc-" + tt.name, Channel: "c1", Person: "p", Login: "l", Target: "t"})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close("test") })
				ch.tee.Store(c)
			}
			errc := make(chan error, 1)
			src := &chunks{p: bytes.Repeat([]byte("output line\r\n"), 2000)}
			run := func() {
				src.n = 64
				ch.copyOutput(errc, io.Discard, src)
				if err := <-errc; err != nil {
					t.Fatal(err)
				}
			}
			run() // warm the buffer pool and the recording's scratch buffer
			if got := testing.AllocsPerRun(20, run); got > 2 {
				t.Errorf("%v allocations to copy 64 writes; want at most 2 (none per write)", got)
			}
		})
	}
}
