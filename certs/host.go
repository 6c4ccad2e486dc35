package certs

import (
	"crypto/ed25519"
	"fmt"
	"time"

	"golang.org/x/crypto/ssh"
)

// hostEntry is one cached HostSigner result.
type hostEntry struct {
	signer      ssh.Signer
	renewAt     time.Time // when HostSigner mints a new one: a quarter of the validity before expiry
	validBefore time.Time
}

// SignHost returns a host certificate for pub, valid for the hostnames from
// a minute ago (clock skew) until validFor from now, with a random serial,
// signed by the host CA.
func (a *Authority) SignHost(pub ssh.PublicKey, hostnames []string, validFor time.Duration) (*ssh.Certificate, error) {
	cert, err := a.signHost(pub, hostnames, validFor, a.now())
	if err != nil {
		return nil, fmt.Errorf("certs: sign host cert for %q: %w", hostnames, err)
	}
	return cert, nil
}

func (a *Authority) signHost(pub ssh.PublicKey, hostnames []string, validFor time.Duration, now time.Time) (*ssh.Certificate, error) {
	if err := checkSubjectKey(pub); err != nil {
		return nil, err
	}
	if len(hostnames) == 0 {
		return nil, ErrNoPrincipals
	}
	for _, h := range hostnames {
		if h == "" || !printable(h) {
			return nil, fmt.Errorf("%w: %q", ErrBadPrincipal, h)
		}
	}
	if validFor <= 0 {
		return nil, fmt.Errorf("%w: validity %s is not positive", ErrBadValidity, validFor)
	}
	serial, err := a.serial()
	if err != nil {
		return nil, err
	}
	cert := &ssh.Certificate{
		Key:             pub,
		Serial:          serial,
		CertType:        ssh.HostCert,
		KeyId:           "jitproxy host " + hostnames[0],
		ValidPrincipals: append([]string(nil), hostnames...),
		ValidAfter:      uint64(now.Add(-clockSkew).Unix()),
		ValidBefore:     uint64(now.Add(validFor).Unix()),
	}
	if err := cert.SignCert(a.rand, a.hostCA); err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return cert, nil
}

// HostSigner returns the signer the bastion presents as the target
// hostname: an ephemeral Ed25519 key with a host certificate for hostname
// from the host CA, valid for Config.HostCertTTL. It is cached: every call
// for a hostname returns the same signer until a quarter of its validity
// is left, so a thousand connections do not mint a thousand certificates.
// Pass configured target names only; the cache keeps one entry a name.
func (a *Authority) HostSigner(hostname string) (ssh.Signer, error) {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if e, ok := a.hosts[hostname]; ok && now.Before(e.renewAt) {
		return e.signer, nil
	}
	// Minting under the lock (tens of microseconds) keeps it to one
	// certificate a hostname even when many connections arrive at once.
	e, err := a.newHostEntry(hostname, now)
	if err != nil {
		return nil, fmt.Errorf("certs: host signer for %q: %w", hostname, err)
	}
	for name, old := range a.hosts {
		if !now.Before(old.validBefore) {
			delete(a.hosts, name)
		}
	}
	a.hosts[hostname] = e
	return e.signer, nil
}

func (a *Authority) newHostEntry(hostname string, now time.Time) (hostEntry, error) {
	_, priv, err := ed25519.GenerateKey(a.rand)
	if err != nil {
		return hostEntry{}, fmt.Errorf("generate key: %w", err)
	}
	key, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return hostEntry{}, err
	}
	cert, err := a.signHost(key.PublicKey(), []string{hostname}, a.hostTTL, now)
	if err != nil {
		return hostEntry{}, err
	}
	signer, err := ssh.NewCertSigner(cert, key)
	if err != nil {
		return hostEntry{}, err
	}
	validBefore := time.Unix(int64(cert.ValidBefore), 0)
	return hostEntry{signer: signer, renewAt: validBefore.Add(-a.hostTTL / 4), validBefore: validBefore}, nil
}
