package ssh

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	gossh "golang.org/x/crypto/ssh"

	"github.com/jitproxy/jitproxy/amendment"
	"github.com/jitproxy/jitproxy/audit"
	"github.com/jitproxy/jitproxy/certs"
	"github.com/jitproxy/jitproxy/recording"
	"github.com/jitproxy/jitproxy/session"
	"github.com/jitproxy/jitproxy/store"
)

// The test binary doubles as the single-hop ProxyCommand: ssh runs
// "<test binary> %h" with proxyEnv set to the bastion's address.
const (
	proxyEnv    = "SSHPROXY_TEST_BASTION"
	rawProxyEnv = "SSHPROXY_TEST_RAW_PREAMBLE" // sent instead of the preamble
)

func TestMain(m *testing.M) {
	if addr := os.Getenv(proxyEnv); addr != "" && len(os.Args) == 2 {
		os.Exit(proxyMain(addr, os.Args[1]))
	}
	if spec := os.Getenv(swarmEnv); spec != "" {
		os.Exit(swarmMain(spec))
	}
	os.Exit(m.Run())
}

// proxyMain is what `jitproxy ssh-proxy %h` does in cmd/.
func proxyMain(addr, target string) int {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		fmt.Fprintf(os.Stderr, "jitproxy: cannot reach the bastion at %s: %v\n", addr, err)
		return 255
	}
	if raw := os.Getenv(rawProxyEnv); raw != "" {
		err = proxyCommand(context.Background(), conn, raw+"\r\n", os.Stdin, os.Stdout)
	} else {
		err = ProxyCommand(context.Background(), conn, target, os.Stdin, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 255
	}
	return 0
}

// People and their identities in the test contract.
var (
	alice = amendment.Identity{Email: "alice@example.com", Groups: []string{"eng"}}
	admin = amendment.Identity{Email: "root@example.com", Groups: []string{"admins"}}
)

func testContract() *amendment.Contract {
	return &amendment.Contract{
		Targets: map[string]amendment.Target{
			"web-1": {Name: "web-1", Kind: amendment.KindSSH},
		},
		Rules: []amendment.Rule{{
			Name: "eng", Groups: []string{"eng"}, Targets: []string{"web-*"}, Logins: []string{"*"},
			PortForwarding: true, MaxDuration: 8 * time.Hour, PendingTTL: time.Hour,
		}},
		AdminGroups: []string{"admins"},
	}
}

// serviceAccess is Access over the real amendment service, as cmd/ wires
// it: the active SSH amendment of person for exactly target and login.
type serviceAccess struct{ svc *amendment.Service }

func (a serviceAccess) ActiveSSH(ctx context.Context, person, target, login string) (*amendment.Amendment, error) {
	hint := fmt.Sprintf("no active amendment for %s@%s: run jitproxy request %s --login %s --for 1h --reason ...", login, target, target, login)
	return a.svc.ActiveFor(ctx, person, target, func(r amendment.Resource) bool {
		return r.Kind == amendment.KindSSH && r.Login == login
	}, hint)
}

// auditRow is one call of Config.Audit.
type auditRow struct {
	typ, actor string
	fields     map[string]any
}

// auditLog collects audit rows.
type auditLog struct {
	mu   sync.Mutex // guards rows
	rows []auditRow
}

func (l *auditLog) add(_ context.Context, typ, actor string, fields map[string]any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rows = append(l.rows, auditRow{typ, actor, fields})
}

// find returns the rows of type typ whose fields include every key and
// value in match.
func (l *auditLog) find(typ string, match map[string]any) []auditRow {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []auditRow
	for _, r := range l.rows {
		if r.typ != typ {
			continue
		}
		ok := true
		for k, v := range match {
			if r.fields[k] != v {
				ok = false
			}
		}
		if ok {
			out = append(out, r)
		}
	}
	return out
}

// waitRow waits up to 10s for a row of type typ matching match.
func (l *auditLog) waitRow(t testing.TB, typ string, match map[string]any) auditRow {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if rows := l.find(typ, match); len(rows) > 0 {
			return rows[len(rows)-1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s audit row matching %v", typ, match)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// env is a whole bastion on loopback: the real certs authority, SQLite
// store, amendment service, session registry and recorder, a private sshd
// as target web-1, and the Server.
type env struct {
	t      testing.TB
	dir    string
	ca     *certs.Authority
	store  *store.SQLite
	svc    *amendment.Service
	reg    *session.Registry
	recDir string
	audit  *auditLog
	srv    *Server
	addr   string // the bastion's 127.0.0.1:port
	sshd   *sshd
	login  string // the Unix user the tests log in to sshd as
	alice  *client
}

// envOptions change the defaults of newEnv.
type envOptions struct {
	maxSessions      int
	handshakeTimeout time.Duration
	configure        func(*Config)
	quiet            bool            // log nothing (benchmarks)
	warnings         []time.Duration // the registry's; nil means its default
	storeAudit       bool            // audit rows also go to the SQLite store, as in cmd/jitproxy
}

func newEnv(t testing.TB, opts envOptions) *env {
	t.Helper()
	requireOpenSSH(t)
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: t.TempDir(), audit: &auditLog{}, login: u.Username}
	e.ca = newAuthority(t, e.dir, nil)

	e.store, err = store.OpenSQLite(t.Context(), store.SQLiteConfig{Path: filepath.Join(e.dir, "j.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.store.Close() })
	e.svc, err = amendment.New(amendment.Config{Store: e.store, Contract: testContract()})
	if err != nil {
		t.Fatal(err)
	}
	log := testLogger(t)
	if opts.quiet {
		log = zerolog.Nop()
	}
	e.reg, err = session.New(session.Config{Amendments: e.store, Logger: log, Warnings: opts.warnings})
	if err != nil {
		t.Fatal(err)
	}
	regCtx, stopReg := context.WithCancel(context.Background())
	regDone := make(chan struct{})
	go func() {
		defer close(regDone)
		e.reg.Run(regCtx)
	}()
	t.Cleanup(func() {
		stopReg()
		<-regDone
	})
	e.recDir = filepath.Join(e.dir, "recordings")
	rec, err := recording.New(recording.Config{Dir: e.recDir})
	if err != nil {
		t.Fatal(err)
	}

	e.sshd = startSSHD(t, filepath.Join(e.dir, "sshd"), e.ca.TrustedUserCAKeys())
	cfg := Config{
		Authority: e.ca,
		Targets: map[string]Target{
			"web-1": {Name: "web-1", Address: e.sshd.addr, HostKeys: []gossh.PublicKey{e.sshd.hostKey}},
		},
		Access:               serviceAccess{e.svc},
		Registry:             e.reg,
		Recorder:             rec,
		RequireRecording:     true,
		Audit:                e.audit.add,
		BastionHostname:      "127.0.0.1",
		HandshakeTimeout:     opts.handshakeTimeout,
		MaxSessionsPerPerson: opts.maxSessions,
		Logger:               log,
	}
	if opts.storeAudit {
		cfg.Audit = func(ctx context.Context, typ, actor string, fields map[string]any) {
			e.audit.add(ctx, typ, actor, fields)
			ev, err := audit.NewEvent(time.Now(), typ, actor, fields)
			if err == nil {
				ev.Session, _ = fields["session"].(string)
				ev.Amendment, _ = fields["amendment"].(string)
				_, err = e.store.AppendAudit(ctx, ev)
			}
			if err != nil {
				t.Errorf("audit %s: %v", typ, err)
			}
		}
	}
	if opts.configure != nil {
		opts.configure(&cfg)
	}
	e.srv, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- e.srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v; want ErrServerClosed", err)
		}
	})
	e.alice = e.newClient("alice", alice.Email, e.ca, time.Now().Add(time.Hour))
	return e
}

// newAuthority returns a certs.Authority with its CA keys in dir (made if
// missing); now nil means time.Now.
func newAuthority(t testing.TB, dir string, now func() time.Time) *certs.Authority {
	t.Helper()
	a, err := certs.New(certs.Config{
		UserCAKeyFile: filepath.Join(dir, "user_ca"),
		HostCAKeyFile: filepath.Join(dir, "host_ca"),
		Now:           now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// grant gives alice an active amendment for login@web-1.
func (e *env) grant(login string, d time.Duration, portForwarding bool) *amendment.Amendment {
	e.t.Helper()
	a, err := e.svc.Request(context.Background(), alice, amendment.Request{
		Target: "web-1", Login: login, Duration: d, Reason: "test", PortForwarding: portForwarding,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	if a.State != amendment.Active {
		e.t.Fatalf("amendment %s is %s; want active", a.ID, a.State)
	}
	return a
}

// testLogger logs through t, so a failing test shows the bastion's story.
func testLogger(t testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel).With().Timestamp().Logger()
}

// requireOpenSSH skips the test when OpenSSH is not installed.
func requireOpenSSH(t testing.TB) {
	t.Helper()
	for _, p := range []string{"/usr/sbin/sshd", "/usr/bin/ssh", "/usr/bin/scp", "/usr/bin/sftp"} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("%s is missing: these tests run real OpenSSH; the project's test command installs openssh-client and openssh-server", p)
		}
	}
}

// sshd is a private OpenSSH server: the target web-1.
type sshd struct {
	addr    string
	hostKey gossh.PublicKey
	log     *syncBuffer
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startSSHD starts sshd -D on a free loopback port, trusting the user CAs
// in trustedCAs, with its own host key, and stops it at cleanup.
func startSSHD(t testing.TB, dir string, trustedCAs []byte) *sshd {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// sshd refuses to start without its privilege separation directory,
	// which the system's sshd service normally creates.
	if _, err := os.Stat("/run/sshd"); err != nil {
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Skipf("sshd needs /run/sshd, and it cannot be created: %v", err)
		}
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := gossh.MarshalPrivateKey(priv, "web-1 host key")
	if err != nil {
		t.Fatal(err)
	}
	hostKeyFile := filepath.Join(dir, "host_ed25519")
	writeFile(t, hostKeyFile, pem.EncodeToMemory(block), 0o600)
	signer, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "trusted_user_ca")
	writeFile(t, caFile, trustedCAs, 0o644)
	// The sessions' own HOME: shells do not run the account's dotfiles,
	// which can be slow or hang on a shared machine (root's ran pyenv
	// init, whose rehash lock made a shell print nothing for 20 s in CI).
	home := filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}

	for attempt := 0; ; attempt++ {
		port := freePort(t)
		conf := filepath.Join(dir, "sshd_config")
		writeFile(t, conf, []byte(strings.Join([]string{
			"Port " + port,
			"ListenAddress 127.0.0.1",
			"HostKey " + hostKeyFile,
			"TrustedUserCAKeys " + caFile,
			"AuthorizedKeysFile none",
			"PermitRootLogin prohibit-password",
			"PasswordAuthentication no",
			"KbdInteractiveAuthentication no",
			"StrictModes no",
			"UsePAM no",
			"PidFile none",
			"AllowTcpForwarding yes",
			"AllowAgentForwarding yes",
			"X11Forwarding no",
			"PrintMotd no",
			"PrintLastLog no",
			"Subsystem sftp internal-sftp",
			"AcceptEnv LANG LC_*",
			"SetEnv HOME=" + home,
			"LogLevel VERBOSE",
			"MaxStartups 4000",
			"",
		}, "\n")), 0o644)
		log := &syncBuffer{}
		cmd := exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", conf)
		cmd.Stdout, cmd.Stderr = log, log
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() {
			cmd.Wait()
			close(exited)
		}()
		addr := "127.0.0.1:" + port
		if waitSSH(addr, exited) {
			t.Cleanup(func() {
				syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
				<-exited
				if t.Failed() {
					t.Logf("sshd log:\n%s", log.String())
				}
			})
			return &sshd{addr: addr, hostKey: signer.PublicKey(), log: log}
		}
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		if attempt == 2 {
			t.Fatalf("sshd did not start:\n%s", log.String())
		}
	}
}

// waitSSH waits until addr answers with an SSH identification line, or
// the server exits.
func waitSSH(addr string, exited <-chan struct{}) bool {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if strings.HasPrefix(line, "SSH-") {
				return true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// openFile opens path for reading until the test ends.
func openFile(t testing.TB, path string) *os.File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

func writeFile(t testing.TB, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
}

// client is a person's ssh setup: a key, a certificate from some CA (or
// none), and known_hosts trusting the jitproxy host CA, as jitproxy login
// writes them.
type client struct {
	e      *env
	dir    string
	key    string // the private key file
	cert   string // the certificate file; "" for a plain key
	single string // ssh config for the single hop
	jump   string // ssh config for ssh -J
}

// newClient mints a key and a certificate for person from ca (nil: a plain
// key), valid from ca's now until validBefore.
func (e *env) newClient(name, person string, ca *certs.Authority, validBefore time.Time) *client {
	e.t.Helper()
	c := &client{e: e, dir: filepath.Join(e.dir, "client-"+name)}
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		e.t.Fatal(err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		e.t.Fatal(err)
	}
	block, err := gossh.MarshalPrivateKey(priv, person)
	if err != nil {
		e.t.Fatal(err)
	}
	c.key = filepath.Join(c.dir, "id_ed25519")
	writeFile(e.t, c.key, pem.EncodeToMemory(block), 0o600)
	sshPub, err := gossh.NewPublicKey(pub)
	if err != nil {
		e.t.Fatal(err)
	}
	if ca != nil {
		cert, err := ca.SignUser(sshPub, certs.UserCert{
			KeyID:          person,
			Principals:     []string{person},
			ValidBefore:    validBefore,
			PTY:            true,
			PortForwarding: true,
		})
		if err != nil {
			e.t.Fatal(err)
		}
		c.cert = filepath.Join(c.dir, "id_ed25519-cert.pub")
		writeFile(e.t, c.cert, gossh.MarshalAuthorizedKey(cert), 0o644)
	}
	knownHosts := filepath.Join(c.dir, "known_hosts")
	writeFile(e.t, knownHosts, []byte(strings.Join(e.ca.KnownHosts("*"), "\n")+"\n"), 0o644)

	common := []string{
		"Host *",
		"  User " + e.login,
		"  IdentityFile " + c.key,
		"  IdentitiesOnly yes",
		"  IdentityAgent none",
		"  UserKnownHostsFile " + knownHosts,
		"  GlobalKnownHostsFile /dev/null",
		"  StrictHostKeyChecking yes",
		"  UpdateHostKeys no",
		"  BatchMode yes",
		"  ConnectTimeout 10",
	}
	if c.cert != "" {
		common = append(common, "  CertificateFile "+c.cert)
	}
	exe, err := os.Executable()
	if err != nil {
		e.t.Fatal(err)
	}
	c.jump = filepath.Join(c.dir, "ssh_config_jump")
	writeFile(e.t, c.jump, []byte(strings.Join(common, "\n")+"\n"), 0o644)
	c.single = filepath.Join(c.dir, "ssh_config")
	single := append([]string{"Host web-* nowhere", "  ProxyCommand " + exe + " %h"}, common...)
	writeFile(e.t, c.single, []byte(strings.Join(single, "\n")+"\n"), 0o644)
	return c
}

// result is what an OpenSSH client run left behind.
type result struct {
	stdout, stderr string
	code           int
}

// command returns an OpenSSH client command (ssh, scp, sftp) with the
// client's config for the path (jump: ssh -J; else the single hop), and
// the environment the single-hop ProxyCommand needs. extraEnv adds
// variables.
func (c *client) command(ctx context.Context, jump bool, extraEnv []string, name string, args ...string) *exec.Cmd {
	conf := c.single
	if jump {
		conf = c.jump
	}
	cmd := exec.CommandContext(ctx, name, append([]string{"-F", conf}, args...)...)
	cmd.Env = append(append(os.Environ(), proxyEnv+"="+c.e.addr), extraEnv...)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// run runs an OpenSSH client to the end (30s at most).
func (c *client) run(jump bool, name string, args ...string) result {
	c.e.t.Helper()
	return c.runEnv(jump, nil, "", name, args...)
}

// runEnv is run with extra environment and stdin.
func (c *client) runEnv(jump bool, env []string, stdin string, name string, args ...string) result {
	c.e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := c.command(ctx, jump, env, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Stdin = strings.NewReader(stdin)
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		c.e.t.Fatalf("%s: %v", name, err)
	}
	return r
}

// jumpArg is the -J argument for the bastion.
func (e *env) jumpArg() string { return e.login + "@" + e.addr }

// interactive is an ssh -tt session driven through a pipe.
type interactive struct {
	t      testing.TB
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *syncBuffer
	errOut *syncBuffer
	done   chan struct{}
	code   int
}

// startInteractive starts ssh -tt with args and waits until the remote
// shell answers.
func (c *client) startInteractive(jump bool, args ...string) *interactive {
	c.e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	c.e.t.Cleanup(cancel)
	cmd := c.command(ctx, jump, nil, "ssh", append([]string{"-tt"}, args...)...)
	s := &interactive{t: c.e.t, cmd: cmd, out: &syncBuffer{}, errOut: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = s.out, s.errOut
	var err error
	if s.stdin, err = cmd.StdinPipe(); err != nil {
		c.e.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		c.e.t.Fatal(err)
	}
	go func() {
		defer close(s.done)
		err := cmd.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			s.code = ee.ExitCode()
		}
	}()
	c.e.t.Cleanup(func() {
		cmd.Process.Kill()
		<-s.done
	})
	s.expect("echo ready-$((6*7))", "ready-42")
	return s
}

// expect types line and waits for want in the output.
func (s *interactive) expect(line, want string) {
	s.t.Helper()
	if _, err := io.WriteString(s.stdin, line+"\n"); err != nil {
		s.t.Fatalf("write %q: %v (stderr: %s)", line, err, s.errOut.String())
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(s.out.String(), want) {
		select {
		case <-s.done:
			s.t.Fatalf("ssh exited (%d) before printing %q; stdout:\n%s\nstderr:\n%s", s.code, want, s.out.String(), s.errOut.String())
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("no %q in the output:\n%s\nstderr:\n%s", want, s.out.String(), s.errOut.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// wait waits up to timeout for ssh to exit.
func (s *interactive) wait(timeout time.Duration) {
	s.t.Helper()
	select {
	case <-s.done:
	case <-time.After(timeout):
		s.t.Fatalf("ssh still running after %v; stdout:\n%s\nstderr:\n%s", timeout, s.out.String(), s.errOut.String())
	}
}

// amendmentT shortens amendment.Amendment in test signatures.
type amendmentT = amendment.Amendment

// accessFunc is an Access from a function.
type accessFunc func(ctx context.Context, person, target, login string) (*amendment.Amendment, error)

func (f accessFunc) ActiveSSH(ctx context.Context, person, target, login string) (*amendment.Amendment, error) {
	return f(ctx, person, target, login)
}

// errorString is an error with fixed text.
type errorString string

func (e errorString) Error() string { return string(e) }
