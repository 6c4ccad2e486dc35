package certs

import (
	"crypto/ed25519"
	"net"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// t0 is the fixed "now" of tests that inject a clock.
var t0 = time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)

func fixedNow(t time.Time) func() time.Time { return func() time.Time { return t } }

// newAuthority returns an Authority whose CA key files, when cfg does not
// name them, are generated in a fresh temporary directory.
func newAuthority(t testing.TB, cfg Config) *Authority {
	t.Helper()
	dir := t.TempDir()
	if cfg.UserCAKeyFile == "" {
		cfg.UserCAKeyFile = filepath.Join(dir, "user_ca")
	}
	if cfg.HostCAKeyFile == "" {
		cfg.HostCAKeyFile = filepath.Join(dir, "host_ca")
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return a
}

// newKey returns a fresh Ed25519 signer.
func newKey(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// certSigner returns a signer presenting cert, whose key is key.
func certSigner(t testing.TB, cert *ssh.Certificate, key ssh.Signer) ssh.Signer {
	t.Helper()
	s, err := ssh.NewCertSigner(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// signUser signs a certificate for key that is valid for an hour from the
// Authority's now, with principal ubuntu.
func signUser(t testing.TB, a *Authority, key ssh.Signer) *ssh.Certificate {
	t.Helper()
	now := a.now()
	cert, err := a.SignUser(key.PublicKey(), UserCert{KeyID: "person=alice@example.com", Principals: []string{"ubuntu"}, ValidAfter: now, ValidBefore: now.Add(time.Hour), PTY: true})
	if err != nil {
		t.Fatalf("SignUser: %v", err)
	}
	return cert
}

// authenticate runs a real SSH handshake on loopback: a server whose
// PublicKeyCallback is check, and a client logging in as user with signer.
// It returns nil if the client got in, else the error check returned (or
// the client's error if check was never called).
func authenticate(t *testing.T, check func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error), signer ssh.Signer, user string) error {
	t.Helper()
	hostKey := newKey(t)
	checkErrs := make(chan error, 8)
	srvCfg := &ssh.ServerConfig{
		PublicKeyCallback: func(conn ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			perms, err := check(conn, key)
			if err != nil {
				checkErrs <- err
			}
			return perms, err
		},
	}
	srvCfg.AddHostKey(hostKey)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		sconn, chans, reqs, err := ssh.NewServerConn(c, srvCfg)
		if err == nil {
			go ssh.DiscardRequests(reqs)
			go func() {
				for ch := range chans {
					ch.Reject(ssh.Prohibited, "test server")
				}
			}()
			err = sconn.Wait()
		}
		served <- err
	}()

	hostKeys, err := HostKeyCallback("test-server", []ssh.PublicKey{hostKey.PublicKey()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	cconn, chans, reqs, err := ssh.NewClientConn(c, ln.Addr().String(), &ssh.ClientConfig{
		User:            user,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: hostKeys,
	})
	if err == nil {
		ssh.NewClient(cconn, chans, reqs).Close()
	} else {
		c.Close()
	}
	<-served
	if err == nil {
		return nil
	}
	select {
	case cerr := <-checkErrs:
		return cerr
	default:
		return err
	}
}

// checkWith adapts a checker returning a certificate to a PublicKeyCallback.
func checkWith(check func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Certificate, error)) func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) {
	return func(conn ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
		cert, err := check(conn, key)
		if err != nil {
			return nil, err
		}
		return &cert.Permissions, nil
	}
}

// ed25519GenerateKey returns a fresh Ed25519 key pair.
func ed25519GenerateKey() (ed25519.PublicKey, ed25519.PrivateKey, error) {
	return ed25519.GenerateKey(nil)
}
