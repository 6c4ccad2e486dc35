package postgres

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jitproxy/jitproxy/amendment"
	"github.com/jitproxy/jitproxy/certs"
	"github.com/jitproxy/jitproxy/session"
)

// The startup fuzzer's server never gets past the token: these refuse
// everything, and the registry is never reached.
type refuseTokens struct{}

func (refuseTokens) Verify(string, string, string) (certs.Token, error) {
	return certs.Token{}, certs.ErrTokenInvalid
}

type refuseAccess struct{}

func (refuseAccess) ActivePostgres(context.Context, string, string, string, string) (*amendment.Amendment, error) {
	return nil, errors.New("no active amendment")
}

type refuseRegistry struct{}

func (refuseRegistry) Register(context.Context, session.Session) (context.Context, func(string), error) {
	return nil, nil, session.ErrClosed
}

// fuzzServer is a Server whose startup can be fuzzed without a database.
func fuzzServer(t testing.TB) *Server {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fuzz"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{
		TLS:            &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}},
		Tokens:         refuseTokens{},
		Targets:        map[string]Target{"app-db": {Name: "app-db", Address: "127.0.0.1:1", Roles: map[string]Role{"app_ro": {Name: "app_ro"}}, TLS: UpstreamTLS{Mode: "disable"}}},
		Access:         refuseAccess{},
		Registry:       refuseRegistry{},
		StartupTimeout: 300 * time.Millisecond,
		Dial: func(context.Context, string, string) (net.Conn, error) {
			return nil, errors.New("the fuzzer dials nothing")
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// FuzzStartup feeds arbitrary bytes to a connection's startup: whatever
// they are, the connection ends promptly, answered with at most one FATAL,
// and nothing panics.
func FuzzStartup(f *testing.F) {
	for _, seed := range [][]byte{
		{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f},
		{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30},
		{0x7f, 0xff, 0xff, 0xff},
		[]byte("\x00\x00\x00\x2b\x00\x03\x00\x00user\x00alice@example.com\x00database\x00app-db\x00\x00"),
		[]byte("\x00\x00\x00\x10\x04\xd2\x16\x2e\x00\x00\x00\x01abcd"),
	} {
		f.Add(seed)
	}
	s := fuzzServer(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		client, server := tcpPair(t)
		done := make(chan struct{})
		go func() {
			defer close(done)
			defer server.Close()
			s.handleConn(server)
		}()
		go func() {
			client.Write(data)
			client.(*net.TCPConn).CloseWrite()
		}()
		client.SetReadDeadline(time.Now().Add(5 * time.Second))
		out, _ := io.ReadAll(client)
		client.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("the connection did not end")
		}
		if n := bytes.Count(out, []byte("SFATAL\x00")); n > 1 {
			t.Errorf("%d FATALs in %q", n, out)
		}
		if len(out) > 4096 {
			t.Errorf("answered %d bytes", len(out))
		}
	})
}

// FuzzFraming feeds arbitrary bytes, in arbitrary chunks, through either
// side of the relay with a recording tracker (for odd chunk sizes reading
// into a small buffer while idle, as over TLS): what goes through is always
// an unchanged prefix of what came in, and all of it unless a message was
// refused or is still incomplete; nothing panics.
func FuzzFraming(f *testing.F) {
	f.Add(cat(query("select 1"), parse("s", "select $1"), bind("s"), execute(), sync_()), false, uint8(0))
	f.Add(cat(msg('T', "\x00\x00"), dataRow("1"), complete("SELECT 1"), errorResponse("22012", "x"), ready()), true, uint8(3))
	f.Add([]byte("\x01\x00\x00\x00\x08abcd"), false, uint8(255))
	f.Add([]byte{'Q', 0x7f, 0xff, 0xff, 0xff}, false, uint8(1))
	f.Add(cat(msg('G', "\x00\x00\x00"), msg('d', "1\n"), msg('H', "\x00\x00\x00"), msg('s'), msg('I')), true, uint8(7))
	q, _ := newQueryLog(f, time.Hour)
	var sessions atomic.Int64
	f.Fuzz(func(t *testing.T, data []byte, server bool, chunk uint8) {
		sessions.Add(1)
		tr := newTracker(q, time.Now, true)
		if server {
			// Something in flight for the answers to answer.
			conversation(t, tr, [2][]byte{cat(query("select 1"), parse("", "select $1"), bind("", ptr("v")), msg('D', "P", cstr("")), execute(), sync_()), nil})
		}
		var f framer = clientFramer{tr, new(atomic.Bool)}
		if server {
			f = serverFramer{tr}
		}
		var out bytes.Buffer
		var n atomic.Int64
		newBuf := func() *[]byte { return ptr(make([]byte, 256)) }
		p := &pipe{src: &chunkReader{data: data, n: int(chunk) + 1}, dst: &out, f: f, buf: newBuf(), limit: 1024, count: &n, getBuf: newBuf, putBuf: func(*[]byte) {}}
		if chunk%2 == 1 {
			// As the relay reads TLS: into a small buffer while idle.
			p.buf, p.small = nil, make([]byte, 64)
		}
		var err error
		for err == nil {
			err = p.step()
			if !server {
				// Answer everything, so the tracker never fills up.
				for tr.peek() != nil {
					tr.pop()
				}
			}
		}
		if !bytes.HasPrefix(data, out.Bytes()) {
			t.Fatalf("relayed %q, not a prefix of %q", out.Bytes(), data)
		}
		if n.Load() != int64(out.Len()) {
			t.Errorf("counted %d bytes; relayed %d", n.Load(), out.Len())
		}
		var ue *userError
		switch {
		case err == io.EOF:
			if out.Len()+p.n != len(data) {
				t.Errorf("relayed %d and kept %d of %d bytes", out.Len(), p.n, len(data))
			}
		case errors.As(err, &ue):
			if ue.code != codeProtocolViolation && ue.code != codeProgramLimit {
				t.Errorf("refused with %s %q", ue.code, ue.msg)
			}
		default:
			t.Errorf("ended with %v", err)
		}
	})
}
