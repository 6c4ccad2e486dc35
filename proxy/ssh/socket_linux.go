package ssh

import "syscall"

// shutdownFD is shutdown(2) on a socket.
func shutdownFD(fd uintptr, how int) error {
	if how == shutWrite {
		return syscall.Shutdown(int(fd), syscall.SHUT_WR)
	}
	return syscall.Shutdown(int(fd), syscall.SHUT_RDWR)
}

// setCork sets or clears TCP_CORK; clearing it sends what it held.
func setCork(fd uintptr, on bool) {
	v := 0
	if on {
		v = 1
	}
	syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CORK, v)
}
