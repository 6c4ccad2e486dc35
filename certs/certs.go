// Package certs holds jitproxy's SSH certificate authorities and mints
// short-lived certificates: user certificates for people, host certificates
// for the targets the bastion impersonates, per-session upstream
// certificates, and DB access tokens. It decides nothing about who may have
// one: callers check the amendment first.
package certs

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Defaults for Config.
const (
	defaultMaxUserCertTTL = 24 * time.Hour
	defaultHostCertTTL    = 24 * time.Hour
	// clockSkew is how far a certificate that starts now is backdated, so
	// that a target whose clock lags a little accepts it at once.
	clockSkew = time.Minute
)

// Config configures an Authority.
type Config struct {
	// UserCAKeyFile and HostCAKeyFile are the CA private keys in OpenSSH
	// format. Both are required and must differ; a missing file is
	// generated (see LoadOrCreateKey).
	UserCAKeyFile string
	HostCAKeyFile string

	// TrustedUserCAs and TrustedHostCAs are further CA public keys, one
	// authorized_keys line each, trusted alongside the current ones: to
	// rotate a CA, point the key file at the new key and list the old
	// public key here, so certificates it signed keep working while new
	// ones are signed by the new key. nil means none.
	TrustedUserCAs []string
	TrustedHostCAs []string

	// RevokedSerials are serials of user certificates that CheckUserCert
	// refuses. nil means none.
	RevokedSerials []uint64

	MaxUserCertTTL time.Duration // 0 means 24h: the longest validity of a user or upstream certificate
	HostCertTTL    time.Duration // 0 means 24h: the validity of HostSigner's certificates; at least a minute

	Now  func() time.Time // nil means time.Now
	Rand io.Reader        // nil means crypto/rand; must be safe for concurrent use
}

// Authority is jitproxy's pair of SSH certificate authorities: the user CA
// that signs certificates people and the bastion log in with, and the host
// CA that signs the host certificates the bastion presents for targets.
// Its methods are safe for concurrent use.
type Authority struct {
	userCA  ssh.Signer
	hostCA  ssh.Signer
	userCAs []ssh.PublicKey // userCA's public key first, then Config.TrustedUserCAs
	hostCAs []ssh.PublicKey // hostCA's public key first, then Config.TrustedHostCAs
	revoked map[uint64]bool

	maxUserTTL time.Duration
	hostTTL    time.Duration
	now        func() time.Time
	rand       io.Reader

	mu    sync.Mutex           // guards hosts
	hosts map[string]hostEntry // HostSigner's cache, by hostname
}

// New loads (or generates) the CA keys and returns an Authority.
func New(cfg Config) (*Authority, error) {
	switch {
	case cfg.UserCAKeyFile == "" || cfg.HostCAKeyFile == "":
		return nil, fmt.Errorf("certs: new: %w: UserCAKeyFile and HostCAKeyFile are required", ErrInvalidConfig)
	case filepath.Clean(cfg.UserCAKeyFile) == filepath.Clean(cfg.HostCAKeyFile):
		return nil, fmt.Errorf("certs: new: %w: the user CA and the host CA need different key files", ErrInvalidConfig)
	case cfg.MaxUserCertTTL < 0:
		return nil, fmt.Errorf("certs: new: %w: negative MaxUserCertTTL", ErrInvalidConfig)
	case cfg.HostCertTTL != 0 && cfg.HostCertTTL < time.Minute:
		return nil, fmt.Errorf("certs: new: %w: HostCertTTL under a minute", ErrInvalidConfig)
	}
	a := &Authority{
		revoked:    make(map[uint64]bool, len(cfg.RevokedSerials)),
		maxUserTTL: orDefault(cfg.MaxUserCertTTL, defaultMaxUserCertTTL),
		hostTTL:    orDefault(cfg.HostCertTTL, defaultHostCertTTL),
		now:        cfg.Now,
		rand:       cfg.Rand,
		hosts:      make(map[string]hostEntry),
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.rand == nil {
		a.rand = rand.Reader
	}
	for _, s := range cfg.RevokedSerials {
		a.revoked[s] = true
	}
	var err error
	if a.userCA, err = LoadOrCreateKey(cfg.UserCAKeyFile); err != nil {
		return nil, err
	}
	if a.hostCA, err = LoadOrCreateKey(cfg.HostCAKeyFile); err != nil {
		return nil, err
	}
	if a.userCAs, err = caKeys(a.userCA.PublicKey(), "TrustedUserCAs", cfg.TrustedUserCAs); err != nil {
		return nil, err
	}
	if a.hostCAs, err = caKeys(a.hostCA.PublicKey(), "TrustedHostCAs", cfg.TrustedHostCAs); err != nil {
		return nil, err
	}
	return a, nil
}

// orDefault returns d, or def when d is zero.
func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// caKeys parses the authorized_keys lines of a rotation list and returns
// current followed by them, without duplicates.
func caKeys(current ssh.PublicKey, field string, lines []string) ([]ssh.PublicKey, error) {
	keys := []ssh.PublicKey{current}
	for i, line := range lines {
		key, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(line))
		switch {
		case err != nil:
			return nil, fmt.Errorf("certs: new: %w: %s[%d]: not an authorized_keys line: %w", ErrInvalidConfig, field, i, err)
		case len(bytes.TrimSpace(rest)) > 0:
			return nil, fmt.Errorf("certs: new: %w: %s[%d]: one key an entry", ErrInvalidConfig, field, i)
		case isCert(key):
			return nil, fmt.Errorf("certs: new: %w: %s[%d]: a certificate cannot be a CA key", ErrInvalidConfig, field, i)
		}
		if !slices.ContainsFunc(keys, func(k ssh.PublicKey) bool { return sameKey(k, key) }) {
			keys = append(keys, key)
		}
	}
	return keys, nil
}

// UserCAKeys returns the public keys of the trusted user CAs: the current
// one first, then the rotation keys.
func (a *Authority) UserCAKeys() []ssh.PublicKey { return slices.Clone(a.userCAs) }

// HostCAKeys returns the public keys of the trusted host CAs: the current
// one first, then the rotation keys.
func (a *Authority) HostCAKeys() []ssh.PublicKey { return slices.Clone(a.hostCAs) }

// String names the CAs by fingerprint; it never shows key material.
func (a *Authority) String() string {
	return fmt.Sprintf("certs.Authority{user CA %s, host CA %s}",
		ssh.FingerprintSHA256(a.userCA.PublicKey()), ssh.FingerprintSHA256(a.hostCA.PublicKey()))
}

// GoString is String, so that %#v does not print the private keys.
func (a *Authority) GoString() string { return a.String() }

// serial returns a random certificate serial.
func (a *Authority) serial() (uint64, error) {
	var b [8]byte
	if _, err := io.ReadFull(a.rand, b[:]); err != nil {
		return 0, fmt.Errorf("read random serial: %w", err)
	}
	return binary.BigEndian.Uint64(b[:]), nil
}

// sameKey reports whether two public keys are the same key.
func sameKey(a, b ssh.PublicKey) bool {
	return a != nil && b != nil && bytes.Equal(a.Marshal(), b.Marshal())
}

// isCert reports whether key is a certificate rather than a plain key.
func isCert(key ssh.PublicKey) bool {
	_, ok := key.(*ssh.Certificate)
	return ok
}
