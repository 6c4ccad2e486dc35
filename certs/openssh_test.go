package certs

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// The OpenSSH programs the tests below drive, as Debian installs them.
const (
	sshKeygenPath = "/usr/bin/ssh-keygen"
	sshPath       = "/usr/bin/ssh"
	sshdPath      = "/usr/sbin/sshd"
)

func needProgram(t *testing.T, path, pkg string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Skipf("skipping: %s is not installed (apt-get install %s)", path, pkg)
	}
}

// writeFile writes data to name in dir with mode 0600 and returns its path.
func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// writePrivateKey writes key's private key in OpenSSH format.
func writePrivateKey(t *testing.T, dir, name string, priv any) string {
	t.Helper()
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, dir, name, pem.EncodeToMemory(block))
}

// TestSSHKeygenReadsCerts has OpenSSH's ssh-keygen parse (and so verify
// the CA signature of) the certificates SignUser and SignHost mint.
func TestSSHKeygenReadsCerts(t *testing.T) {
	needProgram(t, sshKeygenPath, "openssh-client")
	a := newAuthority(t, Config{Now: fixedNow(t0)})
	key := newKey(t)
	user, err := a.SignUser(key.PublicKey(), UserCert{
		KeyID: "person=alice@example.com", Principals: []string{"ubuntu", "postgres"},
		ValidAfter: t0, ValidBefore: t0.Add(8 * time.Hour),
		PTY: true, PortForwarding: true, SourceAddresses: []string{"10.0.0.0/8"},
	})
	if err != nil {
		t.Fatal(err)
	}
	host, err := a.SignHost(key.PublicKey(), []string{"web-1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cert *ssh.Certificate
		want []string // lines of ssh-keygen -L, trimmed
	}{
		{"user certificate", user, []string{
			"Type: ssh-ed25519-cert-v01@openssh.com user certificate",
			"Signing CA: ED25519 " + ssh.FingerprintSHA256(a.UserCAKeys()[0]) + " (using ssh-ed25519)",
			`Key ID: "person=alice@example.com"`,
			fmt.Sprintf("Serial: %d", user.Serial),
			"Valid: from 2026-03-14T09:25:53 to 2026-03-14T17:26:53",
			"Principals: \n                ubuntu\n                postgres",
			"Critical Options: \n                source-address 10.0.0.0/8",
			"Extensions: \n                permit-port-forwarding\n                permit-pty\n",
		}},
		{"host certificate", host, []string{
			"Type: ssh-ed25519-cert-v01@openssh.com host certificate",
			"Signing CA: ED25519 " + ssh.FingerprintSHA256(a.HostCAKeys()[0]) + " (using ssh-ed25519)",
			"Valid: from 2026-03-14T09:25:53 to 2026-03-14T10:26:53",
			"Principals: \n                web-1\n",
			"Critical Options: (none)",
			"Extensions: (none)",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, t.TempDir(), "id_ed25519-cert.pub", ssh.MarshalAuthorizedKey(tt.cert))
			cmd := exec.Command(sshKeygenPath, "-L", "-f", path)
			cmd.Env = append(os.Environ(), "TZ=UTC")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("ssh-keygen -L: %v\n%s", err, out)
			}
			for _, want := range tt.want {
				if !strings.Contains(string(out), want) {
					t.Errorf("ssh-keygen -L output lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

// TestOpenSSHClientLogsIn has stock ssh log in to a server built like the
// bastion: it presents HostSigner's certificate, which the client trusts
// through KnownHosts, and checks the client's certificate with
// CheckUserCert.
func TestOpenSSHClientLogsIn(t *testing.T) {
	needProgram(t, sshPath, "openssh-client")
	a := newAuthority(t, Config{})
	other := newAuthority(t, Config{})
	addr := serveBastion(t, a, "web-1")

	keyDir := t.TempDir()
	_, priv, err := ed25519GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	keySigner, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := writePrivateKey(t, keyDir, "id_ed25519", priv)
	now := time.Now()
	cert, err := a.SignUser(keySigner.PublicKey(), UserCert{KeyID: "person=alice@example.com", Principals: []string{"alice"}, ValidAfter: now, ValidBefore: now.Add(time.Hour), PTY: true})
	if err != nil {
		t.Fatal(err)
	}
	certFile := writeFile(t, keyDir, "alice-cert.pub", ssh.MarshalAuthorizedKey(cert))

	tests := []struct {
		name       string
		knownHosts []string
		certFile   string
		wantOK     bool
		want       string // in the output
	}{
		{"jitproxy certificate and known_hosts", a.KnownHosts("web-1"), certFile, true, "hello from web-1"},
		{"plain key", a.KnownHosts("web-1"), "", false, "Permission denied"},
		{"known_hosts trusts another CA", other.KnownHosts("web-1"), certFile, false, "Host key verification failed"},
		{"known_hosts for other hosts", a.KnownHosts("db-*"), certFile, false, "Host key verification failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			kh := writeFile(t, dir, "known_hosts", []byte(strings.Join(tt.knownHosts, "\n")+"\n"))
			host, port, _ := net.SplitHostPort(addr)
			args := []string{"-F", "/dev/null", "-p", port,
				"-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-i", keyFile,
				"-o", "UserKnownHostsFile=" + kh, "-o", "GlobalKnownHostsFile=/dev/null",
				"-o", "StrictHostKeyChecking=yes", "-o", "HostKeyAlias=web-1", "-o", "ConnectTimeout=10"}
			if tt.certFile != "" {
				args = append(args, "-o", "CertificateFile="+tt.certFile)
			}
			args = append(args, "alice@"+host, "hello")
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, sshPath, args...).CombinedOutput()
			if (err == nil) != tt.wantOK || !strings.Contains(string(out), tt.want) {
				t.Errorf("ssh: got %v:\n%s\nwant accepted=%v and %q", err, out, tt.wantOK, tt.want)
			}
		})
	}
}

// serveBastion serves SSH on loopback as hostname, with HostSigner's
// certificate, accepting clients that pass CheckUserCert; an exec request
// is answered with "hello from HOSTNAME" and exit status 0. It returns the
// address; the test's cleanup stops it.
func serveBastion(t *testing.T, a *Authority, hostname string) string {
	t.Helper()
	hostSigner, err := a.HostSigner(hostname)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{PublicKeyCallback: checkWith(a.CheckUserCert)}
	cfg.AddHostKey(hostSigner)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex // guards conns
		conns []net.Conn
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { serveExec(c, cfg, hostname) })
		}
	})
	return ln.Addr().String()
}

func serveExec(c net.Conn, cfg *ssh.ServerConfig, hostname string) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	sconn, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	defer sconn.Close()
	go ssh.DiscardRequests(reqs)
	for newCh := range chans {
		if newCh.ChannelType() != "session" {
			newCh.Reject(ssh.UnknownChannelType, "sessions only")
			continue
		}
		ch, chReqs, err := newCh.Accept()
		if err != nil {
			return
		}
		for req := range chReqs {
			if req.Type != "exec" {
				req.Reply(false, nil)
				continue
			}
			req.Reply(true, nil)
			io.WriteString(ch, "hello from "+hostname+"\n")
			ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{0}))
			ch.Close()
		}
	}
}

// TestOpenSSHServerAcceptsUpstreamSigner is the bastion's upstream hop
// against a real sshd: the target trusts the user CA through
// TrustedUserCAKeys and presents a host certificate from the host CA; the
// bastion logs in with UpstreamSigner and verifies the target with
// HostKeyCallback. sshd runs unprivileged (as nobody when the tests run as
// root), so the login is that user.
func TestOpenSSHServerAcceptsUpstreamSigner(t *testing.T) {
	needProgram(t, sshdPath, "openssh-server")
	old := newAuthority(t, Config{})      // the user CA before a rotation
	stranger := newAuthority(t, Config{}) // a CA the target does not trust
	a := newAuthority(t, Config{TrustedUserCAs: []string{authorizedKey(old.UserCAKeys()[0])}})
	target := startSSHD(t, a)

	const keyID = "person=alice@example.com session=abc amendment=7f3a"
	validBefore := time.Now().Add(time.Hour)
	upstream := func(a *Authority, login string) ssh.Signer {
		t.Helper()
		s, err := a.UpstreamSigner(login, keyID, validBefore)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	caFP := func(a *Authority) string { return "CA ED25519 " + ssh.FingerprintSHA256(a.UserCAKeys()[0]) }
	tests := []struct {
		name     string
		signer   ssh.Signer
		hostname string   // the name the host certificate must carry
		wantOK   bool     // logged in
		wantErr  error    // what the client's error wraps; nil means any
		wantLog  []string // in one line of sshd's log
	}{
		{name: "upstream certificate", signer: upstream(a, target.login), hostname: "web-1", wantOK: true,
			wantLog: []string{"Accepted publickey for " + target.login, "ID " + keyID + " (serial", caFP(a)}},
		{name: "signed by the old user CA, still trusted", signer: upstream(old, target.login), hostname: "web-1", wantOK: true,
			wantLog: []string{"Accepted publickey for " + target.login, caFP(old)}},
		{name: "certificate for another login", signer: upstream(a, target.login+"x"), hostname: "web-1",
			wantLog: []string{"Certificate invalid: name is not a listed principal"}},
		{name: "certificate from an untrusted CA", signer: upstream(stranger, target.login), hostname: "web-1",
			wantLog: []string{"Failed publickey for " + target.login, caFP(stranger)}},
		{name: "target is not the host expected", signer: upstream(a, target.login), hostname: "web-2", wantErr: ErrHostKeyMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hostKeys, err := HostKeyCallback(tt.hostname, nil, a.HostCAKeys())
			if err != nil {
				t.Fatal(err)
			}
			client, err := ssh.Dial("tcp", target.addr, &ssh.ClientConfig{
				User:            target.login,
				Auth:            []ssh.AuthMethod{ssh.PublicKeys(tt.signer)},
				HostKeyCallback: hostKeys,
				Timeout:         10 * time.Second,
			})
			if err == nil {
				client.Close()
			}
			if (err == nil) != tt.wantOK || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
				t.Fatalf("got %v; want logged in=%v (error %v); sshd log:\n%s", err, tt.wantOK, tt.wantErr, target.log())
			}
			if len(tt.wantLog) > 0 && !waitFor(func() bool { return target.logged(tt.wantLog...) }) {
				t.Errorf("sshd log has no line with all of %q:\n%s", tt.wantLog, target.log())
			}
		})
	}
}

// sshd is a running OpenSSH server.
type sshd struct {
	addr  string
	login string // the one user it can log in: the user it runs as

	mu  sync.Mutex   // guards out
	out bytes.Buffer // its log (-e)
}

func (s *sshd) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.Write(p)
}

// logged reports whether one line of the log contains all of parts.
func (s *sshd) logged(parts ...string) bool {
	for line := range strings.Lines(s.log()) {
		if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(line, p) }) {
			return true
		}
	}
	return false
}

func (s *sshd) log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

// startSSHD starts sshd on a free loopback port with a host certificate
// for web-1 from a's host CA and a's TrustedUserCAKeys; the test's cleanup
// stops it.
func startSSHD(t *testing.T, a *Authority) *sshd {
	t.Helper()
	dir := t.TempDir()
	s := &sshd{}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		// As root sshd insists on /run/sshd and privilege separation;
		// unprivileged it needs neither, but can only log in itself.
		nobody, err := user.Lookup("nobody")
		if err != nil {
			t.Skipf("skipping: running as root and there is no user nobody to run sshd as: %v", err)
		}
		uid, _ := strconv.Atoi(nobody.Uid)
		gid, _ := strconv.Atoi(nobody.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		s.login = nobody.Username
	} else {
		me, err := user.Current()
		if err != nil {
			t.Fatal(err)
		}
		s.login = me.Username
	}

	_, hostPriv, err := ed25519GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	hostKey, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	hostCert, err := a.SignHost(hostKey.PublicKey(), []string{"web-1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(s.addr)
	files := []string{
		writePrivateKey(t, dir, "host_key", hostPriv),
		writeFile(t, dir, "host_key-cert.pub", ssh.MarshalAuthorizedKey(hostCert)),
		writeFile(t, dir, "trusted_user_ca_keys", a.TrustedUserCAKeys()),
	}
	usePAM := "no"
	if cred != nil {
		usePAM = "yes"
	}
	config := writeFile(t, dir, "sshd_config", []byte(strings.Join([]string{
		"ListenAddress 127.0.0.1",
		"Port " + port,
		"HostKey " + files[0],
		"HostCertificate " + files[1],
		"TrustedUserCAKeys " + files[2],
		"AuthorizedKeysFile none",
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"UsePAM " + usePAM,
		"StrictModes no",
		"PidFile none",
		"LogLevel VERBOSE",
		"",
	}, "\n")))
	files = append(files, config)
	if cred != nil {
		for _, d := range []string{dir, filepath.Dir(dir)} { // t.TempDir's are 0700
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for _, f := range files {
			if err := os.Chown(f, int(cred.Uid), int(cred.Gid)); err != nil {
				t.Fatal(err)
			}
		}
	}

	cmd := exec.Command(sshdPath, "-D", "-e", "-f", config)
	cmd.Stdout, cmd.Stderr = s, s
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sshd: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	up := waitFor(func() bool {
		select {
		case <-exited:
			return false
		default:
		}
		c, err := net.DialTimeout("tcp", s.addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	if !up {
		t.Fatalf("sshd did not start:\n%s", s.log())
	}
	return s
}

// waitFor polls cond for up to ten seconds.
func waitFor(cond func() bool) bool {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return false
}
