package certs

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestSignUserFields(t *testing.T) {
	a := newAuthority(t, Config{Now: fixedNow(t0)})
	tests := []struct {
		name        string
		req         UserCert
		wantAfter   time.Time
		wantBefore  time.Time
		wantExts    []string
		wantOptions map[string]string
	}{
		{
			name:       "starts now: backdated a minute",
			req:        UserCert{KeyID: "person=alice@example.com", Principals: []string{"alice"}, ValidAfter: t0, ValidBefore: t0.Add(8 * time.Hour), PTY: true},
			wantAfter:  t0.Add(-time.Minute),
			wantBefore: t0.Add(8 * time.Hour),
			wantExts:   []string{"permit-pty"},
		},
		{
			name:       "zero ValidAfter means now",
			req:        UserCert{KeyID: "alice", Principals: []string{"alice"}, ValidBefore: t0.Add(time.Hour)},
			wantAfter:  t0.Add(-time.Minute),
			wantBefore: t0.Add(time.Hour),
		},
		{
			name:       "scheduled: not backdated",
			req:        UserCert{KeyID: "alice", Principals: []string{"alice"}, ValidAfter: t0.Add(time.Hour), ValidBefore: t0.Add(2 * time.Hour)},
			wantAfter:  t0.Add(time.Hour),
			wantBefore: t0.Add(2 * time.Hour),
		},
		{
			name:       "sub-second times truncated",
			req:        UserCert{KeyID: "alice", Principals: []string{"alice"}, ValidAfter: t0.Add(time.Hour + 900*time.Millisecond), ValidBefore: t0.Add(2*time.Hour + 900*time.Millisecond)},
			wantAfter:  t0.Add(time.Hour),
			wantBefore: t0.Add(2 * time.Hour),
		},
		{
			name: "every permission, source addresses, two principals",
			req: UserCert{
				KeyID: "person=bob@example.com", Principals: []string{"ubuntu", "postgres"},
				ValidAfter: t0, ValidBefore: t0.Add(24 * time.Hour),
				PortForwarding: true, PTY: true, AgentForwarding: true, X11Forwarding: true,
				SourceAddresses: []string{"10.0.0.0/8", "192.0.2.7", "2001:db8::/32"},
			},
			wantAfter:   t0.Add(-time.Minute),
			wantBefore:  t0.Add(24 * time.Hour),
			wantExts:    []string{"permit-X11-forwarding", "permit-agent-forwarding", "permit-port-forwarding", "permit-pty"},
			wantOptions: map[string]string{"source-address": "10.0.0.0/8,192.0.2.7,2001:db8::/32"},
		},
		{
			name:       "port forwarding only",
			req:        UserCert{KeyID: "alice", Principals: []string{"alice"}, ValidAfter: t0, ValidBefore: t0.Add(time.Hour), PortForwarding: true},
			wantAfter:  t0.Add(-time.Minute),
			wantBefore: t0.Add(time.Hour),
			wantExts:   []string{"permit-port-forwarding"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := newKey(t)
			cert, err := a.SignUser(key.PublicKey(), tt.req)
			if err != nil {
				t.Fatalf("SignUser: %v", err)
			}
			if cert.CertType != ssh.UserCert {
				t.Errorf("CertType: got %d; want %d (user)", cert.CertType, ssh.UserCert)
			}
			if !sameKey(cert.Key, key.PublicKey()) {
				t.Errorf("Key: got %s; want the subject key", ssh.FingerprintSHA256(cert.Key))
			}
			if !sameKey(cert.SignatureKey, a.UserCAKeys()[0]) {
				t.Errorf("SignatureKey: got %s; want the user CA", ssh.FingerprintSHA256(cert.SignatureKey))
			}
			if cert.KeyId != tt.req.KeyID {
				t.Errorf("KeyId: got %q; want %q", cert.KeyId, tt.req.KeyID)
			}
			if !slices.Equal(cert.ValidPrincipals, tt.req.Principals) {
				t.Errorf("ValidPrincipals: got %q; want %q", cert.ValidPrincipals, tt.req.Principals)
			}
			if got, want := int64(cert.ValidAfter), tt.wantAfter.Unix(); got != want {
				t.Errorf("ValidAfter: got %s; want %s", time.Unix(got, 0).UTC(), tt.wantAfter)
			}
			if got, want := int64(cert.ValidBefore), tt.wantBefore.Unix(); got != want {
				t.Errorf("ValidBefore: got %s; want %s", time.Unix(got, 0).UTC(), tt.wantBefore)
			}
			if got := slices.Sorted(maps.Keys(cert.Extensions)); !slices.Equal(got, tt.wantExts) {
				t.Errorf("Extensions: got %q; want %q", got, tt.wantExts)
			}
			if !maps.Equal(cert.CriticalOptions, tt.wantOptions) {
				t.Errorf("CriticalOptions: got %q; want %q", cert.CriticalOptions, tt.wantOptions)
			}
			checker := ssh.CertChecker{SupportedCriticalOptions: []string{"source-address"}, Clock: fixedNow(tt.wantAfter)}
			if err := checker.CheckCert(tt.req.Principals[0], cert); err != nil {
				t.Errorf("x/crypto CheckCert at ValidAfter: %v", err)
			}
		})
	}
}

func TestSignUserRefuses(t *testing.T) {
	a := newAuthority(t, Config{Now: fixedNow(t0)})
	short := newAuthority(t, Config{Now: fixedNow(t0), MaxUserCertTTL: time.Hour})
	good := func() UserCert {
		return UserCert{KeyID: "alice", Principals: []string{"alice"}, ValidAfter: t0, ValidBefore: t0.Add(time.Hour)}
	}
	with := func(f func(*UserCert)) UserCert { r := good(); f(&r); return r }
	key := newKey(t).PublicKey()
	weakRSA, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	weak, err := ssh.NewPublicKey(&weakRSA.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		a       *Authority
		pub     ssh.PublicKey
		req     UserCert
		wantErr error
	}{
		{"inverted validity", a, key, with(func(r *UserCert) { r.ValidBefore = t0.Add(-time.Hour) }), ErrBadValidity},
		{"empty validity", a, key, with(func(r *UserCert) { r.ValidBefore = r.ValidAfter }), ErrBadValidity},
		{"already expired", a, key, with(func(r *UserCert) { r.ValidAfter, r.ValidBefore = t0.Add(-2*time.Hour), t0.Add(-time.Hour) }), ErrBadValidity},
		{"before 1970", a, key, with(func(r *UserCert) { r.ValidAfter = time.Unix(-10, 0) }), ErrBadValidity},
		{"longer than the default 24h", a, key, with(func(r *UserCert) { r.ValidBefore = t0.Add(24*time.Hour + time.Second) }), ErrValidityTooLong},
		{"longer than MaxUserCertTTL", short, key, with(func(r *UserCert) { r.ValidBefore = t0.Add(time.Hour + time.Second) }), ErrValidityTooLong},
		{"no principals", a, key, with(func(r *UserCert) { r.Principals = nil }), ErrNoPrincipals},
		{"empty principal", a, key, with(func(r *UserCert) { r.Principals = []string{"alice", ""} }), ErrBadPrincipal},
		{"principal with newline", a, key, with(func(r *UserCert) { r.Principals = []string{"alice\nroot"} }), ErrBadPrincipal},
		{"empty key ID", a, key, with(func(r *UserCert) { r.KeyID = "" }), ErrBadKeyID},
		{"key ID with control characters", a, key, with(func(r *UserCert) { r.KeyID = "alice\x1b[2J" }), ErrBadKeyID},
		{"bad source address", a, key, with(func(r *UserCert) { r.SourceAddresses = []string{"10.0.0.0/8", "example.com"} }), ErrBadSourceAddr},
		{"no key", a, nil, good(), ErrBadPublicKey},
		{"a certificate as the key", a, signUser(t, a, newKey(t)), good(), ErrBadPublicKey},
		{"RSA under 2048 bits", a, weak, good(), ErrBadPublicKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, err := tt.a.SignUser(tt.pub, tt.req)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, %v; want %v", cert, err, tt.wantErr)
			}
			if want := fmt.Sprintf("certs: sign user cert for %q: ", tt.req.KeyID); !strings.HasPrefix(err.Error(), want) {
				t.Errorf("got %q; want it to start with %q", err, want)
			}
		})
	}
}

func TestSignUserSerial(t *testing.T) {
	random := newAuthority(t, Config{})
	key := newKey(t)
	if c1, c2 := signUser(t, random, key), signUser(t, random, key); c1.Serial == c2.Serial {
		t.Errorf("two certificates share serial %d; want random serials", c1.Serial)
	}
	// The serial comes from Config.Rand.
	entropy := bytes.Repeat([]byte{0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08}, 64)
	seeded := newAuthority(t, Config{Rand: bytes.NewReader(entropy)})
	if got, want := signUser(t, seeded, key).Serial, uint64(0x0102030405060708); got != want {
		t.Errorf("serial: got %#x; want %#x, read from Config.Rand", got, want)
	}
}

// TestCertCheckerAcceptsSignUser checks SignUser's certificates with
// x/crypto's own CertChecker over a real SSH handshake, as any server
// trusting the user CA would.
func TestCertCheckerAcceptsSignUser(t *testing.T) {
	a := newAuthority(t, Config{Now: fixedNow(t0)})
	other := newAuthority(t, Config{Now: fixedNow(t0)})
	key := newKey(t)
	hostCert, err := a.SignHost(key.PublicKey(), []string{"ubuntu"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		signer ssh.Signer
		now    time.Time
		wantOK bool
	}{
		{"fresh certificate", certSigner(t, signUser(t, a, key), key), t0, true},
		{"inside the clock-skew minute", certSigner(t, signUser(t, a, key), key), t0.Add(-30 * time.Second), true},
		{"another CA", certSigner(t, signUser(t, other, key), key), t0, false},
		{"expired", certSigner(t, signUser(t, a, key), key), t0.Add(time.Hour), false},
		{"not yet valid", certSigner(t, signUser(t, a, key), key), t0.Add(-2 * time.Minute), false},
		{"host certificate as a user certificate", certSigner(t, hostCert, key), t0, false},
		{"plain key", key, t0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checker := &ssh.CertChecker{
				IsUserAuthority: func(auth ssh.PublicKey) bool {
					return slices.ContainsFunc(a.UserCAKeys(), func(ca ssh.PublicKey) bool { return sameKey(ca, auth) })
				},
				Clock: fixedNow(tt.now),
			}
			err := authenticate(t, checker.Authenticate, tt.signer, "ubuntu")
			if (err == nil) != tt.wantOK {
				t.Errorf("got %v; want accepted=%v", err, tt.wantOK)
			}
		})
	}
}

func TestUpstreamSigner(t *testing.T) {
	a := newAuthority(t, Config{Now: fixedNow(t0)})
	const keyID = "person=alice@example.com session=abc amendment=7f3a"
	tests := []struct {
		name        string
		validBefore time.Time
		wantBefore  time.Time
	}{
		{"amendment expiry", t0.Add(90 * time.Minute), t0.Add(90 * time.Minute)},
		{"capped at MaxUserCertTTL", t0.Add(72 * time.Hour), t0.Add(24 * time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := a.UpstreamSigner("ubuntu", keyID, tt.validBefore)
			if err != nil {
				t.Fatalf("UpstreamSigner: %v", err)
			}
			cert, ok := s.PublicKey().(*ssh.Certificate)
			if !ok {
				t.Fatalf("public key: got %T; want *ssh.Certificate", s.PublicKey())
			}
			if got, want := cert.ValidPrincipals, []string{"ubuntu"}; !slices.Equal(got, want) {
				t.Errorf("ValidPrincipals: got %q; want %q", got, want)
			}
			if cert.KeyId != keyID {
				t.Errorf("KeyId: got %q; want %q", cert.KeyId, keyID)
			}
			if got, want := int64(cert.ValidBefore), tt.wantBefore.Unix(); got != want {
				t.Errorf("ValidBefore: got %s; want %s", time.Unix(got, 0).UTC(), tt.wantBefore)
			}
			if got, want := int64(cert.ValidAfter), t0.Add(-time.Minute).Unix(); got != want {
				t.Errorf("ValidAfter: got %s; want %s", time.Unix(got, 0).UTC(), t0.Add(-time.Minute))
			}
			if cert.Key.Type() != ssh.KeyAlgoED25519 || cert.CertType != ssh.UserCert || !sameKey(cert.SignatureKey, a.UserCAKeys()[0]) {
				t.Errorf("got a %s certificate of type %d signed by %s; want an Ed25519 user certificate from the user CA",
					cert.Key.Type(), cert.CertType, ssh.FingerprintSHA256(cert.SignatureKey))
			}
			if _, ok := cert.Extensions["permit-user-rc"]; ok {
				t.Errorf("Extensions %q include permit-user-rc; want it off", slices.Sorted(maps.Keys(cert.Extensions)))
			}
		})
	}

	s1, err1 := a.UpstreamSigner("ubuntu", keyID, t0.Add(time.Hour))
	s2, err2 := a.UpstreamSigner("ubuntu", keyID, t0.Add(time.Hour))
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	if sameKey(s1.PublicKey().(*ssh.Certificate).Key, s2.PublicKey().(*ssh.Certificate).Key) {
		t.Errorf("two calls returned the same key; want a fresh key per call")
	}

	for _, bad := range []struct {
		name         string
		login, keyID string
		validBefore  time.Time
		wantErr      error
	}{
		{"amendment already expired", "ubuntu", keyID, t0, ErrBadValidity},
		{"no login", "", keyID, t0.Add(time.Hour), ErrBadPrincipal},
		{"no key ID", "ubuntu", "", t0.Add(time.Hour), ErrBadKeyID},
	} {
		if _, err := a.UpstreamSigner(bad.login, bad.keyID, bad.validBefore); !errors.Is(err, bad.wantErr) {
			t.Errorf("%s: got %v; want %v", bad.name, err, bad.wantErr)
		}
	}
}

func BenchmarkUpstreamSigner(b *testing.B) {
	a := newAuthority(b, Config{})
	validBefore := time.Now().Add(time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.UpstreamSigner("ubuntu", "person=alice@example.com session=abc amendment=7f3a", validBefore); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignUser(b *testing.B) {
	a := newAuthority(b, Config{})
	pub := newKey(b).PublicKey()
	now := time.Now()
	req := UserCert{KeyID: "person=alice@example.com", Principals: []string{"alice"}, ValidAfter: now, ValidBefore: now.Add(8 * time.Hour), PTY: true}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.SignUser(pub, req); err != nil {
			b.Fatal(err)
		}
	}
}
