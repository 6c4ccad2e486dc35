package postgres_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jitproxy/jitproxy/amendment"
	"github.com/jitproxy/jitproxy/recording"
)

// sleepSQL is the query every cancel and cut test interrupts.
const sleepSQL = "select pg_sleep(30)"

// sleeping returns how many of person's queries run pg_sleep upstream now.
func (f *fixture) sleeping(t testing.TB, person string) string {
	return f.pg.query(t, "select count(*) from pg_stat_activity where state = 'active' and query = '"+sleepSQL+"' and application_name = 'jitproxy/"+person+"'")
}

// startSleep runs sleepSQL through the proxy, in psql or pgx, and waits
// until it runs upstream; the returned channel gets its error (and psql's
// stderr).
func (f *fixture) startSleep(t *testing.T, client string, who amendment.Identity, a *amendment.Amendment) (cmd *exec.Cmd, result chan error, stderr *bytes.Buffer) {
	t.Helper()
	result = make(chan error, 1)
	stderr = new(bytes.Buffer)
	tok := f.token(t, who, a)
	dbname := a.Resource.Target + "/" + a.Resource.Database
	switch client {
	case "psql":
		cmd = f.psqlCmd(context.Background(), f.connString(who.Key(), dbname, "require"), tok, "-c", sleepSQL)
		cmd.Stderr = stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { result <- cmd.Wait() }()
		t.Cleanup(func() { cmd.Process.Kill() })
	case "pgx":
		c := f.mustConnect(t, who.Key(), dbname, tok)
		go func() {
			_, err := c.Exec(context.Background(), sleepSQL)
			result <- err
		}()
	}
	waitFor(t, 10*time.Second, "pg_sleep running upstream", func() bool { return f.sleeping(t, who.Key()) == "1" })
	return cmd, result, stderr
}

// TestCancel cancels a running query through the proxy, as psql's Ctrl+C
// and pgx's CancelRequest do.
func TestCancel(t *testing.T) {
	f := newFixture(t)
	tests := []struct{ name string }{{"pgx"}, {"psql"}, {"unknown key"}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := f.grant(t, alice, "app-db", "app_ro", "app", false, time.Hour)
			tok := f.token(t, alice, a)
			start := time.Now()
			var err error
			var stderr string
			switch tt.name {
			case "pgx":
				c := f.mustConnect(t, alice.Email, "app-db/app", tok)
				result := make(chan error, 1)
				go func() {
					_, err := c.Exec(context.Background(), sleepSQL)
					result <- err
				}()
				waitFor(t, 10*time.Second, "pg_sleep running upstream", func() bool { return f.sleeping(t, alice.Key()) == "1" })
				start = time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := c.PgConn().CancelRequest(ctx); err != nil {
					t.Fatalf("CancelRequest: %v", err)
				}
				err = waitResult(t, result, 5*time.Second)
				if code := pgError(err).Code; code != "57014" {
					t.Errorf("query ended with %v; want SQLSTATE 57014", err)
				}
				// The session goes on.
				var one int
				if err := c.QueryRow(context.Background(), "select 1").Scan(&one); err != nil || one != 1 {
					t.Errorf("after the cancel: %d, %v; want 1", one, err)
				}
			case "unknown key":
				// A wrong secret for a live session's process ID, in
				// clear and over TLS: ignored, as PostgreSQL ignores it.
				c := f.mustConnect(t, alice.Email, "app-db/app", tok)
				result := make(chan error, 1)
				go func() {
					_, err := c.Exec(context.Background(), sleepSQL)
					result <- err
				}()
				waitFor(t, 10*time.Second, "pg_sleep running upstream", func() bool { return f.sleeping(t, alice.Key()) == "1" })
				secret := append([]byte(nil), c.PgConn().SecretKey()...)
				secret[0] ^= 0xff
				req := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32([]byte{0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e}, c.PgConn().PID()), binary.BigEndian.Uint32(secret))
				raw, err := net.Dial("tcp", f.addr)
				if err != nil {
					t.Fatal(err)
				}
				raw.Write(req)
				raw.SetReadDeadline(time.Now().Add(5 * time.Second))
				if b, err := io.ReadAll(raw); len(b) != 0 || err != nil {
					t.Errorf("answered %q, %v; want the connection closed", b, err)
				}
				raw.Close()
				time.Sleep(300 * time.Millisecond)
				if got := f.sleeping(t, alice.Key()); got != "1" {
					t.Fatalf("%s pg_sleep running after a wrong cancel key; want it running", got)
				}
				select {
				case err := <-result:
					t.Fatalf("the query ended: %v", err)
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				start = time.Now()
				c.PgConn().CancelRequest(ctx)
				waitResult(t, result, 5*time.Second)
			case "psql":
				cmd, result, buf := f.startSleep(t, "psql", alice, a)
				start = time.Now()
				cmd.Process.Signal(syscall.SIGINT)
				err = waitResult(t, result, 5*time.Second)
				stderr = buf.String()
				if err == nil || !strings.Contains(stderr, "canceling statement due to user request") {
					t.Errorf("psql: %v, stderr %q; want the query cancelled", err, stderr)
				}
			}
			d := time.Since(start)
			t.Logf("cancel request to the query's end: %s", d)
			if d > 3*time.Second {
				t.Errorf("cancel took %s; want well under 3s", d)
			}
			waitFor(t, 5*time.Second, "pg_sleep gone upstream", func() bool { return f.sleeping(t, alice.Key()) == "0" })
		})
	}
}

func waitResult(t *testing.T, result chan error, d time.Duration) error {
	t.Helper()
	select {
	case err := <-result:
		return err
	case <-time.After(d):
		t.Fatalf("no result within %s", d)
		return nil
	}
}

// TestCut revokes or expires the amendment under a running query: the
// query is cancelled upstream and the client reads the one line why.
func TestCut(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name, client string
		expire       bool
	}{
		{name: "revoke psql", client: "psql"},
		{name: "revoke pgx", client: "pgx"},
		{name: "expire psql", client: "psql", expire: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := time.Hour
			if tt.expire {
				d = 3 * time.Second
			}
			a := f.grant(t, alice, "app-db", "app_ro", "app", false, d)
			_, result, stderr := f.startSleep(t, tt.client, alice, a)
			start := time.Now()
			want := "jitproxy: access to app_ro@app-db/app ended: amendment " + a.ShortID() + " expired"
			if !tt.expire {
				if _, err := f.am.Revoke(context.Background(), bob, a.ID, "incident 42"); err != nil {
					t.Fatal(err)
				}
				want = "jitproxy: access to app_ro@app-db/app ended: amendment " + a.ShortID() + " revoked by bob@example.com: incident 42"
			}
			err := waitResult(t, result, 10*time.Second)
			if !tt.expire {
				took := time.Since(start)
				t.Logf("revoke to the client's FATAL: %s", took)
				if took > 3*time.Second {
					t.Errorf("the cut took %s after the revoke; want well under 3s", took)
				}
			} else {
				t.Logf("expiry to the client's FATAL: %s", time.Since(a.ExpiresAt))
			}
			switch tt.client {
			case "psql":
				if err == nil || !strings.Contains(stderr.String(), "FATAL:  "+want+"\n") {
					t.Errorf("psql: %v, stderr %q; want FATAL: %s", err, stderr, want)
				}
			case "pgx":
				pe := pgError(err)
				if pe.Severity != "FATAL" || pe.Code != "57P01" || pe.Message != want {
					t.Errorf("pgx: %v (%s %s %q); want FATAL 57P01 %q", err, pe.Severity, pe.Code, pe.Message, want)
				}
			}
			waitFor(t, 5*time.Second, "pg_sleep cancelled upstream", func() bool { return f.sleeping(t, alice.Key()) == "0" })
			waitFor(t, 5*time.Second, "the session.cut audit row", func() bool {
				for _, r := range f.audit.find("session.cut") {
					if r.fields["amendment"] == a.ID && r.fields["cause"] == want {
						return true
					}
				}
				return false
			})
			var sleeps []recording.Statement
			for _, s := range f.statementsOf(t, a.ID) {
				if s.SQL == sleepSQL {
					sleeps = append(sleeps, s)
				}
			}
			if n := len(sleeps); n == 0 || sleeps[n-1].Error != "57P01" || sleeps[n-1].Message != want {
				t.Errorf("recorded %+v; want the cut query with 57P01 %q", sleeps, want)
			}
			waitFor(t, 5*time.Second, "the recording sealed with why", func() bool {
				all, _ := recording.List(f.recDir)
				for _, m := range all {
					if m.Amendment == a.ID && m.State == recording.StateClosed && m.EndReason == want {
						return true
					}
				}
				return false
			})
		})
	}
}

// TestReadOnly runs a read-only amendment of a read-write role: writes
// fail with 25006, reads work.
func TestReadOnly(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name     string
		readOnly bool
		wantCode string
	}{
		{name: "read-only", readOnly: true, wantCode: "25006"},
		{name: "read-write", readOnly: false, wantCode: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := f.grant(t, alice, "app-db", "app_rw", "app", tt.readOnly, time.Hour)
			c := f.mustConnect(t, alice.Email, "app-db/app", f.token(t, alice, a))
			ctx := context.Background()
			_, err := c.Exec(ctx, "insert into blobs values (-1, 'read-only test')")
			if got := pgError(err).Code; got != tt.wantCode {
				t.Errorf("insert: %v; want SQLSTATE %q", err, tt.wantCode)
			}
			var n int
			if err := c.QueryRow(ctx, "select count(*) from items").Scan(&n); err != nil || n == 0 {
				t.Errorf("select: %d, %v", n, err)
			}
			c.Exec(ctx, "delete from blobs where id = -1")
		})
	}
}

// TestShutdown ends live sessions with a line that says so.
func TestShutdown(t *testing.T) {
	f := newFixture(t)
	a := f.grant(t, alice, "app-db", "app_ro", "app", false, time.Hour)
	_, result, _ := f.startSleep(t, "pgx", alice, a)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	err := waitResult(t, result, 5*time.Second)
	want := "jitproxy: access to app_ro@app-db/app ended: proxy shutting down"
	if pe := pgError(err); pe.Code != "57P01" || pe.Message != want {
		t.Errorf("got %v; want 57P01 %q", err, want)
	}
	waitFor(t, 5*time.Second, "pg_sleep cancelled upstream", func() bool { return f.sleeping(t, alice.Key()) == "0" })
	if _, err := f.connect(t, alice.Email, "app-db/app", f.token(t, alice, a)); err == nil {
		t.Error("connected after Shutdown")
	}
}
