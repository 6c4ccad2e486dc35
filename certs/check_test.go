package certs

import (
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestCheckUserCert(t *testing.T) {
	cfg := files(t.TempDir(), Config{})
	mint := newAuthority(t, withNow(cfg, t0))
	old := newAuthority(t, Config{Now: fixedNow(t0)})      // the CA before a rotation, listed as trusted
	stranger := newAuthority(t, Config{Now: fixedNow(t0)}) // a CA nobody trusts
	key := newKey(t)

	revokedCert := signUser(t, mint, key)
	cfg.TrustedUserCAs = []string{authorizedKey(old.UserCAKeys()[0])}
	cfg.RevokedSerials = []uint64{revokedCert.Serial}

	sign := func(a *Authority, req UserCert) ssh.Signer {
		t.Helper()
		cert, err := a.SignUser(key.PublicKey(), req)
		if err != nil {
			t.Fatal(err)
		}
		return certSigner(t, cert, key)
	}
	req := func(f func(*UserCert)) UserCert {
		r := UserCert{KeyID: "person=alice@example.com", Principals: []string{"ubuntu"}, ValidAfter: t0, ValidBefore: t0.Add(time.Hour)}
		if f != nil {
			f(&r)
		}
		return r
	}
	hostCert, err := mint.SignHost(key.PublicKey(), []string{"alice"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tampered := signUser(t, mint, key)
	tampered.KeyId = "person=mallory@example.com"

	tests := []struct {
		name    string
		signer  ssh.Signer
		now     time.Time
		wantErr error
		want    string // in the message
	}{
		{name: "fresh certificate, principal not the login name", signer: sign(mint, req(nil)), now: t0},
		{name: "signed by the old CA during rotation", signer: sign(old, req(nil)), now: t0},
		{name: "from source 127.0.0.1", signer: sign(mint, req(func(r *UserCert) { r.SourceAddresses = []string{"10.0.0.0/8", "127.0.0.0/8"} })), now: t0},
		{name: "plain key", signer: key, now: t0, wantErr: ErrNotCertificate, want: "only jitproxy certificates are accepted: run jitproxy login"},
		{name: "unlisted CA", signer: sign(stranger, req(nil)), now: t0, wantErr: ErrUnknownCA},
		{name: "expired", signer: sign(mint, req(nil)), now: t0.Add(time.Hour), wantErr: ErrCertExpired},
		{name: "not yet valid", signer: sign(mint, req(func(r *UserCert) { r.ValidAfter = t0.Add(time.Hour); r.ValidBefore = t0.Add(2 * time.Hour) })), now: t0, wantErr: ErrCertNotYetValid},
		{name: "host certificate", signer: certSigner(t, hostCert, key), now: t0, wantErr: ErrNotUserCert},
		{name: "revoked serial", signer: certSigner(t, revokedCert, key), now: t0, wantErr: ErrCertRevoked},
		{name: "outside its source addresses", signer: sign(mint, req(func(r *UserCert) { r.SourceAddresses = []string{"10.0.0.0/8"} })), now: t0, wantErr: ErrCertInvalid, want: "not 127.0.0.1"},
		{name: "tampered after signing", signer: certSigner(t, tampered, key), now: t0, wantErr: ErrCertInvalid, want: "signature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAuthority(t, withNow(cfg, tt.now))
			var got *ssh.Certificate
			err := authenticate(t, checkWith(func(conn ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Certificate, error) {
				cert, err := a.CheckUserCert(conn, key)
				got = cert
				return cert, err
			}), tt.signer, "alice")
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("got %v; want %v", err, tt.wantErr)
			}
			if err != nil {
				if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), `certs: check user cert for "alice": `) {
					t.Errorf("got %q; want the certs prefix and %q", err, tt.want)
				}
				return
			}
			if got == nil || got.KeyId != "person=alice@example.com" {
				t.Errorf("got certificate %v; want the one presented, KeyId person=alice@example.com", got)
			}
		})
	}
}

// withNow sets cfg's clock to t.
func withNow(cfg Config, t time.Time) Config {
	cfg.Now = fixedNow(t)
	return cfg
}

func TestCheckUserCertWithoutConn(t *testing.T) {
	a := newAuthority(t, Config{Now: fixedNow(t0)})
	key := newKey(t)
	cert, err := a.SignUser(key.PublicKey(), UserCert{KeyID: "alice", Principals: []string{"alice"}, ValidBefore: t0.Add(time.Hour), SourceAddresses: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.CheckUserCert(nil, cert); !errors.Is(err, ErrCertInvalid) {
		t.Errorf("source-address certificate without a connection: got %v; want ErrCertInvalid", err)
	}
}

func TestHostKeyCallback(t *testing.T) {
	dir := t.TempDir()
	a := newAuthority(t, files(dir, Config{}))
	hostCAFile := filepath.Join(dir, "host_ca")
	other := newAuthority(t, Config{})
	pinned, hostKey, stranger := newKey(t), newKey(t), newKey(t)
	hostCA := a.HostCAKeys()[0]

	hostCert := func(a *Authority, key ssh.Signer, hostnames ...string) *ssh.Certificate {
		t.Helper()
		cert, err := a.SignHost(key.PublicKey(), hostnames, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return cert
	}
	expired := newAuthority(t, Config{
		UserCAKeyFile: filepath.Join(t.TempDir(), "u"), HostCAKeyFile: hostCAFile,
		Now: fixedNow(time.Now().Add(-48 * time.Hour)),
	})
	userCert := signUser(t, newAuthority(t, Config{UserCAKeyFile: hostCAFile, HostCAKeyFile: filepath.Join(t.TempDir(), "h")}), hostKey)

	tests := []struct {
		name   string
		pinned []ssh.PublicKey
		cas    []ssh.PublicKey
		key    ssh.PublicKey
		wantOK bool
	}{
		{"pinned key", []ssh.PublicKey{stranger.PublicKey(), pinned.PublicKey()}, nil, pinned.PublicKey(), true},
		{"other key", []ssh.PublicKey{pinned.PublicKey()}, []ssh.PublicKey{hostCA}, stranger.PublicKey(), false},
		{"host cert from the CA for the hostname", nil, []ssh.PublicKey{hostCA}, hostCert(a, hostKey, "web-2", "web-1"), true},
		{"host cert for another hostname", nil, []ssh.PublicKey{hostCA}, hostCert(a, hostKey, "web-2"), false},
		{"host cert from another CA", nil, []ssh.PublicKey{hostCA}, hostCert(other, hostKey, "web-1"), false},
		{"host cert from the second of two CAs", nil, []ssh.PublicKey{other.HostCAKeys()[0], hostCA}, hostCert(a, hostKey, "web-1"), true},
		{"expired host cert", nil, []ssh.PublicKey{hostCA}, hostCert(expired, hostKey, "web-1"), false},
		{"user cert from the host CA's key", nil, []ssh.PublicKey{hostCA}, userCert, false},
		{"cert from an unknown CA on a pinned key", []ssh.PublicKey{hostKey.PublicKey()}, nil, hostCert(other, hostKey, "web-9"), true},
		{"CA key presented as a plain host key", nil, []ssh.PublicKey{hostCA}, hostCA, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cb, err := HostKeyCallback("web-1", tt.pinned, tt.cas)
			if err != nil {
				t.Fatalf("HostKeyCallback: %v", err)
			}
			err = cb("10.0.0.5:22", &net.TCPAddr{IP: net.IPv4(10, 0, 0, 5), Port: 22}, tt.key)
			if (err == nil) != tt.wantOK {
				t.Fatalf("got %v; want accepted=%v", err, tt.wantOK)
			}
			if err != nil && (!errors.Is(err, ErrHostKeyMismatch) || !strings.Contains(err.Error(), "SHA256:")) {
				t.Errorf("got %v; want ErrHostKeyMismatch naming the key's fingerprint", err)
			}
		})
	}

	for _, bad := range []struct {
		name     string
		hostname string
		pinned   []ssh.PublicKey
		cas      []ssh.PublicKey
		wantErr  error
	}{
		{"nothing to trust", "web-1", nil, nil, ErrNoHostKeys},
		{"empty lists", "web-1", []ssh.PublicKey{}, []ssh.PublicKey{}, ErrNoHostKeys},
		{"nil key", "web-1", []ssh.PublicKey{nil}, nil, ErrInvalidConfig},
		{"certificate as CA", "web-1", nil, []ssh.PublicKey{userCert}, ErrInvalidConfig},
		{"no hostname", "", []ssh.PublicKey{pinned.PublicKey()}, nil, ErrInvalidConfig},
	} {
		if cb, err := HostKeyCallback(bad.hostname, bad.pinned, bad.cas); !errors.Is(err, bad.wantErr) || cb != nil {
			t.Errorf("%s: got a callback=%v, %v; want %v", bad.name, cb != nil, err, bad.wantErr)
		}
	}
}
