//go:build unix

package postgres

import (
	"bytes"
	"io"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestRawPipeReadsOncePerBatch checks that a pipe reading its connection
// raw takes one read per batch of input, not a second that only says
// EAGAIN, and still relays every byte, gives its buffer back while it
// waits, and stops at a deadline while it waits. It counts the read(2)
// calls the pipe makes.
func TestRawPipeReadsOncePerBatch(t *testing.T) {
	client, proxySide := tcpPair(t)
	defer client.Close()
	defer proxySide.Close()
	var held atomic.Int64
	var out lockedBuffer
	var n atomic.Int64
	s := &Server{maxRelayMessage: 1 << 20}
	p := s.newPipe(proxySide, nil, clientFramer{nil, new(atomic.Bool)}, &n)
	if p.raw == nil {
		t.Fatal("a TCP connection is not read raw")
	}
	var calls atomic.Int64
	p.sysRead = func(fd int, b []byte) (int, error) {
		calls.Add(1)
		return syscall.Read(fd, b)
	}
	p.dst = &out
	p.getBuf = func() *[]byte { held.Add(1); return ptr(make([]byte, relayBufSize)) }
	p.putBuf = func(*[]byte) { held.Add(-1) }
	done := make(chan error, 1)
	go func() { done <- runPipe(p) }()

	const batches = 200
	var sent []byte
	send := func(m []byte) {
		t.Helper()
		if _, err := client.Write(m); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, m...)
		deadline := time.Now().Add(5 * time.Second)
		for out.Len() < len(sent) || held.Load() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("relayed %d of %d bytes, holding %d buffers; want all, 0", out.Len(), len(sent), held.Load())
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	send(query("select 0")) // warm up
	before := calls.Load()
	for i := range batches {
		send(cat(query("select "+strconv.Itoa(i)), msg('S')))
	}
	if reads := calls.Load() - before; reads > batches*11/10 {
		t.Errorf("%d reads for %d batches; want about 1 each (2 would mean a read that only says EAGAIN)", reads, batches)
	}
	if !bytes.Equal(out.Bytes(), sent) {
		t.Fatalf("relayed %d bytes; want %d", out.Len(), len(sent))
	}

	// A deadline still ends the wait for input.
	proxySide.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	select {
	case err := <-done:
		if err == nil || err == io.EOF {
			t.Errorf("ended with %v; want a timeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the read deadline did not end the pipe")
	}
}
