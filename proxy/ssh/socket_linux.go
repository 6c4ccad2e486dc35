package ssh

import (
	"syscall"
	"unsafe"
)

// The cut's socket calls are raw system calls (RawSyscall, which does not
// tell the Go scheduler): shutdown(2) and setsockopt(2) on a socket never
// block, but on loopback they do the peer's receive work (and wake it)
// before they return. Through syscall.Syscall, one that took over 20µs,
// e.g. because the woken peer preempted the thread, would lose the
// goroutine its P; the registry's cut loop would then wait, runnable,
// behind every goroutine that the earlier cuts woke. Raw, it keeps its P.

// shutdownFD is shutdown(2) on a socket, both ways.
func shutdownFD(fd uintptr) error {
	if _, _, e := syscall.RawSyscall(syscall.SYS_SHUTDOWN, fd, uintptr(syscall.SHUT_RDWR), 0); e != 0 {
		return e
	}
	return nil
}

// setCork sets or clears TCP_CORK; clearing it sends what it held.
func setCork(fd uintptr, on bool) {
	var v int32
	if on {
		v = 1
	}
	syscall.RawSyscall6(syscall.SYS_SETSOCKOPT, fd, syscall.IPPROTO_TCP, syscall.TCP_CORK, uintptr(unsafe.Pointer(&v)), 4, 0)
}
