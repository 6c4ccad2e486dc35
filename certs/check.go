package certs

import (
	"fmt"
	"math"
	"net"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// CheckUserCert checks the key a client logs in to the bastion with: it
// must be a user certificate signed by a trusted user CA (the current key
// or a rotation key), valid now, not revoked, with no critical option but
// source-address, which must match conn's remote address. Plain keys are
// refused with ErrNotCertificate. It does not match principals against
// conn.User(): that is the caller's choice, with the returned certificate
// (its KeyId names the person). Errors wrap ErrNotCertificate,
// ErrNotUserCert, ErrUnknownCA, ErrCertRevoked, ErrCertNotYetValid,
// ErrCertExpired or ErrCertInvalid.
//
// A PublicKeyCallback built on it should return &cert.Permissions (or keep
// its CriticalOptions), so that x/crypto's server enforces source-address
// as well.
func (a *Authority) CheckUserCert(conn ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Certificate, error) {
	cert, err := a.checkUserCert(conn, key)
	if err != nil {
		user := ""
		if conn != nil {
			user = conn.User()
		}
		return nil, fmt.Errorf("certs: check user cert for %q: %w", user, err)
	}
	return cert, nil
}

func (a *Authority) checkUserCert(conn ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Certificate, error) {
	cert, ok := key.(*ssh.Certificate)
	switch {
	case !ok:
		return nil, ErrNotCertificate
	case cert.CertType != ssh.UserCert:
		return nil, ErrNotUserCert
	case !slices.ContainsFunc(a.userCAs, func(ca ssh.PublicKey) bool { return sameKey(ca, cert.SignatureKey) }):
		return nil, ErrUnknownCA
	case a.revoked[cert.Serial]:
		return nil, fmt.Errorf("%w (serial %d)", ErrCertRevoked, cert.Serial)
	}
	now := a.now()
	switch unix := now.Unix(); {
	case cert.ValidAfter > math.MaxInt64 || unix < int64(cert.ValidAfter):
		return nil, ErrCertNotYetValid
	case cert.ValidBefore == ssh.CertTimeInfinity:
		return nil, fmt.Errorf("%w: it never expires; jitproxy certificates are short-lived", ErrCertInvalid)
	case cert.ValidBefore > math.MaxInt64 || unix >= int64(cert.ValidBefore):
		return nil, ErrCertExpired
	case len(cert.ValidPrincipals) == 0:
		return nil, fmt.Errorf("%w: no principals", ErrCertInvalid)
	}
	// CheckCert verifies the CA signature and refuses unknown critical
	// options; given a principal of the certificate's own, it leaves the
	// principal choice to the caller.
	checker := ssh.CertChecker{
		SupportedCriticalOptions: []string{optSourceAddress},
		Clock:                    func() time.Time { return now },
	}
	if err := checker.CheckCert(cert.ValidPrincipals[0], cert); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCertInvalid, err)
	}
	if list, ok := cert.CriticalOptions[optSourceAddress]; ok {
		var remote net.Addr
		if conn != nil {
			remote = conn.RemoteAddr()
		}
		if err := checkSourceAddress(remote, list); err != nil {
			return nil, err
		}
	}
	return cert, nil
}

// checkSourceAddress reports whether remote is in a source-address list.
func checkSourceAddress(remote net.Addr, list string) error {
	tcp, ok := remote.(*net.TCPAddr)
	if !ok {
		return fmt.Errorf("%w: limited to source addresses %s, and the client's address %v is not a TCP address", ErrCertInvalid, list, remote)
	}
	ip := tcp.AddrPort().Addr().Unmap()
	for _, s := range strings.Split(list, ",") {
		p, err := parseSourceAddress(s)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrCertInvalid, err)
		}
		if p.Contains(ip) {
			return nil
		}
	}
	return fmt.Errorf("%w: limited to source addresses %s, not %s", ErrCertInvalid, list, ip)
}

// HostKeyCallback returns a callback that verifies an upstream target's
// host key: a key in pinned, or a host certificate that a key in cas
// signed for hostname (a principal of the certificate, not the dialed
// address) and that is valid now. A certificate whose key is pinned passes
// too, as OpenSSH's known_hosts does. Everything else is refused with
// ErrHostKeyMismatch. With no pinned keys and no CAs it returns
// ErrNoHostKeys: jitproxy never skips host-key verification.
func HostKeyCallback(hostname string, pinned, cas []ssh.PublicKey) (ssh.HostKeyCallback, error) {
	switch {
	case hostname == "":
		return nil, fmt.Errorf("certs: host key callback: %w: no hostname", ErrInvalidConfig)
	case len(pinned) == 0 && len(cas) == 0:
		return nil, fmt.Errorf("certs: host key callback for %q: %w", hostname, ErrNoHostKeys)
	case slices.Contains(pinned, nil) || slices.Contains(cas, nil):
		return nil, fmt.Errorf("certs: host key callback for %q: %w: nil key", hostname, ErrInvalidConfig)
	case slices.ContainsFunc(cas, isCert):
		return nil, fmt.Errorf("certs: host key callback for %q: %w: a certificate cannot be a CA key", hostname, ErrInvalidConfig)
	}
	pinned, cas = slices.Clone(pinned), slices.Clone(cas)
	isPinned := func(key ssh.PublicKey) bool {
		return slices.ContainsFunc(pinned, func(p ssh.PublicKey) bool { return sameKey(p, key) })
	}
	checker := &ssh.CertChecker{
		IsHostAuthority: func(auth ssh.PublicKey, _ string) bool {
			return slices.ContainsFunc(cas, func(ca ssh.PublicKey) bool { return sameKey(ca, auth) })
		},
	}
	return func(_ string, remote net.Addr, key ssh.PublicKey) error {
		if isPinned(key) {
			return nil
		}
		cert, ok := key.(*ssh.Certificate)
		if !ok {
			return fmt.Errorf("certs: verify host key of %q: %w: got %s %s", hostname, ErrHostKeyMismatch, key.Type(), ssh.FingerprintSHA256(key))
		}
		err := checker.CheckHostKey(net.JoinHostPort(hostname, "22"), remote, cert)
		if err == nil || isPinned(cert.Key) {
			return nil
		}
		return fmt.Errorf("certs: verify host key of %q: %w: got a certificate for %q, key %s, signed by %s: %v",
			hostname, ErrHostKeyMismatch, cert.ValidPrincipals, ssh.FingerprintSHA256(cert.Key), ssh.FingerprintSHA256(cert.SignatureKey), err)
	}, nil
}
