//go:build !unix

package main

import (
	"errors"
	"syscall"
)

// postgresProcAttr: the demo PostgreSQL runs only where jitproxy's server
// side does, on Unix.
func postgresProcAttr() (attr *syscall.SysProcAttr, uid, gid int, err error) {
	return nil, 0, 0, errors.New("the demo PostgreSQL needs a Unix system")
}
