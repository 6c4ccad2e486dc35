package certs

import (
	"bytes"
	"encoding/base64"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func TestKnownHostsLine(t *testing.T) {
	ca := newKey(t).PublicKey()
	want := "@cert-authority *.internal,web-1 ssh-ed25519 " + base64.StdEncoding.EncodeToString(ca.Marshal())
	if got := KnownHostsLine("*.internal,web-1", ca); got != want {
		t.Errorf("got %q; want %q", got, want)
	}
}

// TestKnownHostsTrustsHostSigner feeds KnownHosts to x/crypto's
// known_hosts parser, across a host CA rotation.
func TestKnownHostsTrustsHostSigner(t *testing.T) {
	old := newAuthority(t, Config{})
	a := newAuthority(t, Config{TrustedHostCAs: []string{authorizedKey(old.HostCAKeys()[0])}})
	lines := a.KnownHosts("web-*")
	if len(lines) != 2 || !strings.Contains(lines[0], authorizedKey(a.HostCAKeys()[0])) || !strings.Contains(lines[1], authorizedKey(old.HostCAKeys()[0])) {
		t.Fatalf("got %q; want the current host CA, then the old one", lines)
	}
	path := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cb, err := knownhosts.New(path)
	if err != nil {
		t.Fatalf("knownhosts.New: %v", err)
	}
	signer := func(a *Authority, hostname string) ssh.PublicKey {
		t.Helper()
		s, err := a.HostSigner(hostname)
		if err != nil {
			t.Fatal(err)
		}
		return s.PublicKey()
	}
	stranger := newAuthority(t, Config{})
	tests := []struct {
		name   string
		addr   string
		key    ssh.PublicKey
		wantOK bool
	}{
		{"current CA", "web-1:22", signer(a, "web-1"), true},
		{"old CA during rotation", "web-2:22", signer(old, "web-2"), true},
		{"host outside the pattern", "db-1:22", signer(a, "db-1"), false},
		{"certificate for another host", "web-1:22", signer(a, "web-2"), false},
		{"unknown CA", "web-1:22", signer(stranger, "web-1"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := cb(tt.addr, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 22}, tt.key)
			if (err == nil) != tt.wantOK {
				t.Errorf("got %v; want accepted=%v", err, tt.wantOK)
			}
		})
	}
}

func TestTrustedUserCAKeys(t *testing.T) {
	old := newAuthority(t, Config{})
	a := newAuthority(t, Config{TrustedUserCAs: []string{authorizedKey(old.UserCAKeys()[0])}})
	got := a.TrustedUserCAKeys()
	if !bytes.HasSuffix(got, []byte("\n")) {
		t.Errorf("got %q; want one key a line, newline-terminated", got)
	}
	want := []ssh.PublicKey{a.UserCAKeys()[0], old.UserCAKeys()[0]}
	lines := strings.Split(strings.TrimSuffix(string(got), "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("got %d lines %q; want %d", len(lines), lines, len(want))
	}
	for i, line := range lines {
		key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil || !sameKey(key, want[i]) {
			t.Errorf("line %d: got %q (%v); want %s", i+1, line, err, authorizedKey(want[i]))
		}
	}
	if sameKey(a.UserCAKeys()[0], a.HostCAKeys()[0]) || bytes.Contains(got, []byte(authorizedKey(a.HostCAKeys()[0]))) {
		t.Errorf("TrustedUserCAKeys lists the host CA; want user CAs only")
	}
}
