package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/crypto/ssh"
)

// sshdPath is where Debian's openssh-server puts the daemon.
const sshdPath = "/usr/sbin/sshd"

// devSSHD is the private OpenSSH server `jitproxy dev` starts as its demo
// SSH target: on a free loopback port, trusting jitproxy's user CA, with a
// host key jitproxy pins.
type devSSHD struct {
	Addr    string
	HostKey ssh.PublicKey
	Login   string
	cmd     *exec.Cmd
	done    chan struct{}
}

// startDevSSHD starts sshd in dir, or returns nil (and says why in the log)
// when OpenSSH's server is not installed.
func startDevSSHD(ctx context.Context, dir string, trustedUserCAs []byte, log zerolog.Logger) (*devSSHD, error) {
	if _, err := os.Stat(sshdPath); err != nil {
		log.Warn().Msg("demo SSH target not started: OpenSSH's server is not installed (apt-get install openssh-server)")
		return nil, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		// sshd started as root wants its privilege-separation directory.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			return nil, fmt.Errorf("the demo sshd needs /run/sshd: %w", err)
		}
	}
	hostKeyFile := filepath.Join(dir, "ssh_host_ed25519_key")
	hostKey, err := loadOrCreateHostKey(hostKeyFile)
	if err != nil {
		return nil, err
	}
	caFile := filepath.Join(dir, "trusted_user_ca_keys")
	if err := os.WriteFile(caFile, trustedUserCAs, 0o600); err != nil {
		return nil, err
	}
	// Sessions get a home of their own: the demo's shells do not run the
	// account's dotfiles, which on a shared machine can be slow or hang
	// (a version manager's lock left behind), and would make the
	// walkthrough, the tests and the benchmarks depend on them.
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, err
	}
	u, err := user.Current()
	if err != nil {
		return nil, err
	}
	port, err := freeLoopbackPort()
	if err != nil {
		return nil, err
	}
	root := "no"
	if u.Uid == "0" {
		root = "prohibit-password"
	}
	conf := fmt.Sprintf(`# Written by jitproxy dev: the demo SSH target. Not for production.
ListenAddress 127.0.0.1
Port %d
HostKey %s
PidFile %s
TrustedUserCAKeys %s
AuthorizedKeysFile none
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin %s
StrictModes no
AllowTcpForwarding yes
X11Forwarding no
Subsystem sftp internal-sftp
SetEnv HOME=%s
LogLevel VERBOSE
`, port, hostKeyFile, filepath.Join(dir, "sshd.pid"), caFile, root, home)
	confFile := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(sshdPath, "-D", "-e", "-f", confFile)
	logw := log.With().Str("component", "demo-sshd").Logger()
	cmd.Stdout = logw
	cmd.Stderr = logw
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the demo sshd: %w", err)
	}
	d := &devSSHD{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), HostKey: hostKey, Login: u.Username, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(d.done) }()
	// Wait until it accepts connections, so the first ssh of the
	// walkthrough does not race it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", d.Addr, time.Second)
		if err == nil {
			c.Close()
			return d, nil
		}
		select {
		case <-d.done:
			return nil, errors.New("the demo sshd exited at start: see its log lines above")
		case <-ctx.Done():
			d.Stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.Stop()
			return nil, fmt.Errorf("the demo sshd does not accept connections on %s", d.Addr)
		}
	}
}

// Stop ends the demo sshd and waits for it.
func (d *devSSHD) Stop() {
	if d == nil {
		return
	}
	d.cmd.Process.Signal(os.Interrupt)
	select {
	case <-d.done:
	case <-time.After(5 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
	}
}

// loadOrCreateHostKey keeps the demo sshd's Ed25519 host key in path (0600),
// so a restarted demo keeps its identity.
func loadOrCreateHostKey(path string) (ssh.PublicKey, error) {
	if b, err := os.ReadFile(path); err == nil {
		s, err := ssh.ParsePrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return s.PublicKey(), nil
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	blk, err := ssh.MarshalPrivateKey(priv, "jitproxy demo sshd")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(blk), 0o600); err != nil {
		return nil, err
	}
	return ssh.NewPublicKey(pub)
}

func freeLoopbackPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
