package certs

import (
	"errors"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestSignHost(t *testing.T) {
	a := newAuthority(t, Config{Now: fixedNow(t0)})
	key := newKey(t)
	cert, err := a.SignHost(key.PublicKey(), []string{"web-1", "web-1.internal"}, 2*time.Hour)
	if err != nil {
		t.Fatalf("SignHost: %v", err)
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"CertType", cert.CertType, uint32(ssh.HostCert)},
		{"ValidAfter", int64(cert.ValidAfter), t0.Add(-time.Minute).Unix()},
		{"ValidBefore", int64(cert.ValidBefore), t0.Add(2 * time.Hour).Unix()},
		{"Key", ssh.FingerprintSHA256(cert.Key), ssh.FingerprintSHA256(key.PublicKey())},
		{"SignatureKey", ssh.FingerprintSHA256(cert.SignatureKey), ssh.FingerprintSHA256(a.HostCAKeys()[0])},
		{"extensions", len(cert.Extensions) + len(cert.CriticalOptions), 0},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %v; want %v", c.name, c.got, c.want)
		}
	}
	if want := []string{"web-1", "web-1.internal"}; !slices.Equal(cert.ValidPrincipals, want) {
		t.Errorf("ValidPrincipals: got %q; want %q", cert.ValidPrincipals, want)
	}
	if sameKey(cert.SignatureKey, a.UserCAKeys()[0]) {
		t.Errorf("host certificate signed by the user CA; want the host CA")
	}

	for _, bad := range []struct {
		name      string
		pub       ssh.PublicKey
		hostnames []string
		validFor  time.Duration
		wantErr   error
	}{
		{"no hostnames", key.PublicKey(), nil, time.Hour, ErrNoPrincipals},
		{"empty hostname", key.PublicKey(), []string{""}, time.Hour, ErrBadPrincipal},
		{"zero validity", key.PublicKey(), []string{"web-1"}, 0, ErrBadValidity},
		{"negative validity", key.PublicKey(), []string{"web-1"}, -time.Hour, ErrBadValidity},
		{"certificate as the key", cert, []string{"web-1"}, time.Hour, ErrBadPublicKey},
	} {
		if c, err := a.SignHost(bad.pub, bad.hostnames, bad.validFor); !errors.Is(err, bad.wantErr) {
			t.Errorf("%s: got %v, %v; want %v", bad.name, c, err, bad.wantErr)
		}
	}
}

// clock is a settable Config.Now for tests that move time.
type clock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestHostSignerCache(t *testing.T) {
	clk := &clock{t: t0}
	a := newAuthority(t, Config{Now: clk.now, HostCertTTL: 4 * time.Hour})
	signer := func(hostname string) ssh.Signer {
		t.Helper()
		s, err := a.HostSigner(hostname)
		if err != nil {
			t.Fatalf("HostSigner(%q): %v", hostname, err)
		}
		return s
	}
	web1 := signer("web-1")
	cert, ok := web1.PublicKey().(*ssh.Certificate)
	if !ok || cert.CertType != ssh.HostCert || !slices.Equal(cert.ValidPrincipals, []string{"web-1"}) || int64(cert.ValidBefore) != t0.Add(4*time.Hour).Unix() {
		t.Fatalf("got %#v; want a host certificate for web-1 valid 4h", web1.PublicKey())
	}

	tests := []struct {
		name      string
		advance   time.Duration
		hostname  string
		wantSame  ssh.Signer // nil means a new signer
		wantOther ssh.Signer // a signer the result must differ from
	}{
		{name: "same hostname", hostname: "web-1", wantSame: web1},
		{name: "another hostname", hostname: "web-2", wantOther: web1},
		{name: "later, still fresh", advance: 2*time.Hour + 59*time.Minute, hostname: "web-1", wantSame: web1},
		{name: "a quarter of the validity left: renewed", advance: time.Minute, hostname: "web-1", wantOther: web1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk.advance(tt.advance)
			got := signer(tt.hostname)
			if tt.wantSame != nil && got != tt.wantSame {
				t.Errorf("got a new signer %s; want the cached one", ssh.FingerprintSHA256(got.PublicKey()))
			}
			if tt.wantOther != nil && sameKey(got.PublicKey(), tt.wantOther.PublicKey()) {
				t.Errorf("got the signer %s again; want a new one", ssh.FingerprintSHA256(got.PublicKey()))
			}
		})
	}

	clk.advance(4 * time.Hour) // web-2's certificate has expired
	signer("web-3")
	a.mu.Lock()
	_, kept := a.hosts["web-2"]
	a.mu.Unlock()
	if kept {
		t.Errorf("web-2's expired entry still cached; want it dropped")
	}
}

func TestHostSignerConcurrent(t *testing.T) {
	a := newAuthority(t, Config{})
	hostnames := []string{"web-1", "web-2", "db-1"}
	const perHost = 50
	got := make([][]ssh.Signer, len(hostnames))
	var wg sync.WaitGroup
	for h, name := range hostnames {
		got[h] = make([]ssh.Signer, perHost)
		for i := range perHost {
			wg.Go(func() {
				s, err := a.HostSigner(name)
				if err != nil {
					t.Error(err)
				}
				got[h][i] = s
			})
		}
	}
	wg.Wait()
	for h, name := range hostnames {
		for i, s := range got[h] {
			if s != got[h][0] {
				t.Fatalf("%s call %d: got another signer; want one certificate for all %d connections", name, i, perHost)
			}
		}
		if h > 0 && sameKey(got[h][0].PublicKey(), got[0][0].PublicKey()) {
			t.Errorf("%s and %s share a signer; want one each", name, hostnames[0])
		}
	}
}

// TestHostSignerHandshake is the bastion's inner hop: an SSH server
// presenting HostSigner's certificate, and a client trusting the host CA.
func TestHostSignerHandshake(t *testing.T) {
	a := newAuthority(t, Config{})
	tests := []struct {
		name    string
		present string // the hostname the server presents
		expect  string // the hostname the client verifies
		wantOK  bool
	}{
		{"right target", "web-1", "web-1", true},
		{"another target's certificate", "web-2", "web-1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hostSigner, err := a.HostSigner(tt.present)
			if err != nil {
				t.Fatal(err)
			}
			cb, err := HostKeyCallback(tt.expect, nil, a.HostCAKeys())
			if err != nil {
				t.Fatal(err)
			}
			err = handshakeHost(t, hostSigner, cb)
			if (err == nil) != tt.wantOK || (err != nil && !errors.Is(err, ErrHostKeyMismatch)) {
				t.Errorf("got %v; want accepted=%v (or ErrHostKeyMismatch)", err, tt.wantOK)
			}
		})
	}
}

// handshakeHost runs an SSH handshake on loopback against a server with
// host key hostSigner that accepts any client, verifying it with cb.
func handshakeHost(t *testing.T, hostSigner ssh.Signer, cb ssh.HostKeyCallback) error {
	t.Helper()
	srvCfg := &ssh.ServerConfig{NoClientAuth: true}
	srvCfg.AddHostKey(hostSigner)
	client, server := loopbackPair(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer server.Close()
		if sconn, chans, reqs, err := ssh.NewServerConn(server, srvCfg); err == nil {
			go ssh.DiscardRequests(reqs)
			go func() {
				for range chans {
				}
			}()
			sconn.Wait()
		}
	}()
	client.SetDeadline(time.Now().Add(10 * time.Second))
	cconn, _, _, err := ssh.NewClientConn(client, client.RemoteAddr().String(), &ssh.ClientConfig{User: "ubuntu", HostKeyCallback: cb})
	if err == nil {
		cconn.Close()
	}
	client.Close()
	<-done
	return err
}

// loopbackPair returns the two ends of a TCP connection on 127.0.0.1.
func loopbackPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	server.SetDeadline(time.Now().Add(10 * time.Second))
	return client, server
}

func BenchmarkHostSignerCached(b *testing.B) {
	a := newAuthority(b, Config{})
	if _, err := a.HostSigner("web-1"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := a.HostSigner("web-1"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
