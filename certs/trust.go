package certs

import (
	"bytes"
	"strings"

	"golang.org/x/crypto/ssh"
)

// KnownHostsLine returns the known_hosts line that makes OpenSSH trust
// host certificates from hostCA for hosts matching hostPattern (a
// known_hosts pattern such as "web-1" or "*.internal,10.0.0.*", without
// spaces): "@cert-authority PATTERN ssh-ed25519 AAAA...".
func KnownHostsLine(hostPattern string, hostCA ssh.PublicKey) string {
	return "@cert-authority " + hostPattern + " " + authorizedKey(hostCA)
}

// KnownHosts returns a KnownHostsLine for every trusted host CA, the
// current one first, so clients keep trusting hosts through a rotation.
func (a *Authority) KnownHosts(hostPattern string) []string {
	lines := make([]string, len(a.hostCAs))
	for i, ca := range a.hostCAs {
		lines[i] = KnownHostsLine(hostPattern, ca)
	}
	return lines
}

// TrustedUserCAKeys returns the contents of the file sshd's
// TrustedUserCAKeys option names on a target: every trusted user CA
// public key, the current one first, one a line.
func (a *Authority) TrustedUserCAKeys() []byte {
	var b bytes.Buffer
	for _, ca := range a.userCAs {
		b.WriteString(authorizedKey(ca))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// authorizedKey is key as an authorized_keys line, without a newline.
func authorizedKey(key ssh.PublicKey) string {
	return strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(key)), "\n")
}
