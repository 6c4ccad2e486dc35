//go:build unix

package main

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// postgresProcAttr says who the demo server runs as: the postgres system
// user when we are root (PostgreSQL refuses root), else ourselves; uid and
// gid own its directory.
func postgresProcAttr() (attr *syscall.SysProcAttr, uid, gid int, err error) {
	if os.Geteuid() != 0 {
		return &syscall.SysProcAttr{}, os.Getuid(), os.Getgid(), nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, 0, 0, fmt.Errorf("the demo PostgreSQL cannot run as root and there is no postgres user: %w", err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}, uid, gid, nil
}
