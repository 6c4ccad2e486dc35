package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/jitproxy/jitproxy/api"
	"github.com/jitproxy/jitproxy/certs"
	sshproxy "github.com/jitproxy/jitproxy/proxy/ssh"
)

// Files of the SSH client setup in $JITPROXY_HOME.
const (
	sshKeyFile     = "id_ed25519"
	sshCertFile    = "id_ed25519-cert.pub"
	knownHostsFile = "known_hosts"
	sshStateFile   = "ssh.json"
	bastionDial    = 10 * time.Second
	// bannerTimeout bounds ssh-proxy --fdpass's wait for the bastion's
	// first line after the preamble: its SSH version line, or a refusal.
	bannerTimeout = 20 * time.Second
)

// sshState is what `jitproxy certs` remembers for the ProxyCommand, so a
// connection needs no API round trip.
type sshState struct {
	Proxy       string    `json:"proxy"`
	Bastion     string    `json:"bastion"`
	ValidBefore time.Time `json:"valid_before"`
}

// refreshCert makes sure the key exists, asks the server for a certificate
// (only granted while the person holds an active SSH amendment), and writes
// the certificate, known_hosts and state files, all 0600. It also adds the
// key and certificate to a running ssh-agent.
func refreshCert(ctx context.Context, cl *client) (*api.Certificate, error) {
	h, err := home()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(h, 0o700); err != nil {
		return nil, err
	}
	signer, err := certs.LoadOrCreateKey(filepath.Join(h, sshKeyFile))
	if err != nil {
		return nil, err
	}
	pub := ssh.MarshalAuthorizedKey(signer.PublicKey())
	if err := writeFile0600(filepath.Join(h, sshKeyFile+".pub"), pub); err != nil {
		return nil, err
	}
	var c api.Certificate
	if err := cl.do(ctx, "POST", "/api/v1/ssh/certificate", api.CertificateBody{PublicKey: string(pub)}, &c); err != nil {
		return nil, err
	}
	if err := writeFile0600(filepath.Join(h, sshCertFile), []byte(c.Certificate+"\n")); err != nil {
		return nil, err
	}
	if err := writeFile0600(filepath.Join(h, knownHostsFile), []byte(strings.Join(c.KnownHosts, "\n")+"\n")); err != nil {
		return nil, err
	}
	st, _ := json.MarshalIndent(sshState{Proxy: cl.base, Bastion: c.Bastion, ValidBefore: c.ValidBefore}, "", "  ")
	if err := writeFile0600(filepath.Join(h, sshStateFile), st); err != nil {
		return nil, err
	}
	addToAgent(filepath.Join(h, sshKeyFile), c.Certificate, c.ValidBefore)
	return &c, nil
}

// addToAgent adds the key with its certificate to the ssh-agent at
// SSH_AUTH_SOCK, if one runs, with a lifetime that ends with the
// certificate. Failing to is not an error: ssh reads the files too.
func addToAgent(keyFile, certLine string, until time.Time) {
	sock := os.Getenv("SSH_AUTH_SOCK")
	if sock == "" {
		return
	}
	b, err := os.ReadFile(keyFile)
	if err != nil {
		return
	}
	priv, err := ssh.ParseRawPrivateKey(b)
	if err != nil {
		return
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(certLine))
	if err != nil {
		return
	}
	cert, ok := k.(*ssh.Certificate)
	if !ok {
		return
	}
	conn, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		return
	}
	defer conn.Close()
	life := time.Until(until)
	if life <= 0 {
		return
	}
	agent.NewClient(conn).Add(agent.AddedKey{PrivateKey: priv, Certificate: cert, LifetimeSecs: uint32(life / time.Second), Comment: cert.KeyId + " (jitproxy)"})
}

func writeFile0600(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o600); err != nil { // WriteFile keeps an existing file's mode
		return err
	}
	return os.Rename(tmp, path)
}

func newCertsCmd() *cobra.Command {
	var f clientFlags
	c := &cobra.Command{
		Use:   "certs",
		Short: "Get an SSH certificate for your active amendments",
		Long: `Get a short-lived SSH certificate for your key ($JITPROXY_HOME/id_ed25519,
made on first use), valid until your last active SSH amendment ends. Run it
after a new approval. It also writes the known_hosts file that trusts
jitproxy's host CA, and adds the key to your ssh-agent if one is running.
Which targets and logins you reach is checked live on every connection.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := f.newClient(true)
			if err != nil {
				return err
			}
			c, err := refreshCert(cmd.Context(), cl)
			if err != nil {
				return err
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), c)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "SSH certificate for %s valid until %s; bastion %s\n", c.Principals[0], c.ValidBefore.Local().Format("2006-01-02 15:04"), c.Bastion)
			return nil
		},
	}
	f.register(c)
	return c
}

// executable is the absolute path of this binary, for ProxyCommand lines.
func executable() string {
	p, err := os.Executable()
	if err != nil {
		return "jitproxy"
	}
	return p
}

func newSSHConfigCmd() *cobra.Command {
	var f clientFlags
	var relay bool
	c := &cobra.Command{
		Use:   "ssh-config",
		Short: "Print a block for ~/.ssh/config so plain ssh reaches jitproxy targets",
		Long: `Print a block for ~/.ssh/config: with it, "ssh LOGIN@TARGET" (and scp, sftp,
rsync, git) reaches every jitproxy SSH target you may request, in one hop
through the bastion, with your jitproxy certificate and known_hosts.

By default the ProxyCommand only opens the connection and names the target,
then hands the connected socket to ssh (ProxyUseFdpass yes) and exits, so
nothing sits between ssh and the bastion. --relay prints the older form, in
which jitproxy ssh-proxy relays the session's bytes for its whole length
(for an ssh without ProxyUseFdpass, as on Windows).`,
		Example: "  jitproxy ssh-config >> ~/.ssh/config",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := f.newClient(true)
			if err != nil {
				return err
			}
			var t api.Targets
			if err := cl.do(cmd.Context(), "GET", "/api/v1/targets", nil, &t); err != nil {
				return err
			}
			var hosts []string
			for _, v := range t.Targets {
				if v.Kind == "ssh" {
					hosts = append(hosts, v.Name)
				}
			}
			if len(hosts) == 0 {
				return fmt.Errorf("no SSH target you may request on %s", cl.base)
			}
			h, err := home()
			if err != nil {
				return err
			}
			bastion, _, _ := net.SplitHostPort(t.Bastion)
			fmt.Fprint(cmd.OutOrStdout(), sshConfigBlock(hosts, bastion, executable(), cl.base, h, !relay && fdpassDefault))
			return nil
		},
	}
	f.register(c)
	c.Flags().BoolVar(&relay, "relay", false, "print the relay form: ssh-proxy copies the session's bytes instead of handing the socket to ssh")
	return c
}

// fdpassDefault says whether ssh-config and ssh use fd passing unless told
// otherwise: everywhere OpenSSH has ProxyUseFdpass (since 6.5), that is,
// everywhere but Windows.
const fdpassDefault = runtime.GOOS != "windows"

// proxyCommandOptions are the ssh options that take ssh through
// `jitproxy ssh-proxy`, as ssh_config keywords and values: with fdpass the
// ProxyCommand hands ssh the connected socket and exits; without it, it
// relays the session for its whole length.
func proxyCommandOptions(self, proxy string, fdpass bool) [][2]string {
	if !fdpass {
		return [][2]string{{"ProxyCommand", fmt.Sprintf("%q ssh-proxy --proxy %s %%h", self, proxy)}}
	}
	return [][2]string{
		{"ProxyCommand", fmt.Sprintf("%q ssh-proxy --fdpass --proxy %s %%h", self, proxy)},
		{"ProxyUseFdpass", "yes"},
	}
}

// sshConfigBlock is what ssh-config prints: the targets through the
// ProxyCommand (fd passing or relay), and the bastion itself for ssh -J.
func sshConfigBlock(hosts []string, bastion, self, proxy, h string, fdpass bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# jitproxy (%s): ssh LOGIN@TARGET goes through the bastion in one hop.\n", proxy)
	b.WriteString("# Get access with: jitproxy request TARGET --login LOGIN ...; then: jitproxy certs\n")
	fmt.Fprintf(&b, "Host %s\n", strings.Join(hosts, " "))
	for _, o := range proxyCommandOptions(self, proxy, fdpass) {
		fmt.Fprintf(&b, "    %s %s\n", o[0], o[1])
	}
	fmt.Fprintf(&b, `    IdentityFile %[1]s
    CertificateFile %[2]s
    IdentitiesOnly yes
    UserKnownHostsFile %[3]s
    StrictHostKeyChecking yes
    ForwardAgent no
    ForwardX11 no
# The bastion itself, for ssh -J PERSON@%[4]s LOGIN@TARGET.
Host %[4]s
    IdentityFile %[1]s
    CertificateFile %[2]s
    IdentitiesOnly yes
    UserKnownHostsFile %[3]s
    StrictHostKeyChecking yes
`, filepath.Join(h, sshKeyFile), filepath.Join(h, sshCertFile), filepath.Join(h, knownHostsFile), bastion)
	return b.String()
}

func newSSHProxyCmd() *cobra.Command {
	var f clientFlags
	var fdpass, nodelay bool
	c := &cobra.Command{
		Use:   "ssh-proxy TARGET",
		Short: "ProxyCommand for ssh: connect to TARGET through the bastion (used by ssh-config)",
		Long: `The ProxyCommand that jitproxy ssh-config writes: it connects to the bastion
and names TARGET before the SSH handshake, so ssh's one session terminates
at jitproxy. With --fdpass (and ProxyUseFdpass yes in ssh's config) it then
hands the connected socket to ssh and exits; without, it relays standard
input and output for the whole session. A refusal from the bastion is
printed as one line, and ssh-proxy exits 255. Not meant to be run by hand.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := home()
			if err != nil {
				return err
			}
			b, err := os.ReadFile(filepath.Join(h, sshStateFile))
			if err != nil {
				return fmt.Errorf("no SSH setup in %s: run jitproxy certs", h)
			}
			var st sshState
			if err := json.Unmarshal(b, &st); err != nil || st.Bastion == "" {
				return fmt.Errorf("%s is damaged: run jitproxy certs", filepath.Join(h, sshStateFile))
			}
			if time.Now().After(st.ValidBefore) {
				fmt.Fprintf(os.Stderr, "jitproxy: your SSH certificate expired at %s: run jitproxy certs (after jitproxy request if your access ended)\n", st.ValidBefore.Local().Format("15:04"))
			}
			if fdpass {
				if why := fdpassUnavailable(os.Stdout); why != nil {
					fmt.Fprintf(os.Stderr, "jitproxy: ssh-proxy --fdpass relays instead: %v; add ProxyUseFdpass yes next to the ProxyCommand\n", why)
					fdpass = false
				}
			}
			if err := sshproxy.CheckTargetName(args[0]); err != nil {
				return err // before a connection to the bastion is made
			}
			d := net.Dialer{Timeout: bastionDial}
			conn, err := d.DialContext(cmd.Context(), "tcp", st.Bastion)
			if err != nil {
				return fmt.Errorf("cannot reach the jitproxy bastion at %s: %w", st.Bastion, err)
			}
			tc := conn.(*net.TCPConn)
			// Go sets TCP_NODELAY on every TCP socket; OpenSSH sets it on its
			// connection only for interactive sessions, so the handed-over
			// socket keeps ours for the rest (exec, scp, sftp).
			if err := tc.SetNoDelay(nodelay); err != nil {
				conn.Close()
				return fmt.Errorf("set TCP_NODELAY on the bastion connection: %w", err)
			}
			if fdpass {
				err = passBastionConn(cmd.Context(), tc, args[0], os.Stdout, bannerTimeout)
			} else {
				err = sshproxy.ProxyCommand(cmd.Context(), conn, args[0], os.Stdin, os.Stdout)
			}
			var refused *sshproxy.RefusedError
			if errors.As(err, &refused) {
				return &exitError{code: 255, msg: strings.TrimPrefix(refused.Reason, "jitproxy: ")}
			}
			if fdpass && errors.Is(err, context.Canceled) {
				// Nothing was handed over: ssh says only that it got no
				// connection, so say why.
				return errors.New("interrupted before the bastion connection was handed to ssh")
			}
			if errors.Is(err, io.EOF) || errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		},
	}
	f.register(c)
	c.Flags().BoolVar(&fdpass, "fdpass", false, "hand the connected socket to ssh and exit (needs ProxyUseFdpass yes; relays if standard output is not a Unix socket)")
	c.Flags().BoolVar(&nodelay, "tcp-nodelay", true, "set TCP_NODELAY on the bastion connection (false only to measure its effect)")
	return c
}

func newSSHCmd() *cobra.Command {
	var f clientFlags
	c := &cobra.Command{
		Use:   "ssh [ssh options] LOGIN@TARGET [command]",
		Short: "Refresh your certificate and run OpenSSH to a target through jitproxy",
		Long: `Refresh your SSH certificate, then run OpenSSH's ssh with the options that
take it through the jitproxy bastion (the same as jitproxy ssh-config
writes: fd passing, or with --relay the relaying ProxyCommand). Everything
after jitproxy's own flags (--proxy URL, --relay) goes to ssh as is.`,
		Example:            "  jitproxy ssh ubuntu@web-1\n  jitproxy ssh ubuntu@web-1 -- uptime",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			// Our own flags (--proxy, --relay) come first; the rest is ssh's.
			fdpass := fdpassDefault
			for len(args) > 0 && (strings.HasPrefix(args[0], "--proxy") || args[0] == "--relay") {
				if args[0] == "--relay" {
					fdpass, args = false, args[1:]
				} else if v, ok := strings.CutPrefix(args[0], "--proxy="); ok {
					f.proxy, args = v, args[1:]
				} else if len(args) > 1 {
					f.proxy, args = args[1], args[2:]
				} else {
					return fmt.Errorf("--proxy needs a URL")
				}
			}
			if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
				return cmd.Help()
			}
			if len(args) == 0 {
				return fmt.Errorf("say where: jitproxy ssh LOGIN@TARGET")
			}
			cl, err := f.newClient(true)
			if err != nil {
				return err
			}
			if _, err := refreshCert(cmd.Context(), cl); err != nil {
				return err
			}
			h, err := home()
			if err != nil {
				return err
			}
			sshBin, err := exec.LookPath("ssh")
			if err != nil {
				return fmt.Errorf("OpenSSH's ssh is not installed: %w", err)
			}
			argv := []string{"ssh"}
			for _, o := range proxyCommandOptions(executable(), cl.base, fdpass) {
				argv = append(argv, "-o", o[0]+"="+o[1])
			}
			argv = append(argv,
				"-o", "IdentityFile="+filepath.Join(h, sshKeyFile),
				"-o", "CertificateFile="+filepath.Join(h, sshCertFile),
				"-o", "IdentitiesOnly=yes",
				"-o", "UserKnownHostsFile="+filepath.Join(h, knownHostsFile),
				"-o", "StrictHostKeyChecking=yes",
			)
			argv = append(argv, args...)
			return syscall.Exec(sshBin, argv, os.Environ())
		},
	}
	return c
}
