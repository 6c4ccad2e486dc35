package certs

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tokenKey is a fixed 32-byte HMAC key for tests.
var tokenKey = []byte("0123456789abcdef0123456789abcdef")

func newIssuer(t testing.TB, cfg TokenConfig) *TokenIssuer {
	t.Helper()
	if cfg.Key == nil && cfg.KeyFile == "" {
		cfg.Key = tokenKey
	}
	ti, err := NewTokenIssuer(cfg)
	if err != nil {
		t.Fatalf("NewTokenIssuer: %v", err)
	}
	return ti
}

func TestTokenRoundTrip(t *testing.T) {
	ti := newIssuer(t, TokenConfig{Now: fixedNow(t0)})
	want := Token{Person: "alice@example.com", Amendment: "7f3a9c", Target: "app-db", ExpiresAt: t0.Add(time.Hour)}
	tok, err := ti.Issue(Token{Person: want.Person, Amendment: want.Amendment, Target: want.Target, ExpiresAt: want.ExpiresAt.Add(999 * time.Millisecond)})
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	if !strings.HasPrefix(tok, "jpdb_") {
		t.Errorf("token %q lacks the jpdb_ prefix", tok)
	}
	for _, s := range []string{want.Person, want.Amendment, want.Target} {
		if strings.Contains(tok, s) {
			t.Errorf("token %q shows %q in clear; want it opaque", tok, s)
		}
	}
	got, err := ti.Verify(tok, want.Person, want.Target)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !got.ExpiresAt.Equal(want.ExpiresAt) {
		t.Errorf("ExpiresAt: got %s; want %s, truncated to the second", got.ExpiresAt, want.ExpiresAt)
	}
	got.ExpiresAt = want.ExpiresAt
	if got != want {
		t.Errorf("got %+v; want %+v", got, want)
	}
	if again, _ := ti.Issue(want); again == tok {
		t.Errorf("two tokens for the same grant are equal; want a random nonce in each")
	}
}

func TestTokenVerifyRefuses(t *testing.T) {
	ti := newIssuer(t, TokenConfig{Now: fixedNow(t0)})
	good, err := ti.Issue(Token{Person: "alice@example.com", Amendment: "7f3a", Target: "app-db", ExpiresAt: t0.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(good, TokenPrefix))
	if err != nil {
		t.Fatal(err)
	}
	reencode := func(f func(b []byte) []byte) string {
		b := f(bytes.Clone(raw))
		return TokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	}
	flip := func(i int) func([]byte) []byte {
		return func(b []byte) []byte {
			if i < 0 {
				i += len(b)
			}
			b[i] ^= 0x01
			return b
		}
	}
	// A payload authenticated with the right key but of another version,
	// or with trailing bytes, is refused too.
	resign := func(f func(payload []byte) []byte) string {
		payload := f(bytes.Clone(raw[:len(raw)-tokenMACSize]))
		return TokenPrefix + base64.RawURLEncoding.EncodeToString(ti.mac(payload, payload))
	}
	otherKey := newIssuer(t, TokenConfig{Key: bytes.Repeat([]byte{7}, 32), Now: fixedNow(t0)})
	forged, err := otherKey.Issue(Token{Person: "alice@example.com", Amendment: "7f3a", Target: "app-db", ExpiresAt: t0.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		token   string
		person  string
		target  string
		now     time.Time
		wantErr error
	}{
		{"valid", good, "alice@example.com", "app-db", t0, nil},
		{"valid until the last second", good, "alice@example.com", "app-db", t0.Add(time.Hour - time.Nanosecond), nil},
		{"tampered expiry", reencode(flip(3)), "alice@example.com", "app-db", t0, ErrTokenInvalid},
		{"tampered person", reencode(flip(tokenHeaderSize + 1)), "alice@example.com", "app-db", t0, ErrTokenInvalid},
		{"tampered MAC", reencode(flip(-1)), "alice@example.com", "app-db", t0, ErrTokenInvalid},
		{"another key", forged, "alice@example.com", "app-db", t0, ErrTokenInvalid},
		{"another version", resign(func(p []byte) []byte { p[0] = 2; return p }), "alice@example.com", "app-db", t0, ErrTokenInvalid},
		{"trailing bytes", resign(func(p []byte) []byte { return append(p, 0) }), "alice@example.com", "app-db", t0, ErrTokenInvalid},
		{"wrong person", good, "bob@example.com", "app-db", t0, ErrTokenWrongPerson},
		{"wrong target", good, "alice@example.com", "billing-db", t0, ErrTokenWrongTarget},
		{"expired", good, "alice@example.com", "app-db", t0.Add(time.Hour), ErrTokenExpired},
		{"truncated", good[:len(good)-10], "alice@example.com", "app-db", t0, ErrTokenInvalid},
		{"truncated to the prefix", TokenPrefix, "alice@example.com", "app-db", t0, ErrTokenInvalid},
		{"other prefix", "jpxx_" + strings.TrimPrefix(good, TokenPrefix), "alice@example.com", "app-db", t0, ErrTokenInvalid},
		{"no prefix", strings.TrimPrefix(good, TokenPrefix), "alice@example.com", "app-db", t0, ErrTokenInvalid},
		{"not base64url", good + "!", "alice@example.com", "app-db", t0, ErrTokenInvalid},
		{"empty", "", "alice@example.com", "app-db", t0, ErrTokenInvalid},
		{"huge", TokenPrefix + strings.Repeat("A", 1<<20), "alice@example.com", "app-db", t0, ErrTokenInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ti.now = fixedNow(tt.now)
			got, err := ti.Verify(tt.token, tt.person, tt.target)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("got %+v, %v; want %v", got, err, tt.wantErr)
			}
			if err == nil {
				return
			}
			if got != (Token{}) {
				t.Errorf("got %+v with an error; want the zero Token", got)
			}
			for _, sentinel := range []error{ErrTokenInvalid, ErrTokenExpired, ErrTokenWrongPerson, ErrTokenWrongTarget} {
				if sentinel != tt.wantErr && errors.Is(err, sentinel) {
					t.Errorf("got %v; it also matches %v, want only %v", err, sentinel, tt.wantErr)
				}
			}
			msg := err.Error()
			if want := fmt.Sprintf("run jitproxy db-token %s", tt.target); !strings.HasSuffix(msg, want) {
				t.Errorf("got %q; want it to end with %q", msg, want)
			}
			if len(tt.token) > len(TokenPrefix) && strings.Contains(msg, strings.TrimPrefix(tt.token, TokenPrefix)[:8]) || strings.Contains(msg, string(tokenKey)) {
				t.Errorf("got %q; the error shows the token or the key", msg)
			}
		})
	}
}

func TestTokenVerifyHint(t *testing.T) {
	ti := newIssuer(t, TokenConfig{Now: fixedNow(t0)})
	tests := []struct {
		name, target, want string
	}{
		{"plain name", "app-db", "run jitproxy db-token app-db"},
		{"target with database", "app-db/reports", "run jitproxy db-token app-db/reports"},
		{"not a name: placeholder", "app db; rm -rf /", "run jitproxy db-token TARGET"},
		{"empty", "", "run jitproxy db-token TARGET"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ti.Verify("jpdb_nope", "alice", tt.target)
			if err == nil || !strings.HasSuffix(err.Error(), tt.want) {
				t.Errorf("got %v; want it to end with %q", err, tt.want)
			}
		})
	}
}

func TestTokenIssueRefuses(t *testing.T) {
	ti := newIssuer(t, TokenConfig{Now: fixedNow(t0), MaxTTL: 2 * time.Hour})
	good := Token{Person: "alice@example.com", Amendment: "7f3a", Target: "app-db", ExpiresAt: t0.Add(time.Hour)}
	with := func(f func(*Token)) Token { tok := good; f(&tok); return tok }
	tests := []struct {
		name    string
		tok     Token
		wantErr error
	}{
		{"no person", with(func(t *Token) { t.Person = "" }), ErrBadTokenField},
		{"no amendment", with(func(t *Token) { t.Amendment = "" }), ErrBadTokenField},
		{"no target", with(func(t *Token) { t.Target = "" }), ErrBadTokenField},
		{"person too long", with(func(t *Token) { t.Person = strings.Repeat("a", 256) }), ErrBadTokenField},
		{"expiry now", with(func(t *Token) { t.ExpiresAt = t0 }), ErrBadValidity},
		{"expiry past", with(func(t *Token) { t.ExpiresAt = t0.Add(-time.Hour) }), ErrBadValidity},
		{"expiry beyond MaxTTL", with(func(t *Token) { t.ExpiresAt = t0.Add(2*time.Hour + time.Second) }), ErrValidityTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tok, err := ti.Issue(tt.tok); !errors.Is(err, tt.wantErr) || tok != "" {
				t.Errorf("got %q, %v; want %v", tok, err, tt.wantErr)
			}
		})
	}
	if _, err := ti.Issue(with(func(t *Token) { t.Person = strings.Repeat("a", 255) })); err != nil {
		t.Errorf("255-byte person: got %v; want it accepted", err)
	}
}

func TestNewTokenIssuer(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "secrets", "db_token_key")

	first := newIssuer(t, TokenConfig{KeyFile: keyFile, Now: fixedNow(t0)})
	info, err := os.Stat(keyFile)
	if err != nil {
		t.Fatalf("key file not generated: %v", err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("key file mode: got %04o; want 0600", info.Mode().Perm())
	}
	if dinfo, _ := os.Stat(filepath.Dir(keyFile)); dinfo.Mode().Perm() != 0o700 {
		t.Errorf("key directory mode: got %04o; want 0700", dinfo.Mode().Perm())
	}
	tok, err := first.Issue(Token{Person: "alice", Amendment: "a1", Target: "app-db", ExpiresAt: t0.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	second := newIssuer(t, TokenConfig{KeyFile: keyFile, Now: fixedNow(t0)})
	if _, err := second.Verify(tok, "alice", "app-db"); err != nil {
		t.Errorf("a token from before a restart: got %v; want it valid with the key reloaded from the file", err)
	}
	for _, verb := range []string{"%v", "%+v", "%#v"} {
		if got := fmt.Sprintf(verb, first); got != "certs.TokenIssuer{key redacted}" {
			t.Errorf("%s: got %q; want the key redacted", verb, got)
		}
	}

	loose := filepath.Join(dir, "loose")
	if err := os.WriteFile(loose, []byte(base64.StdEncoding.EncodeToString(tokenKey)), 0o644); err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte(base64.StdEncoding.EncodeToString(tokenKey[:16])), 0o600); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage")
	if err := os.WriteFile(garbage, []byte("s3cr3t-not-base64!"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cfg     TokenConfig
		wantErr error  // nil means any error
		want    string // in the message
		hide    string // never in the message
	}{
		{"no key", TokenConfig{}, ErrInvalidConfig, "Key or KeyFile is required", ""},
		{"key and key file", TokenConfig{Key: tokenKey, KeyFile: keyFile}, ErrInvalidConfig, "not both", ""},
		{"short key", TokenConfig{Key: tokenKey[:31]}, ErrInvalidConfig, "at least 32", string(tokenKey[:31])},
		{"short key in file", TokenConfig{KeyFile: short}, ErrInvalidConfig, "at least 32", ""},
		{"loose key file", TokenConfig{KeyFile: loose}, ErrKeyFileMode, "chmod 600 " + loose, ""},
		{"garbage key file", TokenConfig{KeyFile: garbage}, nil, garbage + ": not a base64-encoded key", "s3cr3t"},
		{"negative MaxTTL", TokenConfig{Key: tokenKey, MaxTTL: -time.Second}, ErrInvalidConfig, "MaxTTL", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ti, err := NewTokenIssuer(tt.cfg)
			if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
				t.Fatalf("got %v, %v; want %v", ti, err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.want) || (tt.hide != "" && strings.Contains(err.Error(), tt.hide)) {
				t.Errorf("got %q; want it to contain %q and not %q", err, tt.want, tt.hide)
			}
		})
	}

	// The configured key is copied: changing the caller's slice later
	// does not change the issuer's key.
	key := bytes.Clone(tokenKey)
	ti := newIssuer(t, TokenConfig{Key: key, Now: fixedNow(t0)})
	tok, err = ti.Issue(Token{Person: "alice", Amendment: "a1", Target: "app-db", ExpiresAt: t0.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	key[0] ^= 0xff
	if _, err := ti.Verify(tok, "alice", "app-db"); err != nil {
		t.Errorf("after the caller changed its key slice: got %v; want the token valid", err)
	}
}

func BenchmarkTokenVerify(b *testing.B) {
	ti := newIssuer(b, TokenConfig{})
	tok, err := ti.Issue(Token{Person: "alice@example.com", Amendment: "7f3a9c2e", Target: "app-db", ExpiresAt: time.Now().Add(time.Hour)})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ti.Verify(tok, "alice@example.com", "app-db"); err != nil {
			b.Fatal(err)
		}
	}
}
