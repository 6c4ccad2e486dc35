package conns

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

var errClosed = errors.New("test server closed")

// syncBuf is a log sink the accept loop and the test share.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncBuf) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuf) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// serve runs s.Serve on a fresh loopback listener; accepted connections
// arrive on the returned channel, and Serve's result on errc.
func serve(t *testing.T, s *Set) (addr string, accepted <-chan net.Conn, errc <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	acc := make(chan net.Conn, 64)
	ec := make(chan error, 1)
	go func() { ec <- s.Serve(ln, func(c net.Conn) { acc <- c }) }()
	return ln.Addr().String(), acc, ec
}

func next[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s within 10s", what)
		panic("unreachable")
	}
}

// TestCloseThenCloseAll: Close stops accepting (Serve returns errClosed)
// but leaves accepted connections open; CloseAll closes them, except those
// already forgotten.
func TestCloseThenCloseAll(t *testing.T) {
	s := New("test", errClosed, zerolog.Nop())
	addr, accepted, errc := serve(t, s)
	var clients []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
	}
	var server []net.Conn
	for range 3 {
		server = append(server, next(t, accepted, "accepted connection"))
	}
	s.Forget(server[0]) // done: closed now, not CloseAll's
	s.Close()
	if err := next(t, errc, "Serve result"); !errors.Is(err, errClosed) {
		t.Fatalf("Serve after Close: %v; want errClosed", err)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("the listener still accepts after Close")
	}
	// Still open: a write from the client arrives.
	clients[1].Write([]byte("x"))
	server[1].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(server[1], make([]byte, 1)); err != nil {
		t.Fatalf("an accepted connection was closed by Close: %v", err)
	}
	s.CloseAll()
	for i, c := range clients {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, syscall.ETIMEDOUT) || strings.Contains(err.Error(), "timeout") {
			t.Errorf("client %d after CloseAll: read %d, %v; want EOF or reset", i, n, err)
		}
	}
}

// TestServeAfterClose: a listener handed over after Close is closed at once.
func TestServeAfterClose(t *testing.T) {
	s := New("test", errClosed, zerolog.Nop())
	s.Close()
	s.Close() // twice is fine
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(ln, func(net.Conn) { t.Error("handled a connection after Close") }); !errors.Is(err, errClosed) {
		t.Fatalf("Serve after Close: %v; want errClosed", err)
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Error("the listener was left open")
	}
}

// TestDrain: Drain waits for idle (at most grace), then closes every
// connection left and waits for the server's goroutines, or for ctx.
func TestDrain(t *testing.T) {
	s := New("test", errClosed, zerolog.Nop())
	addr, accepted, _ := serve(t, s)
	client, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server := next(t, accepted, "accepted connection")
	s.Close()

	// A goroutine of the server's that ends when its connection is closed.
	var wg sync.WaitGroup
	wg.Go(func() { io.Copy(io.Discard, server) })
	idle := make(chan struct{}) // the sessions never end: grace runs out
	start := time.Now()
	if err := s.Drain(context.Background(), idle, 50*time.Millisecond, &wg); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("Drain returned after %v, before the grace ran out", d)
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Read(make([]byte, 1)); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Errorf("the connection is still open after Drain: %v", err)
	}

	// A goroutine that never ends: Drain gives up when ctx does.
	var stuck sync.WaitGroup
	stuck.Add(1)
	defer stuck.Done()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Drain(ctx, nil, time.Hour, &stuck); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Drain with a stuck goroutine: %v; want ctx's error", err)
	}
}
