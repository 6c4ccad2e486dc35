package certs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestNewRefusesConfig(t *testing.T) {
	caLine := authorizedKey(newKey(t).PublicKey())
	otherCA := newAuthority(t, Config{})
	certLine := authorizedKey(signUser(t, otherCA, newKey(t)))
	tests := []struct {
		name    string
		cfg     func(dir string) Config
		wantErr error
	}{
		{"no user CA key file", func(dir string) Config { return Config{HostCAKeyFile: filepath.Join(dir, "h")} }, ErrInvalidConfig},
		{"no host CA key file", func(dir string) Config { return Config{UserCAKeyFile: filepath.Join(dir, "u")} }, ErrInvalidConfig},
		{"one file for both CAs", func(dir string) Config {
			return Config{UserCAKeyFile: filepath.Join(dir, "ca"), HostCAKeyFile: dir + "/./ca"}
		}, ErrInvalidConfig},
		{"negative MaxUserCertTTL", func(dir string) Config { return files(dir, Config{MaxUserCertTTL: -time.Hour}) }, ErrInvalidConfig},
		{"HostCertTTL under a minute", func(dir string) Config { return files(dir, Config{HostCertTTL: time.Second}) }, ErrInvalidConfig},
		{"garbage trusted user CA", func(dir string) Config { return files(dir, Config{TrustedUserCAs: []string{"ssh-ed25519 nope"}}) }, ErrInvalidConfig},
		{"two keys in one entry", func(dir string) Config {
			return files(dir, Config{TrustedUserCAs: []string{caLine + "\n" + caLine}})
		}, ErrInvalidConfig},
		{"certificate as host CA", func(dir string) Config { return files(dir, Config{TrustedHostCAs: []string{certLine}}) }, ErrInvalidConfig},
		{"loose key file", func(dir string) Config {
			cfg := files(dir, Config{})
			if err := os.WriteFile(cfg.UserCAKeyFile, []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			return cfg
		}, ErrKeyFileMode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := New(tt.cfg(t.TempDir()))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, %v; want %v", a, err, tt.wantErr)
			}
		})
	}
}

// files names the CA key files in dir.
func files(dir string, cfg Config) Config {
	cfg.UserCAKeyFile = filepath.Join(dir, "user_ca")
	cfg.HostCAKeyFile = filepath.Join(dir, "host_ca")
	return cfg
}

func TestNewKeepsKeysAcrossRestarts(t *testing.T) {
	cfg := files(t.TempDir(), Config{})
	first, second := newAuthority(t, cfg), newAuthority(t, cfg)
	if !sameKey(first.UserCAKeys()[0], second.UserCAKeys()[0]) || !sameKey(first.HostCAKeys()[0], second.HostCAKeys()[0]) {
		t.Errorf("got %v after a restart; want the same CAs as %v", second, first)
	}
	if sameKey(first.UserCAKeys()[0], first.HostCAKeys()[0]) {
		t.Errorf("user CA and host CA are the same key; want two keys")
	}
}

func TestRotationKeys(t *testing.T) {
	old := newAuthority(t, Config{})
	oldUser, oldHost := authorizedKey(old.UserCAKeys()[0]), authorizedKey(old.HostCAKeys()[0])
	a := newAuthority(t, Config{
		TrustedUserCAs: []string{oldUser + " old user CA", oldUser},
		TrustedHostCAs: []string{oldHost},
	})
	for _, c := range []struct {
		name string
		got  []ssh.PublicKey
		want []ssh.PublicKey
	}{
		{"user CAs", a.UserCAKeys(), []ssh.PublicKey{a.userCA.PublicKey(), old.userCA.PublicKey()}},
		{"host CAs", a.HostCAKeys(), []ssh.PublicKey{a.hostCA.PublicKey(), old.hostCA.PublicKey()}},
	} {
		if len(c.got) != len(c.want) {
			t.Fatalf("%s: got %d keys; want %d (current first, duplicates dropped)", c.name, len(c.got), len(c.want))
		}
		for i := range c.got {
			if !sameKey(c.got[i], c.want[i]) {
				t.Errorf("%s[%d]: got %s; want %s", c.name, i, ssh.FingerprintSHA256(c.got[i]), ssh.FingerprintSHA256(c.want[i]))
			}
		}
	}
}

func TestAuthorityString(t *testing.T) {
	a := newAuthority(t, Config{})
	want := "certs.Authority{user CA " + ssh.FingerprintSHA256(a.UserCAKeys()[0]) + ", host CA " + ssh.FingerprintSHA256(a.HostCAKeys()[0]) + "}"
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		if got := fmt.Sprintf(verb, a); got != want {
			t.Errorf("%s: got %q; want %q", verb, got, want)
		}
	}
}
