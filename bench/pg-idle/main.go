// Command pg-idle opens many idle PostgreSQL connections and holds them, so
// that bench/pg.sh can measure what an idle connection costs a proxy. It
// does not run queries: each connection logs in, reaches ReadyForQuery and
// waits.
//
//	pg-idle -dsn "host=127.0.0.1 port=5433 ..." -n 5000 -ready FILE
//
// It writes the number of connections open to FILE once all are (or once it
// can open no more) and holds them until SIGINT or SIGTERM; then it closes
// them and exits. A failed connection is reported with its error; -keep-going
// makes it stop opening and hold what it has instead of failing.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

func main() {
	dsn := flag.String("dsn", "", "libpq connection string (required)")
	n := flag.Int("n", 5000, "connections to open")
	par := flag.Int("parallel", 16, "logins in flight at once")
	ready := flag.String("ready", "", "file to write the number of open connections to once they are open")
	timeout := flag.Duration("timeout", 30*time.Second, "bound on each login")
	keepGoing := flag.Bool("keep-going", false, "on a failed login, stop opening and hold what is open")
	flag.Parse()
	if *dsn == "" || *n < 1 || *par < 1 {
		flag.Usage()
		os.Exit(2)
	}
	cfg, err := pgconn.ParseConfig(*dsn)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pg-idle:", err)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	conns := make([]*pgconn.PgConn, *n)
	var (
		next     atomic.Int64 // the next connection to open
		failed   atomic.Bool
		errOnce  sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	start := time.Now()
	for range *par {
		wg.Go(func() {
			for !failed.Load() && ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= *n {
					return
				}
				lctx, cancel := context.WithTimeout(ctx, *timeout)
				c, err := pgconn.ConnectConfig(lctx, cfg)
				cancel()
				if err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("connection %d: %w", i+1, err) })
					failed.Store(true)
					return
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	open := 0
	for _, c := range conns {
		if c != nil {
			open++
		}
	}
	fmt.Fprintf(os.Stderr, "pg-idle: %d of %d connections open in %s\n", open, *n, time.Since(start).Round(time.Millisecond))
	if firstErr != nil {
		fmt.Fprintln(os.Stderr, "pg-idle: stopped opening:", firstErr)
	}
	code := 0
	switch {
	case ctx.Err() != nil:
		code = 1
	case firstErr != nil && !*keepGoing:
		code = 1
	default:
		if *ready != "" {
			if err := writeReady(*ready, open); err != nil {
				fmt.Fprintln(os.Stderr, "pg-idle:", err)
				code = 1
				break
			}
		}
		<-ctx.Done()
	}

	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, c := range conns {
		if c != nil {
			wg.Go(func() { c.Close(cctx) })
		}
	}
	wg.Wait()
	os.Exit(code)
}

// writeReady writes n to path, through a temporary file so that a reader
// never sees it half written.
func writeReady(path string, n int) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, fmt.Appendf(nil, "%d\n", n), 0o644); err != nil {
		return errors.Join(fmt.Errorf("write %s", tmp), err)
	}
	return os.Rename(tmp, path)
}
