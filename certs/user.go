package certs

import (
	"crypto/ed25519"
	"crypto/rsa"
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unicode"

	"golang.org/x/crypto/ssh"
)

// Certificate extensions and critical options, as OpenSSH names them.
const (
	extPTY              = "permit-pty"
	extPortForwarding   = "permit-port-forwarding"
	extAgentForwarding  = "permit-agent-forwarding"
	extX11Forwarding    = "permit-X11-forwarding"
	optSourceAddress    = "source-address"
	minRSABits          = 2048
	maxKeyIDOrNameBytes = 1024
)

// UserCert is what a user certificate says.
type UserCert struct {
	// KeyID names the holder; the target's sshd logs it. Required.
	KeyID string
	// Principals are the logins the certificate is valid for. At least one.
	Principals []string
	// ValidAfter and ValidBefore bound the validity; ValidBefore must be
	// after ValidAfter and in the future, and the span at most
	// Config.MaxUserCertTTL. Both are truncated to the second. A zero
	// ValidAfter means now; a ValidAfter not in the future is backdated by
	// a minute of clock skew.
	ValidAfter, ValidBefore time.Time
	// PortForwarding, PTY, AgentForwarding and X11Forwarding set the
	// matching permit-* extensions. permit-user-rc is never set.
	PortForwarding, PTY, AgentForwarding, X11Forwarding bool
	// SourceAddresses, when set, limit the certificate to clients at these
	// IP addresses or CIDR prefixes (the source-address critical option).
	// nil means from anywhere.
	SourceAddresses []string
}

// SignUser returns a user certificate for pub, saying exactly what req
// asks, with a random serial, signed by the user CA. It refuses a request
// that is not well formed; whether the holder may have it is the caller's
// decision.
func (a *Authority) SignUser(pub ssh.PublicKey, req UserCert) (*ssh.Certificate, error) {
	cert, err := a.signUser(pub, req, a.now())
	if err != nil {
		return nil, fmt.Errorf("certs: sign user cert for %q: %w", req.KeyID, err)
	}
	return cert, nil
}

// UpstreamSigner returns a signer the bastion logs in to a target with, for
// one session: a fresh Ed25519 key with a user certificate for the
// principal login, named keyID (the bastion passes "person=alice@example.com
// session=abc amendment=7f3a"), valid from now (backdated a minute) until
// validBefore, the amendment's expiry, and never later, nor longer than
// Config.MaxUserCertTTL. Its extensions permit a pty, port, agent and X11
// forwarding: the private key never leaves the bastion, which relays only
// what the amendment permits.
func (a *Authority) UpstreamSigner(login, keyID string, validBefore time.Time) (ssh.Signer, error) {
	now := a.now()
	if max := now.Add(a.maxUserTTL); validBefore.After(max) {
		validBefore = max
	}
	signer, err := a.upstreamSigner(login, keyID, validBefore, now)
	if err != nil {
		return nil, fmt.Errorf("certs: sign upstream cert for %q: %w", login, err)
	}
	return signer, nil
}

func (a *Authority) upstreamSigner(login, keyID string, validBefore, now time.Time) (ssh.Signer, error) {
	_, priv, err := ed25519.GenerateKey(a.rand)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	key, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, err
	}
	cert, err := a.signUser(key.PublicKey(), UserCert{
		KeyID:           keyID,
		Principals:      []string{login},
		ValidAfter:      now,
		ValidBefore:     validBefore,
		PTY:             true,
		PortForwarding:  true,
		AgentForwarding: true,
		X11Forwarding:   true,
	}, now)
	if err != nil {
		return nil, err
	}
	return ssh.NewCertSigner(cert, key)
}

// signUser checks req and signs it as of now.
func (a *Authority) signUser(pub ssh.PublicKey, req UserCert, now time.Time) (*ssh.Certificate, error) {
	if err := checkSubjectKey(pub); err != nil {
		return nil, err
	}
	if req.KeyID == "" || !printable(req.KeyID) {
		return nil, ErrBadKeyID
	}
	if len(req.Principals) == 0 {
		return nil, ErrNoPrincipals
	}
	for _, p := range req.Principals {
		if p == "" || !printable(p) {
			return nil, fmt.Errorf("%w: %q", ErrBadPrincipal, p)
		}
	}
	after, before := req.ValidAfter, req.ValidBefore
	if after.IsZero() {
		after = now
	}
	switch {
	case after.Unix() < 0:
		return nil, fmt.Errorf("%w: ValidAfter %s is before 1970", ErrBadValidity, stamp(after))
	case !before.After(after):
		return nil, fmt.Errorf("%w: ValidBefore %s is not after ValidAfter %s", ErrBadValidity, stamp(before), stamp(after))
	case !before.After(now):
		return nil, fmt.Errorf("%w: ValidBefore %s is not in the future", ErrBadValidity, stamp(before))
	case before.Sub(after) > a.maxUserTTL:
		return nil, fmt.Errorf("%w: %s asked, at most %s", ErrValidityTooLong, before.Sub(after).Round(time.Second), a.maxUserTTL)
	}
	if !after.After(now) {
		after = after.Add(-clockSkew)
	}
	var opts map[string]string
	if len(req.SourceAddresses) > 0 {
		for _, s := range req.SourceAddresses {
			if _, err := parseSourceAddress(s); err != nil {
				return nil, err
			}
		}
		opts = map[string]string{optSourceAddress: strings.Join(req.SourceAddresses, ",")}
	}
	exts := make(map[string]string, 4)
	for _, e := range []struct {
		on   bool
		name string
	}{
		{req.PTY, extPTY},
		{req.PortForwarding, extPortForwarding},
		{req.AgentForwarding, extAgentForwarding},
		{req.X11Forwarding, extX11Forwarding},
	} {
		if e.on {
			exts[e.name] = ""
		}
	}
	serial, err := a.serial()
	if err != nil {
		return nil, err
	}
	cert := &ssh.Certificate{
		Key:             pub,
		Serial:          serial,
		CertType:        ssh.UserCert,
		KeyId:           req.KeyID,
		ValidPrincipals: append([]string(nil), req.Principals...),
		ValidAfter:      uint64(after.Unix()),
		ValidBefore:     uint64(before.Unix()),
		Permissions:     ssh.Permissions{CriticalOptions: opts, Extensions: exts},
	}
	if err := cert.SignCert(a.rand, a.userCA); err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return cert, nil
}

// checkSubjectKey refuses what must not be certified: no key, a
// certificate, DSA, and RSA keys under 2048 bits.
func checkSubjectKey(pub ssh.PublicKey) error {
	if pub == nil {
		return fmt.Errorf("%w: no public key", ErrBadPublicKey)
	}
	if isCert(pub) {
		return fmt.Errorf("%w: a certificate, not a key", ErrBadPublicKey)
	}
	switch pub.Type() {
	case ssh.InsecureKeyAlgoDSA:
		return fmt.Errorf("%w: DSA keys are insecure; use ssh-keygen -t ed25519", ErrBadPublicKey)
	case ssh.KeyAlgoRSA:
		ck, ok := pub.(ssh.CryptoPublicKey)
		if !ok {
			return fmt.Errorf("%w: unreadable RSA key", ErrBadPublicKey)
		}
		if k, ok := ck.CryptoPublicKey().(*rsa.PublicKey); !ok || k.N.BitLen() < minRSABits {
			return fmt.Errorf("%w: RSA keys need at least %d bits; use ssh-keygen -t ed25519", ErrBadPublicKey, minRSABits)
		}
	}
	return nil
}

// parseSourceAddress parses one entry of a source-address list: an IP
// address or a CIDR prefix.
func parseSourceAddress(s string) (netip.Prefix, error) {
	if addr, err := netip.ParseAddr(s); err == nil && addr.Zone() == "" {
		addr = addr.Unmap()
		return netip.PrefixFrom(addr, addr.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%w: %q", ErrBadSourceAddr, s)
	}
	return p.Masked(), nil
}

// printable reports whether s is short enough and free of control
// characters, as befits a name that ends up in logs.
func printable(s string) bool {
	return len(s) <= maxKeyIDOrNameBytes && !strings.ContainsFunc(s, unicode.IsControl)
}

// stamp formats t for an error message.
func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }
