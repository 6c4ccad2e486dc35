package ssh

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jitproxy/jitproxy/certs"
)

// goUpstream is an in-process SSH server standing in for a target's sshd,
// so that a benchmark measures the bastion and not sshd: it accepts
// certificates from the jitproxy user CA and serves two exec commands,
// "sink" (read stdin to EOF) and "source N" (write N bytes of text).
type goUpstream struct {
	addr    string
	hostKey gossh.PublicKey
}

func startGoUpstream(tb testing.TB, userCAs []gossh.PublicKey) *goUpstream {
	tb.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	signer, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		tb.Fatal(err)
	}
	checker := &gossh.CertChecker{IsUserAuthority: func(auth gossh.PublicKey) bool {
		for _, ca := range userCAs {
			if bytes.Equal(ca.Marshal(), auth.Marshal()) {
				return true
			}
		}
		return false
	}}
	conf := &gossh.ServerConfig{PublicKeyCallback: checker.Authenticate, Config: serverCrypto()}
	conf.AddHostKey(signer)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serveGoUpstream(c, conf)
		}
	}()
	return &goUpstream{addr: ln.Addr().String(), hostKey: signer.PublicKey()}
}

func serveGoUpstream(c net.Conn, conf *gossh.ServerConfig) {
	sc, chans, reqs, err := gossh.NewServerConn(c, conf)
	if err != nil {
		return
	}
	defer sc.Close()
	go gossh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(gossh.UnknownChannelType, "no")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		go func() {
			for req := range creqs {
				if req.Type != "exec" {
					req.Reply(req.Type == "pty-req" || req.Type == "env", nil)
					continue
				}
				var e execRequest
				gossh.Unmarshal(req.Payload, &e)
				req.Reply(true, nil)
				go runGoUpstream(ch, e.Command)
			}
		}()
	}
}

func runGoUpstream(ch gossh.Channel, cmd string) {
	defer ch.Close()
	switch {
	case cmd == "sink":
		io.Copy(io.Discard, ch)
	case strings.HasPrefix(cmd, "source "):
		n, _ := strconv.ParseInt(strings.TrimPrefix(cmd, "source "), 10, 64)
		buf := bytes.Repeat([]byte("x"), bufSize)
		for n > 0 {
			m, err := ch.Write(buf[:min(n, int64(len(buf)))])
			if err != nil {
				return
			}
			n -= int64(m)
		}
	}
	ch.CloseWrite()
	ch.SendRequest("exit-status", false, gossh.Marshal(exitStatus{0}))
}

// BenchmarkRelay measures throughput through the single-hop relay against
// the same client talking to the same upstream directly, all in one
// process on the same cores. Upload input is not recorded (the default);
// download output is, as text. The allocations are x/crypto's (it
// allocates each packet it reads); the relay itself allocates nothing per
// write (TestCopierDoesNotAllocate).
func BenchmarkRelay(b *testing.B) {
	var up *goUpstream
	e := newEnv(b, envOptions{quiet: true, configure: func(c *Config) {
		up = startGoUpstream(b, c.Authority.(*certs.Authority).UserCAKeys())
		c.Targets["web-1"] = Target{Name: "web-1", Address: up.addr, HostKeys: []gossh.PublicKey{up.hostKey}}
	}})
	e.grant(e.login, time.Hour, false)
	direct := func(b *testing.B) *gossh.Client {
		signer, err := e.ca.UpstreamSigner(e.login, "bench", time.Now().Add(time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		c, err := gossh.Dial("tcp", up.addr, &gossh.ClientConfig{
			User: e.login, Auth: []gossh.AuthMethod{gossh.PublicKeys(signer)},
			HostKeyCallback: gossh.FixedHostKey(up.hostKey), Config: clientCrypto(),
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		return c
	}
	proxied := func(b *testing.B) *gossh.Client { return e.goClient(b, "web-1", e.login) }
	const block = 256 << 10
	for _, path := range []struct {
		name   string
		client func(*testing.B) *gossh.Client
	}{{"direct", direct}, {"bastion", proxied}} {
		b.Run("upload/"+path.name, func(b *testing.B) {
			sess, err := path.client(b).NewSession()
			if err != nil {
				b.Fatal(err)
			}
			stdin, err := sess.StdinPipe()
			if err != nil {
				b.Fatal(err)
			}
			if err := sess.Start("sink"); err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, block)
			b.SetBytes(block)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := stdin.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			stdin.Close()
			if err := sess.Wait(); err != nil {
				b.Fatal(err)
			}
		})
		b.Run("download/"+path.name, func(b *testing.B) {
			sess, err := path.client(b).NewSession()
			if err != nil {
				b.Fatal(err)
			}
			stdout, err := sess.StdoutPipe()
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(block)
			b.ReportAllocs()
			b.ResetTimer()
			if err := sess.Start("source " + strconv.Itoa(b.N*block)); err != nil {
				b.Fatal(err)
			}
			n, err := io.CopyBuffer(io.Discard, stdout, make([]byte, bufSize))
			if err != nil || n != int64(b.N*block) {
				b.Fatalf("read %d bytes, %v; want %d", n, err, b.N*block)
			}
			if err := sess.Wait(); err != nil {
				b.Fatal(err)
			}
		})
	}
}
