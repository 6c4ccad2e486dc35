package conns

import (
	"errors"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestOutOfFilesBacksOff runs the process out of file descriptors for
// real (a lowered RLIMIT_NOFILE): accept fails with EMFILE, Serve logs it
// and keeps trying instead of returning, and once descriptors are free
// again the waiting connections are served. The client sockets are made
// before the table is filled and connected after, so that connections are
// waiting while no descriptor is left, whatever the scheduling.
func TestOutOfFilesBacksOff(t *testing.T) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	var log syncBuf
	s := New("test", errClosed, zerolog.New(&log))
	defer s.Close()
	addr, accepted, errc := serve(t, s)
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		t.Fatal(err)
	}

	const waiting = 3
	var clients []int
	defer func() {
		for _, fd := range clients {
			syscall.Close(fd)
		}
	}()
	for range waiting {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, fd)
	}

	// Fill the descriptor table under a lowered limit.
	low := lim
	probe, err := syscall.Dup(0)
	if err != nil {
		t.Fatal(err)
	}
	syscall.Close(probe)
	low.Cur = uint64(probe) + 16
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Skipf("cannot lower RLIMIT_NOFILE: %v", err)
	}
	var filler []int
	restored := false
	restore := func() {
		if !restored {
			for _, fd := range filler {
				syscall.Close(fd)
			}
			syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
			restored = true
		}
	}
	defer restore()
	for {
		fd, err := syscall.Dup(0)
		if errors.Is(err, syscall.EMFILE) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		filler = append(filler, fd)
	}
	sa := &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	for _, fd := range clients {
		if err := syscall.Connect(fd, sa); err != nil {
			t.Fatalf("connect: %v", err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(log.String(), "too many open files") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	restore()
	if !strings.Contains(log.String(), `"message":"accept failed"`) || !strings.Contains(log.String(), "too many open files") {
		t.Fatalf("no accept failure logged while out of descriptors; log:\n%s", log.String())
	}
	select {
	case err := <-errc:
		t.Fatalf("Serve returned while out of descriptors: %v", err)
	default:
	}
	// Every connection that waited is served once descriptors are back.
	for range clients {
		next(t, accepted, "connection accepted after the backoff")
	}
}
