//go:build !linux

package ssh

import "errors"

// shutdownFD is not used outside Linux: shutdown falls back to Close.
func shutdownFD(fd uintptr) error {
	return errors.New("sshproxy: shutdown(2) is only used on Linux")
}

// setCork does nothing outside Linux.
func setCork(fd uintptr, on bool) {}
