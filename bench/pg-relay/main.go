// Command pg-relay is the simplest TCP relay in Go, for bench/pg.sh's
// floor line: one goroutine per direction, each reading into a 64 KiB
// buffer and writing what it read, with nothing parsed, recorded or
// authenticated. What it costs is what any proxy built this way pays for
// the extra hop on the machine; it is not a PostgreSQL proxy.
//
//	pg-relay -listen 127.0.0.1:0 -to 127.0.0.1:5432 -addr-file FILE
//
// It writes the address it listens on to -addr-file and relays until
// SIGINT or SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	to := flag.String("to", "", "address to relay to (required)")
	addrFile := flag.String("addr-file", "", "file to write the listening address to")
	flag.Parse()
	if *to == "" {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pg-relay:", err)
		os.Exit(1)
	}
	if *addrFile != "" {
		if err := os.WriteFile(*addrFile, []byte(ln.Addr().String()+"\n"), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "pg-relay:", err)
			os.Exit(1)
		}
	}
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			fmt.Fprintln(os.Stderr, "pg-relay:", err)
			os.Exit(1)
		}
		go relay(c, *to)
	}
}

// relay copies c to a new connection to addr and back until either ends.
func relay(c net.Conn, addr string) {
	u, err := net.Dial("tcp", addr)
	if err != nil {
		c.Close()
		return
	}
	done := make(chan struct{})
	go func() {
		copyLoop(u, c)
		close(done)
	}()
	copyLoop(c, u)
	<-done
}

// copyLoop writes everything it reads from src to dst (no splice: a
// plain read and write per chunk, as a proxy that looks at the bytes
// does), then closes both.
func copyLoop(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
