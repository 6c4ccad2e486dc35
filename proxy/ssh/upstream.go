package ssh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// dial connects the session to its target's real sshd as its login, with
// a fresh certificate that names the person, the session and the amendment
// and expires with the amendment, verifying the target's host key.
func (ss *sshSession) dial(ctx context.Context) error {
	s, t := ss.srv, ss.t
	keyID := fmt.Sprintf("person=%s session=%s amendment=%s", ss.person, ss.id, ss.amend.ID)
	signer, err := s.cfg.Authority.UpstreamSigner(ss.login, keyID, ss.amend.ExpiresAt)
	if err != nil {
		ss.log.Error().Err(err).Msg("cannot mint the upstream certificate")
		return refuse("upstream certificate", "cannot mint a certificate for %s@%s; tell a jitproxy administrator", ss.login, t.Name)
	}
	dctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
	c, err := s.cfg.Dial(dctx, "tcp", t.Address)
	cancel()
	if err != nil {
		ss.log.Warn().Err(err).Str("address", t.Address).Msg("cannot reach the target")
		return refuse("target unreachable", "cannot reach %s (%s); try again, and tell the target's owner if it lasts", t.Name, dialReason(err))
	}
	// x/crypto's client errors have no sentinels: these say how far the
	// handshake got.
	var hostKeyErr error
	var authTried bool
	handshake := time.AfterFunc(s.cfg.HandshakeTimeout, func() { c.Close() })
	conn, chans, reqs, err := gossh.NewClientConn(c, t.Address, &gossh.ClientConfig{
		Config: clientCrypto(),
		User:   ss.login,
		Auth: []gossh.AuthMethod{gossh.PublicKeysCallback(func() ([]gossh.Signer, error) {
			authTried = true
			return []gossh.Signer{signer}, nil
		})},
		HostKeyCallback: func(hostname string, remote net.Addr, key gossh.PublicKey) error {
			hostKeyErr = t.hostKeyFunc(hostname, remote, key)
			return hostKeyErr
		},
		ClientVersion: serverVersion,
	})
	handshake.Stop()
	if err != nil {
		c.Close()
		ss.log.Warn().Err(err).Str("address", t.Address).Msg("upstream handshake failed")
		switch {
		case hostKeyErr != nil:
			return refuse("host key mismatch", "%s presented a host key that jitproxy does not trust, so jitproxy did not log in; tell a jitproxy administrator", t.Name)
		case authTried:
			return refuse("upstream auth", "%s did not accept jitproxy's certificate for %s; tell the target's owner to trust the jitproxy user CA (TrustedUserCAKeys) for that login", t.Name, ss.login)
		}
		return refuse("upstream handshake", "the SSH handshake with %s failed; try again, and tell the target's owner if it lasts", t.Name)
	}
	ss.mu.Lock()
	ss.upstream, ss.upConn = conn, c
	ss.mu.Unlock()
	ss.upChans, ss.upReqs = chans, reqs
	return nil
}

// dialReason is a dial error without the addresses' noise, for the person.
func dialReason(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timed out"
	}
	return "network error"
}

// The ciphers of the two legs. The relay is bound by encryption on two
// shared cores, and Go's AES-GCM (AES-NI, about 3.7 GB/s a core here) is
// several times faster than x/crypto's chacha20-poly1305 for SSH, whose
// ChaCha20 has no amd64 assembly. OpenSSH's client prefers
// chacha20-poly1305, then the CTR modes, then AES-GCM, and takes the first
// the server offers, so the in-process servers offer AES-GCM alone: every
// OpenSSH since 6.2 (2013) has it, and a client that lacks it is told
// "no matching cipher found". Upstream, the bastion is the client and its
// preference wins: AES-GCM first, the rest for targets without it.
func serverCiphers() []string {
	return []string{gossh.CipherAES128GCM, gossh.CipherAES256GCM}
}

func clientCiphers() []string {
	return []string{
		gossh.CipherAES128GCM, gossh.CipherAES256GCM, gossh.CipherChaCha20Poly1305,
		gossh.CipherAES128CTR, gossh.CipherAES192CTR, gossh.CipherAES256CTR,
	}
}

// serverCrypto is the algorithm config of both in-process servers.
func serverCrypto() gossh.Config { return gossh.Config{Ciphers: serverCiphers()} }

// clientCrypto is the algorithm config of the upstream client.
func clientCrypto() gossh.Config { return gossh.Config{Ciphers: clientCiphers()} }
