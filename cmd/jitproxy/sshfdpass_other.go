//go:build !unix

package main

import (
	"context"
	"errors"
	"net"
	"os"
	"time"
)

// fdpassUnavailable: OpenSSH has no ProxyUseFdpass on this system, so
// ssh-proxy always relays.
func fdpassUnavailable(*os.File) error {
	return errors.New("this system cannot pass a socket to ssh")
}

// passBastionConn is never called where fdpassUnavailable always says why.
func passBastionConn(context.Context, *net.TCPConn, string, *os.File, time.Duration) error {
	return errors.New("sshproxy: fd passing is not available on this system")
}
