package postgres_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// startupPacket encodes a startup packet: version and key/value pairs.
func startupPacket(version uint32, kv ...string) []byte {
	b := binary.BigEndian.AppendUint32(make([]byte, 4), version)
	for _, s := range kv {
		b = append(append(b, s...), 0)
	}
	b = append(b, 0)
	binary.BigEndian.PutUint32(b, uint32(len(b)))
	return b
}

// message encodes a regular message.
func message(typ byte, body string) []byte {
	b := []byte{typ, 0, 0, 0, 0}
	b = append(b, body...)
	binary.BigEndian.PutUint32(b[1:], uint32(len(b)-1))
	return b
}

// readFatal reads messages until an ErrorResponse and returns its SQLSTATE
// and message; then it expects the connection to end.
func readFatal(t *testing.T, c net.Conn) (code, msg string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	for {
		var hdr [5]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			t.Fatalf("no ErrorResponse: %v", err)
		}
		body := make([]byte, binary.BigEndian.Uint32(hdr[1:])-4)
		if _, err := io.ReadFull(r, body); err != nil {
			t.Fatalf("truncated message: %v", err)
		}
		if hdr[0] != 'E' {
			continue
		}
		for _, f := range bytes.Split(body, []byte{0}) {
			if len(f) == 0 {
				continue
			}
			switch f[0] {
			case 'C':
				code = string(f[1:])
			case 'M':
				msg = string(f[1:])
			}
		}
		if _, err := r.ReadByte(); err == nil {
			t.Errorf("the connection goes on after %s %q", code, msg)
		}
		return code, msg
	}
}

// TestBadStartup sends what is not a valid startup to the proxy: each is
// answered at once with a FATAL that says what is wrong, and the
// connection closed; a session running meanwhile does not notice.
func TestBadStartup(t *testing.T) {
	f := newFixture(t)
	stop := f.busySession(t)
	tests := []struct {
		name     string
		send     []byte
		closeW   bool
		wantCode string
		want     string
	}{
		{name: "2 GiB length", send: []byte{0x7f, 0xff, 0xff, 0xff}, wantCode: "08P01", want: "jitproxy: invalid startup packet length 2147483647"},
		{name: "negative length", send: []byte{0x80, 0, 0, 0}, wantCode: "08P01", want: "jitproxy: invalid startup packet length -2147483648"},
		{name: "over PostgreSQL's limit", send: []byte{0, 0, 0x27, 0x11}, wantCode: "08P01", want: "jitproxy: invalid startup packet length 10001"},
		{name: "http", send: []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), wantCode: "08P01", want: "jitproxy: invalid startup packet length 1195725856"},
		{name: "truncated", send: []byte{0, 0, 0, 100, 0, 3, 0, 0, 'u', 's'}, closeW: true, wantCode: "08P01", want: "jitproxy: truncated startup packet"},
		{name: "malformed", send: startupPacket(3<<16, "user"), wantCode: "08P01", want: "jitproxy: malformed startup message"},
		{name: "protocol 2", send: startupPacket(2<<16, "user", "alice@example.com"), wantCode: "0A000", want: "jitproxy: unsupported frontend protocol 2.0"},
		{name: "no user", send: startupPacket(3<<16, "database", "app-db"), wantCode: "28000", want: "jitproxy: no user name"},
		{name: "replication", send: startupPacket(3<<16, "user", "alice@example.com", "database", "app-db", "replication", "database"), wantCode: "0A000", want: "jitproxy: jitproxy does not relay replication connections"},
		{name: "plaintext", send: startupPacket(3<<16, "user", "alice@example.com", "database", "app-db"), wantCode: "28000", want: "jitproxy: the jitproxy PostgreSQL endpoint requires TLS"},
		{name: "second SSLRequest", send: append([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}, 0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f), wantCode: "", want: "S"},
		{name: "garbage TLS", send: []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}, closeW: true, wantCode: "", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", f.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			if _, err := c.Write(tt.send); err != nil {
				t.Fatal(err)
			}
			if tt.closeW {
				c.(*net.TCPConn).CloseWrite()
			}
			if tt.wantCode == "" {
				// What should be a TLS handshake is not: the connection
				// just ends (after the 'S' that asked for it).
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				b, _ := io.ReadAll(c)
				if string(b) != tt.want {
					t.Errorf("got %q; want %q then the end", b, tt.want)
				}
				return
			}
			code, msg := readFatal(t, c)
			if code != tt.wantCode || !strings.HasPrefix(msg, tt.want) {
				t.Errorf("got %s %q; want %s %q", code, msg, tt.wantCode, tt.want)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("answered after %s; want at once", d)
			}
		})
	}
	stop()
}

// busySession runs queries through the proxy on another session until the
// returned func is called, which fails the test if any failed.
func (f *fixture) busySession(t *testing.T) (stop func()) {
	t.Helper()
	a := f.grant(t, eve, "app-db", "app_ro", "app", false, time.Hour)
	c := f.mustConnect(t, eve.Email, "app-db/app", f.token(t, eve, a))
	var (
		done  = make(chan struct{})
		wg    sync.WaitGroup
		n     atomic.Int64
		mu    sync.Mutex
		first error
	)
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			var got int
			if err := c.QueryRow(context.Background(), "select count(*) from items where id > $1", 50).Scan(&got); err != nil || got != 50 {
				mu.Lock()
				if first == nil {
					first = errors.Join(err, errors.New("wrong count"))
				}
				mu.Unlock()
				return
			}
			n.Add(1)
		}
	})
	return func() {
		t.Helper()
		close(done)
		wg.Wait()
		if first != nil {
			t.Errorf("the other session failed: %v", first)
		}
		if n.Load() == 0 {
			t.Error("the other session ran no query")
		}
	}
}

// TestBadMessages sends what is not a valid message on an authenticated
// session: the client gets a FATAL at a message boundary, the target
// nothing of it, and other sessions go on.
func TestBadMessages(t *testing.T) {
	f := newFixture(t)
	stop := f.busySession(t)
	tests := []struct {
		name     string
		send     []byte
		closeW   bool
		wantCode string
		want     string
	}{
		{name: "garbage", send: []byte("\x01\x00\x00\x00\x08abcd"), wantCode: "08P01", want: "jitproxy: invalid frontend message type '\\x01'"},
		{name: "length under 4", send: []byte{'Q', 0, 0, 0, 2}, wantCode: "08P01", want: "jitproxy: invalid message length 2 of a 'Q' message"},
		{name: "query over the limit", send: []byte{'Q', 0x7f, 0, 0, 0}, wantCode: "54000", want: "jitproxy: a 'Q' message of 2130706433 bytes is over jitproxy's limit"},
		{name: "malformed bind", send: message('B', "\x00"), wantCode: "08P01", want: "jitproxy: malformed 'B' message"},
		{name: "password after startup", send: message('p', "secret\x00"), wantCode: "08P01", want: "jitproxy: invalid frontend message type 'p'"},
		{name: "truncated", send: append([]byte{'Q', 0, 0, 0, 100}, "select"...), closeW: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := f.grant(t, alice, "app-db", "app_ro", "app", false, time.Hour)
			cfg, err := pgconn.ParseConfig(f.connString(alice.Email, "app-db/app", "require"))
			if err != nil {
				t.Fatal(err)
			}
			cfg.Password = f.token(t, alice, a)
			pc, err := pgconn.ConnectConfig(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			hc, err := pc.Hijack()
			if err != nil {
				t.Fatal(err)
			}
			c := hc.Conn
			defer c.Close()
			before := len(f.audit.find("session.end"))
			if _, err := c.Write(tt.send); err != nil {
				t.Fatal(err)
			}
			if tt.closeW {
				c.(interface{ CloseWrite() error }).CloseWrite()
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if b, err := io.ReadAll(c); err != nil || len(b) != 0 {
					t.Errorf("read %q, %v; want the connection closed", b, err)
				}
			} else {
				code, msg := readFatal(t, c)
				if code != tt.wantCode || !strings.HasPrefix(msg, tt.want) {
					t.Errorf("got %s %q; want %s %q", code, msg, tt.wantCode, tt.want)
				}
			}
			waitFor(t, 5*time.Second, "the session.end audit row", func() bool { return len(f.audit.find("session.end")) > before })
		})
	}
	stop()
}

// TestStartupTimeout closes a connection that says nothing within
// StartupTimeout, and one that stops halfway.
func TestStartupTimeout(t *testing.T) {
	f := newFixture(t, func(c *pgproxyConfig) { c.StartupTimeout = 300 * time.Millisecond })
	tests := []struct {
		name string
		send []byte
	}{
		{name: "silent", send: nil},
		{name: "half a packet", send: []byte{0, 0, 0, 40, 0, 3, 0, 0}},
		{name: "after the TLS answer", send: []byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", f.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write(tt.send)
			start := time.Now()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			io.ReadAll(c)
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("closed after %s; want about 300ms", d)
			}
		})
	}
}

// TestEncryptionRequests answers GSSENCRequest with 'N' and SSLRequest with
// 'S', in the order clients try them.
func TestEncryptionRequests(t *testing.T) {
	f := newFixture(t)
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var got []byte
	for _, req := range [][]byte{{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30}, {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}} {
		c.Write(req)
		var b [1]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			t.Fatal(err)
		}
		got = append(got, b[0])
	}
	if string(got) != "NS" {
		t.Errorf("answers %q; want NS", got)
	}
}
